"""The opt-in bisection policy's rules on synthetic data: bisection, sequential seeds, early
verdicts, and replay of a synthetic full study with a known answer. (The exact search, the
default, is tested in test_adaptive_exact.py.)"""

from __future__ import annotations

import dataclasses
import math

import pytest

from adaptive_sample import (
    BUDGETS,
    EPOCHS,
    SEEDS,
    curve,
    pending,
    record,
    single_accuracy,
    study,
    switching_at,
)
from paramsplit.adaptive import AdaptiveSettings, decide, early_verdict, judge_seeds, search
from paramsplit.adaptive.replay import replay
from paramsplit.adaptive.seeds import compare
from paramsplit.analysis import DEFAULT_MATCH_TOLERANCE


def run_search(
    verdicts: list[bool], unclear: frozenset[int] = frozenset()
) -> tuple[dict[int, bool], str, str]:
    """Drive the search against a known verdict sequence (`unclear`: the wins whose seeds
    do not agree): what it measured, its last mode and note."""
    measured: dict[int, bool] = {}
    while True:
        found = search(len(verdicts), measured, unclear=unclear & set(measured))
        if found.done:
            return measured, found.mode, found.note
        assert found.probe, "a search that is not done must ask for a budget"
        for i in found.probe:
            measured[i] = verdicts[i]


def est_index(measured: dict[int, bool], num_budgets: int) -> int | None:
    """The EST as the measured budgets alone give it (the analysis's rule, over them)."""
    est = None
    for i in sorted(measured, reverse=True):
        if not measured[i]:
            break
        est = i
    return est


@pytest.mark.parametrize("num_budgets", [2, 3, 5, 8, 12, 16])
def test_bisection_finds_every_monotone_switchover_in_about_log2_budgets(num_budgets):
    for switch in range(num_budgets + 1):  # num_budgets: it never wins
        verdicts = [i >= switch for i in range(num_budgets)]
        measured, mode, _ = run_search(verdicts)
        assert mode == "bisection"
        assert {0, num_budgets - 1} <= set(measured)  # both ends, always
        expected = switch if switch < num_budgets else None
        assert est_index(measured, num_budgets) == expected
        bound = 2 + math.ceil(math.log2(num_budgets))  # both ends, then the bisection
        assert len(measured) <= min(num_budgets, bound)


def test_bisection_of_twelve_budgets_measures_at_most_six():
    worst = max(len(run_search([i >= s for i in range(12)])[0]) for s in range(13))
    assert worst <= 6


def test_no_win_at_the_largest_budget_ends_the_search_whatever_lies_below():
    measured, _, note = run_search([True, True, False, True, False])
    assert set(measured) == {0, 4}
    assert note.startswith("no win at the largest budget: no EST (not monotone")


def test_a_win_by_a_hair_does_not_stand_for_the_budgets_above_it():
    # As on digits: a tie, a win by 0.19 points (unclear), a hidden non-win, then clear wins.
    # The bisection closes on the unclear win; the stretch above it is bisected too.
    verdicts = [False] * 6 + [True, False, True, True, True, True]
    measured, mode, _ = run_search(verdicts, unclear=frozenset({6, 11}))
    assert mode == "bisection"
    assert 7 in measured and est_index(measured, 12) == 8  # the full sequence's EST
    plain, _, _ = run_search(verdicts)  # every win clear: plain bisection misses it
    assert 7 not in plain and est_index(plain, 12) == 6


def test_a_win_by_a_hair_at_the_top_is_checked_from_the_top_down():
    # As on digits: every design near 98% at the largest budget, the ensemble ahead by a
    # hair (unclear with every seed), and a non-win right below it.
    verdicts = [False] * 4 + [True] * 4 + [False, True]
    measured, _, _ = run_search(verdicts, unclear=frozenset({9}))
    assert 8 in measured and est_index(measured, 10) == 9  # the full sequence's EST
    clear_top, _, _ = run_search(verdicts)  # a clear win at the top stands for the rest
    assert 8 not in clear_top


