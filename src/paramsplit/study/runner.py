"""The local runner: claim a study's runs from the store one at a time and train each here.

`run_study` registers the study (`paramsplit.study.definition`), then trains, measures and
commits each run as it finishes (`paramsplit.study.training`). A failing run is recorded
with its reason and the study goes on. Several worker processes on one machine share a
study through the store's claims (`paramsplit.study.workers`), as processes on several
machines do.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from paramsplit.data import DatasetTensors, load_dataset
from paramsplit.errors import UsageError
from paramsplit.records import RunSpec
from paramsplit.store import Store, default_worker
from paramsplit.store.database import folder_beside
from paramsplit.study import interrupts
from paramsplit.study import workers as study_workers
from paramsplit.study.checks import check_runnable
from paramsplit.study.definition import StudyDefinition, register_study
from paramsplit.study.training import (
    ProgressCallback,
    StopCheck,
    WorkerSettings,
    execute_run,
)

# ("start", run) and ("end", run); ("lost", run) when another worker took the run over
# (this one was paused past the stale-claim limit) and this one stopped it.
RunCallback = Callable[[str, dict[str, Any]], None]


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
    Workers end with this process, however it ends (see `paramsplit.study.workers`). Workers import
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
        from paramsplit.study.adaptive import AdaptiveScheduler

        scheduler = AdaptiveScheduler(store, study.name, worker)
        claim, should_stop = scheduler.claim, scheduler.should_stop
    while True:
        # Ctrl-C and SIGTERM wait from the claim until execute_run's `try`, which gives the
        # run back: one landing between the two would leave the run claimed by no one.
        with interrupts.held_off():
            if (run := claim()) is None:
                return
            if on_run is not None:
                on_run("start", run)
            folder = settings.checkpoint_dir
            checkpoint = folder / f"{run['run_id']}.pt" if folder else None
            measure = study.measurement_for(RunSpec.from_dict(run["spec"]).seed)
            held = execute_run(
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


def checkpoint_dir_for(db: str) -> Path:
    """Checkpoints live beside a SQLite file (`study.db` -> `study.checkpoints/`), or in
    `paramsplit-checkpoints/` for a database server."""
    return folder_beside(db, "checkpoints")
