"""Seed statistics: mean ± sample standard deviation, and Welch's t-test between two designs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

# Means of test accuracies over equal test sets differ by at least 1/(test images × seeds),
# 1e-5 for 10k test images and 10 seeds; anything closer is rounding: accuracies computed in
# float32 (7 digits) came 2e-8 apart for equal counts of correct images. A tie.
TIE_TOLERANCE = 1e-6


def beats(a: float, b: float) -> bool:
    """a > b by more than floating-point noise (a tie is not a win)."""
    return a - b > TIE_TOLERANCE


@dataclass(frozen=True)
class Stat:
    """A quantity over seeds. `std` is the sample standard deviation (n − 1), None for n < 2.

    Accuracy is compared by its mean (with `std` for the t-test); costs (times, memory) by
    their `median`, which one measurement disturbed by other work on the machine cannot
    drag: latency measured beside a training worker came out 2× in one seed of three.
    """

    mean: float
    std: float | None
    n: int
    median: float

    def to_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "median": self.median}


def stat_of(values: Iterable[float | int | None]) -> Stat | None:
    """Mean ± std of the values that were measured; None if none were."""
    present = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not present:
        return None
    std = statistics.stdev(present) if len(present) > 1 else None
    return Stat(statistics.fmean(present), std, len(present), statistics.median(present))


def p_value_greater(a: Stat, b: Stat) -> float | None:
    """One-sided Welch's t-test that mean(a) > mean(b); None without two seeds on each side.

    Two sides with no spread at all are decided by their means (p 0 or 1): seeds that agree
    exactly leave no doubt to test.
    """
    if a.std is None or b.std is None:
        return None
    var_a, var_b = a.std**2 / a.n, b.std**2 / b.n
    if var_a + var_b == 0:
        return 0.0 if a.mean > b.mean else 1.0
    t = (a.mean - b.mean) / math.sqrt(var_a + var_b)
    # Welch–Satterthwaite degrees of freedom.
    dof = (var_a + var_b) ** 2 / (var_a**2 / (a.n - 1) + var_b**2 / (b.n - 1))
    from scipy.stats import t as student_t  # imported here: only significance needs it

    return float(student_t.sf(t, dof))
