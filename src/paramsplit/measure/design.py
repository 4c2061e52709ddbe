"""Measurement after training: inference latency and throughput, exact memory, size, FLOPs.

Latency is described in `paramsplit.measure.latency`, memory in `paramsplit.measure.memory`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from paramsplit.errors import ConfigError, InputShapeError
from paramsplit.measure.latency import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_BUDGET_S,
    executor_predictor,
    loop_predictor,
    measure_inference_side_by_side,
)
from paramsplit.measure.memory import MEMORY_METHOD, count_design_memory
from paramsplit.planner.accounting import design_flops_per_image
from paramsplit.records import MeasuredRun, MeasureResult
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


def _check_fits(executor: Executor, input_spec: InputSpec, device: torch.device) -> None:
    """Raise unless `executor` lives on `device` and was built for `input_spec`."""
    if not _same_device(device, executor.device):
        raise ConfigError(f"the executor lives on {executor.device}, asked to measure on {device}")
    expected = executor.input_spec
    if (input_spec.channels, input_spec.num_classes) != (expected.channels, expected.num_classes):
        raise InputShapeError(
            f"input {input_spec.name} with {input_spec.num_classes} classes does not fit "
            f"{executor.arch.name}, built for {expected.channels} channel(s) and "
            f"{expected.num_classes} classes"
        )


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
    _check_fits(executor, input_spec, device)
    # The design's own executor (whichever training chose) and a plain loop, side by side.
    by_executor, by_loop = measure_inference_side_by_side(
        [executor_predictor(executor), loop_predictor(executor)],
        input_shape=input_spec.shape,
        device=device,
        batch_sizes=batch_sizes,
        budget_s=budget_s,
    )
    config = executor.config
    inference_batch_size = max(batch_sizes)
    counted = (
        count_design_memory(
            executor.arch, executor.num_members, input_spec, config,
            inference_batch_size=inference_batch_size, device=device,
        )
        if memory
        else None
    )  # fmt: skip
    return MeasureResult(
        member=executor.arch.name,
        num_members=executor.num_members,
        executor=executor.name,
        device=str(device),
        input=input_spec.name,
        precision=config.precision,
        latency_ms_batch1=by_executor.latency_ms_batch1,
        throughput_images_per_s=by_executor.throughput_images_per_s,
        throughput_batch_size=by_executor.throughput_batch_size,
        loop_latency_ms_batch1=by_loop.latency_ms_batch1,
        loop_throughput_images_per_s=by_loop.throughput_images_per_s,
        timing_repeats=min(by_executor.repeats, by_loop.repeats),
        weights_bytes=weights_bytes(executor),
        flops_per_image=design_flops_per_image(executor.num_members, executor.arch, input_spec),
        train_batch_size=config.batch_size,
        inference_batch_size=inference_batch_size,
        # All k members at once (fused) and one at a time (loop); None where not counted.
        peak_train_memory_bytes=counted.train["fused"].peak_bytes if counted else None,
        peak_inference_memory_bytes=counted.inference["fused"].peak_bytes if counted else None,
        loop_train_memory_bytes=counted.train["loop"].peak_bytes if counted else None,
        loop_inference_memory_bytes=counted.inference["loop"].peak_bytes if counted else None,
        memory_method=MEMORY_METHOD if counted else None,
        memory=counted.to_dict() if counted else None,
    )


def measure_run(
    result: TrainResult, dataset: DatasetTensors, device: torch.device, *, memory: bool
) -> MeasuredRun:
    """Latency, throughput and (with `memory`) peak memory of a trained run.

    A measurement that fails is returned with its `measure_error`, not raised: the trained
    result must reach the database either way.
    """
    began = time.perf_counter()
    try:
        executor = restore_executor(result, device)
        measured = measure_design(executor, dataset.input_spec(), device, memory=memory)
    except Exception as error:
        return MeasuredRun(None, measure_error=f"{type(error).__name__}: {error}")
    return MeasuredRun(measured, measure_time_s=time.perf_counter() - began)