def test_a_clear_win_below_a_non_win_fills_in_the_ladder_above_the_non_win_and_says_so():
    # Not monotone: a clear win at index 2 and, found above an unclear win, a non-win at 7.
    # Every budget above the highest non-win is measured, so the EST is exact; the budgets
    # below it cannot move it.
    verdicts = [False, False, True, True, True, True, True, False, True, True, True]
    measured, mode, note = run_search(verdicts, unclear=frozenset({5, 10}))
    assert mode == "fill-in" and "not monotone" in note
    assert {8, 9} <= set(measured)
    assert est_index(measured, len(verdicts)) == 8  # the full sequence's EST


def test_gaps_are_left_out_of_the_ladder():
    found = search(5, {}, gaps={4})
    assert set(found.probe) == {0, 3}


def comparison(ensemble: list[float], single: list[float]):
    runs_e = [record(3, "deq", 4, s, a) for s, a in enumerate(ensemble)]
    runs_s = [record(3, "single", 1, s, a) for s, a in enumerate(single)]
    row = compare(runs_e, runs_s, "prob", 0.05, DEFAULT_MATCH_TOLERANCE)
    assert row is not None
    return row


def test_two_seeds_that_separate_settle_a_win_and_a_loss():
    win = judge_seeds(comparison([0.95, 0.96], [0.93, 0.94]), require_significance=False)
    assert win.win and win.clear
    loss = judge_seeds(comparison([0.90, 0.91], [0.93, 0.94]), require_significance=False)
    assert not loss.win and loss.clear


def test_seeds_that_overlap_ask_for_another_seed():
    judged = judge_seeds(comparison([0.96, 0.92], [0.93, 0.94]), require_significance=False)
    assert judged.win and not judged.clear
    tie = judge_seeds(comparison([0.93, 0.94], [0.93, 0.94]), require_significance=False)
    assert not tie.win and not tie.clear


def test_with_require_significance_two_seeds_never_settle_a_win():
    # 2 vs 2 seeds cannot give p below 1/6: the win needs more seeds before it counts.
    judged = judge_seeds(comparison([0.95, 0.96], [0.93, 0.94]), require_significance=True)
    assert not judged.win and not judged.clear
    three = judge_seeds(
        comparison([0.95, 0.96, 0.97], [0.93, 0.94, 0.935]), require_significance=True
    )
    assert three.win and three.clear


def settings(**overrides) -> AdaptiveSettings:
    """The bisection policy's settings (the default search is the exact one)."""
    return AdaptiveSettings(seeds=SEEDS, epochs=EPOCHS, search="bisection", **overrides)


def test_sequential_seeds_add_a_seed_only_where_two_are_unclear():
    # deq k=4 separates cleanly everywhere; deq k=2 overlaps at every budget.
    def overlapping(i, seed):
        return -1.0 if seed == 1 else 2.0  # a win by mean, seed 1 on the other side

    full = study({("deq", 4): switching_at(6), ("deq", 2): overlapping})
    result = replay("synthetic", settings(early=False), full)
    by_pair = {s.pair: s for s in result.decision.pairs}
    clean = [s for s in by_pair[("resnet", "digits", "deq", 4)].steps if s.status == "measured"]
    messy = [s for s in by_pair[("resnet", "digits", "deq", 2)].steps if s.status == "measured"]
    top = BUDGETS[-1]  # the question budget: every seed, always
    assert all(len(s.seeds) == 2 for s in clean if s.budget_params != top)
    assert all(len(s.seeds) == 3 for s in messy)


def late_crossing(i, seed):
    """The ensemble trails by 3 points until its last epoch, then wins by 1."""
    return -3.0


def test_an_early_verdict_never_stops_curves_that_converge_and_cross_late():
    # The ensemble trails the single network far beyond any calibration margin at the rung,
    # but the gap closes steadily: extrapolated, it crosses. The rule must not stop it.
    single = [record(5, "single", 1, s, single_accuracy(5, s)) for s in SEEDS]
    ensemble = []
    for s in SEEDS:
        final = single_accuracy(5, s) + 0.01
        closing = tuple(
            dataclasses.replace(p, val_accuracy=p.val_accuracy - 0.08 * (1 - p.epoch / EPOCHS))
            for p in curve(final)
        )
        ensemble.append(record(5, "deq", 4, s, final, closing))
    running = [dataclasses.replace(r, status="running", curve=r.curve[:4]) for r in ensemble]
    for rung in (2, 4):
        verdict = early_verdict(running, single, rung, EPOCHS, [0.005] * 6,
                                require_significance=False, clear_alpha=1 / 6)  # fmt: skip
        assert verdict is None


