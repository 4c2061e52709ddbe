"""`paramsplit demo`: the whole loop offline — a small study, its answer and the HTML report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from paramsplit.cli import render, render_answer
from paramsplit.cli.options import DEMO_DB, check_processes, open_store, usable_cores
from paramsplit.cli.study_progress import render_infeasible, stops_cleanly, study_progress


def demo(
    db: Annotated[str, typer.Option(help="Results database (resumed if it exists).")] = DEMO_DB,
    html: Annotated[str, typer.Option(help="Where to write the HTML report.")] = (
        "paramsplit-demo.html"
    ),
    workers: Annotated[
        int | None, typer.Option(help="Processes training side by side (default: 2 if 2+ cores).")
    ] = None,
) -> None:
    """Run the built-in study on the offline digits set, then print and write its answer."""
    from paramsplit.analysis import analyse_store, recommend
    from paramsplit.data import load_dataset
    from paramsplit.quantities import format_budget
    from paramsplit.report import write_report
    from paramsplit.study import checkpoint_dir_for, register_study, run_study
    from paramsplit.study import demo as settings
    from paramsplit.study.artifacts import artifacts_dir_for

    workers = workers if workers is not None else min(2, usable_cores())
    check_processes("--workers", workers)
    study = settings.demo_study()
    budgets = ", ".join(format_budget(b) for b in study.budgets)
    render.console.print(
        f"[bold]paramsplit demo[/]: {settings.DEMO_FAMILY} on {settings.DEMO_DATASET}, budgets "
        f"{budgets}; single, deq and weq at k = {', '.join(map(str, study.members))}; "
        f"{len(study.seeds)} seeds, {study.config.epochs} epochs each; results in {db}"
    )
    started = time.perf_counter()
    datasets = {name: load_dataset(name) for name in study.datasets}
    with open_store(db) as store, stops_cleanly():
        _, infeasible = register_study(store, study, datasets)
        render_infeasible(infeasible)
        before = store.status_counts(study.name)
        if before["done"] == before["total"]:
            render.console.print(f"all {before['total']} runs are in {db} already: reusing them")
        else:
            with study_progress(store, study) as (on_run, on_progress):
                run_study(
                    store, study, executor=settings.DEMO_EXECUTOR, on_run=on_run,
                    on_progress=on_progress, datasets=datasets, register=False,
                    checkpoint_dir=checkpoint_dir_for(db), workers=workers, threads=1,
                    artifacts_dir=artifacts_dir_for(db),
                )  # fmt: skip
        analysis = analyse_store(store, study.name)
    answer = recommend(
        analysis.designs, settings.DEMO_QUESTION_BUDGET, records=analysis.records,
        alpha=analysis.alpha, match_tolerance=analysis.match_tolerance,
    )  # fmt: skip
    files = write_report(analysis, Path(html), recommendation=answer)
    render_answer.render_analysis(analysis)
    render_answer.render_recommendation(answer)
    render_answer.render_report_files(files)
    render.console.print(f"[dim]demo took {time.perf_counter() - started:.0f} s[/]")
