"""`paramsplit run` and `paramsplit status`: a study into the results database, and its state."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import signal
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from paramsplit.cli import render
from paramsplit.cli.options import JsonFlag
from paramsplit.cli.study_progress import render_infeasible, study_progress
from paramsplit.errors import UsageError

DbOption = Annotated[str, typer.Option("--db", help="SQLite path or SQLAlchemy URL.")]


def split_budgets(text: str) -> list[str]:
    """'100k,300k,1M' -> three budgets; a 3-digit group continues a thousands-separated
    number, so '1,000,000,2M' is 1,000,000 and 2M."""
    parts: list[str] = []
    for token in text.replace(" ", "").split(","):
        if parts and len(token) == 3 and token.isdigit() and parts[-1][-1].isdigit():
            parts[-1] += "," + token
        elif token:
            parts.append(token)
    return parts


def _study_name(definition: dict[str, Any]) -> str:
    # What is measured is not what is studied: `--measure none` resumes the same study, and
    # names derived before the field existed still find their study.
    studied = {key: value for key, value in definition.items() if key != "measure"}
    digest = hashlib.sha256(json.dumps(studied, sort_keys=True).encode()).hexdigest()[:8]
    source = "+".join(definition["families"]) or "singles"
    return f"{source}-{'+'.join(definition['datasets'])}-{digest}"


@contextlib.contextmanager
def stops_cleanly() -> Iterator[None]:
    """Ctrl-C and SIGTERM (a job scheduler, `timeout`) stop a study the same way: its runs in
    progress are given back, one line says so, and the exit code is 128 + the signal."""
    from paramsplit.study_workers import Terminated, sigterm_as_interrupt

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


def run(
    study_file: Annotated[
        str | None, typer.Argument(help="A TOML study file (replaces the design flags).")
    ] = None,
    family: Annotated[str, typer.Option(help="Families, comma-separated.")] = "resnet",
    budgets: Annotated[str, typer.Option(help="Budgets: 25k,50k,100k.")] = "25k,50k,100k",
    singles: Annotated[
        str | None,
        typer.Option(
            help="Single networks instead of budgets (the study's method): resnet-20,wrn-16-4."
        ),
    ] = None,
    members: Annotated[str, typer.Option(help="Ensemble sizes: 2,4.")] = "2,4",
    designs: Annotated[str, typer.Option(help="Design classes.")] = "single,deq,weq",
    dataset: Annotated[str, typer.Option(help="Datasets, comma-separated.")] = "digits",
    seeds: Annotated[int, typer.Option(help="Seeds per design (0..N-1).")] = 1,
    epochs: Annotated[int, typer.Option(help="Epochs per run.")] = 30,
    batch_size: Annotated[int, typer.Option(help="Batch size per member.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 0.1,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing.")] = 0.0,
    depth: Annotated[int | None, typer.Option(help="Depth (default: the family's).")] = None,
    match: Annotated[str, typer.Option(help="Matching rule: le, nearest, tol:X.")] = "le",
    name: Annotated[str | None, typer.Option(help="Study name (default: derived).")] = None,
    db: DbOption = "paramsplit.db",
    member_executor: Annotated[
        str, typer.Option(help="How members train: auto, loop, fused or vmap.")
    ] = "auto",
    executor: Annotated[str, typer.Option(help="Where runs go: local or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start one here).")
    ] = None,
    cpus_per_run: Annotated[float, typer.Option(help="Ray: CPUs per run.")] = 1.0,
    gpus_per_run: Annotated[float, typer.Option(help="Ray: GPUs per run.")] = 0.0,
    retry_failed: Annotated[bool, typer.Option(help="Run failed runs again.")] = False,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (per worker with --workers).")
    ] = None,
    measure: Annotated[
        str | None,
        typer.Option(
            help="After each run, measure: all, first-seed (memory for the lowest seed only), "
            "latency or none. Default: the study file's, else all."
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Processes training side by side on this machine.")
    ] = 1,
) -> None:
    """Run a study: every design × budget × dataset × seed, resumable, into the database."""
    import torch

    from paramsplit.data import load_dataset
    from paramsplit.specs import TrainConfig, parse_arch, parse_budget, parse_members
    from paramsplit.store import Store
    from paramsplit.study import (
        StudyDefinition,
        checkpoint_dir_for,
        register_study,
        run_study,
    )
    from paramsplit.study_file import load_study_file
    from paramsplit.study_ray import run_study_on_ray
    from paramsplit.train import resolve_device

    if executor not in ("local", "ray"):
        raise UsageError(f"--executor must be local or ray, got '{executor}'")
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    if workers > 1 and executor == "ray":
        raise UsageError("--workers is for the local executor; Ray sizes itself (--cpus-per-run)")
    if threads is not None:
        torch.set_num_threads(threads)
    by_name = tuple(parse_arch(n).name for n in (singles or "").split(",") if n)
    fields = {
        "families": () if by_name else tuple(f for f in family.split(",") if f),
        "budgets": () if by_name else tuple(parse_budget(b) for b in split_budgets(budgets)),
        "singles": by_name,
        "members": tuple(parse_members(members)),
        "designs": tuple(d for d in designs.split(",") if d),
        "datasets": tuple(d for d in dataset.split(",") if d),
        "seeds": tuple(range(seeds)),
        "depth": depth,
        "match": match,
        "config": TrainConfig(
            epochs=epochs, batch_size=batch_size, lr=lr, label_smoothing=label_smoothing
        ),
    }
    if study_file is not None:
        study = load_study_file(study_file)
    else:
        study = StudyDefinition(name=name or "", **fields)  # type: ignore[arg-type]
        if not name:
            study = dataclasses.replace(study, name=_study_name(study.to_dict()))
    if measure is not None:
        study = dataclasses.replace(study, measure=measure)
    device = resolve_device()
    datasets = {d: load_dataset(d, device=device) for d in study.datasets}
    with Store.open(db) as store, stops_cleanly():
        _, infeasible = register_study(store, study, datasets)
        render_infeasible(infeasible)
        with study_progress(store, study) as (on_run, on_progress):
            if executor == "ray":
                counts = run_study_on_ray(
                    store, study, datasets, address=address, cpus_per_run=cpus_per_run,
                    gpus_per_run=gpus_per_run, executor=member_executor,
                    retry_failed=retry_failed, checkpoint_dir=checkpoint_dir_for(db),
                    on_run=on_run, register=False,
                )  # fmt: skip
            else:
                counts = run_study(
                    store, study, executor=member_executor, device=device, on_run=on_run,
                    on_progress=on_progress, datasets=datasets, retry_failed=retry_failed,
                    checkpoint_dir=checkpoint_dir_for(db), register=False, workers=workers,
                    threads=threads,
                )  # fmt: skip
    render.render_status(study.name, counts, None)


def status(
    study: Annotated[str | None, typer.Option(help="Study name (default: all runs).")] = None,
    db: DbOption = "paramsplit.db",
    as_json: JsonFlag = False,
) -> None:
    """What is done, running, failed and left in a study; an ETA from finished runs."""
    from paramsplit.store import Store

    with Store.open(db) as store:
        counts = store.status_counts(study)
        eta_s = store.eta_s(study)
    if as_json:
        render.print_json({**counts, "study": study, "eta_s": eta_s})
    else:
        render.render_status(study or "all studies", counts, eta_s)