def test_an_early_verdict_stops_a_gap_that_holds_far_beyond_the_calibration():
    single = [record(5, "single", 1, s, single_accuracy(5, s)) for s in SEEDS]
    ensemble = [record(5, "deq", 4, s, single_accuracy(5, s) - 0.06) for s in SEEDS]
    running = [dataclasses.replace(r, status="running", curve=r.curve[:2]) for r in ensemble]
    verdict = early_verdict(running, single, 2, EPOCHS, [0.005] * 6,
                            require_significance=False, clear_alpha=1 / 6)  # fmt: skip
    assert verdict is not None and not verdict.win and verdict.epoch == 2
    assert "early loss at epoch 2" in verdict.reason
    # Without calibration (the ladders' ends not finished yet) nothing stops.
    assert early_verdict(running, single, 2, EPOCHS, [], require_significance=False,
                         clear_alpha=1 / 6) is None  # fmt: skip


def test_a_late_win_the_calibration_has_seen_is_never_stopped_early():
    # At both ends of the ladder the ensemble trails until the last epoch and then wins:
    # the calibration sees gaps move by 4 points after the rungs, so no verdict in between
    # (a 3-point gap) is settled early, and the answer matches the full study.
    def late(i, seed):
        return 1.0 + 0.1 * seed

    full = study({("deq", 4): late})
    late_curves = []
    for r in full:
        if r.design_class == "deq":
            r = dataclasses.replace(r, curve=curve(r.test_accuracy or 0, late=0.04))
        late_curves.append(r)
    result = replay("late", settings(), late_curves)
    assert result.errors.early == 0
    assert result.same


def test_replay_of_a_synthetic_study_reaches_its_known_answer_for_a_third_of_the_compute():
    full = study({
        ("deq", 2): lambda i, seed: -2.0 - 0.1 * seed,  # never wins: no EST
        ("deq", 4): switching_at(7),                    # EST at the 8th budget
        ("weq", 2): switching_at(0),                    # wins everywhere
    })  # fmt: skip
    result = replay("synthetic", settings(), full)
    assert result.same, [p.why for p in result.pairs]
    ests = {p.pair[2:]: (p.adaptive.est_budget, p.adaptive.outcome) for p in result.pairs}
    assert ests == {
        ("deq", 2): (None, "none"),
        ("deq", 4): (BUDGETS[7], "found"),
        ("weq", 2): (BUDGETS[0], "all"),
    }
    assert result.saving.fraction <= 1 / 3
    assert result.saving.full_member_epochs == sum(r.num_members for r in full) * EPOCHS
    assert all(r.same for r in result.recommendations)
    # Skipped budgets are said, with why, and never counted as measured.
    assert any("between wins" in line for line in result.saving.skipped)


def test_replay_says_why_when_a_shortcut_turns_the_answer():
    # A non-win hides between two clear wins that the bisection skips: the replay must say so.
    def hidden(i, seed):
        return -2.0 if i in (0, 1, 2, 9) else 2.0

    result = replay("hidden", settings(early=False), study({("deq", 4): hidden}))
    (pair,) = result.pairs
    assert not pair.same
    assert any("not monotone" in why for why in pair.why)
    assert result.errors.skipped_wrong >= 1


def test_the_policy_starts_with_both_ends_and_the_question_budget():
    decision = decide(settings(), pending(study({("deq", 4): switching_at(5)})))
    wanted = set(decision.want)
    top, bottom = len(BUDGETS) - 1, 0
    assert {f"resnet-20-{top + 1}-s{s}" for s in SEEDS} <= wanted  # all seeds at the top
    assert {f"resnet-20-{bottom + 1}-deq4-s{s}" for s in (0, 1)} <= wanted  # 2 at the bottom
    assert f"resnet-20-{bottom + 1}-deq4-s2" not in wanted
    assert not decision.finished and not decision.stop
