"""Each ensemble against the single network of the same budget: the per-design win table.

Parameters: the ratio ensemble total / single total, shown with every comparison, and
whether it lies within the match tolerance (`matching`). Accuracy: the difference of means
over seeds, with the exact permutation test and the interval it gives (`stats`). Costs:
ratios of the ensemble's median over seeds to the single network's (training time, time per
epoch, latency at batch 1, peak memory; > 1 means the ensemble costs more).

Time to accuracy times both designs to one target: the single network's median best
validation accuracy over its seeds (the lower median with an even count, so that at least
half of the single network's seeds reach it and its time is defined). Each seed's time is
the training time until its validation accuracy first reaches the target; a seed that never
does counts as never (infinitely late), not dropped, so a design's median is "not reached"
when fewer than half its seeds got there. The speed-up is the single network's median over
the ensemble's: two designs with the same curves are exactly 1.0× apart.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from paramsplit.analysis.designs import DesignKey, DesignSummary, key_of
from paramsplit.analysis.latency import POST_TRAINING, SIDE_BY_SIDE, MeasuredLatency
from paramsplit.analysis.matching import DEFAULT_MATCH_TOLERANCE, is_matched
from paramsplit.analysis.records import RunRecord
from paramsplit.analysis.stats import SeedTest, Stat, beats, seed_test, ties
from paramsplit.specs import time_to_accuracy_s

DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class TimeToTarget:
    """How long a design's seeds train until validation accuracy first reaches a target."""

    median_s: float | None  # None: fewer than half of the seeds reached the target
    num_reached: int
    num_seeds: int  # the seeds with a timed learning curve

    @property
    def reached_text(self) -> str:
        """'2/3': seeds that reached the target, of those timed."""
        return f"{self.num_reached}/{self.num_seeds}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median_s,
            "num_reached": self.num_reached,
            "num_seeds": self.num_seeds,
        }


@dataclass(frozen=True)
class Comparison:
    """One ensemble design against the single network at its budget."""

    ensemble: DesignSummary
    single: DesignSummary
    accuracy_gain: float  # ensemble mean − single mean, as a fraction (0.01 = 1 point)
    test: SeedTest  # exact permutation test ensemble > single, and the gain's interval
    alpha: float
    match_tolerance: tuple[float, float]
    cost_ratios: dict[str, float | None]  # ensemble / single, by metric
    target_val_accuracy: float | None  # the one target both designs are timed to
    ensemble_time: TimeToTarget | None  # None: no timed learning curves
    single_time: TimeToTarget | None
    # Where cost_ratios["latency_ms_batch1"] comes from: `analysis.latency.LATENCY_SOURCES`.
    latency_source: str | None = None
    # The numbers of workers that shared the machine while each side trained, where they
    # differ: their training times were taken under different loads.
    train_loads: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    @property
    def params_ratio(self) -> float:
        """Ensemble parameters / single network parameters."""
        return self.ensemble.total_params / self.single.total_params

    @property
    def matched(self) -> bool:
        return is_matched(self.params_ratio, self.match_tolerance)

    @property
    def wins(self) -> bool:
        """Strictly more accurate on average; a tie is not a win."""
        return beats(self.accuracy_gain, 0.0)

    @property
    def p_value(self) -> float:
        return self.test.p_value

    @property
    def significant(self) -> bool:
        """A win with p ≤ alpha; never true for a tie or a loss."""
        return self.wins and self.test.p_value <= self.alpha

    def verdict(self, require_significance: bool = False) -> str:
        """'win', 'loss' or 'tie' by mean; with `require_significance`, a win is 'win' only
        when significant, else 'not significant', or 'too few seeds' where no outcome with
        these numbers of seeds could be."""
        if not self.wins:
            return "tie" if ties(self.accuracy_gain, 0.0) else "loss"
        if not require_significance or self.significant:
            return "win"
        return "not significant" if self.test.enough_seeds else "too few seeds"

    @property
    def speedup(self) -> float | None:
        """How many times sooner the ensemble reaches the target than the single network."""
        if self.ensemble_time is None or self.single_time is None:
            return None
        ensemble_s, single_s = self.ensemble_time.median_s, self.single_time.median_s
        if not ensemble_s or single_s is None:
            return None
        return single_s / ensemble_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.ensemble.family,
            "dataset": self.ensemble.dataset,
            "budget_params": self.ensemble.budget_params,
            "design_class": self.ensemble.design_class,
            "num_members": self.ensemble.num_members,
            "ensemble": self.ensemble.design,
            "single": self.single.design,
            "ensemble_params": self.ensemble.total_params,
            "single_params": self.single.total_params,
            "params_ratio": self.params_ratio,
            "matched": self.matched,
            "ensemble_accuracy": self.ensemble.accuracy.to_dict(),
            "single_accuracy": self.single.accuracy.to_dict(),
            "accuracy_gain": self.accuracy_gain,
            "test": self.test.to_dict(),
            "p_value": self.p_value,
            "significant": self.significant,
            "alpha": self.alpha,
            "wins": self.wins,
            "cost_ratios": self.cost_ratios,
            "target_val_accuracy": self.target_val_accuracy,
            "ensemble_time_to_target": self.ensemble_time.to_dict() if self.ensemble_time else None,
            "single_time_to_target": self.single_time.to_dict() if self.single_time else None,
            "speedup": self.speedup,
            "latency_source": self.latency_source,
            "train_loads_differ": self.train_loads is not None,
        }


