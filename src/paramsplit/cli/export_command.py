"""`paramsplit export`: a run's ensemble (or the recommended design's) as one model file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from paramsplit.cli import render
from paramsplit.cli.answer_commands import constraints_from_flags
from paramsplit.cli.options import DEFAULT_DB, JsonFlag, open_store
from paramsplit.cli.study_commands import DbOption
from paramsplit.errors import UsageError

if TYPE_CHECKING:
    from paramsplit.export import ExportReport


def export(
    run_id: Annotated[
        str | None, typer.Argument(help="The run to export (its id, as in report --json).")
    ] = None,
    out: Annotated[str, typer.Option(help="The file to write, e.g. best.onnx.")] = "",
    format_name: Annotated[
        str, typer.Option("--format", help="onnx (needs the export extra), torchscript or pt.")
    ] = "onnx",
    recommended: Annotated[
        bool,
        typer.Option("--recommended", help="Export the design paramsplit recommend chooses."),
    ] = False,
    member_logits: Annotated[
        bool, typer.Option("--member-logits", help="Also output each member's logits.")
    ] = False,
    form: Annotated[
        str,
        typer.Option(help="auto (the faster in the target runtime), fused or separate."),
    ] = "auto",
    budget: Annotated[
        str | None,
        typer.Option(help="--recommended: budget, e.g. 40k (default: the study's largest)."),
    ] = None,
    max_latency_ms: Annotated[
        float | None, typer.Option(help="--recommended: largest latency per batch, in ms.")
    ] = None,
    batch: Annotated[
        int, typer.Option(help="Batch size the latency limit and the form choice are for.")
    ] = 1,
    max_train_time: Annotated[
        str | None, typer.Option(help="--recommended: longest training time: 1h, 30m.")
    ] = None,
    max_memory: Annotated[
        str | None, typer.Option(help="--recommended: most training memory: 4GB.")
    ] = None,
    min_accuracy: Annotated[
        float | None, typer.Option(help="--recommended: lowest test accuracy, in percent.")
    ] = None,
    objective: Annotated[
        str, typer.Option(help="--recommended: accuracy, train-time or latency.")
    ] = "accuracy",
    family: Annotated[str | None, typer.Option(help="Family, if the study has several.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset, if the study has several.")] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Study name (default: the latest).")
    ] = None,
    db: DbOption = DEFAULT_DB,
    threads: Annotated[int | None, typer.Option(help="CPU threads for every runtime.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write a run's whole ensemble as one model (images in, averaged probabilities out),
    checked on the run's test set in its runtime and timed at batch 1 and 64."""
    if (run_id is None) == (not recommended):
        raise UsageError("give a RUN_ID or --recommended, not both")
    if not out:
        raise UsageError("--out is required: the file to write, e.g. --out best.onnx")
    import torch

    from paramsplit.export import check_format, export_run, recommended_run
    from paramsplit.quantities import format_budget, parse_budget

    check_format(format_name)  # a missing extra says so before any work
    if threads is not None:
        torch.set_num_threads(threads)
    with open_store(db, create=False) as store:
        if run_id is not None:
            run = store.run(run_id)
        else:
            constraints = constraints_from_flags(
                max_latency_ms, batch, max_train_time, max_memory, min_accuracy
            )
            answer, run = recommended_run(
                store, parse_budget(budget) if budget else None, constraints, objective,
                family=family, dataset=dataset, study=study,
            )  # fmt: skip
            if budget is None:
                render.error_console.print(
                    f"budget: {format_budget(answer.requested_budget)}, the largest the study "
                    "measured (--budget picks another)",
                    style="dim",
                )
    exported = export_run(
        run, format_name, Path(out), member_logits=member_logits, form=form, batch_size=batch
    )
    if as_json:
        render.print_json(exported.to_dict())
    else:
        render_export(exported)


def _accuracy(correct: int | None, total: int) -> str:
    return "—" if correct is None else f"{correct / total:.2%}  ({correct}/{total})"


def render_export(report: ExportReport) -> None:
    seed = f", seed {report.seed}" if report.seed is not None else ""
    render.console.print(
        f"[bold]{render.escape(report.design)}[/] (run {report.run_id}{seed}) -> "
        f"{render.escape(report.path)}: {report.format}, {report.form} form, "
        f"{render.format_bytes(report.file_bytes)}; outputs {', '.join(report.outputs)}"
    )
    table = Table(box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("check")
    table.add_column("value")
    table.add_row("test accuracy recorded", _accuracy(report.stored_correct, report.num_test))
    table.add_row("  in PyTorch", _accuracy(report.pytorch_correct, report.num_test))
    table.add_row(f"  in {report.runtime}", _accuracy(report.exported_correct, report.num_test))
    differences = f"probability {report.max_probability_difference:.2g} (tolerance "
    differences += f"{report.probability_tolerance:g})"
    if report.max_logit_difference is not None:
        differences += f", member logit {report.max_logit_difference:.2g} (tolerance "
        differences += f"{report.logit_tolerance:g})"
    table.add_row("largest difference", differences)
    latency = ", ".join(f"batch {size}: {ms:.3g} ms" for size, ms in report.latency_ms.items())
    table.add_row("latency (median)", f"{latency}; {report.threads} thread(s)")
    if report.form_latency_ms:
        forms = ", ".join(f"{name} {ms:.3g} ms" for name, ms in report.form_latency_ms.items())
        table.add_row("form", f"{forms} at batch {report.form_batch_size}")
    render.console.print(table)
    for note in report.notes:
        render.console.print(f"  note: {note}", style="dim")
