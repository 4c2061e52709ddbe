"""Designs over seeds: one summary per (family, dataset, budget, design class, k)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from paramsplit.analysis.records import DEFAULT_ACCURACY, RunRecord
from paramsplit.analysis.stats import Stat, stat_of
from paramsplit.specs import class_label, class_order

# A design at a budget: what the user compares. Two budgets may plan the same member, and
# each keeps its own row (the budget is the question asked).
DesignKey = tuple[str, str, int, str, int]  # family, dataset, budget_params, class, k


@dataclass(frozen=True)
class DesignSummary:
    """One design at one budget, over the seeds that finished. Accuracies are fractions;
    `accuracy` is the headline test accuracy the analysis was asked for (prob, logit or vote:
    see `records.ACCURACY_COLUMNS`)."""

    family: str
    dataset: str
    budget_params: int
    design_class: str
    num_members: int
    design: str
    total_params: int
    ratio: float | None
    seeds: tuple[int, ...]
    run_ids: tuple[str, ...]
    num_failed: int
    accuracy: Stat
    best_val_accuracy: Stat | None
    train_time_s: Stat | None
    epoch_time_s: Stat | None
    latency_ms_batch1: Stat | None
    throughput_images_per_s: Stat | None
    peak_train_memory_bytes: Stat | None
    peak_inference_memory_bytes: Stat | None
    flops_per_image: int | None
    loop_train_memory_bytes: Stat | None = None  # one member at a time (peak_*: all at once)

    @property
    def key(self) -> DesignKey:
        return (
            self.family,
            self.dataset,
            self.budget_params,
            self.design_class,
            self.num_members,
        )

    @property
    def label(self) -> str:
        """'single', 'deq k=4', 'weq k=2': the design class as the figures name it."""
        return class_label(self.design_class, self.num_members)

    def to_dict(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            values[name] = value.to_dict() if isinstance(value, Stat) else value
        return values | {"label": self.label}


def key_of(record: RunRecord) -> DesignKey:
    return (
        record.family,
        record.dataset,
        record.budget_params,
        record.design_class,
        record.num_members,
    )


def summarise(
    records: Iterable[RunRecord], accuracy: str = DEFAULT_ACCURACY
) -> list[DesignSummary]:
    """One summary per design with at least one finished run, ordered by family, dataset,
    budget, class and k. Designs whose every run failed are left out (see `failed_runs`), and
    so are finished runs that did not store the `accuracy` asked for."""
    groups: dict[DesignKey, list[RunRecord]] = defaultdict(list)
    for record in records:
        groups[key_of(record)].append(record)
    summaries = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], class_order(k[3]), k[4])):
        done = sorted(
            (r for r in groups[key] if r.done and r.accuracy(accuracy) is not None),
            key=lambda r: r.seed,
        )
        if not done:
            continue
        first = done[0]
        headline = stat_of(r.accuracy(accuracy) for r in done)
        assert headline is not None  # every run in `done` has that accuracy
        flops = [r.flops_per_image for r in done if r.flops_per_image is not None]
        summaries.append(
            DesignSummary(
                family=first.family,
                dataset=first.dataset,
                budget_params=first.budget_params,
                design_class=first.design_class,
                num_members=first.num_members,
                design=first.design,
                total_params=first.total_params,
                ratio=first.ratio,
                seeds=tuple(r.seed for r in done),
                run_ids=tuple(r.run_id for r in done),
                num_failed=sum(1 for r in groups[key] if r.status == "failed"),
                accuracy=headline,
                best_val_accuracy=stat_of(r.best_val_accuracy for r in done),
                train_time_s=stat_of(r.train_time_s for r in done),
                epoch_time_s=stat_of(r.epoch_time_s for r in done),
                latency_ms_batch1=stat_of(r.latency_ms_batch1 for r in done),
                throughput_images_per_s=stat_of(r.throughput_images_per_s for r in done),
                peak_train_memory_bytes=stat_of(r.peak_train_memory_bytes for r in done),
                peak_inference_memory_bytes=stat_of(r.peak_inference_memory_bytes for r in done),
                flops_per_image=int(statistics.median(flops)) if flops else None,
                loop_train_memory_bytes=stat_of(r.loop_train_memory_bytes for r in done),
            )
        )
    return summaries


def failed_runs(records: Iterable[RunRecord]) -> list[RunRecord]:
    return [r for r in records if r.status == "failed"]
