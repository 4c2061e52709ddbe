"""Every finished run keeps the weights of its selected epoch: a safetensors file beside the
database, its path, size and sha256 in the run's row, checked whenever it is loaded."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from paramsplit.cli import app
from paramsplit.errors import ArtifactError, StudyFileError
from paramsplit.export import build_ensemble
from paramsplit.specs import TrainConfig, parse_design
from paramsplit.store import SCHEMA_VERSION, Store
from paramsplit.study import StudyDefinition, register_study, run_study
from paramsplit.study.artifacts import artifacts_dir_for, load_run_weights, write_run_weights
from paramsplit.study.file import load_study_file
from paramsplit.train import train_design
from paramsplit.train.checkpoint import write_atomically

runner = CliRunner()


def _study(**changes):
    fields = {
        "name": "kept",
        "families": ("resnet",),
        "budgets": (10_000,),
        "members": (2,),
        "designs": ("single", "deq"),
        "config": TrainConfig(epochs=2, batch_size=64),
        "measure": "none",
    }
    return StudyDefinition(**{**fields, **changes})


@pytest.fixture(scope="module")
def kept_study(tmp_path_factory, small_digits):
    """A finished study whose runs kept their weights: (store, its runs, the folder)."""
    folder = tmp_path_factory.mktemp("kept")
    store = Store.open(folder / "study.db")
    artifacts = artifacts_dir_for(str(folder / "study.db"))
    run_study(store, _study(), datasets=small_digits, artifacts_dir=artifacts)
    yield store.runs("kept"), artifacts
    store.close()


def _accuracy(model, images, labels) -> float:
    """The ensemble's accuracy computed as the training loop computes it (a float32 mean)."""
    with torch.no_grad():
        predictions = model(images).argmax(dim=1)
    return float((predictions == labels).float().mean())


def test_each_finished_run_keeps_its_weights_beside_the_database(kept_study):
    runs, artifacts = kept_study
    assert artifacts.name == "study.artifacts" and len(runs) == 2
    for run in runs:
        path = Path(run["weights_path"])
        assert path == (artifacts / f"{run['run_id']}.safetensors").resolve()
        data = path.read_bytes()
        assert run["weights_bytes"] == len(data)
        assert run["weights_sha256"] == hashlib.sha256(data).hexdigest()
        with safe_open(str(path), framework="pt") as kept:
            metadata = kept.metadata()
            keys = set(kept.keys())
        assert metadata["run_id"] == run["run_id"]
        assert metadata["design"] == run["design"] and metadata["member"] == run["member"]
        assert (metadata["input_shape"], metadata["num_classes"]) == ("1x8x8", "10")
        assert metadata["precision"] == "fp32"
        assert json.loads(metadata["class_names"]) == [str(i) for i in range(10)]
        assert int(metadata["selected_epoch"]) == run["best_epoch"]
        members = {key.split(".")[1] for key in keys if key.startswith("member.")}
        assert members == {str(i) for i in range(run["num_members"])}
        assert {"normalize.mean", "normalize.std"} <= keys
    assert sorted(os.listdir(artifacts)) == sorted(f"{r['run_id']}.safetensors" for r in runs)


def test_kept_weights_reproduce_the_stored_test_accuracy_exactly(kept_study, small_digits):
    runs, _ = kept_study
    test = small_digits["digits"]
    for run in runs:
        weights = load_run_weights(run)
        assert (weights.num_members, weights.member.name) == (run["num_members"], run["member"])
        model = build_ensemble(weights, "separate")
        assert _accuracy(model, test.test_images, test.test_labels) == run["test_accuracy"]


def test_the_weights_kept_are_the_selected_epochs_not_the_last(tmp_path, small_digits):
    # A constant, large learning rate: validation accuracy peaks at epoch 3 of 4 here.
    data = small_digits["digits"]
    config = TrainConfig(epochs=4, batch_size=64, lr=0.5, schedule="multistep", gamma=1.0)
    result = train_design(parse_design("2x resnet-8-4"), data, config, seed=2, executor="fused")
    assert result.best_epoch is not None and result.best_epoch < len(result.epochs)
    row = {
        "run_id": "selected",
        **write_run_weights(tmp_path / "w", "selected", result, data).to_dict(),
    }
    model = build_ensemble(load_run_weights(row), "fused")
    accuracy = _accuracy(model, data.test_images, data.test_labels)
    assert result.test is not None and result.final_test is not None
    assert accuracy == result.test.accuracy != result.final_test.accuracy


def test_no_keep_weights_keeps_nothing_and_loading_says_so(tmp_path, small_digits):
    store = Store.open(tmp_path / "study.db")
    artifacts = tmp_path / "study.artifacts"
    study = _study(designs=("single",), config=TrainConfig(epochs=1, batch_size=64),
                   keep_weights=False)  # fmt: skip
    assert run_study(store, study, datasets=small_digits, artifacts_dir=artifacts)["done"] == 1
    (run,) = store.runs("kept")
    assert (run["weights_path"], run["weights_bytes"], run["weights_sha256"]) == (None,) * 3
    assert not artifacts.exists()
    with pytest.raises(ArtifactError, match=rf"^run {run['run_id']} kept no weights: it ran "):
        load_run_weights(run)


