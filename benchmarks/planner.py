"""How long planning takes: families × budgets × k in 2..8, cold caches, one process.

Prints one row per family (20 budgets from the family's smallest useful budget up,
geometric ×1.25) and the total. Run: `.venv/bin/python benchmarks/planner.py`.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

import paramsplit as ps

NUM_BUDGETS = 20
MEMBERS = range(2, 9)
STARTS = {"resnet": 100_000, "wrn": 400_000, "densenet-bc": 200_000, "vgg": 500_000}


def main() -> None:
    ps.plan("resnet", "1M", "2")  # pay torch's one-off start-up costs before timing
    table = Table(title=f"Planning {NUM_BUDGETS} budgets × k in 2..8 (single, deq, weq)")
    for column in ("family", "budgets", "designs", "feasible", "time_s", "ms / design"):
        table.add_column(column, justify="right")
    total_s = 0.0
    for family, start in STARTS.items():
        budgets = [round(start * 1.25**i) for i in range(NUM_BUDGETS)]
        began = time.perf_counter()
        rows = [row for budget in budgets for row in ps.plan(family, budget, MEMBERS)]
        elapsed_s = time.perf_counter() - began
        total_s += elapsed_s
        feasible = sum(row.feasible for row in rows)
        table.add_row(
            family,
            f"{budgets[0]:,}..{budgets[-1]:,}",
            str(len(rows)),
            str(feasible),
            f"{elapsed_s:.2f}",
            f"{1000 * elapsed_s / len(rows):.1f}",
        )
    table.add_row("all", "", "", "", f"{total_s:.2f}", "")
    Console().print(table)


if __name__ == "__main__":
    main()
