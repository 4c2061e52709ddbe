"""`paramsplit export`: a run's whole ensemble as one model file, checked in its runtime on
the run's own test set before it is reported done."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from paramsplit.cli import app
from paramsplit.data import load_dataset
from paramsplit.errors import ArtifactError, UsageError
from paramsplit.export import (
    FORMS,
    PROBABILITY_TOLERANCE,
    export_run,
    pick_run,
    recommended_run,
)
from paramsplit.export import exporter as exporter_module
from paramsplit.export import formats as formats_module
from paramsplit.specs import TrainConfig
from paramsplit.store import Store
from paramsplit.study import StudyDefinition, run_study
from paramsplit.study.artifacts import artifacts_dir_for

runner = CliRunner()


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    return dataclasses.replace(data, train_images=data.train_images[:128],
                               train_labels=data.train_labels[:128])  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits):
    """A finished study with kept weights: (database path, its runs by design class)."""
    folder = tmp_path_factory.mktemp("export")
    db = folder / "study.db"
    study = StudyDefinition(
        name="tiny", families=("resnet",), budgets=(10_000,), members=(2,),
        designs=("single", "deq"), config=TrainConfig(epochs=2, batch_size=64), measure="none",
    )  # fmt: skip
    with Store.open(db) as store:
        run_study(
            store, study, datasets={"digits": digits}, artifacts_dir=artifacts_dir_for(str(db))
        )
        runs = {run["design_class"]: run for run in store.runs("tiny")}
    return db, runs


def _correct(probabilities, labels) -> int:
    return int((torch.as_tensor(probabilities).argmax(dim=1) == labels).sum())


def _stored(run, digits) -> int:
    return round(run["test_accuracy"] * len(digits.test_labels))


@pytest.mark.slow  # two exports (both forms) and their timing: ~15 s on 2 busy cores
def test_pt_export_is_one_model_plain_pytorch_loads_with_the_runs_accuracy(
    trained, digits, tmp_path
):
    _, runs = trained
    run = runs["deq"]
    out = tmp_path / "ensemble.pt2"
    report = export_run(run, "pt", out, dataset=digits)
    stored = _stored(run, digits)
    assert report.stored_correct == report.pytorch_correct == report.exported_correct == stored
    assert report.form in FORMS and set(report.form_latency_ms) == set(FORMS)
    assert set(report.latency_ms) == {1, 64} and all(ms > 0 for ms in report.latency_ms.values())
    assert 0 <= report.max_probability_difference <= PROBABILITY_TOLERANCE
    assert report.file_bytes == out.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["ensemble.pt2"]  # nothing else left behind
    # Plain PyTorch, no paramsplit: uint8 images in, the averaged probabilities out.
    extra = {"paramsplit.json": ""}
    model = torch.export.load(out, extra_files=extra).module()
    probabilities = model(digits.test_images)
    assert probabilities.shape == (len(digits.test_labels), 10)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(len(probabilities)))
    assert _correct(probabilities, digits.test_labels) == stored
    description = json.loads(extra["paramsplit.json"])
    assert description["run_id"] == run["run_id"] and description["input"]["dtype"] == "uint8"


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_of_a_single_network_with_member_logits(trained, digits, tmp_path):
    _, runs = trained
    run = runs["single"]
    out = tmp_path / "single.ts"
    report = export_run(run, "torchscript", out, member_logits=True, dataset=digits)
    assert report.form == "single" and report.form_latency_ms == {}
    assert report.outputs == ("probabilities", "member_logits")
    assert report.max_logit_difference is not None
    model = torch.jit.load(str(out))
    probabilities, logits = model(digits.test_images[:5])
    assert logits.shape == (5, 1, 10)
    assert torch.allclose(probabilities, torch.softmax(logits, dim=-1).mean(dim=1))
    assert report.exported_correct == _stored(run, digits)


@pytest.fixture(scope="module")
def onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        message = "onnxruntime is not installed (pip install 'paramsplit[export]')"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must run the ONNX export test, not skip it")
        pytest.skip(message)
    return onnxruntime


@pytest.mark.slow  # the ONNX exporter takes about 15 s per model on 2 busy cores
def test_onnx_export_runs_in_onnxruntime_with_the_runs_accuracy(
    trained, digits, tmp_path, onnxruntime
):
    _, runs = trained
    run = runs["deq"]
    out = tmp_path / "best.onnx"
    report = export_run(run, "onnx", out, member_logits=True, form="fused", dataset=digits)
    assert report.runtime.startswith("onnxruntime ")
    assert report.exported_correct == report.stored_correct == _stored(run, digits)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (image_input,) = session.get_inputs()
    assert (image_input.name, image_input.type) == ("images", "tensor(uint8)")
    assert [o.name for o in session.get_outputs()] == ["probabilities", "member_logits"]
    probabilities, logits = session.run(None, {"images": digits.test_images.numpy()})
    assert logits.shape == (len(digits.test_labels), 2, 10)
    assert _correct(probabilities, digits.test_labels) == _stored(run, digits)
    description = json.loads(session.get_modelmeta().custom_metadata_map["paramsplit.json"])
    assert description["design"] == run["design"]


def test_a_tampered_export_fails_its_check_and_writes_nothing(
    trained, digits, tmp_path, monkeypatch
):
    _, runs = trained
    original = exporter_module.write_model

    def write_with_a_wrong_weight(model, *args, **kwargs):
        with torch.no_grad():
            next(model.parameters()).add_(0.5)  # the first convolution's weights
        original(model, *args, **kwargs)

    monkeypatch.setattr(exporter_module, "write_model", write_with_a_wrong_weight)
    out = tmp_path / "tampered.pt2"
    message = rf"export of run {runs['deq']['run_id']} does not match its PyTorch model: a prob"
    with pytest.raises(ArtifactError, match=message):
        export_run(runs["deq"], "pt", out, form="fused", dataset=digits)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_export_refuses_weights_that_no_longer_give_the_recorded_accuracy(
    trained, digits, tmp_path
):
    _, runs = trained
    run = {**runs["single"], "test_accuracy": runs["single"]["test_accuracy"] + 0.1}
    with pytest.raises(ArtifactError, match=r"kept weights of run \w+ classify \d+/359 test"):
        export_run(run, "torchscript", tmp_path / "x.ts", dataset=digits)
    # Tested on a GPU (cuDNN, TF32), a run's count may differ by an image near a tie: a note.
    report = export_run({**run, "device": "cuda:0"}, "torchscript", tmp_path / "x.ts",
                        dataset=digits)  # fmt: skip
    assert report.exported_correct == report.pytorch_correct != report.stored_correct
    assert re.match(r"the run was tested in fp32 on cuda:0 and recorded \d+/359", report.notes[0])


def test_recommended_exports_the_best_validated_seed_of_the_chosen_design(trained):
    db, _ = trained
    with Store.open(db) as store:
        answer, run = recommended_run(store, 10_000)
    assert answer.choice is not None and run["run_id"] in answer.choice.run_ids

    def row(run_id, seed, accuracy, kept=True):
        return {"run_id": run_id, "seed": seed, "status": "done", "best_val_accuracy": accuracy,
                "weights_path": f"{run_id}.safetensors" if kept else None}  # fmt: skip

    rows = [row("a", 0, 0.8), row("b", 1, 0.9), row("c", 2, 0.9), row("d", 3, 0.99, kept=False)]
    assert pick_run("2x resnet-8-4", rows)["run_id"] == "b"  # d kept none; b beats c on seed
    with pytest.raises(ArtifactError, match=r"none of the 1 runs of 2x r.* kept weights \(d\)"):
        pick_run("2x resnet-8-4", rows[3:])


@pytest.mark.slow  # two exports through the command line: ~15 s on 2 busy cores
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_paramsplit_export_prints_its_checks_as_a_table_or_json(trained, tmp_path):
    db, _ = trained
    out = tmp_path / "best.pt2"
    # No --budget: the study's largest (its only one here), as `paramsplit recommend` answers.
    args = ["export", "--recommended", "--format", "pt", "--out", str(out),
            "--db", str(db), "--form", "separate", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["exported_correct"] == data["stored_correct"]
    assert data["form"] in ("separate", "single")
    assert data["test_accuracy"] == data["stored_test_accuracy"]
    assert data["path"] == str(out) and out.exists()
    by_id = ["export", data["run_id"], "--format", "torchscript", "--db", str(db),
             "--out", str(tmp_path / "best.ts")]  # fmt: skip
    table = runner.invoke(app, by_id)
    assert table.exit_code == 0, table.output
    assert re.search(r"in torch\.jit\.load .* \d+\.\d+%  \(\d+/359\)", table.stdout)
    assert "latency (median)" in table.stdout and "batch 64:" in table.stdout


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["abc", "--recommended", "--budget", "10k"], "give a RUN_ID or --recommended"),
        (["--recommended"], "--out is required"),
        (["abc"], "--out is required"),
        (["abc", "--out", "x", "--format", "tflite"], "--format must be one of onnx, torchsc"),
    ],
)
def test_export_rejects_bad_options_in_one_line(args, message):
    result = runner.invoke(app, ["export", *args])
    assert result.exit_code == 2, result.output
    assert message in _error_line(result)


def test_a_missing_export_extra_is_named_in_one_line(monkeypatch, trained, tmp_path):
    db, runs = trained
    monkeypatch.setattr(formats_module, "_importable", lambda module: module != "onnxruntime")
    args = ["export", runs["deq"]["run_id"], "--db", str(db), "--out", str(tmp_path / "m.onnx")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert _error_line(result) == (
        "error: --format onnx needs onnxruntime, in the export extra: "
        "pip install 'paramsplit[export]'"
    )
    with pytest.raises(UsageError, match="needs onnxruntime"):
        formats_module.check_format("onnx")


def test_altered_weights_stop_the_export_with_one_line_naming_the_run(trained, tmp_path):
    db, runs = trained
    run = runs["single"]
    path = Path(run["weights_path"])
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        args = ["export", run["run_id"], "--db", str(db), "--format", "pt",
                "--out", str(tmp_path / "m.pt2")]  # fmt: skip
        result = runner.invoke(app, args)
    finally:
        path.write_bytes(original)
    assert result.exit_code == 1, result.output
    assert _error_line(result).startswith(f"error: the weights of run {run['run_id']} were altered")
    assert not (tmp_path / "m.pt2").exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_an_out_path_that_cannot_be_written_is_one_error(trained, digits, tmp_path):
    _, runs = trained
    (tmp_path / "taken").mkdir()
    with pytest.raises(ArtifactError, match=r"cannot write --out .*taken: Is a directory"):
        export_run(runs["single"], "torchscript", tmp_path / "taken", dataset=digits)
    with pytest.raises(UsageError, match=r"folder '.*nowhere' does not exist"):
        export_run(runs["single"], "torchscript", tmp_path / "nowhere" / "m.ts", dataset=digits)
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
