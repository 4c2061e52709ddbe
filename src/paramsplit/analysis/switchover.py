"""The Ensemble Switchover Threshold (EST), over the whole sequence of a study's budgets.

EST, for one family, dataset, design class and k: the smallest budget from which the
ensemble beats the single network of equal budget at that budget and at every larger budget
of the study. "Beats" is a strictly higher mean test accuracy over seeds; with
`require_significance`, a significant win of the exact permutation test (see `stats`).

Every budget the study has for the family and dataset is a step of the sequence, shown as
`5k✗ 10k· 20k✓ 40k✓`: ✓ a win, ✗ a loss, tie or non-significant win, ? too few seeds to
tell, · a gap — no comparison there (the ensemble or the single network failed, was not run
yet, or was infeasible or not asked for; with `matched_only`, also an unmatched one).

The EST never spans a gap: a gap is not a win, so a gap inside a run of wins ends it, and
the EST is the first win after the last step that is not one. We have no evidence at a gap,
and "wins from the EST on" must not claim one. Below the EST:
- `found`: a loss, tie or non-significant win: the EST is exactly there;
- `at_most`: a gap or too few seeds: the ensemble might win there too, so the EST is at most
  that budget ("EST ≤");
- `all`: nothing (it wins at every budget of the study): "EST ≤" the smallest.
With no win at the largest budget there is no EST, and what sits there says why:
- `none`: a loss, tie or non-significant win;
- `undecided`: too few seeds to tell ("not enough seeds to tell");
- `gap`: no comparison at the largest budget.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from paramsplit.analysis.compare import DEFAULT_ALPHA, Comparison
from paramsplit.analysis.matching import DEFAULT_MATCH_TOLERANCE, tolerance_text
from paramsplit.analysis.records import RunRecord
from paramsplit.quantities import format_budget
from paramsplit.specs import class_label

STEP_MARKS = {
    "win": "✓",
    "loss": "✗",
    "tie": "✗",
    "not significant": "✗",
    "too few seeds": "?",
    "gap": "·",
}


@dataclass(frozen=True)
class EstStep:
    """One budget of the sequence: the comparison there and its verdict, or a gap and why."""

    budget_params: int
    verdict: str  # a key of STEP_MARKS
    comparison: Comparison | None  # also kept for an unmatched gap, to show its ratio
    gap_reason: str | None = None
    # A verdict reached without a finished comparison (an adaptive study's early verdict,
    # `paramsplit.adaptive`): what settled it, shown instead of the ratio.
    note: str | None = None

    @property
    def mark(self) -> str:
        return STEP_MARKS[self.verdict]

    @property
    def text(self) -> str:
        """'20k✓ (0.95×)', '5k✓ (0.61×, unmatched)', '10k· (failed)'."""
        budget = f"{format_budget(self.budget_params)}{self.mark}"
        if self.verdict == "gap":
            return f"{budget} ({self.gap_reason})"
        if self.comparison is None:
            return f"{budget} ({self.note})"
        flag = "" if self.comparison.matched else ", unmatched"
        return f"{budget} ({self.comparison.params_ratio:.2f}×{flag})"

    def to_dict(self) -> dict[str, Any]:
        row = self.comparison
        return {
            "budget_params": self.budget_params,
            "verdict": self.verdict,
            "gap_reason": self.gap_reason,
            "note": self.note,
            "params_ratio": row.params_ratio if row else None,
            "matched": row.matched if row else None,
        }


@dataclass(frozen=True)
class Switchover:
    """The EST of one design class at one k, with the sequence of budgets that decides it."""

    family: str
    dataset: str
    design_class: str
    num_members: int
    steps: tuple[EstStep, ...]  # every budget of the study, ascending
    est_budget: int | None
    require_significance: bool
    alpha: float
    match_tolerance: tuple[float, float] = DEFAULT_MATCH_TOLERANCE
    matched_only: bool = False

    @property
    def budgets(self) -> tuple[int, ...]:
        return tuple(s.budget_params for s in self.steps)

    @property
    def wins(self) -> tuple[bool, ...]:
        return tuple(s.verdict == "win" for s in self.steps)

    @property
    def compared(self) -> tuple[EstStep, ...]:
        """The steps with a comparison that counts (not gaps)."""
        return tuple(s for s in self.steps if s.verdict != "gap")

    @property
    def gaps(self) -> tuple[EstStep, ...]:
        return tuple(s for s in self.steps if s.verdict == "gap")

    @property
    def num_unmatched(self) -> int:
        """Unmatched comparisons: counted in the EST, or left out with `matched_only`."""
        return sum(1 for s in self.steps if s.comparison and not s.comparison.matched)

    @property
    def sequence(self) -> str:
        """'5k✗ (0.93×)  10k· (failed)  20k✓ (0.95×)'."""
        return "  ".join(s.text for s in self.steps)

    @property
    def outcome(self) -> str:
        """found, all, at_most (an EST), or none, undecided, gap (none): see the module."""
        if self.est_budget is None:
            top = self.steps[-1].verdict if self.steps else "gap"
            return {"gap": "gap", "too few seeds": "undecided"}.get(top, "none")
        index = self.budgets.index(self.est_budget)
        if index == 0:
            return "all"
        below = self.steps[index - 1].verdict
        return "at_most" if below in ("gap", "too few seeds") else "found"

    @property
    def est_is_upper_bound(self) -> bool:
        """Whether the EST is 'at most' its budget (it may lie lower)."""
        return self.outcome in ("all", "at_most")

    @property
    def label(self) -> str:
        return class_label(self.design_class, self.num_members)

    def _headline(self) -> str:
        outcome, alpha = self.outcome, f"{self.alpha:g}"
        if self.est_budget is not None:
            est = format_budget(self.est_budget)
            if outcome == "found":
                return f"EST = {est} — the ensemble wins from {est} on"
            if outcome == "all":
                return f"EST ≤ {est} — the ensemble wins at every budget tested"
            below = self.steps[self.budgets.index(self.est_budget) - 1]
            why = (
                f"has no comparison ({below.gap_reason})"
                if below.verdict == "gap"
                else "has too few seeds to tell"
            )
            return (
                f"EST ≤ {est} — the ensemble wins from {est} on; below it, "
                f"{format_budget(below.budget_params)} {why}"
            )
        if not self.steps:
            return "no EST — no budget to compare"
        top = self.steps[-1]
        largest = format_budget(top.budget_params)
        if outcome == "gap":
            return f"no EST — {largest}, the largest budget, has no comparison ({top.gap_reason})"
        assert top.comparison is not None
        test = top.comparison.test
        if outcome == "undecided":
            seeds = f"{test.num_seeds[0]} vs {test.num_seeds[1]} seeds"
            return (
                f"not enough seeds to tell — at {largest}, {seeds} cannot give p ≤ {alpha} "
                f"(the smallest p possible is {test.smallest_p_value:.3g}); run more seeds"
            )
        if top.verdict == "not significant":
            return (
                f"no EST — the ensemble's gain at {largest} is not significant "
                f"(p = {test.p_value:.3g} > {alpha})"
            )
        return f"no EST — the single network is as good or better at {largest}"

    def _named_in_headline(self) -> EstStep | None:
        """The gap the headline already names: at the largest budget, or right below the EST."""
        if self.outcome == "gap":
            return self.steps[-1]
        if self.outcome == "at_most" and self.est_budget is not None:
            return self.steps[self.budgets.index(self.est_budget) - 1]
        return None

    def _details(self) -> list[str]:
        details = [
            f"p ≤ {self.alpha:g}, exact permutation test over seeds"
            if self.require_significance
            else "mean over seeds"
        ]
        ratios = [s.comparison.params_ratio for s in self.compared if s.comparison]
        if ratios:
            details.append(f"ensemble params {ratio_span(ratios)} the single network's")
        unmatched = sum(1 for s in self.compared if s.comparison and not s.comparison.matched)
        if unmatched:
            tolerance = tolerance_text(self.match_tolerance)
            details.append(f"{unmatched} unmatched, outside {tolerance}")
        named = self._named_in_headline()
        gaps = [s for s in self.gaps if s is not named]
        if gaps:
            where = ", ".join(f"{format_budget(s.budget_params)} ({s.gap_reason})" for s in gaps)
            details.append(f"no comparison at {where}")
        return details

    def describe(self) -> str:
        """One sentence a user can act on, with the parameter ratios and the gaps."""
        where = f"{self.family} on {self.dataset}, {self.label}"
        return f"{where}: {self._headline()} ({'; '.join(self._details())})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "dataset": self.dataset,
            "design_class": self.design_class,
            "num_members": self.num_members,
            "budgets": list(self.budgets),
            "wins": list(self.wins),
            "sequence": self.sequence,
            "steps": [s.to_dict() for s in self.steps],
            "est_budget": self.est_budget,
            "outcome": self.outcome,
            "num_unmatched": self.num_unmatched,
            "require_significance": self.require_significance,
            "matched_only": self.matched_only,
            "alpha": self.alpha,
            "text": self.describe(),
        }


def ratio_span(ratios: Sequence[float]) -> str:
    """'0.93–0.97×', or '0.95×' when they all read the same."""
    low, high = f"{min(ratios):.2f}", f"{max(ratios):.2f}"
    return f"{low}×" if low == high else f"{low}–{high}×"


def est_of(budgets: Sequence[int], wins: Sequence[bool]) -> int | None:
    """The smallest budget from which every budget wins (budgets ascending)."""
    est = None
    for budget, win in zip(reversed(budgets), reversed(wins), strict=True):
        if not win:
            break
        est = budget
    return est


def _gap_reason(ensemble: list[RunRecord], single: list[RunRecord]) -> str:
    """Why a budget has no comparison for one ensemble, from the runs that are there."""
    for runs, who in ((ensemble, ""), (single, "single network ")):
        if not runs:
            return "infeasible or not planned" if not who else "no single network"
        if not any(r.done for r in runs):
            pending = any(r.status in ("pending", "running") for r in runs)
            return f"{who}not run yet" if pending else f"{who}failed"
    return "accuracy not recorded"


def find_switchovers(
    comparisons: Iterable[Comparison],
    records: Iterable[RunRecord] = (),
    *,
    require_significance: bool = False,
    matched_only: bool = False,
    alpha: float = DEFAULT_ALPHA,
    match_tolerance: tuple[float, float] = DEFAULT_MATCH_TOLERANCE,
) -> list[Switchover]:
    """One EST per family, dataset, design class and k in `comparisons` or `records`; each
    over every budget that `records` (and `comparisons`) have for the family and dataset."""
    rows = list(comparisons)
    runs: dict[tuple[str, str, int, str, int], list[RunRecord]] = defaultdict(list)
    budgets: dict[tuple[str, str], set[int]] = defaultdict(set)
    classes: set[tuple[str, str, str, int]] = set()
    for r in records:
        runs[(r.family, r.dataset, r.budget_params, r.design_class, r.num_members)].append(r)
        budgets[(r.family, r.dataset)].add(r.budget_params)
        if r.design_class != "single":
            classes.add((r.family, r.dataset, r.design_class, r.num_members))
    by_step: dict[tuple[str, str, int, str, int], Comparison] = {}
    for row in rows:
        e = row.ensemble
        by_step[(e.family, e.dataset, e.budget_params, e.design_class, e.num_members)] = row
        budgets[(e.family, e.dataset)].add(e.budget_params)
        classes.add((e.family, e.dataset, e.design_class, e.num_members))
    switchovers = []
    for family, dataset, design_class, k in sorted(classes):
        steps = []
        for budget in sorted(budgets[(family, dataset)]):
            here = by_step.get((family, dataset, budget, design_class, k))
            if here is None:
                single = runs[(family, dataset, budget, "single", 1)]
                reason = _gap_reason(runs[(family, dataset, budget, design_class, k)], single)
                steps.append(EstStep(budget, "gap", None, reason))
            elif matched_only and not here.matched:
                steps.append(EstStep(budget, "gap", here, f"unmatched, {here.params_ratio:.2f}×"))
            else:
                steps.append(EstStep(budget, here.verdict(require_significance), here))
        est = est_of([s.budget_params for s in steps], [s.verdict == "win" for s in steps])
        switchovers.append(
            Switchover(
                family,
                dataset,
                design_class,
                k,
                tuple(steps),
                est,
                require_significance,
                alpha,
                match_tolerance,
                matched_only,
            )
        )
    return switchovers
