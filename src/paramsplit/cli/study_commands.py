"""`paramsplit run` and `paramsplit status`: a study into the results database, and its state."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from paramsplit.cli import render
from paramsplit.cli.options import JsonFlag, check_processes, open_store
from paramsplit.cli.study_progress import render_infeasible, stops_cleanly, study_progress
from paramsplit.errors import ParamSplitError, StudyFileError, UsageError

if TYPE_CHECKING:  # type names only: `status` must not import torch
    from paramsplit.specs import TrainConfig
    from paramsplit.study import StudyDefinition

DbOption = Annotated[str, typer.Option("--db", help="SQLite path or SQLAlchemy URL.")]


def _study_name(study: StudyDefinition) -> str:
    source = "+".join(study.families) or "singles"
    return f"{source}-{'+'.join(study.datasets)}-{study.digest()}"


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
    keep_weights: Annotated[
        bool | None,
        typer.Option(
            "--keep-weights/--no-keep-weights",
            help="Keep each finished run's weights (its selected epoch) for paramsplit export. "
            "Default: the study file's, else keep.",
        ),
    ] = None,
    artifacts_dir: Annotated[
        str | None,
        typer.Option(
            help="Folder for kept weights (default: NAME.artifacts beside a SQLite file, "
            "paramsplit-artifacts for a database server)."
        ),
    ] = None,
    adaptive: Annotated[
        bool,
        typer.Option(
            "--adaptive",
            help="Train only what the answer needs: budget bisection, 2 seeds where they "
            "settle the verdict, early verdicts at ¼ and ½ of the epochs (paramsplit replay).",
        ),
    ] = False,
) -> None:
    """Run a study: every design × budget × dataset × seed, resumable, into the database."""
    from paramsplit.data import load_dataset
    from paramsplit.study import checkpoint_dir_for, expand_study, register_study, run_study
    from paramsplit.study.artifacts import artifacts_dir_for
    from paramsplit.study.checks import MEASURE_CHOICES, check_runnable, in_field
    from paramsplit.study.file import load_study_file
    from paramsplit.study.on_ray import run_study_on_ray
    from paramsplit.train import resolve_device

    if executor not in ("local", "ray"):
        raise UsageError(f"--executor must be local or ray, got '{executor}'")
    if workers > 1 and executor == "ray":
        raise UsageError("--workers is for the local executor; Ray sizes itself (--cpus-per-run)")
    check_processes("--workers", workers)
    check_processes("--threads", threads)
    if cpus_per_run <= 0 or gpus_per_run < 0:
        raise UsageError(
            f"--cpus-per-run must be > 0 and --gpus-per-run >= 0, got {cpus_per_run} and "
            f"{gpus_per_run}"
        )
    if measure is not None and measure not in MEASURE_CHOICES:
        raise UsageError(f"--measure must be one of {', '.join(MEASURE_CHOICES)}, got '{measure}'")
    # The whole study is checked, planned and its data loaded before the database is opened:
    # a mistake leaves nothing behind, not even an empty file.
    try:
        if study_file is None:
            study = _study_from_flags(
                family=family, budgets=budgets, singles=singles, members=members,
                designs=designs, dataset=dataset, seeds=seeds, depth=depth, match=match,
                name=name, config=_train_config(epochs, batch_size, lr, label_smoothing),
                adaptive=adaptive,
            )  # fmt: skip
        else:
            study = load_study_file(study_file)
        if measure is not None:
            study = dataclasses.replace(study, measure=measure)
        if keep_weights is not None:
            study = dataclasses.replace(study, keep_weights=keep_weights)
        if adaptive:
            study = dataclasses.replace(study, adaptive=True)
        device = resolve_device()
        # Ray's tasks train on a GPU of their own where they are given one.
        runs_on = ("cuda" if gpus_per_run > 0 else "cpu") if executor == "ray" else device
        check_runnable(member_executor, runs_on, study.config)
        datasets = {d: in_field("datasets", load_dataset, d, device=device) for d in study.datasets}
        expanded = expand_study(study, datasets)
    except ParamSplitError as error:
        raise _located(error, study_file) from None
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    kept_in = Path(artifacts_dir) if artifacts_dir else artifacts_dir_for(db)
    render_infeasible(expanded[1])
    with open_store(db) as store, stops_cleanly():
        register_study(store, study, datasets, expanded)
        with study_progress(store, study) as (on_run, on_progress):
            if executor == "ray":
                counts = run_study_on_ray(
                    store, study, datasets, address=address, cpus_per_run=cpus_per_run,
                    gpus_per_run=gpus_per_run, executor=member_executor,
                    retry_failed=retry_failed, checkpoint_dir=checkpoint_dir_for(db),
                    on_run=on_run, register=False, artifacts_dir=kept_in,
                )  # fmt: skip
            else:
                counts = run_study(
                    store, study, executor=member_executor, device=device, on_run=on_run,
                    on_progress=on_progress, datasets=datasets, retry_failed=retry_failed,
                    checkpoint_dir=checkpoint_dir_for(db), register=False, workers=workers,
                    threads=threads, artifacts_dir=kept_in,
                )  # fmt: skip
        if study.adaptive:
            _render_adaptive(store, study.name, counts)
            return
    render.render_status(study.name, counts, None)


def _render_adaptive(store: Any, study: str, counts: dict[str, int], as_json: bool = False) -> None:
    """What the policy of an adaptive study decided, what remains, what it spent."""
    from paramsplit.adaptive import decide
    from paramsplit.adaptive.answer import saving
    from paramsplit.adaptive.stored import load_records, load_settings
    from paramsplit.cli.render_adaptive import render_adaptive_status

    settings, records = load_settings(store, study), load_records(store, study)
    decision = decide(settings, records)
    spent = saving(settings, records, decision)
    if as_json:
        render.print_json(
            {**counts, "study": study, "adaptive": True, "finished": decision.finished,
             "wanted": list(decision.want), "comparisons": [p.to_dict() for p in decision.pairs],
             "saving": spent.to_dict()}
        )  # fmt: skip
    else:
        render_adaptive_status(study, decision, spent, counts)


# The flag that sets each study field, for errors about a study given by flags.
FLAG_OF_FIELD = {
    "name": "--name", "families": "--family", "budgets": "--budgets", "singles": "--singles",
    "members": "--members", "designs": "--designs", "datasets": "--dataset",
    "seeds": "--seeds", "depth": "--depth", "match": "--match", "measure": "--measure",
    "executor": "--member-executor", "train.epochs": "--epochs",
    "train.batch_size": "--batch-size", "train.lr": "--lr",
    "train.label_smoothing": "--label-smoothing",
}  # fmt: skip


def _train_config(epochs: int, batch_size: int, lr: float, label_smoothing: float) -> TrainConfig:
    from paramsplit.specs import TrainConfig

    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, label_smoothing=label_smoothing)


def _study_from_flags(
    *, family: str, budgets: str, singles: str | None, members: str, designs: str,
    dataset: str, seeds: int, depth: int | None, match: str, name: str | None,
    config: TrainConfig, adaptive: bool = False,
) -> StudyDefinition:  # fmt: skip
    """The study the design flags describe; named from a hash of itself unless `name`."""
    from paramsplit.quantities import parse_budget, parse_members, split_budgets
    from paramsplit.specs import parse_arch
    from paramsplit.study import StudyDefinition
    from paramsplit.study.checks import in_field, seed_range

    by_name = tuple(
        in_field("singles", parse_arch, n).name for n in (singles or "").split(",") if n
    )
    study = StudyDefinition(
        name=name or "unnamed",
        families=() if by_name else tuple(f for f in family.split(",") if f),
        budgets=tuple(
            in_field("budgets", parse_budget, b)
            for b in ([] if by_name else split_budgets(budgets))
        ),
        singles=by_name,
        members=tuple(in_field("members", parse_members, members)),
        designs=tuple(d for d in designs.split(",") if d),
        datasets=tuple(d for d in dataset.split(",") if d),
        seeds=seed_range(seeds),
        depth=depth,
        match=match,
        config=config,
        adaptive=adaptive,  # hashed into the name only when true: an adaptive study is another
    )
    if name:
        return study
    return dataclasses.replace(study, name=_study_name(study))


def _located(error: ParamSplitError, study_file: str | None) -> ParamSplitError:
    """The error pointing at what the user typed: the study file's line, or the flag."""
    if error.field is None:
        return error
    reason = str(error).removeprefix(f"field '{error.field}': ")
    if study_file is not None and error.field != "executor":
        from paramsplit.study.file import where_in_file

        return StudyFileError(f"{where_in_file(study_file, error.field)}: {error}")
    flag = FLAG_OF_FIELD.get(error.field)
    return type(error)(f"{flag}: {reason}") if flag else error


def status(
    study: Annotated[str | None, typer.Option(help="Study name (default: all runs).")] = None,
    db: DbOption = "paramsplit.db",
    as_json: JsonFlag = False,
) -> None:
    """What is done, running, failed and left in a study; an ETA from finished runs. For an
    adaptive study, what its policy decided at every budget and what remains."""
    from paramsplit.adaptive.stored import definition_of, is_adaptive

    with open_store(db, create=False) as store:
        counts = store.status_counts(study)
        eta_s = store.eta_s(study)
        studies = [row["name"] for row in store.studies()]
        name = study or (studies[0] if len(studies) == 1 else None)
        if name is not None and is_adaptive(definition_of(store, name)):
            _render_adaptive(store, name, store.status_counts(name), as_json=as_json)
            return
    if as_json:
        render.print_json({**counts, "study": study, "eta_s": eta_s})
    else:
        render.render_status(study or "all studies", counts, eta_s)
