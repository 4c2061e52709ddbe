"""`paramsplit report` and `paramsplit recommend`: the answer, read from the results database.

Neither imports torch: reading results is fast anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from paramsplit.cli import render, render_answer
from paramsplit.cli.options import DEFAULT_DB, JsonFlag, open_store
from paramsplit.cli.study_commands import DbOption
from paramsplit.errors import UsageError

if TYPE_CHECKING:
    from paramsplit.adaptive.answer import AdaptiveAnswer
    from paramsplit.analysis import Analysis, Constraints

StudyOption = Annotated[
    str | None, typer.Option("--study", help="Study name (default: the latest).")
]
AlphaOption = Annotated[
    float,
    typer.Option(
        help="Significance level of the exact one-sided permutation test across seeds; the "
        "gain's interval covers 1 − 2·alpha."
    ),
]
SignificanceFlag = Annotated[
    bool,
    typer.Option(
        "--require-significance",
        help="Count an ensemble as winning only where p ≤ alpha (else: by mean over seeds).",
    ),
]
AccuracyOption = Annotated[
    str,
    typer.Option(
        "--accuracy",
        help="Headline test accuracy: prob (members' probabilities averaged), logit (logits "
        "averaged) or vote (majority vote).",
    ),
]
MatchToleranceOption = Annotated[
    str | None,
    typer.Option(
        "--match-tolerance",
        help="Parameter ratios ensemble / single that count as matched, LOW,HIGH "
        "(default 0.9,1.0); others are flagged as unmatched.",
    ),
]
MatchedOnlyFlag = Annotated[
    bool,
    typer.Option(
        "--matched-only",
        help="Leave unmatched comparisons out of the EST (they show as gaps).",
    ),
]


def _load(
    db: str,
    study: str | None,
    alpha: float,
    *,
    require_significance: bool = False,
    accuracy: str = "prob",
    match_tolerance: str | None = None,
    matched_only: bool = False,
) -> Analysis:
    from paramsplit.analysis import DEFAULT_MATCH_TOLERANCE, analyse_store, parse_match_tolerance
    from paramsplit.analysis.records import check_accuracy

    if not 0 < alpha < 1:
        raise UsageError(f"--alpha must be in (0, 1), got {alpha}")
    check_accuracy(accuracy)
    tolerance = (
        parse_match_tolerance(match_tolerance) if match_tolerance else DEFAULT_MATCH_TOLERANCE
    )
    with open_store(db, create=False) as store:
        return analyse_store(
            store, study, alpha=alpha, require_significance=require_significance,
            accuracy=accuracy, match_tolerance=tolerance, matched_only=matched_only,
        )  # fmt: skip


def _adaptive(db: str, analysis: Analysis) -> AdaptiveAnswer | None:
    """For an adaptive study, its analysis with the policy's ESTs, and what it saved."""
    from paramsplit.adaptive.answer import answer_adaptive
    from paramsplit.adaptive.stored import definition_of, is_adaptive, load_records, load_settings

    with open_store(db, create=False) as store:
        if not is_adaptive(definition_of(store, analysis.study)):
            return None
        records = load_records(store, analysis.study)
        return answer_adaptive(analysis, records, load_settings(store, analysis.study))


