"""`paramsplit report` and `paramsplit recommend` on a results database of hand-written runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paramsplit.cli import app
from paramsplit.store import Store

runner = CliRunner()
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# budget: {(class, k): (member, test accuracy per seed, latency ms)}
RESULTS = {
    10_000: {
        ("single", 1): ("resnet-20-3", (0.950, 0.952, 0.954), 1.0),
        ("deq", 2): ("resnet-20-2", (0.930, 0.935, 0.940), 2.0),
        ("weq", 2): ("resnet-8-3", (0.945, 0.946, 0.947), 1.2),
    },
    40_000: {
        ("single", 1): ("resnet-20-5", (0.960, 0.962, 0.964), 1.5),
        ("deq", 2): ("resnet-20-4", (0.975, 0.978, 0.981), 3.0),
        ("weq", 2): ("resnet-8-5", (0.970, 0.971, 0.972), 1.4),
    },
}


def fill_store(
    path: Path,
    study: str = "hand-written",
    ensemble_params: dict[tuple[int, str], int] | None = None,
    num_seeds: int = 3,
) -> None:
    """A finished study: 2 budgets × single/deq/weq at k=2 × 3 seeds, with curves. Every
    design has budget − 500 parameters, but for `ensemble_params[(budget, class)]`; the vote
    accuracy of an ensemble is 1 point below its test accuracy."""
    ensemble_params = ensemble_params or {}
    with Store.open(path) as store:
        store.add_study(study, {"name": study})
        specs, results = [], {}
        for budget, designs in RESULTS.items():
            for (design_class, k), (member, accuracies, latency_ms) in designs.items():
                for seed, accuracy in enumerate(accuracies[:num_seeds]):
                    total = ensemble_params.get((budget, design_class), budget - 500)
                    spec = {
                        "family": "resnet", "design_class": design_class, "num_members": k,
                        "member": member, "member_depth": int(member.split("-")[1]),
                        "member_width": int(member.split("-")[2]),
                        "total_params": total, "budget_params": budget,
                        "ratio": total / budget, "dataset": "digits",
                        "config": {"epochs": 2}, "seed": seed,
                    }  # fmt: skip
                    specs.append(spec)
                    results[(design_class, k, member, seed)] = {
                        "test_accuracy": accuracy, "best_val_accuracy": accuracy,
                        "test_vote_accuracy": accuracy - (0.01 if k > 1 else 0.0),
                        "train_time_s": 2.0 * k, "epoch_time_s": 1.0 * k,
                        "latency_ms_batch1": latency_ms, "throughput_images_per_s": 500.0 / k,
                        "peak_train_memory_bytes": 2_000_000 // k,
                        "curve": [
                            {"epoch": 1, "val_accuracy": accuracy - 0.05, "elapsed_train_s": k},
                            {"epoch": 2, "val_accuracy": accuracy, "elapsed_train_s": 2.0 * k},
                        ],
                    }  # fmt: skip
        store.add_runs(study, specs)
        while (run := store.claim_next(study, "test")) is not None:
            spec = run["spec"]
            key = (spec["design_class"], spec["num_members"], spec["member"], spec["seed"])
            store.finish(run["run_id"], results[key])


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "results.db"
    fill_store(path)
    return str(path)


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    return result, ANSI_ESCAPE.sub("", result.stdout), ANSI_ESCAPE.sub("", result.stderr)


def test_report_prints_the_answer_and_writes_the_html_report(db, tmp_path):
    html = tmp_path / "out" / "study.html"
    result, out, err = invoke("report", "--db", db, "--html", str(html), "--budget", "40k")
    assert result.exit_code == 0, err
    assert "hand-written: 18 runs done, 0 failed, 0 not run yet" in out
    assert "resnet on digits, deq k=2: EST = 40k" in out
    assert "resnet on digits, weq k=2: EST = 40k" in out
    assert "97.80 ± 0.30 % (3)" in out  # deq at 40k: mean ± std over 3 seeds
    assert "build 2x resnet-20-4" in out
    assert f"report: {html}" in " ".join(out.split())
    assert html.is_file() and "<html" in html.read_text()
    # The page reads the same numbers as the terminal: decimals, and memory in binary units.
    page = html.read_text()
    assert ">97.80 ± 0.30<" in page
    assert "memory (MiB)" in page and "(MB)" not in page and " MB" not in page


def test_report_prints_the_params_ratio_with_every_comparison(tmp_path):
    path = tmp_path / "unmatched.db"
    fill_store(path, ensemble_params={(10_000, "weq"): 5_800})  # 0.61× the single network
    result, out, err = invoke("report", "--db", str(path), "--html", str(tmp_path / "r.html"))
    assert result.exit_code == 0, err
    lines = out.splitlines()
    weq_row = next(line for line in lines if "2x resnet-8-3" in line and "weq k=2" in line
                   and "×" in line and "%" not in line)  # fmt: skip
    assert "0.61× unmatched" in weq_row  # the win table
    assert (
        "weq k=2: EST = 40k" in out
        and "ensemble params 0.61–1.00× the single network's; 1 unmatched, outside [0.90, 1.00]"
        in " ".join(out.split())
    )
    assert "10k✗ (0.61×, unmatched)  40k✓ (1.00×)" in out  # the EST sequence
    assert "1 of 4 comparisons are unmatched" in " ".join(out.split())
    assert "--matched-only leaves them out" in " ".join(out.split())

    result, out, _ = invoke("report", "--db", str(path), "--json", "--matched-only")
    data = json.loads(out)
    weq = next(s for s in data["switchovers"] if s["design_class"] == "weq")
    assert (weq["outcome"], weq["est_budget"]) == ("at_most", 40_000)
    assert weq["steps"][0]["verdict"] == "gap" and weq["steps"][0]["params_ratio"] == 5_800 / 9_500
    assert data["num_unmatched"] == 1 and data["matched_only"]
    unmatched = next(c for c in data["comparisons"] if not c["matched"])
    assert unmatched["params_ratio"] == pytest.approx(5_800 / 9_500)

    result, out, _ = invoke("report", "--db", str(path), "--json", "--match-tolerance", "0.6,1")
    assert json.loads(out)["num_unmatched"] == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [("0.9", "--match-tolerance must be two ratios LOW,HIGH"),
     ("1.0,0.9", "--match-tolerance must satisfy 0 < LOW <= 1 <= HIGH, got '1.0,0.9'")],
)  # fmt: skip
def test_a_bad_match_tolerance_is_refused_in_one_line(db, value, message):
    result, _, err = invoke("report", "--db", db, "--json", "--match-tolerance", value)
    assert result.exit_code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_headline_accuracy_can_be_switched(db):
    _, out, _ = invoke("report", "--db", db, "--json")
    _, vote_out, _ = invoke("report", "--db", db, "--json", "--accuracy", "vote")
    prob, vote = json.loads(out), json.loads(vote_out)
    assert (prob["accuracy"], vote["accuracy"]) == ("prob", "vote")
    for by_prob, by_vote in zip(prob["comparisons"], vote["comparisons"], strict=True):
        assert by_vote["accuracy_gain"] == pytest.approx(by_prob["accuracy_gain"] - 0.01)
    result, out, _ = invoke("recommend", "--db", db, "--budget", "40k", "--accuracy", "vote")
    assert result.exit_code == 0 and "test accuracy: members' majority vote" in out
    result, _, err = invoke("report", "--db", db, "--accuracy", "mean")
    assert result.exit_code == 2
    assert "--accuracy must be one of prob, logit, vote, got 'mean'" in err


def test_one_seed_with_required_significance_says_not_enough_seeds(tmp_path):
    path = tmp_path / "one-seed.db"
    fill_store(path, num_seeds=1)
    result, out, err = invoke(
        "report", "--db", str(path), "--require-significance", "--html", str(tmp_path / "r.html")
    )
    assert result.exit_code == 0, err
    text = " ".join(out.split())
    assert "deq k=2: not enough seeds to tell — at 40k, 1 vs 1 seeds cannot give p ≤ 0.05" in text
    assert "as good or better" not in text
    assert "10k✗ (1.00×) 40k? (1.00×)" in text


def test_report_json_is_the_analysis_and_names_the_latest_study(db):
    result, out, _ = invoke("report", "--db", db, "--json")
    assert result.exit_code == 0
    data = json.loads(out)
    assert data["study"] == "hand-written"
    assert data["files"] == []  # --json alone writes no HTML
    assert {s["est_budget"] for s in data["switchovers"]} == {40_000}
    assert len(data["designs"]) == 6 and len(data["comparisons"]) == 4


def test_report_can_require_significance(db):
    result, out, _ = invoke("report", "--db", db, "--json", "--require-significance")
    data = json.loads(out)
    assert all(s["require_significance"] for s in data["switchovers"])
    result, _, err = invoke("report", "--db", db, "--json", "--alpha", "2")
    assert result.exit_code == 2
    assert "--alpha must be in (0, 1), got 2" in err


def test_recommend_under_a_latency_limit(db):
    result, out, err = invoke("recommend", "--db", db, "--budget", "40k", "--max-latency-ms", "2")
    assert result.exit_code == 0, err
    assert "build 2x resnet-8-5 (weq k=2, 39,500 params, 1.00× the single network's)" in out
    assert "latency 3 ms > 2 ms" in out
    assert "params / single" in out


def test_recommend_without_a_budget_answers_for_the_largest_measured(db):
    # Before: --budget was required, so `paramsplit demo` then `paramsplit recommend` failed.
    result, out, err = invoke("recommend", "--db", db)
    assert result.exit_code == 0, err
    assert out.startswith("budget: 40k, the largest the study measured (--budget picks another)")
    default = json.loads(invoke("recommend", "--db", db, "--json")[1])
    explicit = json.loads(invoke("recommend", "--db", db, "--budget", "40k", "--json")[1])
    assert default == explicit and default["measured_budget"] == 40_000


def test_read_only_commands_read_the_demos_database_when_there_is_no_other(
    db, tmp_path, monkeypatch
):
    # Before: `paramsplit demo` then `paramsplit recommend` (or report, export) looked for
    # paramsplit.db, found none, and said so (export even created an empty one).
    monkeypatch.chdir(tmp_path)
    Path(db).rename(tmp_path / "paramsplit-demo.db")
    for command in (["status"], ["report"], ["recommend"]):
        result, _, err = invoke(*command)
        assert result.exit_code == 0, err
        assert "note: reading paramsplit-demo.db, the demo's results" in err
    assert not (tmp_path / "paramsplit.db").exists()
    (tmp_path / "paramsplit-demo.db").rename(tmp_path / "elsewhere.db")
    result, _, err = invoke("status")  # neither: the usual error, nothing created
    assert result.exit_code == 1 and "no database at 'paramsplit.db'" in err
    assert not (tmp_path / "paramsplit.db").exists()


def test_recommend_json_for_an_unmeasured_budget(db):
    result, out, _ = invoke(
        "recommend", "--db", db, "--budget", "25k", "--max-memory", "1.5MB", "--json"
    )
    assert result.exit_code == 0
    answer = json.loads(out)
    assert (answer["measured_budget"], answer["exact_budget"]) == (10_000, False)
    assert answer["choice"]["design"] == "2x resnet-8-3"  # the single network needs 2 MB
    assert answer["constraints"]["max_memory_bytes"] == 1_500_000
    assert "25k was not measured; answering from 10k" in answer["notes"][0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-train-time", "soon"], "cannot parse duration 'soon'"),
        (["--objective", "speed"], "unknown objective 'speed'; allowed: accuracy"),
        (["--min-accuracy", "120"], "--min-accuracy is a percentage in [0, 100], got 120"),
        (["--batch", "0"], "--batch must be at least 1, got 0"),
        (["--study", "nope"], "unknown study 'nope'"),
    ],
)
def test_recommend_refuses_bad_input_in_one_line(db, args, message):
    result, _, err = invoke("recommend", "--db", db, "--budget", "40k", *args)
    assert result.exit_code in (1, 2)
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_report_on_an_empty_database_says_to_run_a_study(tmp_path):
    Store.open(tmp_path / "none.db").close()  # a missing one is an error of its own
    result, _, err = invoke("report", "--db", str(tmp_path / "none.db"))
    assert result.exit_code == 1
    assert "no studies in" in err and "paramsplit demo" in err


def test_report_on_a_study_not_run_yet_says_so(tmp_path):
    path = tmp_path / "pending.db"
    with Store.open(path) as store:
        store.add_study("later", {"name": "later"})
        store.add_runs("later", [{
            "family": "resnet", "design_class": "single", "num_members": 1,
            "member": "resnet-8-2", "member_depth": 8, "member_width": 2, "total_params": 900,
            "budget_params": 1_000, "dataset": "digits", "config": {}, "seed": 0,
        }])  # fmt: skip
    html = tmp_path / "later.html"
    result, out, err = invoke("report", "--db", str(path), "--html", str(html), "--budget", "1k")
    assert result.exit_code == 0, err
    assert "later: 0 runs done, 0 failed, 1 not run yet" in out
    assert "No finished runs yet" in out
    assert "no finished runs to answer from" in out
    assert html.is_file()
