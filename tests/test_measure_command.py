"""`paramsplit measure`: a trained study's inference, timed side by side, into the database.

No timed asserts: what is checked is which designs are paired, that every design, executor
and batch size asked is measured, what is stored, and that timings are positive and finite.
Runs are marked done without training (latency does not depend on the weights).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import paramsplit as ps
from paramsplit.cli import app
from paramsplit.data import load_dataset
from paramsplit.errors import ArtifactError, ConfigError, StoreError, UsageError
from paramsplit.measure.side_by_side import RoundSettings, measure_group
from paramsplit.records import MeasuredRun, RunResult, TrainingLoad
from paramsplit.specs import TrainConfig
from paramsplit.store import SCHEMA_VERSION, Store, default_worker
from paramsplit.study import Outcome, StudyDefinition, register_study, run_study, with_load
from paramsplit.study.measuring import budget_groups, measure_study, trained_weights
from paramsplit.train.checkpoint import save_checkpoint
from run_records import a_measure_result, a_train_summary

DIGITS = ps.parse_input("1x8x8", num_classes=10)
DIGITS_ONLY = {"digits": DIGITS}
FAST = RoundSettings(warmup=1, min_rounds=3, max_rounds=3, budget_s=0)
CONFIG = {**TrainConfig(epochs=1).__dict__, "milestones": [0.5, 0.75]}
# Budgets at depth 8 on 8×8 digits: the single network and its deq k=2 ensemble at each
# (weq k=2 does not fit), four tiny designs to measure.
STUDY = StudyDefinition(
    name="tiny",
    families=("resnet",),
    budgets=(1_500, 3_000),
    members=(2,),
    designs=("single", "deq"),
    depth=8,
    config=TrainConfig(epochs=1, batch_size=32),
    measure="none",
)
EXECUTORS_PER_BUDGET = 1 + 3  # the single network's loop; the ensemble's loop, fused, vmap


@pytest.fixture(scope="module")
def digits():
    return {"digits": load_dataset("digits")}


@pytest.fixture
def store(tmp_path, digits):
    """A study whose runs are all done (marked so: nothing trains)."""
    with Store.open(tmp_path / "results.db") as opened:
        register_study(opened, STUDY, digits)
        while (run := opened.claim_next("tiny", "trainer:1")) is not None:
            opened.finish(run["run_id"], {"test_accuracy": 0.9})
        yield opened


def row(run_id, budget, design_class, k, member, seed=0, status="done"):
    """A row as `Store.runs` gives it, with what `budget_groups` reads."""
    return {
        "run_id": run_id,
        "status": status,
        "family": "resnet",
        "dataset": "digits",
        "budget_params": budget,
        "total_params": budget,
        "design_class": design_class,
        "num_members": k,
        "member": member,
        "seed": seed,
        "config": CONFIG,
    }


# --- which designs are measured together --------------------------------------------------


def test_each_budget_pairs_its_ensembles_with_its_single_network_once_per_design():
    def kept() -> list:
        return []

    runs = [
        row("s1", 3_000, "single", 1, "resnet-8-3", seed=1),
        row("s0", 3_000, "single", 1, "resnet-8-3", seed=0),
        row("d0", 3_000, "deq", 2, "resnet-8-2", seed=0),
        row("w0", 3_000, "weq", 2, "resnet-8-2", seed=0, status="failed"),
        row("a", 1_500, "deq", 2, "resnet-8-1", seed=0),
        row("b", 1_500, "deq", 2, "resnet-8-1", seed=1),  # its trained weights were kept
        row("c", 1_500, "single", 1, "resnet-8-2", seed=0),
    ]
    groups = budget_groups(runs, {"digits": DIGITS}, lambda run: {"b": kept}.get(run["run_id"]))
    assert [group.budget_params for group in groups] == [1_500, 3_000]
    small, large = groups
    assert [(d.run_id, d.design) for d in small.designs] == [
        ("c", "resnet-8-2"),
        ("b", "2x resnet-8-1"),
    ]
    assert small.designs[1].weights is kept
    assert [(d.run_id, d.design) for d in large.designs] == [
        ("s0", "resnet-8-3"),
        ("d0", "2x resnet-8-2"),
    ]
    assert large.single is not None and large.single.run_id == "s0"
    assert large.config.epochs == 1 and large.input_spec == DIGITS


def test_runs_with_another_precision_are_measured_apart():
    runs = [
        row("s", 3_000, "single", 1, "resnet-8-3"),
        {**row("d", 3_000, "deq", 2, "resnet-8-2"), "config": {**CONFIG, "precision": "bf16"}},
    ]
    groups = budget_groups(runs, {"digits": DIGITS})
    assert [(g.config.precision, [d.run_id for d in g.designs]) for g in groups] == [
        ("bf16", ["d"]),
        ("fp32", ["s"]),
    ]
    assert groups[0].single is None


# --- timing a budget side by side ---------------------------------------------------------


def test_every_design_executor_and_batch_size_is_measured_side_by_side():
    (group,) = budget_groups(
        [row("s", 3_000, "single", 1, "resnet-8-3"), row("d", 3_000, "deq", 2, "resnet-8-2")],
        {"digits": DIGITS},
    )
    labels = []
    rows = measure_group(group, "cpu", (4, 1), settings=FAST, on_batch=labels.append)
    assert labels == ["resnet 3,000 on digits, batch 1", "resnet 3,000 on digits, batch 4"]
    assert {(r.design, r.executor, r.batch_size) for r in rows} == {
        (design, executor, size)
        for size in (1, 4)
        for design, executor in [("resnet-8-3", "loop")]
        + [("2x resnet-8-2", name) for name in ("loop", "fused", "vmap")]
    }
    for r in rows:
        assert 0 < r.latency_q1_ms <= r.latency_ms <= r.latency_q3_ms < math.inf
        assert r.throughput_images_per_s == pytest.approx(1000 * r.batch_size / r.latency_ms)
        assert r.rounds == 3 and r.weights == "fresh"
        assert (r.single_design, r.single_run_id) == ("resnet-8-3", "s")
        assert r.ratio_q1 is not None and r.ratio_to_single is not None and r.ratio_q3 is not None
        assert 0 < r.ratio_q1 <= r.ratio_to_single <= r.ratio_q3 < math.inf
    for size in (1, 4):
        ensemble = [r for r in rows if r.batch_size == size and r.num_members == 2]
        (chosen,) = [r for r in ensemble if r.chosen]
        assert chosen.latency_ms == min(r.latency_ms for r in ensemble)
        (single,) = [r for r in rows if r.batch_size == size and r.num_members == 1]
        assert single.chosen and single.ratio_to_single == 1.0


def test_a_budget_whose_single_network_did_not_finish_has_no_ratios():
    (group,) = budget_groups([row("d", 3_000, "deq", 2, "resnet-8-2")], {"digits": DIGITS})
    rows = measure_group(group, "cpu", (1,), settings=FAST)
    assert len(rows) == 3
    assert all(r.ratio_to_single is None and r.single_design is None for r in rows)


def test_trained_weights_kept_in_a_checkpoint_are_measured(tmp_path):
    member = ps.build_model(ps.parse_arch("resnet-8-2"), DIGITS, seed=3)
    path = tmp_path / "d.pt"
    save_checkpoint(path, {"member_states": [member.state_dict()] * 2, "best_states": []})
    (group,) = budget_groups(
        [row("d", 3_000, "deq", 2, "resnet-8-2")], {"digits": DIGITS}, trained_weights(tmp_path)
    )
    rows = measure_group(group, "cpu", (1,), settings=FAST)
    assert {r.weights for r in rows} == {"trained"}


def test_the_weights_a_run_kept_are_measured_and_checked_against_their_hash(tmp_path, digits):
    small = dataclasses.replace(STUDY, budgets=(1_500,), designs=("single",), measure="none")
    few = dataclasses.replace(
        digits["digits"],
        train_images=digits["digits"].train_images[:64],
        train_labels=digits["digits"].train_labels[:64],
    )
    with Store.open(tmp_path / "kept.db") as opened:
        run_study(opened, small, datasets={"digits": few}, artifacts_dir=tmp_path / "kept")
        session = measure_study(opened, batch_sizes=(1,), settings=FAST, input_specs=DIGITS_ONLY)
        assert {m.weights for m in session.measurements} == {"trained"}
        (run,) = opened.runs("tiny")
        Path(run["weights_path"]).write_bytes(b"altered")
        with pytest.raises(ArtifactError, match=r"the weights of run \w+ were altered"):
            measure_study(opened, batch_sizes=(1,), settings=FAST, input_specs=DIGITS_ONLY)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RoundSettings(min_rounds=2), "min_rounds must be >= 3, got 2"),
        (lambda: RoundSettings(min_rounds=5, max_rounds=4), "max_rounds must be >= min_rounds"),
        (lambda: RoundSettings(budget_s=-1), "budget_s must be >= 0"),
        (
            lambda: measure_group(
                budget_groups([row("s", 3_000, "single", 1, "resnet-8-3")], {"digits": DIGITS})[0],
                "cpu",
                (0, 1),
            ),
            r"batch sizes must be one or more integers >= 1, got \[0, 1\]",
        ),
    ],
)
def test_measuring_options_are_checked(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


# --- a study into the database ------------------------------------------------------------


def test_a_study_is_measured_into_the_database_and_measuring_again_adds_a_session(store):
    progress = []
    first = measure_study(
        store,
        batch_sizes=(1, 4),
        num_threads=1,
        settings=FAST,
        input_specs={"digits": DIGITS},
        on_progress=lambda done, total, label: progress.append((done, total)),
    )
    assert progress == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert first.study == "tiny" and first.num_threads == 1 and first.not_finished == 0
    assert first.torch_version == torch.__version__ and first.device == "cpu"
    expected = 2 * EXECUTORS_PER_BUDGET * 2  # budgets × executors × batch sizes
    assert len(first.measurements) == expected
    stored = store.measurements("tiny")
    assert len(stored) == expected
    assert {r["session_id"] for r in stored} == {first.session_id}
    assert {(r["num_threads"], r["device"], r["host"]) for r in stored} == {
        (1, "cpu", default_worker().rpartition(":")[0])
    }
    assert stored[0]["measured_at"] == first.measured_at
    assert sum(r["chosen"] for r in stored) == 2 * 2 * 2  # one per design and batch size

    second = measure_study(
        store, "tiny", batch_sizes=(1,), settings=FAST, input_specs={"digits": DIGITS}
    )
    sessions = [r["session_id"] for r in store.measurements("tiny")]
    assert sessions == [first.session_id] * expected + [second.session_id] * (expected // 2)
    json.dumps(second.to_dict())  # plain data


def test_measuring_is_refused_while_a_worker_trains_here(store, digits):
    register_study(store, dataclasses.replace(STUDY, name="more", seeds=(1,)), digits)
    store.claim_next("more", default_worker())  # this process: alive
    with pytest.raises(UsageError, match=r"cannot measure while 1 worker\(s\) train \("):
        measure_study(store, "tiny", settings=FAST, input_specs={"digits": DIGITS})


def test_a_study_without_finished_runs_is_refused(tmp_path, digits):
    with Store.open(tmp_path / "empty.db") as store:
        register_study(store, STUDY, digits)
        with pytest.raises(UsageError, match="study 'tiny' has no finished runs to measure"):
            measure_study(store, settings=FAST, input_specs={"digits": DIGITS})


def test_storing_measurements_replaces_a_sessions_part_and_names_an_unknown_run(store):
    run_id = store.runs("tiny")[0]["run_id"]
    session = {"session_id": "s1", "study": "tiny", "measured_at": datetime.now(UTC)}
    measured = {"run_id": run_id, "budget_params": 1_500, "batch_size": 1, "executor": "loop"}
    store.add_measurements(session, [{**measured, "latency_ms": 2.0, "chosen": True}])
    store.add_measurements(session, [{**measured, "latency_ms": 3.0, "chosen": False}])
    (stored,) = store.measurements()
    assert (stored["latency_ms"], stored["chosen"]) == (3.0, False)
    with pytest.raises(StoreError, match="cannot store measurements of unknown run 'nope'"):
        store.add_measurements(session, [{**measured, "run_id": "nope"}])
    with pytest.raises(StoreError, match="measured_at', a time-zone aware datetime"):
        store.add_measurements({**session, "measured_at": "today"}, [measured])
    with pytest.raises(StoreError, match="a measurement needs run_id, budget_params"):
        store.add_measurements(session, [{"run_id": run_id}])


def test_a_version_2_database_gains_the_measurements_table(tmp_path, digits):
    path = tmp_path / "old.db"
    with Store.open(path) as store:
        register_study(store, STUDY, digits)
    with sqlite3.connect(path) as connection:  # what version 2 wrote: no measurements table
        connection.execute("DROP TABLE measurements")
        connection.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with Store.open(path) as store:
        assert len(store.runs("tiny")) == 4
        assert store.measurements("tiny") == []
    with sqlite3.connect(path) as connection:
        (version,) = connection.execute("SELECT value FROM meta").fetchone()
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    assert version == str(SCHEMA_VERSION)
    assert "measurements" in tables


# --- each run says how many workers shared the machine -------------------------------------


def test_a_finished_run_records_its_workers_and_whether_its_latency_was_under_load():
    trained = RunResult(a_train_summary())
    measured = dataclasses.replace(trained, measured=MeasuredRun(a_measure_result()))
    alone = with_load(Outcome("done", measured), 1)
    assert alone == Outcome("done", dataclasses.replace(measured, load=TrainingLoad(1, False)))
    stored = alone.result.to_dict() if alone.result else {}
    assert (stored["concurrent_workers"], stored["latency_under_load"]) == (1, False)
    busy = with_load(Outcome("done", measured), 3).result
    assert busy is not None and busy.to_dict()["latency_under_load"] is True
    # Without latency (not measured, or its measurement failed) there is no load to note.
    not_timed = MeasuredRun(None, measure_error="RuntimeError: no timer")
    for result in (trained, dataclasses.replace(trained, measured=not_timed)):
        unmeasured = with_load(Outcome("done", result), 2).result
        assert unmeasured is not None
        stored = unmeasured.to_dict()
        assert stored["concurrent_workers"] == 2 and "latency_under_load" not in stored
    failed = Outcome("failed", reason="oom")
    assert with_load(failed, 2) == failed


# --- the command ----------------------------------------------------------------------------


runner = CliRunner()


def test_the_command_prints_side_by_side_ratios_at_each_batch_size(store):
    result = runner.invoke(
        app, ["measure", "--db", store.url, "--batch", "1,4", "--budget-s", "0", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "4 designs of study tiny measured side by side on cpu, 1 thread(s)" in result.stdout
    assert "budget 1,500 parameters" in result.stdout and "budget 3,000" in result.stdout
    assert "2x resnet-8-2 (deq)" in result.stdout
    assert "× single" in result.stdout
    assert len(store.measurements("tiny")) == 2 * EXECUTORS_PER_BUDGET * 2


def test_the_command_prints_json(store):
    result = runner.invoke(
        app, ["measure", "--db", store.url, "--study", "tiny", "--batch", "2", "--budget-s", "0",
              "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    session = json.loads(result.stdout)
    assert session["batch_sizes"] == [2] and session["study"] == "tiny"
    assert {m["batch_size"] for m in session["measurements"]} == {2}
    assert len(session["measurements"]) == 2 * EXECUTORS_PER_BUDGET


@pytest.mark.parametrize("batch", ["0,1", "one", ""])
def test_the_command_names_a_bad_batch_size(store, batch):
    result = runner.invoke(app, ["measure", "--db", store.url, "--batch", batch])
    assert result.exit_code == 2
    assert f"--batch must be batch sizes >= 1 such as 1,8,64, got '{batch}'" in result.stderr


def test_recommend_answers_with_the_side_by_side_figures_once_measured(store):
    def candidates() -> tuple[dict, list]:
        result = runner.invoke(
            app, ["recommend", "--db", store.url, "--budget", "3000", "--batch", "4",
                  "--max-latency-ms", "1000", "--json"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)
        return {c["design"]: c["latency_source"] for c in answer["candidates"]}, answer["notes"]

    sources, notes = candidates()
    assert set(sources.values()) == {None}  # trained with --measure none: nothing to say
    measure_study(store, batch_sizes=(4,), settings=FAST, input_specs={"digits": DIGITS})
    sources, notes = candidates()
    assert sources == {"resnet-8-3": "side-by-side", "2x resnet-8-2": "side-by-side"}
    assert not [note for note in notes if note.startswith("latency at batch 4")]


def test_a_studys_runs_record_how_many_workers_shared_the_machine(tmp_path, digits):
    small = dataclasses.replace(STUDY, budgets=(1_500,), designs=("single",), measure="latency")
    few = dataclasses.replace(
        digits["digits"],
        train_images=digits["digits"].train_images[:64],
        train_labels=digits["digits"].train_labels[:64],
    )
    with Store.open(tmp_path / "trained.db") as opened:
        run_study(opened, small, datasets={"digits": few})
        (run,) = opened.runs("tiny")
    assert run["metrics"]["concurrent_workers"] == 1
    assert run["metrics"]["latency_under_load"] is False
