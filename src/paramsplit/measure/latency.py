"""Inference latency and throughput, timed side by side.

Timing follows one recipe: warm-up calls first (allocations, kernel selection), then
repetitions timed with `time.perf_counter` around a synchronised call, and the median
reported. Repetitions stop at a time budget per batch size (never fewer than
`MIN_REPEATS`), so a tiny network measures in a fraction of a second and a large one does
not run for minutes. A design is measured twice side by side: through its executor (what
training chose) and as a plain loop over k single networks, so the reader sees what fusing
buys at inference. `time_in_rounds` keeps every round's times, from which
`paramsplit.measure.side_by_side` takes ratios within rounds (`paramsplit measure`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from paramsplit.errors import ConfigError
from paramsplit.models import build_model
from paramsplit.train.device import memory_format, synchronize
from paramsplit.train.executors import Executor

# Batch 1: the latency one request waits, which the answer compares. 256: throughput, at a
# batch whose per-call overhead is small beside the work for the CIFAR-sized networks here,
# while its inference memory stays a third of a training step's at the default batch of 128
# (resnet-20, 3×32×32: 68 against 198 MiB, by `paramsplit describe`).
DEFAULT_BATCH_SIZES = (1, 256)
DEFAULT_WARMUP = 3
DEFAULT_REPEATS = 50  # the most timed repetitions per batch size
DEFAULT_BUDGET_S = 0.3  # stop timing a batch size once this much time is spent on it
MIN_REPEATS = 3  # a median of fewer is not a median

Predict = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class InferenceMeasurement:
    """Median inference cost. `repeats` is the fewest timed calls behind either figure."""

    latency_ms_batch1: float
    throughput_images_per_s: float
    throughput_batch_size: int
    repeats: int


def time_in_rounds(
    predicts: Sequence[Predict],
    images: Tensor,
    device: torch.device,
    *,
    warmup: int,
    min_rounds: int,
    max_rounds: int,
    budget_s: float,
) -> list[list[float]]:
    """Seconds of each predict function's call in every round: `[function][round]`.

    Each round calls every function once, so a host that speeds up or slows down mid-way
    (a 2-core development host drifted up to 1.9× within an hour, with nothing to see in
    /proc/stat) shifts all of them alike, and the ratio of two
    functions' times in one round is measured side by side. Each round starts one function
    further on, so no function always runs right after the same neighbour. Rounds stop once
    `max_rounds` ran or `budget_s` per function is spent, never before `min_rounds`.
    """
    for predict in predicts:
        for _ in range(warmup):
            predict(images)
    synchronize(device)
    times_s: list[list[float]] = [[] for _ in predicts]
    spent_s = 0.0
    rounds = 0
    while rounds < min_rounds or (rounds < max_rounds and spent_s < budget_s * len(predicts)):
        for offset in range(len(predicts)):
            index = (rounds + offset) % len(predicts)
            synchronize(device)
            began = time.perf_counter()
            predicts[index](images)
            synchronize(device)
            times_s[index].append(time.perf_counter() - began)
            spent_s += times_s[index][-1]
        rounds += 1
    return times_s


def _median_calls_s(
    predicts: Sequence[Predict],
    images: Tensor,
    device: torch.device,
    warmup: int,
    repeats: int,
    budget_s: float,
) -> tuple[list[float], int]:
    """Median seconds per call of each predict function, timed in alternation; and rounds."""
    times_s = time_in_rounds(
        predicts,
        images,
        device,
        warmup=warmup,
        min_rounds=MIN_REPEATS,
        max_rounds=repeats,
        budget_s=budget_s,
    )
    rounds = len(times_s[0]) if times_s else 0
    return [statistics.median(own_times_s) for own_times_s in times_s], rounds


def measure_inference_side_by_side(
    predicts: Sequence[Predict],
    input_shape: Sequence[int],
    device: torch.device | str,
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    budget_s: float = DEFAULT_BUDGET_S,
    seed: int = 0,
) -> list[InferenceMeasurement]:
    """`measure_inference` of several predict functions, timed in alternation on one input.

    `budget_s` is per function and batch size.
    """
    device = torch.device(device)
    sizes = sorted(set(batch_sizes))
    checks = [
        (1 in sizes and sizes[0] >= 1, "batch_sizes", list(batch_sizes), "sizes >= 1 including 1"),
        (warmup >= 0, "warmup", warmup, ">= 0"),
        (repeats >= MIN_REPEATS, "repeats", repeats, f">= {MIN_REPEATS}"),
        (budget_s >= 0, "budget_s", budget_s, ">= 0"),
    ]
    for ok, name, value, allowed in checks:
        if not ok:
            raise ConfigError(f"{name} must be {allowed}, got {value!r}")
    generator = torch.Generator().manual_seed(seed)
    seconds: dict[int, list[float]] = {}
    fewest = repeats
    with torch.no_grad():
        for size in sizes:
            images = torch.randn(size, *input_shape, generator=generator).to(device)
            seconds[size], rounds = _median_calls_s(
                predicts, images, device, warmup, repeats, budget_s
            )
            fewest = min(fewest, rounds)
    results = []
    for i in range(len(predicts)):
        best = max(sizes, key=lambda size: size / seconds[size][i])
        results.append(
            InferenceMeasurement(
                latency_ms_batch1=1000 * seconds[1][i],
                throughput_images_per_s=best / seconds[best][i],
                throughput_batch_size=best,
                repeats=fewest,
            )
        )
    return results


def measure_inference(
    predict: Predict,
    input_shape: Sequence[int],
    device: torch.device | str,
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    budget_s: float = DEFAULT_BUDGET_S,
    seed: int = 0,
) -> InferenceMeasurement:
    """Latency at batch 1 and the best throughput over `batch_sizes`, under `no_grad`.

    Inputs are standard normal, as normalised images are, generated once per batch size
    from `seed`. `batch_sizes` must include 1; `repeats` caps the timed calls per batch
    size, `budget_s` (seconds per batch size) stops them earlier, though at least
    `MIN_REPEATS` always run.

    Shape:
        predict: [B, *input_shape] -> anything
    """
    (measurement,) = measure_inference_side_by_side(
        [predict],
        input_shape,
        device,
        batch_sizes=batch_sizes,
        warmup=warmup,
        repeats=repeats,
        budget_s=budget_s,
        seed=seed,
    )
    return measurement


def executor_predictor(executor: Executor) -> Predict:
    """The chosen executor's own inference. Leaves the executor in eval mode.

    Shape: [B, C, H, W] -> [B, k, classes]
    """
    executor.set_training(False)
    return executor.predict


def loop_predictor(executor: Executor) -> Predict:
    """k single networks with the executor's member weights, run one after the other.

    The networks share the executor's precision (autocast) and memory format, but are not
    compiled: this is the plain loop a user would write.

    Shape: [B, C, H, W] -> [B, k, classes]
    """
    layout = memory_format(executor.config)
    networks = []
    for state in executor.member_states():
        network = build_model(executor.arch, executor.input_spec, device=executor.device)
        network.load_state_dict(state)
        networks.append(network.to(memory_format=layout).eval())

    def predict(images: Tensor) -> Tensor:
        with torch.no_grad(), executor.autocast():
            images = executor.prepare(images)
            return torch.cat([network(images) for network in networks], dim=1).float()

    return predict
