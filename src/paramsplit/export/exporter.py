"""`export_run`: a finished run's kept weights as one deployable model file, verified.

Nothing reaches the output path before it passes every check: the model is written into a
temporary folder beside it, loaded back in the runtime its format targets, run on the run's
own test set, compared with the PyTorch model and with the accuracy the run recorded, and
timed; only then is it renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import paramsplit
from paramsplit.data import DatasetTensors, load_dataset
from paramsplit.errors import ArtifactError, UsageError
from paramsplit.export.formats import (
    OUTPUT_NAMES,
    SUFFIXES,
    Runner,
    check_format,
    load_runner,
    module_runner,
    runtime_name,
    write_model,
)
from paramsplit.export.model import FORMS, build_ensemble
from paramsplit.export.verify import (
    LATENCY_BATCH_SIZES,
    LOGIT_TOLERANCE,
    PROBABILITY_TOLERANCE,
    Outputs,
    check_outputs,
    median_latency_ms,
    predict_split,
)
from paramsplit.study.artifacts import RunWeights, load_run_weights

FORM_CHOICES = ("auto", *FORMS)


@dataclass(frozen=True)
class ExportReport:
    """What was exported and how it checked out. Accuracies are counts of correct test
    images; latencies are medians in ms per batch, in the target runtime."""

    run_id: str
    design: str
    dataset: str
    seed: int | None
    format: str
    runtime: str
    form: str  # fused, separate, or single for one network
    path: str
    file_bytes: int
    outputs: tuple[str, ...]
    num_test: int
    stored_correct: int | None  # from the run's recorded test accuracy
    pytorch_correct: int  # the kept weights, in PyTorch
    exported_correct: int  # the exported file, in its runtime
    max_probability_difference: float
    max_logit_difference: float | None
    probability_tolerance: float
    logit_tolerance: float
    latency_ms: dict[int, float]  # batch size -> median ms per batch
    form_latency_ms: dict[str, float]  # form -> median ms at `form_batch_size` (auto only)
    form_batch_size: int
    threads: int
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["test_accuracy"] = self.exported_correct / self.num_test
        data["stored_test_accuracy"] = (
            self.stored_correct / self.num_test if self.stored_correct is not None else None
        )
        return data


def _stored_correct(run: Mapping[str, Any], num_test: int) -> int | None:
    """The count of correct test images behind the run's recorded accuracy (a float32
    fraction of at most a few hundred thousand images: rounding recovers the count)."""
    accuracy = run.get("test_accuracy")
    return None if accuracy is None else round(accuracy * num_test)


def _test_split(weights: RunWeights, dataset: DatasetTensors) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = dataset.test_images.cpu(), dataset.test_labels.cpu()
    expected = (weights.input_spec.channels, weights.input_spec.height, weights.input_spec.width)
    if tuple(images.shape[1:]) != expected:
        raise ArtifactError(
            f"run {weights.run_id} was trained on {weights.input_spec.name} images, but the "
            f"test set of {dataset.name} holds {'x'.join(map(str, images.shape[1:]))}"
        )
    return images.contiguous(), labels


def _accuracy_notes(
    run: Mapping[str, Any], weights: RunWeights, stored: int | None, correct: int, total: int
) -> list[str]:
    """Check the kept weights against the run's recorded accuracy where the export computes
    as the run's test did (fp32 on a CPU): the same count of correct images, exactly.
    Elsewhere (bf16, or cuDNN's kernels and TF32 convolutions on a GPU) an image near a tie
    may fall the other way; a note then says so, and the export is held to the PyTorch
    model in fp32 on the CPU."""
    device = str(run.get("device") or "cpu")
    if weights.precision == "fp32" and device.startswith("cpu"):
        if stored is not None and stored != correct:
            raise ArtifactError(
                f"the kept weights of run {weights.run_id} classify {correct}/{total} test "
                f"images right in PyTorch; the run recorded {stored}"
            )
        return []
    return [
        f"the run was tested in {weights.precision} on {device} and recorded {stored}/{total} "
        f"correct; the export computes in fp32 on the CPU, checked against PyTorch there "
        f"({correct}/{total})"
    ]


def _description(weights: RunWeights, form: str, outputs: tuple[str, ...]) -> dict[str, Any]:
    """What the exported file says about itself (`paramsplit.json` inside it)."""
    return {
        "run_id": weights.run_id,
        "design": weights.design,
        "dataset": weights.metadata["dataset"],
        "form": form,
        "input": {
            "name": "images",
            "dtype": "uint8",
            "shape": ["batch", *map(int, weights.input_spec.name.split("x"))],
            "normalisation": "inside the model: (pixels / 255 - mean) / std",
            "mean": weights.mean.tolist(),
            "std": weights.std.tolist(),
        },
        "outputs": list(outputs),
        "class_names": weights.class_names,
        "paramsplit_version": paramsplit.__version__,
    }


def _write_forms(
    weights: RunWeights,
    forms: list[str],
    format_name: str,
    folder: Path,
    example: torch.Tensor,
    member_logits: bool,
    threads: int,
) -> dict[str, tuple[Path, Runner]]:
    """Each form written into `folder` and loaded back in the format's runtime."""
    outputs = OUTPUT_NAMES[: 2 if member_logits else 1]
    written = {}
    for name in forms:
        model = build_ensemble(weights, "fused" if name == "single" else name,
                               member_logits=member_logits)  # fmt: skip
        path = folder / f"{name}{SUFFIXES[format_name]}"
        write_model(model, format_name, path, example, _description(weights, name, outputs))
        written[name] = (path, load_runner(format_name, path, threads))
    return written


def export_run(
    run: Mapping[str, Any],
    format_name: str,
    out: Path,
    *,
    member_logits: bool = False,
    form: str = "auto",
    batch_size: int = 1,
    dataset: DatasetTensors | None = None,
) -> ExportReport:
    """Export a finished run (a row of the store, `Store.run`) to `out` as one model.

    `form` `auto` writes both forms and keeps the faster in the target runtime at
    `batch_size` images per call. `dataset`: the run's dataset, if already loaded (its test
    split is what the export is checked on). Raises `ArtifactError` if a check fails; `out`
    is then left as it was.
    """
    check_format(format_name)
    if form not in FORM_CHOICES:
        raise UsageError(f"--form must be one of {', '.join(FORM_CHOICES)}, got '{form}'")
    if batch_size < 1:
        raise UsageError(f"--batch must be at least 1, got {batch_size}")
    out = Path(out)
    if not out.parent.is_dir():
        raise UsageError(f"cannot write --out {out}: folder '{out.parent}' does not exist")
    weights = load_run_weights(run)
    images, labels = _test_split(weights, dataset or load_dataset(run["dataset"]))
    outputs = OUTPUT_NAMES[: 2 if member_logits else 1]

    reference = build_ensemble(weights, "separate", member_logits=True)
    expected = predict_split(module_runner(reference), images)
    if not member_logits:
        expected = Outputs(expected.probabilities, None)
    stored, pytorch_correct = _stored_correct(run, len(labels)), expected.correct(labels)
    notes = _accuracy_notes(run, weights, stored, pytorch_correct, len(labels))

    threads = torch.get_num_threads()
    forms = ["single"] if weights.num_members == 1 else list(FORMS) if form == "auto" else [form]
    try:
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".paramsplit-export-") as work:
            runners = _write_forms(weights, forms, format_name, Path(work), images[:2],
                                   member_logits, threads)  # fmt: skip
            form_latency_ms: dict[str, float] = {}
            if len(forms) > 1:
                timed = median_latency_ms([run for _, run in runners.values()], images, batch_size)
                form_latency_ms = dict(zip(forms, timed, strict=True))
            chosen = min(forms, key=lambda name: form_latency_ms.get(name, 0.0))
            path, run_exported = runners[chosen]

            exported = predict_split(run_exported, images)
            max_probability, max_logit = check_outputs(weights.run_id, exported, expected)
            exported_correct = exported.correct(labels)
            if exported_correct != pytorch_correct:
                raise ArtifactError(
                    f"the export of run {weights.run_id} classifies {exported_correct}/"
                    f"{len(labels)} test images right; its PyTorch model {pytorch_correct}"
                )
            latency_ms = {
                size: median_latency_ms([run_exported], images, size)[0]
                for size in LATENCY_BATCH_SIZES
            }
            os.replace(path, out)
    except OSError as error:
        raise ArtifactError(f"cannot write --out {out}: {error.strerror or error}") from None
    return ExportReport(
        run_id=weights.run_id,
        design=weights.design,
        dataset=weights.metadata["dataset"],
        seed=run.get("seed"),
        format=format_name,
        runtime=runtime_name(format_name),
        form=chosen,
        path=str(out),
        file_bytes=out.stat().st_size,
        outputs=outputs,
        num_test=len(labels),
        stored_correct=stored,
        pytorch_correct=pytorch_correct,
        exported_correct=exported_correct,
        max_probability_difference=max_probability,
        max_logit_difference=max_logit,
        probability_tolerance=PROBABILITY_TOLERANCE,
        logit_tolerance=LOGIT_TOLERANCE,
        latency_ms=latency_ms,
        form_latency_ms=form_latency_ms,
        form_batch_size=batch_size,
        threads=threads,
        notes=tuple(notes),
    )
