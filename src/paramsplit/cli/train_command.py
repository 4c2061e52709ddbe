"""`paramsplit train`: one design, trained and measured, with progress on stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from paramsplit.cli import render
from paramsplit.cli.options import JsonFlag, takes_option_groups
from paramsplit.cli.train_options import DataFlags, DesignFlags, ResultFlags, TrainingFlags

if TYPE_CHECKING:  # type names only: importing the CLI must not import torch
    import torch

    from paramsplit.data import DatasetTensors
    from paramsplit.specs import TrainConfig
    from paramsplit.train import TrainResult
    from paramsplit.train.loop import ProgressCallback


@takes_option_groups
def train(
    *,
    design: DesignFlags,
    data_flags: DataFlags,
    training: TrainingFlags,
    after: ResultFlags,
    as_json: JsonFlag = False,
) -> None:
    """Train one design fairly and fast, then measure it."""
    from paramsplit.train import train_design

    design.check()
    training.check()
    config = training.config()
    device = training.prepared_device()
    data = data_flags.load(device)
    row = design.planned_row(data)
    title = f"{row.design.name} on {data.name}"
    with _epoch_progress(title, config.epochs, transient=as_json) as report:
        result = train_design(
            row.design, data, config, training.seed, executor=training.member_executor,
            device=device, progress=report,
        )  # fmt: skip
    summary, notes = _summary(result, row, data, config, training.seed, after, device)
    if as_json:
        render.print_json(summary)
    else:
        render.render_train(summary, notes)


@contextmanager
def _epoch_progress(title: str, epochs: int, *, transient: bool) -> Iterator[ProgressCallback]:
    """A progress bar on stderr, epoch by epoch, and the callback that moves it."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=render.error_console,
        transient=transient,
    ) as progress:
        task = progress.add_task(title, total=epochs, status="choosing executor")

        def report(kind: str, done: int, total: int, values: dict[str, float]) -> None:
            if kind == "epoch":
                status = (
                    f"loss {values['loss']:.3f}  val acc {values['val_accuracy']:.2%}  "
                    f"{values['images_per_s']:,.0f} img/s"
                )
                progress.update(task, completed=done, status=status)
            else:
                progress.update(task, status=f"epoch {values['epoch']:.0f}: step {done}/{total}")

        yield report


def _summary(
    result: TrainResult,
    row: Any,
    data: DatasetTensors,
    config: TrainConfig,
    seed: int,
    after: ResultFlags,
    device: torch.device,
) -> tuple[dict[str, Any], list[str]]:
    """What `train` prints: the result, the kept weights' file, the measurements; and notes."""
    summary = result.to_dict(after.target_accuracy)
    notes = list(data.notes)
    if result.status != "done":
        return summary, notes
    if after.weights_out is not None:
        summary |= _write_weights(Path(after.weights_out), row, data, config, seed, result)
    if after.measure:
        from paramsplit.measure import measure_run

        progress_note = "measuring latency, throughput and peak memory"
        render.error_console.print(progress_note, style="dim")
        measured = measure_run(result, data, device, memory=True)
        summary.update({k: v for k, v in measured.to_dict().items() if k not in summary})
        if measured.measure_error is not None:
            notes.append(f"measurement failed: {measured.measure_error}")
    return summary, notes


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
