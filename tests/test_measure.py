"""Measurement after training: inference timing, the loop-vs-executor oracle, and the
memory a measured design reports (the count itself: tests/test_memory.py).

No timed asserts: timings are checked for being positive and finite, never for speed.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

import paramsplit as ps
from paramsplit.errors import ConfigError, InputShapeError
from paramsplit.measure import (
    MIN_REPEATS,
    InferenceMeasurement,
    executor_predictor,
    loop_predictor,
    measure_design,
    measure_inference,
    measure_inference_side_by_side,
    weights_bytes,
)
from paramsplit.specs import TrainConfig
from paramsplit.train import EXECUTORS, make_executor

DIGITS = ps.parse_input("1x8x8", num_classes=10)
CPU = torch.device("cpu")
FAST = {"budget_s": 0.02, "repeats": MIN_REPEATS, "warmup": 1}
MEMBERS = 3


def small_executor(
    name: str, arch: ps.ArchSpec | str = "resnet-8-4", *, steps: int = 2, batch_size: int = 16
):
    """An executor trained for a few steps, so weights and batch-norm statistics moved."""
    arch = ps.parse_arch(arch) if isinstance(arch, str) else arch
    config = TrainConfig(batch_size=batch_size, lr=0.05)
    executor = make_executor(name, arch, DIGITS, list(range(MEMBERS)), config, CPU)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(MEMBERS, batch_size, *DIGITS.shape, generator=generator)
    labels = torch.randint(DIGITS.num_classes, (MEMBERS, batch_size), generator=generator)
    for _ in range(steps):
        executor.train_step(images, labels)
    return executor


def assert_positive_finite(measurement: InferenceMeasurement) -> None:
    assert 0 < measurement.latency_ms_batch1 < math.inf
    assert 0 < measurement.throughput_images_per_s < math.inf
    assert measurement.repeats >= MIN_REPEATS


# --- inference timing ---------------------------------------------------------------------


def test_inference_measurement_is_positive_and_finite():
    model = ps.build_model(ps.parse_arch("resnet-8-4"), DIGITS, num_members=2, seed=0).eval()
    measurement = measure_inference(model, DIGITS.shape, CPU, batch_sizes=(1, 32), **FAST)
    assert_positive_finite(measurement)
    assert measurement.throughput_batch_size in (1, 32)


def test_inference_calls_the_function_with_the_requested_shapes():
    seen: list[tuple[int, ...]] = []

    def predict(images: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(images.shape))
        assert not torch.is_grad_enabled()
        return images.sum()

    measure_inference(predict, (3, 9, 9), CPU, batch_sizes=(4, 1), **FAST)
    assert set(seen) == {(1, 3, 9, 9), (4, 3, 9, 9)}


def test_side_by_side_measures_every_function_on_equal_terms():
    model = ps.build_model(ps.parse_arch("resnet-8-4"), DIGITS, seed=0).eval()
    first, second = measure_inference_side_by_side(
        [model, model], DIGITS.shape, CPU, batch_sizes=(1, 8), **FAST
    )
    assert_positive_finite(first)
    assert_positive_finite(second)
    assert first.repeats == second.repeats


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_sizes": (8, 16)}, "batch_sizes must be sizes >= 1 including 1"),
        ({"batch_sizes": (0, 1)}, "batch_sizes must be"),
        ({"repeats": 1}, f"repeats must be >= {MIN_REPEATS}, got 1"),
        ({"warmup": -1}, "warmup must be >= 0"),
        ({"budget_s": -0.5}, "budget_s must be >= 0"),
    ],
)
def test_inference_options_are_checked(options, message):
    with pytest.raises(ConfigError, match=message):
        measure_inference(torch.nn.Identity(), (1, 8, 8), CPU, **options)


# --- the loop and the executor compute the same thing -------------------------------------


@pytest.mark.parametrize("executor_name", EXECUTORS)
def test_loop_predictor_equals_executor_predictor(small_arch, executor_name):
    executor = small_executor(executor_name, small_arch)
    images = torch.randn(5, *DIGITS.shape, generator=torch.Generator().manual_seed(1))
    fused = executor_predictor(executor)(images)
    loop = loop_predictor(executor)(images)
    assert fused.shape == loop.shape == (5, MEMBERS, DIGITS.num_classes)
    assert_close(fused, loop, rtol=1e-4, atol=1e-5)


def test_weights_bytes_counts_every_members_parameters_and_buffers():
    arch = ps.parse_arch("resnet-8-4")
    single = ps.build_model(arch, DIGITS)
    expected = sum(t.nbytes for t in single.state_dict().values())
    assert weights_bytes(small_executor("fused", steps=0)) == MEMBERS * expected


# --- measure_design -----------------------------------------------------------------------


def test_measure_design_without_memory_reports_units_and_exact_flops():
    executor = small_executor("fused")
    result = measure_design(executor, DIGITS, CPU, memory=False, batch_sizes=(1, 16), budget_s=0.02)
    row = result.to_dict()
    for key in (
        "latency_ms_batch1",
        "throughput_images_per_s",
        "loop_latency_ms_batch1",
        "loop_throughput_images_per_s",
        "peak_train_memory_bytes",
        "peak_inference_memory_bytes",
        "weights_bytes",
        "flops_per_image",
        "memory_method",
    ):
        assert key in row
    for key in ("latency_ms_batch1", "loop_latency_ms_batch1", "loop_throughput_images_per_s"):
        assert 0 < row[key] < math.inf
    member_flops = ps.profile_arch(ps.parse_arch("resnet-8-4"), DIGITS).flops_per_image
    assert row["flops_per_image"] == MEMBERS * member_flops
    assert row["peak_train_memory_bytes"] is None
    assert row["memory_method"] is None
    assert (row["num_members"], row["executor"], row["member"]) == (MEMBERS, "fused", "resnet-8-4")


def test_measure_design_rejects_an_input_the_design_was_not_built_for():
    executor = small_executor("loop", steps=0)
    with pytest.raises(InputShapeError, match="input 3x8x8 with 10 classes does not fit"):
        measure_design(executor, ps.parse_input("3x8x8"), CPU, memory=False)


def test_measure_design_rejects_another_device():
    executor = small_executor("loop", steps=0)
    with pytest.raises(ConfigError, match="the executor lives on cpu, asked to measure on meta"):
        measure_design(executor, DIGITS, "meta", memory=False)


# --- memory --------------------------------------------------------------------------------


def test_measure_design_counts_memory_for_the_loop_and_all_members_at_once():
    executor = small_executor("fused")
    result = measure_design(executor, DIGITS, CPU, batch_sizes=(1, 64), budget_s=0.02)
    assert result.memory_method == "live_tensors"
    assert (result.train_batch_size, result.inference_batch_size) == (16, 64)
    assert result.peak_train_memory_bytes is not None and result.loop_train_memory_bytes
    assert result.loop_train_memory_bytes < result.peak_train_memory_bytes
    assert result.peak_inference_memory_bytes is not None and result.loop_inference_memory_bytes
    # Weights are part of the figure now (they were left out of the old resident-set one).
    assert result.loop_inference_memory_bytes > result.weights_bytes
    assert result.memory is not None
    breakdown = result.memory["train"]["loop"]["breakdown_bytes"]
    assert breakdown["parameters"] == result.weights_bytes  # k members' state dicts
    assert breakdown["optimizer_state"] > 0  # SGD's momentum buffers


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_design_with_memory_on_cuda():
    device = torch.device("cuda")
    executor = make_executor(
        "fused", ps.parse_arch("resnet-8-4"), DIGITS, [0, 1], TrainConfig(batch_size=32), device
    )
    result = measure_design(executor, DIGITS, device, batch_sizes=(1, 64), budget_s=0.02)
    assert result.memory_method == "live_tensors"
    assert result.peak_train_memory_bytes is not None and result.peak_train_memory_bytes > 0
    assert result.peak_inference_memory_bytes is not None
    assert result.peak_inference_memory_bytes > 0
