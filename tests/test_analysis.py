"""The analysis on hand-written records with known answers: statistics, the win table, the
EST (ties, non-monotone results, missing seeds, no win), heat maps, time to accuracy, Pareto
fronts and recommendations. Also: it reads the results database and never imports torch."""

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
    **metrics: float,
) -> RunRecord:
    """One run; `curve` is its validation accuracy per epoch, `epoch_s` seconds each."""
    member = MEMBERS[(design_class, k)].format(w=budget // 1000)
    return RunRecord(
        run_id=f"{design_class}{k}-{budget}-{seed}-{dataset}",
        family="resnet",
        dataset=dataset,
        design_class=design_class,
        num_members=k,
        member=member,
        budget_params=budget,
        total_params=budget - 100 * k,
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


def test_p_value_is_welchs_one_sided_t_test():
    from scipy.stats import ttest_ind

    a, b = [0.91, 0.93, 0.95], [0.90, 0.905, 0.91]
    expected = ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
    stat_a, stat_b = stat_of(a), stat_of(b)
    assert stat_a is not None and stat_b is not None
    assert p_value_greater(stat_a, stat_b) == pytest.approx(expected)
    single_seed = stat_of([0.99])
    assert single_seed is not None and p_value_greater(single_seed, stat_b) is None


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


def test_missing_seeds_average_what_finished_and_untested_budgets_are_skipped():
    records = study({10_000: (0.90, 0.88), 40_000: (0.93, 0.95)})
    records.append(run(40_000, "deq", 4, seed=3, status="failed"))  # a fourth seed diverged
    records += seeds(20_000, "deq", 4, (0.99, 0.99))  # no single network at 20k
    analysis = analyse("s", records)
    deq_40k = next(d for d in analysis.designs if d.key == ("resnet", "digits", 40_000, "deq", 4))
    assert (deq_40k.accuracy.n, deq_40k.num_failed, deq_40k.seeds) == (3, 1, (0, 1, 2))
    (switchover,) = analysis.switchovers
    assert switchover.budgets == (10_000, 40_000)  # 20k has no single network to beat
    assert switchover.est_budget == 40_000
    assert [r.run_id for r in analysis.failed] == ["deq4-40000-3-digits"]


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
    assert "p < 0.05" in significant.describe()


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
    assert row.wins and row.p_value is None and not row.significant  # one seed: no test
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
    assert (row.single_time_to_best_s, row.time_to_accuracy_s) == (4.0, 4.0)
    assert row.speedup == pytest.approx(1.0)
    assert row.to_dict()["params_ratio"] == pytest.approx(49_600 / 49_900)


def test_an_ensemble_that_never_reaches_the_target_has_no_speedup():
    single = run(50_000, curve=(0.80, 0.95))
    weq = run(50_000, "weq", 2, accuracy=0.85, curve=(0.70, 0.85))
    (row,) = analyse("s", [single, weq]).comparisons
    assert (row.time_to_accuracy_s, row.reached_target, row.speedup) == (None, 0, None)
    assert not row.wins


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
    assert answer.p_value is not None and answer.p_value < 0.01
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
    with pytest.raises(UsageError, match="--batch must be at least 1"):
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
