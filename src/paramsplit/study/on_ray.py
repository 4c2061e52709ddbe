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


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("the ray executor needs Ray: pip install 'paramsplit[ray]'") from None
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
    kept_in = artifacts_dir if study.keep_weights else None

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

    dataset_refs = {name: ray.put(data) for name, data in datasets.items()}
    total_cpus = ray.cluster_resources().get("CPU", 1.0)
    capacity = (
        max(1, int(total_cpus // cpus_per_run))
        if gpus_per_run == 0
        else max(1, int(ray.cluster_resources().get("GPU", 1.0) // gpus_per_run))
    )
    worker = default_worker()
    in_flight: dict[Any, dict[str, Any]] = {}
    claim_next: Callable[[], dict[str, Any] | None] = functools.partial(
        store.claim_next, study.name, worker, retry_failed_before=retry_failed_before
    )
    if study.adaptive:  # the policy hands out runs; tasks report no epochs: no early stops
        from paramsplit.study.adaptive import AdaptiveScheduler

        scheduler = AdaptiveScheduler(store, study.name, worker, early=False)

        def claim_adaptive() -> dict[str, Any] | None:
            return scheduler.claim(wait=not in_flight)  # wait only with nothing to collect

        claim_next = claim_adaptive
    while True:
        while len(in_flight) < capacity:
            run = claim_next()
            if run is None:
                break
            if on_run is not None:
                on_run("start", run)
            checkpoint = checkpoint_dir / f"{run['run_id']}.pt" if checkpoint_dir else None
            run["checkpoint"] = checkpoint
            spec = RunSpec.from_dict(run["spec"])
            measure = study.measurement_for(spec.seed)
            ref = train_task.remote(spec, dataset_refs[spec.dataset], checkpoint, measure)
            in_flight[ref] = run
        if not in_flight:
            break
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=HEARTBEAT_S)
        for ref, run in list(in_flight.items()):
            if ref not in ready and not store.heartbeat(Claim.of(run)):
                ray.cancel(ref, force=True)  # another driver has the run now
                del in_flight[ref]
                if on_run is not None:
                    on_run("lost", run)
        for ref in ready:
            run = in_flight.pop(ref)
            try:
                outcome: Outcome = ray.get(ref)
            except Exception as error:  # the task itself died (worker lost, OOM-killed)
                reason = f"error: ray task failed: {type(error).__name__}"
                outcome = Outcome("failed", reason=reason)
            try:
                record_outcome(store, Claim.of(run), outcome, run["checkpoint"])
            except ClaimLostError:
                if on_run is not None:
                    on_run("lost", run)
                continue
            if on_run is not None:
                on_run("end", store.run(run["run_id"]))
    return store.status_counts(study.name)
