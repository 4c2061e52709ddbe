"""Measurement after training: inference timing, the loop-vs-executor oracle, peak memory.

No timed asserts: timings are checked for being positive and finite, never for speed.
Memory is checked for what must hold whatever the allocator does: a training step needs
memory, and a network with 64× the weights and 8× the activations needs clearly more.
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
    peak_memory_bytes,
    weights_bytes,
)
from paramsplit.measure.process_memory import MemoryRequest, main
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
    assert measurement.batch_size_throughput in (1, 32)


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


# --- peak memory --------------------------------------------------------------------------


def memory_request(arch: str, mode: str = "train", **overrides) -> MemoryRequest:
    fields = {
        "arch": arch,
        "num_members": 1,
        "executor": "fused",
        "input": "1x8x8",
        "num_classes": 10,
        "batch_size": 64,
        "mode": mode,
        "steps": 2,
        "num_threads": 1,
    }
    return MemoryRequest(**{**fields, **overrides})


def test_training_needs_memory_measured_in_a_subprocess():
    request = memory_request("resnet-8-4", "train", num_members=2)
    assert peak_memory_bytes(request) > 0


@pytest.mark.slow
def test_a_much_bigger_network_needs_much_more_training_memory():
    small, big = (
        peak_memory_bytes(memory_request(arch, "train", input="3x32x32", batch_size=128))
        for arch in ("resnet-8-4", "resnet-8-32")
    )
    # Activations alone grow 8× (accounting.estimate_train_memory: 22 MB -> 180 MB).
    assert big > 2 * small > 0


@pytest.mark.slow
def test_measure_design_with_memory_on_cpu():
    executor = small_executor("fused")
    result = measure_design(executor, DIGITS, CPU, batch_sizes=(1, 64), budget_s=0.02)
    assert result.memory_method == "subprocess_peak_rss"
    assert result.peak_train_memory_bytes is not None and result.peak_train_memory_bytes > 0
    assert result.peak_inference_memory_bytes is not None
    assert result.peak_inference_memory_bytes >= 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_design_with_memory_on_cuda():
    device = torch.device("cuda")
    executor = make_executor(
        "fused", ps.parse_arch("resnet-8-4"), DIGITS, [0, 1], TrainConfig(batch_size=32), device
    )
    result = measure_design(executor, DIGITS, device, batch_sizes=(1, 64), budget_s=0.02)
    assert result.memory_method == "cuda_max_memory_allocated"
    assert result.peak_train_memory_bytes is not None and result.peak_train_memory_bytes > 0
    assert result.peak_inference_memory_bytes is not None
    assert result.peak_inference_memory_bytes > 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mode": "eval"}, "mode must be train or infer, got 'eval'"),
        ({"executor": "auto"}, "executor must be loop, fused, vmap, got 'auto'"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"precision": "fp8"}, "precision must be"),
    ],
)
def test_memory_request_is_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        memory_request("resnet-8-4", **overrides)


def test_memory_request_round_trips_through_json():
    request = memory_request("resnet-8-4", "infer", precision="bf16", channels_last=True)
    assert MemoryRequest.from_json(request.to_json()) == request


def test_malformed_memory_request_is_one_line(capsys):
    assert main(['{"arch": "resnet-8-4"}']) == 1
    assert "malformed memory request" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="malformed memory request"):
        MemoryRequest.from_json("not json")
