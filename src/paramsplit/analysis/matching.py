"""Whether an ensemble is matched to the single network it is compared with.

An ensemble is compared with the single network of its budget; the comparison is fair only
when the ensemble has about as many parameters. The parameter ratio (ensemble total / single
total) is shown with every comparison; one outside the tolerance is flagged as unmatched,
and `--matched-only` leaves such comparisons out of the EST.
"""

from __future__ import annotations

from paramsplit.errors import UsageError

# shared with the planner: the planner matches ensembles to |S| under `le` (ratio ≤ 1), and
# integer knobs leave shortfalls; 0.90 is the floor the issue sets for densenet-bc, whose
# growth rates are small integers (resnet, wrn and vgg reach 0.95).
DEFAULT_MATCH_TOLERANCE = (0.90, 1.00)


def is_matched(ratio: float, tolerance: tuple[float, float] = DEFAULT_MATCH_TOLERANCE) -> bool:
    """Whether `ratio` (ensemble params / single params) lies within `tolerance`, bounds
    included."""
    low, high = tolerance
    return low <= ratio <= high


def tolerance_text(tolerance: tuple[float, float]) -> str:
    """'[0.90, 1.00]'."""
    return f"[{tolerance[0]:.2f}, {tolerance[1]:.2f}]"


def parse_match_tolerance(text: str) -> tuple[float, float]:
    """'0.9,1.0' -> (0.9, 1.0): the lowest and highest parameter ratio that count as matched."""
    parts = text.split(",")
    try:
        low, high = (float(part) for part in parts)
    except ValueError:
        raise UsageError(
            f"--match-tolerance must be two ratios LOW,HIGH such as 0.9,1.0, got '{text}'"
        ) from None
    if not 0 < low <= high:
        raise UsageError(
            f"--match-tolerance must have 0 < LOW <= HIGH, got '{text}' (e.g. 0.9,1.0)"
        )
    return low, high


def check_tolerance(tolerance: tuple[float, float]) -> tuple[float, float]:
    low, high = tolerance
    if not 0 < low <= high:
        raise UsageError(f"match tolerance must have 0 < low <= high, got {tolerance}")
    return (float(low), float(high))
