"""Studies: every run committed as it finishes, finished runs never redone, failures recorded."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import paramsplit as ps
import paramsplit.study.training as study_training
from paramsplit.specs import TrainConfig
from paramsplit.store import Store, default_worker
from paramsplit.study import (
    StudyDefinition,
    expand_study,
    register_study,
    run_spec,
    run_study,
    train_run,
)
from paramsplit.study.file import load_study_file


def _study(**changes):
    fields = {
        "name": "tiny",
        "families": ("resnet",),
        "budgets": (5_000, 10_000),
        "members": (2,),
        "config": TrainConfig(epochs=1, batch_size=64),
        "measure": "none",  # measuring has tests of its own
    }
    return StudyDefinition(**{**fields, **changes})


def test_a_study_runs_once_and_a_rerun_redoes_nothing(tmp_path, small_digits):
    store = Store.open(tmp_path / "study.db")
    study = _study()
    specs, infeasible = expand_study(study, small_digits)
    counts = run_study(store, study, datasets=small_digits)
    assert counts == {"done": len(specs), "running": 0, "pending": 0, "failed": 0, "stopped": 0,
                      "total": len(specs)}  # fmt: skip
    finished = {run["run_id"]: run["finished_at"] for run in store.runs("tiny")}
    assert run_study(store, study, datasets=small_digits)["done"] == len(specs)
    assert {run["run_id"]: run["finished_at"] for run in store.runs("tiny")} == finished
    assert all(len(store.epochs(run_id)) == 1 for run_id in finished)
    # infeasible designs are reported, not silently skipped
    assert all(item.reason for item in infeasible)


def test_a_diverging_run_is_recorded_and_the_study_goes_on(tmp_path, small_digits):
    store = Store.open(tmp_path / "study.db")
    study = _study(budgets=(5_000,), designs=("single",), config=TrainConfig(epochs=1, lr=1e30))
    counts = run_study(store, study, datasets=small_digits)
    assert counts["failed"] == 1 and counts["pending"] == 0
    (run,) = store.runs("tiny")
    assert run["status"] == "failed" and run["reason"].startswith("diverged")


def test_retry_failed_tries_a_run_that_always_fails_once_more_and_stops(tmp_path, small_digits):
    store = Store.open(tmp_path / "study.db")
    study = _study(budgets=(5_000,), designs=("single",), config=TrainConfig(epochs=1, lr=1e30))
    run_study(store, study, datasets=small_digits)
    claimed = []

    def on_run(event, run):
        if event == "start":
            claimed.append(run["run_id"])
            # Fail here rather than hang: the bug claimed the same failed run forever.
            assert len(claimed) == 1, "a run that failed again was claimed again"

    counts = run_study(store, study, datasets=small_digits, retry_failed=True, on_run=on_run)
    assert counts["failed"] == counts["total"] == 1
    (run,) = store.runs("tiny")
    assert run["attempts"] == 2 and run["reason"].startswith("diverged")


def test_an_erroring_run_is_recorded_with_its_reason(tmp_path, small_digits, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("the training step broke")

    monkeypatch.setattr(study_training, "train_design", fail)
    store = Store.open(tmp_path / "study.db")
    study = _study(budgets=(5_000,), designs=("single", "deq"))
    counts = run_study(store, study, datasets=small_digits)
    assert counts["failed"] == counts["total"] == 2
    reasons = {run["reason"] for run in store.runs("tiny")}
    assert reasons == {"error: RuntimeError: the training step broke"}


def test_an_unknown_executor_is_refused_before_anything_is_registered(tmp_path, small_digits):
    # It used to be stored as a failed run, which the corrected command then never retried.
    store = Store.open(tmp_path / "study.db")
    with pytest.raises(ps.ConfigError, match="field 'executor': unknown executor 'turbo'"):
        run_study(store, _study(), executor="turbo", datasets=small_digits)
    assert store.studies() == []


def test_study_definitions_are_validated():
    with pytest.raises(ps.UsageError, match="unknown design class 'both'"):
        _study(designs=("single", "both"))
    with pytest.raises(ps.UsageError, match="a study needs families and budgets, or single"):
        _study(budgets=())
    with pytest.raises(
        ps.UsageError, match="measure must be one of all, first-seed, latency, none, got 'some'"
    ):
        _study(measure="some")


def test_runs_are_measured_after_training_and_memory_once_per_design(tmp_path, small_digits):
    store = Store.open(tmp_path / "study.db")
    study = _study(budgets=(5_000,), designs=("single", "deq"), seeds=(3, 7), measure="first-seed")
    run_study(store, study, datasets=small_digits)
    runs = store.runs("tiny")
    assert [run["status"] for run in runs] == ["done"] * 4
    for run in runs:
        assert run["latency_ms_batch1"] > 0 and run["throughput_images_per_s"] > 0
        assert run["metrics"]["loop_latency_ms_batch1"] > 0
        # Memory does not depend on the seed: measured for the lowest seed only.
        assert (run["peak_train_memory_bytes"] is not None) == (run["seed"] == 3)
        assert (run["peak_inference_memory_bytes"] is not None) == (run["seed"] == 3)
    # What is measured does not change the runs: measuring nothing finds them all done.
    again = dataclasses.replace(study, name="again", measure="none")
    register_study(store, again, small_digits)
    assert [run["run_id"] for run in store.runs("again")] == [run["run_id"] for run in runs]
    assert store.status_counts("again")["done"] == 4


def test_a_failed_measurement_keeps_the_trained_result(tmp_path, small_digits, monkeypatch):
    def broken_timer(*args, **kwargs):
        raise RuntimeError("no timer here")

    monkeypatch.setattr("paramsplit.measure.design.measure_design", broken_timer)
    store = Store.open(tmp_path / "study.db")
    study = _study(budgets=(5_000,), designs=("single",), measure="latency")
    assert run_study(store, study, datasets=small_digits)["done"] == 1
    (run,) = store.runs("tiny")
    assert 0 <= run["test_accuracy"] <= 1 and run["latency_ms_batch1"] is None
    assert run["metrics"]["measure_error"] == "RuntimeError: no timer here"


def test_two_workers_finish_a_study_and_do_each_run_once(database, small_digits):
    store = Store.open(database)
    me = default_worker()

    def wait_for_the_other_worker(event, run):
        # This process's first run waits until the spawned worker (seconds to start) has
        # claimed one, so that both surely work.
        deadline = time.monotonic() + 120
        while event == "start" and all(r["worker"] in (None, me) for r in store.runs("tiny")):
            assert time.monotonic() < deadline, "the second worker never claimed a run"
            time.sleep(0.1)

    study = _study(seeds=(0, 1))
    counts = run_study(
        store, study, datasets=small_digits, workers=2, on_run=wait_for_the_other_worker
    )
    runs = store.runs("tiny")
    assert (
        counts["done"] == counts["total"] == len(runs) == len(expand_study(study, small_digits)[0])
    )
    assert all(run["attempts"] == 1 for run in runs)  # nobody ran a run twice
    assert len({run["worker"] for run in runs}) == 2


def test_workers_must_be_at_least_one(tmp_path, small_digits):
    with pytest.raises(ps.UsageError, match="workers must be >= 1, got 0"):
        run_study(Store.open(tmp_path / "study.db"), _study(), datasets=small_digits, workers=0)


# A study in a child process: small digits, 3 epochs a run, checkpoints beside the database.
CHILD = """
import dataclasses, sys, torch
from paramsplit.data import load_dataset
from paramsplit.specs import TrainConfig
from paramsplit.store import Store
from paramsplit.study import StudyDefinition, checkpoint_dir_for, run_study
if __name__ == "__main__":  # worker processes import this file; they must not run it
    torch.set_num_threads(1)
    db, workers = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
    digits = load_dataset("digits")
    small = dataclasses.replace(digits, train_images=digits.train_images[:256],
                                train_labels=digits.train_labels[:256])
    study = StudyDefinition("killed", ("resnet",), (5_000, 10_000), members=(2,),
                            designs=("single", "deq"), config=TrainConfig(epochs=3, batch_size=64),
                            measure="none")
    run_study(Store.open(db), study, datasets={"digits": small},
              checkpoint_dir=checkpoint_dir_for(db), workers=workers)
