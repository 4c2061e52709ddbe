"""The report's tables as data: headers with units, and cells that carry a sort key.

A cell shows text for people ('98.6 ± 0.3') and sorts by a number (98.6), so that the
page's sortable tables order by value, not by the characters shown. Text here is not yet
escaped: the HTML renderer escapes every cell.
"""

from __future__ import annotations

from dataclasses import dataclass

from paramsplit.analysis import (
    Analysis,
    Comparison,
    DesignSummary,
    Recommendation,
    Stat,
    TimeToTarget,
)
from paramsplit.analysis.compare import COST_METRICS
from paramsplit.analysis.text import (
    BYTES_PER_MEMORY_UNIT,
    MEMORY_UNIT,
    MISSING,
    accuracy_text,
    cost_text,
    interval_text,
    mean_of,
    median_of,
    number,
    p_value_text,
    points_text,
    ratio_text,
    time_text,
)
from paramsplit.quantities import format_budget


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
    return cost_cell(stat, 1 / BYTES_PER_MEMORY_UNIT)


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
        f"training memory ({MEMORY_UNIT})",
        f"inference memory ({MEMORY_UNIT})",
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
    """'loss', 'tie', 'win, significant', 'win, not significant', 'win, too few seeds to
    test'."""
    if not row.wins:
        return row.verdict()
    if row.significant:
        return "win, significant"
    return "win, not significant" if row.test.enough_seeds else "win, too few seeds to test"


def params_ratio_cell(ratio: float | None, matched: bool | None) -> Cell:
    """'0.96' or '0.61 unmatched': ensemble parameters / the single network's."""
    if ratio is None:
        return num(MISSING, None)
    return num(f"{ratio:.3f}" + (" unmatched" if matched is False else ""), ratio)


def _time_cell(time: TimeToTarget | None) -> Cell:
    return num(time_text(time), None if time is None else time.median_s)


COMPARISON_RATIOS = tuple(  # (Comparison.cost_ratios key, header)
    (key, f"{label} (×)") for key, label in COST_METRICS.items()
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
        "params ratio (×)",
        "gain (points)",
        f"gain interval, {round(100 * (1 - 2 * analysis.alpha))}% (points)",
        "p-value",
        "smallest possible p",
        "result",
        *(h for _, h in COMPARISON_RATIOS),
        "latency measured",
        "training loads differ",
        "target (validation %)",
        "ensemble time to target (s)",
        "single time to target (s)",
        "speed-up (×)",
    ]
    rows: list[tuple[DesignSummary, list[Cell]]] = []
    for c in analysis.comparisons:
        e, s = c.ensemble, c.single
        target = c.target_val_accuracy
        row = [
            text(e.design),
            text(e.design_class),
            num(str(e.num_members), e.num_members),
            budget_cell(e.budget_params),
            text(s.design),
            accuracy_cell(e.accuracy),
            accuracy_cell(s.accuracy),
            params_ratio_cell(c.params_ratio, c.matched),
            num(points_text(c.accuracy_gain), c.accuracy_gain * 100),
            num(interval_text(c.test), None if c.test.gain_low is None else c.test.gain_low * 100),
            num(p_value_text(c.p_value), c.p_value),
            num(p_value_text(c.test.smallest_p_value), c.test.smallest_p_value),
            text(verdict(c)),
            *(
                num(ratio_text(c.cost_ratios.get(k)), c.cost_ratios.get(k))
                for k, _ in COMPARISON_RATIOS
            ),
            text(c.latency_source or MISSING),
            text("yes" if c.train_loads is not None else "no"),
            num(MISSING if target is None else f"{target * 100:.1f}", target and target * 100),
            _time_cell(c.ensemble_time),
            _time_cell(c.single_time),
            num(ratio_text(c.speedup), c.speedup),
        ]
        rows.append((e, row))
    return _by_group_if_several("comparisons", headers, rows)


NO_EST_TEXT = {
    "none": "none in range",
    "undecided": "not enough seeds to tell",
    "gap": "none: no comparison at the largest budget",
}


def switchovers_table(analysis: Analysis) -> Table:
    headers = (
        "family",
        "dataset",
        "class",
        "k",
        "budgets (✓ win, ✗ not, ? too few seeds, · no comparison; params ratio)",
        "EST (params)",
        "outcome",
        "unmatched",
    )
    rows = []
    for s in analysis.switchovers:
        if s.est_budget is None:
            est = num(NO_EST_TEXT[s.outcome], None)
        else:
            sign = "≤ " if s.est_is_upper_bound else ""
            est = num(sign + format_budget(s.est_budget), s.est_budget)
        rows.append(
            (
                text(s.family),
                text(s.dataset),
                text(s.design_class),
                num(str(s.num_members), s.num_members),
                text(s.sequence),
                est,
                text(s.outcome.replace("_", " ")),
                num(str(s.num_unmatched), s.num_unmatched),
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
            params_ratio_cell(c.params_ratio, c.matched),
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
        "params / single (×)",
        "test accuracy (%)",
        f"latency, batch {recommendation.constraints.batch_size} (ms)",
        "meets constraints",
        "why not",
    )
    return Table("candidates", headers, rows)
