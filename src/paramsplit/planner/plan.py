"""The design space: single networks and their deq/weq ensembles, each matched to |S|.

Two ways in, one planner:
- budget mode (`plan_budget`): for a budget B, the single network S of a family at a fixed
  depth, its width solved for B;
- single mode (`plan_single`, the study's method): S(w, d) is given.

Either way every ensemble is matched to |S|, the exact parameter count of the single network
it is compared with, not to B: S rarely has exactly B parameters, and the verdict compares
the ensemble with S. deq members keep S's depth and solve their width, per stage
(`paramsplit.planner.matching`); weq members keep S's stage widths and solve their depth. Every row
carries its ratio to the budget and to |S|, whether that comparison is matched
(`paramsplit.specs.is_matched`), and where it is not, the rule that would do better or why
none can.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from paramsplit.errors import BudgetError, SpecError, UsageError
from paramsplit.families import get_family
from paramsplit.planner.accounting import count_params, design_flops_per_image, profile_arch
from paramsplit.planner.matching import (
    Choice,
    MatchKind,
    MatchRule,
    decide,
    largest_fitting,
    match_depth,
    match_width,
)
from paramsplit.quantities import format_budget, parse_budget, parse_members
from paramsplit.specs import (
    MATCH_TOLERANCE,
    ArchSpec,
    DesignClass,
    DesignSpec,
    InputSpec,
    is_matched,
    parse_arch,
)

__all__ = [
    "MatchRule",
    "PlannedDesign",
    "largest_fitting",
    "plan",
    "plan_budget",
    "plan_single",
    "plan_warnings",
]


@dataclass(frozen=True)
class PlannedDesign:
    """One row of a plan. Infeasible designs keep their row, with `reason` saying why.

    `single_params` is |S|, the single network's exact count, which ensembles are matched
    to; `budget_params` the budget of the plan (|S| itself in single mode). A row whose
    `ratio_to_single` lies outside `tolerance` is unmatched; then either `better_rule` names
    the rule that would match it (`better_ratio`, `better_design`: what that rule picks), or
    `note` says why no design of this class can (e.g. the family's depth steps).
    `num_counted` is how many candidate members were counted exactly to size the row.
    """

    design_class: DesignClass
    num_members: int
    family: str
    budget_params: int
    match_rule: str
    input_spec: InputSpec
    single_params: int
    tolerance: tuple[float, float] = MATCH_TOLERANCE
    member: ArchSpec | None = None
    member_params: int | None = None
    flops_per_image: int | None = None
    reason: str | None = None
    note: str | None = None
    better_rule: str | None = None
    better_ratio: float | None = None
    better_design: str | None = None
    num_counted: int = 0

    @property
    def feasible(self) -> bool:
        return self.member is not None

    @property
    def total_params(self) -> int | None:
        return None if self.member_params is None else self.num_members * self.member_params

    @property
    def ratio(self) -> float | None:
        """Total parameters / the budget."""
        total = self.total_params
        return None if total is None else total / self.budget_params

    @property
    def ratio_to_single(self) -> float | None:
        """Total parameters / |S|: what the comparison with the single network rests on."""
        total = self.total_params
        return None if total is None else total / self.single_params

    @property
    def matched(self) -> bool:
        return is_matched(self.ratio_to_single, self.tolerance)

    @property
    def design(self) -> DesignSpec | None:
        if self.member is None:
            return None
        return DesignSpec(self.design_class, self.num_members, self.member)

    def to_dict(self) -> dict[str, Any]:
        design, member = self.design, self.member
        return {
            "design": design.name if design else None,
            "design_class": self.design_class.value,
            "num_members": self.num_members,
            "family": self.family,
            "member": member.name if member else None,
            "member_depth": member.depth if member else None,
            "member_width": member.width if member else None,
            "member_stage_widths": list(member.stage_widths) if member else None,
            "member_params": self.member_params,
            "total_params": self.total_params,
            "budget_params": self.budget_params,
            "ratio": self.ratio,
            "single_params": self.single_params,
            "ratio_to_single": self.ratio_to_single,
            "matched": self.matched,
            "tolerance": list(self.tolerance),
            "match_rule": self.match_rule,
            "note": self.note,
            "better_rule": self.better_rule,
            "better_ratio": self.better_ratio,
            "better_design": self.better_design,
            "num_counted": self.num_counted,
            "flops_per_image": self.flops_per_image,
            "input": self.input_spec.name,
            "num_classes": self.input_spec.num_classes,
            "feasible": self.feasible,
            "reason": self.reason,
        }


def _with_member(row: PlannedDesign, member: ArchSpec) -> PlannedDesign:
    profile = profile_arch(member, row.input_spec)
    return replace(
        row,
        member=member,
        member_params=profile.total_params,
        flops_per_image=design_flops_per_image(row.num_members, member, row.input_spec),
    )


def _explained(
    row: PlannedDesign, choice: Choice, rule: MatchRule, single: ArchSpec
) -> PlannedDesign:
    """The row with, if it is unmatched, the rule that would match it, or (if it has a member:
    an infeasible row has its reason) why none can."""
    if row.matched:
        return row
    others: list[MatchKind] = [kind for kind in ("le", "nearest") if kind != rule.kind]
    for kind in others:
        candidate = choice.pick(kind)
        if candidate is None or candidate.member == row.member:
            continue
        ratio = candidate.total_params / row.single_params
        if is_matched(ratio, row.tolerance):
            design = DesignSpec(row.design_class, row.num_members, candidate.member)
            return replace(row, better_rule=kind, better_ratio=ratio, better_design=design.name)
    if row.member is None:
        return row
    sides = " and ".join(
        f"{c.total_params / row.single_params:.3f} "
        f"({DesignSpec(row.design_class, row.num_members, c.member).name})"
        for c in (choice.below, choice.above)
        if c is not None
    )
    closest = f"the closest {row.design_class.value} totals are {sides} × |S|"
    if row.design_class is DesignClass.WEQ:
        info = single.info
        layers = "layer" if info.depth_step == 1 else "layers"
        return replace(
            row, note=f"{info.name} depth moves in steps of {info.depth_step} {layers}: {closest}"
        )
    return replace(row, note=f"stage widths come in whole units: {closest}")


def _ensemble_rows(
    single: PlannedDesign, members: Sequence[int], rule: MatchRule
) -> list[PlannedDesign]:
    assert single.member is not None and single.member_params is not None
    arch, input_spec = single.member, single.input_spec
    target = single.member_params
    label = f"the single network's {target:,} params"
    rows = []
    for k in sorted(set(members)):
        if k < 1:
            raise SpecError(f"number of members must be >= 1, got {k}")
        if k == 1:
            continue  # one member is the single network, already planned
        for design_class in (DesignClass.DEQ, DesignClass.WEQ):
            if design_class is DesignClass.DEQ:
                choice = match_width(arch.info, arch.depth, k, target, input_spec, per_stage=True)
            else:
                choice = match_depth(arch, k, target, input_spec)
            member, reason = decide(choice, rule, label)
            row = PlannedDesign(
                design_class,
                k,
                single.family,
                single.budget_params,
                single.match_rule,
                input_spec,
                single_params=target,
                tolerance=single.tolerance,
                reason=reason,
                num_counted=choice.num_counted,
            )
            if member is not None:
                row = _with_member(row, member)
            rows.append(_explained(row, choice, rule, arch))
    return rows


def _single_row(
    single: ArchSpec,
    budget: int,
    rule: MatchRule,
    input_spec: InputSpec,
    tolerance: tuple[float, float],
    num_counted: int = 1,
) -> PlannedDesign:
    base = PlannedDesign(
        DesignClass.SINGLE,
        1,
        single.family,
        budget,
        rule.name,
        input_spec,
        single_params=count_params(single, input_spec),
        tolerance=tolerance,
        num_counted=num_counted,
    )
    return _with_member(base, single)


def _rule(match: MatchRule | str) -> MatchRule:
    return match if isinstance(match, MatchRule) else MatchRule.parse(match)


def plan_budget(
    family: str,
    budget: int,
    members: Sequence[int] = (2, 4, 8),
    *,
    depth: int | None = None,
    match: MatchRule | str = "le",
    input_spec: InputSpec | None = None,
    tolerance: tuple[float, float] = MATCH_TOLERANCE,
) -> list[PlannedDesign]:
    """Budget mode: the single network for `budget`, and its deq/weq ensembles per k, each
    matched to the single network's |S|."""
    info = get_family(family)
    rule = _rule(match)
    input_spec = input_spec or InputSpec()
    if budget <= 0:
        raise BudgetError(f"budget must be a positive number of parameters, got {budget}")
    depth = info.default_depth if depth is None else depth
    info.units_for_depth(depth)
    # The single network keeps uniform widths: it is the reference, named as in the papers.
    choice = match_width(info, depth, 1, budget, input_spec, per_stage=False)
    single, reason = decide(choice, rule, "the budget")
    if single is None:
        raise BudgetError(
            f"no single {info.name}-{depth} matches a budget of {format_budget(budget)} "
            f"({budget:,} params) under rule '{rule.name}': {reason}"
        )
    row = _single_row(single, budget, rule, input_spec, tolerance, choice.num_counted)
    return [row, *_ensemble_rows(row, members, rule)]


def plan_single(
    single: ArchSpec,
    members: Sequence[int] = (2, 4, 8),
    *,
    match: MatchRule | str = "le",
    input_spec: InputSpec | None = None,
    tolerance: tuple[float, float] = MATCH_TOLERANCE,
) -> list[PlannedDesign]:
    """Single mode (the study's method): S(w, d) and its deq/weq ensembles matched to |S|."""
    rule = _rule(match)
    input_spec = input_spec or InputSpec()
    budget = count_params(single, input_spec)
    row = _single_row(single, budget, rule, input_spec, tolerance)
    return [row, *_ensemble_rows(row, members, rule)]


def plan(
    family: str | None = None,
    budget: int | str | None = None,
    members: Sequence[int] | str = (2, 4, 8),
    *,
    single: ArchSpec | str | None = None,
    depth: int | None = None,
    match: MatchRule | str = "le",
    input_spec: InputSpec | None = None,
    tolerance: tuple[float, float] = MATCH_TOLERANCE,
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
        return plan_single(
            arch, member_counts, match=match, input_spec=input_spec, tolerance=tolerance
        )
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
        tolerance=tolerance,
    )


def plan_warnings(rows: Sequence[PlannedDesign]) -> list[str]:
    """One line per feasible ensemble whose ratio to |S| is outside the tolerance."""
    warnings = []
    for row in rows:
        design, ratio = row.design, row.ratio_to_single
        if design is None or ratio is None or row.matched:
            continue
        low, high = row.tolerance
        hint = row.note
        if row.better_rule is not None:
            hint = f"{row.better_rule} gives {row.better_ratio:.3f} ({row.better_design})"
        warnings.append(
            f"{design.name} ({row.design_class.value}): {ratio:.3f} × |S|, outside "
            f"[{low:.2f}, {high:.2f}]" + (f"; {hint}" if hint else "")
        )
    return warnings
