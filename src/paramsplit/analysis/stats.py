"""Seed statistics: mean ± sample std, and one test that decides every "more accurate".

The rule, and why. Studies have few seeds (2–5), where a t-test misleads: two seeds that
agree exactly give it a zero variance and p = 0, so [.9528, .9528] against [.95, .95] came
out "significant" while a larger gain with some spread got p = 0.146. So every comparison
uses one exact test, the one-sided permutation test on the difference of means: the p-value
is the share of the C(n+m, n) ways of splitting the n + m seeds into two groups whose
difference is at least the observed one. It assumes nothing about the spread, and zero
spread is no special case. Its price is said plainly, never hidden: p cannot go below
1 / C(n+m, n) — 1/2 with 1 seed on each side, 1/6 with 2 vs 2, 1/20 with 3 vs 3, 1/70 with
4 vs 4. Where that floor is above alpha no outcome could be significant: that is "not enough
seeds to tell", its own result, never "the single network is as good or better".

Significant means p ≤ alpha (a valid p-value is ≤ alpha with probability at most alpha when
nothing differs), and only ever for a win: a gain within `TIE_TOLERANCE` is a tie whatever
its p-value. The interval for the gain inverts the same test (the shifts δ of the ensemble's
seeds that the test at alpha would not reject, one bound from each side), so it is a
1 − 2·alpha interval that excludes 0 exactly when the win is significant, and is unbounded
exactly when there are not enough seeds: the two can never disagree. With more seeds than
`MAX_EXACT_SPLITS` splits, a fixed random sample of splits stands in for all of them (a
Monte Carlo permutation test, still valid, seeded so that a report is reproducible).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Means of test accuracies over equal test sets differ by at least 1/(test images × seeds),
# 1e-5 for 10k test images and 10 seeds; anything closer is rounding: accuracies computed in
# float32 (7 digits) came 2e-8 apart for equal counts of correct images. A tie.
TIE_TOLERANCE = 1e-6
MAX_EXACT_SPLITS = 20_000  # 8 vs 8 seeds is 12,870 splits; 9 vs 9 is 48,620
NUM_RANDOM_SPLITS = 9_999
SPLITS_SEED = 0


def beats(a: float, b: float) -> bool:
    """a > b by more than floating-point noise (a tie is not a win)."""
    return a - b > TIE_TOLERANCE


def ties(a: float, b: float) -> bool:
    """Neither beats the other: a and b differ by floating-point noise at most."""
    return not beats(a, b) and not beats(b, a)


@dataclass(frozen=True)
class Stat:
    """A quantity over seeds. `std` is the sample standard deviation (n − 1), None for n < 2.

    Accuracy is compared by its mean (and the per-seed `values`, which the permutation test
    reads); costs (times, memory) by their `median`, which one measurement disturbed by
    other work on the machine cannot drag: latency measured beside a training worker came
    out 2× in one seed of three.
    """

    mean: float
    std: float | None
    n: int
    median: float
    values: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "median": self.median}


def stat_of(values: Iterable[float | int | None]) -> Stat | None:
    """Mean ± std of the values that were measured; None if none were."""
    present = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not present:
        return None
    std = statistics.stdev(present) if len(present) > 1 else None
    return Stat(
        statistics.fmean(present), std, len(present), statistics.median(present), tuple(present)
    )


@dataclass(frozen=True)
class SeedTest:
    """The permutation test that mean(a) > mean(b), and the interval it gives mean(a) − mean(b).

    `gain_low`/`gain_high` are None where the test cannot bound that side (too few seeds).
    """

    p_value: float
    smallest_p_value: float  # the floor these numbers of seeds allow
    gain_low: float | None
    gain_high: float | None
    alpha: float
    num_splits: int
    exact: bool  # all splits enumerated (else a seeded random sample of them)
    num_seeds: tuple[int, int]

    @property
    def confidence(self) -> float:
        """The interval's coverage: each bound is a one-sided test at alpha."""
        return 1 - 2 * self.alpha

    @property
    def enough_seeds(self) -> bool:
        """Whether any outcome could be significant at alpha with these numbers of seeds."""
        return self.smallest_p_value <= self.alpha

    def to_dict(self) -> dict[str, Any]:
        return {
            "p_value": self.p_value,
            "smallest_p_value": self.smallest_p_value,
            "enough_seeds": self.enough_seeds,
            "gain_low": self.gain_low,
            "gain_high": self.gain_high,
            "confidence": self.confidence,
            "num_splits": self.num_splits,
            "exact": self.exact,
        }


