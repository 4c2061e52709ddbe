"""Quantities users type with units: durations ('1h', '90s') and sizes ('4GB', '512MiB')."""

from __future__ import annotations

import re

from paramsplit.errors import UsageError

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
