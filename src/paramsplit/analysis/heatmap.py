"""The study's heat map over (budget, epoch): which ensemble class beats the single network."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from paramsplit.analysis.records import RunRecord
from paramsplit.analysis.stats import beats

HEAT_CLASSES = ("single", "deq", "weq", "both")


@dataclass(frozen=True)
class HeatMap:
    """Which class is most accurate at each (budget, epoch), for one family, dataset and k.

    A cell is 'deq' or 'weq' when only that class beats the single network's mean accuracy
    at that epoch, 'both' when both do, 'single' when neither does, and '' where a class is
    missing data. Accuracy is `metric` from the per-epoch curves (mean over seeds).
    """

    family: str
    dataset: str
    num_members: int
    metric: str
    budgets: tuple[int, ...]
    epochs: tuple[int, ...]
    cells: tuple[tuple[str, ...], ...]  # [budget][epoch]

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "dataset": self.dataset,
            "num_members": self.num_members,
            "metric": self.metric,
            "budgets": list(self.budgets),
            "epochs": list(self.epochs),
            "cells": [list(row) for row in self.cells],
        }


def _curve_means(records: Iterable[RunRecord], metric: str) -> dict[int, float]:
    """Mean `metric` at each epoch over the runs that recorded it."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for record in records:
        for point in record.curve:
            value = getattr(point, metric)
            if value is not None:
                by_epoch[point.epoch].append(value)
    return {epoch: statistics.fmean(values) for epoch, values in by_epoch.items()}


def heat_map_metric(records: Sequence[RunRecord]) -> str:
    """Test accuracy where every finished run recorded it each epoch, else validation."""
    done = [r for r in records if r.done and r.curve]
    if done and all(p.test_accuracy is not None for r in done for p in r.curve):
        return "test_accuracy"
    return "val_accuracy"


def _cell(single: float | None, deq: float | None, weq: float | None) -> str:
    if single is None or (deq is None and weq is None):
        return ""
    deq_wins = deq is not None and beats(deq, single)
    weq_wins = weq is not None and beats(weq, single)
    if deq_wins and weq_wins:
        return "both"
    return "deq" if deq_wins else "weq" if weq_wins else "single"


def heat_maps(records: Sequence[RunRecord]) -> list[HeatMap]:
    """One heat map per family, dataset and k, over the budgets with a single network."""
    metric = heat_map_metric(records)
    groups: dict[tuple[str, str, int, str, int], list[RunRecord]] = defaultdict(list)
    for r in records:
        if r.done and r.curve:
            groups[(r.family, r.dataset, r.budget_params, r.design_class, r.num_members)].append(r)
    means = {key: _curve_means(runs, metric) for key, runs in groups.items()}
    maps = []
    for family, dataset in sorted({(k[0], k[1]) for k in groups}):
        keys = [k for k in groups if k[:2] == (family, dataset)]
        budgets = tuple(sorted({k[2] for k in keys if k[3] == "single"}))
        for num_members in sorted({k[4] for k in keys if k[3] != "single"}):
            epochs = tuple(sorted({e for k in keys for e in means[k]}))
            cells = tuple(
                tuple(
                    _cell(
                        means[(family, dataset, b, "single", 1)].get(epoch),
                        means.get((family, dataset, b, "deq", num_members), {}).get(epoch),
                        means.get((family, dataset, b, "weq", num_members), {}).get(epoch),
                    )
                    for epoch in epochs
                )
                for b in budgets
            )
            maps.append(HeatMap(family, dataset, num_members, metric, budgets, epochs, cells))
    return maps
