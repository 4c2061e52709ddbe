"""Choosing an executor by timing it on this machine, so that a busy machine cannot fool it.

The candidates take training steps in interleaved rounds: each round times one step of every
candidate, starting from a different candidate each round, so load that comes and goes falls
on all of them alike. A candidate's figure is its fastest round: load only ever adds time,
so the minimum is the closest to the machine's quiet speed. (A median of 5 rounds was
fooled: a burst of load put the loop's median at 15.0 s against 2.25 s quiet, and `auto`
kept an executor 2× slower for a whole run.) A minimum seen once may still be a loaded
round, so each candidate's two fastest rounds must agree within `SPREAD`; where they do not,
all candidates are timed for more rounds, up to `MAX_ROUNDS`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

WARMUP_STEPS = 2  # per candidate, untimed: allocations, kernel selection
ROUNDS = 5  # rounds timed at first, and again at every re-timing
MAX_ROUNDS = 15
SPREAD = 0.10  # the two fastest rounds of every candidate within 10%, or time more rounds


@dataclass(frozen=True)
class ExecutorChoice:
    """Which executor a run uses, and the evidence: every timed step and why it won."""

    name: str
    step_ms: dict[str, float] = field(default_factory=dict)  # each candidate's fastest round
    rounds_ms: dict[str, list[float]] = field(default_factory=dict)  # every round, in order
    reason: str = ""


def timing_spread(times_ms: Sequence[float]) -> float:
    """How far the second-fastest round lies above the fastest (0.1 = 10%); inf below two."""
    if len(times_ms) < 2:
        return math.inf
    fastest, second = sorted(times_ms)[:2]
    return second / fastest - 1 if fastest > 0 else math.inf


def decide_executor(rounds_ms: Mapping[str, Sequence[float]], num_timings: int) -> ExecutorChoice:
    """The candidate with the fastest round, and a sentence saying why.

    `num_timings`: how many times the rounds were timed (1 + re-timings).
    """
    step_ms = {name: min(times) for name, times in rounds_ms.items()}
    name = min(step_ms, key=step_ms.__getitem__)
    others = ", ".join(
        f"{other} {ms:.1f} ms ({ms / step_ms[name]:.2f}×)"
        for other, ms in sorted(step_ms.items(), key=lambda item: item[1])
        if other != name
    )
    num_rounds = len(next(iter(rounds_ms.values())))
    reason = (
        f"{name} has the fastest step, {step_ms[name]:.1f} ms"
        + (f", against {others}" if others else "")
        + f": the fastest of {num_rounds} interleaved rounds each"
    )
    spread = {other: timing_spread(times) for other, times in rounds_ms.items()}
    if num_timings > 1:
        reason += f", timed {num_timings} times because the two fastest rounds disagreed"
    wide = {other: s for other, s in spread.items() if s > SPREAD}
    if wide:
        worst = max(wide, key=wide.__getitem__)
        reason += (
            f"; still unsettled after {num_rounds} rounds ({worst}'s two fastest rounds "
            f"{wide[worst]:.0%} apart): the machine was busy"
        )
    return ExecutorChoice(name, step_ms, {n: list(t) for n, t in rounds_ms.items()}, reason)


def time_candidates(
    steps: Mapping[str, Callable[[], object]],
    clock: Callable[[], float] = time.perf_counter,
) -> ExecutorChoice:
    """Time one step of each candidate per round, in rounds until settled; pick the fastest.

    `steps[name]()` takes one training step with candidate `name` (and waits for the
    device); `clock` reads seconds. Warm-up is the caller's.
    """
    names = list(steps)
    rounds_ms: dict[str, list[float]] = {name: [] for name in names}
    num_timings = 0
    while True:
        num_timings += 1
        for _ in range(ROUNDS):
            first = len(rounds_ms[names[0]]) % len(names)  # rotate who goes first
            for name in names[first:] + names[:first]:
                began = clock()
                steps[name]()
                rounds_ms[name].append(1000 * (clock() - began))
        settled = all(timing_spread(times) <= SPREAD for times in rounds_ms.values())
        if settled or len(rounds_ms[names[0]]) + ROUNDS > MAX_ROUNDS:
            return decide_executor(rounds_ms, num_timings)
