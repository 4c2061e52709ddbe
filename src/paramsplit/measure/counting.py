"""Counting one step of an executor: the machinery behind `paramsplit.measure.memory`.

A step is counted with `LiveTensors` on the executor the study trains with
(`make_executor`), brought to the steady state first. `counting_place` says where the step
runs so that nothing is allocated: the `meta` device or fake tensors.
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
from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices

from paramsplit.errors import ConfigError
from paramsplit.measure.live_tensors import CATEGORIES, LiveTensors
from paramsplit.specs import ArchSpec, InputSpec, TrainConfig
from paramsplit.train.executors import Executor, make_executor

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


def _step_as_on(executor: Executor, device: torch.device) -> None:
    """Make the optimizers take the path they take on `device` itself.

    SGD left to choose (`foreach=None`) runs its multi-tensor kernels on CUDA, whose
    temporaries are whole lists of gradients, but picks them only for plain tensors: on fake
    tensors it would fall back to one tensor at a time. The choice is made here instead.
    """
    multi_tensor = device.type in _get_foreach_kernels_supported_devices()
    for optimizer in executor.optimizers:
        for group in optimizer.param_groups:
            if group.get("foreach") is None and not group.get("differentiable"):
                group["foreach"] = multi_tensor


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
        _step_as_on(executor, target)
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
