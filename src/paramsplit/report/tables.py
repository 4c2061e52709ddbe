"""The report's tables as data: headers with units, and cells that carry a sort key.

A cell shows text for people ('98.6 ± 0.3') and sorts by a number (98.6), so that the
page's sortable tables order by value, not by the characters shown. Text here is not yet
escaped: the HTML renderer escapes every cell.
"""

from __future__ import annotations

from dataclasses import dataclass

from paramsplit.analysis import Analysis, Comparison, DesignSummary, Recommendation, Stat
from paramsplit.analysis.stats import TIE_TOLERANCE
from paramsplit.report.text import (
    BYTES_PER_MB,
    MISSING,
    accuracy_text,
    cost_text,
    mean_of,
    median_of,
    number,
    p_value_text,
    points_text,
    ratio_text,
    short_budget,
)
from paramsplit.specs import format_budget


@dataclass(frozen=True)
class Cell:
    text: str
    sort: float | None = None  # None with `numeric`: not measured, sorts last
    numeric: bool = False


@dataclass(frozen=True)
class Table:
    name: str  # the element id, and what tests look tables up by
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


def text(value: str) -> Cell:
    return Cell(value)


def num(shown: str, value: float | None) -> Cell:
    return Cell(MISSING if value is None else shown, value, numeric=True)


def cost_cell(stat: Stat | None, scale: float = 1.0) -> Cell:
    """A cost (time, memory): its median over seeds."""
    return num(cost_text(stat, scale), median_of(stat, scale))


def accuracy_cell(stat: Stat | None) -> Cell:
    return num(accuracy_text(stat), mean_of(stat, 100))


def memory_cell(stat: Stat | None) -> Cell:
    return cost_cell(stat, 1 / BYTES_PER_MB)


def budget_cell(params: int) -> Cell:
    return num(format_budget(params), params)


def _by_group_if_several(
    name: str, headers: list[str], rows: list[tuple[DesignSummary, list[Cell]]]
) -> Table:
    """A table with family and dataset columns in front when the study has several."""
    if len({(d.family, d.dataset) for d, _ in rows}) <= 1:
        return Table(name, tuple(headers), tuple(tuple(cells) for _, cells in rows))
    return Table(
        name,
        ("family", "dataset", *headers),
        tuple((text(d.family), text(d.dataset), *cells) for d, cells in rows),
    )


def designs_table(analysis: Analysis) -> Table:
    headers = [
        "design",
        "class",
        "k",
        "budget (params)",
        "total (params)",
        "total / budget",
        "seeds",
        "test accuracy (%)",
        "training time (s)",
        "time per epoch (s)",
        "latency, batch 1 (ms)",
        "training memory (MB)",
        "inference memory (MB)",
        "Pareto",
    ]
    rows: list[tuple[DesignSummary, list[Cell]]] = []
    for d in analysis.designs:
        seeds = f"{len(d.seeds)}" + (f" ({d.num_failed} failed)" if d.num_failed else "")
        on_front = analysis.on_front(d)
        row = [
            text(d.design),
            text(d.design_class),
            num(str(d.num_members), d.num_members),
            budget_cell(d.budget_params),
            num(f"{d.total_params:,}", d.total_params),
            num(f"{d.ratio:.3f}" if d.ratio is not None else MISSING, d.ratio),
            num(seeds, len(d.seeds)),
            accuracy_cell(d.accuracy),
            cost_cell(d.train_time_s),
            cost_cell(d.epoch_time_s),
            cost_cell(d.latency_ms_batch1),
            memory_cell(d.peak_train_memory_bytes),
            memory_cell(d.peak_inference_memory_bytes),
            num("✓" if on_front else "", 1 if on_front else 0),
        ]
        rows.append((d, row))
    return _by_group_if_several("designs", headers, rows)


def verdict(row: Comparison) -> str:
    if abs(row.accuracy_gain) <= TIE_TOLERANCE:
        return "tie"
    if not row.wins:
        return "loss"
    return "win, significant" if row.significant else "win"


def _time_to_accuracy(row: Comparison) -> Cell:
    seeds = f"{row.reached_target}/{row.ensemble.accuracy.n} seeds"
    if row.time_to_accuracy_s is None:
        return num(f"not reached ({seeds})" if row.target_val_accuracy else MISSING, None)
    return num(f"{number(row.time_to_accuracy_s)} ({seeds})", row.time_to_accuracy_s)


