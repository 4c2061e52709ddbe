"""Quantities users type, parsed in one place: parameter budgets ('1.5M'), member counts
('2,4,8'), matching tolerances ('0.9,1.0'), durations ('1h', '90s') and sizes ('4GB', '512MiB').

Budgets round-trip: `parse_budget(format_budget(n)) == n`. Budgets and sizes are also
written back here (`format_budget`, `format_bytes`), so the terminal and the report agree.
"""

from __future__ import annotations

import re
from decimal import Decimal

from paramsplit.errors import BudgetError, SpecError, UsageError

# Bounds on what a user can ask for, so that a typo fails at once instead of planning for
# minutes. 1 T parameters are 4 TB of fp32 weights, more than any one machine holds.
MAX_BUDGET_PARAMS = 10**12


_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}
# Digits, optionally grouped by thousands with commas ("1,000,000") or by underscores.
_BUDGET_PATTERN = re.compile(
    r"^(?P<number>(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+(?:_[0-9]+)*)(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)"
    r"(?P<suffix>[kmgb]?)$"
)


def parse_budget(text: str | int) -> int:
    """Parse a parameter budget: `1.5M`, `250k`, `2e6`, `1,000,000`, `1_000_000`."""
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise BudgetError(f"budget must be a whole number or text such as '1.5M', got {text!r}")
    if isinstance(text, int):
        value = text
    else:
        cleaned = text.strip().lower().replace(" ", "")
        match = _BUDGET_PATTERN.match(cleaned)
        if not match:
            raise BudgetError(
                f"cannot parse budget '{text}'; expected a parameter count such as "
                "'1.5M', '250k', '2e6' or '1,000,000'"
            )
        # Decimal, not float: "2.5000005M" must be caught as a fraction, and counts past
        # 2**53 must stay exact.
        exact = Decimal(match["number"].replace(",", "").replace("_", ""))
        # Bounded before any arithmetic: '1e999999999' must not become a billion-digit int.
        if exact.adjusted() > len(str(MAX_BUDGET_PARAMS)):
            raise _too_large(text)
        exact *= _SUFFIXES[match["suffix"]]
        if exact != exact.to_integral_value():
            raise BudgetError(f"budget '{text}' is not a whole number of parameters")
        value = int(exact)
    if value <= 0:
        raise BudgetError(f"budget must be a positive number of parameters, got '{text}'")
    if value > MAX_BUDGET_PARAMS:
        raise _too_large(text)
    return value


def _too_large(text: str | int) -> BudgetError:
    return BudgetError(
        f"budget '{text}' is above the largest supported, {format_budget(MAX_BUDGET_PARAMS)} "
        "parameters (4 TB of fp32 weights, more than any one machine holds)"
    )


def format_budget(value: int) -> str:
    """The shortest exact text for a parameter count: 1000000 -> '1M', 272474 -> '272.474k'."""
    for suffix, scale in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if value >= scale:
            whole, rest = divmod(value, scale)
            if rest == 0:
                return f"{whole}{suffix}"
            decimals = f"{rest:0{len(str(scale)) - 1}d}".rstrip("0")
            if len(decimals) <= 3:
                return f"{whole}.{decimals}{suffix}"
    return str(value)


def split_budgets(text: str) -> list[str]:
    """'100k,300k,1M' -> three budgets; a 3-digit group continues a thousands-separated
    number, so '1,000,000,2M' is 1,000,000 and 2M."""
    parts: list[str] = []
    for token in text.replace(" ", "").split(","):
        if parts and len(token) == 3 and token.isdigit() and parts[-1][-1].isdigit():
            parts[-1] += "," + token
        elif token:
            parts.append(token)
    return parts


def parse_members(text: str) -> list[int]:
    """Parse a list of member counts: `2,4,8`."""
    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise UsageError(f"cannot parse member counts '{text}'; expected e.g. '2,4,8'") from None
    if not values:
        raise UsageError("no member counts given; expected e.g. '2,4,8'")
    bad = [v for v in values if v < 1]
    if bad:
        raise SpecError(f"number of members must be >= 1, got {bad[0]}")
    return sorted(set(values))


def parse_tolerance(text: str) -> tuple[float, float]:
    """Parse a matching tolerance `LOW,HIGH` of ratios total / |S|, e.g. `0.9,1.0`."""
    parts = text.replace(" ", "").split(",")
    try:
        low, high = (float(part) for part in parts)
    except ValueError:
        raise UsageError(
            f"--match-tolerance must be two ratios LOW,HIGH of total / |S| such as 0.9,1.0, "
            f"got '{text}'"
        ) from None
    if not 0 < low <= 1 <= high:
        raise UsageError(
            f"--match-tolerance must satisfy 0 < LOW <= 1 <= HIGH, got '{text}' (e.g. 0.9,1.0)"
        )
    return low, high


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
# Decimal (kB, MB, GB) and binary (KiB, MiB, GiB) units, as the user wrote them.
_BYTE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[a-z]*)$")


def _parse(text: str, units: dict[str, int], what: str, example: str) -> float:
    match = _QUANTITY.match(text.strip().lower())
    if not match or match["unit"] not in units:
        allowed = ", ".join(u for u in units if u)
        raise UsageError(
            f"cannot parse {what} '{text}'; expected e.g. {example} (units: {allowed})"
        )
    value = float(match["number"]) * units[match["unit"]]
    if value <= 0:
        raise UsageError(f"{what} must be positive, got '{text}'")
    return value


def parse_duration_s(text: str) -> float:
    """Seconds in '1h', '30m', '90s', '1.5h' or a plain number of seconds."""
    return _parse(text, _DURATION_UNITS, "duration", "'1h', '30m' or '90s'")


def parse_bytes(text: str) -> int:
    """Bytes in '4GB', '512MiB', '1.5GB' or a plain number of bytes."""
    return int(_parse(text, _BYTE_UNITS, "memory size", "'4GB' or '512MiB'"))


BYTES_PER_MIB = 2**20


def format_bytes(value: int | None) -> str:
    """Bytes in binary units, as torch and nvidia-smi report memory: '1.5 MiB', '12 KiB';
    '—' for a size not measured. One rule for the terminal and the report."""
    if value is None:
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", BYTES_PER_MIB), ("KiB", 2**10)):
        if value >= scale:
            amount = value / scale  # 1000-1023 MiB: not "1e+03 MiB"
            return f"{amount:.3g} {unit}" if amount < 999.5 else f"{amount:.0f} {unit}"
    return f"{value} B"
