"""The whole answer for one study: designs, win table, ESTs, heat maps, Pareto fronts, curves."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paramsplit.analysis.compare import DEFAULT_ALPHA, Comparison, compare_to_single
from paramsplit.analysis.designs import DesignKey, DesignSummary, failed_runs, key_of, summarise
from paramsplit.analysis.heatmap import HeatMap, heat_maps
from paramsplit.analysis.latency import (
    POST_TRAINING,
    MeasuredLatency,
    load_notes,
    measured_latencies_from_store,
)
from paramsplit.analysis.matching import DEFAULT_MATCH_TOLERANCE, check_tolerance, tolerance_text
from paramsplit.analysis.pareto import ParetoFront, pareto_fronts
from paramsplit.analysis.records import (
    ACCURACY_COLUMNS,
    DEFAULT_ACCURACY,
    RunRecord,
    check_accuracy,
    records_from_store,
)
from paramsplit.analysis.switchover import Switchover, find_switchovers, ratio_span
from paramsplit.errors import StoreError, UsageError

if TYPE_CHECKING:
    from paramsplit.store import Store


@dataclass(frozen=True)
class DesignCurve:
    """A design's learning curve, averaged over seeds at each epoch."""

    key: DesignKey
    design: str
    epochs: tuple[int, ...]
    val_accuracy: tuple[float, ...]
    elapsed_train_s: tuple[float | None, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": list(self.key),
            "design": self.design,
            "epochs": list(self.epochs),
            "val_accuracy": list(self.val_accuracy),
            "elapsed_train_s": list(self.elapsed_train_s),
        }


def mean_curves(records: Sequence[RunRecord]) -> list[DesignCurve]:
    groups: dict[DesignKey, list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.done and record.curve:
            groups[key_of(record)].append(record)
    curves = []
    for key, runs in sorted(groups.items()):
        val: dict[int, list[float]] = defaultdict(list)
        elapsed: dict[int, list[float]] = defaultdict(list)
        for run in runs:
            for point in run.curve:
                if point.val_accuracy is not None:
                    val[point.epoch].append(point.val_accuracy)
                if point.elapsed_train_s is not None:
                    elapsed[point.epoch].append(point.elapsed_train_s)
        epochs = tuple(sorted(val))
        curves.append(
            DesignCurve(
                key,
                runs[0].design,
                epochs,
                tuple(statistics.fmean(val[e]) for e in epochs),
                tuple(statistics.fmean(elapsed[e]) if elapsed[e] else None for e in epochs),
            )
        )
    return curves


@dataclass(frozen=True)
class Analysis:
    """Everything the report shows, computed from run records alone (no torch)."""

    study: str
    records: tuple[RunRecord, ...]
    designs: tuple[DesignSummary, ...]
    comparisons: tuple[Comparison, ...]
    switchovers: tuple[Switchover, ...]
    heat_maps: tuple[HeatMap, ...]
    pareto: tuple[ParetoFront, ...]
    curves: tuple[DesignCurve, ...]
    alpha: float
    require_significance: bool
    accuracy: str = DEFAULT_ACCURACY  # the headline test accuracy: prob, logit or vote
    match_tolerance: tuple[float, float] = DEFAULT_MATCH_TOLERANCE
    matched_only: bool = False  # unmatched comparisons left out of the EST
    # Inference timed side by side after training (`paramsplit measure`), latest session.
    measured_latencies: tuple[MeasuredLatency, ...] = ()

    @property
    def unmatched(self) -> list[Comparison]:
        """Comparisons whose parameter ratio lies outside `match_tolerance`."""
        return [c for c in self.comparisons if not c.matched]

    def matching_note(self) -> str | None:
        """A sentence on the unmatched comparisons and what the EST did with them; None if
        every comparison is matched."""
        unmatched = self.unmatched
        if not unmatched:
            return None
        what = (
            "left out of the EST (shown as gaps)"
            if self.matched_only
            else "counted in the EST, flagged as unmatched"
        )
        span = ratio_span([c.params_ratio for c in unmatched])
        tolerance = tolerance_text(self.match_tolerance)
        return (
            f"{len(unmatched)} of {len(self.comparisons)} comparisons are unmatched: the "
            f"ensemble has {span} the single network's parameters, outside {tolerance}; "
            f"they are {what}"
        )

    def cost_notes(self) -> list[str]:
        """What to keep in mind about the cost ratios: latency ratios that are not side by
        side, and times taken under different loads."""
        notes = []
        fallback = [c for c in self.comparisons if c.latency_source == POST_TRAINING]
        if fallback:
            notes.append(
                f"the latency ratio of {len(fallback)} of {len(self.comparisons)} comparisons "
                "is from figures each run took right after training, apart from its single "
                "network; paramsplit measure times them side by side"
            )
        loaded = [c for c in self.comparisons if c.train_loads is not None]
        if loaded:
            notes.append(
                f"{len(loaded)} comparisons set training times taken beside different numbers "
                "of workers against each other: their time ratios are unfair"
            )
        return notes + load_notes(self.records, train_time=False)

    @property
    def failed(self) -> list[RunRecord]:
        """Each failed run once (a run asked for at two budgets is two records)."""
        return list({r.run_id: r for r in failed_runs(self.records)}.values())

    def _count(self, statuses: tuple[str, ...]) -> int:
        return len({r.run_id for r in self.records if r.status in statuses})

    @property
    def num_runs(self) -> int:
        return len({r.run_id for r in self.records})

    @property
    def num_done(self) -> int:
        return len({r.run_id for r in self.records if r.done})

    @property
    def num_pending(self) -> int:
        return self._count(("pending", "running"))

    def on_front(self, summary: DesignSummary) -> bool:
        return any(summary.key in front.keys for front in self.pareto)

    def select(self, family: str | None = None, dataset: str | None = None) -> list[DesignSummary]:
        """The designs of one family and dataset (either may be omitted if only one exists)."""
        return [
            s
            for s in self.designs
            if (family is None or s.family == family) and (dataset is None or s.dataset == dataset)
        ]

    def one_group(
        self, family: str | None = None, dataset: str | None = None
    ) -> list[DesignSummary]:
        """The designs of the one family and dataset asked for, or of the only one there is;
        a `UsageError` naming the choices where several remain (a recommendation compares
        designs of one family on one dataset)."""
        designs = self.select(family, dataset)
        groups = sorted({(d.family, d.dataset) for d in designs})
        if len(groups) > 1:
            names = ", ".join(f"{f} on {d}" for f, d in groups)
            raise UsageError(
                f"study '{self.study}' holds several families or datasets; pick one family "
                f"and dataset: {names}"
            )
        return designs

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "alpha": self.alpha,
            "require_significance": self.require_significance,
            "accuracy": self.accuracy,
            "accuracy_column": ACCURACY_COLUMNS[self.accuracy],
            "match_tolerance": list(self.match_tolerance),
            "matched_only": self.matched_only,
            "num_comparisons": len(self.comparisons),
            "num_unmatched": len(self.unmatched),
            "cost_notes": self.cost_notes(),
            "num_runs": self.num_runs,
            "num_done": self.num_done,
            "num_pending": self.num_pending,
            "failed": [
                {"run_id": r.run_id, "design": r.design, "seed": r.seed, "reason": r.reason}
                for r in self.failed
            ],
            "designs": [d.to_dict() | {"pareto": self.on_front(d)} for d in self.designs],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "switchovers": [s.to_dict() for s in self.switchovers],
            "heat_maps": [h.to_dict() for h in self.heat_maps],
            "pareto": [p.to_dict() for p in self.pareto],
            "curves": [c.to_dict() for c in self.curves],
        }


