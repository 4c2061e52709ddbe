"""How the answer's numbers read: one place, so that the terminal, the report's tables and
its figures agree (an accuracy has the same decimals everywhere, memory the same unit).

Every formatter returns `MISSING` for a quantity that was not measured, never a zero. In the
report units live in the column headers, so cells hold bare numbers; the terminal adds them.
"""

from __future__ import annotations

from paramsplit.analysis.compare import TimeToTarget
from paramsplit.analysis.stats import SeedTest, Stat
from paramsplit.quantities import BYTES_PER_MIB

MISSING = "—"
# Memory in binary units everywhere: MiB, as torch and nvidia-smi report device memory (the
# terminal's sizes, `paramsplit.quantities.format_bytes`, are binary too).
MEMORY_UNIT, BYTES_PER_MEMORY_UNIT = "MiB", BYTES_PER_MIB


def short_budget(params: float) -> str:
    """A parameter count to three significant figures: 50000 -> '50k', 1272474 -> '1.27M'."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if params >= scale:
            return f"{params / scale:.3g}{suffix}"
    return f"{params:.3g}"


def number(value: float | None, digits: int = 3) -> str:
    """`digits` significant figures, but never scientific notation: 0.0123, 4.56, 1,234."""
    if value is None:
        return MISSING
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def accuracy_text(stat: Stat | None) -> str:
    """Accuracy in percent with two decimals, as gains in points have: '98.62 ± 0.31'. Two,
    because one test image in 10,000 is 0.01 points and designs can differ by a few."""
    if stat is None:
        return MISSING
    mean = f"{stat.mean * 100:.2f}"
    return mean if stat.std is None else f"{mean} ± {stat.std * 100:.2f}"


def cost_text(stat: Stat | None, scale: float = 1.0) -> str:
    """A cost (time, memory) as its median over seeds: '1.23'."""
    return MISSING if stat is None else number(stat.median * scale)


def median_of(stat: Stat | None, scale: float = 1.0) -> float | None:
    return None if stat is None else stat.median * scale


def ratio_text(value: float | None) -> str:
    """'1.23×': ensemble cost over the single network's."""
    return MISSING if value is None else f"{value:.2f}×"


def points_text(gain: float) -> str:
    """An accuracy difference in percentage points, signed: '+1.2'."""
    return f"{round(gain * 100, 2) + 0.0:+.2f}"  # + 0.0: a rounded -0.00 prints as +0.00


def p_value_text(p_value: float | None) -> str:
    if p_value is None:
        return MISSING
    return "< 0.001" if p_value < 0.001 else f"{p_value:.3f}"


def mean_of(stat: Stat | None, scale: float = 1.0) -> float | None:
    """The mean to sort a column by (None sorts last)."""
    return None if stat is None else stat.mean * scale


def interval_text(test: SeedTest) -> str:
    """The gain's interval in points: '[+0.12, +0.88]'; a side too few seeds cannot bound is
    '−∞' or '+∞'."""
    low = "−∞" if test.gain_low is None else points_text(test.gain_low)
    high = "+∞" if test.gain_high is None else points_text(test.gain_high)
    return f"[{low}, {high}]"


def time_text(time: TimeToTarget | None) -> str:
    """'2.1 (3/3 seeds)', 'not reached (1/3 seeds)': a median over seeds, and how many got
    there."""
    if time is None:
        return MISSING
    shown = "not reached" if time.median_s is None else number(time.median_s)
    return f"{shown} ({time.reached_text} seeds)"
