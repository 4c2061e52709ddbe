"""Hand-written run records (paramsplit.records), for tests that need one without training."""

from __future__ import annotations

import dataclasses
from typing import Any

from paramsplit.records import EpochSummary, MeasureResult, RunSpec, TrainSummary
from paramsplit.specs import DesignClass, TrainConfig

CONFIG = TrainConfig(epochs=2, batch_size=64, weight_decay=5e-4)


def a_run_spec(**changes: Any) -> RunSpec:
    spec = RunSpec(
        family="resnet",
        design_class=DesignClass.DEQ,
        num_members=2,
        member="resnet-8-4",
        member_depth=8,
        member_width=4,
        member_params=4_000,
        total_params=8_000,
        budget_params=10_000,
        ratio=0.8,
        dataset="digits",
        config=CONFIG,
        seed=0,
    )
    return dataclasses.replace(spec, **changes)


def a_train_summary(**changes: Any) -> TrainSummary:
    curve = tuple(
        EpochSummary(
            epoch=epoch, lr=0.1, train_loss=1.0 / epoch, val_accuracy=0.5 + 0.1 * epoch,
            val_nll=1.0, test_accuracy=None, epoch_time_s=1.5, elapsed_train_s=1.5 * epoch,
        )
        for epoch in (1, 2)
    )  # fmt: skip
    summary = TrainSummary(
        design="2x resnet-8-4", design_class=DesignClass.DEQ, num_members=2, family="resnet",
        member="resnet-8-4", member_params=4_000, total_params=8_000, flops_per_image=900_000,
        dataset="digits", seed=0, status="done", reason=None, executor="fused",
        executor_step_ms={"fused": 1.0, "loop": 2.0},
        executor_rounds_ms={"fused": [1.0, 1.1], "loop": [2.0, 2.2]},
        executor_reason="fused has the fastest step", device="cpu", torch_version="2.0",
        num_threads=1, config=CONFIG, epochs_trained=2, best_epoch=2, best_val_accuracy=0.7,
        test_accuracy=0.72, test_logit_accuracy=0.71, test_vote_accuracy=0.70,
        member_test_accuracy=(0.65, 0.66), test_nll=0.9, test_ece=0.05,
        final_test_accuracy=0.72, train_time_s=3.0, compute_time_s=2.5, data_time_s=0.5,
        epoch_time_s=1.5, train_images_per_s=1000.0, target_accuracy=None,
        time_to_target_s=None, curve=curve,
    )  # fmt: skip
    return dataclasses.replace(summary, **changes)


def a_measure_result(**changes: Any) -> MeasureResult:
    measured = MeasureResult(
        member="resnet-8-4", num_members=2, executor="fused", device="cpu", input="1x8x8",
        precision="fp32", latency_ms_batch1=2.0, throughput_images_per_s=5000.0,
        throughput_batch_size=256, loop_latency_ms_batch1=3.0,
        loop_throughput_images_per_s=4000.0, timing_repeats=10, weights_bytes=32_000,
        flops_per_image=900_000, peak_train_memory_bytes=None,
        peak_inference_memory_bytes=None, loop_train_memory_bytes=None,
        loop_inference_memory_bytes=None, train_batch_size=64, inference_batch_size=256,
        memory_method=None, memory=None,
    )  # fmt: skip
    return dataclasses.replace(measured, **changes)
