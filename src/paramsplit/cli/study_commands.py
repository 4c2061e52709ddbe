"""`paramsplit run` and `paramsplit status`: a study into the results database, and its state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from paramsplit.cli import render
from paramsplit.cli.options import DEFAULT_DB, JsonFlag, open_store, takes_option_groups
from paramsplit.cli.study_options import RunnerOptions, StudyChoices, StudyFlags, located
from paramsplit.cli.study_progress import render_infeasible, stops_cleanly, study_progress
from paramsplit.errors import ParamSplitError

if TYPE_CHECKING:  # type names only: `status` must not import torch
    from paramsplit.data import DatasetTensors
    from paramsplit.store import Store
    from paramsplit.study import ProgressCallback, RunCallback, StudyDefinition
    from paramsplit.study.definition import Expansion

DbOption = Annotated[str, typer.Option("--db", help="SQLite path or SQLAlchemy URL.")]
StudyFileArgument = Annotated[
    str | None, typer.Argument(help="A TOML study file (replaces the design flags).")
]


@takes_option_groups
def run(
    study_file: StudyFileArgument = None,
    *,
    flags: StudyFlags,
    db: DbOption = DEFAULT_DB,
    runner: RunnerOptions,
    choices: StudyChoices,
) -> None:
    """Run a study: every design × budget × dataset × seed, resumable, into the database."""
    runner.check()
    choices.check()
    study, datasets, expanded = _prepared_study(study_file, flags, runner, choices)
    if runner.threads is not None:
        import torch

        torch.set_num_threads(runner.threads)
    render_infeasible(expanded[1])
    with open_store(db) as store, stops_cleanly():
        from paramsplit.study import register_study

        register_study(store, study, datasets, expanded)
        with study_progress(store, study) as (on_run, on_progress):
            counts = _train_runs(store, study, datasets, runner, db, on_run, on_progress)
        if study.adaptive:
            _render_adaptive(store, study.name, counts)
            return
    render.render_status(study.name, counts, None)


def _prepared_study(
    study_file: str | None, flags: StudyFlags, runner: RunnerOptions, choices: StudyChoices
) -> tuple[StudyDefinition, dict[str, DatasetTensors], Expansion]:
    """The study, checked whole, planned and its data loaded before the database is opened:
    a mistake leaves nothing behind, not even an empty file. Errors name the flag or the
    study file's line."""
    from paramsplit.data import load_dataset
    from paramsplit.study import expand_study
    from paramsplit.study.checks import check_runnable, in_field
    from paramsplit.study.file import load_study_file
    from paramsplit.train import resolve_device

    try:
        if study_file is None:
            study = flags.definition(adaptive=choices.adaptive)
        else:
            study = load_study_file(study_file)
        study = choices.applied_to(study)
        device = resolve_device()
        check_runnable(runner.member_executor, runner.runs_on(device), study.config)
        datasets = {d: in_field("datasets", load_dataset, d, device=device) for d in study.datasets}
        return study, datasets, expand_study(study, datasets)
    except ParamSplitError as error:
        raise located(error, study_file) from None


def _train_runs(
    store: Store,
    study: StudyDefinition,
    datasets: dict[str, DatasetTensors],
    runner: RunnerOptions,
    db: str,
    on_run: RunCallback,
    on_progress: ProgressCallback,
) -> dict[str, int]:
    """The study's unfinished runs, trained here or on Ray; the final counts."""
    from paramsplit.study import checkpoint_dir_for, run_study
    from paramsplit.study.on_ray import run_study_on_ray
    from paramsplit.train import resolve_device

    checkpoint_dir, artifacts_dir = checkpoint_dir_for(db), runner.artifacts_for(db)
    if runner.on_ray:
        return run_study_on_ray(
            store, study, datasets, address=runner.address, cpus_per_run=runner.cpus_per_run,
            gpus_per_run=runner.gpus_per_run, executor=runner.member_executor,
            retry_failed=runner.retry_failed, checkpoint_dir=checkpoint_dir, on_run=on_run,
            register=False, artifacts_dir=artifacts_dir,
        )  # fmt: skip
    return run_study(
        store, study, executor=runner.member_executor, device=resolve_device(), on_run=on_run,
        on_progress=on_progress, datasets=datasets, retry_failed=runner.retry_failed,
        checkpoint_dir=checkpoint_dir, register=False, workers=runner.workers,
        threads=runner.threads, artifacts_dir=artifacts_dir,
    )  # fmt: skip


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


def status(
    study: Annotated[str | None, typer.Option(help="Study name (default: all runs).")] = None,
    db: DbOption = DEFAULT_DB,
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
