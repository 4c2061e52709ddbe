"""The exact memory of a design: peak bytes of live tensors for one training step and one
inference call, split by category, for the loop (one member at a time) and fused execution
(all k at once).

The counted step is the one training runs: the study's executor (`make_executor`, with its
SGD, momentum buffers and precision) is built, brought to the steady state (every parameter
has a gradient, and the optimizer has stepped once and made its momentum buffers), and one
`train_step` is counted with `paramsplit.measure.live_tensors.LiveTensors`. Inference is one
`predict` call of a fresh executor in eval mode. Nothing is allocated: an fp32 CPU design is
counted on the `meta` device, anything else on fake tensors of its own device (see
`counting_place`); tests check both against real tensors. So the figure is the same on every
call, and available for designs far too large for this machine (WRN-28-10 at batch 128 in
about a second).

The figure covers the model's tensors: weights, gradients, optimizer state, the batch,
activations and temporaries. It leaves out what is the same for every design or is not a
tensor: the interpreter, library code, the allocator's caching and rounding beyond CUDA's
512-byte blocks, and kernels' private workspaces (cuDNN, oneDNN). `torch.compile` may need
less: the eager step is counted.

The loop's training figure is derived from one member's count: stepping member i of a loop,
the other k - 1 members hold their weights, gradients, momentum buffers and batch the whole
time, so the peak is one member's peak plus k - 1 times what a member holds between steps
(a test checks it against the loop executor stepped whole: it differs by the finished
members' loss scalars, 4 bytes each). Inference runs the loop executor whole. `vmap` is a way
to train, not to deploy, and is not counted (its `deepcopy` fails on fake tensors).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorConverter, FakeTensorMode

from paramsplit.errors import ConfigError
from paramsplit.measure.live_tensors import CATEGORIES, LiveTensors
from paramsplit.specs import ArchSpec, InputSpec, TrainConfig
from paramsplit.train.executors import Executor, make_executor

MEMORY_METHOD = "live_tensors"
EXECUTIONS = ("loop", "fused")
# The loss of each member the loop has stepped stays alive until the step ends: one fp32
# scalar each, which the derived loop figure leaves out.
LOSS_SCALAR_BYTES = 4


@dataclass(frozen=True)
class MemoryCount:
    """Peak bytes of live tensors over one step, split by category at the peak.

    `held` is what was live when the step began (weights, gradients, optimizer state, the
    batch): what a member keeps between steps.
    """

    peak_bytes: int
    breakdown: dict[str, int]
    held: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "breakdown_bytes": dict(self.breakdown)}


class _UnmemoizedConverter(FakeTensorConverter):
    """Fake tensors made from nothing, without the converter's weak memo.

    In torch 2.14 `nn.Module.to()` fails under `FakeTensorMode` ("Couldn't swap ...":
    pytorch/pytorch#148977, fixed upstream by #184976): `swap_tensors` refuses tensors with
    weak references, and the converter keeps one to every fake tensor it makes. The memo
    only maps real tensors to their fakes; a fresh tensor has no real counterpart to map.
    """

    def from_meta_and_device(
        self,
        fake_mode: FakeTensorMode,
        t: Tensor,
        device: torch.device,
        pytype: type[Tensor] | None = None,
        dispatch_keys: torch.DispatchKeySet | None = None,
    ) -> FakeTensor:
        return FakeTensor(fake_mode, t, device, pytype=pytype, dispatch_keys=dispatch_keys)


@contextlib.contextmanager
def _fake_tensors() -> Iterator[None]:
    mode = FakeTensorMode()
    mode.fake_tensor_converter = _UnmemoizedConverter()
    with mode:
        yield


def counting_place(
    device: torch.device, precision: str, *, training: bool, allocate: bool = False
) -> tuple[torch.device, contextlib.AbstractContextManager[Any]]:
    """Where to run a counted step, and under which mode, for a design meant for `device`.

    An fp32 training step on the CPU runs on the `meta` device, where tensors have shapes
    and no storage: there the CPU and meta take the same operators (no autocast, no
    CUDA-only kernels), and meta kernels are 2-4× faster than fake tensors (a test checks
    the bytes agree for every family). Anything else runs on fake tensors of the real
    device: bf16 autocast, CUDA's kernels and allocator, and inference (in eval mode meta's
    batch norm returns statistics the CPU's leaves empty). `allocate` runs on the device
    itself, for tests.
    """
    if allocate:
        return device, contextlib.nullcontext()
    if training and device.type == "cpu" and precision == "fp32":
        return torch.device("meta"), contextlib.nullcontext()
    return device, _fake_tensors()


def _counted_config(config: TrainConfig, batch_size: int) -> TrainConfig:
    return dataclasses.replace(config, batch_size=batch_size, compile=False)


def _build(
    execution: str, arch: ArchSpec, input_spec: InputSpec, num_members: int, config: TrainConfig,
    device: torch.device,
) -> Executor:  # fmt: skip
    return make_executor(execution, arch, input_spec, list(range(num_members)), config, device)


def _hold_executor(counter: LiveTensors, executor: Executor) -> None:
    for optimizer in executor.optimizers:
        counter.hold_optimizer(optimizer)
    modules = [value for value in vars(executor).values() if isinstance(value, nn.Module)]
    modules += [m for value in vars(executor).values() if isinstance(value, list)
                for m in value if isinstance(m, nn.Module)]  # fmt: skip
    counter.hold_modules(*modules)


def reach_steady_state(executor: Executor) -> None:
    """Give every parameter a gradient and let the optimizer make its state, as a first
    training step would (gradients have their parameters' shape, dtype and layout)."""
    for optimizer in executor.optimizers:
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = torch.zeros_like(param)
        optimizer.step()


def count_step(
    executor: Executor, images: Tensor, labels: Tensor, device: torch.device | str
) -> MemoryCount:
    """Count one `train_step` of an executor in training mode, its tensors held from the
    start. `device` is where the design is meant to run (see `LiveTensors`).

    Shape: images [k, B, C, H, W], labels [k, B]
    """
    counter = LiveTensors(device)
    _hold_executor(counter, executor)
    counter.hold([images, labels], "inputs")
    with counter:
        executor.train_step(images, labels)
    return MemoryCount(counter.peak_bytes, counter.peak_breakdown, counter.start_breakdown)


def count_predict(executor: Executor, images: Tensor, device: torch.device | str) -> MemoryCount:
    """Count one `predict` of an executor in eval mode. Shape: images [B, C, H, W]"""
    counter = LiveTensors(device)
    _hold_executor(counter, executor)
    counter.hold([images], "inputs")
    with counter:
        executor.predict(images)
    return MemoryCount(counter.peak_bytes, counter.peak_breakdown, counter.start_breakdown)


def _check_execution(execution: str) -> None:
    if execution not in EXECUTIONS:
        raise ConfigError(
            f"memory is counted for executions {' and '.join(EXECUTIONS)}, got '{execution}'"
        )


@functools.lru_cache(maxsize=256)
def count_train_step(
    execution: str,
    arch: ArchSpec,
    input_spec: InputSpec,
    num_members: int,
    config: TrainConfig,
    device: str = "cpu",
    *,
    allocate: bool = False,
) -> MemoryCount:
    """Peak live bytes of one steady-state training step of `execution` ('loop' or
    'fused') over `num_members` members, at `config.batch_size`."""
    _check_execution(execution)
    target = torch.device(device)
    where, mode = counting_place(target, config.precision, training=True, allocate=allocate)
    k, batch = num_members, config.batch_size
    with mode:
        executor = _build(execution, arch, input_spec, k, _counted_config(config, batch), where)
        images = torch.randn(k, batch, *input_spec.shape, device=where)
        labels = torch.randint(input_spec.num_classes, (k, batch), device=where)
        executor.set_training(True)
        reach_steady_state(executor)
        return count_step(executor, images, labels, target)


@functools.lru_cache(maxsize=256)
def count_inference(
    execution: str,
    arch: ArchSpec,
    input_spec: InputSpec,
    num_members: int,
    config: TrainConfig,
    batch_size: int,
    device: str = "cpu",
    *,
    allocate: bool = False,
) -> MemoryCount:
    """Peak live bytes of one eval-mode `predict` of `batch_size` images, all members."""
    _check_execution(execution)
    target = torch.device(device)
    where, mode = counting_place(target, config.precision, training=False, allocate=allocate)
    with mode:
        executor = _build(
            execution, arch, input_spec, num_members, _counted_config(config, batch_size), where
        )
        images = torch.randn(batch_size, *input_spec.shape, device=where)
        executor.set_training(False)
        return count_predict(executor, images, target)


def loop_train_step(
    arch: ArchSpec, input_spec: InputSpec, num_members: int, config: TrainConfig,
    device: str = "cpu",
) -> MemoryCount:  # fmt: skip
    """The loop's training count, from one member's: see the module docstring."""
    one = count_train_step("loop", arch, input_spec, 1, config, device)
    others = num_members - 1
    breakdown = {c: one.breakdown[c] + others * one.held[c] for c in CATEGORIES}
    held = {c: num_members * one.held[c] for c in CATEGORIES}
    return MemoryCount(sum(breakdown.values()), breakdown, held)


@dataclass(frozen=True)
class DesignMemory:
    """Exact memory of `num_members` networks of `member`, trained and run both ways.

    `train` and `inference` map an execution ('loop': one member at a time; 'fused': all k
    at once) to its count; for one network the two are the same.
    """

    member: str
    num_members: int
    input: str
    num_classes: int
    precision: str
    channels_last: bool
    device: str
    train_batch_size: int
    inference_batch_size: int
    train: dict[str, MemoryCount]
    inference: dict[str, MemoryCount]

    def result_keys(self) -> dict[str, Any]:
        """The figures as a run's result keys (see `paramsplit.store.schema`)."""
        return {
            "peak_train_memory_bytes": self.train["fused"].peak_bytes,
            "peak_inference_memory_bytes": self.inference["fused"].peak_bytes,
            "loop_train_memory_bytes": self.train["loop"].peak_bytes,
            "loop_inference_memory_bytes": self.inference["loop"].peak_bytes,
            "memory_method": MEMORY_METHOD,
            "memory": self.to_dict(),
        }

    def summary(self) -> dict[str, Any]:
        """Flat keys for `paramsplit describe`: all k at once, then one at a time."""
        summary: dict[str, Any] = {
            "num_members": self.num_members,
            "train_batch_size": self.train_batch_size,
            "inference_batch_size": self.inference_batch_size,
            "memory_method": MEMORY_METHOD,
        }
        for mode, counts in (("train", self.train), ("inference", self.inference)):
            for execution, infix in (("fused", ""), ("loop", "_loop")):
                summary[f"{mode}_memory{infix}_bytes"] = counts[execution].peak_bytes
                summary[f"{mode}_memory{infix}_breakdown"] = dict(counts[execution].breakdown)
        return summary

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": MEMORY_METHOD,
            "num_members": self.num_members,
            "device": self.device,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "train_batch_size": self.train_batch_size,
            "inference_batch_size": self.inference_batch_size,
            "train": {name: count.to_dict() for name, count in self.train.items()},
            "inference": {name: count.to_dict() for name, count in self.inference.items()},
        }


def _check(num_members: int, batch_size: int) -> None:
    if num_members < 1 or batch_size < 1:
        raise ConfigError(
            f"memory count needs num_members >= 1 and batch size >= 1, got {num_members} "
            f"and {batch_size}"
        )


def count_train_memory(
    member: ArchSpec,
    num_members: int,
    input_spec: InputSpec,
    config: TrainConfig | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, MemoryCount]:
    """One training step of k members at `config.batch_size`, by execution (loop, fused)."""
    config = config or TrainConfig()
    _check(num_members, config.batch_size)
    where = str(torch.device(device))
    loop = loop_train_step(member, input_spec, num_members, config, where)
    if num_members == 1:  # one network: the loop is the network itself
        return {"loop": loop, "fused": loop}
    fused = count_train_step("fused", member, input_spec, num_members, config, where)
    return {"loop": loop, "fused": fused}


def count_inference_memory(
    member: ArchSpec,
    num_members: int,
    input_spec: InputSpec,
    batch_size: int,
    config: TrainConfig | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, MemoryCount]:
    """One inference call of k members on `batch_size` images, by execution."""
    config = config or TrainConfig()
    _check(num_members, batch_size)
    where = str(torch.device(device))
    counts = {}
    for execution in EXECUTIONS[: 1 if num_members == 1 else 2]:
        counts[execution] = count_inference(
            execution, member, input_spec, num_members, config, batch_size, where
        )
    counts.setdefault("fused", counts["loop"])
    return counts


def count_design_memory(
    member: ArchSpec,
    num_members: int,
    input_spec: InputSpec,
    config: TrainConfig | None = None,
    *,
    inference_batch_size: int | None = None,
    device: torch.device | str = "cpu",
) -> DesignMemory:
    """Training (at `config.batch_size`) and inference memory of k members, loop and fused.

    `inference_batch_size` defaults to the training batch size.
    """
    config = config or TrainConfig()
    inference_batch = inference_batch_size or config.batch_size
    return DesignMemory(
        member=member.name,
        num_members=num_members,
        input=input_spec.name,
        num_classes=input_spec.num_classes,
        precision=config.precision,
        channels_last=config.channels_last,
        device=str(torch.device(device)),
        train_batch_size=config.batch_size,
        inference_batch_size=inference_batch,
        train=count_train_memory(member, num_members, input_spec, config, device),
        inference=count_inference_memory(
            member, num_members, input_spec, inference_batch, config, device
        ),
    )


def plan_memory_keys(
    member: ArchSpec, num_members: int, input_spec: InputSpec, config: TrainConfig
) -> dict[str, Any]:
    """A plan row's memory: one training step, one member at a time and all k at once."""
    counts = count_train_memory(member, num_members, input_spec, config)
    return {
        "train_memory_loop_bytes": counts["loop"].peak_bytes,
        "train_memory_fused_bytes": counts["fused"].peak_bytes,
        "train_batch_size": config.batch_size,
        "memory_method": MEMORY_METHOD,
    }
