"""Budget bisection: where on a ladder of budgets an ensemble starts to win and keeps winning.

The opt-in, cheaper search (`AdaptiveSettings.search = "bisection"`): it assumes verdicts
are monotone in budget, and where they are not it can get an EST wrong (measured: 0 of 3
ESTs right on a noisy 16-budget digits study). The default, `walk.walk_down`, is exact.

The EST is the budget after the highest one where the ensemble does not win, provided it
wins at the largest. So only the highest non-win matters, and the budgets below it never
change the EST. Assuming verdicts are monotone in budget (non-wins, then wins), a
bisection finds it with about log₂(n) budgets instead of n:

1. Both ends are measured first, always.
2. The largest is not a win: there is no EST, whatever lies below.
3. The bracket is (highest non-win, lowest win above it); its middle budget is measured
   next, until the two are neighbours on the ladder: the upper one is the EST.
4. A budget skipped between two wins is taken for a win only if the win below it is
   *clear* (its seeds agree, `seeds`): a win by a hair is where noise puts non-wins, so
   above an unclear win the stretch up to the next win is bisected too.
5. A win by a hair at the largest budget (measured with every seed) says the gain has
   fallen back into the noise there: the budgets right below it are measured, from the top
   down, until a clear win anchors the run of wins.

Measured on two digits studies (8 epochs, 3 seeds; 12 and 16 budgets): plain bisection
got one EST of three wrong on the first (a non-win right above a win by 0.19 points,
p = 0.5: rule 4 finds it) and two of three on the second (a non-win right below the top,
where every design is near 98% and the ensembles win by 0.2-0.3 points: rule 5 finds it).
A clear win *below* a non-win means the verdicts are not monotone at all: the search then
fills in the ladder above the highest non-win (the only budgets that decide the EST) and
says so. (An unclear win below a non-win is the noise of rules 4 and 5.) Budgets that have
no comparison (a run failed) are left out of the ladder.

This module sees indices and verdicts only (True: a win, False: not a win, None: measured
but not settled yet; `unclear`: the wins that are not clear): what a verdict is, and when it
is settled, is `seeds` and `rungs`. One budget is measured at a time, after both ends.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from itertools import pairwise

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


def _between(usable: list[int], measured: Collection[int], low: int, high: int) -> list[int]:
    return [i for i in usable if low < i < high and i not in measured]


def search(
    num_budgets: int,
    verdicts: Mapping[int, bool | None],
    gaps: Collection[int] = (),
    unclear: Collection[int] = (),
) -> Search:
    """The next step of the bisection over ladder indices 0..num_budgets-1.

    `verdicts`: the indices measured so far, each True (a win), False (not a win) or None
    (not settled yet); `gaps`: indices without a comparison (left out of the ladder);
    `unclear`: wins whose seeds do not agree (see the module).
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
    clear_wins = [i for i in wins if i not in unclear]
    if non_wins and clear_wins and clear_wins[0] < non_wins[-1]:
        above = _between(usable, verdicts, non_wins[-1], top)
        waiting = any(verdicts[i] is None for i in verdicts if i > non_wins[-1])
        note = "not monotone: a win below a non-win; filling in the ladder above the non-win"
        return Search(tuple(above), not above and not waiting, FILL_IN, note)
    if any(v is None for v in verdicts.values()):
        return Search((), False, BISECTION, "waiting for a verdict")
    if non_wins:
        lowest_win = min(i for i in wins if i > non_wins[-1])
        bracket = _between(usable, verdicts, non_wins[-1], lowest_win)
        if bracket:
            probe = _middle(bracket, non_wins[-1], lowest_win)
            return Search((probe,), False, BISECTION, "bisecting the bracket")
        wins = [i for i in wins if i > non_wins[-1]]
    for low, high in pairwise(wins):
        stretch = _between(usable, verdicts, low, high)
        if low in unclear and stretch:  # rule 4
            probe = _middle(stretch, low, high)
            return Search((probe,), False, BISECTION, "checking above a win by a hair")
    # Rule 5: walk down from an unclear win at the top to the first clear one.
    for high in reversed(wins):
        if high not in unclear:
            break
        below = [i for i in usable if i < high]
        if below and below[-1] not in verdicts:
            return Search((below[-1],), False, BISECTION, "checking below a win by a hair")
    if non_wins:
        return Search((), True, BISECTION, "bracket closed: the EST is its upper end")
    return Search((), True, BISECTION, "clear wins up from the smallest budget: no non-win")
