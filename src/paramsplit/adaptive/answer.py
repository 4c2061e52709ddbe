"""The answer of an adaptive study: its ESTs, what it skipped and why, what it spent.

Each EST is the analysis's own (`find_switchovers`, `est_of`), over the budgets the policy
settled: measured budgets with the seeds the policy judged them on, and early verdicts as
steps that show the epoch they were settled at instead of a parameter ratio. Skipped
budgets are left out of the sequence (they are not gaps: the search stands for them)
and listed apart with the reason; so are the seeds not run and the runs stopped early.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from paramsplit.adaptive.grid import (
    Grid,
    PairKey,
    ensemble_key,
    member_epochs,
    pair_label,
    single_key,
    train_seconds,
)
from paramsplit.adaptive.policy import (
    EARLY,
    GAP,
    MEASURED,
    SKIPPED,
    AdaptiveSettings,
    Decision,
    decide,
)
from paramsplit.analysis import (
    Analysis,
    EstStep,
    Switchover,
    compare_to_single,
    est_of,
    find_switchovers,
    summarise,
)
from paramsplit.analysis.records import RunRecord
from paramsplit.quantities import format_budget


def _evidence(grid: Grid, pair: PairKey, decision: Decision) -> list[RunRecord]:
    """The runs each settled (or failed) budget of the pair was judged on."""
    state = next(p for p in decision.pairs if p.pair == pair)
    runs: list[RunRecord] = []
    for step in state.steps:
        if step.status in (MEASURED, GAP):
            budget = step.budget_params
            runs += grid.seeds_of(ensemble_key(pair, budget), step.seeds)
            runs += grid.seeds_of(single_key(pair, budget), step.seeds)
    return runs


def adaptive_switchovers(
    settings: AdaptiveSettings,
    records: Sequence[RunRecord],
    decision: Decision,
    *,
    matched_only: bool = False,
) -> list[Switchover]:
    """One EST per comparison of the policy, from the budgets it settled (see the module);
    verdicts by `settings`' accuracy, alpha, significance and match tolerance."""
    grid = Grid.of(records)
    switchovers = []
    for state in decision.pairs:
        pair = state.pair
        family, dataset, design_class, k = pair
        runs = _evidence(grid, pair, decision)
        # Budgets where this class was not planned stay gaps, as in the full study's EST.
        outside = set(grid.budgets[(family, dataset)]) - set(grid.ladders[pair])
        runs += [r for b in outside for r in grid.seeds_of(single_key(pair, b), settings.seeds)]
        rows = compare_to_single(
            summarise(runs, settings.accuracy), runs, alpha=settings.alpha,
            match_tolerance=settings.match_tolerance,
        )  # fmt: skip
        found = find_switchovers(
            rows, runs, require_significance=settings.require_significance,
            alpha=settings.alpha, match_tolerance=settings.match_tolerance,
            matched_only=matched_only,
        )  # fmt: skip
        mine = [s for s in found if (s.family, s.dataset, s.design_class, s.num_members) == pair]
        steps = list(mine[0].steps) if mine else []
        for step in state.steps:
            if step.status == EARLY:
                verdict = "win" if step.win else "loss"
                note = f"early at epoch {step.early.epoch if step.early else '?'}"
                steps.append(EstStep(step.budget_params, verdict, None, note=note))
        steps.sort(key=lambda s: s.budget_params)
        est = est_of([s.budget_params for s in steps], [s.verdict == "win" for s in steps])
        base = mine[0] if mine else Switchover(
            family, dataset, design_class, k, (), None, settings.require_significance,
            settings.alpha, settings.match_tolerance,
        )  # fmt: skip
        switchovers.append(dataclasses.replace(base, steps=tuple(steps), est_budget=est))
    return switchovers


