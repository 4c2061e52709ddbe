"""Sequential seeds: a comparison starts with 2 seeds a side and gets more only while its
verdict is not clear, up to the study's seeds. Under the bisection search only: the exact
search judges every budget on every seed.

The verdict is the analysis's own (`Comparison.verdict`): by mean over seeds, a tie not
being a win, or, with `require_significance`, a significant win of the exact permutation
test. "Clear" reads the same permutation test (`stats.seed_test`) at a looser level,
`clear_alpha`, which must be reachable with 2 seeds a side, whose test cannot go below
p = 1/6:
- by mean: a win is clear when the test at `clear_alpha` says the ensemble is more accurate
  (with 2 vs 2 seeds and the default 1/3: at most one other split of the four seeds is as
  extreme); a non-win is clear when the same test says the single network is;
- with `require_significance`: a win is clear only once significant at the study's alpha
  (3 vs 3 seeds at the least); a non-win is clear as above.
Anything else gets one more seed a side, until the study's seeds run out; the verdict there
is the analysis's, clear or not. How often "clear with fewer seeds" disagrees with all the
seeds is what `replay` measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from paramsplit.analysis import Comparison, compare_to_single, seed_test, summarise
from paramsplit.analysis.records import RunRecord

MIN_SEEDS = 2
# With 2 vs 2 seeds p is 1/6, 1/3, 1/2...: 1/3 allows one of the other five splits to be as
# extreme. Measured on the 35 comparisons of a 12-budget digits study (3 seeds): the 2-seed
# verdict by mean agreed with all 3 seeds' in 27 of 27 cases with p ≤ 1/3, and in 6 of 8
# with p = 1/2.
CLEAR_ALPHA = 1 / 3


@dataclass(frozen=True)
class SeedsVerdict:
    """A comparison judged on the seeds it has: its verdict (win or not) and whether it is
    clear enough to stop adding seeds, with the reason in words."""

    comparison: Comparison
    win: bool
    clear: bool
    reason: str
    p_value: float = 1.0  # of the verdict's side: ensemble better for a win, single else


def compare(
    ensemble: Sequence[RunRecord],
    single: Sequence[RunRecord],
    accuracy: str,
    alpha: float,
    match_tolerance: tuple[float, float],
) -> Comparison | None:
    """The analysis's comparison of these finished runs; None if a side has none."""
    summaries = summarise([*ensemble, *single], accuracy)
    rows = compare_to_single(summaries, [*ensemble, *single], alpha=alpha,
                             match_tolerance=match_tolerance)  # fmt: skip
    return rows[0] if rows else None


def judge_seeds(
    comparison: Comparison, *, require_significance: bool, clear_alpha: float = CLEAR_ALPHA
) -> SeedsVerdict:
    """Win or not, and whether more seeds could still matter (see the module)."""
    ensemble = comparison.ensemble.accuracy.values
    single = comparison.single.accuracy.values
    win = comparison.verdict(require_significance) == "win"
    seeds = f"{len(ensemble)} vs {len(single)} seeds"
    if win:
        if require_significance:
            return SeedsVerdict(comparison, True, True, f"significant win, {seeds}")
        p = seed_test(ensemble, single, clear_alpha).p_value
        clear = p <= clear_alpha
        return SeedsVerdict(comparison, True, clear, f"win, p = {p:.3g}, {seeds}", p)
    p_other = seed_test(single, ensemble, clear_alpha).p_value
    clear = p_other <= clear_alpha
    what = comparison.verdict(require_significance)
    return SeedsVerdict(
        comparison, False, clear, f"{what}, p(single better) = {p_other:.3g}, {seeds}", p_other
    )
