"""A study: a design space swept over datasets and seeds, run into the results database.

`expand_study` turns a definition into run specs through the planner (infeasible designs are
returned with their reasons, never dropped silently); `run_study` claims runs from the store
one at a time, trains and measures them, committing each result as it finishes. A failing
run is recorded with its reason and the study goes on. Several worker processes on one
machine share a study through the store's claims, as processes on several machines do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from paramsplit import study_workers
from paramsplit.accounting import count_params
from paramsplit.artifacts import save_run_weights
from paramsplit.data import DatasetTensors, load_dataset
from paramsplit.errors import (
    CheckpointError,
    ClaimLostError,
    DiskFullError,
    ParamSplitError,
    StoreError,
    UsageError,
)
from paramsplit.measure import measure_design
from paramsplit.planner import PlannedDesign, plan_budget, plan_single
from paramsplit.specs import (
    DESIGN_CLASSES,
    DesignClass,
    DesignSpec,
    InputSpec,
    TrainConfig,
    parse_arch,
)
from paramsplit.store import Claim, Store, default_worker
from paramsplit.store.database import folder_beside
from paramsplit.study_checks import check_definition, check_runnable, no_runs
from paramsplit.train import TrainResult, restore_executor, train_design
from paramsplit.train.checkpoint import remove_checkpoint, set_aside


@dataclass(frozen=True)
class StudyDefinition:
    """What to sweep: every family × budget × design × k × dataset × seed.

    Designs come from budgets (each family's single network for a budget, and its deq/weq
    ensembles) and from `singles`, single networks given by name (the study's method: S(w, d)
    and its ensembles matched to |S|, e.g. a grid of widths × depths).

    `measure`, one of `MEASURE_CHOICES`: after each run, `all` measures inference latency,
    throughput and peak memory; `first-seed` memory only for the study's lowest seed;
    `latency` no memory; `none` nothing. It does not change the runs or their ids.

    `keep_weights`: each finished run keeps the weights of its selected epoch (in the
    folder `run_study` is given, see `paramsplit.artifacts`). Nor does it change the runs.

    `adaptive`: train only what `paramsplit.adaptive` decides the answer needs (budget
    bisection, sequential seeds, early verdicts); the full grid is still registered, so the
    policy and `status` can say what was skipped.
    """

    name: str
    families: tuple[str, ...] = ()
    budgets: tuple[int, ...] = ()
    singles: tuple[str, ...] = ()
    members: tuple[int, ...] = (4,)
    designs: tuple[str, ...] = DESIGN_CLASSES
    datasets: tuple[str, ...] = ("digits",)
    seeds: tuple[int, ...] = (0,)
    depth: int | None = None
    match: str = "le"
    config: TrainConfig = field(default_factory=TrainConfig)
    measure: str = "all"
    keep_weights: bool = True
    adaptive: bool = False

    def __post_init__(self) -> None:
        check_definition(self)  # every field, so that nothing of a bad study is registered

    def measurement_for(self, seed: int) -> str:
        """What to measure after a run with `seed`: 'all', 'latency' or 'none'."""
        if self.measure == "first-seed":
            return "all" if seed == min(self.seeds) else "latency"
        return self.measure

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        if not self.adaptive:  # so that studies from before the field keep names and digests
            del values["adaptive"]
        return values


@dataclass(frozen=True)
class Infeasible:
    family: str
    dataset: str
    budget_params: int
    design_class: str
    num_members: int
    reason: str


def run_spec(row: PlannedDesign, dataset: str, config: TrainConfig, seed: int) -> dict[str, Any]:
    """What the store needs of one run; the config carries its resolved weight decay, so one
    protocol always hashes to one run id."""
    assert row.member is not None
    resolved = dataclasses.replace(config, weight_decay=config.weight_decay_for(row.family))
    return {
        "family": row.family,
        "design_class": row.design_class.value,
        "num_members": row.num_members,
        "member": row.member.name,
        "member_depth": row.member.depth,
        "member_width": row.member.width,
        "member_params": row.member_params,
        "total_params": row.total_params,
        "budget_params": row.budget_params,
        "ratio": row.ratio,
        "dataset": dataset,
        "config": dataclasses.asdict(resolved),
        "seed": seed,
    }


def _plans(
    study: StudyDefinition, input_spec: InputSpec
) -> Iterator[tuple[str, int, Callable[[], list[PlannedDesign]]]]:
    """(family, budget, how to plan it) for every budget and every named single network."""
    for family in study.families:
        for budget in study.budgets:
            yield family, budget, functools.partial(
                plan_budget, family, budget, study.members, depth=study.depth,
                match=study.match, input_spec=input_spec,
            )  # fmt: skip
    for name in study.singles:
        arch = parse_arch(name)
        yield (
            arch.family,
            count_params(arch, input_spec),
            functools.partial(
                plan_single, arch, study.members, match=study.match, input_spec=input_spec
            ),
        )


def expand_study(
    study: StudyDefinition, datasets: dict[str, DatasetTensors]
) -> tuple[list[dict[str, Any]], list[Infeasible]]:
    """Every run of the study, in a stable order, and the designs that cannot meet a budget.
    A study with no feasible run is an error (`StudyError`), with the first reason."""
    specs: list[dict[str, Any]] = []
    infeasible: list[Infeasible] = []
    for dataset_name in study.datasets:
        for family, budget, plan in _plans(study, datasets[dataset_name].input_spec()):
            try:
                rows = plan()
            except ParamSplitError as error:
                infeasible.append(Infeasible(family, dataset_name, budget, "single", 1, str(error)))
                continue
            for row in rows:
                if row.design_class.value not in study.designs:
                    continue
                if row.member is None:
                    infeasible.append(
                        Infeasible(
                            family,
                            dataset_name,
                            budget,
                            row.design_class.value,
                            row.num_members,
                            row.reason or "",
                        )
                    )
                    continue
                specs += [run_spec(row, dataset_name, study.config, s) for s in study.seeds]
    if not specs:
        raise no_runs(study, infeasible)
    return specs, infeasible


Expansion = tuple[list[dict[str, Any]], list[Infeasible]]


def register_study(
    store: Store,
    study: StudyDefinition,
    datasets: dict[str, DatasetTensors],
    expanded: Expansion | None = None,
) -> Expansion:
    """Add the study and its runs to the store (idempotent); returns what `expand_study` does
    (or `expanded`, its result for a caller that checked the study before opening the store)."""
    specs, infeasible = expanded or expand_study(study, datasets)
    store.add_study(study.name, study.to_dict())
    store.add_runs(study.name, specs)
    return specs, infeasible


# ("start", run) and ("end", run); ("lost", run) when another worker took the run over
# (this one was paused past the stale-claim limit) and this one stopped it.
RunCallback = Callable[[str, dict[str, Any]], None]
# ("step", step, steps, {"epoch"}), ("epoch", epoch, epochs, {...}), ("measure", 0, 1, {});
# and ("study", done, total, {}) while this process waits for other workers to finish.
ProgressCallback = Callable[[str, int, int, dict[str, float]], None]


@dataclass(frozen=True)
class WorkerSettings:
    """How every worker of a study trains the runs it claims; `retry_failed_before` is
    the same for all of them (see `retry_cutoff`). `workers`: how many train side by side
    on this machine, recorded with each run (see `with_load`)."""

    executor: str
    device: str
    retry_failed_before: datetime | None
    checkpoint_dir: Path | None
    workers: int = 1
    artifacts_dir: Path | None = None  # where finished runs keep their weights; None: nowhere


def retry_cutoff(retry_failed: bool) -> datetime | None:
    """With `retry_failed`, the time from which a failure is not retried: now, as a study
    starts. Each run that failed before is retried once; one that fails again is left failed
    rather than claimed again at once, forever."""
    return datetime.now(UTC) if retry_failed else None


def run_study(
    store: Store,
    study: StudyDefinition,
    *,
    executor: str = "auto",
    device: torch.device | str = "cpu",
    retry_failed: bool = False,
    on_run: RunCallback | None = None,
    on_progress: ProgressCallback | None = None,
    datasets: dict[str, DatasetTensors] | None = None,
    checkpoint_dir: Path | None = None,
    register: bool = True,
    workers: int = 1,
    threads: int | None = None,
    artifacts_dir: Path | None = None,
) -> dict[str, int]:
    """Register the study's runs and train every unfinished one; returns the final counts.

    `register=False` skips planning and registering, for a caller that has just done it.

    With `retry_failed`, each run that had failed before this call is tried once more.

    With `checkpoint_dir`, each run saves its state there after every epoch; a run taken
    over from a killed process carries on from its last epoch.

    With `artifacts_dir` (and the study's `keep_weights`), each finished run keeps the
    weights of its selected epoch there; its row records the file, its size and sha256.

    With `workers` > 1, this process and `workers` - 1 child processes claim runs side by
    side, each running torch on `threads` threads (default: the cores shared out). The
    callbacks follow this process's own runs. Ctrl-C stops them all; their runs go back.
    Workers end with this process, however it ends (see `study_workers`). Workers import
    the calling script, so a script calls this under `if __name__ == "__main__":`, as with
    any spawned process.

    A run's progress and result are written under its claim: a worker that lost the claim
    (paused past the stale-claim limit while another took the run over) stops that run and
    writes nothing more for it. A full disk, or a database that refuses writes, pauses the
    study: the run is given back where possible and `DiskFullError` or `StoreWriteError`
    says what to fix; the same call resumes it.
    """
    if workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    check_runnable(executor, device, study.config)
    retry_failed_before = retry_cutoff(retry_failed)  # before any run of this call can fail
    datasets = datasets or {name: load_dataset(name, device=device) for name in study.datasets}
    if register:
        register_study(store, study, datasets)
    settings = WorkerSettings(
        executor, str(device), retry_failed_before, checkpoint_dir, workers,
        artifacts_dir if study.keep_weights else None,
    )  # fmt: skip
    if workers > 1:
        threads = threads or max(1, (os.cpu_count() or 1) // workers)
        _work_beside(workers - 1, threads, store, study, datasets, settings, on_run, on_progress)
    # Alone, or after the others: a worker that died mid-run left its run to be taken over.
    _work(store, study, datasets, settings, on_run, on_progress)
    return store.status_counts(study.name)


def _work_beside(
    count: int,
    threads: int,
    store: Store,
    study: StudyDefinition,
    datasets: dict[str, DatasetTensors],
    settings: WorkerSettings,
    on_run: RunCallback | None,
    on_progress: ProgressCallback | None,
) -> None:
    """Work on the study here beside `count` worker processes, until all of them are done."""
    url = store.connect_url  # a secret (it carries the password): only for the workers
    on_cpu = {name: data.to("cpu") for name, data in datasets.items()}
    helpers = study_workers.start_workers(
        count, _work_in_worker, (url, study, on_cpu, settings), threads
    )

    def report() -> None:
        if on_progress is not None:
            counts = store.status_counts(study.name)
            on_progress("study", counts["done"], counts["total"], {})

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _work(store, study, datasets, settings, on_run, on_progress)
        study_workers.wait_for(helpers, report)
    finally:
        study_workers.stop(helpers)
        torch.set_num_threads(previous_threads)


def _work(
    store: Store,
    study: StudyDefinition,
    datasets: dict[str, DatasetTensors],
    settings: WorkerSettings,
    on_run: RunCallback | None,
    on_progress: ProgressCallback | None,
) -> None:
    """Claim the study's runs one at a time and train each here, until none is left."""
    worker = default_worker()
    claim: Callable[[], dict[str, Any] | None] = functools.partial(
        store.claim_next, study.name, worker, retry_failed_before=settings.retry_failed_before
    )
    should_stop: StopCheck | None = None
    if study.adaptive:  # the policy hands out the runs, and may stop them at a rung
        from paramsplit.study_adaptive import AdaptiveScheduler

        scheduler = AdaptiveScheduler(store, study.name, worker)
        claim, should_stop = scheduler.claim, scheduler.should_stop
    while (run := claim()) is not None:
        if on_run is not None:
            on_run("start", run)
        folder = settings.checkpoint_dir
        checkpoint = folder / f"{run['run_id']}.pt" if folder else None
        measure = study.measurement_for(run["spec"]["seed"])
        held = _execute(
            store, run, datasets, settings, measure, on_progress, checkpoint, should_stop
        )
        if on_run is None:
            continue
        if held:
            on_run("end", store.run(run["run_id"]))
        else:
            on_run("lost", run)


def _work_in_worker(
    url: str, study: StudyDefinition, datasets: dict[str, DatasetTensors], settings: WorkerSettings
) -> None:
    """What a worker process does: its own store connection, the same claim loop."""
    device = torch.device(settings.device)
    on_device = {name: data.to(device) for name, data in datasets.items()}
    with Store.open(url) as store:
        _work(store, study, on_device, settings, None, None)


# (the claimed run, the epoch it just finished) -> why to stop it there, or None.
StopCheck = Callable[[dict[str, Any], int], str | None]


class StopRun(Exception):
    """Raised from a run's progress callback to stop it after `epoch` (an adaptive study's
    early verdict): the run is stored as stopped, with its curve and `reason`."""

    def __init__(self, reason: str, epoch: int) -> None:
        super().__init__(reason)
        self.reason, self.epoch = reason, epoch


@dataclass(frozen=True)
class Outcome:
    """How a run ended, as data (also what a Ray task sends back): `done` with its `result`
    summary, or `failed` with a `reason`; `notes` say what else happened on the way (a
    checkpoint set aside)."""

    status: str
    result: dict[str, Any] | None = None
    reason: str | None = None
    notes: tuple[str, ...] = ()


def train_run(
    spec: dict[str, Any],
    dataset: DatasetTensors,
    executor: str,
    device: torch.device,
    checkpoint: Path | None,
    progress: ProgressCallback | None = None,
    measure: str = "none",
    artifacts_dir: Path | None = None,
) -> Outcome:
    """Train one run's spec, keep its weights in `artifacts_dir` (if given), then measure it
    (`measure`: 'all', 'latency' or 'none').

    A checkpoint that cannot be used (unreadable, corrupt, another run's) is set aside, with
    a note, and the run starts from epoch 1. What is not the run's fault is raised, not
    recorded: `DiskFullError`, and a `StoreError` from `progress` (the claim was lost, or
    the database refused a write).
    """
    # The member's name carries its depth and every stage's width (`resnet-56-8.16.31`).
    design = DesignSpec(
        DesignClass(spec["design_class"]), spec["num_members"], parse_arch(spec["member"])
    )
    config = TrainConfig(**{**spec["config"], "milestones": tuple(spec["config"]["milestones"])})
    train = functools.partial(
        train_design, design, dataset, config, spec["seed"], executor=executor, device=device,
        progress=progress, checkpoint=checkpoint,
    )  # fmt: skip
    notes: list[str] = []
    try:
        try:
            result = train()
        except CheckpointError as error:  # raised as it loads, before any training
            assert checkpoint is not None
            rejected = set_aside(checkpoint)
            notes.append(f"{error}; set aside as {rejected.name}, the run started from epoch 1")
            result = train()
    except (StoreError, DiskFullError, StopRun):
        raise
    except torch.cuda.OutOfMemoryError:
        return Outcome("failed", reason="oom", notes=tuple(notes))
    except Exception as error:  # one run's failure must not stop the study: record it
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise DiskFullError(
                f"disk full while training: {error}; free space and run the same command "
                "again: the run resumes from its last checkpoint"
            ) from None
        reason = f"error: {type(error).__name__}: {error}"
        return Outcome("failed", reason=reason, notes=tuple(notes))
    if result.status != "done":
        return Outcome("failed", reason=f"{result.status}: {result.reason}", notes=tuple(notes))
    summary = result.to_dict()
    if artifacts_dir is not None:
        summary |= save_run_weights(artifacts_dir, spec, result, dataset)
    if measure != "none":
        if progress is not None:
            progress("measure", 0, 1, {})
        measured = measure_run(result, dataset, device, memory=measure == "all")
        summary |= {key: value for key, value in measured.items() if key not in summary}
    return Outcome("done", result=summary, notes=tuple(notes))


def measure_run(
    result: TrainResult, dataset: DatasetTensors, device: torch.device, *, memory: bool
) -> dict[str, Any]:
    """Latency, throughput and (with `memory`) peak memory of a trained run, as result keys.

    A measurement that fails is noted under `measure_error`, not raised: the trained result
    must reach the database either way.
    """
    began = time.perf_counter()
    try:
        executor = restore_executor(result, device)
        measured = measure_design(executor, dataset.input_spec(), device, memory=memory)
    except Exception as error:
        return {"measure_error": f"{type(error).__name__}: {error}"}
    return {**measured.to_dict(), "measure_time_s": time.perf_counter() - began}


def with_load(outcome: Outcome, workers: int) -> Outcome:
    """A finished run's result with how many workers shared the machine while it trained
    (`concurrent_workers`), and whether its post-training latency was taken beside other
    workers' training (`latency_under_load`): such times compare fairly only with times
    taken under the same load; `paramsplit measure` takes latency side by side, alone."""
    if outcome.status != "done" or outcome.result is None:
        return outcome
    load: dict[str, Any] = {"concurrent_workers": workers}
    if outcome.result.get("latency_ms_batch1") is not None:
        load["latency_under_load"] = workers > 1
    return dataclasses.replace(outcome, result={**outcome.result, **load})


def record_outcome(store: Store, claim: Claim, outcome: Outcome, checkpoint: Path | None) -> None:
    """Store how a run ended, then delete its checkpoint (the result is in the database now).
    Raises `ClaimLostError`, and leaves the checkpoint to the new holder, if `claim` no
    longer holds the run."""
    if outcome.status == "done":
        assert outcome.result is not None
        notes = {"notes": list(outcome.notes)} if outcome.notes else {}
        store.finish(claim, {**outcome.result, **notes})
    else:
        assert outcome.reason is not None
        store.fail(claim, outcome.reason, notes=outcome.notes)
    if checkpoint is not None:
        remove_checkpoint(checkpoint)


def _execute(
    store: Store,
    run: dict[str, Any],
    datasets: dict[str, DatasetTensors],
    settings: WorkerSettings,
    measure: str,
    on_progress: ProgressCallback | None,
    checkpoint: Path | None,
    should_stop: StopCheck | None = None,
) -> bool:
    """Train one claimed run here and record how it ended. False if the claim was lost
    meanwhile: another worker has the run now, and this one left it (and its checkpoint)
    alone. Whatever else stops it (Ctrl-C, SIGTERM, a full disk) gives the run back.
    `should_stop`, asked after every epoch, stops the run there: it is stored as stopped,
    and its checkpoint stays, to resume from should the run be wanted after all."""
    spec, claim = run["spec"], Claim.of(run)

    def progress(kind: str, done: int, total: int, values: dict[str, float]) -> None:
        if kind == "epoch":  # the curve so far is durable, and the claim is checked and kept
            record = {"epoch": done, "train_loss": values["loss"]}
            store.record_epoch(claim, {**record, "val_accuracy": values["val_accuracy"]})
            if should_stop is not None and (reason := should_stop(run, done)) is not None:
                raise StopRun(reason, done)
        if on_progress is not None:
            on_progress(kind, done, total, values)

    dataset, device = datasets[spec["dataset"]], torch.device(settings.device)
    try:
        try:
            outcome = train_run(
                spec, dataset, settings.executor, device, checkpoint, progress, measure,
                settings.artifacts_dir,
            )  # fmt: skip
        except StopRun as stop:
            store.stop(claim, stop.reason, epochs_trained=stop.epoch)
        else:
            record_outcome(store, claim, with_load(outcome, settings.workers), checkpoint)
    except ClaimLostError:
        return False
    except BaseException:
        # Given back if the database takes the write; if not, the claim is taken over once
        # this process has ended (at once on this host).
        with contextlib.suppress(StoreError):
            store.release(claim)
        raise
    return True


def checkpoint_dir_for(db: str) -> Path:
    """Checkpoints live beside a SQLite file (`study.db` -> `study.checkpoints/`), or in
    `paramsplit-checkpoints/` for a database server."""
    return folder_beside(db, "checkpoints")
