"""Terminal output for the answer: ESTs, the designs and win tables, a recommendation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.markup import escape
from rich.table import Table

from paramsplit.analysis import text
from paramsplit.analysis.records import ACCURACY_NAMES
from paramsplit.cli.render import console
from paramsplit.quantities import format_budget, format_bytes

if TYPE_CHECKING:  # type names only: rendering must not import torch
    from paramsplit.analysis import (
        Analysis,
        Candidate,
        Comparison,
        Recommendation,
        SeedTest,
        Stat,
        TimeToTarget,
    )
    from paramsplit.report import ReportFiles


# Numbers read as in the report (`paramsplit.analysis.text`); the terminal has no column
# units, so its cells carry them.


def accuracy_text(stat: Stat | None) -> str:
    """'99.16 ± 0.12 % (3)': mean ± std over seeds, with the number of seeds."""
    return text.MISSING if stat is None else f"{text.accuracy_text(stat)} % ({stat.n})"


def _median(stat: Stat | None, unit: str) -> str:
    return text.MISSING if stat is None else f"{text.cost_text(stat)} {unit}"


def _memory(stat: Stat | None) -> str:
    return text.MISSING if stat is None else format_bytes(int(stat.median))


_ratio = text.ratio_text
_interval = text.interval_text


def _points(gain: float) -> str:
    return f"{text.points_text(gain)} pt"


def _p_with_floor(test: SeedTest) -> str:
    """'0.167 (≥ 0.167)': the p-value and the smallest these numbers of seeds allow."""
    return f"{text.p_value_text(test.p_value)} (≥ {text.p_value_text(test.smallest_p_value)})"


def _result(row: Comparison) -> str:
    if not row.wins:
        return row.verdict()
    if row.significant:
        return "✓ significant"
    return "✓ not significant" if row.test.enough_seeds else "✓ too few seeds to test"


def _time_text(time: TimeToTarget | None) -> str:
    if time is None:
        return text.MISSING
    shown = "never" if time.median_s is None else f"{text.number(time.median_s)} s"
    return f"{shown} {time.reached_text}"


def _time_to_target(row: Comparison) -> str:
    """'2.1 s 3/3 vs 3 s 2/3 (1.43×)': ensemble, then single, to the same target, with the
    seeds that reached it."""
    if row.target_val_accuracy is None or row.ensemble_time is None:
        return text.MISSING
    both = f"{_time_text(row.ensemble_time)} vs {_time_text(row.single_time)}"
    return both + (f" ({_ratio(row.speedup)})" if row.speedup is not None else "")


def render_switchovers(analysis: Analysis) -> None:
    if not analysis.switchovers:
        console.print("No EST: the study has no ensemble with a single network to compare.")
        return
    console.print("[bold]Ensemble Switchover Threshold[/]")
    for switchover in analysis.switchovers:
        console.print(f"  {escape(switchover.describe())}")
        console.print(f"    [dim]{escape(switchover.sequence)}[/]")
    console.print(
        "  [dim]✓ ensemble wins · ✗ it does not · ? too few seeds to tell · · no comparison; "
        "(×) ensemble params / single params[/]"
    )


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


def _comparison_table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("budget", "ensemble", "class", *columns):
        table.add_column(column, justify="left" if column in ("ensemble", "class") else "right")
    return table


def render_comparisons(analysis: Analysis) -> None:
    """The win table in two parts: accuracy (with the parameter ratio), then costs."""
    if not analysis.comparisons:
        return
    confidence = round(100 * (1 - 2 * analysis.alpha))
    accuracy = _comparison_table(
        "Ensembles against the single network of the same budget: accuracy "
        f"(gain in points [{confidence}% interval]; exact permutation test over seeds)",
        ("params / single", "gain", "p (≥ smallest possible)", "result"),
    )
    costs = _comparison_table(
        "... and their costs (ensemble / single; time to target: to the single network's "
        "median best validation accuracy, median over seeds, seeds that reached it)",
        (
            "epoch time",
            "latency",
            "train memory (all k / one at a time)",
            "time to target: ensemble vs single",
        ),
    )
    for row in analysis.comparisons:
        ratios = row.cost_ratios
        design = (format_budget(row.ensemble.budget_params), escape(row.ensemble.design),
                  row.ensemble.label)  # fmt: skip
        accuracy.add_row(
            *design,
            _ratio(row.params_ratio) + ("" if row.matched else " unmatched"),
            f"{text.points_text(row.accuracy_gain)} {_interval(row.test)}",
            _p_with_floor(row.test),
            _result(row),
        )
        costs.add_row(
            *design,
            _ratio(ratios["epoch_time_s"]),
            _ratio(ratios["latency_ms_batch1"]),
            f"{_ratio(ratios['peak_train_memory_bytes'])} / "
            f"{_ratio(ratios['loop_train_memory_bytes'])}",
            _time_to_target(row),
        )
    console.print(accuracy)
    note = analysis.matching_note()
    if note is not None:
        hint = "" if analysis.matched_only else "; --matched-only leaves them out"
        console.print(f"  note: {escape(note)}{hint}", style="yellow")
    console.print(costs)
    for note in analysis.cost_notes():
        console.print(f"  note: {escape(note)}", style="yellow")


def render_analysis(analysis: Analysis, pending: str = "not run yet") -> None:
    """The plain-text summary of a study: counts, designs, win table, ESTs. `pending` says
    what the runs neither done nor failed are (an adaptive study's: skipped or stopped)."""
    console.print(
        f"[bold]{escape(analysis.study)}[/]: {analysis.num_done} runs done, "
        f"{len(analysis.failed)} failed, {analysis.num_pending} {pending}; test accuracy: "
        f"{ACCURACY_NAMES[analysis.accuracy]} (--accuracy {analysis.accuracy})"
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
    return f"{text.number(a)} {unit} vs {text.number(b)} {unit} ({_ratio(a / b)}); "


def _to_single(candidate: Candidate) -> str:
    """', 0.96× the single network's' for an ensemble (flagged when unmatched)."""
    if candidate.matched is None or candidate.params_ratio is None:
        return ""
    flag = "" if candidate.matched else ", unmatched"
    return f", {candidate.params_ratio:.2f}× the single network's{flag}"


def render_recommendation(answer: Recommendation, accuracy: str = "prob") -> None:
    """The answer for one budget: the design, its evidence and the other candidates."""
    asked = format_budget(answer.requested_budget)
    console.print(
        f"[bold]Recommendation for {asked} parameters[/] (objective: {answer.objective}; "
        f"test accuracy: {ACCURACY_NAMES[accuracy]})"
    )
    for note in answer.notes:
        console.print(f"  note: {escape(note)}", style="yellow")
    choice = answer.choice
    if choice is not None:
        best = next(c for c in answer.candidates if c.summary is choice)
        console.print(
            f"  build [bold green]{escape(choice.design)}[/] ({choice.label}, "
            f"{choice.total_params:,} params{_to_single(best)}): "
            f"test accuracy {accuracy_text(choice.accuracy)}"
        )
        runner_up = next((c for c in answer.candidates if c.summary is answer.runner_up), None)
        if runner_up is not None and answer.accuracy_margin is not None and answer.test:
            console.print(
                f"  against the runner-up {escape(runner_up.summary.design)} "
                f"({runner_up.summary.label}): {_objective_margin(answer, runner_up)}accuracy "
                f"{_points(answer.accuracy_margin)} {_interval(answer.test)}, "
                f"p = {_p_with_floor(answer.test)} "
                f"({choice.accuracy.n} vs {runner_up.summary.accuracy.n} seeds); "
                f"params {_ratio(answer.params_ratio)} the runner-up's"
            )
        console.print(f"  backed by runs {', '.join(choice.run_ids)}", style="dim")
    if not answer.candidates:
        return
    table = Table(title="Candidates", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("design", "class", "params / single", "test accuracy (seeds)", "latency",
                   "train time", "train memory", "meets constraints"):  # fmt: skip
        table.add_column(column)
    for candidate in answer.candidates:
        s = candidate.summary
        table.add_row(
            escape(s.design),
            s.label,
            _ratio(candidate.params_ratio) + (" unmatched" if candidate.matched is False else ""),
            accuracy_text(s.accuracy),
            text.MISSING
            if candidate.latency_ms is None
            else f"{text.number(candidate.latency_ms)} ms",
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
