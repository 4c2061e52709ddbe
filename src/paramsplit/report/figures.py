"""The answer's figures, each a function from an `Analysis` to PNG bytes.

Each copes with missing data (one seed, one budget, no ensembles, costs not measured) by
leaving that part out or drawing a panel that says what is missing; none raises on a study
that analysed without error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from paramsplit.analysis import Analysis, DesignSummary, HeatMap, Switchover
from paramsplit.analysis.compare import COST_METRICS
from paramsplit.analysis.text import short_budget
from paramsplit.report.canvas import (
    CLASS_COLOURS,
    NO_DATA_COLOUR,
    blank_figure,
    blank_panel,
    budget_axis,
    by_class,
    by_group,
    look_of,
    panels,
    png_of,
)
from paramsplit.report.figures_detail import cost_ratio_figure, curves_figure


def _mark_est(ax: Axes, switchover: Switchover, designs: list[DesignSummary]) -> None:
    """A star on the class's line where it starts winning, named in the legend."""
    est = switchover.est_budget
    at = [d for d in designs if d.budget_params == est]
    if est is None or not at:
        return
    look = look_of(switchover.design_class, switchover.num_members)
    sign = "≤" if switchover.est_is_upper_bound else "="
    ax.axvline(est, color=look.colour, linestyle=":", linewidth=1.0, alpha=0.7)
    ax.plot(
        [est], [at[0].accuracy.mean * 100], marker="*", markersize=16, linestyle="none",
        color=look.colour, markeredgecolor="black",
        label=f"EST {switchover.label} {sign} {short_budget(est)}",
    )  # fmt: skip


def accuracy_figure(analysis: Analysis) -> bytes:
    """Test accuracy against budget, one line per design class, the EST starred."""
    groups = by_group(analysis.designs)
    if not groups:
        return blank_figure("Accuracy against budget", "no finished runs to plot")
    figure, axes = panels(len(groups), 2, (7.5, 4.8))
    for ax, ((family, dataset), designs) in zip(axes, groups.items(), strict=True):
        classes = by_class(designs)
        for (design_class, k), rows in classes.items():
            look = look_of(design_class, k)
            ax.errorbar(
                [d.budget_params for d in rows],
                [d.accuracy.mean * 100 for d in rows],
                yerr=[(d.accuracy.std or 0.0) * 100 for d in rows],
                label=rows[0].label, color=look.colour, marker=look.marker,
                linestyle=look.linestyle, linewidth=look.linewidth, capsize=3,
            )  # fmt: skip
        for switchover in analysis.switchovers:
            if (switchover.family, switchover.dataset) == (family, dataset):
                key = (switchover.design_class, switchover.num_members)
                _mark_est(ax, switchover, classes.get(key, []))
        budget_axis(ax, [d.budget_params for d in designs])
        ax.set_ylabel("test accuracy (%), mean ± std over seeds")
        ax.set_title(f"{family} on {dataset}")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        # Matplotlib lists the stars (plain lines) before the error-bar lines: classes first.
        order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("EST"))
        ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8)
    return png_of(figure)


HEAT_LEGEND = (  # (heat map cell, colour, legend name); a cell is drawn as its index here
    ("", NO_DATA_COLOUR, "no data"),
    ("single", "#8C8C8C", "single"),  # grey, not black: black cells would hide the labels
    ("deq", CLASS_COLOURS["deq"], "deq only"),
    ("weq", CLASS_COLOURS["weq"], "weq only"),
    ("both", CLASS_COLOURS["both"], "both deq and weq"),
)
HEAT_CODES = {cell: i for i, (cell, _, _) in enumerate(HEAT_LEGEND)}


