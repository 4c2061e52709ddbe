"""The figures' common ground: a PNG canvas, one look per design class, and a blank panel.

Figures are drawn on `matplotlib.figure.Figure` with an explicit Agg canvas, never through
pyplot: pyplot keeps global figure state and picks a backend for the whole process, which a
library must not do to its caller (a notebook, a GUI, another report being drawn).
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from paramsplit.analysis import DesignSummary
from paramsplit.analysis.text import short_budget
from paramsplit.specs import class_order

DPI = 100  # figure sizes below are in inches: 7 × 4.5 in is 700 × 450 px

# Colour-blind-safe (Okabe–Ito); the single network is black so it reads as the reference.
CLASS_COLOURS = {"single": "#000000", "deq": "#0072B2", "weq": "#E69F00", "both": "#009E73"}
NO_DATA_COLOUR = "#E6E6E6"
K_MARKERS = {2: "o", 4: "^", 8: "s", 16: "D"}
K_LINESTYLES = {2: "-", 4: "--", 8: "-.", 16: ":"}


@dataclass(frozen=True)
class Look:
    """How one design class at one k is drawn, the same in every figure."""

    colour: str
    marker: str
    linestyle: str
    linewidth: float


def look_of(design_class: str, num_members: int) -> Look:
    if design_class == "single":
        return Look(CLASS_COLOURS["single"], "s", "-", 2.6)
    return Look(
        CLASS_COLOURS.get(design_class, "#CC79A7"),
        K_MARKERS.get(num_members, "v"),
        K_LINESTYLES.get(num_members, ":"),
        1.6,
    )


def new_figure(width_in: float, height_in: float) -> Figure:
    figure = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def panels(
    num_panels: int, columns: int, panel_in: tuple[float, float], extra_height_in: float = 0.0
) -> tuple[Figure, list[Axes]]:
    """A figure of `num_panels` axes, `columns` to a row, each about `panel_in` inches (w, h);
    at least 7 in wide so that titles and legends fit."""
    columns = min(num_panels, columns)
    rows = -(-num_panels // columns)
    width, height = panel_in
    figure = new_figure(max(7.0, width * columns), height * rows + extra_height_in)
    return figure, [figure.add_subplot(rows, columns, i + 1) for i in range(num_panels)]


def png_of(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def blank_panel(ax: Axes, message: str) -> None:
    """A panel that says why there is nothing to draw, instead of an empty or broken plot."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(NO_DATA_COLOUR)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, color="#555555")


def blank_figure(title: str, message: str) -> bytes:
    """A whole figure with nothing to draw: the title and the reason."""
    figure = new_figure(7, 2.2)
    ax = figure.add_subplot()
    ax.set_title(title)
    blank_panel(ax, message)
    return png_of(figure)


def budget_axis(ax: Axes, budgets: Iterable[float]) -> None:
    """A log axis of parameter counts, ticked at the budgets tested and labelled '50k'."""
    ticks = sorted(set(budgets))
    if not ticks:
        return
    ax.set_xscale("log")
    if len(ticks) == 1:  # a log axis needs a span; give the one budget a decade around it
        ax.set_xlim(ticks[0] / 3, ticks[0] * 3)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([short_budget(b) for b in ticks])
    ax.set_xlabel("parameter budget")


Group = tuple[str, str]  # family, dataset


def by_group(designs: Iterable[DesignSummary]) -> dict[Group, list[DesignSummary]]:
    groups: dict[Group, list[DesignSummary]] = defaultdict(list)
    for design in designs:
        groups[(design.family, design.dataset)].append(design)
    return dict(sorted(groups.items()))


def by_class(designs: Iterable[DesignSummary]) -> dict[tuple[str, int], list[DesignSummary]]:
    """Designs of each class and k, ascending budget; single first, then deq, then weq."""
    classes: dict[tuple[str, int], list[DesignSummary]] = defaultdict(list)
    for design in sorted(designs, key=lambda d: d.budget_params):
        classes[(design.design_class, design.num_members)].append(design)
    return dict(sorted(classes.items(), key=lambda item: (class_order(item[0][0]), item[0][1])))
