"""Budget bisection: where on a ladder of budgets an ensemble starts to win and keeps winning.

The EST is the budget after the highest one where the ensemble does not win, provided it
wins at the largest. So only the highest non-win matters, and the budgets below it never
change the EST. Assuming verdicts are monotone in budget (non-wins, then wins), a
bisection finds it with about log₂(n) budgets instead of n:

1. Both ends are measured first, always.
2. The largest is not a win: there is no EST, whatever lies below. Both ends win: the
   middle budget is measured too, as a check; if it wins, the ensemble wins throughout
   (EST ≤ the smallest), as far as monotone verdicts go.
3. Otherwise the bracket is (highest non-win, lowest win above it); its middle budget is
   measured next, until the two are neighbours on the ladder: the upper one is the EST.

A win *below* a non-win means the verdicts are not monotone, and the assumption that lets
budgets be skipped is broken. The search then fills in the ladder above the highest
non-win (the only budgets that decide the EST) and says so. Budgets that have no comparison
(a run failed) are left out of the ladder.

This module sees indices and verdicts only (True: a win, False: not a win, None: measured
but not settled yet): what a verdict is, and when it is settled, is `seeds` and `rungs`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

BISECTION = "bisection"
FILL_IN = "fill-in"


@dataclass(frozen=True)
class Search:
    """What the search wants next: ladder indices to measure now, or that it is done.

    `probe` holds only indices not measured yet; `done` says no verdict it knows or awaits
    can change the EST any more. `mode` is `bisection` or `fill-in`; `note` says why.
    """

    probe: tuple[int, ...]
    done: bool
    mode: str
    note: str


def _middle(candidates: list[int], low: int, high: int) -> int:
    """The candidate closest to the middle of (low, high); the lower of two on a geometric
    ladder, where the index is the log of the budget."""
    centre = (low + high) / 2
    return min(candidates, key=lambda i: (abs(i - centre), i))


def search(
    num_budgets: int, verdicts: Mapping[int, bool | None], gaps: Collection[int] = ()
) -> Search:
    """The next step of the bisection over ladder indices 0..num_budgets-1.

    `verdicts`: the indices measured so far, each True (a win), False (not a win) or None
    (not settled yet); `gaps`: indices without a comparison (left out of the ladder).
    """
    usable = [i for i in range(num_budgets) if i not in gaps]
    if not usable:
        return Search((), True, BISECTION, "no budget with a comparison")
    bottom, top = usable[0], usable[-1]
    ends = [i for i in (top, bottom) if i not in verdicts]
    if ends or verdicts.get(top) is None or verdicts.get(bottom) is None:
        return Search(tuple(ends), False, BISECTION, "measuring both ends of the ladder")
    wins = sorted(i for i, v in verdicts.items() if v is True)
    non_wins = sorted(i for i, v in verdicts.items() if v is False)
    if not verdicts[top]:
        shape = " (not monotone: it wins lower down)" if wins else ""
        return Search((), True, BISECTION, f"no win at the largest budget: no EST{shape}")
    if not non_wins:
        inside = [i for i in usable if bottom < i < top]
        if not inside or any(i in verdicts for i in inside):
            waiting = any(verdicts.get(i, False) is None for i in inside)
            if waiting:
                return Search((), False, BISECTION, "wins at both ends; checking the middle")
            return Search((), True, BISECTION, "wins at both ends and in the middle")
        middle = _middle(inside, bottom, top)
        return Search((middle,), False, BISECTION, "wins at both ends; checking the middle")
    highest_non_win = non_wins[-1]
    above = [i for i in usable if highest_non_win < i < top]
    if wins[0] < highest_non_win:
        missing = tuple(i for i in above if i not in verdicts)
        waiting = any(verdicts.get(i, False) is None for i in above)
        note = "not monotone: a win below a non-win; filling in the ladder above the non-win"
        return Search(missing, not missing and not waiting, FILL_IN, note)
    lowest_win = min(i for i in wins if i > highest_non_win)
    bracket = [i for i in usable if highest_non_win < i < lowest_win]
    if any(verdicts.get(i, False) is None for i in bracket):
        return Search((), False, BISECTION, "waiting for the middle of the bracket")
    unmeasured = [i for i in bracket if i not in verdicts]
    if not unmeasured:
        return Search((), True, BISECTION, "bracket closed: the EST is its upper end")
    probe = _middle(unmeasured, highest_non_win, lowest_win)
    return Search((probe,), False, BISECTION, "bisecting the bracket")
