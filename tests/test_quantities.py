"""Quantities a user types: budgets, member counts, tolerances, durations and sizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import paramsplit as ps
from paramsplit.errors import UsageError
from paramsplit.quantities import (
    format_bytes,
    parse_bytes,
    parse_duration_s,
    parse_tolerance,
    split_budgets,
)

# --- budgets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.5M", 1_500_000),
        ("250k", 250_000),
        ("2e6", 2_000_000),
        ("1,000,000", 1_000_000),
        ("1_000_000", 1_000_000),
        (" 300K ", 300_000),
        ("272.474k", 272_474),
        ("1G", 10**9),
        ("42", 42),
        (123_456, 123_456),
    ],
)
def test_parse_budget_accepts(text, expected):
    assert ps.parse_budget(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "cannot parse budget 'abc'"),
        ("", "cannot parse budget ''"),
        ("-5", "cannot parse budget '-5'"),
        ("1.5X", "cannot parse budget '1.5X'"),
        ("0", "budget must be a positive number of parameters, got '0'"),
        (0, "budget must be a positive number of parameters, got '0'"),
        (-5, "budget must be a positive number of parameters, got '-5'"),
        ("1.2345k", "budget '1.2345k' is not a whole number of parameters"),
        ("0.5", "budget '0.5' is not a whole number of parameters"),
    ],
)
def test_parse_budget_rejects(text, message):
    with pytest.raises(ps.BudgetError, match=message):
        ps.parse_budget(text)


def test_user_errors_are_value_errors():
    # The scikit-learn convention: callers can catch ValueError without knowing our classes.
    with pytest.raises(ValueError, match="cannot parse budget 'abc'"):
        ps.parse_budget("abc")
    for error in (ps.UsageError, ps.UnknownFamilyError, ps.SpecError, ps.BudgetError):
        assert issubclass(error, ps.ParamSplitError)
    assert issubclass(ps.InputShapeError, ValueError)


@pytest.mark.parametrize("text", ["1000000.5", "2.5000005M"])
def test_parse_budget_rejects_fractions_of_large_budgets(text):
    with pytest.raises(ps.BudgetError, match="is not a whole number of parameters"):
        ps.parse_budget(text)


def test_parse_budget_rejects_a_decimal_comma():
    with pytest.raises(ps.BudgetError, match="cannot parse budget '1,5M'"):
        ps.parse_budget("1,5M")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1_000_000, "1M"), (272_474, "272.474k"), (1_500_000, "1.5M"), (999, "999"), (10**9, "1G")],
)
def test_format_budget(value, expected):
    assert ps.format_budget(value) == expected


@given(st.integers(min_value=1, max_value=10**12))
def test_format_budget_round_trips(value):
    assert ps.parse_budget(ps.format_budget(value)) == value


def test_budget_lists_keep_thousands_separators():
    assert split_budgets("100k,300k,1M") == ["100k", "300k", "1M"]
    assert split_budgets("1,000,000,2M") == ["1,000,000", "2M"]
    assert split_budgets("25000, 50000") == ["25000", "50000"]


# --- member counts and matching tolerance -------------------------------------------------


def test_parse_members_sorts_and_deduplicates():
    assert ps.parse_members("8, 2,4,2") == [2, 4, 8]


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("2,0", ps.SpecError, "number of members must be >= 1, got 0"),
        ("a,b", ps.UsageError, "cannot parse member counts 'a,b'"),
        ("", ps.UsageError, "no member counts given"),
    ],
)
def test_parse_members_rejects(text, error, message):
    with pytest.raises(error, match=message):
        ps.parse_members(text)


def test_parse_tolerance():
    assert parse_tolerance("0.9,1.0") == (0.9, 1.0)
    assert parse_tolerance(" 0.95 , 1.05 ") == (0.95, 1.05)
    with pytest.raises(
        UsageError,
        match=r"--match-tolerance must be two ratios LOW,HIGH of total / \|S\| such as "
        r"0\.9,1\.0, got '0\.9'",
    ):
        parse_tolerance("0.9")
    with pytest.raises(UsageError, match=r"tolerance must satisfy 0 < LOW <= 1 <= HIGH, got"):
        parse_tolerance("0.9,0.99")


# --- durations and sizes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("1.5h", 5400), ("1d", 86400), ("42", 42)]
)
def test_durations_parse_to_seconds(text, seconds):
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize(
    ("text", "num_bytes"), [("4GB", 4 * 10**9), ("512MiB", 512 * 2**20), ("1.5kb", 1500), ("7", 7)]
)
def test_sizes_parse_to_bytes(text, num_bytes):
    assert parse_bytes(text) == num_bytes


def test_bad_durations_and_sizes_are_refused_with_the_allowed_units():
    with pytest.raises(UsageError, match=r"cannot parse duration '1 week'.*units: s, m, min, h, d"):
        parse_duration_s("1 week")
    with pytest.raises(UsageError, match="cannot parse memory size '4 parsecs'"):
        parse_bytes("4 parsecs")
    with pytest.raises(UsageError, match="memory size must be positive, got '0GB'"):
        parse_bytes("0GB")


@pytest.mark.parametrize(
    ("size_bytes", "text"),
    [
        (None, "—"),
        (512, "512 B"),
        (1536, "1.5 KiB"),
        (3 * 2**20, "3 MiB"),
        (1023 * 2**20, "1023 MiB"),  # not "1.02e+03 MiB"
        (int(1.25 * 2**30), "1.25 GiB"),
    ],
)
def test_sizes_are_written_in_binary_units(size_bytes, text):
    assert format_bytes(size_bytes) == text
    if size_bytes is not None and size_bytes >= 1024:
        assert parse_bytes(text.replace(" ", "")) == pytest.approx(size_bytes, rel=5e-3)
