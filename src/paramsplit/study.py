"""A study: a design space swept over datasets and seeds, run into the results database.

`expand_study` turns a definition into run specs through the planner (infeasible designs are
returned with their reasons, never dropped silently); `run_study` claims runs from the store
one at a time and trains them, committing each result as it finishes. A failing run is
recorded with its reason and the study goes on.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from paramsplit.accounting import count_params
from paramsplit.data import DatasetTensors, load_dataset
from paramsplit.errors import ParamSplitError, UsageError
from paramsplit.planner import PlannedDesign, plan_budget, plan_single
from paramsplit.specs import (
    DESIGN_CLASSES,
    ArchSpec,
    DesignClass,
    DesignSpec,
    InputSpec,
    TrainConfig,
    parse_arch,
)
from paramsplit.store import Store, default_worker
from paramsplit.train import train_design


@dataclass(frozen=True)
class StudyDefinition:
    """What to sweep: every family × budget × design × k × dataset × seed.

    Designs come from budgets (each family's single network for a budget, and its deq/weq
    ensembles) and from `singles`, single networks given by name (the study's method: S(w, d)
    and its ensembles matched to |S|, e.g. a grid of widths × depths).
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

    def __post_init__(self) -> None:
        unknown = [d for d in self.designs if d not in DESIGN_CLASSES]
        if unknown:
            raise UsageError(
                f"unknown design class '{unknown[0]}'; allowed: {', '.join(DESIGN_CLASSES)}"
            )
        if not (self.families and self.budgets) and not self.singles:
            raise UsageError("a study needs families and budgets, or single networks (singles)")
        for label, values in (("datasets", self.datasets), ("seeds", self.seeds)):
            if not values:
                raise UsageError(f"a study needs at least one of {label}")
        for name in self.singles:
            parse_arch(name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    """Every run of the study, in a stable order, and the designs that cannot meet a budget."""
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
    return specs, infeasible


def register_study(
    store: Store, study: StudyDefinition, datasets: dict[str, DatasetTensors]
) -> tuple[list[dict[str, Any]], list[Infeasible]]:
    """Add the study and its runs to the store (idempotent); returns what `expand_study` does."""
    specs, infeasible = expand_study(study, datasets)
    store.add_study(study.name, study.to_dict())
    store.add_runs(study.name, specs)
    return specs, infeasible


RunCallback = Callable[[str, dict[str, Any]], None]
ProgressCallback = Callable[[str, int, int, dict[str, float]], None]


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
) -> dict[str, int]:
    """Register the study's runs and train every unfinished one; returns the final counts.

    `register=False` skips planning and registering, for a caller that has just done it.

    With `checkpoint_dir`, each run saves its state there after every epoch; a run taken
    over from a killed process carries on from its last epoch.
    """
    datasets = datasets or {name: load_dataset(name, device=device) for name in study.datasets}
    if register:
        register_study(store, study, datasets)
    worker = default_worker()
    while (run := store.claim_next(study.name, worker, retry_failed=retry_failed)) is not None:
        if on_run is not None:
            on_run("start", run)
        checkpoint = checkpoint_dir / f"{run['run_id']}.pt" if checkpoint_dir else None
        _execute(store, run, datasets, executor, torch.device(device), on_progress, checkpoint)
        if on_run is not None:
            on_run("end", store.run(run["run_id"]))
    return store.status_counts(study.name)


Outcome = tuple[str, Any]  # ("done", result summary) or ("failed", reason)


def train_run(
    spec: dict[str, Any],
    dataset: DatasetTensors,
    executor: str,
    device: torch.device,
    checkpoint: Path | None,
    progress: ProgressCallback | None = None,
) -> Outcome:
    """Train one run's spec; how it ended, as data (also what a Ray task sends back)."""
    design = DesignSpec(
        DesignClass(spec["design_class"]),
        spec["num_members"],
        ArchSpec(spec["family"], spec["member_depth"], spec["member_width"]),
    )
    config = TrainConfig(**{**spec["config"], "milestones": tuple(spec["config"]["milestones"])})
    try:
        result = train_design(
            design,
            dataset,
            config,
            spec["seed"],
            executor=executor,
            device=device,
            progress=progress,
            checkpoint=checkpoint,
        )
    except torch.cuda.OutOfMemoryError:
        return "failed", "oom"
    except Exception as error:  # one run's failure must not stop the study: record it
        return "failed", f"error: {type(error).__name__}: {error}"
    if result.status == "done":
        return "done", result.to_dict()
    return "failed", f"{result.status}: {result.reason}"


def record_outcome(store: Store, run_id: str, outcome: Outcome, checkpoint: Path | None) -> None:
    status, payload = outcome
    if status == "done":
        store.finish(run_id, payload)
    else:
        store.fail(run_id, payload)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)  # the result is in the database now


def _execute(
    store: Store,
    run: dict[str, Any],
    datasets: dict[str, DatasetTensors],
    executor: str,
    device: torch.device,
    on_progress: ProgressCallback | None,
    checkpoint: Path | None,
) -> None:
    """Train one claimed run here and record how it ended; an interrupt releases it."""
    spec, run_id = run["spec"], run["run_id"]

    def progress(kind: str, done: int, total: int, values: dict[str, float]) -> None:
        if kind == "epoch":  # the curve so far is durable, and the claim stays fresh
            record = {"epoch": done, "train_loss": values["loss"]}
            store.record_epoch(run_id, {**record, "val_accuracy": values["val_accuracy"]})
        if on_progress is not None:
            on_progress(kind, done, total, values)

    try:
        outcome = train_run(spec, datasets[spec["dataset"]], executor, device, checkpoint, progress)
    except KeyboardInterrupt:
        store.release(run_id)
        raise
    record_outcome(store, run_id, outcome, checkpoint)


def checkpoint_dir_for(db: str) -> Path:
    """Checkpoints live beside a SQLite file (`study.db` -> `study.checkpoints/`), or in
    `paramsplit-checkpoints/` for a database server."""
    if "://" in db and not db.startswith("sqlite"):
        return Path("paramsplit-checkpoints")
    path = Path(db.removeprefix("sqlite:///"))
    return path.with_name(path.stem + ".checkpoints")
