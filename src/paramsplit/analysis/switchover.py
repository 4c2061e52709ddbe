"""The Ensemble Switchover Threshold (EST) and the study's heat map over (budget, epoch).

EST, for one family, dataset, design class and k: the smallest budget tested from which the
ensemble beats the single network of equal budget at that budget and at every larger budget
tested. "Beats" is a strictly higher mean test accuracy over seeds; with
`require_significance`, also a one-sided Welch p-value below alpha. Only budgets where both
the ensemble and the single network finished count as tested. Three outcomes:
- `found`: the ensemble loses somewhere and wins from the EST on;
- `all`: it wins at every budget tested (the EST is at or below the smallest one);
- `none`: it does not win at the largest budget tested, so no EST within the range.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from paramsplit.analysis.compare import Comparison
from paramsplit.analysis.records import RunRecord
from paramsplit.analysis.stats import beats
from paramsplit.specs import format_budget


@dataclass(frozen=True)
class Switchover:
    """The EST of one design class at one k, with the wins that decide it."""

    family: str
    dataset: str
    design_class: str
    num_members: int
    budgets: tuple[int, ...]  # tested, ascending
    wins: tuple[bool, ...]  # at each budget
    est_budget: int | None
    require_significance: bool
    alpha: float

    @property
    def outcome(self) -> str:
        if self.est_budget is None:
            return "none"
        return "all" if self.est_budget == self.budgets[0] else "found"

    @property
    def label(self) -> str:
        return f"{self.design_class} k={self.num_members}"

    def describe(self) -> str:
        """One sentence a user can act on."""
        test = f"p < {self.alpha:g}" if self.require_significance else "mean over seeds"
        where = f"{self.family} on {self.dataset}, {self.label}"
        if self.outcome == "none":
            largest = format_budget(self.budgets[-1])
            return (
                f"{where}: no EST — the single network is as good or better at {largest} ({test})"
            )
        assert self.est_budget is not None
        est = format_budget(self.est_budget)
        if self.outcome == "all":
            return f"{where}: EST ≤ {est} — the ensemble wins at every budget tested ({test})"
        return f"{where}: EST = {est} — the ensemble wins from {est} on ({test})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "dataset": self.dataset,
            "design_class": self.design_class,
            "num_members": self.num_members,
            "budgets": list(self.budgets),
            "wins": list(self.wins),
            "est_budget": self.est_budget,
            "outcome": self.outcome,
            "require_significance": self.require_significance,
            "alpha": self.alpha,
            "text": self.describe(),
        }


def est_of(budgets: Sequence[int], wins: Sequence[bool]) -> int | None:
    """The smallest budget from which every budget wins (budgets ascending)."""
    est = None
    for budget, win in zip(reversed(budgets), reversed(wins), strict=True):
        if not win:
            break
        est = budget
    return est


def find_switchovers(
    comparisons: Iterable[Comparison], *, require_significance: bool = False
) -> list[Switchover]:
    """One EST per family, dataset, design class and k present in `comparisons`."""
    groups: dict[tuple[str, str, str, int], list[Comparison]] = defaultdict(list)
    alphas = set()
    for row in comparisons:
        e = row.ensemble
        groups[(e.family, e.dataset, e.design_class, e.num_members)].append(row)
        alphas.add(row.alpha)
    switchovers = []
    for (family, dataset, design_class, k), rows in sorted(groups.items()):
        rows.sort(key=lambda r: r.ensemble.budget_params)
        budgets = tuple(r.ensemble.budget_params for r in rows)
        wins = tuple(r.significant if require_significance else r.wins for r in rows)
        switchovers.append(
            Switchover(
                family=family,
                dataset=dataset,
                design_class=design_class,
                num_members=k,
                budgets=budgets,
                wins=wins,
                est_budget=est_of(budgets, wins),
                require_significance=require_significance,
                alpha=rows[0].alpha,
            )
        )
    return switchovers


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
