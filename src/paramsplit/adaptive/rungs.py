"""Early verdicts: stop a comparison's ensemble runs at a rung (¼, ½ of the epochs) when
the verdict is already settled, under a conservative rule. Under the bisection search only:
the exact search never stops a run (a stop at a rung can change a verdict).

The final verdict compares test accuracy at the best validation epoch; at a rung only the
validation curves exist. Wins can emerge late (after epoch 116 of 120 for some DenseNets of
the study paramsplit generalises), so a rung's verdict must beat how far the gap can still
move. That bound is measured on the study itself: on the comparisons at both ends of every
ladder (always trained to the end), how far the final test-accuracy gain ended up from the
validation gain at the same rung. The rule stops only when all of these hold:
- the calibration exists: at least `MIN_CALIBRATION` end comparisons are finished;
- the gap at the rung (mean over seeds of each seed's best validation accuracy so far) is
  more than `SAFETY` times the largest movement seen (and at least `MIN_MARGIN`), in the
  direction of the verdict;
- the gap is not closing: extrapolated linearly from half the rung to the last epoch, it is
  still beyond that margin on the same side (curves that converge may cross later);
- the seeds agree, by the analysis's permutation test at the sequential-seeds level
  (`seeds.CLEAR_ALPHA`): every ensemble seed beats every single-network seed, or the reverse.
With `require_significance` only non-wins are decided early (a significant win needs the
final test accuracies). Never at the question budget: the recommendation is measured in
full. `replay` reports how often an early verdict disagreed with the full study.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from paramsplit.analysis import seed_test
from paramsplit.analysis.records import RunRecord

RUNG_FRACTIONS = (0.25, 0.5)
MIN_CALIBRATION = 3
SAFETY = 2.0
MIN_MARGIN = 0.01  # 1 point: however calm the calibration, a smaller gap never settles


def rung_epochs(epochs: int, fractions: Sequence[float] = RUNG_FRACTIONS) -> tuple[int, ...]:
    """The epochs at which an early verdict may stop a run: at least 1, before the last."""
    return tuple(sorted({max(1, round(f * epochs)) for f in fractions} - {epochs}))


def best_val_until(record: RunRecord, epoch: int) -> float | None:
    """The run's best validation accuracy in epochs 1..epoch; None if its curve is shorter."""
    values = [p.val_accuracy for p in record.curve if p.epoch <= epoch]
    present = [v for v in values if v is not None]
    if len(values) < epoch or len(present) < len(values):
        return None
    return max(present)


def val_gap(ensemble: Sequence[RunRecord], single: Sequence[RunRecord], epoch: int) -> float | None:
    """Ensemble minus single network, mean over seeds of each one's best validation accuracy
    up to `epoch`; None unless every run has its curve that far."""
    sides = []
    for runs in (ensemble, single):
        values = [best_val_until(r, epoch) for r in runs]
        if not values or any(v is None for v in values):
            return None
        sides.append(statistics.fmean(v for v in values if v is not None))
    return sides[0] - sides[1]


def movement(
    ensemble: Sequence[RunRecord], single: Sequence[RunRecord], epoch: int, accuracy: str
) -> float | None:
    """How far a finished comparison's test-accuracy gain ended up from its validation gap
    at `epoch`: one calibration sample."""
    gap = val_gap(ensemble, single, epoch)
    finals = [[r.accuracy(accuracy) for r in runs] for runs in (ensemble, single)]
    if gap is None or any(v is None for side in finals for v in side):
        return None
    gain = statistics.fmean(v for v in finals[0] if v is not None) - statistics.fmean(
        v for v in finals[1] if v is not None
    )
    return abs(gain - gap)


@dataclass(frozen=True)
class EarlyVerdict:
    """A verdict settled at a rung, and the figures that settled it (fractions)."""

    win: bool
    epoch: int
    gap: float
    extrapolated: float
    margin: float

    @property
    def reason(self) -> str:
        what = "win" if self.win else "loss"
        return (
            f"early {what} at epoch {self.epoch}: validation gap {self.gap * 100:+.2f} pt "
            f"(heading for {self.extrapolated * 100:+.2f}), beyond the ±{self.margin * 100:.2f} "
            "pt this study's gaps moved after this rung"
        )


def early_verdict(
    ensemble: Sequence[RunRecord],
    single: Sequence[RunRecord],
    epoch: int,
    epochs: int,
    calibration: Sequence[float],
    *,
    require_significance: bool,
    clear_alpha: float,
    safety: float = SAFETY,
) -> EarlyVerdict | None:
    """The verdict at rung `epoch` of `epochs` if the rule (see the module) settles it."""
    if len(calibration) < MIN_CALIBRATION:
        return None
    gap = val_gap(ensemble, single, epoch)
    half = max(1, epoch // 2)
    earlier = val_gap(ensemble, single, half)
    if gap is None or earlier is None:
        return None
    slope = (gap - earlier) / (epoch - half) if epoch > half else 0.0
    extrapolated = gap + slope * (epochs - epoch)
    margin = max(MIN_MARGIN, safety * max(calibration))
    e_values = [best_val_until(r, epoch) or 0.0 for r in ensemble]
    s_values = [best_val_until(r, epoch) or 0.0 for r in single]
    wins = gap > margin and extrapolated > margin and not require_significance
    if wins and seed_test(e_values, s_values, clear_alpha).p_value <= clear_alpha:
        return EarlyVerdict(True, epoch, gap, extrapolated, margin)
    loses = gap < -margin and extrapolated < -margin
    if loses and seed_test(s_values, e_values, clear_alpha).p_value <= clear_alpha:
        return EarlyVerdict(False, epoch, gap, extrapolated, margin)
    return None
