"""One self-contained HTML page: figures as data: URIs, inline CSS and JS, nothing fetched.

Every string that came from a user (study, family, dataset and design names, failure
reasons) goes through `html.escape` on its way in; the page's own markup is written here.
"""

from __future__ import annotations

import base64
import html
from importlib import resources

from paramsplit import __version__
from paramsplit.adaptive.answer import Saving
from paramsplit.analysis import Analysis, Constraints, Recommendation
from paramsplit.analysis.matching import tolerance_text
from paramsplit.analysis.recommend import MEMORY_EXECUTIONS
from paramsplit.analysis.records import ACCURACY_NAMES
from paramsplit.analysis.text import (
    accuracy_text,
    interval_text,
    number,
    p_value_text,
    points_text,
    ratio_text,
)
from paramsplit.quantities import format_budget, format_bytes
from paramsplit.report.adaptive import adaptive_html
from paramsplit.report.figures import ReportFigure, render_figures
from paramsplit.report.tables import (
    Table,
    candidates_table,
    comparisons_table,
    designs_table,
    failed_table,
    switchovers_table,
)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _asset(name: str) -> str:
    return resources.files("paramsplit.report").joinpath(name).read_text(encoding="utf-8")


def table_html(table: Table) -> str:
    head = "".join(f"<th scope='col'>{esc(h)}</th>" for h in table.headers)
    body = []
    for row in table.rows:
        cells = []
        for cell in row:
            if cell.numeric:
                key = "" if cell.sort is None else repr(float(cell.sort))
                cells.append(f"<td class='num' data-sort='{key}'>{esc(cell.text)}</td>")
            else:
                cells.append(f"<td>{esc(cell.text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f"<div class='scroll'><table id='{esc(table.name)}' class='sortable'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def figure_html(figure: ReportFigure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    return (
        f"<figure id='figure-{esc(figure.name)}'><h3>{esc(figure.title)}</h3>"
        f"<img src='data:image/png;base64,{data}' alt='{esc(figure.title)}'>"
        f"<figcaption>{esc(figure.caption)}</figcaption></figure>"
    )


def _constraints_text(constraints: Constraints) -> str:
    limits = []
    if constraints.max_latency_ms is not None:
        limits.append(
            f"latency ≤ {number(constraints.max_latency_ms)} ms at batch {constraints.batch_size}"
        )
    if constraints.max_train_time_s is not None:
        limits.append(f"training time ≤ {number(constraints.max_train_time_s)} s")
    if constraints.max_memory_bytes is not None:
        execution = MEMORY_EXECUTIONS[constraints.memory_execution]
        limits.append(
            f"training memory ≤ {format_bytes(constraints.max_memory_bytes)} ({execution})"
        )
    if constraints.min_accuracy is not None:
        limits.append(f"test accuracy ≥ {constraints.min_accuracy * 100:.1f} %")
    return ", ".join(limits) or "none"


def recommendation_html(answer: Recommendation) -> str:
    asked = format_budget(answer.requested_budget)
    parts = [f"<h3>Recommendation for a budget of {esc(asked)} parameters</h3>"]
    parts.append(
        f"<p class='note'>Objective: {esc(answer.objective)}; constraints: "
        f"{esc(_constraints_text(answer.constraints))}.</p>"
    )
    choice = answer.choice
    if choice is None:
        parts.append("<p><strong>No measured design fits.</strong></p>")
    else:
        best = next(c for c in answer.candidates if c.summary is choice)
        to_single = ""
        if best.matched is not None and best.params_ratio is not None:
            flag = "" if best.matched else ", unmatched"
            to_single = f", {best.params_ratio:.2f}× the single network's parameters{flag}"
        sentence = (
            f"Build <strong>{esc(choice.design)}</strong> ({esc(choice.label)}, budget "
            f"{esc(format_budget(choice.budget_params))}, {choice.total_params:,} parameters"
            f"{esc(to_single)}): test accuracy "
            f"{esc(accuracy_text(choice.accuracy))} % over {choice.accuracy.n} seeds"
        )
        test = answer.test
        if answer.runner_up is not None and answer.accuracy_margin is not None and test:
            sentence += esc(
                f", {points_text(answer.accuracy_margin)} points {interval_text(test)} over "
                f"the runner-up {answer.runner_up.design} (p-value {p_value_text(test.p_value)}, "
                f"smallest possible {p_value_text(test.smallest_p_value)}; "
                f"{ratio_text(answer.params_ratio)} its parameters)"
            )
        parts.append(f"<p>{sentence}.</p>")
        parts.append(f"<p class='note'>Backed by runs: {esc(', '.join(choice.run_ids))}.</p>")
    if answer.notes:
        parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in answer.notes) + "</ul>")
    if answer.candidates:
        parts.append(table_html(candidates_table(answer)))
    return f"<div class='recommendation'>{''.join(parts)}</div>"


