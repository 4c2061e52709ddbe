"""Latency in the analysis: side-by-side figures first, every fallback said; loads flagged.

On hand-written records and measurement rows: no torch, no timing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from paramsplit.analysis import Constraints, RunRecord, recommend, record_from_row, summarise
from paramsplit.analysis.latency import (
    ESTIMATED,
    LATENCY_SOURCES,
    POST_TRAINING,
    SIDE_BY_SIDE,
    latency_at,
    load_notes,
    measured_latencies,
)

BUDGET = 20_000
MEMBERS = {"single": (1, "resnet-20-4"), "deq": (2, "resnet-20-3"), "weq": (2, "resnet-8-4")}
EARLIER = datetime(2026, 11, 1, 12, tzinfo=UTC)


def record(design_class: str, seed: int = 0, **metrics) -> RunRecord:
    k, member = MEMBERS[design_class]
    return RunRecord(
        run_id=f"{design_class}-{seed}",
        family="resnet",
        dataset="digits",
        design_class=design_class,
        num_members=k,
        member=member,
        budget_params=BUDGET,
        total_params=BUDGET,
        seed=seed,
        test_accuracy=0.9,
        **{"latency_ms_batch1": 2.0, "throughput_images_per_s": 8_000.0, **metrics},
    )


def measurement(design_class: str, batch_size: int, latency_ms: float, **changes) -> dict:
    """A row as `Store.measurements` gives it."""
    k, member = MEMBERS[design_class]
    return {
        "session_id": "old",
        "measured_at": EARLIER,
        "family": "resnet",
        "dataset": "digits",
        "budget_params": BUDGET,
        "design_class": design_class,
        "num_members": k,
        "design": member if k == 1 else f"{k}x {member}",
        "batch_size": batch_size,
        "executor": "fused" if k > 1 else "loop",
        "chosen": True,
        "latency_ms": latency_ms,
        "latency_q1_ms": latency_ms * 0.9,
        "latency_q3_ms": latency_ms * 1.1,
        "throughput_images_per_s": 1000 * batch_size / latency_ms,
        "ratio_to_single": None,
        "ratio_q1": None,
        "ratio_q3": None,
        "rounds": 10,
        **changes,
    }


def test_the_latest_session_of_each_budget_and_batch_size_counts_and_only_the_fastest():
    later = {"session_id": "new", "measured_at": EARLIER + timedelta(hours=1)}
    rows = [
        measurement("single", 1, 3.0),
        measurement("single", 1, 2.5, **later),
        measurement("deq", 1, 9.0, **later, executor="loop", chosen=False),
        measurement("deq", 1, 5.0, **later),
        measurement("single", 64, 30.0),  # batch 64 was measured by the old session only
    ]
    latest = {
        (m.design, m.batch_size): (m.session_id, m.latency_ms) for m in measured_latencies(rows)
    }
    assert latest == {
        ("resnet-20-4", 1): ("new", 2.5),
        ("2x resnet-20-3", 1): ("new", 5.0),
        ("resnet-20-4", 64): ("old", 30.0),
    }


def test_latency_is_side_by_side_where_measured_and_else_says_where_it_came_from():
    single, deq, weq = summarise([record("single"), record("deq"), record("weq")])
    measured = measured_latencies([measurement("single", 64, 12.0), measurement("deq", 64, 20.0)])
    assert latency_at(single, 64, measured) == (12.0, SIDE_BY_SIDE)
    assert latency_at(deq, 64, measured) == (20.0, SIDE_BY_SIDE)
    assert latency_at(weq, 64, measured) == (8.0, ESTIMATED)  # 64 images at 8,000 per second
    assert latency_at(weq, 1, measured) == (2.0, POST_TRAINING)
    assert latency_at(summarise([record("weq", latency_ms_batch1=None)])[0], 1) == (None, None)


def test_recommend_prefers_side_by_side_figures_and_names_the_designs_that_fall_back():
    designs = summarise([record("single"), record("deq"), record("weq")])
    measured = measured_latencies([measurement("single", 64, 12.0), measurement("deq", 64, 20.0)])
    answer = recommend(
        designs, BUDGET, Constraints(max_latency_ms=15, batch_size=64), measured_latencies=measured
    )
    sources = {c.summary.design: (c.latency_ms, c.latency_source) for c in answer.candidates}
    assert sources == {
        "resnet-20-4": (12.0, SIDE_BY_SIDE),
        "2x resnet-20-3": (20.0, SIDE_BY_SIDE),
        "2x resnet-8-4": (8.0, ESTIMATED),
    }
    assert answer.to_dict()["candidates"][0]["latency_source"] in (SIDE_BY_SIDE, ESTIMATED)
    (note,) = [n for n in answer.notes if n.startswith("latency at batch 64")]
    assert "2x resnet-8-4: estimated from measured throughput" in note
    assert "resnet-20-4:" not in note and "paramsplit measure --batch 64" in note
    everywhere = measured + measured_latencies([measurement("weq", 64, 9.0)])
    answer = recommend(
        designs,
        BUDGET,
        Constraints(max_latency_ms=15, batch_size=64),
        measured_latencies=everywhere,
    )
    assert not [n for n in answer.notes if n.startswith("latency")]


def test_loads_are_flagged_where_the_costs_they_disturb_decide():
    records = [
        record("single", concurrent_workers=1, latency_under_load=False),
        record("deq", concurrent_workers=2, latency_under_load=True),
        record("weq", concurrent_workers=2, latency_under_load=True),
    ]
    designs = summarise(records)
    by_time = recommend(designs, BUDGET, objective="train-time", records=records)
    assert any(
        "training times were taken under different loads (1, 2 workers" in n for n in by_time.notes
    )
    by_latency = recommend(designs, BUDGET, Constraints(max_latency_ms=5), records=records)
    assert any(
        "post-training latency of 2 run(s) was taken while other workers" in n
        for n in by_latency.notes
    )
    assert not [n for n in by_latency.notes if "training times" in n]
    by_accuracy = recommend(designs, BUDGET, records=records)
    assert by_accuracy.notes == ()
    assert load_notes(records[:1]) == []


def test_a_runs_load_is_read_from_its_metrics():
    row = {
        **record("deq").__dict__,
        "metrics": {"concurrent_workers": 2, "latency_under_load": True},
    }
    del row["concurrent_workers"], row["latency_under_load"], row["curve"]
    read = record_from_row(row)
    assert (read.concurrent_workers, read.latency_under_load) == (2, True)
    assert record_from_row({**row, "metrics": None}).concurrent_workers is None


# --- the win table: side-by-side latency ratios first, loads flagged ----------------------


def test_the_win_table_takes_the_side_by_side_latency_ratio_and_says_so():
    from paramsplit.analysis import analyse

    records = [
        record("single", latency_ms_batch1=2.0),
        record("deq", latency_ms_batch1=6.0),  # post-training: 3x
        record("weq", latency_ms_batch1=4.0),  # post-training: 2x
    ]
    # Measured side by side, deq is 1.5x its single network; weq was not measured.
    rows = [measurement("deq", 1, 3.0, ratio_to_single=1.5), measurement("single", 1, 2.0)]
    analysis = analyse("s", records, measured_latencies=measured_latencies(rows))
    by_class = {c.ensemble.design_class: c for c in analysis.comparisons}
    deq, weq = by_class["deq"], by_class["weq"]
    assert (deq.cost_ratios["latency_ms_batch1"], deq.latency_source) == (1.5, SIDE_BY_SIDE)
    assert (weq.cost_ratios["latency_ms_batch1"], weq.latency_source) == (2.0, POST_TRAINING)
    (note,) = [n for n in analysis.cost_notes() if "latency ratio" in n]
    assert note.startswith("the latency ratio of 1 of 2 comparisons is from figures each run")
    assert analysis.to_dict()["comparisons"][0]["latency_source"] in LATENCY_SOURCES


def test_the_win_table_flags_training_times_taken_under_different_loads():
    from paramsplit.analysis import analyse

    alone = analyse(
        "s", [record("single", concurrent_workers=1), record("deq", concurrent_workers=1)]
    )
    assert alone.comparisons[0].train_loads is None
    assert not [n for n in alone.cost_notes() if "workers" in n]
    mixed = analyse(
        "s", [record("single", concurrent_workers=1), record("deq", concurrent_workers=2)]
    )
    assert mixed.comparisons[0].train_loads == ((2,), (1,))
    assert any("beside different numbers of workers" in n for n in mixed.cost_notes())
