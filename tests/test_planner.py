"""The design space: every planned size is checked against exact counts.

The planner searches; these tests do not trust the search. For each row they restate the
matching rule with `ps.count_params`: single networks and weq members against their next size
up, deq members against every candidate the definition allows (the uniform widths either side
of |S| and each per-stage rounding of the uniform shrink, worked out here from the definition
in `stage_width_candidates`'s docstring). Every plan row profiles its member on the meta
device (up to ~0.1 s for a deep network), so the property tests draw few examples.
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import paramsplit as ps
from paramsplit.planner.matching import largest_fitting, stage_width_candidates

DEQ, WEQ, SINGLE = ps.DesignClass.DEQ, ps.DesignClass.WEQ, ps.DesignClass.SINGLE
MAX_BUDGET = 5_000_000
PROPERTY_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers: the rules, restated with exact counts -----------------------------------------


def total(num_members: int, arch: ps.ArchSpec) -> int:
    return num_members * ps.count_params(arch)


def deeper(member: ps.ArchSpec) -> ps.ArchSpec:
    """The member one depth unit deeper, with the same stage widths."""
    depth = member.info.depth_for_units(member.units + 1)
    return ps.ArchSpec(member.family, depth, member.width, member.stage_widths)


def shallower(member: ps.ArchSpec) -> ps.ArchSpec | None:
    if member.units == 1:
        return None
    depth = member.info.depth_for_units(member.units - 1)
    return ps.ArchSpec(member.family, depth, member.width, member.stage_widths)


def deq_candidates(
    family: str, depth: int, k: int, target: int, near: ps.ArchSpec | None
) -> list[ps.ArchSpec]:
    """Every member a deq row may pick, from the definition: the uniform widths w and w + 1
    around the target, and each stage's m_i·w* rounded down or up, w* read off √total.

    The scan for w starts at the uniform width below `near` (the planner's pick) and checks
    the bracket itself, so a wrong pick cannot hide: it only costs more counts.
    """
    info = ps.get_family(family)

    def uniform(width: int) -> ps.ArchSpec:
        return ps.ArchSpec(info.name, depth, width)

    if total(k, uniform(1)) > target:
        return [uniform(1)]
    width = 1
    if near is not None:
        width = min(c // m for c, m in zip(near.stage_widths, info.stage_multipliers, strict=True))
    while width > 1 and total(k, uniform(width)) > target:
        width -= 1
    while total(k, uniform(width + 1)) <= target:
        width += 1
    low, high = (math.sqrt(total(k, uniform(w))) for w in (width, width + 1))
    shrink = width + (math.sqrt(target) - low) / (high - low)
    windows = [{math.floor(m * shrink), math.ceil(m * shrink)} for m in info.stage_multipliers]
    per_stage = [
        ps.ArchSpec.from_stage_widths(info.name, depth, stages)
        for stages in itertools.product(*windows)
    ]
    return [uniform(width), uniform(width + 1), *per_stage]


def check_row_fields(row: ps.PlannedDesign, single: ps.PlannedDesign) -> None:
    """Every row: the budget of the plan, |S| of its single network, and both ratios."""
    assert row.budget_params == single.budget_params
    assert row.single_params == ps.count_params(single.member) == single.total_params
    if not row.feasible:
        assert row.member is None and row.member_params is None and row.total_params is None
        assert row.ratio is None and row.ratio_to_single is None and not row.matched
        return
    assert row.reason is None
    assert row.member_params == ps.count_params(row.member)
    assert row.total_params == row.num_members * row.member_params
    assert row.ratio == row.total_params / row.budget_params
    assert row.ratio_to_single == row.total_params / row.single_params
    assert row.matched is ps.is_matched(row.ratio_to_single, row.tolerance)
    # deq members keep the single network's depth, weq members its stage widths.
    if row.design_class is DEQ:
        assert row.member.depth == single.member.depth
    if row.design_class is WEQ:
        assert row.member.stage_widths == single.member.stage_widths


def check_le(rows: list[ps.PlannedDesign]) -> None:
    """Under 'le' the single fits the budget; each ensemble is the largest candidate that
    fits |S|, never above it."""
    single = rows[0]
    assert single.design_class is SINGLE and single.member.uniform
    assert single.ratio_to_single == 1.0
    if single.budget_params != single.single_params:  # budget mode: the width is solved
        wider = ps.ArchSpec(single.family, single.member.depth, single.member.width + 1)
        assert single.total_params <= single.budget_params < ps.count_params(wider)
    target = single.single_params
    for row in rows:
        check_row_fields(row, single)
        k = row.num_members
        if row.design_class is DEQ:
            candidates = deq_candidates(row.family, single.member.depth, k, target, row.member)
            fitting = [total(k, c) for c in candidates if total(k, c) <= target]
            if not row.feasible:
                assert not fitting
                assert f"exceeds the single network's {target:,} params" in row.reason
                continue
            assert row.total_params == max(fitting), row.design.name
        if row.design_class is WEQ:
            smallest = ps.ArchSpec(
                single.family, single.member.info.min_depth, single.member.width,
                single.member.stage_widths,
            )  # fmt: skip
            if not row.feasible:
                assert total(k, smallest) > target
                assert f"exceeds the single network's {target:,} params" in row.reason
                continue
            assert row.total_params <= target < total(k, deeper(row.member)), row.design.name


def check_nearest(rows: list[ps.PlannedDesign]) -> None:
    """Under 'nearest' no candidate is closer to |S| (ties go to the smaller)."""
    single = rows[0]
    target = single.single_params
    for row in rows[1:]:
        check_row_fields(row, single)
        assert row.feasible, row.reason
        k, distance = row.num_members, abs(row.total_params - target)
        if row.design_class is DEQ:
            candidates = deq_candidates(row.family, single.member.depth, k, target, row.member)
            assert distance == min(abs(total(k, c) - target) for c in candidates)
            continue
        # Totals grow with depth: beating both neighbours means beating every depth.
        assert distance <= abs(total(k, deeper(row.member)) - target), row.design.name
        below = shallower(row.member)
        if below is not None:
            assert distance < abs(total(k, below) - target), row.design.name


# --- budget mode, rule 'le' ----------------------------------------------------------------


def log_uniform_budgets(lowest: int) -> st.SearchStrategy[int]:
    """Budgets spread evenly in log scale from `lowest` to MAX_BUDGET.

    Plain `st.integers` favours the small end, where every design is a width-1 network.
    """
    fractions = st.floats(min_value=0.0, max_value=1.0)
    return fractions.map(lambda u: round(lowest * (MAX_BUDGET / lowest) ** u))


@st.composite
def budget_cases(draw, family: str, depths: tuple[int, ...]):
    """A budget from the family's smallest network up to MAX_BUDGET, and member counts."""
    info = ps.get_family(family)
    depth = draw(st.sampled_from(depths))
    budget = draw(log_uniform_budgets(ps.count_params(ps.ArchSpec(info.name, depth, 1))))
    members = draw(st.lists(st.integers(2, 8), min_size=1, max_size=3, unique=True))
    return depth, budget, members


@pytest.mark.parametrize(
    ("family", "depths", "max_examples"),
    [
        ("resnet", (8, 20, 32), 10),
        # Deep DenseNets are the slowest to profile (~0.1 s each), so fewer examples.
        ("densenet-bc", (10, 40, 100), 5),
        ("wrn", (10, 28), 5),
        ("vgg", (11, 16), 4),
    ],
)
def test_le_rows_are_the_largest_candidates_within_the_single_network(family, depths, max_examples):
    @settings(PROPERTY_SETTINGS, max_examples=max_examples)
    @given(budget_cases(family, depths))
    def check(case):
        depth, budget, members = case
        rows = ps.plan_budget(family, budget, members, depth=depth)
        assert [(r.design_class, r.num_members) for r in rows] == [(SINGLE, 1)] + [
            (cls, k) for k in sorted(members) for cls in (DEQ, WEQ)
        ]
        assert rows[0].member.depth == depth
        check_le(rows)

    check()


@pytest.mark.parametrize(
    ("family", "budget", "single"),
    [
        # The examples: matched to the budget, 8x wrn-28-2 had 28.6% more than the
        # single network, 4x resnet-20-15 more than resnet-20-30.
        ("wrn", "12M", "wrn-28-5"),
        ("resnet", "1M", "resnet-20-30"),
        ("densenet-bc", "200k", "densenet-bc-100-6"),
    ],
)
def test_budget_mode_never_gives_an_ensemble_more_than_its_single_network(family, budget, single):
    rows = ps.plan(family, budget, "2,4,8")
    assert rows[0].member.name == single
    check_le(rows)
    assert all(row.total_params <= rows[0].total_params for row in rows if row.feasible)


def test_plan_single_densenet_bc_40():
    # The study's method: S = DenseNet-BC-40-12 sets the budget, members match |S|.
    rows = ps.plan_single(ps.parse_arch("densenet-bc-40-12"), [4, 6, 8])
    assert {row.budget_params for row in rows} == {176_122}
    assert rows[0].member.name == "densenet-bc-40-12"
    assert rows[0].total_params == 176_122
    check_le(rows)
    # Depth comes in steps of 6 layers: 4x densenet-bc-10-12 has 0.475 |S|, -16-12 1.009.
    weq = {row.num_members: row for row in rows if row.design_class is WEQ}
    assert weq[4].member.name == "densenet-bc-10-12" and not weq[4].matched
    assert weq[4].note == (
        "densenet-bc depth moves in steps of 6 layers: the closest weq totals are "
        "0.475 (4x densenet-bc-10-12) and 1.009 (4x densenet-bc-16-12) × |S|"
    )
    assert weq[4].better_rule is None


# --- the acceptance figure: deq ensembles of the published configs --------------------------

# The heaviest DenseNets take several seconds each to plan on 2 busy cores.
_SLOW = {"densenet-bc-250-24", "densenet-bc-190-40"}
PUBLISHED = [
    pytest.param(config.name, marks=pytest.mark.slow if config.name in _SLOW else ())
    for info in ps.FAMILIES
    for config in info.published
]


@pytest.mark.parametrize("name", PUBLISHED)
def test_deq_ensembles_of_published_configs_are_matched_closely(name):
    # Uniform integer widths left 4x resnet-56-7 at 0.772 |S|, 4x wrn-28-4 at 0.641 and
    # densenet-bc-100-12 at k=4 at 0.729; per-stage widths reach >= 0.95 (0.90 for
    # densenet-bc, whose growth rates are small integers).
    floor = 0.90 if name.startswith("densenet-bc") else 0.95
    rows = ps.plan_single(ps.parse_arch(name), [2, 4, 8])
    check_le(rows)
    deq = [row for row in rows if row.design_class is DEQ]
    assert [row.num_members for row in deq] == [2, 4, 8]
    for row in deq:
        assert floor <= row.ratio_to_single <= 1.0, row.design.name
        assert row.matched and row.note is None and row.better_rule is None
        assert ps.parse_design(row.design.name, DEQ) == row.design


# --- rules 'nearest' and 'tol' --------------------------------------------------------------


@settings(PROPERTY_SETTINGS, max_examples=8)
@given(
    depth=st.sampled_from((8, 14, 20)),
    budget=log_uniform_budgets(20_000),
    members=st.lists(st.integers(2, 8), min_size=1, max_size=3, unique=True),
)
def test_nearest_picks_the_closest_candidate(depth, budget, members):
    rows = ps.plan_budget("resnet", budget, members, depth=depth, match="nearest")
    assert {row.match_rule for row in rows} == {"nearest"}
    check_nearest(rows)


@settings(PROPERTY_SETTINGS, max_examples=8)
@given(
    single=st.builds(
        ps.ArchSpec, st.just("resnet"), st.sampled_from((8, 14, 20)), st.integers(4, 40)
    ),
    members=st.lists(st.integers(2, 8), min_size=1, max_size=3, unique=True),
    tolerance=st.sampled_from((0.01, 0.05, 0.2)),
)
def test_tol_rows_are_within_tolerance_or_say_why(single, members, tolerance):
    rule = f"tol:{tolerance}"
    rows = ps.plan_single(single, members, match=rule)
    nearest = {
        (r.design_class, r.num_members): r for r in ps.plan_single(single, members, match="nearest")
    }
    for row in rows:
        assert row.match_rule == rule
        closest = nearest[(row.design_class, row.num_members)]
        if row.feasible:
            assert abs(row.ratio_to_single - 1) <= tolerance
            assert row.member == closest.member  # the nearest size, accepted
        else:
            assert row.member is None
            assert "off the single network's" in row.reason and "tolerance" in row.reason
            assert abs(closest.ratio_to_single - 1) > tolerance  # even the nearest misses


def test_tol_five_percent_for_resnet20():
    rows = ps.plan_single(ps.parse_arch("resnet-20"), [2, 3, 4, 5, 6, 7, 8], match="tol:0.05")
    for row in rows:
        if row.feasible:
            assert abs(row.total_params / 272_474 - 1) <= 0.05
        else:
            assert "off the single network's 272,474 params (tolerance ±5.0%)" in row.reason


# --- unmatched rows: notes, better rules, warnings --------------------------------------------


def test_unmatched_rows_name_the_rule_that_would_match_them():
    # densenet-bc at 200k: 8x densenet-bc-100-2.2.1 has 0.801 |S| under 'le', and the next
    # candidate up, 8x densenet-bc-100-2, 1.014. With a tolerance up to 1.02, 'nearest'
    # matches; with the default, no rule does, and the note says what the closest are.
    wide = ps.plan("densenet-bc", "200k", [8], tolerance=(0.9, 1.02))
    deq = wide[1]
    assert (deq.design_class, deq.member.name) == (DEQ, "densenet-bc-100-2.2.1")
    assert not deq.matched and deq.note is None
    assert (deq.better_rule, deq.better_design) == ("nearest", "8x densenet-bc-100-2")
    assert deq.better_ratio == pytest.approx(1.014, abs=5e-4)
    [warning] = [w for w in ps.plan_warnings(wide) if w.startswith("8x densenet-bc-100-2.2.1")]
    assert warning == (
        "8x densenet-bc-100-2.2.1 (deq): 0.801 × |S|, outside [0.90, 1.02]; "
        "nearest gives 1.014 (8x densenet-bc-100-2)"
    )
    default = ps.plan("densenet-bc", "200k", [8])[1]
    assert default.better_rule is None
    assert default.note == (
        "stage widths come in whole units: the closest deq totals are "
        "0.801 (8x densenet-bc-100-2.2.1) and 1.014 (8x densenet-bc-100-2) × |S|"
    )


def test_nearest_over_the_single_network_points_back_to_le():
    rows = ps.plan_single(ps.parse_arch("resnet-56"), [8], match="nearest")
    deq = rows[1]
    assert deq.total_params > deq.single_params and not deq.matched
    assert deq.better_rule == "le"
    assert any(w.startswith(f"{deq.design.name} (deq)") and "le gives" in w
               for w in ps.plan_warnings(rows))  # fmt: skip


def test_matched_rows_have_no_warning():
    rows = ps.plan_single(ps.parse_arch("wrn-28-10"), [2, 4], match="le")
    warned = {w.split(" (")[0] for w in ps.plan_warnings(rows)}
    assert warned == {row.design.name for row in rows if row.feasible and not row.matched}
    assert all(row.matched for row in rows if row.design_class is DEQ)


def test_stage_width_candidates_stay_few_and_between_uniform_widths():
    for info in ps.FAMILIES:
        depth = info.default_depth
        low, high = (ps.count_params(ps.ArchSpec(info.name, depth, w)) for w in (5, 6))
        candidates = stage_width_candidates(info, depth, 5, low, high, (low + high) // 2)
        assert 1 <= len(candidates) <= 2**info.num_stages
        for candidate in candidates:
            for width, multiplier in zip(
                candidate.stage_widths, info.stage_multipliers, strict=True
            ):
                assert 5 * multiplier <= width <= 6 * multiplier


@pytest.mark.parametrize(
    ("text", "kind", "tolerance"),
    [
        ("le", "le", 0.0),
        (" Nearest ", "nearest", 0.0),
        ("tol:0.05", "tol", 0.05),
        ("tol:5%", "tol", 0.05),
    ],
)
def test_match_rule_parse(text, kind, tolerance):
    rule = ps.MatchRule.parse(text)
    assert (rule.kind, rule.tolerance) == (kind, pytest.approx(tolerance))
    assert ps.MatchRule.parse(rule.name) == rule


# --- largest_fitting against a brute-force scan -----------------------------------------------


@st.composite
def monotone_problems(draw):
    """A non-decreasing count on [0, ∞): random steps (plateaus allowed), then +1 forever."""
    steps = draw(st.lists(st.integers(0, 5), min_size=1, max_size=80))
    start = draw(st.integers(0, 20))
    values = [start]
    for step in steps:
        values.append(values[-1] + step)

    def count(x: int) -> int:
        assert x >= 0, "searched below the lowest allowed value"
        return values[x] if x < len(values) else values[-1] + x - len(values) + 1

    target = draw(st.integers(0, values[-1] + 10))
    lowest = draw(st.integers(0, len(values) + 5))
    guess = draw(st.integers(-50, 500))  # far off on both sides, and below `lowest`
    return count, target, lowest, guess


@settings(max_examples=300, deadline=None)
@given(monotone_problems())
def test_largest_fitting_matches_brute_force(problem):
    count, target, lowest, guess = problem
    expected = None
    x = lowest
    while count(x) <= target:
        expected, x = x, x + 1
    assert largest_fitting(count, target, lowest, guess) == expected


def test_largest_fitting_needs_few_counts_with_a_good_guess():
    # "A good guess costs two or three evaluations" (the docstring); counts are the cost.
    calls = []

    def count(x: int) -> int:
        calls.append(x)
        return 10 * x

    assert largest_fitting(count, 1234, 1, 123) == 123
    assert len(calls) <= 3


# --- rows, entry points and errors ----------------------------------------------------------


def test_row_to_dict():
    rows = ps.plan("resnet", "1M", "2,4")
    single_flops = ps.describe(rows[0].member).to_dict()["flops_per_image"]
    assert rows[0].flops_per_image == single_flops
    for row in rows:
        record = row.to_dict()
        assert {
            "design_class",
            "num_members",
            "family",
            "member",
            "member_params",
            "total_params",
            "budget_params",
            "ratio",
            "flops_per_image",
        } <= record.keys()
        assert record["design_class"] == row.design_class.value
        assert record["budget_params"] == 1_000_000
        assert record["feasible"] is row.feasible
        if not row.feasible:  # e.g. 4x resnet-8 at the single's width is already too big
            assert record["member"] is record["total_params"] is record["ratio"] is None
            assert record["reason"] == row.reason
            continue
        assert record["total_params"] == row.num_members * record["member_params"]
        assert record["ratio"] == record["total_params"] / 1_000_000
        member_flops = ps.describe(row.member).to_dict()["flops_per_image"]
        assert record["flops_per_image"] == row.num_members * member_flops
        assert ps.parse_design(record["design"], row.design_class) == row.design


def test_plan_accepts_strings_and_values_alike():
    assert ps.plan("resnet", "1M", "4,2") == ps.plan_budget("resnet", 1_000_000, [2, 4])
    assert ps.plan(single="resnet-20", members=[2]) == ps.plan_single(
        ps.parse_arch("resnet-20"), [2]
    )


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: ps.plan_budget("resnet", 500),
            ps.BudgetError,
            r"no single resnet-20 matches a budget of 500 .*resnet-20-1 \(1,229 params\)",
        ),
        (lambda: ps.plan("resnet", "500"), ps.BudgetError, "no single resnet-20 matches"),
        (lambda: ps.plan_budget("resnet", 0), ps.BudgetError, "must be a positive number"),
        (lambda: ps.plan("resnet", "1M", "2,0"), ps.SpecError, "must be >= 1, got 0"),
        (lambda: ps.plan_budget("resnet", 10**6, [0]), ps.SpecError, "must be >= 1, got 0"),
        (
            lambda: ps.plan_budget("resnet", 10**6, match="best"),
            ps.SpecError,
            "unknown matching rule 'best'",
        ),
        (lambda: ps.plan("resnet", "1M", match="tol:1.5"), ps.SpecError, "unknown matching rule"),
        (
            lambda: ps.plan_budget("resnet", 10**6, depth=21),
            ps.SpecError,
            "depth 21 is not valid for resnet",
        ),
        (lambda: ps.plan_budget("resnt", 10**6), ps.UnknownFamilyError, "did you mean 'resnet'"),
        (
            lambda: ps.plan("resnet", "1M", single="resnet-20"),
            ps.UsageError,
            r"give either a single network \(--single\), or a family and a budget",
        ),
        (lambda: ps.plan(), ps.UsageError, r"give a family and a budget \(--family, --budget\)"),
        (lambda: ps.plan("resnet"), ps.UsageError, "give a family and a budget"),
    ],
)
def test_plan_rejects(call, error, message):
    with pytest.raises(error, match=message):
        call()