@dataclass(frozen=True)
class Saving:
    """What an adaptive study skipped, stopped and spent, against its full grid."""

    skipped: tuple[str, ...]  # 'resnet on digits, deq k=4: 7.15k, 8.17k — below a non-win ...'
    fewer_seeds: tuple[str, ...]
    stopped: tuple[str, ...]
    member_epochs: int
    full_member_epochs: int
    train_s: float
    full_train_s: float | None  # known only when the whole grid was trained (replay)
    runs_trained: int = 0  # runs of the grid trained (in full or until stopped)
    runs_in_grid: int = 0
    num_skipped: int = 0  # budgets of comparisons' ladders skipped
    policy: str = ""  # which search ran, in words (`AdaptiveSettings.describe`)

    @property
    def fraction(self) -> float:
        """Member-epochs spent over the full grid's."""
        return self.member_epochs / self.full_member_epochs if self.full_member_epochs else 0.0

    @property
    def fraction_s(self) -> float | None:
        if not self.full_train_s:
            return None
        return self.train_s / self.full_train_s

    def describe(self) -> str:
        """'840 of 2,496 member-epochs (33.7% of the full grid; 51 of 141 runs), 1,060 s of
        training', and the full grid's seconds where known."""
        text = (
            f"{self.member_epochs:,} of {self.full_member_epochs:,} member-epochs "
            f"({self.fraction:.1%} of the full grid; {self.runs_trained} of "
            f"{self.runs_in_grid} runs), {self.train_s:,.0f} s of training"
        )
        if self.fraction_s is not None and self.full_train_s is not None:
            text += f" of the full grid's {self.full_train_s:,.0f} s ({self.fraction_s:.1%})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "skipped": list(self.skipped),
            "fewer_seeds": list(self.fewer_seeds),
            "stopped": list(self.stopped),
            "member_epochs": self.member_epochs,
            "full_member_epochs": self.full_member_epochs,
            "fraction": self.fraction,
            "num_skipped": self.num_skipped,
            "runs_trained": self.runs_trained,
            "runs_in_grid": self.runs_in_grid,
            "train_s": self.train_s,
            "full_train_s": self.full_train_s,
            "fraction_s": self.fraction_s,
            "text": self.describe(),
        }


def saving(
    settings: AdaptiveSettings,
    records: Sequence[RunRecord],
    decision: Decision,
    full_records: Sequence[RunRecord] | None = None,
) -> Saving:
    """The skipped budgets, seeds not run and runs stopped, with the reasons, and the
    compute spent; `full_records`: the full grid trained (replay), for its seconds."""
    skipped: dict[tuple[str, str], list[str]] = {}  # (comparison, why) -> budgets
    fewer, stopped = [], []
    seeds = len(settings.seeds)
    for state in decision.pairs:
        label = pair_label(state.pair)
        for step in state.steps:
            budget = format_budget(step.budget_params)
            if step.status == SKIPPED:
                skipped.setdefault((label, step.reason), []).append(budget)
            elif step.status == MEASURED and len(step.seeds) < seeds:
                used = f"{len(step.seeds)} of {seeds} seeds"
                fewer.append(f"{label}: {budget} — {used}, {step.reason}")
            elif step.status == EARLY:
                stopped.append(f"{label}: {budget} — {step.reason}")
    grouped = [f"{label}: {', '.join(b)} — {why}" for (label, why), b in skipped.items()]
    spent = [r for r in records if r.status in ("done", "stopped", "running")]
    full_grid = [dataclasses.replace(r, status="done") for r in records]
    return Saving(
        tuple(grouped),
        tuple(fewer),
        tuple(stopped),
        member_epochs(spent, settings.epochs),
        member_epochs(full_grid, settings.epochs),
        train_seconds(spent, settings.epochs),
        train_seconds(full_records, settings.epochs) if full_records is not None else None,
        runs_trained=len({r.run_id for r in spent}),
        runs_in_grid=len({r.run_id for r in records}),
        num_skipped=sum(len(budgets) for budgets in skipped.values()),
        policy=settings.describe(),
    )


@dataclass(frozen=True)
class AdaptiveAnswer:
    """An adaptive study's analysis (its ESTs the policy's), decision and saving."""

    analysis: Analysis
    decision: Decision
    saving: Saving


def answer_adaptive(
    analysis: Analysis, records: Sequence[RunRecord], settings: AdaptiveSettings
) -> AdaptiveAnswer:
    """`analysis` of an adaptive study with its ESTs taken over the budgets the policy
    settled. `records`: the study's runs with their curves (stopped ones too), `settings`:
    the policy's as it ran; the verdicts follow the analysis's own options."""
    decision = decide(settings, records)
    verdicts = dataclasses.replace(
        settings, alpha=analysis.alpha, require_significance=analysis.require_significance,
        accuracy=analysis.accuracy, match_tolerance=analysis.match_tolerance,
    )  # fmt: skip
    switchovers = adaptive_switchovers(
        verdicts, records, decision, matched_only=analysis.matched_only
    )
    adapted = dataclasses.replace(analysis, switchovers=tuple(switchovers))
    return AdaptiveAnswer(adapted, decision, saving(settings, records, decision))
