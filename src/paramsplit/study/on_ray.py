"""Running a study on a Ray cluster: one Ray task per run, results into the same database.

The driver (this process) claims runs in the store exactly as a local `paramsplit run`
does, submits each as a task with its resources (N CPUs, or a GPU), keeps the claims fresh
while tasks run, and records every outcome as it arrives. Resume works as locally: a killed
driver's claims go stale and are taken over, and each task carries on from its run's last
checkpoint (on a cluster, put the database on a server and the checkpoints on shared
storage). Every write is made under the run's claim: a run whose heartbeat is refused (the
driver was paused past the stale-claim limit and another took it over) has its task
cancelled, and its result is not written. A task that runs out of disk fails its run as
`error: disk full` (the node's disk: `--retry-failed` tries it again). Ray is an optional
dependency: `pip install 'paramsplit[ray]'`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from paramsplit.data import DatasetTensors
from paramsplit.errors import ClaimLostError, DiskFullError, UsageError
from paramsplit.records import RunSpec
from paramsplit.store import Claim, Store, default_worker
from paramsplit.study.checks import check_runnable
from paramsplit.study.definition import StudyDefinition, register_study
from paramsplit.study.runner import RunCallback, retry_cutoff
from paramsplit.study.training import Outcome, record_outcome, train_run

HEARTBEAT_S = 30.0

Claimer = Callable[[], dict[str, Any] | None]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("the ray backend needs Ray: pip install 'paramsplit[ray]'") from None
    return ray


def run_study_on_ray(
    store: Store,
    study: StudyDefinition,
    datasets: dict[str, DatasetTensors],
    *,
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
    executor: str = "auto",
    retry_failed: bool = False,
    checkpoint_dir: Path | None = None,
    on_run: RunCallback | None = None,
    register: bool = True,
    artifacts_dir: Path | None = None,
) -> dict[str, int]:
    """Register the study and train its unfinished runs as Ray tasks (with `retry_failed`,
    each run that had failed before this call once more); the final counts. Runs keep
    their weights in `artifacts_dir` as locally (on a cluster: shared storage)."""
    device = "cuda" if gpus_per_run > 0 else "cpu"
    check_runnable(executor, device, study.config)
    ray = _ray()
    retry_failed_before = retry_cutoff(retry_failed)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level="warning")
    if register:
        register_study(store, study, datasets)
    task = _remote_training(
        ray, cpus_per_run, gpus_per_run, executor, artifacts_dir if study.keep_weights else None
    )
    driver = _Driver(
        ray, store, study, task, {name: ray.put(data) for name, data in datasets.items()},
        checkpoint_dir, on_run or (lambda event, run: None),
    )  # fmt: skip
    claim_next = _claimer(store, study, retry_failed_before, driver)
    capacity = _capacity(ray, cpus_per_run, gpus_per_run)
    while True:
        while len(driver.in_flight) < capacity and (run := claim_next()) is not None:
            driver.submit(run)
        if not driver.in_flight:
            break
        ready, _ = ray.wait(list(driver.in_flight), num_returns=1, timeout=HEARTBEAT_S)
        driver.keep_claims(waiting=[ref for ref in driver.in_flight if ref not in ready])
        for ref in ready:
            driver.record(ref)
    return store.status_counts(study.name)


def _remote_training(
    ray: Any, cpus_per_run: float, gpus_per_run: float, executor: str, kept_in: Path | None
) -> Any:
    """The Ray task that trains one run on its node, with its resources; its `Outcome`."""
    device = "cuda" if gpus_per_run > 0 else "cpu"

    @ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)
    def train_task(
        spec: RunSpec, dataset: DatasetTensors, checkpoint: Path | None, measure: str
    ) -> Outcome:
        torch.set_num_threads(max(1, int(cpus_per_run)))
        data, where = dataset.to(device), torch.device(device)
        try:
            return train_run(
                spec, data, executor, where, checkpoint, measure=measure, artifacts_dir=kept_in
            )
        except DiskFullError as error:
            return Outcome("failed", reason="error: disk full", notes=(str(error),))

    return train_task


def _capacity(ray: Any, cpus_per_run: float, gpus_per_run: float) -> int:
    """How many tasks the cluster runs at once: its CPUs (or GPUs) over a run's share."""
    resources = ray.cluster_resources()
    if gpus_per_run == 0:
        return max(1, int(resources.get("CPU", 1.0) // cpus_per_run))
    return max(1, int(resources.get("GPU", 1.0) // gpus_per_run))


@dataclass
class _Driver:
    """The tasks in flight, each under its run's claim: submitted, kept claimed while they
    run, and recorded as they finish."""

    ray: Any
    store: Store
    study: StudyDefinition
    task: Any
    dataset_refs: dict[str, Any]
    checkpoint_dir: Path | None
    on_run: RunCallback
    in_flight: dict[Any, dict[str, Any]] = field(default_factory=dict)  # task ref -> run

    def submit(self, run: dict[str, Any]) -> None:
        self.on_run("start", run)
        checkpoint = self.checkpoint_dir / f"{run['run_id']}.pt" if self.checkpoint_dir else None
        run["checkpoint"] = checkpoint
        spec = RunSpec.from_dict(run["spec"])
        measure = self.study.measurement_for(spec.seed)
        ref = self.task.remote(spec, self.dataset_refs[spec.dataset], checkpoint, measure)
        self.in_flight[ref] = run

    def keep_claims(self, waiting: list[Any]) -> None:
        """A heartbeat for each unfinished task's run; a task whose run another driver has
        taken over is cancelled."""
        for ref in waiting:
            run = self.in_flight[ref]
            if not self.store.heartbeat(Claim.of(run)):
                self.ray.cancel(ref, force=True)
                del self.in_flight[ref]
                self.on_run("lost", run)

    def record(self, ref: Any) -> None:
        """A finished task's outcome into the store, under its run's claim."""
        run = self.in_flight.pop(ref)
        try:
            outcome: Outcome = self.ray.get(ref)
        except Exception as error:  # the task itself died (worker lost, OOM-killed)
            outcome = Outcome("failed", reason=f"error: ray task failed: {type(error).__name__}")
        try:
            record_outcome(self.store, Claim.of(run), outcome, run["checkpoint"])
        except ClaimLostError:
            self.on_run("lost", run)
            return
        self.on_run("end", self.store.run(run["run_id"]))


def _claimer(
    store: Store, study: StudyDefinition, retry_failed_before: datetime | None, driver: _Driver
) -> Claimer:
    """What hands out the next run: the store's queue, or an adaptive study's policy."""
    worker = default_worker()
    if not study.adaptive:
        return functools.partial(
            store.claim_next, study.name, worker, retry_failed_before=retry_failed_before
        )
    # Tasks report no epochs: no early stops under Ray.
    from paramsplit.study.adaptive import AdaptiveScheduler

    scheduler = AdaptiveScheduler(store, study.name, worker, early=False)
    # Wait for the policy only with nothing to collect.
    return lambda: scheduler.claim(wait=not driver.in_flight)