def analyse(
    study: str,
    records: Sequence[RunRecord],
    *,
    alpha: float = DEFAULT_ALPHA,
    require_significance: bool = False,
    accuracy: str = DEFAULT_ACCURACY,
    match_tolerance: tuple[float, float] = DEFAULT_MATCH_TOLERANCE,
    matched_only: bool = False,
    measured_latencies: Sequence[MeasuredLatency] = (),
) -> Analysis:
    """Analyse a study's runs: pending and failed ones are counted, never averaged in.

    `accuracy` picks the headline test accuracy (members' probabilities averaged, logits
    averaged, or their vote); `match_tolerance` the parameter ratios (ensemble / single) that
    count as matched; `matched_only` leaves the other comparisons out of the EST;
    `measured_latencies` (`paramsplit measure`) give the latency ratios where they have them.
    """
    check_accuracy(accuracy)
    match_tolerance = check_tolerance(match_tolerance)
    designs = summarise(records, accuracy)
    comparisons = compare_to_single(
        designs, records, alpha=alpha, match_tolerance=match_tolerance,
        measured=measured_latencies,
    )  # fmt: skip
    switchovers = find_switchovers(
        comparisons, records, require_significance=require_significance,
        matched_only=matched_only, alpha=alpha, match_tolerance=match_tolerance,
    )  # fmt: skip
    return Analysis(
        study=study,
        records=tuple(records),
        designs=tuple(designs),
        comparisons=tuple(comparisons),
        switchovers=tuple(switchovers),
        heat_maps=tuple(heat_maps(records)),
        pareto=tuple(pareto_fronts(designs)),
        curves=tuple(mean_curves(records)),
        alpha=alpha,
        require_significance=require_significance,
        accuracy=accuracy,
        match_tolerance=match_tolerance,
        matched_only=matched_only,
        measured_latencies=tuple(measured_latencies),
    )


def latest_study(store: Store) -> str:
    """The most recently created study in the database."""
    studies = store.studies()
    if not studies:
        raise StoreError(
            f"no studies in {store.url}: run one first (paramsplit run or paramsplit demo)"
        )
    return str(max(studies, key=lambda s: s["created_at"])["name"])


def analyse_store(
    store: Store,
    study: str | None = None,
    *,
    alpha: float = DEFAULT_ALPHA,
    require_significance: bool = False,
    accuracy: str = DEFAULT_ACCURACY,
    match_tolerance: tuple[float, float] = DEFAULT_MATCH_TOLERANCE,
    matched_only: bool = False,
) -> Analysis:
    """Analyse `study` (default: the latest) straight from the results database (the
    options are `analyse`'s)."""
    name = study or latest_study(store)
    return analyse(
        name, records_from_store(store, name), alpha=alpha,
        require_significance=require_significance, accuracy=accuracy,
        match_tolerance=match_tolerance, matched_only=matched_only,
        measured_latencies=measured_latencies_from_store(store, name),
    )  # fmt: skip
