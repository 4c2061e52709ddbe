"""Checking a study whole before anything of it is written or run.

`check_definition` checks every field of a `StudyDefinition` as it is made (its families,
budgets, matching rule, depth, seeds, the types of its training settings, its size);
`check_runnable` what this machine must be able to do (the member executor, the precision
on the device); `no_runs` is the error for a study whose every design is infeasible. Each
error names its field (`ParamSplitError.field`), so that a study file can point at its line
and the CLI at its flag.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from paramsplit.errors import BudgetError, ConfigError, ParamSplitError, StudyError, UsageError
from paramsplit.families import get_family
from paramsplit.planner import MatchRule
from paramsplit.planner.accounting import count_params
from paramsplit.quantities import MAX_BUDGET_PARAMS, format_budget, parse_budget
from paramsplit.specs import DESIGN_CLASSES, InputSpec, TrainConfig, check_depth, parse_arch
from paramsplit.train import check_executor_name

if TYPE_CHECKING:
    from paramsplit.study.definition import Infeasible, StudyDefinition

# What to measure after training. Peak memory does not depend on the seed, and on CPU costs
# a child process per figure, so `first-seed` measures it for each design's lowest seed only.
MEASURE_CHOICES = ("all", "first-seed", "latency", "none")

# Each seed trains every design of the study once more; published studies use 3 to 10.
# `--seeds 1000000000` used to build a billion-entry tuple (2.5 GB in 4 s) before any check.
MAX_SEEDS = 1000
# The store keeps a seed in an INTEGER column: 32 bits on PostgreSQL.
MAX_SEED = 2**31 - 1
# Far more runs than one study can train (a 30-epoch CIFAR run takes minutes on a GPU), and
# few enough that planning and registering them takes seconds.
MAX_STUDY_RUNS = 100_000
MAX_NAME_CHARS = 200  # the store's `studies.name` column

Checked = TypeVar("Checked")


def in_field(field: str, check: Callable[..., Checked], *args: Any, **kwargs: Any) -> Checked:
    """`check(*args, **kwargs)`, its error (if any) located in `field`."""
    try:
        return check(*args, **kwargs)
    except ParamSplitError as error:
        raise error.in_field(field) from None


def seed_range(count: int) -> tuple[int, ...]:
    """Seeds 0..count-1, for `--seeds N` and `seeds = N`; checked before any is made."""
    if isinstance(count, bool) or not isinstance(count, int):
        raise UsageError(f"seeds must be a whole number, got {count!r}").in_field("seeds")
    if not 1 <= count <= MAX_SEEDS:
        raise UsageError(
            f"the number of seeds must be in [1, {MAX_SEEDS}] (each seed trains every design "
            f"once more), got {count}"
        ).in_field("seeds")
    return tuple(range(count))


def check_definition(study: StudyDefinition) -> None:
    """Every field of `study`, and its size; raises the first error found."""
    _check_name(study.name)
    values: Sequence[Any]
    for field, values in (("families", study.families), ("singles", study.singles),
                          ("designs", study.designs), ("datasets", study.datasets)):  # fmt: skip
        _require(field, _is_sequence(values, str), "a list of names", values)
    for family in study.families:
        in_field("families", get_family, family)
    unknown = [d for d in study.designs if d not in DESIGN_CLASSES]
    if unknown:
        raise UsageError(
            f"unknown design class '{unknown[0]}'; allowed: {', '.join(DESIGN_CLASSES)}"
        ).in_field("designs")
    for field, values in (("budgets", study.budgets), ("members", study.members),
                          ("seeds", study.seeds)):  # fmt: skip
        _require(field, _is_sequence(values, int), "a list of whole numbers", values)
    _check_size(study)  # before the checks that take time per item
    for budget in study.budgets:
        in_field("budgets", parse_budget, budget)
    bad_members = [k for k in study.members if k < 1]
    _require("members", not bad_members, "ensemble sizes >= 1", bad_members[:1])
    if not (study.families and study.budgets) and not study.singles:
        raise UsageError("a study needs families and budgets, or single networks (singles)")
    for name in study.singles:
        _check_single(name)
    for field, values in (("datasets", study.datasets), ("seeds", study.seeds)):
        if not values:
            raise UsageError(f"a study needs at least one of {field}").in_field(field)
    bad_seeds = [s for s in study.seeds if not 0 <= s <= MAX_SEED]
    _require("seeds", not bad_seeds, f"seeds in [0, {MAX_SEED}]", bad_seeds[:1])
    _require("seeds", len(study.seeds) <= MAX_SEEDS, f"at most {MAX_SEEDS} seeds", len(study.seeds))
    _check_depth(study.depth, study.families)
    _require("match", isinstance(study.match, str), "a matching rule", study.match)
    in_field("match", MatchRule.parse, study.match)
    _require("config", isinstance(study.config, TrainConfig), "a TrainConfig", study.config)
    check_train_settings({f: getattr(study.config, f) for f in _train_types()})
    if study.measure not in MEASURE_CHOICES:
        raise UsageError(
            f"measure must be one of {', '.join(MEASURE_CHOICES)}, got '{study.measure}'"
        ).in_field("measure")
    adaptive_ok = study.adaptive in (False, True, "bisection")  # "exact" is stored as True
    _require("adaptive", adaptive_ok, 'true, false, "exact" or "bisection"', study.adaptive)


def _check_name(name: Any) -> None:
    _require("name", isinstance(name, str) and name.strip() != "", "a non-empty name", name)
    if len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise UsageError(
            f"a study name is at most {MAX_NAME_CHARS} printable characters (no newlines or "
            f"control characters), got {name[:60]!r}"
        ).in_field("name")


def _check_single(name: str) -> None:
    """A single network by name: valid, and not larger than any budget could be."""
    arch = in_field("singles", parse_arch, name)
    params = count_params(arch, InputSpec())
    if params > MAX_BUDGET_PARAMS:
        raise BudgetError(
            f"{arch.name} has {params:,} parameters (3×32×32 input), above the largest "
            f"supported budget, {format_budget(MAX_BUDGET_PARAMS)}"
        ).in_field("singles")


def _check_depth(depth: Any, families: Sequence[str]) -> None:
    if depth is None:
        return
    _require("depth", isinstance(depth, int) and not isinstance(depth, bool), "a depth", depth)
    in_field("depth", check_depth, depth)
    for family in families:
        in_field("depth", get_family(family).units_for_depth, depth)


def _check_size(study: StudyDefinition) -> None:
    """Refuse a study too large to plan, from an upper bound of its run count."""
    ensembles = sum(1 for k in set(study.members) if k > 1)
    designs_per_plan = ("single" in study.designs) + ensembles * len(
        {"deq", "weq"} & set(study.designs)
    )
    plans = len(study.families) * len(study.budgets) + len(study.singles)
    most_runs = plans * designs_per_plan * len(study.datasets) * len(study.seeds)
    if most_runs > MAX_STUDY_RUNS:
        raise StudyError(
            f"study '{study.name}' asks for up to {most_runs:,} runs, more than the "
            f"{MAX_STUDY_RUNS:,} one study may hold; split it into smaller studies"
        )


def _train_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def check_train_settings(values: Mapping[str, Any]) -> None:
    """The types of training settings as a study file gives them (`epochs = 1.5` is not a
    number of epochs), before `TrainConfig` checks their ranges."""
    types_by_name = _train_types()
    for name, value in values.items():
        expected = types_by_name[name]
        if not _has_type(value, expected):
            raise ConfigError(f"{name} must be {_describe_type(expected)}, got {value!r}").in_field(
                f"train.{name}"
            )


def _has_type(value: Any, expected: Any) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False  # True is an int to Python, never a count or a rate here
    if expected is int:
        return isinstance(value, int)
    if expected is float:
        return isinstance(value, int | float) and math.isfinite(value)
    if expected is str:
        return isinstance(value, str)
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return any(value is None if a is type(None) else _has_type(value, a) for a in args)
    if origin is tuple:
        return isinstance(value, tuple | list) and all(_has_type(v, args[0]) for v in value)
    return True


def _describe_type(expected: Any) -> str:
    names = {int: "a whole number", float: "a finite number", bool: "true or false", str: "text"}
    if expected in names:
        return names[expected]
    args = [a for a in typing.get_args(expected) if a is not Ellipsis and a is not type(None)]
    if typing.get_origin(expected) is tuple:
        return f"a list of {_describe_type(args[0]).removeprefix('a ')}s"
    return f"{_describe_type(args[0])} or unset"


def _is_sequence(values: Any, kind: type) -> bool:
    return isinstance(values, tuple | list) and all(
        isinstance(v, kind) and not isinstance(v, bool) for v in values
    )


def _require(field: str, ok: bool, expected: str, got: Any) -> None:
    if not ok:
        raise UsageError(f"expected {expected}, got {got!r}").in_field(field)


def check_runnable(executor: str, device: torch.device | str, config: TrainConfig) -> None:
    """What this machine must do for the study: the member executor exists, and the
    precision runs on the device."""
    in_field("executor", check_executor_name, executor, allow_auto=True)
    in_field("train.precision", check_precision, config.precision, device)


def check_precision(precision: str, device: torch.device | str) -> None:
    """fp16 training needs CUDA (its gradient scaling); the executors refuse it too, but
    only once a run has started."""
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise ConfigError(
            f"precision fp16 needs a CUDA device, and this runs on {device}; use bf16 or fp32"
        )


def no_runs(study: StudyDefinition, infeasible: Sequence[Infeasible]) -> StudyError:
    """The error for a study that expands to no run, with the first reason."""
    if not infeasible:
        return StudyError(f"study '{study.name}' has no runs: no design class was asked for")
    first = infeasible[0]
    more = f" (and {len(infeasible) - 1} more infeasible)" if len(infeasible) > 1 else ""
    return StudyError(
        f"study '{study.name}' has no feasible run: {first.family} {first.design_class} "
        f"k={first.num_members} at {first.budget_params:,} params on {first.dataset}: "
        f"{first.reason}{more}"
    )
