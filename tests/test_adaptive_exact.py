"""The exact adaptive search (what `--adaptive` runs): a walk down the ladder from the
largest budget to the first non-win, every seed, no early verdicts. Its EST is the full
grid's on any verdict sequence, monotone or not; bisection's is not."""

from __future__ import annotations

from itertools import product

import pytest

from adaptive_sample import BUDGETS, EPOCHS, SEEDS, pending, study, switching_at
from paramsplit.adaptive import AdaptiveSettings, decide, walk_down
from paramsplit.adaptive.replay import replay
from paramsplit.analysis.switchover import est_of
from paramsplit.errors import ParamSplitError
from paramsplit.quantities import format_budget
from paramsplit.study import StudyDefinition
from paramsplit.study.file import load_study_file


def walk(verdicts: list[bool | None], gaps: frozenset[int] = frozenset()):
    """Drive the walk against a known sequence (None: a gap): what it measured, in order,
    and its last note."""
    measured: dict[int, bool | None] = {}
    order = []
    while True:
        found = walk_down(len(verdicts), measured, gaps)
        if found.done:
            return order, measured, found.note
        assert len(found.probe) == 1, "the walk measures one budget at a time"
        (i,) = found.probe
        assert i not in gaps and i not in measured
        order.append(i)
        measured[i] = verdicts[i]


def full_est(verdicts: list[bool]) -> int | None:
    """The full grid's EST index (the analysis's own rule over every budget)."""
    return est_of(list(range(len(verdicts))), verdicts)


def measured_est(measured: dict[int, bool | None]) -> int | None:
    ladder = sorted(measured)
    return est_of(ladder, [bool(measured[i]) for i in ladder])


@pytest.mark.parametrize("num_budgets", [1, 2, 5, 8])
def test_the_walk_finds_the_est_of_every_verdict_sequence_monotone_or_not(num_budgets):
    # Every one of the 2^n sequences: the EST is exact, and the walk measures exactly the
    # budgets from the top down to the highest non-win (plus that one), in that order.
    for verdicts in product([False, True], repeat=num_budgets):
        order, measured, _ = walk(list(verdicts))
        est = full_est(list(verdicts))
        assert measured_est(measured) == est, verdicts
        lowest = (est if est is not None else num_budgets) - 1  # the highest non-win
        assert order == list(range(num_budgets - 1, max(lowest, 0) - 1, -1)), verdicts


def test_on_monotone_verdicts_the_walk_measures_down_to_the_switch_and_one_more():
    verdicts = [i >= 7 for i in range(12)]
    order, measured, note = walk(verdicts)
    assert order == [11, 10, 9, 8, 7, 6] and measured_est(measured) == 7
    assert note == "wins from the top down to a non-win: the EST is above it"


def test_a_non_win_between_wins_is_found_where_bisection_would_skip_it():
    # Wins at both ends, a hidden non-win at 9: the EST is 10, not 0.
    verdicts = [True] * 9 + [False] + [True] * 2
    order, measured, _ = walk(verdicts)
    assert order == [11, 10, 9] and measured_est(measured) == 10 == full_est(verdicts)


def test_no_win_at_the_largest_budget_measures_only_the_largest():
    order, _, note = walk([True, True, True, False])
    assert order == [3]
    assert note == "no win at the largest budget: no EST"


def test_wins_everywhere_measure_every_budget_and_put_the_est_at_or_below_the_smallest():
    order, measured, note = walk([True] * 5)
    assert order == [4, 3, 2, 1, 0] and measured_est(measured) == 0
    assert note == "wins from the top down to the smallest budget: EST ≤ it"


def test_gaps_are_stepped_over_from_the_top_and_in_the_middle():
    found = walk_down(5, {}, gaps={4})
    assert found.probe == (3,) and found.note.startswith("measuring the largest budget")
    order, _, _ = walk([True, True, None, True, True], gaps=frozenset({2}))
    assert order == [4, 3, 1, 0]
    assert walk_down(3, {}, gaps={0, 1, 2}).done


def test_the_walk_waits_for_a_verdict_before_going_lower():
    found = walk_down(4, {3: True, 2: None})
    assert not found.done and found.probe == () and found.note == "waiting for a verdict"


def exact(**overrides) -> AdaptiveSettings:
    return AdaptiveSettings(seeds=SEEDS, epochs=EPOCHS, **overrides)


def bisection(**overrides) -> AdaptiveSettings:
    return AdaptiveSettings(seeds=SEEDS, epochs=EPOCHS, search="bisection", **overrides)


