"""Writing an ensemble module in each deployable format, and running it in its own runtime.

- `onnx`: `torch.onnx.export(..., dynamo=True)` (the exporter built on `torch.export`;
  PyTorch 2.9+ makes it the default and deprecates the TorchScript-based one), one file
  with the weights inside, run in onnxruntime. Needs the `export` extra.
- `torchscript`: `torch.jit.trace`, run with `torch.jit.load`. PyTorch deprecates
  TorchScript; it is here for runtimes that still load it (LibTorch in C++).
- `pt`: a `torch.export` program (`torch.export.save`), run with
  `torch.export.load(path).module()`: plain PyTorch, no paramsplit needed to load it.

Every format takes a batch of any size (the batch dimension is dynamic) and carries the run's
description (`paramsplit.json`: run id, design, input, classes, normalisation) inside it.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from paramsplit.errors import UsageError

FORMATS = ("onnx", "torchscript", "pt")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts", "pt": ".pt2"}
INPUT_NAME = "images"
OUTPUT_NAMES = ("probabilities", "member_logits")
EXPORT_EXTRA = "pip install 'paramsplit[export]'"

# A deployed model's call: uint8 images [B, C, H, W] -> probabilities [B, classes] and, if
# exported, member logits [B, k, classes], as CPU tensors.
Runner = Callable[[Tensor], tuple[Tensor, ...]]


def check_format(name: str) -> None:
    """A known format whose runtime is installed; else a one-line error naming the extra."""
    if name not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got '{name}'")
    if name == "onnx":
        missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if not _importable(m)]
        if missing:
            raise UsageError(
                f"--format onnx needs {', '.join(missing)}, in the export extra: {EXPORT_EXTRA}"
            )


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _batch_dim() -> dict[str, dict[int, Any]]:
    return {INPUT_NAME: {0: torch.export.Dim("batch", min=1)}}


def write_model(
    model: nn.Module, format_name: str, path: Path, example: Tensor, description: dict[str, Any]
) -> None:
    """Write `model` (eval mode) to `path` in `format_name`, traced on `example` images (a
    batch of 2 or more: a batch of 1 would let the exporters specialise on it)."""
    check_format(format_name)
    text = json.dumps(description, sort_keys=True)
    outputs = OUTPUT_NAMES[: 2 if getattr(model, "member_logits", False) else 1]
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript's deprecation, and the exporters' notes on what they traced: the
        # export is checked against the model afterwards, whatever they say.
        warnings.simplefilter("ignore")
        if format_name == "onnx":
            _write_onnx(model, path, example, outputs, text)
        elif format_name == "torchscript":
            traced = torch.jit.trace(model, (example,))
            traced.save(str(path), _extra_files={"paramsplit.json": text})
        else:
            program = torch.export.export(model, (example,), dynamic_shapes=_batch_dim())
            torch.export.save(program, path, extra_files={"paramsplit.json": text})


def _write_onnx(
    model: nn.Module, path: Path, example: Tensor, outputs: tuple[str, ...], text: str
) -> None:
    import onnx

    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines; only the CLI prints
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            external_data=False,  # one file; the weights of these networks are far below 2 GB
            input_names=[INPUT_NAME],
            output_names=list(outputs),
            dynamic_shapes=_batch_dim(),
            verbose=False,
        )
    exported = onnx.load(str(path))
    onnx.helper.set_model_props(exported, {"paramsplit.json": text})
    onnx.save(exported, str(path))


def load_runner(format_name: str, path: Path, threads: int) -> Runner:
    """`path` loaded in the runtime its format targets, on the CPU with `threads` threads."""
    check_format(format_name)
    if format_name == "onnx":
        return _onnx_runner(path, threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation
        module = (
            torch.jit.load(str(path), map_location="cpu")
            if format_name == "torchscript"
            else torch.export.load(path).module()
        )

    return module_runner(module)


def module_runner(module: Callable[[Tensor], Any]) -> Runner:
    """A PyTorch module (or loaded program) as a `Runner`."""

    def run(images: Tensor) -> tuple[Tensor, ...]:
        with torch.no_grad():
            outputs = module(images)
        return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)

    return run


def _onnx_runner(path: Path, threads: int) -> Runner:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # as many as torch uses, for a fair comparison
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(images: Tensor) -> tuple[Tensor, ...]:
        outputs = session.run(None, {INPUT_NAME: images.numpy()})
        return tuple(torch.from_numpy(output) for output in outputs)

    return run


def runtime_name(format_name: str) -> str:
    """The runtime a format is checked and timed in, with its version."""
    if format_name == "onnx":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"
    loader = "torch.jit.load" if format_name == "torchscript" else "torch.export.load"
    return f"{loader} (torch {torch.__version__})"
