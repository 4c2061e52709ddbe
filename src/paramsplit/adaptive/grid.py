"""A study's full grid as the adaptive policy sees it: the runs of every design at every
budget and seed, and the ladder of budgets of every comparison.

A comparison (`PairKey`) is one ensemble class at one k against the single network, for a
family and dataset; its ladder is every budget where both were planned. The question
budget of a family and dataset is its largest one: the recommendation is made there, so
the policy measures it in full.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from paramsplit.analysis.designs import DesignKey, key_of
from paramsplit.analysis.records import RunRecord
from paramsplit.specs import class_label

PairKey = tuple[str, str, str, int]  # family, dataset, design class, k
GroupKey = tuple[str, str]  # family, dataset


def pair_label(pair: PairKey) -> str:
    """'resnet on digits, deq k=4'."""
    family, dataset, design_class, k = pair
    return f"{family} on {dataset}, {class_label(design_class, k)}"


def ensemble_key(pair: PairKey, budget: int) -> DesignKey:
    return (pair[0], pair[1], budget, pair[2], pair[3])


def single_key(pair: PairKey, budget: int) -> DesignKey:
    return (pair[0], pair[1], budget, "single", 1)


@dataclass(frozen=True)
class Grid:
    """The runs of a study (one record per run and budget asked), arranged by design."""

    runs: dict[DesignKey, dict[int, RunRecord]]  # design -> seed -> run
    ladders: dict[PairKey, tuple[int, ...]]  # budgets ascending
    budgets: dict[GroupKey, tuple[int, ...]]  # every budget of a family and dataset
    questions: dict[GroupKey, int]  # the largest budget with a single network

    @classmethod
    def of(cls, records: Iterable[RunRecord]) -> Grid:
        runs: dict[DesignKey, dict[int, RunRecord]] = defaultdict(dict)
        budgets: dict[GroupKey, set[int]] = defaultdict(set)
        for record in records:
            runs[key_of(record)][record.seed] = record
            budgets[(record.family, record.dataset)].add(record.budget_params)
        ladders: dict[PairKey, list[int]] = defaultdict(list)
        for family, dataset, budget, design_class, k in sorted(runs):
            if design_class != "single" and (family, dataset, budget, "single", 1) in runs:
                ladders[(family, dataset, design_class, k)].append(budget)
        questions = {
            group: max(b for b in values if (*group, b, "single", 1) in runs)
            for group, values in budgets.items()
            if any((*group, b, "single", 1) in runs for b in values)
        }
        return cls(
            dict(runs),
            {pair: tuple(sorted(ladder)) for pair, ladder in sorted(ladders.items())},
            {group: tuple(sorted(values)) for group, values in budgets.items()},
            questions,
        )

    def seeds_of(self, key: DesignKey, seeds: Sequence[int]) -> list[RunRecord]:
        """The design's runs with these seeds (those that exist)."""
        by_seed = self.runs.get(key, {})
        return [by_seed[s] for s in seeds if s in by_seed]

    def at_budget(self, group: GroupKey, budget: int) -> list[DesignKey]:
        """Every design of a family and dataset at a budget, the single network first."""
        keys = [k for k in self.runs if (k[0], k[1], k[2]) == (*group, budget)]
        return sorted(keys, key=lambda k: (k[3] != "single", k[3], k[4]))


def epochs_trained(record: RunRecord, epochs: int) -> int:
    """Epochs a run has trained: all of them once done, else the length of its curve."""
    if record.status == "done":
        return epochs
    return len(record.curve)


def member_epochs(records: Iterable[RunRecord], epochs: int) -> int:
    """Training compute in member-epochs (k per epoch of a k-member ensemble), each run once."""
    unique = {r.run_id: r for r in records}
    return sum(r.num_members * epochs_trained(r, epochs) for r in unique.values())


def train_seconds(records: Iterable[RunRecord], epochs: int) -> float:
    """Measured training seconds, each run once: a stopped run's up to where it stopped."""
    total = 0.0
    for record in {r.run_id: r for r in records}.values():
        trained = epochs_trained(record, epochs)
        if record.status == "done" and record.train_time_s is not None:
            total += record.train_time_s
        elif trained and record.curve[trained - 1].elapsed_train_s is not None:
            total += record.curve[trained - 1].elapsed_train_s or 0.0
    return total
