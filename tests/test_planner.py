"""The design space under a budget: every planned size is checked against exact counts.

The planner searches; these tests do not trust the search. For each row they count the
chosen member and its next size up with `ps.count_params` and check the matching rule
directly. Every plan row profiles its member on the meta device (up to ~0.1 s for a deep
network), so the property tests draw few examples.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import paramsplit as ps
from paramsplit.planner import largest_fitting

DEQ, WEQ, SINGLE = ps.DesignClass.DEQ, ps.DesignClass.WEQ, ps.DesignClass.SINGLE
MAX_BUDGET = 5_000_000
PROPERTY_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers: the rule, restated with exact counts ----------------------------------------


def total(num_members: int, arch: ps.ArchSpec) -> int:
    return num_members * ps.count_params(arch)


def resized(row: ps.PlannedDesign, step: int) -> ps.ArchSpec | None:
    """The member one size up (step=1) or down (step=-1) along the knob its class solves.

    weq members keep the width and change depth by one unit; single networks and deq
    members keep the depth and change width. None below the smallest size.
    """
    member = row.member
    if row.design_class is WEQ:
        units = member.units + step
        if units < 1:
            return None
        return ps.ArchSpec(member.family, member.info.depth_for_units(units), member.width)
    if member.width + step < 1:
        return None
    return ps.ArchSpec(member.family, member.depth, member.width + step)


def smallest(row: ps.PlannedDesign, single: ps.PlannedDesign) -> ps.ArchSpec:
    """The smallest member the row's class allows next to this single network."""
    info = ps.get_family(row.family)
    if row.design_class is WEQ:
        return ps.ArchSpec(info.name, info.min_depth, single.member.width)
    return ps.ArchSpec(info.name, single.member.depth, 1)


def check_le(rows: list[ps.PlannedDesign]) -> None:
    """Under 'le' each feasible row fits and its next size up does not."""
    single = rows[0]
    assert single.design_class is SINGLE
    for row in rows:
        budget = row.budget_params
        if not row.feasible:
            assert row.member is None and row.member_params is None and row.total_params is None
            assert row.reason and "exceeds the budget" in row.reason
            assert total(row.num_members, smallest(row, single)) > budget
            continue
        assert row.reason is None
        assert row.member_params == ps.count_params(row.member)
        assert row.total_params == row.num_members * row.member_params <= budget
        assert row.ratio == row.total_params / budget
        assert total(row.num_members, resized(row, +1)) > budget, row.design.name
        # deq members keep the single network's depth, weq members its width.
        if row.design_class is DEQ:
            assert row.member.depth == single.member.depth
        if row.design_class is WEQ:
            assert row.member.width == single.member.width


def check_nearest(rows: list[ps.PlannedDesign]) -> None:
    """Under 'nearest' no neighbouring size is closer to the budget (ties go to the smaller).

    Totals grow with the knob, so the distance to the budget has one minimum: beating both
    neighbours means beating every size.
    """
    for row in rows:
        assert row.feasible, row.reason
        budget, k = row.budget_params, row.num_members
        distance = abs(row.total_params - budget)
        assert distance <= abs(total(k, resized(row, +1)) - budget), row.design.name
        below = resized(row, -1)
        if below is not None:
            assert distance < abs(total(k, below) - budget), row.design.name


def rows_by_key(rows: list[ps.PlannedDesign]) -> dict:
    return {(row.design_class, row.num_members): row for row in rows}


def check_monotone(small: list[ps.PlannedDesign], large: list[ps.PlannedDesign]) -> None:
    """A larger budget never buys a smaller design of the same class, k and fixed knob."""
    small_rows, large_rows = rows_by_key(small), rows_by_key(large)
    assert small_rows.keys() == large_rows.keys()
    for key, before in small_rows.items():
        after = large_rows[key]
        if not before.feasible:
            continue
        if key[0] is WEQ and (not after.feasible or before.member.width != after.member.width):
            continue  # weq's width follows the single network's, so it is not held fixed
        assert after.feasible, after.reason
        assert after.total_params >= before.total_params, key


