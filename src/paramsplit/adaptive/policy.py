"""The adaptive policy: a pure function of (settings, the study's runs so far) -> what to
train next and what to stop. Live runs and `replay` call the same `decide`.

Two searches, chosen by `AdaptiveSettings.search`:
- `exact` (the default, what `--adaptive` runs): per comparison (an ensemble class at one k
  against the single network, over its ladder of budgets), `walk.walk_down` measures from
  the largest budget down to the first non-win, every budget with every seed to the last
  epoch, no early verdicts. Every verdict it reads is the full grid's, so its ESTs and
  recommendation are the full study's by construction. It costs the budgets from the top
  down to the highest non-win, plus that one, and the question budget in full.
- `bisection` (opt-in, cheaper, assumes verdicts monotone in budget): `bisection.search`
  says which budgets to measure; each is judged by `seeds` (2 seeds a side, more while
  unclear) or, once its ensemble runs pass a rung, by `rungs` (an early verdict that stops
  them). Where verdicts are not monotone it can get an EST wrong (`replay` says where).
The question budget of each family and dataset (its largest, where the recommendation is
made) is measured in full under both: every design, every seed, every epoch. Nothing here
depends on when results arrived, only on what they are, so several processes sharing a
study agree, and what one hands out stays needed: the store's claims are the only
synchronisation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from paramsplit.adaptive.bisection import Search, search
from paramsplit.adaptive.grid import Grid, GroupKey, PairKey, ensemble_key, single_key
from paramsplit.adaptive.rungs import (
    MIN_CALIBRATION,
    SAFETY,
    EarlyVerdict,
    early_verdict,
    movement,
    rung_epochs,
)
from paramsplit.adaptive.seeds import CLEAR_ALPHA, MIN_SEEDS, SeedsVerdict, compare, judge_seeds
from paramsplit.adaptive.walk import walk_down
from paramsplit.analysis import DEFAULT_ACCURACY, DEFAULT_ALPHA, DEFAULT_MATCH_TOLERANCE
from paramsplit.analysis.records import RunRecord
from paramsplit.errors import UsageError
from paramsplit.quantities import format_budget

# The searches over a comparison's ladder (see the module).
EXACT, BISECTION = "exact", "bisection"
SEARCHES = (EXACT, BISECTION)

# What a budget of a ladder is to the policy.
SKIPPED, RUNNING, MEASURED, EARLY, GAP = "skipped", "running", "measured", "early", "gap"


@dataclass(frozen=True)
class AdaptiveSettings:
    """How the policy decides: the study's seeds and epochs, the search, and the rules' levels.

    With `search` exact, `min_seeds` is every seed and `early` is off, whatever is given:
    a verdict on fewer seeds, or at a rung, can differ from the full grid's.
    """

    seeds: tuple[int, ...]
    epochs: int
    search: str = EXACT
    min_seeds: int = MIN_SEEDS
    clear_alpha: float = CLEAR_ALPHA
    early: bool = True
    rung_fractions: tuple[float, ...] = (0.25, 0.5)
    safety: float = SAFETY
    require_significance: bool = False
    alpha: float = DEFAULT_ALPHA
    accuracy: str = DEFAULT_ACCURACY
    match_tolerance: tuple[float, float] = DEFAULT_MATCH_TOLERANCE

    def __post_init__(self) -> None:
        if self.search not in SEARCHES:
            raise UsageError(
                f"search must be one of {', '.join(SEARCHES)}, got {self.search!r}"
            ).in_field("search")
        if self.search == EXACT:  # frozen: set once, here, so that every reader agrees
            object.__setattr__(self, "min_seeds", len(self.seeds))
            object.__setattr__(self, "early", False)

    @property
    def rungs(self) -> tuple[int, ...]:
        return rung_epochs(self.epochs, self.rung_fractions) if self.early else ()

    def describe(self) -> str:
        """Which search runs, and how it judges a budget, in words."""
        if self.search == EXACT:
            return (
                "exact search: a walk down from the largest budget to the first non-win, "
                "every seed at each budget, no early verdicts (the full study's ESTs by "
                "construction)"
            )
        rungs = ", ".join(map(str, self.rungs))
        early = f"early verdicts at epochs {rungs}" if rungs else "no early verdicts"
        return (
            f"bisection search (assumes verdicts monotone in budget): {self.min_seeds} seeds "
            f"a side while clear, {early}"
        )

    @classmethod
    def for_study(cls, definition: Mapping[str, Any], **overrides: Any) -> AdaptiveSettings:
        """Settings from a stored study definition (its seeds, epochs and search)."""
        seeds = tuple(sorted(int(s) for s in definition["seeds"]))
        chosen = definition.get("adaptive")
        values: dict[str, Any] = {"search": chosen if isinstance(chosen, str) else EXACT}
        return cls(seeds=seeds, epochs=int(definition["config"]["epochs"]), **values | overrides)


@dataclass(frozen=True)
class BudgetState:
    """One budget of a comparison's ladder: skipped, running (runs handed out), measured
    (settled on finished runs), early (settled at a rung), or gap (a run failed)."""

    budget_params: int
    status: str
    reason: str
    seeds: tuple[int, ...] = ()
    win: bool | None = None
    measured: SeedsVerdict | None = None
    early: EarlyVerdict | None = None
    want: tuple[str, ...] = ()  # runs to train to the end
    stop: tuple[str, ...] = ()  # ensemble runs an early verdict stops

    @property
    def settled(self) -> bool:
        return self.status in (MEASURED, EARLY)

    @property
    def clear(self) -> bool:
        """Settled with seeds that agree (or early, which needs them to)."""
        return self.status == EARLY or (self.measured is not None and self.measured.clear)

    @property
    def mark(self) -> str:
        """'✓', '✗', '…' (running), '·' (gap) or '–' (skipped)."""
        if self.win is not None:
            return "✓" if self.win else "✗"
        return {RUNNING: "…", GAP: "·"}.get(self.status, "–")

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget_params": self.budget_params,
            "status": self.status,
            "reason": self.reason,
            "seeds": list(self.seeds),
            "win": self.win,
            "stopped_epoch": self.early.epoch if self.early else None,
        }


@dataclass(frozen=True)
class PairState:
    """What the policy knows and decided for one comparison."""

    pair: PairKey
    steps: tuple[BudgetState, ...]  # the whole ladder, ascending
    search: Search

    @property
    def done(self) -> bool:
        return self.search.done and all(s.status != RUNNING for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        family, dataset, design_class, k = self.pair
        return {
            "family": family,
            "dataset": dataset,
            "design_class": design_class,
            "num_members": k,
            "mode": self.search.mode,
            "note": self.search.note,
            "done": self.done,
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass(frozen=True)
class Decision:
    """The policy's answer: runs to train (in order; some may be running already), running
    runs to stop with the reason, and the state of every comparison."""

    pairs: tuple[PairState, ...]
    want: tuple[str, ...]
    stop: dict[str, str] = field(default_factory=dict)
    questions: dict[GroupKey, int] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return not self.want and all(p.done for p in self.pairs)


class _Judge:
    """Judges budgets of comparisons on one grid (the shared part of `decide`)."""

    def __init__(self, settings: AdaptiveSettings, grid: Grid) -> None:
        self.settings, self.grid = settings, grid
        self.calibration: dict[GroupKey, dict[int, list[float]]] = {}

    def budget(self, pair: PairKey, budget: int, *, full: bool, early: bool) -> BudgetState:
        """Measure `pair` at `budget`: with `full`, every seed; else sequential seeds, and
        with `early`, an early verdict once the calibration of its group exists."""
        settings, grid = self.settings, self.grid
        count = len(settings.seeds) if full else min(settings.min_seeds, len(settings.seeds))
        while True:
            seeds = settings.seeds[:count]
            ensemble = grid.seeds_of(ensemble_key(pair, budget), seeds)
            single = grid.seeds_of(single_key(pair, budget), seeds)
            runs = [*single, *ensemble]
            if len(ensemble) < count or len(single) < count:
                return BudgetState(budget, GAP, "not planned for every seed", seeds)
            failed = [r for r in runs if r.status == "failed"]
            if failed:
                return BudgetState(budget, GAP, f"{failed[0].design} failed", seeds)
            if all(r.done for r in runs):
                judged = self._measured(ensemble, single)
                if judged is None:
                    return BudgetState(budget, GAP, "accuracy not recorded", seeds)
                if judged.clear or count >= len(settings.seeds):
                    why = "clear" if judged.clear else "every seed"
                    return BudgetState(
                        budget, MEASURED, f"{judged.reason} ({why})", seeds, judged.win, judged
                    )
                count += 1
                continue
            verdict = self._early(pair, ensemble, single) if early and not full else None
            if verdict is not None:
                stop = tuple(r.run_id for r in ensemble if not r.done)
                return BudgetState(
                    budget, EARLY, verdict.reason, seeds, verdict.win, early=verdict, stop=stop
                )
            want = tuple(r.run_id for r in runs if not r.done)
            return BudgetState(budget, RUNNING, f"training {len(seeds)} seeds", seeds, want=want)

    def _measured(
        self, ensemble: Sequence[RunRecord], single: Sequence[RunRecord]
    ) -> SeedsVerdict | None:
        s = self.settings
        row = compare(ensemble, single, s.accuracy, s.alpha, s.match_tolerance)
        if row is None:
            return None
        return judge_seeds(
            row, require_significance=s.require_significance, clear_alpha=s.clear_alpha
        )

    def _early(
        self, pair: PairKey, ensemble: Sequence[RunRecord], single: Sequence[RunRecord]
    ) -> EarlyVerdict | None:
        calibration = self.calibration.get((pair[0], pair[1]))
        if calibration is None or all(r.done for r in ensemble):
            return None
        s = self.settings
        for epoch in s.rungs:
            verdict = early_verdict(
                ensemble, single, epoch, s.epochs, calibration.get(epoch, []),
                require_significance=s.require_significance, clear_alpha=s.clear_alpha,
                safety=s.safety,
            )  # fmt: skip
            if verdict is not None:
                return verdict
        return None

    def calibrate(self, ends: Mapping[PairKey, Sequence[BudgetState]]) -> None:
        """Movement samples per rung from the ends of every ladder of a group, once all of
        them are measured (they never change after that)."""
        groups: dict[GroupKey, list[tuple[PairKey, BudgetState]]] = {}
        for pair, states in ends.items():
            groups.setdefault((pair[0], pair[1]), []).extend((pair, s) for s in states)
        for group, members in groups.items():
            if any(s.status not in (MEASURED, GAP) for _, s in members):
                continue
            samples: dict[int, list[float]] = {e: [] for e in self.settings.rungs}
            for pair, state in members:
                if state.status != MEASURED:
                    continue
                ensemble = self.grid.seeds_of(ensemble_key(pair, state.budget_params), state.seeds)
                single = self.grid.seeds_of(single_key(pair, state.budget_params), state.seeds)
                for epoch in samples:
                    moved = movement(ensemble, single, epoch, self.settings.accuracy)
                    if moved is not None:
                        samples[epoch].append(moved)
            if all(len(v) >= MIN_CALIBRATION for v in samples.values()):
                self.calibration[group] = samples


def _skip_reason(steps: dict[int, BudgetState], ladder: Sequence[int], index: int) -> str:
    """Why the search has not measured ladder[index]."""
    settled = {i: bool(s.win) for i, s in steps.items() if s.settled}
    measured = [i for i, s in steps.items() if s.status != GAP]
    top = settled.get(max(measured)) if measured else None
    if top is None:
        return "not measured yet"
    if not top:
        return "no win at the largest budget: no EST, whatever happens here"
    non_wins = [i for i, win in settled.items() if not win]
    if non_wins and index < max(non_wins):
        return f"below a non-win at {format_budget(ladder[max(non_wins)])}: cannot move the EST"
    below = [i for i, win in settled.items() if win and i < index]
    above = [i for i, win in settled.items() if win and i > index]
    if below and above:
        low, high = format_budget(ladder[max(below)]), format_budget(ladder[min(above)])
        return f"between wins at {low} and {high}: a win if verdicts are monotone"
    if above and not non_wins and below:
        return f"below a win at {format_budget(ladder[min(above)])}, with wins at both ends"
    return "not measured yet"


def _pair_state(judge: _Judge, pair: PairKey, ends_only: bool) -> PairState:
    grid = judge.grid
    ladder = grid.ladders[pair]
    question = grid.questions.get((pair[0], pair[1]))
    last = len(ladder) - 1
    steps: dict[int, BudgetState] = {}
    while True:
        verdicts = {i: s.win for i, s in steps.items() if s.status != GAP}
        gaps = {i for i, s in steps.items() if s.status == GAP}
        if judge.settings.search == EXACT:
            found = walk_down(len(ladder), verdicts, gaps)
        else:
            unclear = {i for i, s in steps.items() if s.win and not s.clear}
            found = search(len(ladder), verdicts, gaps, unclear)
        probe = [i for i in found.probe if not ends_only or i in (0, last)]
        if not probe:
            break
        for i in probe:
            is_end = i in (0, last)
            full = ladder[i] == question
            steps[i] = judge.budget(pair, ladder[i], full=full, early=not is_end)
        if ends_only:
            break
    ordered = tuple(
        steps.get(i) or BudgetState(budget, SKIPPED, _skip_reason(steps, ladder, i))
        for i, budget in enumerate(ladder)
    )
    return PairState(pair, ordered, found)


def decide(settings: AdaptiveSettings, records: Sequence[RunRecord]) -> Decision:
    """What to train and what to stop, given every run of the study as it stands now
    (pending runs included: the grid is read from them)."""
    grid = Grid.of(records)
    judge = _Judge(settings, grid)
    if settings.early:  # the calibration comes from the ends, which never stop early
        ends = {pair: _pair_state(judge, pair, ends_only=True).steps for pair in grid.ladders}
        judge.calibrate({p: [s for s in ends[p] if s.status != SKIPPED] for p in ends})
    pairs = tuple(_pair_state(judge, pair, ends_only=False) for pair in grid.ladders)
    want: list[str] = []
    for group, budget in sorted(grid.questions.items()):
        for key in grid.at_budget(group, budget):
            runs = grid.seeds_of(key, settings.seeds)
            want += [r.run_id for r in runs if not r.done and r.status != "failed"]
    for state in pairs:
        want += [run_id for step in state.steps for run_id in step.want]
    wanted = tuple(dict.fromkeys(want))
    stop = {
        run_id: step.reason
        for state in pairs
        for step in state.steps
        for run_id in step.stop
        if run_id not in wanted
    }
    return Decision(pairs, wanted, stop, dict(grid.questions))
