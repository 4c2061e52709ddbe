"""How long planning takes, and how closely ensembles match their single network.

First table: families × budgets × k in 2..8, cold caches, one process; one row per family
(20 budgets from the family's smallest useful budget up, geometric ×1.25) and the total.
Second table: every published config in single mode at k = 2, 4, 8, rule 'le': each deq and
weq ensemble's total / |S| (the ratio a verdict rests on), and how many candidate members
were counted exactly to find it. Run: `.venv/bin/python benchmarks/planner.py`.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

import paramsplit as ps

NUM_BUDGETS = 20
MEMBERS = range(2, 9)
MATCH_MEMBERS = (2, 4, 8)
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
    Console().print(match_table())


def match_table() -> Table:
    """ratio_to_single of every deq and weq ensemble of the published configs."""
    table = Table(title="Published configs, single mode, rule 'le': total / |S| (* unmatched)")
    for column in ("single", "k", "deq", "total / |S|", "weq", "total / |S|", "counted"):
        table.add_column(column, justify="left" if column in ("single", "deq", "weq") else "right")
    for info in ps.FAMILIES:
        for config in info.published:
            rows = ps.plan_single(ps.parse_arch(config.name), MATCH_MEMBERS)
            by_key = {(row.design_class.value, row.num_members): row for row in rows}
            for k in MATCH_MEMBERS:
                cells = []
                for design_class in ("deq", "weq"):
                    row = by_key[(design_class, k)]
                    if row.design is None:
                        cells += ["infeasible", "—"]
                        continue
                    mark = "" if row.matched else " *"
                    cells += [row.design.name, f"{row.ratio_to_single:.3f}{mark}"]
                counted = by_key[("deq", k)].num_counted + by_key[("weq", k)].num_counted
                table.add_row(config.name, str(k), *cells, str(counted))
    return table


if __name__ == "__main__":
    main()
