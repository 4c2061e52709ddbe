"""The figures behind the answer: training curves and the ensembles' cost ratios."""

from __future__ import annotations

from collections import defaultdict

from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

from paramsplit.analysis import Analysis, Comparison, DesignCurve
from paramsplit.analysis.compare import COST_METRICS
from paramsplit.analysis.text import short_budget
from paramsplit.report.canvas import (
    blank_figure,
    look_of,
    panels,
    png_of,
)
from paramsplit.specs import class_label, class_order

MAX_CURVE_PANELS = 4  # more budgets than this make panels too small to read


def _spread_pick(items: list[tuple[str, str, int]], count: int) -> list[tuple[str, str, int]]:
    """`count` items evenly spread over `items`, always keeping the first and the last."""
    if len(items) <= count:
        return items
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def _curve_panel(ax: Axes, curves: list[DesignCurve], legend: bool) -> None:
    for curve in sorted(curves, key=lambda c: (class_order(c.key[3]), c.key[4])):
        design_class, k = curve.key[3], curve.key[4]
        look = look_of(design_class, k)
        ax.plot(
            curve.epochs, [v * 100 for v in curve.val_accuracy], label=class_label(design_class, k),
            color=look.colour, linestyle=look.linestyle, linewidth=look.linewidth,
        )  # fmt: skip
    # Zoom on the last two thirds of training, where the designs part ways: the first climb
    # from chance would otherwise squash their differences into one line.
    later = [v * 100 for c in curves for v in c.val_accuracy[len(c.val_accuracy) // 3 :]]
    ax.set_ylim(max(0.0, min(later) - 1.0), min(100.0, max(later) + 1.0))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7.5, loc="lower right")


def curves_figure(analysis: Analysis) -> bytes:
    """Mean validation accuracy against epoch, one panel per budget (at most four)."""
    by_budget: dict[tuple[str, str, int], list[DesignCurve]] = defaultdict(list)
    for curve in analysis.curves:
        if curve.epochs:
            by_budget[curve.key[:3]].append(curve)
    if not by_budget:
        return blank_figure("Training curves", "no per-epoch validation accuracy recorded")
    chosen = _spread_pick(sorted(by_budget), MAX_CURVE_PANELS)
    several = len({key[:2] for key in chosen}) > 1
    # Three panels side by side; four as two by two.
    figure, axes = panels(len(chosen), 3 if len(chosen) == 3 else 2, (3.6, 3.6))
    for i, (ax, key) in enumerate(zip(axes, chosen, strict=True)):
        family, dataset, budget = key
        where = f"{family} on {dataset}, " if several else ""
        _curve_panel(ax, by_budget[key], legend=i == 0)
        ax.set_title(f"{where}budget {short_budget(budget)}", fontsize=10)
    if len(chosen) < len(by_budget):
        figure.suptitle(f"{len(chosen)} of {len(by_budget)} budgets, smallest to largest")
    return png_of(figure)


# The costs drawn as bars, in Okabe–Ito colours (told apart with any colour vision).
BAR_COLOURS = {
    "epoch_time_s": "#56B4E9",
    "latency_ms_batch1": "#D55E00",
    "peak_train_memory_bytes": "#009E73",
    "peak_inference_memory_bytes": "#CC79A7",
}
COST_BARS = tuple(  # (Comparison.cost_ratios key, legend label, colour)
    (key, COST_METRICS[key], colour) for key, colour in BAR_COLOURS.items()
)
RATIO_TICKS = (0.1, 0.2, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 10, 20, 50, 100)


def _ratio_axis(ax: Axes, ratios: list[float]) -> None:
    """A log axis centred on 1×, so that half and double cost look equally far from even."""
    low, high = min([*ratios, 1.0]) / 1.25, max([*ratios, 1.0]) * 1.25
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    ticks = [t for t in RATIO_TICKS if low <= t <= high]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_yticklabels([f"{t:g}×" for t in ticks])
    ax.axhline(1.0, color="black", linewidth=1.2)


def _cost_panel(ax: Axes, rows: list[Comparison], measured: list[tuple[str, str, str]]) -> None:
    """Grouped bars, one group per ensemble design, each bar from 1× to its ratio."""
    width = 0.8 / len(measured)
    ratios: list[float] = []
    num_missing = 0
    for i, (key, label, colour) in enumerate(measured):
        xs, heights = [], []
        for x, row in enumerate(rows):
            ratio = row.cost_ratios.get(key)
            if ratio:  # a cost one side did not measure has no bar (not a bar at 0×)
                xs.append(x + (i - (len(measured) - 1) / 2) * width)
                heights.append(ratio - 1.0)
                ratios.append(ratio)
            else:
                num_missing += 1
        ax.bar(xs, heights, width=width, bottom=1.0, color=colour, label=label)
    _ratio_axis(ax, ratios)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(
        [f"{r.ensemble.label}\n{short_budget(r.ensemble.budget_params)}" for r in rows],
        fontsize=8 if len(rows) <= 12 else 6.5,
    )
    ax.set_ylabel("ensemble / single (×, log scale)")
    ax.grid(axis="y", alpha=0.3)
    if num_missing:
        ax.text(0.005, 0.02, "no bar: not measured for that design", transform=ax.transAxes,
                fontsize=7.5, color="#555555")  # fmt: skip


def cost_ratio_figure(analysis: Analysis) -> bytes:
    """Ensemble / single cost for each ensemble design: a panel per family and dataset."""
    title = "Cost ratios, ensemble / single network"
    groups: dict[tuple[str, str], list[Comparison]] = defaultdict(list)
    for row in analysis.comparisons:
        groups[(row.ensemble.family, row.ensemble.dataset)].append(row)
    if not groups:
        return blank_figure(title, "no ensemble with a single network at the same budget")
    rows = analysis.comparisons
    measured = [bar for bar in COST_BARS if any(r.cost_ratios.get(bar[0]) for r in rows)]
    if not measured:
        return blank_figure(title, "no costs measured (time per epoch, latency, memory)")
    missing = [bar[1] for bar in COST_BARS if bar not in measured]
    widest = max(len(group) for group in groups.values())
    panel_width = min(14.0, 0.3 * widest * len(measured) + 1.5)
    figure, axes = panels(len(groups), 1, (panel_width, 4.2), extra_height_in=0.4)
    for ax, ((family, dataset), group) in zip(axes, sorted(groups.items()), strict=True):
        group.sort(key=lambda r: (r.ensemble.design_class, r.ensemble.num_members,
                                  r.ensemble.budget_params))  # fmt: skip
        _cost_panel(ax, group, measured)
        ax.set_title(f"{family} on {dataset}", fontsize=10)
    axes[0].legend(fontsize=8, ncols=len(measured))
    figure.suptitle(title + (f" — not measured: {', '.join(missing)}" if missing else ""))
    return png_of(figure)
