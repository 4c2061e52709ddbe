"""The design space under a parameter budget: single networks and their deq/weq ensembles.

Two ways in, one planner:
- budget mode (`plan_budget`): for a budget B, the single network of a family at a fixed
  depth with its width solved, and for each k a deq ensemble (members keep the depth, width
  solved) and a weq ensemble (members keep the single network's width, depth solved), all
  matched to B;
- single mode (`plan_single`, the study's method): from S(w, d), deq keeps d and solves w',
  weq keeps w and solves d', matched to |S|.

Sizes are solved by a search whose every decision rests on exact counts of built modules
(`paramsplit.accounting`); a scaling guess only picks where the search starts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from paramsplit.accounting import count_params, profile_arch
from paramsplit.errors import BudgetError, SpecError, UsageError
from paramsplit.families import FamilyInfo, get_family
from paramsplit.specs import (
    ArchSpec,
    DesignClass,
    DesignSpec,
    InputSpec,
    format_budget,
    parse_arch,
    parse_budget,
    parse_members,
)

MatchKind = Literal["le", "nearest", "tol"]


@dataclass(frozen=True)
class MatchRule:
    """How member size is picked for a budget.

    `le`: the largest member with k·|member| <= budget (the study's rule; never exceeds it).
    `nearest`: the member whose total is closest to the budget, either side (ties: smaller).
    `tol:X`: the nearest, provided the total is within a fraction X of the budget.
    """

    kind: MatchKind = "le"
    tolerance: float = 0.0

    @property
    def name(self) -> str:
        return f"tol:{self.tolerance:g}" if self.kind == "tol" else self.kind

    @classmethod
    def parse(cls, text: str) -> MatchRule:
        cleaned = text.strip().lower()
        if cleaned in ("le", "nearest"):
            return cls(cleaned)  # type: ignore[arg-type]
        match = re.fullmatch(r"tol:([0-9]*\.?[0-9]+)(%?)", cleaned)
        if match:
            tolerance = float(match[1]) / (100 if match[2] else 1)
            if 0 <= tolerance < 1:
                return cls("tol", tolerance)
        raise SpecError(
            f"unknown matching rule '{text}'; allowed: 'le', 'nearest', 'tol:X' with 0 <= X < 1 "
            "(e.g. 'tol:0.05')"
        )


@dataclass(frozen=True)
class PlannedDesign:
    """One row of a plan. Infeasible designs keep their row, with `reason` saying why."""

    design_class: DesignClass
    num_members: int
    family: str
    budget_params: int
    match_rule: str
    input_spec: InputSpec
    member: ArchSpec | None = None
    member_params: int | None = None
    flops_per_image: int | None = None
    reason: str | None = None

    @property
    def feasible(self) -> bool:
        return self.member is not None

    @property
    def total_params(self) -> int | None:
        return None if self.member_params is None else self.num_members * self.member_params

    @property
    def ratio(self) -> float | None:
        total = self.total_params
        return None if total is None else total / self.budget_params

    @property
    def design(self) -> DesignSpec | None:
        if self.member is None:
            return None
        return DesignSpec(self.design_class, self.num_members, self.member)

    def to_dict(self) -> dict[str, Any]:
        design = self.design
        return {
            "design": design.name if design else None,
            "design_class": self.design_class.value,
            "num_members": self.num_members,
            "family": self.family,
            "member": self.member.name if self.member else None,
            "member_depth": self.member.depth if self.member else None,
            "member_width": self.member.width if self.member else None,
            "member_params": self.member_params,
            "total_params": self.total_params,
            "budget_params": self.budget_params,
            "ratio": self.ratio,
            "match_rule": self.match_rule,
            "flops_per_image": self.flops_per_image,
            "input": self.input_spec.name,
            "num_classes": self.input_spec.num_classes,
            "feasible": self.feasible,
            "reason": self.reason,
        }


def largest_fitting(
    count: Callable[[int], int], target: int, lowest: int, guess: int
) -> int | None:
    """The largest x >= lowest with count(x) <= target, for count increasing in x.

    Gallops from `guess` (doubling steps) to bracket the answer, then bisects: a good guess
    costs two or three evaluations, a bad one a logarithmic number.
    """
    if count(lowest) > target:
        return None
    x = max(lowest, guess)
    if count(x) <= target:
        step = 1
        while count(x + step) <= target:
            x, step = x + step, step * 2
        fits, too_big = x, x + step
    else:
        too_big, step = x, 1
        while too_big - step > lowest and count(too_big - step) > target:
            too_big, step = too_big - step, step * 2
        fits = max(lowest, too_big - step)
    while too_big - fits > 1:
        middle = (fits + too_big) // 2
        if count(middle) <= target:
            fits = middle
        else:
            too_big = middle
    return fits


@dataclass(frozen=True)
class _Knob:
    """One free knob of a member (its width or its depth units) and how it sizes the member."""

    lowest: int
    reference: int
    build: Callable[[int], ArchSpec]
    exponent: float  # params grow roughly as knob**exponent: 2 for width, 1 for depth


def _choose(
    knob: _Knob, num_members: int, budget: int, rule: MatchRule, input_spec: InputSpec
) -> tuple[ArchSpec | None, str | None]:
    """Pick the knob value for k members under the rule; (None, reason) if impossible."""

    def total(value: int) -> int:
        return num_members * count_params(knob.build(value), input_spec)

    def described(value: int) -> str:
        return f"{DesignSpec.of(num_members, knob.build(value)).name} ({total(value):,} params)"

    reference_total = total(knob.reference)
    guess = max(
        knob.lowest, round(knob.reference * (budget / reference_total) ** (1 / knob.exponent))
    )
    fits = largest_fitting(total, budget, knob.lowest, guess)
    if rule.kind == "le":
        if fits is None:
            return None, f"the smallest, {described(knob.lowest)}, exceeds the budget"
        return knob.build(fits), None
    candidates = [knob.lowest] if fits is None else [fits, fits + 1]
    best = min(candidates, key=lambda value: (abs(total(value) - budget), value))
    off = total(best) / budget - 1
    if rule.kind == "tol" and abs(off) > rule.tolerance:
        return None, (
            f"the closest, {described(best)}, is {off:+.1%} off the budget "
            f"(tolerance ±{rule.tolerance:.1%})"
        )
    return knob.build(best), None


def _width_knob(info: FamilyInfo, depth: int) -> _Knob:
    return _Knob(1, info.default_width, lambda w: ArchSpec(info.name, depth, w), 2.0)


def _depth_knob(info: FamilyInfo, width: int, reference_depth: int) -> _Knob:
    return _Knob(
        1,
        info.units_for_depth(reference_depth),
        lambda units: ArchSpec(info.name, info.depth_for_units(units), width),
        1.0,
    )


def _row(
    design_class: DesignClass,
    num_members: int,
    info: FamilyInfo,
    budget: int,
    rule: MatchRule,
    input_spec: InputSpec,
    member: ArchSpec | None,
    reason: str | None = None,
) -> PlannedDesign:
    base = PlannedDesign(design_class, num_members, info.name, budget, rule.name, input_spec)
    if member is None:
        return replace(base, reason=reason)
    profile = profile_arch(member, input_spec)
    return replace(
        base,
        member=member,
        member_params=profile.total_params,
        flops_per_image=num_members * profile.flops_per_image,
    )


def _ensemble_rows(
    single: ArchSpec, budget: int, members: Sequence[int], rule: MatchRule, input_spec: InputSpec
) -> list[PlannedDesign]:
    info = single.info
    rows = []
    for k in sorted(set(members)):
        if k < 1:
            raise SpecError(f"number of members must be >= 1, got {k}")
        if k == 1:
            continue  # one member is the single network, already planned
        for design_class, knob in (
            (DesignClass.DEQ, _width_knob(info, single.depth)),
            (DesignClass.WEQ, _depth_knob(info, single.width, single.depth)),
        ):
            member, reason = _choose(knob, k, budget, rule, input_spec)
            rows.append(_row(design_class, k, info, budget, rule, input_spec, member, reason))
    return rows


def plan_budget(
    family: str,
    budget: int,
    members: Sequence[int] = (2, 4, 8),
    *,
    depth: int | None = None,
    match: MatchRule | str = "le",
    input_spec: InputSpec | None = None,
) -> list[PlannedDesign]:
    """Budget mode: the single network for `budget` and its deq/weq ensembles per k."""
    info = get_family(family)
    rule = match if isinstance(match, MatchRule) else MatchRule.parse(match)
    input_spec = input_spec or InputSpec()
    if budget <= 0:
        raise BudgetError(f"budget must be a positive number of parameters, got {budget}")
    depth = info.default_depth if depth is None else depth
    info.units_for_depth(depth)
    single, reason = _choose(_width_knob(info, depth), 1, budget, rule, input_spec)
    if single is None:
        raise BudgetError(
            f"no single {info.name}-{depth} matches a budget of {format_budget(budget)} "
            f"({budget:,} params) under rule '{rule.name}': {reason}"
        )
    rows = [_row(DesignClass.SINGLE, 1, info, budget, rule, input_spec, single)]
    return rows + _ensemble_rows(single, budget, members, rule, input_spec)


def plan_single(
    single: ArchSpec,
    members: Sequence[int] = (2, 4, 8),
    *,
    match: MatchRule | str = "le",
    input_spec: InputSpec | None = None,
) -> list[PlannedDesign]:
    """Single mode (the study's method): S(w, d) and its deq/weq ensembles matched to |S|."""
    rule = match if isinstance(match, MatchRule) else MatchRule.parse(match)
    input_spec = input_spec or InputSpec()
    budget = count_params(single, input_spec)
    rows = [_row(DesignClass.SINGLE, 1, single.info, budget, rule, input_spec, single)]
    return rows + _ensemble_rows(single, budget, members, rule, input_spec)


def plan(
    family: str | None = None,
    budget: int | str | None = None,
    members: Sequence[int] | str = (2, 4, 8),
    *,
    single: ArchSpec | str | None = None,
    depth: int | None = None,
    match: MatchRule | str = "le",
    input_spec: InputSpec | None = None,
) -> list[PlannedDesign]:
    """The design space: budget mode with `family` and `budget`, single mode with `single`.

    Accepts the CLI's strings as well as values: `plan("resnet", "1M", "2,4,8")`.
    """
    member_counts = parse_members(members) if isinstance(members, str) else list(members)
    if single is not None:
        if family is not None or budget is not None or depth is not None:
            raise UsageError(
                "give either a single network (--single), or a family and a budget "
                "(--family, --budget, optionally --depth), not both"
            )
        arch = parse_arch(single) if isinstance(single, str) else single
        return plan_single(arch, member_counts, match=match, input_spec=input_spec)
    if family is None or budget is None:
        raise UsageError(
            "give a family and a budget (--family, --budget), or a single network (--single)"
        )
    return plan_budget(
        family,
        parse_budget(budget),
        member_counts,
        depth=depth,
        match=match,
        input_spec=input_spec,
    )