def _answer_html(analysis: Analysis) -> str:
    if analysis.switchovers:
        items = "".join(
            f"<li>{esc(s.describe())}<br><span class='note'>{esc(s.sequence)}</span></li>"
            for s in analysis.switchovers
        )
        note = analysis.matching_note()
        flag = "" if analysis.matched_only else " (--matched-only leaves them out)"
        note_html = f"<p class='note' id='matching-note'>{esc(note)}{flag}.</p>" if note else ""
        return f"<ul class='answer'>{items}</ul>{note_html}"
    return (
        "<p>No ensemble was compared with a single network of the same budget, so there "
        "is no switchover to report.</p>"
    )


def _meta_html(analysis: Analysis) -> str:
    groups = sorted({f"{d.family} on {d.dataset}" for d in analysis.designs})
    rule = (
        "an ensemble wins when it is more accurate with an exact one-sided permutation test "
        f"p ≤ {analysis.alpha:g}"
        if analysis.require_significance
        else "an ensemble wins when its mean test accuracy over seeds is higher"
    )
    matched = f"matched: params ratio within {tolerance_text(analysis.match_tolerance)}" + (
        ", unmatched comparisons left out of the EST" if analysis.matched_only else ""
    )
    accuracy = f"test accuracy: {ACCURACY_NAMES[analysis.accuracy]} ({analysis.accuracy})"
    return (
        f"<p class='meta'>{esc(', '.join(groups) or 'no finished designs')} · "
        f"{analysis.num_runs} runs: {analysis.num_done} finished, {len(analysis.failed)} failed, "
        f"{analysis.num_pending} not run · {esc(rule)} · {esc(matched)} · {esc(accuracy)}</p>"
    )


def _heat_metric(analysis: Analysis) -> str:
    metrics = {h.metric for h in analysis.heat_maps}
    return "test" if metrics == {"test_accuracy"} else "validation"


