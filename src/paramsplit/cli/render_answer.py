"""Terminal output for the answer: ESTs, the designs and win tables, a recommendation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.markup import escape
from rich.table import Table

from paramsplit.cli.render import console, format_bytes
from paramsplit.specs import format_budget

if TYPE_CHECKING:  # type names only: rendering must not import torch
    from paramsplit.analysis import Analysis, Candidate, Recommendation, Stat
    from paramsplit.report import ReportFiles


def accuracy_text(stat: Stat | None) -> str:
    """'99.16 ± 0.12 % (3)': mean ± std over seeds, with the number of seeds."""
    if stat is None:
        return "—"
    spread = f" ± {100 * stat.std:.2f}" if stat.std is not None else ""
    return f"{100 * stat.mean:.2f}{spread} % ({stat.n})"


def _median(stat: Stat | None, unit: str, digits: int = 3) -> str:
    return "—" if stat is None else f"{stat.median:.{digits}g} {unit}"


def _memory(stat: Stat | None) -> str:
    return "—" if stat is None else format_bytes(int(stat.median))


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _points(gain: float) -> str:
    return f"{round(100 * gain, 2) + 0.0:+.2f} pt"  # + 0.0: a rounded -0.00 prints as +0.00


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}" if value >= 0.001 else "<0.001"


def render_switchovers(analysis: Analysis) -> None:
    if not analysis.switchovers:
        console.print("No EST: the study has no ensemble with a single network to compare.")
        return
    console.print("[bold]Ensemble Switchover Threshold[/]")
    for switchover in analysis.switchovers:
        marks = " ".join(
            f"{format_budget(b)}{'✓' if w else '✗'}"
            for b, w in zip(switchover.budgets, switchover.wins, strict=True)
        )
        console.print(f"  {escape(switchover.describe())}  [dim]{marks}[/]")


def render_designs(analysis: Analysis) -> None:
    if not analysis.designs:
        console.print("No finished runs yet: run the study (paramsplit run), then report again.")
        return
    table = Table(
        title="Designs (accuracy: mean ± std over seeds; costs: median over seeds)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    columns = ("budget", "design", "class", "params (ratio)", "test accuracy (seeds)",
               "train time", "epoch time", "latency b=1", "train memory", "Pareto")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("design", "class") else "right")
    for d in analysis.designs:
        ratio = f" ({d.ratio:.3f})" if d.ratio is not None else ""
        table.add_row(
            format_budget(d.budget_params),
            escape(d.design),
            d.label,
            f"{d.total_params:,}{ratio}",
            accuracy_text(d.accuracy),
            _median(d.train_time_s, "s"),
            _median(d.epoch_time_s, "s"),
            _median(d.latency_ms_batch1, "ms"),
            _memory(d.peak_train_memory_bytes),
            "✓" if analysis.on_front(d) else "",
        )
    console.print(table)


def render_comparisons(analysis: Analysis) -> None:
    if not analysis.comparisons:
        return
    table = Table(
        title="Ensembles against the single network of the same budget (ratios: ensemble / single)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    columns = ("budget", "ensemble", "class", "accuracy gain", "p", "wins", "epoch time",
               "latency", "train memory (all k / one at a time)",
               "time to single's best (speed-up)")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("ensemble", "class") else "right")
    for row in analysis.comparisons:
        ratios = row.cost_ratios
        speed = (
            f"{row.time_to_accuracy_s:.2f} s ({row.speedup:.2f}×)"
            if row.time_to_accuracy_s is not None and row.speedup is not None
            else f"not reached ({row.reached_target}/{row.ensemble.accuracy.n})"
        )
        wins = ("✓ significant" if row.significant else "✓") if row.wins else "✗"
        table.add_row(
            format_budget(row.ensemble.budget_params),
            escape(row.ensemble.design),
            row.ensemble.label,
            _points(row.accuracy_gain),
            _p(row.p_value),
            wins,
            _ratio(ratios["epoch_time_s"]),
            _ratio(ratios["latency_ms_batch1"]),
            f"{_ratio(ratios['peak_train_memory_bytes'])} / "
            f"{_ratio(ratios['loop_train_memory_bytes'])}",
            speed,
        )
    console.print(table)


def render_analysis(analysis: Analysis) -> None:
    """The plain-text summary of a study: counts, designs, win table, ESTs."""
    console.print(
        f"[bold]{escape(analysis.study)}[/]: {analysis.num_done} runs done, "
        f"{len(analysis.failed)} failed, {analysis.num_pending} not run yet"
    )
    for record in analysis.failed:
        console.print(
            f"  [red]failed[/] {escape(record.design)} seed {record.seed}: "
            f"{escape(record.reason or '')}"
        )
    render_designs(analysis)
    render_comparisons(analysis)
    render_switchovers(analysis)


def _objective_margin(answer: Recommendation, runner_up: Candidate) -> str:
    """How much the choice saves on a time objective, e.g. '1.7 s vs 2.35 s (0.72×); '."""
    best = next(c for c in answer.candidates if c.summary is answer.choice)
    if answer.objective == "train-time":
        ours, theirs, unit = best.summary.train_time_s, runner_up.summary.train_time_s, "s"
        if ours is None or theirs is None:
            return ""
        a, b = ours.median, theirs.median
    elif answer.objective == "latency" and best.latency_ms and runner_up.latency_ms:
        a, b, unit = best.latency_ms, runner_up.latency_ms, "ms"
    else:
        return ""
    return f"{a:.3g} {unit} vs {b:.3g} {unit} ({a / b:.2f}×); "


def render_recommendation(answer: Recommendation) -> None:
    """The answer for one budget: the design, its evidence and the other candidates."""
    asked = format_budget(answer.requested_budget)
    console.print(f"[bold]Recommendation for {asked} parameters[/] (objective: {answer.objective})")
    for note in answer.notes:
        console.print(f"  note: {escape(note)}", style="yellow")
    choice = answer.choice
    if choice is not None:
        console.print(
            f"  build [bold green]{escape(choice.design)}[/] ({choice.label}, "
            f"{choice.total_params:,} params): test accuracy {accuracy_text(choice.accuracy)}"
        )
        runner_up = next((c for c in answer.candidates if c.summary is answer.runner_up), None)
        if runner_up is not None and answer.accuracy_margin is not None:
            console.print(
                f"  against the runner-up {escape(runner_up.summary.design)} "
                f"({runner_up.summary.label}): {_objective_margin(answer, runner_up)}"
                f"accuracy {_points(answer.accuracy_margin)}, p = {_p(answer.p_value)} "
                f"({choice.accuracy.n} vs {runner_up.summary.accuracy.n} seeds)"
            )
        console.print(f"  backed by runs {', '.join(choice.run_ids)}", style="dim")
    if not answer.candidates:
        return
    table = Table(title="Candidates", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("design", "class", "test accuracy (seeds)", "latency", "train time",
                   "train memory", "meets constraints"):  # fmt: skip
        table.add_column(column)
    for candidate in answer.candidates:
        s = candidate.summary
        table.add_row(
            escape(s.design),
            s.label,
            accuracy_text(s.accuracy),
            "—" if candidate.latency_ms is None else f"{candidate.latency_ms:.3g} ms",
            _median(s.train_time_s, "s"),
            _memory(s.peak_train_memory_bytes),
            "✓" if candidate.passes else escape("; ".join(candidate.violations)),
        )
    console.print(table)


def render_report_files(files: ReportFiles) -> None:
    console.print(
        f"[bold]report:[/] {escape(str(files.html))} "
        f"[dim](figures as PNG, tables as CSV and the analysis as JSON in "
        f"{escape(str(files.folder))}/)[/]"
    )
