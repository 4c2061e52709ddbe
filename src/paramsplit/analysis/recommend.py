"""The answer for one user's budget and constraints, from measured runs.

Latency comes from `paramsplit measure` (side by side, at the batch size asked) where it
exists; otherwise from the post-training figure or an estimate, and the answer says which
(`paramsplit.analysis.latency`).

Candidates are the designs measured at the requested budget. Where that budget was not
measured, they come from the nearest measured budget within it (or, failing that, the
nearest above it, which the answer flags as over budget); the recommendation says so. A
candidate passes when every constraint is met by its median over seeds; a constraint on a
quantity a design did not measure excludes it, with that reason. Among the passing
candidates the objective picks: highest accuracy, or shortest training or latency.

Every candidate carries its parameter ratio to the single network of its budget, flagged
when outside the match tolerance; the choice is set against the runner-up with the exact
permutation test of `stats` and the ratio of their parameter counts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from paramsplit.analysis.compare import DEFAULT_ALPHA
from paramsplit.analysis.designs import DesignSummary
from paramsplit.analysis.latency import (
    POST_TRAINING,
    MeasuredLatency,
    fallback_note,
    latency_at,
    load_notes,
)
from paramsplit.analysis.matching import DEFAULT_MATCH_TOLERANCE, is_matched
from paramsplit.analysis.records import RunRecord
from paramsplit.analysis.stats import SeedTest, beats, seed_test, ties
from paramsplit.errors import UsageError
from paramsplit.quantities import format_budget

RECOMMEND_OBJECTIVES = ("accuracy", "train-time", "latency")
# How the members of an ensemble train, for the memory limit: all at once or one at a time.
MEMORY_EXECUTIONS = {"fused": "all k members at once", "loop": "one member at a time"}


@dataclass(frozen=True)
class Constraints:
    """Limits a design must meet. Memory is the exact peak of one training step's live
    tensors, weights, gradients and optimizer state included (`paramsplit.measure.memory`),
    for `memory_execution`: 'fused' (all k members at once) or 'loop' (one at a time);
    latency is per batch of `batch_size` images."""

    max_latency_ms: float | None = None
    batch_size: int = 1
    max_train_time_s: float | None = None
    max_memory_bytes: int | None = None
    min_accuracy: float | None = None
    memory_execution: str = "fused"

    def __post_init__(self) -> None:
        if self.memory_execution not in MEMORY_EXECUTIONS:
            raise UsageError(
                f"memory execution must be {' or '.join(MEMORY_EXECUTIONS)}, "
                f"got '{self.memory_execution}'"
            )
        if self.batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {self.batch_size}")
        for name in ("max_latency_ms", "max_train_time_s", "max_memory_bytes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"{name} must be positive, got {value}")
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1:
            raise UsageError(f"min_accuracy must be a fraction in [0, 1], got {self.min_accuracy}")


def latency_ms_at(summary: DesignSummary, batch_size: int) -> float | None:
    """Latency for one batch: measured at batch 1, else estimated from measured throughput."""
    if batch_size == 1:
        return summary.latency_ms_batch1.median if summary.latency_ms_batch1 else None
    if summary.throughput_images_per_s is None:
        return None
    return 1000.0 * batch_size / summary.throughput_images_per_s.median


@dataclass(frozen=True)
class Candidate:
    summary: DesignSummary
    latency_ms: float | None
    violations: tuple[str, ...]
    latency_source: str | None = None  # one of `analysis.latency.LATENCY_SOURCES`
    params_ratio: float | None = None  # total / the single network's at the budget
    matched: bool | None = None  # None: a single network, or no single network measured

    @property
    def passes(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "design": self.summary.design,
            "label": self.summary.label,
            "budget_params": self.summary.budget_params,
            "accuracy": self.summary.accuracy.to_dict(),
            "total_params": self.summary.total_params,
            "params_ratio_to_single": self.params_ratio,
            "matched": self.matched,
            "latency_ms": self.latency_ms,
            "latency_source": self.latency_source,
            "passes": self.passes,
            "violations": list(self.violations),
            "run_ids": list(self.summary.run_ids),
        }


def _train_memory_bytes(summary: DesignSummary, constraints: Constraints) -> float | None:
    memory = (
        summary.loop_train_memory_bytes
        if constraints.memory_execution == "loop"
        else summary.peak_train_memory_bytes
    )
    return memory.median if memory else None


def check(
    summary: DesignSummary, constraints: Constraints, measured: Sequence[MeasuredLatency] = ()
) -> Candidate:
    """The candidate with every constraint it breaks, in words with units. Its latency is
    the side-by-side figure in `measured` where there is one (see `latency_at`)."""
    latency, latency_source = latency_at(summary, constraints.batch_size, measured)
    violations = []
    limits = (
        ("latency", latency, constraints.max_latency_ms, "ms"),
        (
            "training time",
            summary.train_time_s.median if summary.train_time_s else None,
            constraints.max_train_time_s,
            "s",
        ),
        (
            "training memory",
            _train_memory_bytes(summary, constraints),
            constraints.max_memory_bytes,
            "bytes",
        ),
    )
    for name, value, limit, unit in limits:
        if limit is None:
            continue
        if value is None:
            violations.append(f"{name} not measured")
        elif value > limit:
            violations.append(f"{name} {value:,.6g} {unit} > {limit:,.6g} {unit}")
    floor = constraints.min_accuracy
    if floor is not None and summary.accuracy.mean < floor:
        violations.append(f"accuracy {summary.accuracy.mean:.2%} < {floor:.2%}")
    return Candidate(summary, latency, tuple(violations), latency_source)


@dataclass(frozen=True, eq=False)
class _Accuracy:
    """A sort key that puts the more accurate first and compares equal where `beats`
    calls it a tie, so that the next key (training time, parameters) decides."""

    mean: float

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Accuracy) and ties(self.mean, other.mean)

    def __lt__(self, other: _Accuracy) -> bool:
        return beats(self.mean, other.mean)


def _objective_key(candidate: Candidate, objective: str) -> tuple[Any, ...]:
    """Sort key, smaller is better: the objective, then accuracy, then the cheaper to train,
    then fewer parameters. Accuracies within floating-point noise tie (`ties`)."""
    s = candidate.summary
    accuracy = _Accuracy(s.accuracy.mean)
    train_time_s = s.train_time_s.median if s.train_time_s else float("inf")
    primary: _Accuracy | float
    if objective == "accuracy":
        primary = accuracy
    elif objective == "train-time":
        primary = train_time_s
    else:
        primary = candidate.latency_ms if candidate.latency_ms is not None else float("inf")
    return (primary, accuracy, train_time_s, float(s.total_params))


@dataclass(frozen=True)
class Recommendation:
    requested_budget: int
    measured_budget: int | None
    objective: str
    constraints: Constraints
    choice: DesignSummary | None
    runner_up: DesignSummary | None
    accuracy_margin: float | None  # choice − runner-up, a fraction
    test: SeedTest | None  # one-sided: choice more accurate than runner-up
    candidates: tuple[Candidate, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def exact_budget(self) -> bool:
        return self.measured_budget == self.requested_budget

    @property
    def p_value(self) -> float | None:
        return self.test.p_value if self.test else None

    @property
    def params_ratio(self) -> float | None:
        """The choice's parameters / the runner-up's."""
        if self.choice is None or self.runner_up is None:
            return None
        return self.choice.total_params / self.runner_up.total_params

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested_budget": self.requested_budget,
            "measured_budget": self.measured_budget,
            "exact_budget": self.exact_budget,
            "objective": self.objective,
            "constraints": self.constraints.__dict__,
            "choice": self.choice.to_dict() if self.choice else None,
            "runner_up": self.runner_up.to_dict() if self.runner_up else None,
            "accuracy_margin": self.accuracy_margin,
            "p_value": self.p_value,
            "test": self.test.to_dict() if self.test else None,
            "params_ratio_to_runner_up": self.params_ratio,
            "candidates": [c.to_dict() for c in self.candidates],
            "notes": list(self.notes),
        }


def largest_budget(designs: Sequence[DesignSummary]) -> int:
    """The largest budget these designs were measured at: the budget a study asks about
    (its question budget), and what `recommend` answers for when no budget is given."""
    if not designs:
        raise UsageError("no finished designs to recommend from: run the study first")
    return max(design.budget_params for design in designs)


def _budget_to_use(budgets: Sequence[int], requested: int) -> tuple[int, list[str]]:
    if requested in budgets:
        return requested, []
    below = [b for b in budgets if b < requested]
    above = [b for b in budgets if b > requested]
    asked = format_budget(requested)
    if below:
        used = below[-1]
        note = (
            f"{asked} was not measured; answering from {format_budget(used)}, "
            "the nearest measured budget within it"
        )
        if above:
            note += f" (the next one up is {format_budget(above[0])})"
        return used, [note]
    used = above[0]
    return used, [
        f"{asked} was not measured and every measured budget is larger; "
        f"answering from {format_budget(used)}: these designs exceed your budget"
    ]


def _cost_notes(
    candidates: Sequence[Candidate],
    constraints: Constraints,
    objective: str,
    records: Sequence[RunRecord],
) -> list[str]:
    """Where the latencies or training times that decide were not taken side by side or
    under one load; nothing about a cost that decides nothing."""
    notes = []
    uses_latency = constraints.max_latency_ms is not None or objective == "latency"
    if uses_latency:
        sources = {c.summary.design: c.latency_source for c in candidates}
        note = fallback_note(sources, constraints.batch_size)
        notes += [note] if note is not None else []
        post_training = {
            run_id
            for c in candidates
            if c.latency_source == POST_TRAINING
            for run_id in c.summary.run_ids
        }
        notes += load_notes([r for r in records if r.run_id in post_training], train_time=False)
    if constraints.max_train_time_s is not None or objective == "train-time":
        run_ids = {run_id for c in candidates for run_id in c.summary.run_ids}
        notes += load_notes([r for r in records if r.run_id in run_ids], latency=False)
    return notes


def recommend(
    summaries: Sequence[DesignSummary],
    budget: int,
    constraints: Constraints | None = None,
    objective: str = "accuracy",
    measured_latencies: Sequence[MeasuredLatency] = (),
    records: Sequence[RunRecord] = (),
    *,
    alpha: float = DEFAULT_ALPHA,
    match_tolerance: tuple[float, float] = DEFAULT_MATCH_TOLERANCE,
) -> Recommendation:
    """The best measured design for `budget` under `constraints`, and how sure it is.

    `summaries` should be of one family and dataset (see `Analysis.select`); `alpha` sets
    the interval of the margin over the runner-up, `match_tolerance` which ensembles are
    flagged as unmatched to their single network. Latency comes from `measured_latencies`
    (`paramsplit measure`, side by side) where they have the design at the constraint's
    batch size; a note names the designs that fall back. With the candidates' run
    `records`, notes also say where the training times or latencies compared were taken
    under different loads.
    """
    if objective not in RECOMMEND_OBJECTIVES:
        raise UsageError(
            f"unknown objective '{objective}'; allowed: {', '.join(RECOMMEND_OBJECTIVES)}"
        )
    constraints = constraints or Constraints()
    groups = {(s.family, s.dataset) for s in summaries}
    if len(groups) > 1:
        names = ", ".join(f"{f} on {d}" for f, d in sorted(groups))
        raise UsageError(f"the results hold several families or datasets ({names}); pick one")
    budgets = sorted({s.budget_params for s in summaries})
    if not budgets:
        return Recommendation(
            budget, None, objective, constraints, None, None, None, None, (),
            ("no finished runs to answer from: run a study first (paramsplit run)",),
        )  # fmt: skip
    used, notes = _budget_to_use(budgets, budget)
    at_budget = [s for s in summaries if s.budget_params == used]
    single = next((s for s in at_budget if s.design_class == "single"), None)
    candidates = sorted(
        (
            _with_ratio(check(s, constraints, measured_latencies), single, match_tolerance)
            for s in at_budget
        ),
        key=lambda c: _objective_key(c, objective),
    )
    passing = [c for c in candidates if c.passes]
    notes += _cost_notes(candidates, constraints, objective, records)
    if not passing:
        notes.append("no measured design meets every constraint; see why for each below")
    if constraints.max_memory_bytes is not None:
        notes.append(
            "the memory limit is compared with one training step's exact peak of live tensors "
            "(weights, gradients, optimizer state, batch, activations), "
            f"{MEMORY_EXECUTIONS[constraints.memory_execution]}"
        )
    if not passing:
        return Recommendation(
            budget, used, objective, constraints, None, None, None, None, tuple(candidates),
            tuple(notes),
        )  # fmt: skip
    choice = passing[0].summary
    if passing[0].matched is False:
        notes.append(
            f"{choice.design} has {passing[0].params_ratio:.2f}× the parameters of the single "
            "network at this budget: unmatched, so it is not an equal-size comparison"
        )
    runner_up = passing[1].summary if len(passing) > 1 else None
    margin = test = None
    if runner_up is not None:
        margin = choice.accuracy.mean - runner_up.accuracy.mean
        test = seed_test(choice.accuracy.values, runner_up.accuracy.values, alpha)
    return Recommendation(
        budget, used, objective, constraints, choice, runner_up, margin, test,
        tuple(candidates), tuple(notes),
    )  # fmt: skip


def _with_ratio(
    candidate: Candidate, single: DesignSummary | None, tolerance: tuple[float, float]
) -> Candidate:
    """The candidate with its parameter ratio to the single network (ensembles only)."""
    s = candidate.summary
    if single is None:
        return candidate
    ratio = s.total_params / single.total_params
    matched = None if s is single else is_matched(ratio, tolerance)
    return dataclasses.replace(candidate, params_ratio=ratio, matched=matched)