def noisy(i: int, seed: int) -> float:
    """Not monotone: a non-win hidden between wins (index 9), and at the bottom a win on two
    seeds (p = 1/6) that the third seed turns into a non-win."""
    if i == 9:
        return -2.0
    if i == 0:
        return 1.0 if seed < 2 else -3.0
    return 2.0


def test_replay_on_non_monotone_verdicts_exact_gets_every_est_right_and_bisection_does_not():
    full = study({("deq", 4): noisy})
    cheap = replay("noisy", bisection(early=False), full)
    assert not cheap.same  # the test has power: bisection's assumption breaks here
    (pair,) = cheap.pairs
    assert pair.adaptive.est_budget == BUDGETS[0] and pair.full.est_budget == BUDGETS[10]

    result = replay("noisy", exact(), full)
    assert result.same, [p.why for p in result.pairs]
    (pair,) = result.pairs
    assert pair.adaptive.est_budget == pair.full.est_budget == BUDGETS[10]
    state = result.decision.pairs[0]
    measured = [s.budget_params for s in state.steps if s.status == "measured"]
    assert measured == list(BUDGETS[9:])  # the top down to the highest non-win, plus it
    assert state.search.mode == "walk-down"
    below = [s.reason for s in state.steps if s.status == "skipped"]
    assert below and all(
        r.startswith(f"below a non-win at {format_budget(BUDGETS[9])}") for r in below
    )
    seed_flip = study({("deq", 4): lambda i, seed: noisy(i, seed) if i != 9 else 2.0})
    cheap = replay("flip", bisection(early=False), seed_flip)
    assert any("2 vs 2 seeds" in why and "all 3 seeds" in why for why in cheap.pairs[0].why)
    assert replay("flip", exact(), seed_flip).same


def test_exact_uses_every_seed_and_never_stops_a_run_where_bisection_stops_them():
    # Gaps of 5 points that settle at the first rung: bisection stops runs there.
    full = study({("deq", 4): switching_at(6, 5.0), ("deq", 2): switching_at(3, 5.0)})
    cheap = replay("clear", bisection(), full)
    assert cheap.errors.early > 0 and cheap.saving.stopped  # the test has power

    result = replay("clear", exact(), full)
    assert result.same
    assert result.errors.early == result.errors.fewer_seeds == 0
    assert not result.saving.stopped and not result.saving.fewer_seeds
    steps = [s for p in result.decision.pairs for s in p.steps if s.status != "skipped"]
    assert steps and all(s.status == "measured" and s.seeds == SEEDS for s in steps)
    assert result.saving.policy.startswith("exact search: a walk down")


def test_exact_settings_use_every_seed_and_no_rungs_whatever_is_asked():
    settings = exact(min_seeds=2, early=True)
    assert settings.min_seeds == len(SEEDS) and not settings.early and settings.rungs == ()
    decision = decide(settings, pending(study({("deq", 4): switching_at(5)})))
    top = len(BUDGETS)
    wanted = set(decision.want)
    assert {f"resnet-20-{top}-deq4-s{s}" for s in SEEDS} <= wanted  # every seed, at the top
    assert not any(f"resnet-20-{top - 1}-" in run for run in wanted)  # one budget at a time
    with pytest.raises(ParamSplitError, match="search must be one of exact, bisection, got 'x'"):
        exact(search="x")


def test_a_study_chooses_its_search_in_its_definition_without_changing_older_names():
    base = {"name": "s", "families": ("resnet",), "budgets": (10_000,), "adaptive": True}
    assert StudyDefinition(**{**base, "adaptive": "exact"}).adaptive is True
    assert (
        StudyDefinition(**{**base, "adaptive": "exact"}).digest()
        == StudyDefinition(**base).digest()
    )
    chosen = StudyDefinition(**{**base, "adaptive": "bisection"})
    assert AdaptiveSettings.for_study(chosen.to_dict()).search == "bisection"
    assert AdaptiveSettings.for_study(StudyDefinition(**base).to_dict()).search == "exact"
    with pytest.raises(ParamSplitError, match="field 'adaptive': expected true, false"):
        StudyDefinition(**{**base, "adaptive": "greedy"})


def test_a_study_file_can_ask_for_the_bisection_search(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('families = ["resnet"]\nbudgets = ["10k"]\nadaptive = "bisection"\n')
    assert load_study_file(path).adaptive == "bisection"
    path.write_text('families = ["resnet"]\nbudgets = ["10k"]\nadaptive = "greedy"\n')
    with pytest.raises(ParamSplitError, match="field 'adaptive': expected true, false, \"exact\""):
        load_study_file(path)
