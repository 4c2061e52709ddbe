"""Inference of a budget's designs, timed side by side in one process (`paramsplit measure`).

For one budget, the single network and every ensemble (each through every inference
executor: loop, fused, vmap) are timed in alternating rounds at each batch size, after a
warm-up and with the device synchronised around every call. The host's speed drifts (up
to 1.9× within an hour here), but within one round it is the same for all, so the ratio of
an ensemble's time to the single network's time in the same round is a fair comparison; its
median over the rounds is the ratio reported, its quartiles the spread. An ensemble deploys
with its fastest executor at each batch size (the lowest median latency); the other
executors' figures are kept beside it. Throughput at a batch size is that batch over its
median latency: measured at that batch, never extrapolated from another.

Weights: latency and throughput do not depend on the values of the weights (the same
operations run on whatever numbers), so a design whose trained weights were not kept is
measured as a freshly built network of exactly that design. Where its trained weights were
kept (or a checkpoint still holds them), they are loaded, and the row says which
(`weights`).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from paramsplit.errors import ConfigError
from paramsplit.measure.latency import MIN_REPEATS, Predict, time_in_rounds
from paramsplit.specs import InputSpec, TrainConfig, design_name, parse_arch
from paramsplit.train.executors import EXECUTORS, make_executor

DEFAULT_MEASURE_BATCH_SIZES = (1, 64)
DEFAULT_WARMUP_CALLS = 3
DEFAULT_MIN_ROUNDS = 10  # quartiles of fewer rounds say little about the spread
DEFAULT_MAX_ROUNDS = 100
DEFAULT_ROUND_BUDGET_S = 0.5  # timing per design, executor and batch size, once past the minimum


# Loads a design's trained member weights (one state dict per member) when it is measured.
WeightsLoader = Callable[[], list[dict[str, Tensor]]]


@dataclass(frozen=True)
class DesignToMeasure:
    """One finished design of a budget, by the run that stands for it (its lowest seed,
    or the lowest whose trained weights `weights` loads)."""

    run_id: str
    design_class: str
    num_members: int
    member: str
    weights: WeightsLoader | None = field(default=None, compare=False, repr=False)

    @property
    def design(self) -> str:
        return design_name(self.num_members, self.member)


@dataclass(frozen=True)
class BudgetGroup:
    """A budget's designs, measured together: its single network (if it finished) and its
    ensembles. `config` gives the precision, memory format and compilation they ran with."""

    family: str
    dataset: str
    budget_params: int
    input_spec: InputSpec
    config: TrainConfig
    designs: tuple[DesignToMeasure, ...]

    @property
    def single(self) -> DesignToMeasure | None:
        return next((d for d in self.designs if d.num_members == 1), None)


@dataclass(frozen=True)
class Measurement:
    """One design through one executor at one batch size. Latencies are per batch; the
    ratio is to the paired single network in the same rounds (None without one)."""

    run_id: str
    family: str
    dataset: str
    input: str
    budget_params: int
    design_class: str
    num_members: int
    design: str
    member: str
    batch_size: int
    executor: str
    chosen: bool
    latency_ms: float
    latency_q1_ms: float
    latency_q3_ms: float
    throughput_images_per_s: float
    ratio_to_single: float | None
    ratio_q1: float | None
    ratio_q3: float | None
    single_design: str | None
    single_run_id: str | None
    rounds: int
    weights: str
    precision: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RoundSettings:
    """How each batch size is timed: see `paramsplit.measure.latency.time_in_rounds`."""

    warmup: int = DEFAULT_WARMUP_CALLS
    min_rounds: int = DEFAULT_MIN_ROUNDS
    max_rounds: int = DEFAULT_MAX_ROUNDS
    budget_s: float = DEFAULT_ROUND_BUDGET_S

    def __post_init__(self) -> None:
        checks = [
            (self.warmup >= 0, "warmup", self.warmup, ">= 0"),
            (self.min_rounds >= MIN_REPEATS, "min_rounds", self.min_rounds, f">= {MIN_REPEATS}"),
            (self.max_rounds >= self.min_rounds, "max_rounds", self.max_rounds, ">= min_rounds"),
            (self.budget_s >= 0, "budget_s", self.budget_s, ">= 0"),
        ]
        for ok, name, value, allowed in checks:
            if not ok:
                raise ConfigError(f"{name} must be {allowed}, got {value!r}")


def check_batch_sizes(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    """The batch sizes in increasing order, once each; each must be at least 1."""
    if not batch_sizes or min(batch_sizes) < 1:
        raise ConfigError(f"batch sizes must be one or more integers >= 1, got {list(batch_sizes)}")
    return tuple(sorted(set(batch_sizes)))


def inference_executors(design: DesignToMeasure, config: TrainConfig) -> tuple[str, ...]:
    """The executors to time a design through: one network has nothing to choose; vmap
    cannot run a compiled network."""
    if design.num_members == 1:
        return ("loop",)
    return tuple(name for name in EXECUTORS if not (config.compile and name == "vmap"))


def _predictors(
    group: BudgetGroup, device: torch.device
) -> list[tuple[DesignToMeasure, str, str, Predict]]:
    """(design, executor, weights, predict) for every design of the group and executor."""
    predictors: list[tuple[DesignToMeasure, str, str, Predict]] = []
    for design in group.designs:
        weights = design.weights() if design.weights is not None else None
        for name in inference_executors(design, group.config):
            executor = make_executor(
                name,
                parse_arch(design.member),
                group.input_spec,
                list(range(design.num_members)),
                group.config,
                device,
            )
            if weights is not None:
                executor.load_member_states(weights)
            executor.set_training(False)
            predictors.append(
                (design, name, "trained" if weights is not None else "fresh", executor.predict)
            )
    return predictors


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def measure_group(
    group: BudgetGroup,
    device: torch.device | str,
    batch_sizes: Sequence[int] = DEFAULT_MEASURE_BATCH_SIZES,
    *,
    settings: RoundSettings | None = None,
    on_batch: Callable[[str], None] | None = None,
    seed: int = 0,
) -> list[Measurement]:
    """Time every design of `group` through every inference executor, side by side, at
    each batch size; one `Measurement` per design, executor and batch size.

    Inputs are standard normal (as normalised images are), drawn once per batch size from
    `seed`. `on_batch(label)` is called before each batch size is timed.
    """
    device = torch.device(device)
    settings = settings or RoundSettings()
    sizes = check_batch_sizes(batch_sizes)
    predictors = _predictors(group, device)
    generator = torch.Generator().manual_seed(seed)
    single = group.single
    measurements = []
    for size in sizes:
        if on_batch is not None:
            on_batch(f"{group.family} {group.budget_params:,} on {group.dataset}, batch {size}")
        images = torch.randn(size, *group.input_spec.shape, generator=generator).to(device)
        with torch.no_grad():
            times_s = time_in_rounds(
                [predict for *_, predict in predictors],
                images,
                device,
                warmup=settings.warmup,
                min_rounds=settings.min_rounds,
                max_rounds=settings.max_rounds,
                budget_s=settings.budget_s,
            )
        single_times_s = next(
            (t for (d, *_), t in zip(predictors, times_s, strict=True) if d is single), None
        )
        medians = {
            (design.run_id, name): statistics.median(own)
            for (design, name, *_), own in zip(predictors, times_s, strict=True)
        }
        for (design, name, weights, _), own_times_s in zip(predictors, times_s, strict=True):
            q1_s, median_s, q3_s = _quartiles(own_times_s)
            fastest = min(
                inference_executors(design, group.config),
                key=lambda other: medians[(design.run_id, other)],
            )
            ratio = None
            if single_times_s is not None:
                ratio = _quartiles(
                    [t / s for t, s in zip(own_times_s, single_times_s, strict=True)]
                )
            measurements.append(
                Measurement(
                    run_id=design.run_id,
                    family=group.family,
                    dataset=group.dataset,
                    input=group.input_spec.name,
                    budget_params=group.budget_params,
                    design_class=design.design_class,
                    num_members=design.num_members,
                    design=design.design,
                    member=design.member,
                    batch_size=size,
                    executor=name,
                    chosen=name == fastest,
                    latency_ms=1000 * median_s,
                    latency_q1_ms=1000 * q1_s,
                    latency_q3_ms=1000 * q3_s,
                    throughput_images_per_s=size / median_s,
                    ratio_to_single=ratio[1] if ratio else None,
                    ratio_q1=ratio[0] if ratio else None,
                    ratio_q3=ratio[2] if ratio else None,
                    single_design=single.design if single else None,
                    single_run_id=single.run_id if single else None,
                    rounds=len(own_times_s),
                    weights=weights,
                    precision=group.config.precision,
                )
            )
    return measurements