def _group_masks(num_a: int, num_b: int) -> tuple[np.ndarray, bool]:
    """Every way (or a seeded sample of ways) to pick group a's seats among n + m seeds,
    without the observed split itself: a boolean matrix [splits, n + m]."""
    total = num_a + num_b
    num_splits = math.comb(total, num_a)
    if num_splits <= MAX_EXACT_SPLITS:
        masks = np.zeros((num_splits, total), dtype=bool)
        for row, seats in enumerate(itertools.combinations(range(total), num_a)):
            masks[row, list(seats)] = True
        return masks[1:], True  # combinations() yields the observed split (0..n-1) first
    rng = np.random.default_rng(SPLITS_SEED)
    order = np.argsort(rng.random((NUM_RANDOM_SPLITS, total)), axis=1)
    masks = np.zeros((NUM_RANDOM_SPLITS, total), dtype=bool)
    np.put_along_axis(masks, order[:, :num_a], True, axis=1)
    return masks, False


def _kth_smallest(values: np.ndarray, k: int) -> float | None:
    """The k-th smallest (1-based) of `values`; None for k = 0 (no bound)."""
    if k == 0:
        return None
    return float(np.partition(values, k - 1)[k - 1])


def seed_test(a: Sequence[float], b: Sequence[float], alpha: float) -> SeedTest:
    """Exact one-sided permutation test that mean(a) > mean(b), and its gain interval.

    A split S puts n of the pooled seeds in group a; T_S is its difference of means. Shifting
    a's seeds by δ moves T_S − T_observed linearly, by δ·(1 − j/n + (n − j)/m) for a split
    that keeps j of a's seeds, so each split turns from "as extreme" to "less extreme" at
    one δ: the interval's bounds are order statistics of those δs.
    """
    num_a, num_b = len(a), len(b)
    if num_a == 0 or num_b == 0:
        raise ValueError("a permutation test needs at least one value on each side")
    pooled = np.array([*a, *b], dtype=float)
    masks, exact = _group_masks(num_a, num_b)
    num_splits = len(masks) + 1  # with the observed split, which always counts
    observed = statistics.fmean(a) - statistics.fmean(b)
    sums_a = masks.astype(float) @ pooled
    differences = sums_a / num_a - (pooled.sum() - sums_a) / num_b  # T_S, [splits]
    kept = masks[:, :num_a].sum(axis=1)  # j: how many of a's own seeds each split keeps
    slope = 1 - kept / num_a + (num_a - kept) / num_b  # 0 only for the observed split
    with np.errstate(divide="ignore", invalid="ignore"):
        # δ from which the split stops counting as extreme (towards each side), with the tie
        # tolerance on the conservative side; the observed split, if sampled, always counts.
        turn_low = np.where(slope > 0, (observed - differences - TIE_TOLERANCE) / slope, -np.inf)
        turn_high = np.where(slope > 0, (observed - differences + TIE_TOLERANCE) / slope, np.inf)
    as_extreme = int(np.count_nonzero(turn_low <= 0.0))
    p_value = (1 + as_extreme) / num_splits
    # The fewest other splits that must count before p exceeds alpha: rank of each bound.
    rank = 0
    while (1 + rank) / num_splits <= alpha and rank < len(masks):
        rank += 1
    high = _kth_smallest(-turn_high, rank)
    return SeedTest(
        p_value=p_value,
        smallest_p_value=1 / num_splits,
        gain_low=_kth_smallest(turn_low, rank),
        gain_high=None if high is None else -high,
        alpha=alpha,
        num_splits=num_splits,
        exact=exact,
        num_seeds=(num_a, num_b),
    )


def p_value_greater(a: Stat, b: Stat) -> float | None:
    """The one-sided permutation p-value that mean(a) > mean(b) (see `seed_test`); None
    where a side has no per-seed values."""
    if not a.values or not b.values:
        return None
    return seed_test(a.values, b.values, alpha=0.05).p_value
