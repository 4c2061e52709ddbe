"""Adaptive studies run for real: the policy hands out runs, stops them as stopped (never
done, never failed), resumes them, and a study killed mid-run resumes to the same end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

import paramsplit as ps
from paramsplit.adaptive import answer, decide
from paramsplit.adaptive.stored import load_records, load_settings
from paramsplit.cli.app import app
from paramsplit.errors import StudyFileError
from paramsplit.specs import TrainConfig
from paramsplit.store import Store
from paramsplit.study import StudyDefinition, checkpoint_dir_for, register_study, run_study
from paramsplit.study.adaptive import AdaptiveScheduler
from paramsplit.study.file import load_study_file


def adaptive_study(**changes) -> StudyDefinition:
    fields = {
        "name": "adaptive",
        "families": ("resnet",),
        "budgets": (5_000, 10_000, 20_000, 40_000),
        "members": (2,),
        "designs": ("single", "deq"),
        "seeds": (0, 1, 2),
        "config": TrainConfig(epochs=2, batch_size=64),
        "measure": "none",
        "adaptive": True,
    }
    return StudyDefinition(**{**fields, **changes})


def test_an_adaptive_study_trains_what_its_policy_wants_and_says_what_it_skipped(
    tmp_path, small_digits
):
    db = str(tmp_path / "study.db")
    store = Store.open(db)
    counts = run_study(store, adaptive_study(), datasets=small_digits, executor="fused")
    decision = decide(load_settings(store, "adaptive"), load_records(store, "adaptive"))
    assert decision.finished
    # The full grid is registered; what the policy skipped stays pending, never done.
    assert counts["total"] == 4 * 2 * 3
    assert counts["running"] == counts["failed"] == 0
    assert 0 < counts["done"] < counts["total"]
    assert counts["done"] + counts["pending"] + counts["stopped"] == counts["total"]
    # Every seed of every design at the question budget (40k), where it recommends.
    top = [r for r in store.runs("adaptive") if r["budget_params"] == 40_000]
    assert len(top) == 6 and all(r["status"] == "done" for r in top)

    result = CliRunner().invoke(app, ["status", "--db", db, "--study", "adaptive"])
    assert result.exit_code == 0, result.output
    assert "adaptive" in result.output and "the policy: finished" in result.output
    assert "member-epochs" in result.output
    assert "exact search: a walk down from the largest budget" in " ".join(result.output.split())
    assert "walk-down" in result.output  # each comparison's search, with its note
    report = CliRunner().invoke(
        app, ["report", "--db", db, "--html", str(tmp_path / "r.html"), "--budget", "40k"]
    )
    assert report.exit_code == 0, report.output
    assert "Adaptive study" in report.output and "compute:" in report.output
    page = (tmp_path / "r.html").read_text()
    assert "Adaptive study: what was skipped" in page
    assert "ran adaptively, with the exact search" in page


def test_a_stopped_run_is_stored_as_stopped_with_its_curve_and_resumes_if_wanted_again(
    tmp_path, small_digits, monkeypatch
):
    # Stop every ensemble once after its first epoch, as an early verdict would. The policy
    # has no verdict for them, so it wants them again: each resumes from its checkpoint.
    stopped_once: set[str] = set()

    def stop_once(self, run, epoch):
        if run["spec"]["num_members"] > 1 and run["run_id"] not in stopped_once:
            stopped_once.add(run["run_id"])
            return "early loss at epoch 1 (a test)"
        return None

    monkeypatch.setattr(AdaptiveScheduler, "should_stop", stop_once)
    seen: list[dict] = []
    store = Store.open(str(tmp_path / "study.db"))
    study = adaptive_study(budgets=(5_000, 10_000), seeds=(0, 1), config=TrainConfig(epochs=3,
                           batch_size=64))  # fmt: skip
    run_study(store, study, datasets=small_digits, executor="fused",
              on_run=lambda event, run: seen.append(run) if event == "end" else None,
              checkpoint_dir=checkpoint_dir_for(str(tmp_path / "study.db")))  # fmt: skip
    stops = [r for r in seen if r["status"] == "stopped"]
    assert stops and all(r["reason"] == "early loss at epoch 1 (a test)" for r in stops)
    assert all(r["epochs_trained"] == 1 and r["test_accuracy"] is None for r in stops)
    for run in stops:
        after = store.run(run["run_id"])
        assert after["status"] == "done" and after["attempts"] == 2
        assert [e["epoch"] for e in store.epochs(run["run_id"])] == [1, 2, 3]


def test_a_study_file_can_ask_for_an_adaptive_study(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('families = ["resnet"]\nbudgets = ["10k"]\nadaptive = true\n')
    assert load_study_file(path).adaptive
    path.write_text('families = ["resnet"]\nbudgets = ["10k"]\nadaptive = "yes"\n')
    with pytest.raises(
        StudyFileError, match='field \'adaptive\': expected true, false, "exact" or "bisection"'
    ):
        load_study_file(path)


def test_a_study_that_is_not_adaptive_keeps_its_stored_definition():
    # Studies registered before the field existed must keep their names and digests.
    assert "adaptive" not in adaptive_study(adaptive=False).to_dict()
    assert adaptive_study().to_dict()["adaptive"] is True


# An adaptive study in a child process, two workers, checkpoints beside the database.
CHILD = """
import dataclasses, sys, torch
from paramsplit.data import load_dataset
from paramsplit.errors import StudyFileError
from paramsplit.specs import TrainConfig
from paramsplit.store import Store
from paramsplit.study import StudyDefinition, checkpoint_dir_for, register_study, run_study
if __name__ == "__main__":  # worker processes import this file; they must not run it
    torch.set_num_threads(1)
    db = sys.argv[1]
    digits = load_dataset("digits")
    small = dataclasses.replace(digits, train_images=digits.train_images[:256],
                                train_labels=digits.train_labels[:256])
    study = StudyDefinition("killed", ("resnet",), (5_000, 10_000, 20_000, 40_000),
                            members=(2,), designs=("single", "deq"), seeds=(0, 1, 2),
                            config=TrainConfig(epochs=3, batch_size=64), measure="none",
                            adaptive=True)
    run_study(Store.open(db), study, datasets={"digits": small}, executor="fused",
              checkpoint_dir=checkpoint_dir_for(db), workers=2, threads=1)
