"""The Ray executor: a small study on a local Ray instance, into the same database."""

from __future__ import annotations

import dataclasses

import pytest

from paramsplit.data import load_dataset
from paramsplit.specs import TrainConfig
from paramsplit.store import Store
from paramsplit.study import StudyDefinition, run_study

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    # Two CPUs (this machine's), a small object store and no dashboard: starts in seconds.
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False,
             logging_level="error")  # fmt: skip
    yield
    ray.shutdown()


def test_a_study_runs_as_ray_tasks_into_the_same_database(tmp_path, local_ray):
    from paramsplit.study.on_ray import run_study_on_ray

    digits = load_dataset("digits")
    small = {"digits": dataclasses.replace(digits, train_images=digits.train_images[:128],
                                           train_labels=digits.train_labels[:128])}  # fmt: skip
    config = TrainConfig(epochs=2, batch_size=64)
    study = StudyDefinition(
        "on-ray", ("resnet",), (5_000,), members=(2,), designs=("single", "deq"), config=config
    )
    store = Store.open(tmp_path / "ray.db")
    counts = run_study_on_ray(store, study, small, checkpoint_dir=tmp_path / "checkpoints",
                              artifacts_dir=tmp_path / "artifacts")  # fmt: skip
    assert counts == {"done": 2, "running": 0, "pending": 0, "failed": 0, "stopped": 0,
                      "total": 2}  # fmt: skip
    for run in store.runs("on-ray"):
        assert 0 <= run["test_accuracy"] <= 1
        assert run["latency_ms_batch1"] > 0 and run["peak_train_memory_bytes"] > 0  # measured
        assert [e["epoch"] for e in store.epochs(run["run_id"])] == [1, 2]
        assert run["weights_path"] == str(tmp_path / "artifacts" / f"{run['run_id']}.safetensors")
    # The same study locally: everything is already done, nothing runs again.
    assert run_study(store, study, datasets=small)["done"] == 2
    assert all(run["attempts"] == 1 for run in store.runs("on-ray"))
