"""`paramsplit measure`: a trained study's inference, measured side by side, into the database."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from paramsplit.cli import render
from paramsplit.cli.options import DEFAULT_DB, JsonFlag, check_processes, open_store
from paramsplit.cli.study_commands import DbOption
from paramsplit.errors import UsageError

if TYPE_CHECKING:  # type names only: importing the CLI must not import torch
    from paramsplit.measure.side_by_side import Measurement
    from paramsplit.study.measuring import MeasureProgress, MeasureSession


def parse_batch_sizes(text: str) -> list[int]:
    """'1,8,64' -> [1, 8, 64]."""
    try:
        sizes = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--batch must be batch sizes >= 1 such as 1,8,64, got '{text}'")
    return sizes


def measure(
    study: Annotated[
        str | None, typer.Option("--study", help="Study name (default: the latest).")
    ] = None,
    db: DbOption = DEFAULT_DB,
    batch: Annotated[
        str, typer.Option("--batch", help="Batch sizes to measure at, e.g. 1,8,64.")
    ] = "1,64",
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (default: torch's; recorded).")
    ] = None,
    budget_s: Annotated[
        float,
        typer.Option(
            "--budget-s",
            help="Seconds of timing per design, executor and batch size (10 rounds at least).",
        ),
    ] = 0.5,
    as_json: JsonFlag = False,
) -> None:
    """Inference latency and throughput of a trained study's designs, side by side.

    Budget by budget, the single network and its ensembles (each through the loop, fused
    and vmap executors) are timed in alternating rounds in this one process, so every
    ratio to the single network is taken under the same conditions. Run it after training,
    with no worker running.
    """
    from paramsplit.measure.side_by_side import RoundSettings
    from paramsplit.study import checkpoint_dir_for
    from paramsplit.study.measuring import measure_study
    from paramsplit.train import resolve_device

    sizes = parse_batch_sizes(batch)
    check_processes("--threads", threads)
    settings = RoundSettings(budget_s=budget_s)
    with open_store(db, create=False) as store, _progress() as on_progress:
        session = measure_study(
            store,
            study,
            device=resolve_device(),
            batch_sizes=sizes,
            num_threads=threads,
            settings=settings,
            checkpoint_dir=checkpoint_dir_for(db),
            on_progress=on_progress,
        )
    if as_json:
        render.print_json(session.to_dict())
    else:
        render_session(session)


@contextmanager
def _progress() -> Iterator[MeasureProgress]:
    with Progress(
        TextColumn("measuring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[label]}"),
        console=render.error_console,
        transient=True,
    ) as progress:
        task = progress.add_task("measure", total=None, label="")

        def on_progress(done: int, total: int, label: str) -> None:
            progress.update(task, completed=done, total=total, label=render.escape(label))

        yield on_progress


def _format_ms(value: float) -> str:
    return f"{value:.3g}"


def _format_ratio(row: Measurement) -> str:
    if row.ratio_to_single is None or row.ratio_q1 is None or row.ratio_q3 is None:
        return "— (no single network)"
    if row.num_members == 1:
        return "1"
    return f"{row.ratio_to_single:.2f}× [{row.ratio_q1:.2f}–{row.ratio_q3:.2f}]"


def render_session(session: MeasureSession) -> None:
    """One table per budget: each design with its fastest executor at each batch size."""
    console = render.console
    designs = {(m.dataset, m.budget_params, m.design_class, m.design) for m in session.measurements}
    console.print(
        f"[bold]{len(designs)} designs of study {render.escape(session.study)}[/] measured side "
        f"by side on {session.device}, {session.num_threads} thread(s), torch "
        f"{session.torch_version} (session {session.session_id[:8]})"
    )
    if session.not_finished:
        console.print(f"[yellow]{session.not_finished} run(s) not finished are left out[/]")
    by_budget: dict[tuple[str, str, int], list[Measurement]] = defaultdict(list)
    for row in session.measurements:
        by_budget[(row.family, row.dataset, row.budget_params)].append(row)
    for (family, dataset, budget), rows in by_budget.items():
        table = Table(
            title=f"{family} on {dataset}, budget {budget:,} parameters",
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        for column in ("design", "batch", "executor", "latency ms [IQR]", "images/s"):
            table.add_column(
                column, justify="left" if column in ("design", "executor") else "right"
            )
        table.add_column("× single [IQR]", justify="right")
        table.add_column("other executors, ms")
        others: dict[tuple[str, int], list[Measurement]] = defaultdict(list)
        for row in rows:
            if not row.chosen:
                others[(row.run_id, row.batch_size)].append(row)
        for row in rows:
            if not row.chosen:
                continue
            label = row.design if row.num_members == 1 else f"{row.design} ({row.design_class})"
            table.add_row(
                render.escape(label),
                str(row.batch_size),
                row.executor,
                f"{_format_ms(row.latency_ms)} [{_format_ms(row.latency_q1_ms)}–"
                f"{_format_ms(row.latency_q3_ms)}]",
                f"{row.throughput_images_per_s:,.0f}",
                _format_ratio(row),
                ", ".join(
                    f"{other.executor} {_format_ms(other.latency_ms)}"
                    for other in others[(row.run_id, row.batch_size)]
                ),
            )
        console.print(table)
    rounds = sorted({row.rounds for row in session.measurements})
    if rounds:
        console.print(
            "[dim]× single: this design's time over the single network's in the same round; "
            f"median and quartiles over {rounds[0]}–{rounds[-1]} rounds. Each ensemble runs "
            "with its fastest executor at each batch size. Weights: "
            + ", ".join(sorted({row.weights for row in session.measurements}))
            + " (latency does not depend on their values).[/]"
        )