"""


def registered(db: str, study: str) -> bool:
    """Whether the study's runs are in the database yet (no file or no study: not yet)."""
    with contextlib.suppress(ps.StoreError), Store.open(db) as store:
        return bool(store.runs(study))
    return False


def test_a_study_killed_mid_run_resumes_to_completion(tmp_path):
    db = str(tmp_path / "study.db")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), db])
    try:
        # Wait until one run is done and the next has finished an epoch (so has a checkpoint).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if not os.path.exists(db):
                continue
            store = Store.open(db)
            try:
                runs = store.runs("killed")
            except ps.StoreError:  # the study is not registered yet
                continue
            running = [r for r in runs if r["status"] == "running"]
            done = [r for r in runs if r["status"] == "done"]
            if done and running and store.epochs(running[0]["run_id"]):
                break
        else:
            pytest.fail("the child study never got going")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    interrupted = running[0]["run_id"]
    before = {r["run_id"]: r for r in Store.open(db).runs("killed") if r["status"] == "done"}
    assert (tmp_path / "study.checkpoints" / f"{interrupted}.pt").exists()

    # The same command again: it takes over the dead process's run and finishes the study.
    assert subprocess.run([sys.executable, str(script), db], timeout=300).returncode == 0
    store = Store.open(db)
    runs = store.runs("killed")
    assert store.status_counts("killed") == {"done": 4, "running": 0, "pending": 0,
                                             "failed": 0, "stopped": 0, "total": 4}  # fmt: skip
    assert len({r["run_id"] for r in runs}) == len(runs) == 4
    for run_id, run in before.items():  # finished runs were not redone
        after = store.run(run_id)
        assert after["finished_at"] == run["finished_at"]
        assert after["test_accuracy"] == run["test_accuracy"]
    assert [e["epoch"] for e in store.epochs(interrupted)] == [1, 2, 3]
    assert store.run(interrupted)["attempts"] == 2
    assert not list((tmp_path / "study.checkpoints").glob("*.pt"))


