"""A study's definition, and its expansion into runs through the planner.

`expand_study` turns a definition into run specs (infeasible designs are returned with their
reasons, never dropped silently); `register_study` adds them to the store, where the runner
(`paramsplit.study.runner`) claims them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from paramsplit.data import DatasetTensors
from paramsplit.errors import ParamSplitError
from paramsplit.planner import PlannedDesign, plan_budget, plan_single
from paramsplit.planner.accounting import count_params
from paramsplit.records import RunSpec
from paramsplit.specs import DESIGN_CLASSES, InputSpec, TrainConfig, parse_arch
from paramsplit.store import Store
from paramsplit.study.checks import check_definition, no_runs


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
    folder `run_study` is given, see `paramsplit.study.artifacts`). Nor does it change the runs.

    `adaptive`: train only what `paramsplit.adaptive` decides the answer needs; the full
    grid is still registered, so the policy and `status` can say what was skipped. True
    (or "exact") runs the exact search (the full grid's ESTs by construction); "bisection"
    the cheaper one that assumes verdicts monotone in budget.
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
    adaptive: bool | str = False

    def __post_init__(self) -> None:
        if self.adaptive == "exact":  # stored as True: the digest of `adaptive = true`
            object.__setattr__(self, "adaptive", True)
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

    def digest(self) -> str:
        """Eight hex digits of what the study studies, for the names derived from it (the
        CLI's and the demo's): a changed study gets a new name and never mixes with the
        results of an older one. What is measured or kept is not what is studied:
        `--measure none` resumes the same study, and names derived before those fields
        existed still find their study. The name itself is hashed empty, as it always was."""
        studied = {
            key: value
            for key, value in {**self.to_dict(), "name": ""}.items()
            if key not in ("measure", "keep_weights")
        }
        return hashlib.sha256(json.dumps(studied, sort_keys=True).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Infeasible:
    family: str
    dataset: str
    budget_params: int
    design_class: str
    num_members: int
    reason: str


def run_spec(row: PlannedDesign, dataset: str, config: TrainConfig, seed: int) -> RunSpec:
    """One run of a feasible planned design; its config carries the resolved weight decay,
    so one protocol always hashes to one run id."""
    member, member_params, total_params, ratio = (
        row.member,
        row.member_params,
        row.total_params,
        row.ratio,
    )
    assert member is not None and member_params is not None
    assert total_params is not None and ratio is not None
    resolved = dataclasses.replace(config, weight_decay=config.weight_decay_for(row.family))
    return RunSpec(
        family=row.family,
        design_class=row.design_class,
        num_members=row.num_members,
        member=member.name,
        member_depth=member.depth,
        member_width=member.width,
        member_params=member_params,
        total_params=total_params,
        budget_params=row.budget_params,
        ratio=ratio,
        dataset=dataset,
        config=resolved,
        seed=seed,
    )


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
) -> tuple[list[RunSpec], list[Infeasible]]:
    """Every run of the study, in a stable order, and the designs that cannot meet a budget.
    A study with no feasible run is an error (`StudyError`), with the first reason."""
    specs: list[RunSpec] = []
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


Expansion = tuple[list[RunSpec], list[Infeasible]]


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