"""


@pytest.mark.slow  # two adaptive studies of ~14 runs each, in child processes: ~1 min
def test_an_adaptive_study_killed_mid_run_resumes_to_the_same_decisions(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    db, reference = str(tmp_path / "killed.db"), str(tmp_path / "whole.db")
    assert subprocess.run([sys.executable, str(script), reference], timeout=600).returncode == 0

    child = subprocess.Popen([sys.executable, str(script), db], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:  # one open per look: the child writes meanwhile (a lock, no study yet)
                with Store.open(db) as store:
                    runs = store.runs("killed")
                    done = [r for r in runs if r["status"] == "done"]
                    running = [r for r in runs if r["status"] == "running"]
                    going = len(done) >= 3 and running and store.epochs(running[0]["run_id"])
            except ps.StoreError:
                continue
            if going:
                break
        else:
            pytest.fail("the child study never got going")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    before = {r["run_id"]: r["finished_at"] for r in Store.open(db).runs("killed")
              if r["status"] == "done"}  # fmt: skip

    assert subprocess.run([sys.executable, str(script), db], timeout=600).returncode == 0
    store, whole = Store.open(db), Store.open(reference)
    settings = load_settings(store, "killed")
    decision = decide(settings, load_records(store, "killed"))
    assert decision.finished
    after = {r["run_id"]: r for r in store.runs("killed")}
    for run_id, finished_at in before.items():  # finished runs were not redone
        assert after[run_id]["finished_at"] == finished_at
    # The same runs trained to the same results as the study that was never killed.
    trained = {r["run_id"]: r["test_accuracy"] for r in after.values() if r["status"] == "done"}
    expected = {r["run_id"]: r["test_accuracy"] for r in whole.runs("killed")
                if r["status"] == "done"}  # fmt: skip
    assert trained == expected


@pytest.mark.slow  # a full study and an adaptive one, in process: ~1 min
def test_a_live_adaptive_study_trains_exactly_what_the_replay_of_its_full_study_chose(
    tmp_path, small_digits
):
    full_db, adaptive_db = str(tmp_path / "full.db"), str(tmp_path / "adaptive.db")
    full = adaptive_study(name="full", adaptive=False)
    run_study(Store.open(full_db), full, datasets=small_digits, executor="fused")
    run_study(Store.open(adaptive_db), adaptive_study(), datasets=small_digits, executor="fused")

    replayed = CliRunner().invoke(app, ["replay", "--db", full_db, "--json"])
    assert replayed.exit_code == 0, replayed.output
    result = json.loads(replayed.output)
    store = Store.open(adaptive_db)
    live = decide(load_settings(store, "adaptive"), load_records(store, "adaptive"))
    saving = answer.saving(load_settings(store, "adaptive"), load_records(store, "adaptive"), live)
    assert saving.member_epochs == result["saving"]["member_epochs"]
    assert saving.runs_trained == result["saving"]["runs_trained"]
    text = CliRunner().invoke(app, ["replay", "--db", full_db])
    assert "replay of full" in text.output and "recommendation at 40k" in text.output


def test_replay_refuses_a_study_that_is_not_finished(tmp_path, small_digits):
    db = str(tmp_path / "study.db")
    register_study(Store.open(db), adaptive_study(name="unfinished"), small_digits)
    result = CliRunner().invoke(app, ["replay", "--db", db])
    assert result.exit_code == 2
    assert "replay needs a finished full-grid study" in result.output
    early = CliRunner().invoke(app, ["replay", "--db", db, "--early"])
    assert "--early needs --policy bisection" in early.output
    bad = CliRunner().invoke(app, ["replay", "--db", db, "--policy", "greedy"])
    assert "--policy must be one of exact, bisection, adaptive, got 'greedy'" in bad.output


@pytest.mark.slow  # starts Ray: ~1 min
def test_an_adaptive_study_runs_on_ray_to_the_policys_end(tmp_path, small_digits):
    ray = pytest.importorskip("ray")
    from paramsplit.study.on_ray import run_study_on_ray

    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False,
             logging_level="error")  # fmt: skip
    try:
        store = Store.open(tmp_path / "ray.db")
        counts = run_study_on_ray(store, adaptive_study(), small_digits, executor="fused")
    finally:
        ray.shutdown()
    settings = load_settings(store, "adaptive", early=False)
    assert decide(settings, load_records(store, "adaptive")).finished
    assert 0 < counts["done"] < counts["total"] and counts["stopped"] == counts["running"] == 0
