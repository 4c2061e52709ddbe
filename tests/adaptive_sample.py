"""Synthetic full-grid studies with a known answer, as run records: what the adaptive tests
replay and feed the policy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from paramsplit.analysis import CurvePoint, RunRecord

BUDGETS = tuple(round(4_000 * 10 ** (i / 11)) for i in range(12))  # 4k..40k, geometric
EPOCHS = 8
SEEDS = (0, 1, 2)

# A gain (ensemble - single, in points) per budget index and seed.
Gain = Callable[[int, int], float]


def curve(final: float, epochs: int = EPOCHS, late: float = 0.0) -> tuple[CurvePoint, ...]:
    """A validation curve rising to `final`; `late` is added over the last epoch only (a
    win that emerges at the end)."""
    points = []
    for epoch in range(1, epochs + 1):
        value = (final - late) * (1 - 0.5 ** (epoch + 1)) + (late if epoch == epochs else 0.0)
        points.append(CurvePoint(epoch, value, None, 1.0 * epoch))
    return tuple(points)


def record(budget_index: int, design_class: str, k: int, seed: int, accuracy: float,
           val_curve: tuple[CurvePoint, ...] | None = None,
           budgets: Sequence[int] = BUDGETS) -> RunRecord:  # fmt: skip
    budget = budgets[budget_index]
    member = f"resnet-20-{budget_index + 1}" + ("" if k == 1 else f"-{design_class}{k}")
    val = val_curve or curve(accuracy)
    return RunRecord(
        run_id=f"{member}-s{seed}", family="resnet", dataset="digits",
        design_class=design_class, num_members=k, member=member, budget_params=budget,
        total_params=int(budget * (1 if k == 1 else 0.97)), seed=seed, ratio=0.97,
        test_accuracy=accuracy, best_val_accuracy=max(p.val_accuracy or 0 for p in val),
        best_epoch=len(val), train_time_s=float(len(val) * k), curve=val,
    )  # fmt: skip


def single_accuracy(budget_index: int, seed: int) -> float:
    return 0.90 + 0.004 * budget_index + 0.002 * seed


def study(gains: dict[tuple[str, int], Gain], budgets: Sequence[int] = BUDGETS,
          seeds: Sequence[int] = SEEDS) -> list[RunRecord]:  # fmt: skip
    """The full grid: a single network and each (class, k) of `gains` at every budget."""
    records = []
    for i in range(len(budgets)):
        for seed in seeds:
            base = single_accuracy(i, seed)
            records.append(record(i, "single", 1, seed, base, budgets=budgets))
            for (design_class, k), gain in gains.items():
                accuracy = base + gain(i, seed) / 100
                records.append(record(i, design_class, k, seed, accuracy, budgets=budgets))
    return records


def switching_at(index: int, size: float = 2.0) -> Gain:
    """Loses by `size` points below ladder index `index`, wins by it from there on, with a
    little seed spread that never changes a seed's side."""
    return lambda i, seed: (size if i >= index else -size) + 0.1 * seed


def pending(records: Sequence[RunRecord]) -> list[RunRecord]:
    """The same grid before anything ran."""
    blank = {"test_accuracy": None, "best_val_accuracy": None, "best_epoch": None,
             "train_time_s": None, "status": "pending", "curve": ()}  # fmt: skip
    return [dataclasses.replace(r, **blank) for r in records]