@pytest.mark.slow  # starts a study with two workers in a child process: ~20 s
def test_ctrl_c_stops_every_worker_and_gives_their_runs_back(tmp_path):
    db = str(tmp_path / "study.db")
    script = tmp_path / "child.py"
    script.write_text(CHILD.replace("epochs=3", "epochs=500"))  # runs far longer than the test
    parent = subprocess.Popen([sys.executable, str(script), db, "2"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        running: list[dict] = []
        while len(running) < 2:
            assert time.monotonic() < deadline, "the two workers never both got going"
            time.sleep(0.2)
            with contextlib.suppress(ps.StoreError):  # no database or study yet
                running = Store.open(db).runs("killed", status="running")
        os.kill(parent.pid, signal.SIGINT)  # what Ctrl-C sends (here to the parent alone)
        assert parent.wait(timeout=120) != 0
    finally:
        if parent.poll() is None:
            parent.kill()
    store = Store.open(db)
    assert store.status_counts("killed")["running"] == 0
    for run in running:
        assert store.run(run["run_id"])["status"] == "pending"
        pid = int(run["worker"].rpartition(":")[2])
        with pytest.raises(ProcessLookupError, match="No such process"):
            os.kill(pid, 0)  # the worker that ran it has ended


STUDY_TOML = """
name = "from-a-file"
families = ["resnet"]
budgets = ["5k", 10000]
members = [2]
designs = ["single", "deq"]
seeds = 2
measure = "first-seed"

[train]
epochs = 1
batch_size = 64
milestones = [0.5, 0.75]
"""


def test_a_study_file_defines_the_same_study_as_flags(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(STUDY_TOML)
    study = load_study_file(path)
    assert study.name == "from-a-file"
    assert study.budgets == (5_000, 10_000) and study.seeds == (0, 1)
    assert study.designs == ("single", "deq") and study.config.epochs == 1
    assert study.measure == "first-seed"


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        ("seeds = 2", "seeds = 2\nsedes = 3", r"study.toml, line 8: unknown field 'sedes'"),
        ('budgets = ["5k", 10000]', 'budgets = ["5x"]', r"line 4: field 'budgets': cannot parse"),
        ("epochs = 1", "epoch = 1", r"line 11: unknown training setting 'epoch'"),
        ("epochs = 1", "epochs = 0", "epochs must be >= 1"),
        ("members = [2]", "members = [2", "not valid TOML"),
        ('designs = ["single", "deq"]', 'designs = ["both"]', "unknown design class 'both'"),
        (
            'measure = "first-seed"',
            'measure = "memory"',
            r"line 8: field 'measure': expected one of all, first-seed, latency, none, got 'mem",
        ),
    ],
)
def test_a_bad_study_file_is_refused_with_file_field_and_line(tmp_path, replace, by, message):
    path = tmp_path / "study.toml"
    path.write_text(STUDY_TOML.replace(replace, by))
    with pytest.raises(ps.ParamSplitError, match=message):
        load_study_file(path)


def test_a_study_file_takes_every_training_setting_in_its_toml_type(tmp_path):
    path = tmp_path / "study.toml"
    settings = """
lr = 1                    # a whole number is a number
momentum = 0.8
nesterov = false
weight_decay = 0.0005
schedule = "multistep"
milestones = [0.25, 0.5]
gamma = 0.2
warmup_epochs = 0
label_smoothing = 0.1
precision = "bf16"
channels_last = true
compile = false
test_every_epoch = true
"""
    path.write_text(STUDY_TOML.replace("milestones = [0.5, 0.75]\n", "") + settings)
    config = load_study_file(path).config
    assert (config.batch_size, config.lr, config.nesterov) == (64, 1, False)
    assert config.milestones == (0.25, 0.5) and config.precision == "bf16"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("warmup_epochs = 0.5", r"line 14: field 'train.warmup_epochs': warmup_epochs must be a "),
        ("compile = 1", r"field 'train.compile': compile must be true or false, got 1$"),
        ("gamma = nan", r"field 'train.gamma': gamma must be a finite number, got nan$"),
        ("schedule = 3", r"field 'train.schedule': schedule must be text, got 3$"),
    ],
)
def test_a_training_setting_of_the_wrong_type_is_refused_at_its_line(tmp_path, setting, message):
    path = tmp_path / "study.toml"
    path.write_text(STUDY_TOML + setting + "\n")
    with pytest.raises(ps.StudyFileError, match=message):
        load_study_file(path)


