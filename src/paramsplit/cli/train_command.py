"""`paramsplit train`: one design, trained and measured, with progress on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from paramsplit.cli import render
from paramsplit.cli.options import JsonFlag, check_processes
from paramsplit.errors import UsageError
from paramsplit.specs import DESIGN_CLASSES


def _pick_design(rows: list[Any], design_class: str, num_members: int) -> Any:
    for row in rows:
        if row.design_class.value == design_class and (
            design_class == "single" or row.num_members == num_members
        ):
            if row.design is None:
                raise UsageError(f"{design_class} k={num_members} is infeasible: {row.reason}")
            return row
    raise UsageError(f"no {design_class} design with {num_members} members in the plan")


def _write_weights(
    path: Path, row: Any, data: Any, config: Any, seed: int, result: Any
) -> dict[str, Any]:
    """The selected epoch's weights into `path`, under the id the run would have in a study."""
    from paramsplit.errors import ArtifactError
    from paramsplit.store import run_id_for
    from paramsplit.study import run_spec
    from paramsplit.study.artifacts import write_run_weights

    run_id = run_id_for(run_spec(row, data.name, config, seed))
    try:
        return {"run_id": run_id, **write_run_weights(path, run_id, result, data).to_dict()}
    except OSError as error:
        raise ArtifactError(f"cannot write --weights-out {path}: {error.strerror}") from None


def train(
    family: Annotated[str, typer.Option(help="Family: resnet, wrn, densenet-bc, vgg.")],
    budget: Annotated[str, typer.Option(help="Parameter budget: 100k, 1M, ...")],
    design: Annotated[str, typer.Option(help="Design class: single, deq or weq.")] = "single",
    members: Annotated[int, typer.Option(help="Ensemble size k (deq, weq).")] = 4,
    depth: Annotated[int | None, typer.Option(help="Depth (default: the family's).")] = None,
    match: Annotated[str, typer.Option(help="Matching rule: le, nearest, tol:X.")] = "le",
    dataset: Annotated[str, typer.Option(help="digits, fashion-mnist, cifar10, ...")] = "digits",
    data_root: Annotated[str | None, typer.Option(help="Dataset cache directory.")] = None,
    download: Annotated[bool, typer.Option(help="Download missing datasets.")] = False,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 30,
    batch_size: Annotated[int, typer.Option(help="Batch size per member.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (SGD, Nesterov).")] = 0.1,
    weight_decay: Annotated[
        float | None, typer.Option(help="Weight decay (default: the family's).")
    ] = None,
    schedule: Annotated[str, typer.Option(help="cosine or multistep.")] = "cosine",
    warmup_epochs: Annotated[int, typer.Option(help="Linear warm-up epochs.")] = 0,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Run seed; members derive their own.")] = 0,
    executor: Annotated[str, typer.Option(help="auto, loop, fused or vmap.")] = "auto",
    precision: Annotated[str, typer.Option(help="fp32, bf16 or fp16 (GPU).")] = "fp32",
    channels_last: Annotated[bool, typer.Option(help="channels_last memory format.")] = False,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")] = "auto",
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
    test_every_epoch: Annotated[
        bool, typer.Option(help="Also evaluate the test set every epoch (curves only).")
    ] = False,
    target_accuracy: Annotated[
        float | None, typer.Option(help="Report the time to this validation accuracy.")
    ] = None,
    measure: Annotated[bool, typer.Option(help="Measure latency and memory after.")] = True,
    weights_out: Annotated[
        str | None,
        typer.Option(help="Keep the weights of the selected epoch in this safetensors file."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Train one design fairly and fast, then measure it."""
    import torch

    from paramsplit.data import load_dataset
    from paramsplit.planner import plan_budget
    from paramsplit.quantities import parse_budget
    from paramsplit.specs import TrainConfig, check_depth
    from paramsplit.study.checks import MAX_SEED, check_precision
    from paramsplit.train import check_executor_name, resolve_device, train_design

    if design not in DESIGN_CLASSES:
        raise UsageError(f"--design must be one of {', '.join(DESIGN_CLASSES)}, got '{design}'")
    check_executor_name(executor, allow_auto=True)
    check_processes("--threads", threads)
    if depth is not None:
        check_depth(depth)
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be in [0, {MAX_SEED}], got {seed}")
    if threads is not None:
        torch.set_num_threads(threads)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        schedule=schedule,
        warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing,
        precision=precision,
        channels_last=channels_last,
        compile=compile_model,
        test_every_epoch=test_every_epoch,
    )
    target = resolve_device(device)
    check_precision(precision, target)  # before the progress bar: an error is one line
    data = load_dataset(dataset, root=data_root, device=target, download=download)
    rows = plan_budget(
        family,
        parse_budget(budget),
        [members],
        depth=depth,
        match=match,
        input_spec=data.input_spec(),
    )
    row = _pick_design(rows, design, members)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=render.error_console,
        transient=as_json,
    ) as progress:
        task = progress.add_task(
            f"{row.design.name} on {data.name}", total=epochs, status="choosing executor"
        )

        def report(kind: str, done: int, total: int, values: dict[str, float]) -> None:
            if kind == "epoch":
                status = (
                    f"loss {values['loss']:.3f}  val acc {values['val_accuracy']:.2%}  "
                    f"{values['images_per_s']:,.0f} img/s"
                )
                progress.update(task, completed=done, status=status)
            else:
                progress.update(task, status=f"epoch {values['epoch']:.0f}: step {done}/{total}")

        result = train_design(
            row.design, data, config, seed, executor=executor, device=target, progress=report
        )
    summary = result.to_dict(target_accuracy)
    notes = list(data.notes)
    if weights_out is not None and result.status == "done":
        summary |= _write_weights(Path(weights_out), row, data, config, seed, result)
    if measure and result.status == "done":
        from paramsplit.measure import measure_run

        progress_note = "measuring latency, throughput and peak memory"
        render.error_console.print(progress_note, style="dim")
        measured = measure_run(result, data, target, memory=True)
        summary.update({k: v for k, v in measured.to_dict().items() if k not in summary})
        if measured.measure_error is not None:
            notes.append(f"measurement failed: {measured.measure_error}")
    if as_json:
        render.print_json(summary)
    else:
        render.render_train(summary, notes)