def report(
    study: StudyOption = None,
    db: DbOption = DEFAULT_DB,
    html: Annotated[
        str | None,
        typer.Option(
            help="Where to write the HTML report (default: report.html; none with --json)."
        ),
    ] = None,
    budget: Annotated[
        str | None, typer.Option(help="Also recommend a design for this budget, e.g. 50k.")
    ] = None,
    alpha: AlphaOption = 0.05,
    require_significance: SignificanceFlag = False,
    accuracy: AccuracyOption = "prob",
    match_tolerance: MatchToleranceOption = None,
    matched_only: MatchedOnlyFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """The study's answer: ESTs, designs, the win table, Pareto front; an HTML report."""
    from paramsplit.analysis import recommend as recommend_design
    from paramsplit.quantities import parse_budget

    analysis = _load(
        db, study, alpha, require_significance=require_significance, accuracy=accuracy,
        match_tolerance=match_tolerance, matched_only=matched_only,
    )  # fmt: skip
    adaptive = _adaptive(db, analysis)
    if adaptive is not None:
        analysis = adaptive.analysis
    answer = None
    if budget is not None:
        answer = recommend_design(
            analysis.one_group(), parse_budget(budget),
            measured_latencies=analysis.measured_latencies, records=analysis.records,
            alpha=analysis.alpha, match_tolerance=analysis.match_tolerance,
        )  # fmt: skip
    written = None
    if html is not None or not as_json:
        from paramsplit.report import write_report

        written = write_report(
            analysis, Path(html or "report.html"), recommendation=answer,
            adaptive=adaptive.saving if adaptive else None,
        )  # fmt: skip
    if as_json:
        data = analysis.to_dict()
        data["recommendation"] = answer.to_dict() if answer else None
        if adaptive is not None:
            data["adaptive"] = adaptive.saving.to_dict()
        files = [str(p) for p in written.paths()] if written else []
        render.print_json(data | {"files": files})
        return
    pending = "not run yet" if adaptive is None else "skipped by the adaptive policy"
    render_answer.render_analysis(analysis, pending)
    if adaptive is not None:
        from paramsplit.cli.render_adaptive import render_saving

        render.console.print("[bold]Adaptive study[/]: ESTs over the budgets the policy settled")
        render_saving(adaptive.saving)
    if answer is not None:
        render_answer.render_recommendation(answer, analysis.accuracy)
    if written is not None:
        render_answer.render_report_files(written)


def constraints_from_flags(
    max_latency_ms: float | None,
    batch: int,
    max_train_time: str | None,
    max_memory: str | None,
    min_accuracy: float | None,
    memory_execution: str = "fused",
) -> Constraints:
    """The analysis's constraints from what the user typed; errors name the flags."""
    from paramsplit.analysis import Constraints
    from paramsplit.quantities import parse_bytes, parse_duration_s

    if batch < 1:
        raise UsageError(f"--batch must be at least 1, got {batch}")
    if min_accuracy is not None and not 0 <= min_accuracy <= 100:
        raise UsageError(f"--min-accuracy is a percentage in [0, 100], got {min_accuracy}")
    return Constraints(
        max_latency_ms=max_latency_ms,
        batch_size=batch,
        max_train_time_s=parse_duration_s(max_train_time) if max_train_time else None,
        max_memory_bytes=parse_bytes(max_memory) if max_memory else None,
        min_accuracy=min_accuracy / 100 if min_accuracy is not None else None,
        memory_execution=memory_execution,
    )


def recommend(
    budget: Annotated[
        str | None,
        typer.Option(help="Parameter budget: 1M, 250k, 2e6 (default: the study's largest)."),
    ] = None,
    max_latency_ms: Annotated[
        float | None, typer.Option(help="Largest inference latency per batch, in ms.")
    ] = None,
    batch: Annotated[int, typer.Option(help="Batch size the latency limit is for.")] = 1,
    max_train_time: Annotated[
        str | None, typer.Option(help="Longest training time: 1h, 30m, 90s.")
    ] = None,
    max_memory: Annotated[
        str | None,
        typer.Option(
            help="Most training memory (exact peak of live tensors, weights included): 4GB."
        ),
    ] = None,
    memory_execution: Annotated[
        str, typer.Option(help="Memory limit for ensembles trained: fused (all k) or loop.")
    ] = "fused",
    min_accuracy: Annotated[
        float | None, typer.Option(help="Lowest test accuracy, in percent: 95.")
    ] = None,
    objective: Annotated[
        str, typer.Option(help="What to optimise: accuracy, train-time or latency.")
    ] = "accuracy",
    family: Annotated[str | None, typer.Option(help="Family, if the study has several.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset, if the study has several.")] = None,
    study: StudyOption = None,
    db: DbOption = DEFAULT_DB,
    alpha: AlphaOption = 0.05,
    accuracy: AccuracyOption = "prob",
    match_tolerance: MatchToleranceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The best measured design for a budget, your constraints and objective."""
    from paramsplit.analysis import largest_budget
    from paramsplit.analysis import recommend as recommend_design
    from paramsplit.quantities import format_budget, parse_budget

    constraints = constraints_from_flags(
        max_latency_ms, batch, max_train_time, max_memory, min_accuracy, memory_execution
    )
    analysis = _load(db, study, alpha, accuracy=accuracy, match_tolerance=match_tolerance)
    designs = analysis.one_group(family, dataset)
    requested = parse_budget(budget) if budget else largest_budget(designs)
    answer = recommend_design(
        designs, requested, constraints, objective, analysis.measured_latencies,
        analysis.records, alpha=alpha, match_tolerance=analysis.match_tolerance,
    )  # fmt: skip
    if as_json:
        render.print_json(
            answer.to_dict() | {"study": analysis.study, "accuracy": analysis.accuracy}
        )
        return
    if budget is None:
        render.console.print(
            f"budget: {format_budget(requested)}, the largest the study measured "
            "(--budget picks another)",
            style="dim",
        )
    render_answer.render_recommendation(answer, analysis.accuracy)
    adaptive = _adaptive(db, analysis)
    if adaptive is not None and answer.measured_budget not in adaptive.decision.questions.values():
        render.console.print(
            "  note: an adaptive study measures every design with every seed only at its "
            "question budget ("
            + ", ".join(format_budget(b) for b in adaptive.decision.questions.values())
            + "); elsewhere some designs or seeds were skipped",
            style="yellow",
        )
    if not answer.exact_budget and designs:
        first = designs[0]
        render.console.print(
            f"  to measure {budget} itself: paramsplit run --family {first.family} "
            f"--budgets {budget} --dataset {render.escape(first.dataset)}",
            style="dim",
        )
