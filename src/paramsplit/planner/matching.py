"""Sizing members to a target parameter count: the matching rules and the exact search.

Every decision rests on exact counts of built modules (`paramsplit.planner.accounting`, meta device,
cached); a scaling guess only picks where a search starts. A member is sized along one knob:

- its depth (weq): whole units only, so the candidates are the two depths either side of the
  target;
- its width (deq, and the single network of a budget): first the uniform integer widths
  either side of the target, then, for ensemble members, per-stage widths between them (see
  `stage_width_candidates`), because one uniform width step can move the total by 30% or
  more (4x resnet-56-7 has 0.77 |resnet-56|, 4x resnet-56-8 just over 1).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from paramsplit.errors import SpecError
from paramsplit.families import FamilyInfo
from paramsplit.planner.accounting import count_params
from paramsplit.specs import ArchSpec, DesignSpec, InputSpec

MatchKind = Literal["le", "nearest", "tol"]


@dataclass(frozen=True)
class MatchRule:
    """How member size is picked for a target (the single network's |S|, or a budget).

    `le`: the largest member with k·|member| <= target (the study's rule; never exceeds it).
    `nearest`: the member whose total is closest to the target, either side (ties: smaller).
    `tol:X`: the nearest, provided the total is within a fraction X of the target.
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
class Candidate:
    """A member and the exact total of k of them."""

    member: ArchSpec
    total_params: int


@dataclass(frozen=True)
class Choice:
    """The candidates closest to a target on either side, for k members.

    `below` has the largest total <= target (what `le` picks), `above` the smallest total
    above it (None when no candidate lies on that side). `num_counted` is how many distinct
    members were counted exactly to find them.
    """

    num_members: int
    target_params: int
    below: Candidate | None
    above: Candidate | None
    num_counted: int

    def pick(self, kind: MatchKind) -> Candidate | None:
        """The candidate rule `kind` picks (`tol` before its tolerance check: the nearest)."""
        if kind == "le":
            return self.below
        options = [c for c in (self.below, self.above) if c is not None]
        # The closer one; at equal distance the smaller, which comes first.
        return min(options, key=lambda c: abs(c.total_params - self.target_params))

    def describe(self, candidate: Candidate) -> str:
        design = DesignSpec.of(self.num_members, candidate.member)
        return f"{design.name} ({candidate.total_params:,} params)"


def decide(
    choice: Choice, rule: MatchRule, target_label: str
) -> tuple[ArchSpec | None, str | None]:
    """The member `rule` picks, or None and why; `target_label` names the target in reasons."""
    picked = choice.pick(rule.kind)
    if picked is None:
        assert choice.above is not None, "a search always has a candidate"
        return None, f"the smallest, {choice.describe(choice.above)}, exceeds {target_label}"
    off = picked.total_params / choice.target_params - 1
    if rule.kind == "tol" and abs(off) > rule.tolerance:
        return None, (
            f"the closest, {choice.describe(picked)}, is {off:+.1%} off {target_label} "
            f"(tolerance ±{rule.tolerance:.1%})"
        )
    return picked.member, None


class _Counter:
    """Exact totals of k members, remembering which members were counted."""

    def __init__(self, num_members: int, input_spec: InputSpec) -> None:
        self.num_members = num_members
        self.input_spec = input_spec
        self.counted: set[ArchSpec] = set()

    def total(self, member: ArchSpec) -> int:
        self.counted.add(member)
        return self.num_members * count_params(member, self.input_spec)

    def choice(self, members: list[ArchSpec], target: int) -> Choice:
        candidates = [Candidate(m, self.total(m)) for m in dict.fromkeys(members)]
        fitting = [c for c in candidates if c.total_params <= target]
        over = [c for c in candidates if c.total_params > target]
        # At equal totals a uniform member wins: it keeps the plain name.
        below = max(fitting, key=lambda c: (c.total_params, c.member.uniform), default=None)
        above = min(over, key=lambda c: (c.total_params, not c.member.uniform), default=None)
        return Choice(self.num_members, target, below, above, len(self.counted))


def stage_width_candidates(
    info: FamilyInfo, depth: int, width: int, total_low: int, total_high: int, target: int
) -> list[ArchSpec]:
    """Members whose stage widths lie within one unit of the uniform shrink.

    The uniform shrink is the real width w* at which k uniform members would total exactly
    the target. Between the integer widths w and w + 1 that bracket the target (their exact
    totals T(w) <= target < T(w + 1)), w* is read off by interpolating the square root of
    the total linearly, since parameters grow about as width²:
    w* = w + (√target - √T(w)) / (√T(w + 1) - √T(w)), exact for a total that is a pure
    square in the width. Stage i of the uniform shrink has the real width m_i·w* (m_i:
    `FamilyInfo.stage_multipliers`). One unit is one channel (resnet, wrn, vgg) or one step
    of growth rate (a densenet-bc dense block). A candidate rounds each stage's m_i·w* down
    or up, independently, so every stage differs from the uniform shrink by less than one
    unit. That makes at most 2**stages candidates (8; 32 for vgg), each lying stage by stage
    between the uniform widths w and w + 1.
    """
    low, high = math.sqrt(total_low), math.sqrt(total_high)
    shrink = width + (math.sqrt(target) - low) / (high - low)
    # Clamped to [m·w, m·(w + 1)] only against float rounding at the ends.
    per_stage = [
        sorted(
            {max(m * width, math.floor(m * shrink)), min(m * (width + 1), math.ceil(m * shrink))}
        )
        for m in info.stage_multipliers
    ]
    return [
        ArchSpec.from_stage_widths(info.name, depth, stages)
        for stages in itertools.product(*per_stage)
    ]


def match_width(
    info: FamilyInfo,
    depth: int,
    num_members: int,
    target: int,
    input_spec: InputSpec,
    *,
    per_stage: bool,
) -> Choice:
    """Members of this depth sized by width; `per_stage` adds the per-stage candidates."""
    counter = _Counter(num_members, input_spec)

    def uniform(width: int) -> ArchSpec:
        return ArchSpec(info.name, depth, width)

    def total_at(width: int) -> int:
        return counter.total(uniform(width))

    # Parameters grow about as width**2: a guess for where the search starts.
    scale = target / total_at(info.default_width)
    fits = largest_fitting(total_at, target, 1, max(1, round(info.default_width * scale**0.5)))
    if fits is None:
        return counter.choice([uniform(1)], target)
    members = [uniform(fits), uniform(fits + 1)]
    if per_stage:
        low, high = total_at(fits), total_at(fits + 1)
        members += stage_width_candidates(info, depth, fits, low, high, target)
    return counter.choice(members, target)


def match_depth(shape: ArchSpec, num_members: int, target: int, input_spec: InputSpec) -> Choice:
    """Members with the stage widths of `shape`, sized by depth (whole units)."""
    info = shape.info
    counter = _Counter(num_members, input_spec)

    def at_units(units: int) -> ArchSpec:
        depth = info.depth_for_units(units)
        return ArchSpec(info.name, depth, shape.width, shape.stage_widths)

    def total_at(units: int) -> int:
        return counter.total(at_units(units))

    # Where the search starts: a power law through the counts at 1 unit and at the shape's
    # depth (about linear for resnet, wrn and vgg, steeper for densenet-bc, whose layers'
    # inputs grow with depth). One cheap count of a shallow network saves several deep ones.
    smallest, reference = total_at(1), total_at(shape.units)
    exponent = 1.0
    if shape.units > 1 and reference > smallest:
        exponent = math.log(reference / smallest) / math.log(shape.units)
    guess = max(1, round(shape.units * (target / reference) ** (1 / exponent)))
    fits = largest_fitting(total_at, target, 1, guess)
    members = [at_units(1)] if fits is None else [at_units(fits), at_units(fits + 1)]
    return counter.choice(members, target)
