"""Whether an ensemble is matched to the single network it is compared with.

An ensemble is compared with the single network of its budget; the comparison is fair only
when the ensemble has about as many parameters. The parameter ratio (ensemble total / single
total) is shown with every comparison; one outside the tolerance is flagged as unmatched,
and `--matched-only` leaves such comparisons out of the EST.
"""

from __future__ import annotations

from paramsplit.errors import UsageError
from paramsplit.quantities import parse_tolerance as parse_match_tolerance
from paramsplit.specs import MATCH_TOLERANCE as DEFAULT_MATCH_TOLERANCE
from paramsplit.specs import is_matched

# The rule has one home, `paramsplit.specs`, shared with the planner (which flags unmatched
# rows by it); these names are the analysis's spelling of it.
__all__ = [
    "DEFAULT_MATCH_TOLERANCE",
    "check_tolerance",
    "is_matched",
    "parse_match_tolerance",
    "tolerance_text",
]


def tolerance_text(tolerance: tuple[float, float]) -> str:
    """'[0.90, 1.00]'."""
    return f"[{tolerance[0]:.2f}, {tolerance[1]:.2f}]"


def check_tolerance(tolerance: tuple[float, float]) -> tuple[float, float]:
    low, high = tolerance
    if not 0 < low <= high:
        raise UsageError(f"match tolerance must have 0 < low <= high, got {tolerance}")
    return (float(low), float(high))
