"""One claimed run of a study: train it, keep its weights, measure it, record how it ended.

A failing run is recorded with its reason and the study goes on; what is not the run's
fault (a full disk, a lost claim, a database that refuses writes) is raised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import torch

from paramsplit.data import DatasetTensors
from paramsplit.errors import CheckpointError, ClaimLostError, DiskFullError, StoreError
from paramsplit.measure import measure_run
from paramsplit.records import RunResult, RunSpec, TrainingLoad
from paramsplit.store import Claim, Store
from paramsplit.study import interrupts
from paramsplit.study.artifacts import save_run_weights
from paramsplit.train import train_design
from paramsplit.train.checkpoint import remove_checkpoint, set_aside

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
    """How a run ended, as data (also what a Ray task sends back): `done` with its `result`,
    or `failed` with a `reason`; `notes` say what else happened on the way (a checkpoint
    set aside)."""

    status: Literal["done", "failed"]
    result: RunResult | None = None
    reason: str | None = None
    notes: tuple[str, ...] = ()


def train_run(
    spec: RunSpec,
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
    train = functools.partial(
        train_design, spec.design, dataset, spec.config, spec.seed, executor=executor,
        device=device, progress=progress, checkpoint=checkpoint,
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
    summary, weights = result.summary(), None
    if artifacts_dir is not None:
        weights = save_run_weights(artifacts_dir, spec, result, dataset)
    measured = None
    if measure != "none":
        if progress is not None:
            progress("measure", 0, 1, {})
        measured = measure_run(result, dataset, device, memory=measure == "all")
    finished = RunResult(summary, weights=weights, measured=measured)
    return Outcome("done", result=finished, notes=tuple(notes))


def with_load(outcome: Outcome, workers: int) -> Outcome:
    """A finished run's result with how many workers shared the machine while it trained
    (`concurrent_workers`), and whether its post-training latency was taken beside other
    workers' training (`latency_under_load`): such times compare fairly only with times
    taken under the same load; `paramsplit measure` takes latency side by side, alone."""
    if outcome.status != "done" or outcome.result is None:
        return outcome
    under_load = workers > 1 if outcome.result.latency_measured else None
    load = TrainingLoad(concurrent_workers=workers, latency_under_load=under_load)
    return dataclasses.replace(outcome, result=dataclasses.replace(outcome.result, load=load))


def record_outcome(store: Store, claim: Claim, outcome: Outcome, checkpoint: Path | None) -> None:
    """Store how a run ended, then delete its checkpoint (the result is in the database now).
    Raises `ClaimLostError`, and leaves the checkpoint to the new holder, if `claim` no
    longer holds the run."""
    if outcome.status == "done":
        assert outcome.result is not None
        notes = {"notes": list(outcome.notes)} if outcome.notes else {}
        store.finish(claim, outcome.result.to_dict() | notes)
    else:
        assert outcome.reason is not None
        store.fail(claim, outcome.reason, notes=outcome.notes)
    if checkpoint is not None:
        remove_checkpoint(checkpoint)


def execute_run(
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
    spec, claim = RunSpec.from_dict(run["spec"]), Claim.of(run)

    def progress(kind: str, done: int, total: int, values: dict[str, float]) -> None:
        if kind == "epoch":  # the curve so far is durable, and the claim is checked and kept
            record = {"epoch": done, "train_loss": values["loss"]}
            store.record_epoch(claim, {**record, "val_accuracy": values["val_accuracy"]})
            if should_stop is not None and (reason := should_stop(run, done)) is not None:
                raise StopRun(reason, done)
        if on_progress is not None:
            on_progress(kind, done, total, values)

    dataset, device = datasets[spec.dataset], torch.device(settings.device)
    try:
        interrupts.let_through()  # one held off since the claim is raised here: run given back
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
