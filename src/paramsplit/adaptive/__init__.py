"""Adaptive studies: the same answer as the full grid for a fraction of its training.

See `policy` for how runs are chosen and its two searches: `walk` (exact, the default: the
full grid's ESTs by construction) and `bisection` with `seeds` and `rungs` (cheaper, opt-in,
assumes monotone verdicts); and `replay` for how either is checked on a finished full study.
"""

from __future__ import annotations

from paramsplit.adaptive.bisection import Search, search
from paramsplit.adaptive.grid import Grid, PairKey, member_epochs, pair_label, train_seconds
from paramsplit.adaptive.policy import (
    BISECTION,
    EXACT,
    SEARCHES,
    AdaptiveSettings,
    BudgetState,
    Decision,
    PairState,
    decide,
)
from paramsplit.adaptive.rungs import EarlyVerdict, early_verdict, rung_epochs
from paramsplit.adaptive.seeds import SeedsVerdict, judge_seeds
from paramsplit.adaptive.walk import walk_down

__all__ = [
    "BISECTION",
    "EXACT",
    "SEARCHES",
    "AdaptiveSettings",
    "BudgetState",
    "Decision",
    "EarlyVerdict",
    "Grid",
    "PairKey",
    "PairState",
    "Search",
    "SeedsVerdict",
    "decide",
    "early_verdict",
    "judge_seeds",
    "member_epochs",
    "pair_label",
    "rung_epochs",
    "search",
    "train_seconds",
    "walk_down",
]
