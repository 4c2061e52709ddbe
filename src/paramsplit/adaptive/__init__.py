"""Adaptive studies: the same answer as the full grid for a fraction of its training.

See `policy` for how runs are chosen, `bisection`, `seeds` and `rungs` for the three rules,
and `replay` for how the claim is checked on a finished full study.
"""

from __future__ import annotations

from paramsplit.adaptive.bisection import Search, search
from paramsplit.adaptive.grid import Grid, PairKey, member_epochs, pair_label, train_seconds
from paramsplit.adaptive.policy import AdaptiveSettings, BudgetState, Decision, PairState, decide
from paramsplit.adaptive.rungs import EarlyVerdict, early_verdict, rung_epochs
from paramsplit.adaptive.seeds import SeedsVerdict, judge_seeds

__all__ = [
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
]
