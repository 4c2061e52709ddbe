"""Progress of a study on stderr: one bar for the study, one for the run this process trains."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from paramsplit.cli import render

if TYPE_CHECKING:  # type names only: this module must not import torch
    from paramsplit.store import Store
    from paramsplit.study import Infeasible, ProgressCallback, RunCallback, StudyDefinition


def render_infeasible(infeasible: Sequence[Infeasible]) -> None:
    for skipped in infeasible:
        render.console.print(
            f"[yellow]infeasible[/] {skipped.family} {skipped.design_class} "
            f"k={skipped.num_members} at {skipped.budget_params:,} on {skipped.dataset}: "
            f"{render.escape(skipped.reason)}"
        )


@contextlib.contextmanager
def study_progress(
    store: Store, study: StudyDefinition
) -> Iterator[tuple[RunCallback, ProgressCallback]]:
    """Callbacks for `run_study` that draw the study's progress, counted in the store (so
    runs finished earlier, or by other workers, count too)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=render.error_console,
    ) as progress:
        counts = store.status_counts(study.name)
        overall = progress.add_task(
            f"study {render.escape(study.name)}",
            total=counts["total"],
            completed=counts["done"],
            status="",
        )
        epochs = study.config.epochs
        current = progress.add_task("run", total=epochs, status="")

        def count_done() -> None:
            progress.update(overall, completed=store.status_counts(study.name)["done"])

        def on_run(event: str, run_row: dict[str, Any]) -> None:
            if event == "start":
                label = f"{run_row['design']} seed {run_row['seed']}"
                progress.reset(current, description=label, total=epochs, status="")
            elif event == "lost":
                progress.console.print(
                    f"[yellow]stopped[/] {render.escape(run_row['design'])} seed "
                    f"{run_row['seed']}: another worker took the run over while this one was "
                    "paused; it finishes it"
                )
            else:
                count_done()

        def on_progress(kind: str, done: int, total: int, values: dict[str, float]) -> None:
            if kind == "epoch":
                status = f"val acc {values['val_accuracy']:.2%}"
                progress.update(current, completed=done, status=status)
                count_done()  # other workers' runs finish meanwhile
            elif kind == "measure":
                progress.update(current, status="measuring")
            elif kind == "study":
                progress.update(overall, completed=done)

        yield on_run, on_progress


@contextlib.contextmanager
def stops_cleanly() -> Iterator[None]:
    """Ctrl-C and SIGTERM (a job scheduler, `timeout`) stop a study the same way: its runs in
    progress are given back, one line says so, and the exit code is 128 + the signal."""
    from paramsplit.study.interrupts import Terminated, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            yield
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        by, signum = ("SIGTERM", signal.SIGTERM) if terminated else ("Ctrl-C", signal.SIGINT)
        render.error_console.print(
            f"stopped by {by}: the runs in progress were given back; run the same command "
            "again to resume",
            style="yellow",
            markup=False,
        )
        raise typer.Exit(128 + signum) from None
