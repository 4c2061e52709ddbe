"""Measurement after training: inference latency and throughput, exact memory, size, FLOPs.

Latency is described in `paramsplit.measure.latency`, memory in `paramsplit.measure.memory`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from paramsplit.errors import ConfigError, InputShapeError
from paramsplit.measure.latency import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_BUDGET_S,
    executor_predictor,
    loop_predictor,
    measure_inference_side_by_side,
)
from paramsplit.measure.memory import count_design_memory
from paramsplit.planner.accounting import design_flops_per_image
from paramsplit.specs import InputSpec
from paramsplit.train.executors import Executor
from paramsplit.train.loop import restore_executor

if TYPE_CHECKING:
    from paramsplit.data import DatasetTensors
    from paramsplit.train.records import TrainResult


def weights_bytes(executor: Executor) -> int:
    """Bytes of every member's parameters and buffers, in the dtype they are stored in."""
    return sum(tensor.nbytes for state in executor.member_states() for tensor in state.values())


def _same_device(a: torch.device, b: torch.device) -> bool:
    # "cuda" and "cuda:0" name the same device while the current device is 0.
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


_MEMORY_KEYS = (
    "peak_train_memory_bytes",
    "peak_inference_memory_bytes",
    "loop_train_memory_bytes",
    "loop_inference_memory_bytes",
    "memory_method",
    "memory",
)


@dataclass(frozen=True)
class MeasureResult:
    """Everything measured about one trained design on one device.

    Memory figures are exact peaks of live tensors, weights included
    (`paramsplit.measure.memory`): `peak_*` for all k members at once (fused), `loop_*` for
    one member at a time; `memory` holds both with their breakdown by category. All None
    when memory was not measured. FLOPs count one forward pass of every member, 2 per
    multiply-accumulate (`paramsplit.planner.accounting.design_flops_per_image`).
    """

    member: str
    num_members: int
    executor: str
    device: str
    input: str
    precision: str
    latency_ms_batch1: float
    throughput_images_per_s: float
    throughput_batch_size: int
    loop_latency_ms_batch1: float
    loop_throughput_images_per_s: float
    timing_repeats: int
    weights_bytes: int
    flops_per_image: int
    peak_train_memory_bytes: int | None
    peak_inference_memory_bytes: int | None
    loop_train_memory_bytes: int | None
    loop_inference_memory_bytes: int | None
    train_batch_size: int
    inference_batch_size: int
    memory_method: str | None
    memory: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_design(
    executor: Executor,
    input_spec: InputSpec,
    device: torch.device | str,
    *,
    memory: bool = True,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    budget_s: float = DEFAULT_BUDGET_S,
) -> MeasureResult:
    """Measure a trained design: its executor against a plain loop, then memory and size.

    Leaves the executor in eval mode. Memory is counted, not measured (nothing is run on
    the trained executor): training at the executor's batch size and settings, inference at
    the largest of `batch_sizes`, for the loop and for fused execution.
    """
    device = torch.device(device)
    if not _same_device(device, executor.device):
        raise ConfigError(f"the executor lives on {executor.device}, asked to measure on {device}")
    expected = executor.input_spec
    if (input_spec.channels, input_spec.num_classes) != (expected.channels, expected.num_classes):
        raise InputShapeError(
            f"input {input_spec.name} with {input_spec.num_classes} classes does not fit "
            f"{executor.arch.name}, built for {expected.channels} channel(s) and "
            f"{expected.num_classes} classes"
        )
    fused, loop = measure_inference_side_by_side(
        [executor_predictor(executor), loop_predictor(executor)],
        input_shape=input_spec.shape,
        device=device,
        batch_sizes=batch_sizes,
        budget_s=budget_s,
    )
    config = executor.config
    inference_batch_size = max(batch_sizes)
    counted: dict[str, Any] = dict.fromkeys(_MEMORY_KEYS)
    if memory:
        design_memory = count_design_memory(
            executor.arch,
            executor.num_members,
            input_spec,
            config,
            inference_batch_size=inference_batch_size,
            device=device,
        )
        counted = design_memory.result_keys()
    return MeasureResult(
        member=executor.arch.name,
        num_members=executor.num_members,
        executor=executor.name,
        device=str(device),
        input=input_spec.name,
        precision=config.precision,
        latency_ms_batch1=fused.latency_ms_batch1,
        throughput_images_per_s=fused.throughput_images_per_s,
        throughput_batch_size=fused.batch_size_throughput,
        loop_latency_ms_batch1=loop.latency_ms_batch1,
        loop_throughput_images_per_s=loop.throughput_images_per_s,
        timing_repeats=min(fused.repeats, loop.repeats),
        weights_bytes=weights_bytes(executor),
        flops_per_image=design_flops_per_image(executor.num_members, executor.arch, input_spec),
        train_batch_size=config.batch_size,
        inference_batch_size=inference_batch_size,
        **counted,
    )


def measure_run(
    result: TrainResult, dataset: DatasetTensors, device: torch.device, *, memory: bool
) -> dict[str, Any]:
    """Latency, throughput and (with `memory`) peak memory of a trained run, as result keys.

    A measurement that fails is noted under `measure_error`, not raised: the trained result
    must reach the database either way.
    """
    began = time.perf_counter()
    try:
        executor = restore_executor(result, device)
        measured = measure_design(executor, dataset.input_spec(), device, memory=memory)
    except Exception as error:
        return {"measure_error": f"{type(error).__name__}: {error}"}
    return {**measured.to_dict(), "measure_time_s": time.perf_counter() - began}