def _heat_panel(ax: Axes, heat: HeatMap, title: str) -> None:
    codes = [[HEAT_CODES[cell] for cell in row] for row in heat.cells]
    cmap = ListedColormap([colour for _, colour, _ in HEAT_LEGEND])
    ax.imshow(
        codes, cmap=cmap, vmin=-0.5, vmax=len(HEAT_LEGEND) - 0.5, aspect="auto", origin="lower",
        interpolation="nearest",
    )  # fmt: skip
    step = max(1, len(heat.epochs) // 10)  # about ten epoch labels, however long the run
    ax.set_xticks(range(0, len(heat.epochs), step))
    ax.set_xticklabels([str(e) for e in heat.epochs[::step]])
    ax.set_yticks(range(len(heat.budgets)))
    ax.set_yticklabels([short_budget(b) for b in heat.budgets])
    ax.set_xlabel("epoch")
    ax.set_ylabel("parameter budget")
    ax.set_title(title)


def heat_map_figure(analysis: Analysis) -> bytes:
    """Which class beats the single network at each (budget, epoch): a panel per k."""
    heats = [h for h in analysis.heat_maps if h.budgets and h.epochs]
    if not heats:
        return blank_figure(
            "Ensemble switchover heat map", "no ensemble and single network with per-epoch curves"
        )
    figure, axes = panels(len(heats), 3, (4.2, 3.4), extra_height_in=1.2)
    for ax, heat in zip(axes, heats, strict=True):
        _heat_panel(ax, heat, f"{heat.family} on {heat.dataset}, k = {heat.num_members}")
    used = {cell for h in heats for row in h.cells for cell in row}
    handles = [
        Patch(facecolor=colour, edgecolor="#555555", label=name)
        for cell, colour, name in HEAT_LEGEND
        if cell in used or cell != ""  # "no data" only where some cell has none
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9)
    metric = "test" if heats[0].metric == "test_accuracy" else "validation"
    figure.suptitle(
        f"Which ensemble class beats the single network: mean {metric} accuracy over seeds",
        fontsize=11,
    )
    return png_of(figure)


OBJECTIVE_NAMES = {"accuracy": "accuracy", **COST_METRICS}


def _pareto_panel(ax: Axes, analysis: Analysis, designs: list[DesignSummary]) -> bool:
    """Draw the designs that measured their training time; False if none did."""
    timed = [d for d in designs if d.train_time_s is not None]
    if not timed:
        blank_panel(ax, "training time not measured: no Pareto scatter")
        return False
    for (design_class, k), rows in by_class(timed).items():
        look = look_of(design_class, k)
        for design in rows:
            front = analysis.on_front(design)
            assert design.train_time_s is not None
            x, y = design.train_time_s.median, design.accuracy.mean * 100
            ax.scatter(
                [x], [y], s=110 if front else 50, marker=look.marker, color=look.colour,
                edgecolors="black" if front else "none", linewidths=1.6,
                alpha=1.0 if front else 0.55, zorder=3 if front else 2,
            )  # fmt: skip
            if front:
                ax.annotate(
                    f"{design.label} @ {short_budget(design.budget_params)}", (x, y),
                    xytext=(6, 4), textcoords="offset points", fontsize=7.5,
                )  # fmt: skip
    times = [d.train_time_s.median for d in timed if d.train_time_s]
    if min(times) > 0 and max(times) / min(times) > 10:
        ax.set_xscale("log")
    ax.set_xlabel("training time (s), median over seeds")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    left_out = len(designs) - len(timed)
    if left_out:
        ax.text(0.01, 0.01, f"{left_out} designs without a training time are not shown",
                transform=ax.transAxes, fontsize=8, color="#555555")  # fmt: skip
    return True


def pareto_figure(analysis: Analysis) -> bytes:
    """Accuracy against training time; designs on the Pareto front outlined and named."""
    groups = by_group(analysis.designs)
    if not groups:
        return blank_figure("Pareto front", "no finished runs to plot")
    figure, axes = panels(len(groups), 2, (7.5, 5.0))
    for ax, ((family, dataset), designs) in zip(axes, groups.items(), strict=True):
        drawn = _pareto_panel(ax, analysis, designs)
        objectives = next(
            (f.objectives for f in analysis.pareto if (f.family, f.dataset) == (family, dataset)),
            (),
        )
        names = "; ".join(OBJECTIVE_NAMES.get(o, o) for o in objectives)  # names hold commas
        ax.set_title(f"{family} on {dataset}: Pareto front over {names}", fontsize=10)
        if not drawn:
            continue
        handles = [
            Line2D([], [], color=look_of(c, k).colour, marker=look_of(c, k).marker,
                   linestyle="none", label=rows[0].label)
            for (c, k), rows in by_class(designs).items()
        ]  # fmt: skip
        handles.append(
            Line2D([], [], marker="o", markerfacecolor="white", markeredgecolor="black",
                   linestyle="none", markersize=9, label="on the Pareto front")
        )  # fmt: skip
        ax.legend(handles=handles, fontsize=8, loc="lower right")
    return png_of(figure)


@dataclass(frozen=True)
class ReportFigure:
    """One figure as the report shows and exports it."""

    name: str  # file stem: accuracy_vs_budget.png
    title: str
    caption: str
    png: bytes


FIGURES: tuple[tuple[str, str, str, Callable[[Analysis], bytes]], ...] = (
    (
        "accuracy_vs_budget",
        "Accuracy against budget",
        "Test accuracy (mean ± std over seeds) of each design class at each parameter "
        "budget. A star marks each class's EST: from there on it beats the single network.",
        accuracy_figure,
    ),
    (
        "est_heat_map",
        "Switchover heat map",
        "For each budget and epoch, the ensemble classes whose mean accuracy beats the "
        "single network of the same budget at that epoch.",
        heat_map_figure,
    ),
    (
        "pareto",
        "Pareto front",
        "Accuracy against training time. Outlined, named designs are on the Pareto front: "
        "no other design is at least as good on every objective and better on one.",
        pareto_figure,
    ),
    (
        "training_curves",
        "Training curves",
        "Validation accuracy (mean over seeds) after each epoch, per design.",
        curves_figure,
    ),
    (
        "cost_ratios",
        "Cost ratios",
        "Each ensemble's cost over the single network's at the same budget; below 1× the "
        "ensemble is cheaper.",
        cost_ratio_figure,
    ),
)


def render_figures(analysis: Analysis) -> list[ReportFigure]:
    """Every figure of the report, in the order it shows them."""
    return [
        ReportFigure(name, title, caption, draw(analysis)) for name, title, caption, draw in FIGURES
    ]
