"""Studies: every run committed as it finishes, finished runs never redone, failures recorded."""

from __future__ import annotations

import dataclasses

import pytest

import paramsplit as ps
from paramsplit.cli.study_commands import split_budgets
from paramsplit.data import load_dataset
from paramsplit.specs import TrainConfig
from paramsplit.store import Store
from paramsplit.study import StudyDefinition, expand_study, run_study


@pytest.fixture(scope="module")
def small_digits():
    digits = load_dataset("digits")
    return {"digits": dataclasses.replace(digits, train_images=digits.train_images[:128],
                                          train_labels=digits.train_labels[:128])}  # fmt: skip


def _study(**changes):
    fields = {
        "name": "tiny",
        "families": ("resnet",),
        "budgets": (5_000, 10_000),
        "members": (2,),
        "config": TrainConfig(epochs=1, batch_size=64),
    }
    return StudyDefinition(**{**fields, **changes})


def test_a_study_runs_once_and_a_rerun_redoes_nothing(tmp_path, small_digits):
    store = Store.open(tmp_path / "study.db")
    study = _study()
    specs, infeasible = expand_study(study, small_digits)
    counts = run_study(store, study, datasets=small_digits)
    assert counts == {"done": len(specs), "running": 0, "pending": 0, "failed": 0,
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


def test_an_erroring_run_is_recorded_with_its_reason(tmp_path, small_digits):
    store = Store.open(tmp_path / "study.db")
    study = _study(budgets=(5_000,), designs=("single", "deq"))
    counts = run_study(store, study, executor="no-such-executor", datasets=small_digits)
    assert counts["failed"] == counts["total"] == 2
    assert all("unknown executor" in run["reason"] for run in store.runs("tiny"))


def test_study_definitions_are_validated():
    with pytest.raises(ps.UsageError, match="unknown design class 'both'"):
        _study(designs=("single", "both"))
    with pytest.raises(ps.UsageError, match="a study needs at least one of budgets"):
        _study(budgets=())


def test_budget_lists_keep_thousands_separators():
    assert split_budgets("100k,300k,1M") == ["100k", "300k", "1M"]
    assert split_budgets("1,000,000,2M") == ["1,000,000", "2M"]
    assert split_budgets("25000, 50000") == ["25000", "50000"]
