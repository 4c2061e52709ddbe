"""The Pareto front over accuracy, training time, latency and training memory.

A design is on the front if no other design of the same family and dataset is at least as
good on every objective and better on one. Objectives a design did not measure (e.g. memory
in a study run without it) are left out for the whole group rather than guessed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from paramsplit.analysis.designs import DesignKey, DesignSummary

# (attribute, direction): +1 more is better, −1 less is better.
OBJECTIVES = (
    ("accuracy", +1),
    ("train_time_s", -1),
    ("latency_ms_batch1", -1),
    ("peak_train_memory_bytes", -1),
)


@dataclass(frozen=True)
class ParetoFront:
    family: str
    dataset: str
    objectives: tuple[str, ...]
    keys: tuple[DesignKey, ...]  # the designs on the front

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "dataset": self.dataset,
            "objectives": list(self.objectives),
            "designs": [list(key) for key in self.keys],
        }


def _scores(summary: DesignSummary, objectives: Sequence[tuple[str, int]]) -> tuple[float, ...]:
    """Objective values oriented so that larger is better: mean accuracy, median costs."""
    values = []
    for name, direction in objectives:
        stat = getattr(summary, name)
        values.append(direction * (stat.mean if name == "accuracy" else stat.median))
    return tuple(values)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True)
    )


def pareto_fronts(summaries: Sequence[DesignSummary]) -> list[ParetoFront]:
    """One front per family and dataset, over all its budgets and design classes."""
    groups: dict[tuple[str, str], list[DesignSummary]] = defaultdict(list)
    for summary in summaries:
        groups[(summary.family, summary.dataset)].append(summary)
    fronts = []
    for (family, dataset), group in sorted(groups.items()):
        objectives = [o for o in OBJECTIVES if all(getattr(s, o[0]) is not None for s in group)]
        scores = [_scores(s, objectives) for s in group]
        keys = tuple(
            s.key
            for s, score in zip(group, scores, strict=True)
            if not any(dominates(other, score) for other in scores)
        )
        fronts.append(ParetoFront(family, dataset, tuple(o[0] for o in objectives), keys))
    return fronts
