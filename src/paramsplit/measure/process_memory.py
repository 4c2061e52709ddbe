"""Peak memory of a few training steps or inference calls of one freshly built executor.

`run_memory_request` measures one request. On CPU it runs in a clean child process, so
that the process holds nothing but the executor: a child forked from a memory server, or
`python -m paramsplit.measure.process_memory '<json MemoryRequest>'` (prints one JSON object on
stdout) where there is no fork; see `paramsplit.measure.memory_processes`. On CUDA it runs
in-process, where the allocator's own statistics can be reset.

The figure is the peak *above* the set-up executor: the executor (weights, batch-norm
buffers) and the random input batch are built first, and one step runs on a single image
(library code paged in on first use is not the design's memory); then the high-water mark
is reset and the baseline read; the reported number is peak − baseline over `steps`
training steps or inference calls. It therefore covers activations, gradients, autograd and
kernel workspace and the allocator's slack, and not the weights (reported separately as
`weights_bytes`), SGD's momentum buffers (one more copy of the weights, created by the
warm-up step) or the interpreter.

Method on CPU (`subprocess_peak_rss`): peak resident set size. The high-water mark is reset
by writing 5 to `/proc/self/clear_refs` (Linux >= 4.0); the peak is `VmHWM` from
/proc/self/status (not `ru_maxrss`, which keeps the parent's peak across exec), the baseline
the resident size from `/proc/self/statm`. Caveats:
- RSS counts pages touched, not tensor bytes: glibc keeps freed small blocks and returns
  large ones (mmap) to the system, and `MALLOC_MMAP_MAX_` / `MALLOC_TRIM_THRESHOLD_` change
  which; compare designs measured under the same environment.
- Without a working reset (non-Linux, or `clear_refs` not writable; `peak_reset` says so)
  the peak includes building the executor, which for the fused and vmap executors briefly
  holds the weights twice; the figure can then be too low.
- Threads: each OpenMP worker has its own small scratch; the request fixes the count.
Method on CUDA (`cuda_max_memory_allocated`): `torch.cuda.max_memory_allocated` after
`reset_peak_memory_stats`, minus `memory_allocated` after set-up. Bytes handed out by the
caching allocator, not what it reserved (`memory_reserved` is larger), and not the CUDA
context (hundreds of MB, the same for every design).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import resource
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from paramsplit.errors import ConfigError, ParamSplitError
from paramsplit.specs import PRECISIONS, TrainConfig, parse_arch, parse_input
from paramsplit.train.executors import EXECUTORS, make_executor

MODES = ("train", "infer")
RESULT_KEYS = {"train": "peak_train_memory_bytes", "infer": "peak_inference_memory_bytes"}
# The first training step creates gradients and momentum buffers; the second runs with them
# in place, which is the steady state; the third guards against a late first-touch.
DEFAULT_STEPS = 3


@dataclass(frozen=True)
class MemoryRequest:
    """What to measure: a design, how it is executed, one batch size, train or infer."""

    arch: str  # e.g. "resnet-8-4"
    num_members: int
    executor: str
    input: str  # "CxHxW"
    num_classes: int
    batch_size: int
    mode: str
    precision: str = "fp32"
    channels_last: bool = False
    steps: int = DEFAULT_STEPS
    num_threads: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        checks = [
            (self.mode in MODES, "mode", self.mode, " or ".join(MODES)),
            (self.executor in EXECUTORS, "executor", self.executor, ", ".join(EXECUTORS)),
            (self.precision in PRECISIONS, "precision", self.precision, ", ".join(PRECISIONS)),
            (self.num_members >= 1, "num_members", self.num_members, ">= 1"),
            (self.batch_size >= 1, "batch_size", self.batch_size, ">= 1"),
            (self.steps >= 1, "steps", self.steps, ">= 1"),
            (
                self.num_threads is None or self.num_threads >= 1,
                "num_threads",
                self.num_threads,
                ">= 1",
            ),
        ]
        for ok, name, value, allowed in checks:
            if not ok:
                raise ConfigError(f"memory request: {name} must be {allowed}, got {value!r}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> MemoryRequest:
        try:
            fields = json.loads(text)
            return cls(**fields)
        except (json.JSONDecodeError, TypeError) as error:
            raise ConfigError(f"malformed memory request {text!r}: {error}") from None


def current_rss_bytes() -> int:
    """Resident set size now (Linux `/proc/self/statm`; the peak so far elsewhere)."""
    statm = Path("/proc/self/statm")
    if statm.exists():
        resident_pages = int(statm.read_text().split()[1])
        return resident_pages * resource.getpagesize()
    return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """This process's resident high-water mark.

    On Linux `VmHWM` from /proc/self/status: it belongs to this process image and is reset
    by `reset_peak_rss`. `ru_maxrss` is not usable there: exec keeps the parent's peak in
    it, so a child of a 1 GB pytest process reads at least 1 GB (seen: a 4k-parameter
    network "needing" 320 MB inside the test suite and 60 MB alone). Elsewhere ru_maxrss
    (KiB on Linux, bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return 1024 * int(line.split()[1])  # "VmHWM:   123456 kB"
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else 1024 * maxrss


def reset_peak_rss() -> bool:
    """Reset the high-water mark to the current RSS; False where the OS does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_memory_request(request: MemoryRequest) -> dict[str, Any]:
    """Build the executor, reset the peak, run `steps` steps; peak minus baseline in bytes."""
    if request.num_threads is not None:
        torch.set_num_threads(request.num_threads)
    device = torch.device(request.device)
    input_spec = parse_input(request.input, request.num_classes)
    config = TrainConfig(
        batch_size=request.batch_size,
        precision=request.precision,
        channels_last=request.channels_last,
    )
    # Weights' values do not matter for memory; inputs are standard normal, like
    # normalised images.
    executor = make_executor(
        request.executor,
        parse_arch(request.arch),
        input_spec,
        list(range(request.num_members)),
        config,
        device,
    )
    generator = torch.Generator().manual_seed(0)
    k, batch = request.num_members, request.batch_size
    if request.mode == "train":
        images = torch.randn(k, batch, *input_spec.shape, generator=generator).to(device)
        labels = torch.randint(input_spec.num_classes, (k, batch), generator=generator)
        labels = labels.to(device)
        executor.set_training(True)
    else:
        images = torch.randn(batch, *input_spec.shape, generator=generator).to(device)
        executor.set_training(False)
    # One step on a single image first: PyTorch pages in hundreds of MB of library code on
    # first use (measured: ~300 MB of RSS for a 4k-parameter network), which is not the
    # design's memory. Its momentum buffers, one copy of the weights, stay in the baseline.
    if request.mode == "train":
        executor.train_step(images[:, :1], labels[:, :1])
    else:
        executor.predict(images[:1])
    gc.collect()
    _sync(device)
    if device.type == "cuda":
        method, peak_reset = "cuda_max_memory_allocated", True
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        method, peak_reset = "subprocess_peak_rss", reset_peak_rss()
        baseline = current_rss_bytes()
    for _ in range(request.steps):
        if request.mode == "train":
            executor.train_step(images, labels)
        else:
            executor.predict(images)
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes()
    return {
        RESULT_KEYS[request.mode]: max(0, peak - baseline),
        "baseline_bytes": baseline,
        "peak_bytes": peak,
        "memory_method": method,
        "peak_reset": peak_reset,
    }


def main(argv: list[str] | None = None) -> int:
    """The subprocess entry: one JSON request as the only argument, one JSON line out."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        usage = "usage: python -m paramsplit.measure.process_memory '<json request>'"
        print(usage, file=sys.stderr)
        return 2
    try:
        result = run_memory_request(MemoryRequest.from_json(args[0]))
    except ParamSplitError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
