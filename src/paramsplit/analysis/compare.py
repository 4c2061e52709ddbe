"""Each ensemble against the single network of the same budget: the per-design win table.

Accuracy: the difference of means over seeds and a one-sided Welch p-value. Costs: ratios
of the ensemble's median over seeds to the single network's (training time, time per epoch,
latency at batch 1, peak memory; > 1 means the ensemble costs more). Time to accuracy: how
long the ensemble trains until its validation accuracy first reaches the single network's
best (mean over the single's seeds), against how long the single network takes to reach its
own best.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from paramsplit.analysis.designs import DesignKey, DesignSummary, key_of
from paramsplit.analysis.records import RunRecord
from paramsplit.analysis.stats import Stat, beats, p_value_greater

DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    """One ensemble design against the single network at its budget."""

    ensemble: DesignSummary
    single: DesignSummary
    accuracy_gain: float  # ensemble mean − single mean, as a fraction (0.01 = 1 point)
    p_value: float | None  # one-sided: ensemble > single; None without 2 seeds each side
    significant: bool  # p_value < alpha
    alpha: float
    cost_ratios: dict[str, float | None]  # ensemble / single, by metric
    time_to_accuracy_s: float | None  # median over the ensemble's seeds that got there
    reached_target: int  # how many of its seeds reached the single network's best
    single_time_to_best_s: float | None  # median over the single network's seeds
    target_val_accuracy: float | None

    @property
    def wins(self) -> bool:
        """Strictly more accurate on average; a tie is not a win."""
        return beats(self.accuracy_gain, 0.0)

    @property
    def speedup(self) -> float | None:
        """How many times sooner the ensemble reaches the single network's best accuracy."""
        if not self.time_to_accuracy_s or self.single_time_to_best_s is None:
            return None
        return self.single_time_to_best_s / self.time_to_accuracy_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.ensemble.family,
            "dataset": self.ensemble.dataset,
            "budget_params": self.ensemble.budget_params,
            "design_class": self.ensemble.design_class,
            "num_members": self.ensemble.num_members,
            "ensemble": self.ensemble.design,
            "single": self.single.design,
            "ensemble_accuracy": self.ensemble.accuracy.to_dict(),
            "single_accuracy": self.single.accuracy.to_dict(),
            "accuracy_gain": self.accuracy_gain,
            "p_value": self.p_value,
            "significant": self.significant,
            "alpha": self.alpha,
            "wins": self.wins,
            "params_ratio": self.ensemble.total_params / self.single.total_params,
            "cost_ratios": self.cost_ratios,
            "time_to_accuracy_s": self.time_to_accuracy_s,
            "reached_target": self.reached_target,
            "num_seeds": self.ensemble.accuracy.n,
            "single_time_to_best_s": self.single_time_to_best_s,
            "target_val_accuracy": self.target_val_accuracy,
            "speedup": self.speedup,
        }


COST_METRICS = (
    "train_time_s",
    "epoch_time_s",
    "latency_ms_batch1",
    "peak_train_memory_bytes",  # all k members at once
    "loop_train_memory_bytes",  # one member at a time
    "peak_inference_memory_bytes",
)


def _ratio(ensemble: Stat | None, single: Stat | None) -> float | None:
    if ensemble is None or single is None or single.median == 0:
        return None
    return ensemble.median / single.median


def first_time_at(record: RunRecord, target: float) -> float | None:
    """Training time until the run's validation accuracy first reached `target`."""
    for point in record.curve:
        if point.val_accuracy is not None and point.val_accuracy >= target:
            return point.elapsed_train_s
    return None


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def compare_to_single(
    summaries: Sequence[DesignSummary],
    records: Iterable[RunRecord],
    *,
    alpha: float = DEFAULT_ALPHA,
) -> list[Comparison]:
    """A row per ensemble design whose budget also has a finished single network."""
    by_key = {s.key: s for s in summaries}
    runs: dict[DesignKey, list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.done:
            runs[key_of(record)].append(record)
    rows = []
    for ensemble in summaries:
        if ensemble.design_class == "single":
            continue
        single = by_key.get(
            (ensemble.family, ensemble.dataset, ensemble.budget_params, "single", 1)
        )
        if single is None:
            continue
        p_value = p_value_greater(ensemble.accuracy, single.accuracy)
        target = single.best_val_accuracy.mean if single.best_val_accuracy else None
        times = [first_time_at(r, target) for r in runs[ensemble.key]] if target else []
        single_times = [
            first_time_at(r, r.best_val_accuracy)
            for r in runs[single.key]
            if r.best_val_accuracy is not None
        ]
        rows.append(
            Comparison(
                ensemble=ensemble,
                single=single,
                accuracy_gain=ensemble.accuracy.mean - single.accuracy.mean,
                p_value=p_value,
                significant=p_value is not None and p_value < alpha,
                alpha=alpha,
                cost_ratios={
                    name: _ratio(getattr(ensemble, name), getattr(single, name))
                    for name in COST_METRICS
                },
                time_to_accuracy_s=_median(times),
                reached_target=sum(1 for t in times if t is not None),
                single_time_to_best_s=_median(single_times),
                target_val_accuracy=target,
            )
        )
    return rows