HOW_TO_READ = """
<dl>
<dt>Budget, total, ratio</dt><dd>The budget is the parameter count asked for; the total is
what the design really has, counted from the built network; the ratio is total / budget.
Compare designs at the same budget, and check the ratio.</dd>
<dt>single, deq, weq, k</dt><dd>single: one network. deq (depth-equivalent): k members of
the single network's depth, narrower. weq (width-equivalent): k members of its width,
shallower. The members' parameters add up to about the single network's.</dd>
<dt>Params ratio, matched</dt><dd>Every comparison shows the ensemble's parameters / the
single network's. A ratio outside {tolerance} is flagged "unmatched": the ensemble is not
the same size as the network it is compared with. --matched-only leaves such comparisons out
of the EST; --match-tolerance sets the range.</dd>
<dt>EST (Ensemble Switchover Threshold)</dt><dd>The smallest budget from which an ensemble
class beats the single network of the same budget at that budget and every larger one. The
sequence shows each budget: ✓ a win, ✗ not (a loss, a tie or a win that is not significant),
? too few seeds to tell, · no comparison (failed, not run, infeasible, or unmatched with
--matched-only), with the params ratio. The EST never spans a gap: a budget without a
comparison ends a run of wins. "≤" means the ensemble may start winning lower: it wins at
every budget, or the budget below has no comparison or too few seeds. "none in range" means
it does not win at the largest budget; "not enough seeds to tell" that the seeds there could
not show a significant win.</dd>
<dt>Accuracy, validation and test</dt><dd>Test accuracy is measured once per run, at the
epoch with the best validation accuracy (selection never looks at the test set); an
ensemble's prediction is its {accuracy}. Tables show mean ± sample standard deviation over
seeds, in percent; with one seed, the mean alone. Costs (times, memory) are medians over
seeds: one measurement disturbed by other work on the machine does not move them.
The heat map compares {heat_metric} accuracy after each epoch, and the curves validation
accuracy: both with the members' probabilities averaged, whatever the headline accuracy.</dd>
<dt>Gain, interval, p-value, result</dt><dd>Gain: ensemble mean − single mean, in percentage
points. p-value: the exact one-sided permutation test that the ensemble is more accurate,
over every way to split the seeds into two groups; it cannot go below 1 / (number of splits):
0.167 with 2 seeds against 2, 0.05 with 3 against 3 (the "smallest possible p"). The interval
inverts the same test ({confidence}%: each bound one-sided at {alpha:g}), so it excludes 0
exactly when the win is significant, and is unbounded (±∞) when there are too few seeds.
"win, significant": a gain above 0 with p ≤ {alpha:g}; a tie or a loss is never
significant.</dd>
<dt>Ratios (×)</dt><dd>Ensemble cost / single network cost at the same budget: above 1× the
ensemble costs more, below 1× it costs less. — means not measured.</dd>
<dt>Time to target, speed-up</dt><dd>Both designs are timed to one target, the single
network's median best validation accuracy over its seeds: each seed's training time until its
validation accuracy first reaches it, the median over seeds, and how many seeds got there
(a seed that never does counts as never: with fewer than half there, "not reached"). The
speed-up is the single network's time / the ensemble's.</dd>
<dt>Pareto front</dt><dd>Designs no other design beats or equals on every objective
(accuracy, training time, latency, training memory; objectives some design did not measure
are left out).</dd>
</dl>
"""


def _section(title: str, anchor: str, body: str) -> str:
    return f"<section id='{anchor}'><h2>{title}</h2>{body}</section>"


def render_html(
    analysis: Analysis,
    recommendation: Recommendation | None = None,
    figures: list[ReportFigure] | None = None,
    adaptive: Saving | None = None,
) -> str:
    """The whole report as one HTML document; `adaptive`: what an adaptive study saved."""
    figures = render_figures(analysis) if figures is None else figures
    failed = table_html(failed_table(analysis)) if analysis.failed else "<p>No run failed.</p>"
    comparisons = (
        table_html(comparisons_table(analysis))
        + "".join(f"<p class='note cost-note'>{esc(note)}.</p>" for note in analysis.cost_notes())
        if analysis.comparisons
        else "<p>No ensemble has a single network at its budget to compare with.</p>"
    )
    switchovers = table_html(switchovers_table(analysis)) if analysis.switchovers else ""
    body = [
        f"<h1>paramsplit report: {esc(analysis.study)}</h1>",
        _meta_html(analysis),
        _section("The answer", "answer", _answer_html(analysis) + switchovers
                 + (recommendation_html(recommendation) if recommendation else "")),
        *([_section("Adaptive study: what was skipped, and why", "adaptive",
                    adaptive_html(adaptive))] if adaptive is not None else []),
        _section("Figures", "figures", "".join(figure_html(f) for f in figures)),
        _section("Designs", "designs-section", table_html(designs_table(analysis))),
        _section("Ensembles against the single network", "comparisons-section", comparisons),
        _section("Failed runs", "failed-section", failed),
        _section("How to read this", "how-to-read",
                 HOW_TO_READ.format(
                     heat_metric=_heat_metric(analysis), alpha=analysis.alpha,
                     confidence=round(100 * (1 - 2 * analysis.alpha)),
                     tolerance=tolerance_text(analysis.match_tolerance),
                     accuracy=ACCURACY_NAMES[analysis.accuracy])),
    ]  # fmt: skip
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        # An empty icon: otherwise the browser asks for /favicon.ico, which is not there.
        "<link rel='icon' href='data:,'>"
        f"<title>paramsplit report: {esc(analysis.study)}</title>"
        f"<style>{_asset('page.css')}</style></head><body>"
        + "\n".join(body)
        + f"<footer>Written by paramsplit {esc(__version__)}. Tables sort by a click on a "
        "column header.</footer>"
        f"<script>{_asset('sortable.js')}</script></body></html>\n"
    )