def test_a_missing_or_altered_file_is_a_one_line_error_naming_the_run(tmp_path, kept_study):
    runs, _ = kept_study
    run = runs[0]
    copy = tmp_path / "copy.safetensors"
    shutil.copyfile(run["weights_path"], copy)
    row = {**run, "weights_path": str(copy)}
    assert load_run_weights(row).run_id == run["run_id"]
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1  # one bit of the last weight
    copy.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"weights of run {run['run_id']} were altered: "):
        load_run_weights(row)
    copy.unlink()
    with pytest.raises(ArtifactError, match=rf"weights of run {run['run_id']} are missing: "):
        load_run_weights(row)
    swapped = {**runs[1], "weights_path": run["weights_path"]}  # another run's file
    swapped |= {"weights_sha256": run["weights_sha256"], "weights_bytes": run["weights_bytes"]}
    with pytest.raises(ArtifactError, match=r"of run \w+ holds another run's weights"):
        load_run_weights(swapped)


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / "weights" / "run.safetensors"
    write_atomically(path, [b"old"])

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, [b"new"])
    assert os.listdir(path.parent) == ["run.safetensors"]
    assert path.read_bytes() == b"old"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # private unless asked: a checkpoint


def test_kept_weights_are_readable_by_all_where_checkpoints_are_private(tmp_path):
    write_atomically(tmp_path / "shared.safetensors", [b"weights"], mode=0o644)
    write_atomically(tmp_path / "run.pt", [b"check", b"point"])
    assert stat.S_IMODE((tmp_path / "shared.safetensors").stat().st_mode) == 0o644
    assert (tmp_path / "run.pt").read_bytes() == b"checkpoint"
    assert stat.S_IMODE((tmp_path / "run.pt").stat().st_mode) == 0o600


def test_a_run_whose_weights_cannot_be_written_is_still_recorded(
    tmp_path, small_digits, monkeypatch
):
    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    store = Store.open(tmp_path / "study.db")
    artifacts = tmp_path / "study.artifacts"
    study = _study(designs=("single",), config=TrainConfig(epochs=1, batch_size=64))
    assert run_study(store, study, datasets=small_digits, artifacts_dir=artifacts)["done"] == 1
    (run,) = store.runs("kept")
    assert run["weights_path"] is None
    assert run["metrics"]["weights_error"].endswith("No space left on device")
    assert os.listdir(artifacts) == []  # no half-written file behind
    with pytest.raises(ArtifactError, match=r"kept no weights: cannot write .*No space left"):
        load_run_weights(run)


def test_paramsplit_run_keeps_weights_unless_told_not_to(tmp_path):
    db = tmp_path / "study.db"
    flags = ["run", "--budgets", "5k", "--designs", "single", "--epochs", "1", "--batch-size",
             "64", "--measure", "none", "--db", str(db)]  # fmt: skip
    first = runner.invoke(app, flags)
    assert first.exit_code == 0, first.output
    (kept,) = Store.open(db).runs()
    assert Path(kept["weights_path"]).parent == tmp_path / "study.artifacts"
    # Keeping weights is not part of the study: the same flags find it, nothing runs again.
    again = runner.invoke(app, [*flags, "--no-keep-weights"])
    assert again.exit_code == 0, again.output
    assert Store.open(db).runs()[0]["attempts"] == 1 and len(Store.open(db).studies()) == 1
    second = runner.invoke(app, [*flags, "--seeds", "2", "--no-keep-weights"])
    assert second.exit_code == 0, second.output
    runs = {run["seed"]: run for run in Store.open(db).runs()}
    assert runs[0]["weights_path"] == kept["weights_path"]  # finished before: untouched
    assert runs[1]["status"] == "done" and runs[1]["weights_path"] is None
    elsewhere = tmp_path / "weights"
    third = runner.invoke(app, [*flags, "--seeds", "3", "--artifacts-dir", str(elsewhere)])
    assert third.exit_code == 0, third.output
    assert os.listdir(elsewhere) == [f"{Store.open(db).runs()[-1]['run_id']}.safetensors"]


def test_paramsplit_train_writes_the_weights_where_asked(tmp_path):
    out = tmp_path / "run.safetensors"
    args = ["train", "--family", "resnet", "--budget", "5k", "--epochs", "1", "--batch-size",
            "64", "--no-measure", "--weights-out", str(out), "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["weights_path"] == str(out.resolve())
    weights = load_run_weights(summary)  # the row-like summary: run_id, path, size, sha256
    assert weights.design == summary["design"] and len(weights.member_states) == 1


def test_artifacts_live_beside_a_sqlite_file_or_in_one_folder_for_a_server():
    assert artifacts_dir_for("results/study.db") == Path("results/study.artifacts")
    assert artifacts_dir_for("sqlite:///x/y.sqlite") == Path("x/y.artifacts")
    assert artifacts_dir_for("postgresql://me@host/db") == Path("paramsplit-artifacts")


def test_a_study_file_can_turn_keeping_weights_off(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('families = ["resnet"]\nbudgets = ["10k"]\nkeep_weights = false\n')
    assert load_study_file(path).keep_weights is False
    path.write_text('families = ["resnet"]\nbudgets = ["10k"]\n')
    assert load_study_file(path).keep_weights is True
    path.write_text('families = ["resnet"]\nbudgets = ["10k"]\nkeep_weights = "no"\n')
    with pytest.raises(StudyFileError, match=r"line 3: field 'keep_weights': expected true or"):
        load_study_file(path)


def test_a_version_3_database_gains_the_weights_columns(tmp_path, small_digits):
    path = tmp_path / "old.db"
    with Store.open(path) as store:
        register_study(store, _study(), small_digits)
    with sqlite3.connect(path) as connection:  # what version 3 wrote: no weights columns
        for column in ("weights_path", "weights_bytes", "weights_sha256"):
            connection.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        connection.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    with Store.open(path) as store:
        runs = store.runs("kept")
        assert [run["weights_path"] for run in runs] == [None, None]
    with sqlite3.connect(path) as connection:
        (version,) = connection.execute("SELECT value FROM meta").fetchone()
    assert version == str(SCHEMA_VERSION)