# --- budget mode, rule 'le' ----------------------------------------------------------------


def log_uniform_budgets(lowest: int) -> st.SearchStrategy[int]:
    """Budgets spread evenly in log scale from `lowest` to MAX_BUDGET.

    Plain `st.integers` favours the small end, where every design is a width-1 network.
    """
    fractions = st.floats(min_value=0.0, max_value=1.0)
    return fractions.map(lambda u: round(lowest * (MAX_BUDGET / lowest) ** u))


@st.composite
def budget_cases(draw, family: str, depths: tuple[int, ...]):
    """Two budgets from the family's smallest network up to MAX_BUDGET, and member counts."""
    info = ps.get_family(family)
    depth = draw(st.sampled_from(depths))
    lowest = ps.count_params(ps.ArchSpec(info.name, depth, 1))
    budgets = [draw(log_uniform_budgets(lowest)) for _ in range(2)]
    members = draw(st.lists(st.integers(2, 8), min_size=1, max_size=3, unique=True))
    return depth, sorted(budgets), members


@pytest.mark.parametrize(
    ("family", "depths", "max_examples"),
    [
        ("resnet", (8, 20, 32), 10),
        # Deep DenseNets are the slowest to profile (~0.1 s each), so fewer examples.
        ("densenet-bc", (10, 40, 100), 6),
        ("wrn", (10, 28), 4),
        ("vgg", (11, 16), 4),
    ],
)
def test_le_rows_fit_and_the_next_size_up_does_not(family, depths, max_examples):
    @settings(PROPERTY_SETTINGS, max_examples=max_examples)
    @given(budget_cases(family, depths))
    def check(case):
        depth, (small_budget, large_budget), members = case
        small = ps.plan_budget(family, small_budget, members, depth=depth)
        large = ps.plan_budget(family, large_budget, members, depth=depth)
        for rows, budget in ((small, small_budget), (large, large_budget)):
            assert [(r.design_class, r.num_members) for r in rows] == [(SINGLE, 1)] + [
                (cls, k) for k in sorted(members) for cls in (DEQ, WEQ)
            ]
            assert {r.budget_params for r in rows} == {budget}
            assert rows[0].member.depth == depth
            check_le(rows)
        check_monotone(small, large)

    check()


def test_plan_single_densenet_bc_40():
    # The study's method: S = DenseNet-BC-40-12 sets the budget, members match |S|.
    rows = ps.plan_single(ps.parse_arch("densenet-bc-40-12"), [4, 6, 8])
    assert {row.budget_params for row in rows} == {176_122}
    assert rows[0].member.name == "densenet-bc-40-12"
    assert rows[0].total_params == 176_122
    check_le(rows)
    assert all(row.total_params <= 176_122 for row in rows if row.feasible)


# --- rules 'nearest' and 'tol' --------------------------------------------------------------


@settings(PROPERTY_SETTINGS, max_examples=8)
@given(
    depth=st.sampled_from((8, 14, 20)),
    budget=log_uniform_budgets(20_000),
    members=st.lists(st.integers(2, 8), min_size=1, max_size=3, unique=True),
)
def test_nearest_picks_the_closer_neighbour(depth, budget, members):
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
    nearest = rows_by_key(ps.plan_single(single, members, match="nearest"))
    for row in rows:
        assert row.match_rule == rule
        closest = nearest[(row.design_class, row.num_members)]
        if row.feasible:
            assert abs(row.ratio - 1) <= tolerance
            assert row.member == closest.member  # the nearest size, accepted
        else:
            assert row.member is None
            assert "off the budget" in row.reason and "tolerance" in row.reason
            assert abs(closest.ratio - 1) > tolerance  # even the nearest size misses


def test_tol_five_percent_for_resnet20():
    rows = ps.plan_single(ps.parse_arch("resnet-20"), [2, 3, 4, 5, 6, 7, 8], match="tol:0.05")
    for row in rows:
        if row.feasible:
            assert abs(row.total_params / 272_474 - 1) <= 0.05
        else:
            assert "off the budget (tolerance ±5.0%)" in row.reason


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
