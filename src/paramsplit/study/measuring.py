"""Measuring a trained study's inference side by side, in one process: `paramsplit measure`.

After training, with no worker running, every finished design of the study is measured:
budget by budget, the single network and its ensembles in alternating rounds (see
`paramsplit.measure.side_by_side`), at every batch size asked. Each budget's rows go into
the results database as soon as it is measured, under one session id per call; measuring
again adds a session, and readers take the latest. The post-training figures of `run`
stay in each run's columns, taken alone (and, with several workers, under load).

    with Store.open("paramsplit.db") as store:
        session = measure_study(store, "resnet-digits", batch_sizes=(1, 64))
"""

from __future__ import annotations

import dataclasses
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from paramsplit.data import load_dataset
from paramsplit.errors import StoreError, UsageError
from paramsplit.measure.side_by_side import (
    DEFAULT_MEASURE_BATCH_SIZES,
    BudgetGroup,
    DesignToMeasure,
    Measurement,
    RoundSettings,
    WeightsLoader,
    check_batch_sizes,
    measure_group,
)
from paramsplit.specs import InputSpec, TrainConfig, class_order
from paramsplit.store import STALE_AFTER_S, Store
from paramsplit.store.claims import is_dead_here
from paramsplit.study.artifacts import load_run_weights
from paramsplit.train.checkpoint import load_checkpoint

# (done, total, what is measured now): one step per budget and batch size.
MeasureProgress = Callable[[int, int, str], None]

# What of a run's training config changes its inference: the rest (epochs, learning rate,
# ...) does not, so runs that differ only there are one design to measure.
_INFERENCE_CONFIG = ("precision", "channels_last", "compile")


@dataclass(frozen=True)
class MeasureSession:
    """One call of `measure_study`: where, how and when it measured, and what it found.

    `not_finished` counts the study's runs left out because they are not done.
    """

    session_id: str
    study: str
    device: str
    num_threads: int
    torch_version: str
    measured_at: datetime
    batch_sizes: tuple[int, ...]
    measurements: tuple[Measurement, ...]
    not_finished: int

    def store_fields(self) -> dict[str, Any]:
        """The fields `Store.add_measurements` keeps with every row of the session."""
        return {
            "session_id": self.session_id,
            "study": self.study,
            "device": self.device,
            "num_threads": self.num_threads,
            "torch_version": self.torch_version,
            "measured_at": self.measured_at,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.store_fields(),
            "measured_at": self.measured_at.isoformat(),
            "batch_sizes": list(self.batch_sizes),
            "not_finished": self.not_finished,
            "measurements": [m.to_dict() for m in self.measurements],
        }


def budget_groups(
    runs: Iterable[Mapping[str, Any]],
    input_specs: Mapping[str, InputSpec],
    weights_of: Callable[[Mapping[str, Any]], WeightsLoader | None] | None = None,
) -> list[BudgetGroup]:
    """The finished runs (rows of `Store.runs`) as budgets to measure, one design each.

    A design trained with several seeds is measured once, by its lowest seed's run, or by
    the lowest seed whose trained weights `weights_of(run)` can load. Groups are ordered by
    dataset, family and budget; designs by class and k.
    """
    grouped: dict[tuple[Any, ...], dict[tuple[str, int, str], list[Mapping[str, Any]]]]
    grouped = defaultdict(lambda: defaultdict(list))
    configs: dict[tuple[Any, ...], TrainConfig] = {}
    for run in runs:
        if run["status"] != "done":
            continue
        config = TrainConfig.from_dict(run["config"], ignore_unknown=True)
        budget = run["budget_params"] or run["total_params"]
        inference = tuple(getattr(config, name) for name in _INFERENCE_CONFIG)
        key = (run["dataset"], run["family"], budget, *inference)
        configs.setdefault(key, config)
        design = (run["design_class"], run["num_members"], run["member"])
        grouped[key][design].append(run)
    groups = []
    for key in sorted(grouped, key=lambda k: (k[0], k[1], k[2], k[3:])):
        dataset, family, budget = key[:3]
        designs = []
        for (design_class, num_members, member), design_runs in sorted(
            grouped[key].items(), key=lambda item: (class_order(item[0][0]), *item[0][1:])
        ):
            by_seed = sorted(design_runs, key=lambda run: run["seed"])
            loaders = [weights_of(run) if weights_of else None for run in by_seed]
            chosen = next((i for i, loader in enumerate(loaders) if loader is not None), 0)
            designs.append(
                DesignToMeasure(
                    run_id=by_seed[chosen]["run_id"],
                    design_class=design_class,
                    num_members=num_members,
                    member=member,
                    weights=loaders[chosen],
                )
            )
        groups.append(
            BudgetGroup(family, dataset, budget, input_specs[dataset], configs[key], tuple(designs))
        )
    return groups


