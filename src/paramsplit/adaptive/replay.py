"""Replay: the adaptive policy (either search, `AdaptiveSettings.search`) simulated on a
finished full-grid study's stored runs.

The policy (`decide`) is shown the study as it would have stood: every run pending at first;
the runs it hands out then train in waves, all of a wave side by side, epoch by epoch,
revealing their stored curves. At every rung the policy may stop runs (their curves end
there); at the last epoch a run is done with its stored result. When a wave ends, the policy
is asked again, until it hands out nothing more. That is the ideal schedule (one worker per
run): a live study with fewer workers reaches some rungs with a comparison's seeds at
different epochs and stops fewer runs.

What it reports: the training compute the policy spent against the full grid's (member-
epochs, and the measured seconds of the runs it used), whether every EST and the
recommendation at each question budget came out the same as the full study's own analysis,
and where not, why: a verdict settled with fewer seeds, or early, that all seeds turn
around; or a skipped budget whose verdict breaks the monotone order the bisection assumes.
The exact search takes none of these shortcuts: its replay checks its construction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from paramsplit.adaptive.answer import Saving, adaptive_switchovers, saving
from paramsplit.adaptive.grid import Grid, GroupKey, PairKey, pair_label
from paramsplit.adaptive.policy import EARLY, MEASURED, SKIPPED, AdaptiveSettings, Decision, decide
from paramsplit.analysis import Switchover, analyse, recommend
from paramsplit.analysis.records import RECORD_FIELDS, RunRecord
from paramsplit.quantities import format_budget

_KEPT = ("run_id", "family", "dataset", "design_class", "num_members", "member",
         "budget_params", "total_params", "seed", "ratio", "status", "reason")  # fmt: skip
_BLANK: dict[str, Any] = {name: None for name in RECORD_FIELDS if name not in _KEPT}


def _at_epoch(full: RunRecord, epoch: int, status: str, reason: str | None = None) -> RunRecord:
    """`full` as it stood after `epoch` epochs: its curve so far, no result yet."""
    curve = tuple(p for p in full.curve if p.epoch <= epoch)
    return dataclasses.replace(full, **_BLANK, status=status, reason=reason, curve=curve)


class _Simulation:
    """The study as the policy sees it while the replay runs."""

    def __init__(self, settings: AdaptiveSettings, full: Sequence[RunRecord]) -> None:
        self.settings, self.full = settings, list(full)
        self.truth = {r.run_id: r for r in full}
        self.epoch: dict[str, int] = {}  # run id -> epochs trained, for runs started
        self.status: dict[str, str] = {}
        self.reason: dict[str, str] = {}

    def view(self) -> list[RunRecord]:
        shown = []
        for record in self.full:
            status = self.status.get(record.run_id, "pending")
            if status == "done":
                shown.append(record)
            else:
                epoch = self.epoch.get(record.run_id, 0)
                shown.append(_at_epoch(record, epoch, status, self.reason.get(record.run_id)))
        return shown

    def decide(self) -> Decision:
        return decide(self.settings, self.view())

    def run(self) -> Decision:
        checkpoints = sorted({*self.settings.rungs, self.settings.epochs})
        while True:
            decision = self.decide()
            started = [r for r in decision.want if self.status.get(r) != "running"]
            started = [r for r in started if self.status.get(r) != "done"]
            if not started:
                return decision
            for run_id in started:
                self.status[run_id] = "running"
                self.epoch.setdefault(run_id, 0)
            for checkpoint in checkpoints:
                running = [r for r, s in self.status.items() if s == "running"]
                for run_id in running:
                    self.epoch[run_id] = max(self.epoch[run_id], checkpoint)
                    if checkpoint == self.settings.epochs or self.truth[run_id].status != "done":
                        self.status[run_id] = self.truth[run_id].status  # done, or failed
                if checkpoint == self.settings.epochs:
                    break
                for run_id, why in self.decide().stop.items():
                    if self.status.get(run_id) == "running":
                        self.status[run_id], self.reason[run_id] = "stopped", why


@dataclass(frozen=True)
class PairReplay:
    """One comparison's EST in the full study and under the policy."""

    pair: PairKey
    full: Switchover
    adaptive: Switchover
    why: tuple[str, ...]  # where they differ, and why

    @property
    def same(self) -> bool:
        a, b = self.full, self.adaptive
        return (a.est_budget, a.outcome) == (b.est_budget, b.outcome)

    def to_dict(self) -> dict[str, Any]:
        return {
            "comparison": pair_label(self.pair),
            "same": self.same,
            "full": self.full.describe(),
            "full_sequence": self.full.sequence,
            "adaptive": self.adaptive.describe(),
            "adaptive_sequence": self.adaptive.sequence,
            "why": list(self.why),
        }


@dataclass(frozen=True)
class RecommendationReplay:
    """The recommendation at a question budget, in the full study and under the policy."""

    group: GroupKey
    budget_params: int
    full_choice: str | None
    adaptive_choice: str | None

    @property
    def same(self) -> bool:
        return self.full_choice == self.adaptive_choice

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.group[0],
            "dataset": self.group[1],
            "budget_params": self.budget_params,
            "full_choice": self.full_choice,
            "adaptive_choice": self.adaptive_choice,
            "same": self.same,
        }


