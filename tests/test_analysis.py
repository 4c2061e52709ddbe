"""The analysis on hand-written records with known answers: statistics, the win table, the
EST (ties, non-monotone results, missing seeds, gaps, no win), parameter ratios, heat maps,
time to accuracy, Pareto fronts and recommendations. Also: it reads the results database and
never imports torch."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from paramsplit.analysis import (
    Constraints,
    CurvePoint,
    RunRecord,
    analyse,
    analyse_store,
    est_of,
    p_value_greater,
    recommend,
    seed_test,
    stat_of,
)
from paramsplit.errors import StoreError, UsageError
from paramsplit.store import Store

MEMBERS = {
    ("single", 1): "resnet-20-{w}",
    ("deq", 2): "resnet-20-{w}",
    ("deq", 4): "resnet-20-{w}",
    ("weq", 2): "resnet-8-{w}",
    ("weq", 4): "resnet-8-{w}",
}


def run(
    budget: int,
    design_class: str = "single",
    k: int = 1,
    seed: int = 0,
    accuracy: float | None = 0.9,
    *,
    status: str = "done",
    curve: tuple[float, ...] = (),
    epoch_s: float = 1.0,
    dataset: str = "digits",
    total_params: int | None = None,
    **metrics: float,
) -> RunRecord:
    """One run; `curve` is its validation accuracy per epoch, `epoch_s` seconds each. Its
    size defaults to just under the budget (ensemble / single ratio ≈ 1)."""
    member = MEMBERS[(design_class, k)].format(w=budget // 1000)
    return RunRecord(
        run_id=f"{design_class}{k}-{budget}-{seed}-{dataset}",
        family="resnet",
        dataset=dataset,
        design_class=design_class,
        num_members=k,
        member=member,
        budget_params=budget,
        total_params=budget - 100 * k if total_params is None else total_params,
        seed=seed,
        status=status,
        reason=None if status == "done" else "diverged",
        test_accuracy=accuracy if status == "done" else None,
        best_val_accuracy=max(curve) if curve else accuracy,
        curve=tuple(
            CurvePoint(epoch=i + 1, val_accuracy=v, elapsed_train_s=(i + 1) * epoch_s)
            for i, v in enumerate(curve)
        ),
        **metrics,  # type: ignore[arg-type]
    )


def seeds(budget: int, design_class: str, k: int, accuracies: tuple[float, ...], **kw) -> list:
    return [run(budget, design_class, k, s, a, **kw) for s, a in enumerate(accuracies)]


def study(table: dict[int, tuple[float, float]], design_class: str = "deq", k: int = 4) -> list:
    """Single vs one ensemble class: {budget: (single mean, ensemble mean)}, 3 seeds each
    spread ±0.001 around the mean."""
    records = []
    for budget, (single, ensemble) in table.items():
        records += seeds(budget, "single", 1, (single - 0.001, single, single + 0.001))
        records += seeds(budget, design_class, k, (ensemble - 0.001, ensemble, ensemble + 0.001))
    return records


def only_switchover(records, **options):
    (switchover,) = analyse("s", records, **options).switchovers
    return switchover


# --- statistics -----------------------------------------------------------------------------


def test_stat_is_the_mean_and_sample_std_of_measured_values():
    stat = stat_of([0.90, 0.92, None, 0.94])
    assert stat is not None
    assert (stat.n, stat.mean) == (3, pytest.approx(0.92))
    assert stat.std == pytest.approx(0.02)  # sample (n − 1) standard deviation
    one = stat_of([0.5])
    assert one is not None and one.std is None
    assert stat_of([None, float("nan")]) is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([0.91, 0.93, 0.95], [0.90, 0.905, 0.91]),
        ([0.97, 0.95], [0.96, 0.94, 0.93, 0.92]),
        ([0.90, 0.92, 0.94, 0.96, 0.935], [0.91, 0.93, 0.915, 0.925, 0.905]),
        ([0.97, 0.96, 0.95, 0.94, 0.93, 0.92], [0.95, 0.94, 0.93]),
    ],
)
def test_p_value_is_the_exact_one_sided_permutation_test(a, b):
    from scipy.stats import permutation_test

    def difference(x, y, axis):
        return x.mean(axis=axis) - y.mean(axis=axis)

    expected = permutation_test(
        (a, b), difference, permutation_type="independent", alternative="greater",
        n_resamples=math.inf,
    ).pvalue  # fmt: skip
    stat_a, stat_b = stat_of(a), stat_of(b)
    assert stat_a is not None and stat_b is not None
    assert p_value_greater(stat_a, stat_b) == pytest.approx(expected)
    assert seed_test(a, b, 0.05).smallest_p_value == pytest.approx(
        1 / math.comb(len(a + b), len(a))
    )


def test_zero_spread_between_seeds_is_no_evidence_by_itself():
    # Two seeds that agree exactly gave Welch's test zero variance and p = 0 ("significant"),
    # while a larger gain with some spread got p = 0.146. With 2 vs 2 seeds, no outcome of an
    # exact test goes below 1/6: neither is significant, and both say so the same way.
    records = seeds(10_000, "single", 1, (0.95, 0.95)) + seeds(10_000, "deq", 2, (0.9528, 0.9528))
    records += seeds(20_000, "single", 1, (0.95, 0.951)) + seeds(20_000, "deq", 2, (0.958, 0.96))
    analysis = analyse("s", records, require_significance=True)
    for row in analysis.comparisons:
        assert row.wins and not row.significant
        assert row.p_value == pytest.approx(1 / 6) and row.test.smallest_p_value == pytest.approx(
            1 / 6
        )
        assert not row.test.enough_seeds and row.verdict(True) == "too few seeds"
        assert (row.test.gain_low, row.test.gain_high) == (None, None)  # unbounded: too few seeds
    (switchover,) = analysis.switchovers
    assert switchover.outcome == "undecided" and switchover.est_budget is None
    text = switchover.describe()
    assert "not enough seeds to tell" in text and "2 vs 2 seeds cannot give p ≤ 0.05" in text
    assert "as good or better" not in text


def test_significant_only_when_a_win():
    # Means 2e-8 apart are a tie, whatever the test says; with --require-significance this
    # printed "EST ≤ 40k — the ensemble wins at every budget tested".
    records = []
    for budget in (20_000, 40_000):
        records += seeds(budget, "single", 1, (0.95, 0.95, 0.95))
        records += seeds(budget, "deq", 2, (0.95 + 2e-8, 0.95 + 2e-8, 0.95 + 2e-8))
    for require_significance in (False, True):
        analysis = analyse("s", records, require_significance=require_significance)
        assert not any(row.wins or row.significant for row in analysis.comparisons)
        (switchover,) = analysis.switchovers
        assert (switchover.est_budget, switchover.outcome) == (None, "none")
        assert "no EST — the single network is as good or better at 40k" in switchover.describe()


def test_one_seed_with_required_significance_is_not_enough_seeds_to_tell():
    records = seeds(10_000, "single", 1, (0.90,)) + seeds(10_000, "deq", 2, (0.95,))
    switchover = only_switchover(records, require_significance=True)
    assert switchover.outcome == "undecided" and switchover.wins == (False,)
    assert "not enough seeds to tell — at 10k, 1 vs 1 seeds cannot give p ≤ 0.05" in (
        switchover.describe()
    )
    assert "as good or better" not in switchover.describe()
    assert only_switchover(records).outcome == "all"  # by mean over seeds, one seed decides


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([0.96, 0.955, 0.97], [0.95, 0.945, 0.94]),  # 3 vs 3: the interval is bounded
        ([0.93, 0.95, 0.94, 0.96], [0.94, 0.93, 0.95, 0.92]),  # a gain within the noise
        ([0.9528] * 3, [0.95] * 3),  # no spread at all
        ([0.91, 0.92, 0.93, 0.95, 0.97], [0.90, 0.93, 0.905, 0.91]),
    ],
)
def test_the_gain_interval_inverts_the_test_so_the_two_cannot_disagree(a, b):
    test = seed_test(a, b, alpha=0.05)
    gain = sum(a) / len(a) - sum(b) / len(b)
    assert test.gain_low is not None and test.gain_high is not None
    assert test.gain_low <= gain <= test.gain_high
    assert (test.gain_low > 0) == (test.p_value <= 0.05)  # excludes 0 exactly when significant

    # The bounds are the shifts of the ensemble's seeds where the test at alpha turns.
    def greater(delta: float) -> bool:
        return seed_test([v - delta for v in a], b, 0.05).p_value <= 0.05

    def less(delta: float) -> bool:
        return seed_test(b, [v - delta for v in a], 0.05).p_value <= 0.05

    assert greater(test.gain_low - 1e-4) and not greater(test.gain_low + 1e-4)
    assert less(test.gain_high + 1e-4) and not less(test.gain_high - 1e-4)


def test_many_seeds_use_a_seeded_sample_of_splits():
    a = [0.90 + 0.002 * i for i in range(12)]
    b = [0.895 + 0.002 * i for i in range(12)]
    first, again = seed_test(a, b, 0.05), seed_test(a, b, 0.05)
    assert not first.exact and first.num_splits == 10_000
    assert first == again  # a report is reproducible


# --- the EST --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wins", "expected"),
    [
        ((False, False, True, True), 40),
        ((True, False, True, True), 40),  # non-monotone: an early win does not count
        ((True, True, True, True), 10),
        ((True, True, True, False), None),  # losing at the largest budget: no EST
        ((), None),
    ],
)
def test_est_is_the_smallest_budget_from_which_every_budget_wins(wins, expected):
    assert est_of([10, 20, 40, 80][: len(wins)], wins) == expected


def test_est_found_where_the_ensemble_starts_to_win():
    table = {10_000: (0.90, 0.88), 20_000: (0.92, 0.91), 40_000: (0.93, 0.95), 80_000: (0.94, 0.97)}
    switchover = only_switchover(study(table))
    assert switchover.budgets == (10_000, 20_000, 40_000, 80_000)
    assert switchover.wins == (False, False, True, True)
    assert (switchover.est_budget, switchover.outcome) == (40_000, "found")
    assert "EST = 40k" in switchover.describe()


def test_est_ignores_a_win_below_a_loss():
    table = {10_000: (0.90, 0.92), 20_000: (0.92, 0.91), 40_000: (0.93, 0.95), 80_000: (0.94, 0.97)}
    assert only_switchover(study(table)).est_budget == 40_000


def test_a_tie_is_not_a_win():
    table = {10_000: (0.90, 0.92), 20_000: (0.92, 0.92), 40_000: (0.93, 0.95)}
    assert only_switchover(study(table)).wins == (True, False, True)
    tie_at_the_top = {10_000: (0.90, 0.92), 20_000: (0.92, 0.92)}
    switchover = only_switchover(study(tie_at_the_top))
    assert (switchover.est_budget, switchover.outcome) == (None, "none")


def test_a_study_with_no_ensemble_win_has_no_est():
    table = {10_000: (0.90, 0.85), 20_000: (0.92, 0.90), 40_000: (0.95, 0.93)}
    switchover = only_switchover(study(table, "weq", 2))
    assert switchover.est_budget is None
    assert switchover.outcome == "none"
    assert "no EST" in switchover.describe()
    assert switchover.label == "weq k=2"


def test_winning_everywhere_puts_the_est_at_or_below_the_smallest_budget():
    table = {10_000: (0.90, 0.91), 20_000: (0.92, 0.93)}
    switchover = only_switchover(study(table))
    assert (switchover.est_budget, switchover.outcome) == (10_000, "all")
    assert "EST ≤ 10k" in switchover.describe()


def test_missing_seeds_average_what_finished_and_untested_budgets_are_gaps():
    records = study({10_000: (0.90, 0.88), 40_000: (0.93, 0.95)})
    records.append(run(40_000, "deq", 4, seed=3, status="failed"))  # a fourth seed diverged
    records += seeds(20_000, "deq", 4, (0.99, 0.99))  # no single network at 20k
    analysis = analyse("s", records)
    deq_40k = next(d for d in analysis.designs if d.key == ("resnet", "digits", 40_000, "deq", 4))
    assert (deq_40k.accuracy.n, deq_40k.num_failed, deq_40k.seeds) == (3, 1, (0, 1, 2))
    (switchover,) = analysis.switchovers
    assert switchover.budgets == (10_000, 20_000, 40_000)
    assert [s.verdict for s in switchover.steps] == ["loss", "gap", "win"]
    assert switchover.steps[1].gap_reason == "no single network"  # nothing to beat at 20k
    # The gap ends nothing we know: the ensemble might already win at 20k, so EST ≤ 40k.
    assert (switchover.est_budget, switchover.outcome) == (40_000, "at_most")
    assert "EST ≤ 40k" in switchover.describe()
    assert "below it, 20k has no comparison (no single network)" in switchover.describe()
    assert [r.run_id for r in analysis.failed] == ["deq4-40000-3-digits"]


def test_a_gap_inside_a_run_of_wins_is_shown_and_never_spanned():
    # Wins at 10k and 40k, the ensemble failed at 20k: "wins at every budget tested" skipped
    # 20k without a word.
    records = study({10_000: (0.90, 0.92), 40_000: (0.93, 0.95)})
    records += study({20_000: (0.91, 0.0)})[:3]  # the single network at 20k
    records += [run(20_000, "deq", 4, seed, status="failed") for seed in range(3)]
    switchover = only_switchover(records)
    assert [s.text for s in switchover.steps] == [
        "10k✓ (0.97×)", "20k· (failed)", "40k✓ (0.99×)",
    ]  # fmt: skip
    assert (switchover.est_budget, switchover.outcome) == (40_000, "at_most")
    assert "wins at every budget" not in switchover.describe()
    assert "below it, 20k has no comparison (failed)" in switchover.describe()
    assert switchover.describe().count("(failed)") == 1  # said once


@pytest.mark.parametrize(
    ("change", "reason", "outcome"),
    [
        ("ensemble failed", "failed", "gap"),
        ("ensemble pending", "not run yet", "gap"),
        ("single failed", "single network failed", "gap"),
        ("ensemble infeasible", "infeasible or not planned", "gap"),
    ],
)
def test_a_gap_at_the_largest_budget_means_no_est_and_says_why(change, reason, outcome):
    records = study({10_000: (0.90, 0.92)})
    records += seeds(
        20_000, "single", 1, (0.91, 0.91), status="failed" if "single" in change else "done"
    )
    if change in ("ensemble failed", "ensemble pending", "single failed"):
        status = {"ensemble failed": "failed", "ensemble pending": "pending"}.get(change, "done")
        records += seeds(20_000, "deq", 4, (0.95, 0.95), status=status)
    switchover = only_switchover(records)
    assert (switchover.est_budget, switchover.outcome) == (None, outcome)
    assert f"no EST — 20k, the largest budget, has no comparison ({reason})" in (
        switchover.describe()
    )


def test_significance_can_be_required_across_seeds():
    records = []
    for budget in (10_000, 20_000):
        records += seeds(budget, "single", 1, (0.90, 0.92, 0.94))
    records += seeds(10_000, "deq", 4, (0.90, 0.93, 0.95))  # higher mean, within the noise
    records += seeds(20_000, "deq", 4, (0.97, 0.975, 0.98))  # clearly better
    by_mean = only_switchover(records)
    significant = only_switchover(records, require_significance=True)
    assert by_mean.est_budget == 10_000
    assert significant.wins == (False, True)
    assert significant.est_budget == 20_000
    assert significant.steps[0].verdict == "not significant"  # decided: the EST is exact
    assert significant.outcome == "found"
    assert "p ≤ 0.05, exact permutation test" in significant.describe()


def test_switchovers_are_separate_per_class_k_and_dataset():
    records = study({10_000: (0.90, 0.95)}, "deq", 4) + study({10_000: (0.90, 0.85)}, "weq", 2)
    records += [
        run(10_000, "single", 1, 0, 0.5, dataset="fashion"),
        run(10_000, "deq", 4, 0, 0.6, dataset="fashion"),
    ]
    labels = {(s.dataset, s.label): s.outcome for s in analyse("s", records).switchovers}
    assert labels == {
        ("digits", "deq k=4"): "all",
        ("digits", "weq k=2"): "none",
        ("fashion", "deq k=4"): "all",
    }


# --- the win table: costs and time to accuracy ----------------------------------------------


def test_win_table_has_gains_cost_ratios_and_time_to_accuracy():
    single = run(
        50_000, curve=(0.80, 0.90, 0.95, 0.96), epoch_s=1.0, train_time_s=4.0,
        epoch_time_s=1.0, latency_ms_batch1=2.0, peak_train_memory_bytes=4_000,
    )  # fmt: skip
    deq = run(
        50_000, "deq", 4, accuracy=0.97, curve=(0.85, 0.96, 0.97, 0.97), epoch_s=2.0,
        train_time_s=8.0, epoch_time_s=2.0, latency_ms_batch1=5.0, peak_train_memory_bytes=1_000,
    )  # fmt: skip
    (row,) = analyse("s", [single, deq]).comparisons
    assert row.accuracy_gain == pytest.approx(0.07)
    assert row.wins and not row.significant  # one seed a side: p cannot go below 1/2
    assert (row.p_value, row.test.enough_seeds) == (0.5, False)
    assert row.cost_ratios == {
        "train_time_s": 2.0,
        "epoch_time_s": 2.0,
        "latency_ms_batch1": 2.5,
        "peak_train_memory_bytes": 0.25,
        "loop_train_memory_bytes": None,
        "peak_inference_memory_bytes": None,
    }
    # The single network reaches its best (0.96) after 4 epochs of 1 s; the ensemble passes
    # 0.96 at its second epoch of 2 s: the same time, so a speed-up of 1.
    assert row.target_val_accuracy == 0.96
    assert row.single_time is not None and row.ensemble_time is not None
    assert (row.single_time.median_s, row.ensemble_time.median_s) == (4.0, 4.0)
    assert row.speedup == pytest.approx(1.0)
    assert row.params_ratio == row.to_dict()["params_ratio"] == pytest.approx(49_600 / 49_900)


def test_an_ensemble_that_never_reaches_the_target_has_no_speedup():
    single = run(50_000, curve=(0.80, 0.95))
    weq = run(50_000, "weq", 2, accuracy=0.85, curve=(0.70, 0.85))
    (row,) = analyse("s", [single, weq]).comparisons
    assert row.ensemble_time is not None
    assert (row.ensemble_time.median_s, row.ensemble_time.reached_text, row.speedup) == (
        None, "0/1", None,
    )  # fmt: skip
    assert not row.wins


SINGLE_CURVES = ((0.90, 0.91, 0.92), (0.95, 0.96, 0.97), (0.95, 0.97, 0.99))


def test_identical_curves_give_a_speedup_of_exactly_one():
    # The ensemble was timed to the single network's mean best, the single network to each
    # seed's own best: the same curves came out 1.5× apart.
    records = []
    for seed, curve in enumerate(SINGLE_CURVES):
        records.append(run(10_000, "single", 1, seed, curve=curve))
        records.append(run(10_000, "deq", 2, seed, curve=curve))
    (row,) = analyse("s", records).comparisons
    assert row.target_val_accuracy == 0.97  # the single network's median best: one target
    assert row.ensemble_time == row.single_time
    assert row.single_time is not None and row.single_time.reached_text == "2/3"
    assert row.speedup == 1.0


def test_a_seed_that_never_reaches_the_target_counts_as_never():
    # Two of three ensemble seeds never reach the target: the median was taken over the one
    # that did, as if the other two had not run.
    records = [run(10_000, "single", 1, seed, curve=(0.90, 0.95)) for seed in range(3)]
    for seed, curve in enumerate(((0.96, 0.97), (0.80, 0.90), (0.85, 0.91))):
        records.append(run(10_000, "deq", 2, seed, curve=curve))
    (row,) = analyse("s", records).comparisons
    assert row.ensemble_time is not None
    assert (row.ensemble_time.median_s, row.ensemble_time.reached_text) == (None, "1/3")
    assert row.speedup is None
    records[4] = run(10_000, "deq", 2, 1, curve=(0.80, 0.95))  # now two of three get there
    (row,) = analyse("s", records).comparisons
    assert row.ensemble_time is not None
    assert (row.ensemble_time.median_s, row.ensemble_time.reached_text) == (2.0, "2/3")
    assert row.speedup == 1.0


# --- parameter ratios and matching ----------------------------------------------------------


def ratio_study(ensemble_params: dict[int, int]) -> list[RunRecord]:
    """Single networks of 10,000 params at each budget; weq k=2 of `ensemble_params`,
    winning everywhere by 2 points."""
    records = []
    for budget, params in ensemble_params.items():
        records += seeds(budget, "single", 1, (0.90, 0.91, 0.92), total_params=10_000)
        records += seeds(budget, "weq", 2, (0.92, 0.93, 0.94), total_params=params)
    return records


def test_every_comparison_shows_its_params_ratio_and_unmatched_ones_are_flagged():
    # weq k=2 "won" at 5k with 61% of the single network's parameters, and nobody was told.
    records = ratio_study({5_000: 6_100, 10_000: 9_500, 20_000: 10_000})
    analysis = analyse("s", records)
    assert [(row.params_ratio, row.matched) for row in analysis.comparisons] == [
        (0.61, False), (0.95, True), (1.0, True),
    ]  # fmt: skip
    assert analysis.to_dict()["num_unmatched"] == 1
    (switchover,) = analysis.switchovers
    assert switchover.outcome == "all"  # counted, but flagged
    assert "5k✓ (0.61×, unmatched)" in switchover.sequence
    assert "ensemble params 0.61–1.00× the single network's; 1 unmatched, outside [0.90, 1.00]" in (
        switchover.describe()
    )
    note = analysis.matching_note()
    assert note is not None and note.startswith("1 of 3 comparisons are unmatched")
    assert "counted in the EST" in note


def test_the_est_can_be_restricted_to_matched_comparisons():
    records = ratio_study({5_000: 6_100, 10_000: 9_500, 20_000: 10_000})
    analysis = analyse("s", records, matched_only=True)
    (switchover,) = analysis.switchovers
    assert switchover.steps[0].text == "5k· (unmatched, 0.61×)"
    assert (switchover.est_budget, switchover.outcome) == (10_000, "at_most")
    note = analysis.matching_note()
    assert note is not None and "1 of 3 comparisons" in note and "left out of the EST" in note
    wider = analyse("s", records, matched_only=True, match_tolerance=(0.6, 1.0))
    assert wider.unmatched == [] and wider.matching_note() is None
    assert wider.switchovers[0].outcome == "all"


def test_a_match_tolerance_is_two_ordered_ratios():
    from paramsplit.analysis import DEFAULT_MATCH_TOLERANCE, is_matched, parse_match_tolerance

    assert DEFAULT_MATCH_TOLERANCE == (0.90, 1.00)
    assert parse_match_tolerance("0.95,1.02") == (0.95, 1.02)
    assert is_matched(0.9) and is_matched(1.0) and not is_matched(1.001)
    for bad in ("0.9", "a,b", "1.0,0.9", "0,1"):
        with pytest.raises(UsageError, match="--match-tolerance must"):
            parse_match_tolerance(bad)


# --- the headline accuracy ------------------------------------------------------------------


def test_the_headline_accuracy_can_be_the_vote_or_the_averaged_logits():
    records = []
    for seed in range(2):
        records.append(run(10_000, "single", 1, seed, accuracy=0.90))  # stored without logit/vote
        deq = run(10_000, "deq", 2, seed, accuracy=0.92)
        records.append(
            RunRecord(**{**deq.__dict__, "test_logit_accuracy": 0.93, "test_vote_accuracy": 0.89})
        )
    gains = {kind: analyse("s", records, accuracy=kind).comparisons[0].accuracy_gain
             for kind in ("prob", "logit", "vote")}  # fmt: skip
    assert gains == pytest.approx({"prob": 0.02, "logit": 0.03, "vote": -0.01})
    assert analyse("s", records, accuracy="vote").to_dict()["accuracy_column"] == (
        "test_vote_accuracy"
    )
    with pytest.raises(UsageError, match="--accuracy must be one of prob, logit, vote, got 'mean'"):
        analyse("s", records, accuracy="mean")


# --- heat map -------------------------------------------------------------------------------


def test_heat_map_names_the_winning_classes_per_budget_and_epoch():
    records = [
        run(10_000, curve=(0.50, 0.60, 0.70)),
        run(10_000, "deq", 4, curve=(0.40, 0.65, 0.75)),
        run(10_000, "weq", 4, curve=(0.45, 0.55, 0.80)),
        run(20_000, curve=(0.50, 0.60, 0.70)),
        run(20_000, "deq", 4, curve=(0.60, 0.60)),  # stopped early: a gap at epoch 3
    ]
    (heat,) = analyse("s", records).heat_maps
    assert (heat.num_members, heat.metric, heat.budgets, heat.epochs) == (
        4,
        "val_accuracy",
        (10_000, 20_000),
        (1, 2, 3),
    )
    assert heat.cells == (("single", "deq", "both"), ("deq", "single", ""))


def test_heat_map_uses_test_accuracy_when_every_epoch_recorded_it():
    points = (CurvePoint(1, 0.5, 0.6, 1.0),)
    records = [
        RunRecord("a", "resnet", "digits", "single", 1, "resnet-20-4", 10, 10, 0,
                  test_accuracy=0.6, curve=points),
        RunRecord("b", "resnet", "digits", "deq", 2, "resnet-20-2", 10, 10, 0,
                  test_accuracy=0.7, curve=(CurvePoint(1, 0.4, 0.7, 1.0),)),
    ]  # fmt: skip
    (heat,) = analyse("s", records).heat_maps
    assert heat.metric == "test_accuracy"
    assert heat.cells == (("deq",),)


# --- Pareto ---------------------------------------------------------------------------------


def test_pareto_front_keeps_designs_nothing_beats_on_every_objective():
    costs = {"train_time_s": 1.0, "latency_ms_batch1": 1.0, "peak_train_memory_bytes": 100}
    records = [
        run(10_000, accuracy=0.90, **costs),  # cheapest of all: on the front
        run(10_000, "deq", 4, accuracy=0.95, **{**costs, "train_time_s": 3.0}),  # most accurate
        run(10_000, "weq", 4, accuracy=0.89, **{**costs, "train_time_s": 2.0}),  # dominated
    ]
    analysis = analyse("s", records)
    (front,) = analysis.pareto
    assert front.objectives == (
        "accuracy",
        "train_time_s",
        "latency_ms_batch1",
        "peak_train_memory_bytes",
    )
    assert {key[3] for key in front.keys} == {"single", "deq"}
    weq = next(d for d in analysis.designs if d.design_class == "weq")
    assert not analysis.on_front(weq)


def test_pareto_leaves_out_objectives_a_design_did_not_measure():
    records = [
        run(10_000, accuracy=0.90, train_time_s=1.0, latency_ms_batch1=1.0),
        run(10_000, "deq", 4, accuracy=0.95, train_time_s=3.0),  # no latency measured
    ]
    (front,) = analyse("s", records).pareto
    assert front.objectives == ("accuracy", "train_time_s")
    assert len(front.keys) == 2


# --- recommend ------------------------------------------------------------------------------


def measured_study() -> list[RunRecord]:
    records = []
    for budget, (single, deq, weq) in {
        20_000: (0.95, 0.94, 0.93),
        50_000: (0.96, 0.98, 0.97),
    }.items():
        records += seeds(
            budget,
            "single",
            1,
            (single - 0.002, single, single + 0.002),
            train_time_s=10.0,
            latency_ms_batch1=1.0,
            throughput_images_per_s=1000.0,
            peak_train_memory_bytes=4e6,
        )
        records += seeds(
            budget,
            "deq",
            4,
            (deq - 0.002, deq, deq + 0.002),
            train_time_s=30.0,
            latency_ms_batch1=4.0,
            throughput_images_per_s=400.0,
            peak_train_memory_bytes=2e6,
        )
        records += seeds(
            budget,
            "weq",
            4,
            (weq - 0.002, weq, weq + 0.002),
            train_time_s=12.0,
            latency_ms_batch1=1.5,
            throughput_images_per_s=900.0,
            peak_train_memory_bytes=1e6,
        )
    return records  # fmt: skip


def test_recommend_picks_the_most_accurate_design_and_says_how_sure():
    answer = recommend(analyse("s", measured_study()).designs, 50_000)
    assert answer.exact_budget and answer.notes == ()
    assert answer.choice is not None and answer.runner_up is not None
    assert (answer.choice.label, answer.runner_up.label) == ("deq k=4", "weq k=4")
    assert answer.accuracy_margin == pytest.approx(0.01)
    # Every deq seed beats every weq seed: with 3 vs 3, p = 1/20, as low as it can go.
    assert answer.test is not None and answer.p_value == answer.test.smallest_p_value == 0.05
    assert answer.params_ratio == pytest.approx(49_600 / 49_600)
    deq = next(c for c in answer.candidates if c.summary.label == "deq k=4")
    assert (deq.params_ratio, deq.matched) == (pytest.approx(49_600 / 49_900), True)
    assert answer.choice.run_ids == (
        "deq4-50000-0-digits",
        "deq4-50000-1-digits",
        "deq4-50000-2-digits",
    )


def test_recommend_respects_constraints_and_says_why_designs_are_out():
    designs = analyse("s", measured_study()).designs
    answer = recommend(designs, 50_000, Constraints(max_latency_ms=2.0))
    assert answer.choice is not None and answer.choice.label == "weq k=4"
    deq = next(c for c in answer.candidates if c.summary.label == "deq k=4")
    assert deq.violations == ("latency 4 ms > 2 ms",)
    tight = recommend(designs, 50_000, Constraints(max_memory_bytes=1.5e6, max_train_time_s=11))
    assert tight.choice is None
    assert "no measured design meets every constraint" in tight.notes[0]


def test_recommend_by_latency_and_at_a_larger_batch():
    designs = analyse("s", measured_study()).designs
    assert recommend(designs, 50_000, objective="latency").choice.label == "single"  # type: ignore[union-attr]
    batched = recommend(designs, 50_000, Constraints(max_latency_ms=100, batch_size=64))
    # 64 images at 400 images/s take 160 ms: deq is out, weq (71 ms) is in.
    assert batched.choice is not None and batched.choice.label == "weq k=4"
    assert "estimated from measured throughput" in batched.notes[0]
    assert recommend(designs, 50_000, objective="train-time").choice.label == "single"  # type: ignore[union-attr]


def test_recommend_answers_an_unmeasured_budget_from_the_nearest_within_it():
    designs = analyse("s", measured_study()).designs
    answer = recommend(designs, 30_000)
    assert (answer.measured_budget, answer.exact_budget) == (20_000, False)
    assert answer.choice is not None and answer.choice.label == "single"
    assert "30k was not measured; answering from 20k" in answer.notes[0]
    assert "next one up is 50k" in answer.notes[0]
    below_all = recommend(designs, 5_000)
    assert below_all.measured_budget == 20_000
    assert "exceed your budget" in below_all.notes[0]


def test_recommend_refuses_mixed_results_and_unknown_objectives():
    records = [*measured_study(), run(20_000, dataset="fashion")]
    with pytest.raises(UsageError, match=r"several families or datasets .*pick one"):
        recommend(analyse("s", records).designs, 20_000)
    with pytest.raises(UsageError, match="unknown objective 'speed'; allowed: accuracy"):
        recommend(analyse("s", measured_study()).designs, 20_000, objective="speed")
    with pytest.raises(UsageError, match="batch_size must be at least 1, got 0"):
        Constraints(batch_size=0)
    empty = recommend([], 20_000)
    assert empty.choice is None and "run a study first" in empty.notes[0]


# --- from the database, without torch -------------------------------------------------------


def test_analysis_reads_the_results_database(tmp_path):
    config = {"epochs": 2, "batch_size": 64}
    with Store.open(tmp_path / "r.db") as store:
        store.add_study("demo", {"name": "demo"})
        specs = []
        for design_class, k, member in (("single", 1, "resnet-8-4"), ("deq", 2, "resnet-8-3")):
            for seed in (0, 1):
                specs.append({
                    "family": "resnet", "design_class": design_class, "num_members": k,
                    "member": member, "member_depth": 8, "member_width": 4,
                    "total_params": 9_000, "budget_params": 10_000, "ratio": 0.9,
                    "dataset": "digits", "config": config, "seed": seed,
                })  # fmt: skip
        store.add_runs("demo", specs)
        accuracies = iter([0.90, 0.92, 0.95, 0.97])
        while (claimed := store.claim_next("demo", "w")) is not None:
            accuracy = next(accuracies)
            store.finish(claimed["run_id"], {
                "test_accuracy": accuracy, "best_val_accuracy": accuracy, "train_time_s": 2.0,
                "curve": [{"epoch": 1, "val_accuracy": accuracy - 0.1, "elapsed_train_s": 1.0},
                          {"epoch": 2, "val_accuracy": accuracy, "elapsed_train_s": 2.0}],
            })  # fmt: skip
        analysis = analyse_store(store)  # the latest study
    assert analysis.study == "demo"
    single, deq = analysis.designs
    assert (single.design, deq.design) == ("resnet-8-4", "2x resnet-8-3")
    assert single.accuracy.mean == pytest.approx(0.91)
    assert deq.accuracy.mean == pytest.approx(0.96)
    assert analysis.switchovers[0].est_budget == 10_000
    assert analysis.heat_maps[0].cells == (("deq", "deq"),)
    assert math.isclose(analysis.to_dict()["designs"][1]["ratio"], 0.9)


def test_an_empty_database_says_to_run_a_study(tmp_path):
    with Store.open(tmp_path / "empty.db") as store, pytest.raises(StoreError, match="no studies"):
        analyse_store(store)


def test_reading_results_does_not_import_torch():
    code = (
        "import sys, paramsplit.analysis as a\n"
        "a.analyse('s', [])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_means_equal_up_to_floating_point_noise_tie():
    # 332, 333 and 334 against 330, 331 and 338 right out of 360 test images: the same mean,
    # 333/360, which floating point puts 2e-16 higher for the first.
    single = tuple(n / 360 for n in (330, 331, 338))
    deq = tuple(n / 360 for n in (332, 333, 334))
    records = seeds(10_000, "single", 1, single) + seeds(10_000, "deq", 2, deq)
    (row,) = analyse("s", records).comparisons
    assert row.accuracy_gain != 0 and not row.wins


def test_recommend_breaks_an_accuracy_tie_by_training_time():
    records = seeds(10_000, "deq", 4, tuple(n / 360 for n in (332, 333, 334)), train_time_s=30.0)
    records += seeds(10_000, "weq", 2, tuple(n / 360 for n in (330, 331, 338)), train_time_s=10)
    answer = recommend(analyse("s", records).designs, 10_000)
    assert answer.choice is not None and answer.choice.label == "weq k=2"


def test_recommend_ties_accuracies_by_the_same_rule_as_a_win():
    # 2e-7 apart, within the tie tolerance, yet on either side of a multiple of it: a rule
    # that rounds to the tolerance would rank weq first; the tie goes to the faster deq.
    records = [run(10_000, "deq", 2, accuracy=0.5000004, train_time_s=10.0)]
    records += [run(10_000, "weq", 2, accuracy=0.5000006, train_time_s=30.0)]
    records += [run(10_000, accuracy=0.5000006)]
    analysis = analyse("s", records)
    answer = recommend(analysis.designs, 10_000)
    assert answer.choice is not None and answer.choice.label == "deq k=2"
    verdicts = {row.ensemble.label: row.verdict() for row in analysis.comparisons}
    assert verdicts == {"deq k=2": "tie", "weq k=2": "tie"}


def test_a_run_asked_for_at_two_budgets_counts_once_but_compares_at_both():
    shared = run(10_000, "deq", 2, accuracy=0.95)
    at_5k = RunRecord(**{**shared.__dict__, "budget_params": 5_000})  # the same run id
    records = [run(5_000, accuracy=0.90), run(10_000, accuracy=0.97), shared, at_5k]
    analysis = analyse("s", records)
    assert (analysis.num_runs, analysis.num_done) == (3, 3)
    (switchover,) = analysis.switchovers
    assert switchover.budgets == (5_000, 10_000)
    assert switchover.wins == (True, False)


def test_costs_compare_by_median_so_one_disturbed_measurement_does_not_count():
    records = [run(10_000, "single", 1, s, 0.9, latency_ms_batch1=2.0) for s in range(3)]
    records += [
        run(10_000, "weq", 2, s, 0.95, latency_ms_batch1=latency)
        for s, latency in enumerate((2.0, 2.2, 20.0))  # the third measured beside a training job
    ]
    analysis = analyse("s", records)
    (row,) = analysis.comparisons
    assert row.cost_ratios["latency_ms_batch1"] == pytest.approx(1.1)
    answer = recommend(analysis.designs, 10_000, Constraints(max_latency_ms=3))
    assert answer.choice is not None and answer.choice.label == "weq k=2"


def test_one_group_picks_the_family_and_dataset_asked_or_names_the_choices():
    analysis = analyse("s", [*measured_study(), run(20_000, dataset="fashion")])
    assert {d.dataset for d in analysis.one_group(dataset="fashion")} == {"fashion"}
    with pytest.raises(UsageError, match=r"pick one family and dataset: resnet on digits, resn"):
        analysis.one_group()