def test_two_processes_share_a_study_and_do_each_run_once(tmp_path, database):
    db = database
    script = tmp_path / "child.py"
    script.write_text(CHILD.replace("epochs=3", "epochs=1"))
    # Register first, so neither process starts on an empty study and leaves. In tmp_path:
    # checkpoints for a server database go to the working directory's paramsplit-checkpoints.
    first = subprocess.Popen([sys.executable, str(script), db], cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not registered(db, "killed") and time.monotonic() < deadline:
        time.sleep(0.1)
    second = subprocess.Popen([sys.executable, str(script), db], cwd=tmp_path)
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0
    store = Store.open(db)
    runs = store.runs("killed")
    assert store.status_counts("killed")["done"] == len(runs) == 4
    assert all(run["attempts"] == 1 for run in runs)  # nobody ran a run twice
    workers = {run["worker"] for run in runs}
    assert len(workers) >= 1


def test_single_networks_expand_by_the_studys_method(small_digits):
    # From S(w, d): the single network, deq (same depth) and weq (same width), matched to |S|.
    study = StudyDefinition("grid", singles=("resnet-20-8", "resnet-14-8"), members=(2,))
    specs, _ = expand_study(study, small_digits)
    budget = ps.count_params(ps.parse_arch("resnet-20-8"), small_digits["digits"].input_spec())
    first = [s for s in specs if s.budget_params == budget]
    assert [s.design_class for s in first] == ["single", "deq", "weq"]
    assert first[0].member == "resnet-20-8" and first[0].ratio == 1.0
    assert first[1].member_depth == 20 and first[2].member_width == 8
    assert all(s.total_params <= s.budget_params for s in specs)


def test_a_study_file_grid_names_single_networks(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('grid = {family = "resnet", widths = [16, 24], depths = [26, 38]}\n')
    study = load_study_file(path)
    assert study.singles == ("resnet-26-16", "resnet-26-24", "resnet-38-16", "resnet-38-24")
    assert study.families == () and study.name == "grid"


def test_a_per_stage_member_trains_as_planned(small_digits):
    # A deq member with per-stage widths is rebuilt from its name (resnet-20-5.12.22), not
    # from its depth and nominal width, which would train a different network.
    data = small_digits["digits"]
    deq = ps.plan_single(ps.parse_arch("resnet-20-8"), [2], input_spec=data.input_spec())[1]
    assert not deq.member.uniform
    spec = run_spec(deq, "digits", TrainConfig(epochs=1, batch_size=64), seed=0)
    outcome = train_run(spec, data, "loop", torch.device("cpu"), None)
    assert outcome.status == "done" and outcome.result is not None, outcome.reason
    summary = outcome.result.train
    assert (summary.member, summary.member_params) == (deq.member.name, deq.member_params)