def trained_weights(
    checkpoint_dir: Path | None,
) -> Callable[[Mapping[str, Any]], WeightsLoader | None]:
    """How to load a finished run's trained weights: those it kept (checked against the
    sha256 in its row, so an altered file stops the measurement with one line), else its
    checkpoint if one is still there; None where neither is."""

    def loader_for(run: Mapping[str, Any]) -> WeightsLoader | None:
        if run.get("weights_path"):
            return lambda: load_run_weights(run).member_states
        path = checkpoint_dir / f"{run['run_id']}.pt" if checkpoint_dir is not None else None
        if path is None or not path.is_file():
            return None

        def from_checkpoint() -> list[dict[str, Tensor]]:
            state = load_checkpoint(path) or {}
            # The best epoch's weights where recorded, else the last epoch's.
            states: list[dict[str, Tensor]] = state.get("best_states") or state["member_states"]
            return states

        return from_checkpoint

    return loader_for


def training_now(store: Store, study: str) -> list[str]:
    """Workers training now that would disturb the timing: any on this host, and any of
    `study` elsewhere (its designs are not finished). A dead or silent worker is not."""
    here = socket.gethostname()
    fresh_after = datetime.now(UTC) - timedelta(seconds=STALE_AFTER_S)
    in_study = {run["run_id"] for run in store.runs(study, status="running")}
    workers = set()
    for run in store.runs(status="running"):
        worker = run["worker"] or ""
        on_this_host = worker.rpartition(":")[0] == here
        if on_this_host and not is_dead_here(worker):
            workers.add(worker)
        elif run["run_id"] in in_study and not on_this_host:
            last_seen = run["heartbeat_at"] or run["claimed_at"]
            if last_seen is not None and last_seen >= fresh_after:
                workers.add(worker)
    return sorted(workers)


def _latest_study(store: Store) -> str:
    studies = store.studies()
    if not studies:
        raise StoreError(f"no studies in {store.url}: run one first (paramsplit run)")
    return str(max(studies, key=lambda s: s["created_at"])["name"])


def measure_study(
    store: Store,
    study: str | None = None,
    *,
    device: torch.device | str = "cpu",
    batch_sizes: Sequence[int] = DEFAULT_MEASURE_BATCH_SIZES,
    num_threads: int | None = None,
    settings: RoundSettings | None = None,
    checkpoint_dir: Path | None = None,
    input_specs: Mapping[str, InputSpec] | None = None,
    on_progress: MeasureProgress | None = None,
) -> MeasureSession:
    """Measure the finished designs of `study` (default: the latest) side by side, budget by
    budget, at every batch size; store each budget's rows as it is done.

    Refuses while a worker trains on this host or on the study (`training_now`): their
    load would be in the figures. `num_threads` (default: torch's current number) is set
    for the session and recorded. `input_specs` maps dataset names to their input (default:
    read from each dataset). Trained weights are loaded where a run kept them (or its
    checkpoint in `checkpoint_dir` is still there); otherwise each design is built fresh
    (latency does not depend on the weights).
    """
    study = study or _latest_study(store)
    sizes = check_batch_sizes(batch_sizes)
    if num_threads is not None and num_threads < 1:
        raise UsageError(f"threads must be >= 1, got {num_threads}")
    settings = settings or RoundSettings()
    busy = training_now(store, study)
    if busy:
        raise UsageError(
            f"cannot measure while {len(busy)} worker(s) train ({', '.join(busy)}): their load "
            "would be in the timings; measure when the study's runs have finished"
        )
    runs = store.runs(study)
    done = [run for run in runs if run["status"] == "done"]
    if not done:
        raise UsageError(f"study '{study}' has no finished runs to measure; train it first")
    if input_specs is None:
        names = {run["dataset"] for run in done}
        input_specs = {name: load_dataset(name, device="cpu").input_spec() for name in names}
    groups = budget_groups(done, input_specs, trained_weights(checkpoint_dir))
    device = torch.device(device)
    previous_threads = torch.get_num_threads()
    num_threads = num_threads or previous_threads
    session = MeasureSession(
        session_id=uuid.uuid4().hex,
        study=study,
        device=str(device),
        num_threads=num_threads,
        torch_version=torch.__version__,
        measured_at=datetime.now(UTC),
        batch_sizes=sizes,
        measurements=(),
        not_finished=len({run["run_id"] for run in runs}) - len({run["run_id"] for run in done}),
    )
    total, steps = len(groups) * len(sizes), 0
    measured: list[Measurement] = []

    def on_batch(label: str) -> None:
        nonlocal steps
        if on_progress is not None:
            on_progress(steps, total, label)
        steps += 1

    torch.set_num_threads(num_threads)
    try:
        for group in groups:
            rows = measure_group(group, device, sizes, settings=settings, on_batch=on_batch)
            store.add_measurements(session.store_fields(), [row.to_dict() for row in rows])
            measured += rows
    finally:
        torch.set_num_threads(previous_threads)
    if on_progress is not None:
        on_progress(total, total, "done")
    return dataclasses.replace(session, measurements=tuple(measured))
