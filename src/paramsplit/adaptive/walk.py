"""The exact budget search: a walk down the ladder from the largest budget to the first
non-win.

The EST is the budget above the highest non-win, provided the ensemble wins at the largest
budget (the ensemble wins at every budget from the EST up). So the walk measures the
largest usable budget first; a non-win there means no EST, whatever lies below. Otherwise
it measures the next lower budget, one at a time, until the first non-win (the EST is the
budget above it) or the bottom of the ladder (the EST is at most the smallest budget).
Budgets without a comparison (a run failed: gaps) are stepped over, as in `bisection`.

Nothing is assumed about the budgets it reads, so on non-monotone verdicts it finds the
same highest non-win as the full grid, every time: with every seed at each budget it
measures and no early verdicts (`policy.AdaptiveSettings`, search `exact`), every verdict
it reads is the full grid's own, so the EST is the full study's by construction. Its cost
is the budgets from the top down to the highest non-win, plus that one: all of them when
the ensemble wins everywhere, one when it loses at the top. The budgets below the highest
non-win are never trained; they cannot move the EST.

Like `bisection`, it sees indices and verdicts only (True: a win, False: not a win, None:
measured but not settled yet) and returns a `bisection.Search`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from paramsplit.adaptive.bisection import Search

WALK_DOWN = "walk-down"


def walk_down(
    num_budgets: int, verdicts: Mapping[int, bool | None], gaps: Collection[int] = ()
) -> Search:
    """The next step of the walk down ladder indices num_budgets-1..0.

    `verdicts`: the indices measured so far, each True (a win), False (not a win) or None
    (not settled yet); `gaps`: indices without a comparison (stepped over).
    """
    usable = [i for i in range(num_budgets) if i not in gaps]
    if not usable:
        return Search((), True, WALK_DOWN, "no budget with a comparison")
    top = usable[-1]
    for i in reversed(usable):
        if i not in verdicts:
            where = "the largest budget" if i == top else "the next budget down"
            return Search((i,), False, WALK_DOWN, f"measuring {where}, with every seed")
        if verdicts[i] is None:
            return Search((), False, WALK_DOWN, "waiting for a verdict")
        if not verdicts[i]:
            if i == top:
                return Search((), True, WALK_DOWN, "no win at the largest budget: no EST")
            return Search(
                (), True, WALK_DOWN, "wins from the top down to a non-win: the EST is above it"
            )
    return Search((), True, WALK_DOWN, "wins from the top down to the smallest budget: EST ≤ it")