# The costs an ensemble is set against its single network on, and what they are called: the
# report's tables, its figures and the Pareto front's objectives name them from here.
COST_METRICS: dict[str, str] = {
    "train_time_s": "training time",
    "epoch_time_s": "time per epoch",
    "latency_ms_batch1": "latency at batch 1",
    "peak_train_memory_bytes": "training memory, all k at once",
    "loop_train_memory_bytes": "training memory, one at a time",
    "peak_inference_memory_bytes": "inference memory",
}


def _ratio(ensemble: Stat | None, single: Stat | None) -> float | None:
    if ensemble is None or single is None or single.median == 0:
        return None
    return ensemble.median / single.median


def _timed(record: RunRecord) -> bool:
    return bool(record.curve) and all(p.elapsed_train_s is not None for p in record.curve)


def first_time_at(record: RunRecord, target: float) -> float | None:
    """Training time until the run's validation accuracy first reached `target`; None if
    it never did."""
    return time_to_accuracy_s(((p.val_accuracy, p.elapsed_train_s) for p in record.curve), target)


def time_to_target(runs: Iterable[RunRecord], target: float) -> TimeToTarget | None:
    """The median over seeds of the time to `target`, a seed that never got there counting
    as infinitely late; None when no run has a timed learning curve."""
    times = [first_time_at(r, target) for r in runs if _timed(r)]
    if not times:
        return None
    median = statistics.median(math.inf if t is None else t for t in times)
    return TimeToTarget(
        median_s=median if math.isfinite(median) else None,
        num_reached=sum(1 for t in times if t is not None),
        num_seeds=len(times),
    )


def compare_to_single(
    summaries: Sequence[DesignSummary],
    records: Iterable[RunRecord],
    *,
    alpha: float = DEFAULT_ALPHA,
    match_tolerance: tuple[float, float] = DEFAULT_MATCH_TOLERANCE,
    measured: Sequence[MeasuredLatency] = (),
) -> list[Comparison]:
    """A row per ensemble design whose budget also has a finished single network.

    The latency ratio is the side-by-side one (`paramsplit measure`, the median of per-round
    ratios at batch 1) where `measured` has the design, else the ratio of the post-training
    figures; `latency_source` says which.
    """
    by_key = {s.key: s for s in summaries}
    runs: dict[DesignKey, list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.done:
            runs[key_of(record)].append(record)
    side_by_side = {m.key: m.ratio_to_single for m in measured if m.batch_size == 1}
    rows = []
    for ensemble in summaries:
        if ensemble.design_class == "single":
            continue
        single = by_key.get(
            (ensemble.family, ensemble.dataset, ensemble.budget_params, "single", 1)
        )
        if single is None:
            continue
        bests = [r.best_val_accuracy for r in runs[single.key] if r.best_val_accuracy is not None]
        target = statistics.median_low(bests) if bests else None
        ratios = {
            name: _ratio(getattr(ensemble, name), getattr(single, name)) for name in COST_METRICS
        }
        latency_source = POST_TRAINING if ratios["latency_ms_batch1"] is not None else None
        if side_by_side.get(ensemble.key) is not None:
            ratios["latency_ms_batch1"] = side_by_side[ensemble.key]
            latency_source = SIDE_BY_SIDE
        rows.append(
            Comparison(
                ensemble=ensemble,
                single=single,
                accuracy_gain=ensemble.accuracy.mean - single.accuracy.mean,
                test=seed_test(ensemble.accuracy.values, single.accuracy.values, alpha),
                alpha=alpha,
                match_tolerance=match_tolerance,
                cost_ratios=ratios,
                target_val_accuracy=target,
                ensemble_time=None
                if target is None
                else time_to_target(runs[ensemble.key], target),
                single_time=None if target is None else time_to_target(runs[single.key], target),
                latency_source=latency_source,
                train_loads=_loads_if_different(runs[ensemble.key], runs[single.key]),
            )
        )
    return rows


def _loads_if_different(
    ensemble: Sequence[RunRecord], single: Sequence[RunRecord]
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The worker counts each side trained beside, if they differ (unknown counts, from
    runs that did not record them, are left out)."""
    loads = tuple(
        tuple(sorted({r.concurrent_workers for r in side if r.concurrent_workers is not None}))
        for side in (ensemble, single)
    )
    if not loads[0] or not loads[1] or loads[0] == loads[1]:
        return None
    return loads[0], loads[1]