COMPARISON_RATIOS = (  # (Comparison.cost_ratios key, header)
    ("train_time_s", "training time (×)"),
    ("epoch_time_s", "time per epoch (×)"),
    ("latency_ms_batch1", "latency (×)"),
    ("peak_train_memory_bytes", "training memory, all k at once (×)"),
    ("loop_train_memory_bytes", "training memory, one at a time (×)"),
    ("peak_inference_memory_bytes", "inference memory (×)"),
)


def comparisons_table(analysis: Analysis) -> Table:
    """The per-design win table: each ensemble against the single network of its budget."""
    headers = [
        "ensemble",
        "class",
        "k",
        "budget (params)",
        "single network",
        "ensemble accuracy (%)",
        "single accuracy (%)",
        "gain (points)",
        "p-value",
        "result",
        "params ratio (×)",
        *(h for _, h in COMPARISON_RATIOS),
        "time to single's best (s)",
        "single's time to best (s)",
        "speed-up (×)",
    ]
    rows: list[tuple[DesignSummary, list[Cell]]] = []
    for c in analysis.comparisons:
        e, s = c.ensemble, c.single
        params_ratio = e.total_params / s.total_params
        row = [
            text(e.design),
            text(e.design_class),
            num(str(e.num_members), e.num_members),
            budget_cell(e.budget_params),
            text(s.design),
            accuracy_cell(e.accuracy),
            accuracy_cell(s.accuracy),
            num(points_text(c.accuracy_gain), c.accuracy_gain * 100),
            num(p_value_text(c.p_value), c.p_value),
            text(verdict(c)),
            num(ratio_text(params_ratio), params_ratio),
            *(
                num(ratio_text(c.cost_ratios.get(k)), c.cost_ratios.get(k))
                for k, _ in COMPARISON_RATIOS
            ),
            _time_to_accuracy(c),
            num(number(c.single_time_to_best_s), c.single_time_to_best_s),
            num(ratio_text(c.speedup), c.speedup),
        ]
        rows.append((e, row))
    return _by_group_if_several("comparisons", headers, rows)


def switchovers_table(analysis: Analysis) -> Table:
    headers = (
        "family",
        "dataset",
        "class",
        "k",
        "budgets tested (✓ ensemble wins)",
        "EST (params)",
        "outcome",
    )
    rows = []
    for s in analysis.switchovers:
        tested = " · ".join(
            f"{short_budget(b)} {'✓' if win else '✗'}"
            for b, win in zip(s.budgets, s.wins, strict=True)
        )
        if s.est_budget is None:
            est = num("none in range", None)
        else:
            est = num(
                ("≤ " if s.outcome == "all" else "") + format_budget(s.est_budget), s.est_budget
            )
        rows.append(
            (
                text(s.family),
                text(s.dataset),
                text(s.design_class),
                num(str(s.num_members), s.num_members),
                text(tested),
                est,
                text(s.outcome),
            )
        )
    return Table("switchovers", headers, tuple(rows))


def failed_table(analysis: Analysis) -> Table:
    rows = tuple(
        (
            text(r.run_id),
            text(r.design),
            budget_cell(r.budget_params),
            num(str(r.seed), r.seed),
            text(r.reason or "no reason recorded"),
        )
        for r in analysis.failed
    )
    return Table("failed", ("run", "design", "budget (params)", "seed", "reason"), rows)


def candidates_table(recommendation: Recommendation) -> Table:
    rows = tuple(
        (
            text(c.summary.design),
            text(c.summary.label),
            budget_cell(c.summary.budget_params),
            accuracy_cell(c.summary.accuracy),
            num(number(c.latency_ms), c.latency_ms),
            text("✓" if c.passes else "✗"),
            text("; ".join(c.violations)),
        )
        for c in recommendation.candidates
    )
    headers = (
        "design",
        "class",
        "budget (params)",
        "test accuracy (%)",
        f"latency, batch {recommendation.constraints.batch_size} (ms)",
        "meets constraints",
        "why not",
    )
    return Table("candidates", headers, rows)