@dataclass(frozen=True)
class RuleErrors:
    """How often each shortcut's verdict disagreed with all seeds trained to the end."""

    fewer_seeds: int
    fewer_seeds_wrong: int
    early: int
    early_wrong: int
    skipped: int
    skipped_wrong: int  # skipped budgets whose full verdict breaks the assumed order

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ReplayResult:
    study: str
    settings: AdaptiveSettings
    saving: Saving
    pairs: tuple[PairReplay, ...]
    recommendations: tuple[RecommendationReplay, ...]
    errors: RuleErrors
    decision: Decision

    @property
    def same(self) -> bool:
        return all(p.same for p in self.pairs) and all(r.same for r in self.recommendations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "same": self.same,
            "saving": self.saving.to_dict(),
            "comparisons": [p.to_dict() for p in self.pairs],
            "recommendations": [r.to_dict() for r in self.recommendations],
            "rule_errors": self.errors.to_dict(),
            "settings": dataclasses.asdict(self.settings),
        }


def _full_verdicts(switchover: Switchover) -> dict[int, bool | None]:
    """Budget -> win in the full study (None: a gap)."""
    return {
        s.budget_params: None if s.verdict == "gap" else s.verdict == "win"
        for s in switchover.steps
    }


def _compare_pair(
    pair: PairKey, full: Switchover, adaptive: Switchover, decision: Decision, seeds: int
) -> tuple[PairReplay, list[tuple[str, bool]]]:
    """The pair's replay, and each shortcut taken there: (kind, whether it was wrong)."""
    truth = _full_verdicts(full)
    state = next(p for p in decision.pairs if p.pair == pair)
    why, shortcuts = [], []
    wins_above = True
    for step in reversed(state.steps):
        actual = truth.get(step.budget_params)
        budget = format_budget(step.budget_params)
        if actual is None:
            continue
        if step.status == SKIPPED:
            # Only a non-win above every non-win the policy saw can move the EST.
            wrong = wins_above and not actual and "between wins" in step.reason
            shortcuts.append(("skipped", wrong))
            if wrong:
                why.append(f"{budget} skipped ({step.reason}), but it is a non-win in full: "
                           "verdicts are not monotone there")  # fmt: skip
        elif step.status == EARLY:
            wrong = bool(step.win) != actual
            shortcuts.append(("early", wrong))
            if wrong:
                why.append(f"{budget}: {step.reason}; in full a {'win' if actual else 'non-win'}")
        elif step.status == MEASURED and len(step.seeds) < seeds:
            wrong = bool(step.win) != actual
            shortcuts.append(("seeds", wrong))
            if wrong:
                why.append(f"{budget}: {step.reason}, but all {seeds} seeds make it a "
                           f"{'win' if actual else 'non-win'}")  # fmt: skip
        if step.win is False:
            wins_above = False
    replay = PairReplay(pair, full, adaptive, tuple(why))
    if not replay.same and not why:
        replay = dataclasses.replace(replay, why=("the budgets' verdicts agree; the EST "
                                                  "differs through a gap",))  # fmt: skip
    return replay, shortcuts


def replay(study: str, settings: AdaptiveSettings, records: Sequence[RunRecord]) -> ReplayResult:
    """Simulate the policy on a finished study's `records` (see the module)."""
    simulation = _Simulation(settings, records)
    decision = simulation.run()
    seen = simulation.view()
    options: dict[str, Any] = {
        "alpha": settings.alpha, "require_significance": settings.require_significance,
        "accuracy": settings.accuracy, "match_tolerance": settings.match_tolerance,
    }  # fmt: skip
    full = analyse(study, records, **options)
    mine = adaptive_switchovers(settings, seen, decision)
    by_pair = {(s.family, s.dataset, s.design_class, s.num_members): s for s in full.switchovers}
    pairs, shortcuts = [], []
    for switchover in mine:
        pair = (switchover.family, switchover.dataset, switchover.design_class,
                switchover.num_members)  # fmt: skip
        one, taken = _compare_pair(pair, by_pair[pair], switchover, decision, len(settings.seeds))
        pairs.append(one)
        shortcuts += taken
    adaptive = analyse(study, seen, **options)
    recommendations = []
    for group, budget in sorted(Grid.of(records).questions.items()):
        choices = []
        for analysis in (full, adaptive):
            answer = recommend(analysis.select(*group), budget, alpha=settings.alpha,
                               match_tolerance=settings.match_tolerance)  # fmt: skip
            choices.append(answer.choice.design if answer.choice else None)
        recommendations.append(RecommendationReplay(group, budget, choices[0], choices[1]))

    def count(kind: str) -> tuple[int, int]:
        hits = [wrong for k, wrong in shortcuts if k == kind]
        return len(hits), sum(hits)

    errors = RuleErrors(*count("seeds"), *count("early"), *count("skipped"))
    spent = saving(settings, seen, decision, full_records=records)
    return ReplayResult(study, settings, spent, tuple(pairs), tuple(recommendations), errors,
                        decision)  # fmt: skip
