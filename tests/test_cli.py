"""The `paramsplit` command line: what each command prints, and its one-line errors.

Most tests call the Typer app in-process with `CliRunner` (torch is imported once for the
whole file); a few run the installed console script to check what a shell really sees: the
exit status, and a stderr of exactly one line with no traceback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import paramsplit as ps
from paramsplit.cli import app

# This Typer's CliRunner keeps stdout and stderr apart (`result.stdout`, `result.stderr`;
# `result.output` is both interleaved), so tests can check that errors go to stderr only.
runner = CliRunner()

# rich colours the error line red when it believes it writes to a terminal (FORCE_COLOR in a
# CI environment is enough); the tests compare text, not colour.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

BUDGET = 1_000_000
PLAN_FIELDS = {
    "design_class",
    "num_members",
    "family",
    "member",
    "member_params",
    "total_params",
    "single_params",
    "ratio_to_single",
    "matched",
    "note",
    "budget_params",
    "ratio",
    "flops_per_image",
    "reason",
}


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def invoke_json(*args: str) -> Any:
    """Run a command with --json; its stdout must be nothing but the JSON document."""
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return json.loads(result.stdout)


def error_line(stderr: str) -> str:
    """The single line a user error prints on stderr (fails if there is not exactly one)."""
    lines = ANSI_ESCAPE.sub("", stderr).splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert "Traceback" not in stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# --- families -------------------------------------------------------------------------------


def test_families_table_lists_every_family_and_published_count() -> None:
    result = invoke("families")
    assert result.exit_code == 0, result.output
    for info in ps.FAMILIES:
        assert info.name in result.stdout
        for config in info.published:
            # The table groups digits; the JSON test checks the raw numbers.
            assert re.search(rf"{re.escape(config.name)}\s+{config.params:,}\b", result.stdout)


def test_families_json_has_published_counts() -> None:
    data = invoke_json("families")
    assert [entry["name"] for entry in data] == ["resnet", "wrn", "densenet-bc", "vgg"]
    published = {name: n for entry in data for name, n in entry["published"].items()}
    # He et al. 2016 (Table 6) and Zagoruyko & Komodakis 2016 (Table 4), with projection
    # shortcuts for the CIFAR ResNet (see the family's note).
    assert published["resnet-20-16"] == 272_474
    assert published["wrn-28-10"] == 36_479_194
    assert published == {c.name: c.params for info in ps.FAMILIES for c in info.published}
    assert data[0]["default"] == "resnet-20-16"


# --- describe -------------------------------------------------------------------------------


def test_describe_wrn_28_10_json() -> None:
    data = invoke_json("describe", "wrn-28-10")
    assert isinstance(data, dict)
    assert data["name"] == "wrn-28-10"
    assert (data["depth"], data["width"]) == (28, 10)
    assert data["total_params"] == 36_479_194
    assert data["published_params"] == data["total_params"]
    # WRN-28-10 on CIFAR is usually quoted at 5.25 G multiply-accumulates; FLOPs count 2 each.
    assert 5.2e9 < data["flops_per_image"] / 2 < 5.3e9


def test_describe_resnet_20_on_one_channel_8x8_input() -> None:
    cifar = invoke_json("describe", "resnet-20")
    small = invoke_json("describe", "resnet-20", "--input", "1x8x8")
    assert small["name"] == "resnet-20-16"  # the family's default width fills the shorthand
    assert small["input"] == "1x8x8"
    assert small["published_params"] is None  # published counts are for 3×32×32 only
    # Global average pooling makes the count independent of H×W; only the stem conv
    # (3×3, 16 filters) sees the channels: 2 fewer input channels, 2·9·16 fewer weights.
    assert small["total_params"] == cifar["total_params"] - 2 * 9 * 16
    # Every conv's output has 1/16 the pixels at 8×8; the stem also has 1 input channel, not
    # 3; the classifier (64 features → 10 classes) costs the same. 2 FLOPs per MAC.
    stem_32 = 2 * (3 * 9) * 16 * 32 * 32
    stem_8 = 2 * (1 * 9) * 16 * 8 * 8
    classifier = 2 * 64 * 10
    rest_32 = cifar["flops_per_image"] - stem_32 - classifier
    assert small["flops_per_image"] == stem_8 + rest_32 // 16 + classifier


def test_describe_table_shows_exact_and_published_counts() -> None:
    result = invoke("describe", "wrn-28-10")
    assert result.exit_code == 0, result.output
    assert "36,479,194" in result.stdout
    assert "published: 36.5M" in result.stdout


# --- plan -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def budget_plan() -> list[dict[str, Any]]:
    return invoke_json("plan", "--family", "resnet", "--budget", "1M", "--members", "2,4,8")


def test_plan_json_rows_cover_the_design_space(budget_plan: list[dict[str, Any]]) -> None:
    assert isinstance(budget_plan, list)
    for row in budget_plan:
        assert row.keys() >= PLAN_FIELDS
        assert row["design_class"] in {"single", "deq", "weq"}
        assert row["family"] == "resnet"
        assert row["budget_params"] == BUDGET
    # One single network, then a deq and a weq ensemble per k.
    assert [(r["design_class"], r["num_members"]) for r in budget_plan] == [
        ("single", 1),
        ("deq", 2),
        ("weq", 2),
        ("deq", 4),
        ("weq", 4),
        ("deq", 8),
        ("weq", 8),
    ]


def test_plan_feasible_rows_fit_the_single_network(budget_plan: list[dict[str, Any]]) -> None:
    single = budget_plan[0]
    size = single["total_params"]  # |S|, which every ensemble is matched to
    assert size <= BUDGET
    feasible = [r for r in budget_plan if r["reason"] is None]
    assert len(feasible) == 5
    for row in feasible:
        assert row["single_params"] == size
        assert row["total_params"] == row["num_members"] * row["member_params"]
        assert row["total_params"] <= size  # rule 'le' never exceeds |S|
        # JSON floats round-trip exactly, so the ratios must be these very divisions.
        assert row["ratio"] == row["total_params"] / BUDGET
        assert row["ratio_to_single"] == row["total_params"] / size
        assert row["flops_per_image"] > 0
        member = ps.parse_arch(row["member"])
        assert member.name == row["member"]
        # deq members keep the single network's depth, weq members its stage widths.
        if row["design_class"] == "deq":
            assert member.depth == single["member_depth"]
            assert row["matched"] is True  # per-stage widths reach >= 0.95 here
        if row["design_class"] == "weq":
            assert row["member_stage_widths"] == single["member_stage_widths"]


def test_plan_keeps_infeasible_rows_with_a_reason(budget_plan: list[dict[str, Any]]) -> None:
    infeasible = [r for r in budget_plan if r["reason"] is not None]
    # At depth 20 the single network is resnet-20-30; a weq member keeps width 30, and even
    # the shallowest, resnet-8-30 (271,480 params), fits only twice into 1M.
    assert [(r["design_class"], r["num_members"]) for r in infeasible] == [("weq", 4), ("weq", 8)]
    for row in infeasible:
        k = row["num_members"]
        assert re.fullmatch(
            rf"the smallest, {k}x resnet-8-30 \([\d,]+ params\), exceeds the single "
            r"network's 953,560 params",
            row["reason"],
        )
        assert row["member"] is None
        assert row["total_params"] is None
        assert row["ratio"] is None
        assert row["feasible"] is False


def test_plan_table_shows_ratios_and_infeasible_reasons(budget_plan: list[dict[str, Any]]) -> None:
    result = invoke("plan", "--family", "resnet", "--budget", "1M", "--members", "2,4,8")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(re.search(r"vs budget\s+vs \|S\|", line) for line in lines[:6])  # the header
    for row in budget_plan:
        if row["reason"] is None:
            [line] = [ln for ln in lines if re.match(rf"\s*{re.escape(row['design'])}\s", ln)]
            assert f"{row['ratio']:.3f}" in line
            assert f"{row['ratio_to_single']:.3f}" in line
            assert f"{row['total_params']:,}" in line
        else:
            expected = f"infeasible {row['design_class']} k={row['num_members']}: {row['reason']}"
            assert expected in lines


def test_plan_single_mode_uses_the_network_as_budget() -> None:
    rows = invoke_json("plan", "--single", "densenet-bc-40-12", "--members", "4,6,8")
    budget = 176_122
    assert budget == ps.count_params(ps.parse_arch("densenet-bc-40-12"))
    assert all(row["budget_params"] == budget for row in rows)
    assert rows[0]["design_class"] == "single"
    assert (rows[0]["total_params"], rows[0]["ratio"]) == (budget, 1.0)
    assert [r["num_members"] for r in rows] == [1, 4, 4, 6, 6, 8, 8]
    for row in rows[1:]:
        assert row["total_params"] is not None, row["reason"]
        assert row["total_params"] <= budget


def test_plan_nearest_may_exceed_the_budget() -> None:
    rows = invoke_json("plan", "--family", "resnet", "--budget", "1M", "--match", "nearest")
    assert all(row["match_rule"] == "nearest" for row in rows)
    # 'nearest' always finds a member: no infeasible rows, and some totals over the budget.
    assert all(row["reason"] is None for row in rows)
    assert any(row["total_params"] > BUDGET for row in rows)
    # The single network's width is the closest of its neighbours, checked with the API.
    single = ps.parse_arch(rows[0]["member"])

    def distance(width: int) -> int:
        return abs(ps.count_params(ps.ArchSpec("resnet", 20, width)) - BUDGET)

    assert distance(single.width) <= min(distance(single.width - 1), distance(single.width + 1))


@pytest.mark.parametrize("rule", ["tol:0.05", "tol:5%"])
def test_plan_tolerance_rule(rule: str) -> None:
    rows = invoke_json("plan", "--family", "resnet", "--budget", "1M", "--match", rule)
    assert all(row["match_rule"] == "tol:0.05" for row in rows)  # "5%" is the same rule
    assert rows[0]["reason"] is None and abs(rows[0]["ratio"] - 1) <= 0.05
    for row in rows[1:]:  # ensembles: within 5% of the single network
        if row["reason"] is None:
            assert abs(row["ratio_to_single"] - 1) <= 0.05
        else:
            off = re.search(
                r"is ([+-]\d+\.\d)% off the single network's [\d,]+ params "
                r"\(tolerance ±5\.0%\)$",
                row["reason"],
            )
            assert off, row["reason"]
            assert abs(float(off[1])) > 5
    # weq members keep the single's width (31): 2 members of depth 8 or 14 land 42% under or
    # 31% over 1M, so the 5% tolerance must reject some rows.
    assert any(row["reason"] is not None for row in rows)


# --- errors ---------------------------------------------------------------------------------

PLAN_1M = ("plan", "--family", "resnet", "--budget", "1M")

USER_ERRORS = [
    pytest.param(
        ("plan", "--family", "resnt", "--budget", "1M"),
        1,
        r"^error: unknown family 'resnt'; known families: resnet, wrn, densenet-bc, vgg; "
        r"did you mean 'resnet'\?$",
        id="unknown-family",
    ),
    pytest.param(
        (*PLAN_1M, "--depth", "21"),
        1,
        r"depth 21 is not valid for resnet \(depth = 6n\+2, n >= 1\); "
        r"nearest valid depths: 14, 20, 26$",
        id="invalid-depth",
    ),
    pytest.param(
        ("plan", "--family", "resnet", "--budget", "1.5x"),
        1,
        r"cannot parse budget '1\.5x'; expected a parameter count such as '1\.5M'",
        id="unparsable-budget",
    ),
    pytest.param(
        ("plan", "--family", "resnet", "--budget", "0"),
        1,
        r"budget must be a positive number of parameters, got '0'$",
        id="zero-budget",
    ),
    pytest.param(
        ("plan", "--family", "resnet", "--budget", "-3"),
        1,
        # Today "cannot parse budget '-3'" (the pattern has no sign); either wording names it.
        r"budget '-3'",
        id="negative-budget",
    ),
    pytest.param(
        (*PLAN_1M, "--members", "0,2"),
        1,
        r"number of members must be >= 1, got 0$",
        id="zero-members",
    ),
    pytest.param(
        (*PLAN_1M, "--members", "a,b"),
        2,
        r"cannot parse member counts 'a,b'; expected e\.g\. '2,4,8'$",
        id="unparsable-members",
    ),
    pytest.param(
        ("plan", "--family", "resnet", "--budget", "500"),
        1,
        r"no single resnet-20 matches a budget of 500 \(500 params\) under rule 'le': "
        r"the smallest, resnet-20-1 \([\d,]+ params\), exceeds the budget$",
        id="budget-too-small",
    ),
    pytest.param(
        (*PLAN_1M, "--match", "closest"),
        1,
        r"unknown matching rule 'closest'; allowed: 'le', 'nearest', 'tol:X' with 0 <= X < 1",
        id="unknown-match-rule",
    ),
    pytest.param(
        (*PLAN_1M, "--match", "tol:1"),
        1,
        r"unknown matching rule 'tol:1'",
        id="tolerance-out-of-range",
    ),
    pytest.param(
        (*PLAN_1M, "--input", "3x4x4"),
        1,
        r"input must be at least 8×8 pixels, got 4×4$",
        id="plan-input-too-small",
    ),
    pytest.param(
        ("describe", "resnet-20", "--input", "3x4x4"),
        1,
        r"input must be at least 8×8 pixels, got 4×4$",
        id="describe-input-too-small",
    ),
    pytest.param(
        ("describe", "resnet-20", "--classes", "1"),
        1,
        r"number of classes must be >= 2, got 1$",
        id="one-class",
    ),
    pytest.param(
        ("describe", "foo"),
        1,
        r"cannot parse architecture 'foo'; expected FAMILY-DEPTH-WIDTH",
        id="unparsable-arch",
    ),
    pytest.param(
        ("describe", "resnet-21"),
        1,
        r"depth 21 is not valid for resnet .*nearest valid depths: 14, 20, 26$",
        id="describe-invalid-depth",
    ),
    pytest.param(
        ("plan", "--single", "resnet-20", "--family", "resnet"),
        2,
        r"give either a single network \(--single\), or a family and a budget .*not both$",
        id="single-and-family",
    ),
    pytest.param(
        ("plan",),
        2,
        r"give a family and a budget \(--family, --budget\), or a single network",
        id="neither-single-nor-family",
    ),
    pytest.param(
        ("plan", "--budget", "1M"),
        2,
        r"give a family and a budget \(--family, --budget\), or a single network",
        id="budget-without-family",
    ),
]


@pytest.mark.parametrize(("args", "exit_code", "pattern"), USER_ERRORS)
def test_user_error_is_one_line_on_stderr(args: tuple[str, ...], exit_code: int, pattern: str):
    result = invoke(*args)
    # typer.Exit surfaces as SystemExit; any other exception would be a crash, not a message.
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == exit_code
    assert result.stdout == ""
    assert re.search(pattern, error_line(result.stderr))


@pytest.mark.parametrize(
    ("args", "echoed"),
    [
        (("describe", "resnet[/]"), "'resnet[/]'"),
        (("plan", "--family", "resnet", "--budget", "[red]5"), "'[red]5'"),
    ],
    ids=["closing-tag", "opening-tag"],
)
def test_error_echoes_brackets_verbatim(args: tuple[str, ...], echoed: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 1
    assert echoed in error_line(result.stderr)


# --- the installed console script ------------------------------------------------------------

# The console script sits next to the interpreter running the tests (the venv's bin/).
SCRIPT = Path(sys.executable).with_name("paramsplit")


@pytest.mark.slow  # each run imports torch afresh: ~5 s of CPU on the 2-core machine
@pytest.mark.parametrize(
    ("args", "exit_code"),
    [
        (("plan", "--family", "resnt", "--budget", "1M"), 1),
        (("plan", "--single", "resnet-20", "--family", "resnet"), 2),
    ],
    ids=["user-error", "usage-error"],
)
def test_console_script_exits_with_one_line(args: tuple[str, ...], exit_code: int) -> None:
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT}"
    # Without FORCE_COLOR, rich sees a pipe: no colour codes, no wrapping at a terminal width.
    env = {key: value for key, value in os.environ.items() if key != "FORCE_COLOR"}
    run = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert run.returncode == exit_code, run.stderr
    assert run.stdout == ""
    error_line(run.stderr)


# --- paramsplit train -------------------------------------------------------------------------


def test_train_prints_one_json_object_with_units():
    # Two epochs of a 4-member deq ensemble on digits, measurement skipped to stay fast;
    # progress goes to stderr, so stdout is the JSON alone.
    result = invoke(
        "train", "--family", "resnet", "--budget", "20k", "--design", "deq", "--members", "2",
        "--dataset", "digits", "--epochs", "2", "--batch-size", "64", "--member-executor", "fused",
        "--no-measure", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["design_class"] == "deq" and summary["num_members"] == 2
    assert summary["executor"] == "fused" and summary["status"] == "done"
    assert 0 <= summary["test_accuracy"] <= 1
    assert len(summary["member_test_accuracy"]) == 2
    assert summary["total_params"] <= 20_000
    assert summary["train_time_s"] > 0
    assert [point["epoch"] for point in summary["curve"]] == [1, 2]
    assert summary["config"]["epochs"] == 2


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--design", "ensemble"], 2, "--design must be one of single, deq, weq"),
        (["--dataset", "cifar11"], 1, "unknown dataset 'cifar11'"),
        (["--member-executor", "threads"], 1, "unknown executor 'threads'"),
        (["--epochs", "0"], 1, "epochs must be >= 1"),
        (["--budget", "100"], 1, "no single resnet-20 matches a budget"),
    ],
)
def test_train_rejects_bad_input_in_one_line(args, code, message):
    base = {"--family": "resnet", "--budget": "20k", "--epochs": "1"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    result = invoke("train", *[item for pair in base.items() for item in pair], "--no-measure")
    assert result.exit_code == code, result.output
    assert re.search(message, error_line(result.stderr))


# --- renamed flags: the old spellings still work, with a note ------------------------------

# `--executor` meant where runs go (local or ray) in `run` but how members train in `train`;
# each command's old spelling now feeds its new name.
DEPRECATED = "note: paramsplit {command} --executor is deprecated; use {flag} (the same values)"


def test_train_old_executor_spelling_trains_with_a_note_on_stderr():
    result = invoke(
        "train", "--family", "resnet", "--budget", "5k", "--epochs", "1", "--batch-size", "64",
        "--executor", "loop", "--no-measure", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["executor"] == "loop"
    note = DEPRECATED.format(command="train", flag="--member-executor")
    # stderr holds the note and nothing else but the progress bar's blank line (--json).
    assert [line for line in ANSI_ESCAPE.sub("", result.stderr).splitlines() if line] == [note]


def test_run_old_executor_spelling_runs_locally_with_a_note_on_stderr(tmp_path):
    result = invoke(
        "run", "--budgets", "5k", "--designs", "single", "--epochs", "1", "--batch-size", "64",
        "--measure", "none", "--executor", "local", "--db", str(tmp_path / "study.db"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 done" in result.stdout
    note = DEPRECATED.format(command="run", flag="--backend")
    assert ANSI_ESCAPE.sub("", result.stderr).splitlines()[0] == note


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        # The old spelling reaches the new option's checks, in each command's meaning.
        ("run", ["--executor", "moon"], "--backend must be local or ray, got 'moon'"),
        ("run", ["--executor", "ray", "--workers", "2"], "--workers is for the local backend"),
        ("train", ["--executor", "threads"], "unknown executor 'threads'"),
        # Both spellings at once must agree.
        ("run", ["--backend", "ray", "--executor", "local"],
         "--backend 'ray' and --executor 'local' disagree; give --backend only"),
        ("train", ["--member-executor", "fused", "--executor", "vmap"],
         "--member-executor 'fused' and --executor 'vmap' disagree"),
    ],
)  # fmt: skip
def test_old_executor_spelling_is_checked_as_the_new_flag(tmp_path, command, args, message):
    base = ["--budgets", "5k", "--db", str(tmp_path / "s.db")] if command == "run" else [
        "--family", "resnet", "--budget", "5k", "--epochs", "1", "--no-measure"]  # fmt: skip
    result = invoke(command, *base, *args)
    assert result.exit_code in (1, 2), result.output
    lines = ANSI_ESCAPE.sub("", result.stderr).splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    flag = "--backend" if command == "run" else "--member-executor"
    assert lines[:-1] in ([], [DEPRECATED.format(command=command, flag=flag)])
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s.db").exists()  # a mistake leaves nothing behind


def test_help_lists_the_new_names_only():
    for command, shown in (("run", ["--backend", "--member-executor"]),
                           ("train", ["--member-executor"])):  # fmt: skip
        result = invoke(command, "--help")
        assert result.exit_code == 0, result.output
        text = ANSI_ESCAPE.sub("", result.stdout)
        assert all(flag in text for flag in shown)
        assert "--executor" not in text  # hidden: the old spelling is not advertised


# --- paramsplit run -------------------------------------------------------------------------


def test_run_measures_every_run_and_a_rerun_measuring_nothing_finds_the_same_study(tmp_path):
    db = str(tmp_path / "study.db")
    flags = ("--budgets", "5k", "--designs", "single", "--seeds", "2", "--epochs", "1",
             "--batch-size", "64", "--db", db)  # fmt: skip
    first = invoke("run", *flags, "--measure", "latency")
    assert first.exit_code == 0, first.output
    assert "2 done" in first.stdout
    (study,) = ps.Store.open(db).studies()
    runs = ps.Store.open(db).runs(study["name"])
    assert all(run["latency_ms_batch1"] > 0 for run in runs)
    assert all(run["peak_train_memory_bytes"] is None for run in runs)  # latency only
    # What is measured is not part of the study: the same flags find it, nothing runs again.
    again = invoke("run", *flags, "--measure", "none")
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith(f"{study['name']}: 2 done")
    assert all(run["attempts"] == 1 for run in ps.Store.open(db).runs(study["name"]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--measure", "memory"], "measure must be one of all, first-seed, latency, none"),
        (["--workers", "0"], r"--workers must be in \[1, \d+\] \(the cores of this machine"),
        (["--workers", "2", "--backend", "ray"], "--workers is for the local backend"),
    ],
)
def test_run_rejects_bad_options_in_one_line(tmp_path, args, message):
    result = invoke("run", "--budgets", "5k", "--db", str(tmp_path / "study.db"), *args)
    assert result.exit_code == 2, result.output
    assert re.search(message, error_line(result.stderr))


def test_the_command_lines_default_database_is_the_stores():
    from paramsplit.cli.options import DEFAULT_DB
    from paramsplit.store import DEFAULT_PATH

    assert DEFAULT_DB == DEFAULT_PATH
