"""The results database: identity, idempotent adds, claims under concurrency, schema checks.

Every test that opens a database runs twice: on a SQLite file and on a real PostgreSQL server
(a throwaway cluster started for the session, or the scratch database named by
PARAMSPLIT_TEST_POSTGRES_URL; its `public` schema is wiped before each test).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy

from paramsplit.analysis.records import records_from_store
from paramsplit.store import (
    SCHEMA_VERSION,
    Claim,
    ClaimLostError,
    Store,
    StoreError,
    default_worker,
    run_id_for,
)

CONFIG = {"epochs": 30, "batch_size": 64, "lr": 0.1, "milestones": [0.5, 0.75]}


def spec(seed: int = 0, width: int = 4, budget: int = 25_000, **changes: object) -> dict:
    return {
        "family": "resnet",
        "design_class": "deq",
        "num_members": 4,
        "member": f"resnet-8-{width}",
        "member_depth": 8,
        "member_width": width,
        "total_params": 24_000,
        "budget_params": budget,
        "dataset": "digits",
        "config": CONFIG,
        "seed": seed,
        **changes,
    }


@pytest.fixture
def url(database: str) -> str:
    """An empty database on each backend (conftest's `database`)."""
    return database


@pytest.fixture
def store(url: str):
    with Store.open(url) as opened:
        opened.add_study("s", {"family": "resnet", "budgets": [25_000]})
        yield opened


# --- identity -----------------------------------------------------------------------------


def test_run_id_is_pinned_so_stored_studies_keep_their_runs():
    # Changing the canonical form would silently re-run every stored study.
    assert run_id_for(spec()) == "e999c8a1a40ad8c2"


def test_run_id_ignores_key_order_budget_and_descriptive_fields():
    reordered = dict(reversed(list(spec().items())))
    assert run_id_for(reordered) == run_id_for(spec())
    assert run_id_for(spec(budget=30_000, total_params=1)) == run_id_for(spec())
    assert run_id_for({**spec(), "config": dict(reversed(list(CONFIG.items())))}) == run_id_for(
        spec()
    )


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 1},
        {"dataset": "cifar10"},
        {"member": "resnet-8-5"},
        {"num_members": 2},
        {"design_class": "weq"},
        {"family": "wrn"},
        {"config": {**CONFIG, "lr": 0.05}},
    ],
)
def test_run_id_changes_with_what_determines_the_result(change):
    assert run_id_for({**spec(), **change}) != run_id_for(spec())


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"seed": None}, "field 'seed' must be an integer, got None"),
        ({"member": ""}, "field 'member' must be a non-empty string"),
        ({"config": [1]}, "field 'config' must be a dict"),
        ({"config": {"lr": object()}}, "cannot store a value of type object"),
    ],
)
def test_run_id_rejects_malformed_specs(bad, message):
    with pytest.raises(StoreError, match=message):
        run_id_for({**spec(), **bad})


def test_run_id_names_missing_fields():
    incomplete = {k: v for k, v in spec().items() if k not in ("seed", "dataset")}
    with pytest.raises(StoreError, match="missing 'dataset', 'seed'; a run spec needs family"):
        run_id_for(incomplete)


# --- studies and runs ---------------------------------------------------------------------


def test_add_runs_is_idempotent_and_studies_share_identical_runs(store):
    specs = [spec(seed=s, width=w) for s in range(2) for w in (3, 4)]
    first = store.add_runs("s", specs)
    assert (first.new, first.existing) == (4, 0)
    assert first.run_ids == tuple(run_id_for(x) for x in specs)
    assert store.add_study("s", {"family": "resnet", "budgets": [25_000]}) is False
    again = store.add_runs("s", specs)
    assert (again.new, again.existing, again.run_ids) == (0, 4, first.run_ids)
    assert store.status_counts("s") == {
        "done": 0, "running": 0, "pending": 4, "failed": 0, "stopped": 0, "total": 4
    }  # fmt: skip

    assert store.add_study("t", {"budgets": [30_000]}) is True
    shared = store.add_runs("t", [spec(seed=0, width=3, budget=30_000), spec(seed=7)])
    assert (shared.new, shared.existing) == (1, 1)
    assert store.status_counts()["total"] == 5
    assert [s["total"] for s in store.studies()] == [4, 2]
    # One row, seen by each study with the budget it asked for.
    assert store.runs("s")[0]["budget_params"] == 25_000
    assert store.runs("t")[0]["budget_params"] == 30_000
    assert store.runs("t")[0]["ratio"] == pytest.approx(24_000 / 30_000)


def test_runs_keep_the_study_order_and_every_field(store):
    specs = [spec(seed=s) for s in (5, 1, 3)]
    store.add_runs("s", specs)
    rows = store.runs("s")
    assert [row["seed"] for row in rows] == [5, 1, 3]
    row = rows[0]
    assert row["design"] == "4x resnet-8-4"
    assert (row["member_depth"], row["member_width"], row["total_params"]) == (8, 4, 24_000)
    assert row["ratio"] == pytest.approx(24_000 / 25_000)
    assert row["config"] == CONFIG
    assert row["spec"] == specs[0]
    assert (row["status"], row["attempts"], row["worker"]) == ("pending", 0, None)


def test_a_run_asked_for_at_two_budgets_is_in_the_study_at_both(store):
    # Two budgets can plan the same design (deq k=4 is `4x resnet-20-1` at 5k and at 10k on
    # 8x8 digits): one run to train, two points for the analysis.
    specs = [spec(budget=25_000), spec(seed=1), spec(budget=50_000)]
    added = store.add_runs("s", specs)
    twice, once = added.run_ids[0], added.run_ids[1]
    assert added.run_ids[2] == twice
    assert (added.new, added.existing, added.new_links) == (2, 0, 3)
    again = store.add_runs("s", specs)
    assert (again.new, again.existing, again.new_links) == (0, 2, 0)

    asked = [(twice, 25_000), (once, 25_000), (twice, 50_000)]
    rows = store.runs("s")
    assert [(row["run_id"], row["budget_params"]) for row in rows] == asked
    assert rows[2]["ratio"] == pytest.approx(24_000 / 50_000)
    same = {key: value for key, value in rows[0].items() if key not in ("budget_params", "ratio")}
    assert same == {key: rows[2][key] for key in same}
    records = records_from_store(store, "s")  # the analysis sees both points
    assert [(record.run_id, record.budget_params) for record in records] == asked

    # Progress counts runs, not links; claims take each run once, in the order first asked.
    assert store.status_counts("s")["total"] == 2
    assert [study["total"] for study in store.studies()] == [2]
    assert store.claim_next("s", "w:1")["run_id"] == twice
    store.finish(twice, {"train_time_s": 10.0})
    assert store.eta_s("s") == pytest.approx(10.0)  # one run left, not two
    assert store.claim_next("s", "w:1")["run_id"] == once
    assert store.claim_next("s", "w:1") is None
    done = store.runs("s", status="done")
    assert [row["budget_params"] for row in done] == [25_000, 50_000]


def test_a_run_asked_for_without_a_budget_is_asked_at_its_own_size(store):
    without = store.add_runs("s", [spec(budget=None), spec(seed=1, budget=None, total_params=None)])
    again = store.add_runs("s", [spec(budget=24_000)])  # its own size, given: the same link
    assert (without.new_links, again.new_links) == (2, 0)
    rows = store.runs("s")
    assert [(row["budget_params"], row["ratio"]) for row in rows] == [(24_000, 1.0), (None, None)]


def test_a_changed_study_definition_replaces_the_old_one(store):
    assert store.add_study("s", {"budgets": [25_000, 50_000]}) is False
    assert store.studies()[0]["definition"] == {"budgets": [25_000, 50_000]}


def test_unknown_study_and_run_are_named(store):
    with pytest.raises(StoreError, match=r"unknown study 'nope' in .*; known: s"):
        store.add_runs("nope", [spec()])
    with pytest.raises(StoreError, match="unknown study 'nope'"):
        store.claim_next("nope", "w")
    with pytest.raises(StoreError, match="unknown run 'abc'"):
        store.finish("abc", {})
    with pytest.raises(StoreError, match="unknown run 'abc'"):
        store.record_epoch("abc", {"epoch": 1})
    with pytest.raises(StoreError, match="status must be one of pending, running, done, failed"):
        store.runs(status="finished")


# --- claims and statuses ------------------------------------------------------------------


def test_status_transitions(store):
    ids = store.add_runs("s", [spec(seed=s) for s in range(3)]).run_ids
    worker = default_worker()
    first = store.claim_next("s", worker)
    assert first is not None
    assert (first["run_id"], first["status"], first["attempts"]) == (ids[0], "running", 1)
    assert first["worker"] == worker and first["spec"] == spec(seed=0)
    assert store.heartbeat(Claim.of(first)) is True
    assert store.heartbeat(dataclasses.replace(Claim.of(first), worker="someone-else:1")) is False

    result = {
        "test_accuracy": 0.975,
        "train_time_s": 12.5,
        "best_epoch": 29,
        "peak_train_memory_bytes": 2**33,
        "flops_per_image": 12_345_678_901,
        "executor": "fused",
        "device": "cpu",
        "torch_version": "2.14.0",
        "member_test_accuracy": [0.95, 0.96, 0.94, 0.955],
        "test_nll": float("nan"),
    }
    store.finish(ids[0], result)
    done = store.run(ids[0])
    assert done["status"] == "done" and done["finished_at"] is not None
    assert (done["test_accuracy"], done["best_epoch"], done["executor"]) == (0.975, 29, "fused")
    assert (done["peak_train_memory_bytes"], done["flops_per_image"]) == (2**33, 12_345_678_901)
    assert done["test_nll"] is None  # NaN is stored as missing
    assert done["metrics"]["member_test_accuracy"] == [0.95, 0.96, 0.94, 0.955]
    assert (done["device"], done["torch_version"]) == ("cpu", "2.14.0")
    assert done["host"] == socket.gethostname() and done["package_version"]

    second = store.claim_next("s", worker)
    assert second is not None
    store.fail(second["run_id"], "diverged")
    third = store.claim_next("s", worker)
    assert third is not None
    assert store.release(third["run_id"]) is True
    assert store.release(ids[0]) is False  # a done run stays done
    assert store.run(third["run_id"])["worker"] is None
    assert store.status_counts("s") == {
        "done": 1, "running": 0, "pending": 1, "failed": 1, "stopped": 0, "total": 3
    }  # fmt: skip
    assert store.runs("s", status="failed")[0]["reason"] == "diverged"

    assert store.claim_next("s", worker)["run_id"] == ids[2]  # released: pending again
    assert store.claim_next("s", worker) is None  # failed runs are not retried by default
    since = datetime.now(UTC)
    retried = store.claim_next("s", worker, retry_failed_before=since)
    assert (retried["run_id"], retried["attempts"], retried["reason"]) == (ids[1], 2, None)
    assert store.claim_next("s", worker, retry_failed_before=since) is None


def test_finish_names_a_metric_of_the_wrong_type(store):
    (run_id,) = store.add_runs("s", [spec()]).run_ids
    with pytest.raises(StoreError, match="result field 'test_accuracy' must be a number, got 'x'"):
        store.finish(run_id, {"test_accuracy": "x"})
    with pytest.raises(StoreError, match=r"field 'best_epoch' must be an integer, got 2\.5"):
        store.finish(run_id, {"best_epoch": 2.5})
    with pytest.raises(StoreError, match="a failed run needs a reason"):
        store.fail(run_id, "")
    assert store.run(run_id)["status"] == "pending"


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_held_by_a_dead_process_on_this_host_is_taken_over(store):
    ids = store.add_runs("s", [spec(seed=0), spec(seed=1)]).run_ids
    dead = f"{socket.gethostname()}:{dead_pid()}"
    alive = f"{socket.gethostname()}:{os.getppid()}"
    assert store.claim_next("s", alive)["run_id"] == ids[0]
    held_by_dead = Claim.of(store.claim_next("s", dead))
    store.record_epoch(held_by_dead, {"epoch": 1, "val_accuracy": 0.5})

    taken = store.claim_next("s", default_worker())
    assert taken is not None
    assert (taken["run_id"], taken["attempts"]) == (ids[1], 2)
    assert taken["started_at"] < taken["claimed_at"]  # the first start is kept
    assert store.heartbeat(held_by_dead) is False
    assert len(store.epochs(ids[1])) == 1  # the resume continues the curve
    assert store.claim_next("s", default_worker()) is None  # the live holder keeps its run


def test_a_run_with_an_old_heartbeat_is_taken_over(store):
    (run_id,) = store.add_runs("s", [spec()]).run_ids
    other = Claim.of(store.claim_next("s", "other-host:123"))
    assert store.claim_next("s", "me:1") is None  # fresh heartbeat, another host: hands off
    taken = store.claim_next("s", "me:1", stale_after_s=0.0)
    assert taken is not None
    assert (taken["run_id"], taken["worker"], taken["attempts"]) == (run_id, "me:1", 2)
    assert store.heartbeat(other) is False


def test_a_worker_that_lost_its_claim_can_write_nothing_more_for_the_run(store):
    # A worker paused past the stale-claim limit loses its run to the next claim. Each write
    # it makes after that is refused, and the new holder's work stands (before: both trained
    # to the end and the last `finish` won).
    (run_id,) = store.add_runs("s", [spec()]).run_ids
    paused = Claim.of(store.claim_next("s", "host-a:1"))
    store.record_epoch(paused, {"epoch": 1, "val_accuracy": 0.1})
    taker = Claim.of(store.claim_next("s", "host-b:2", stale_after_s=0.0))
    lost = rf"host-a:1 no longer holds run {run_id} and cannot record its "
    with pytest.raises(ClaimLostError, match=lost + "epoch: host-b:2 has claimed it since"):
        store.record_epoch(paused, {"epoch": 2, "val_accuracy": 0.9})
    with pytest.raises(ClaimLostError, match=lost + "result: host-b:2 has claimed it since"):
        store.finish(paused, {"test_accuracy": 0.9})
    with pytest.raises(ClaimLostError, match=lost + "result: host-b:2 has claimed it since"):
        store.fail(paused, "diverged")
    assert store.heartbeat(paused) is False
    assert store.release(paused) is False  # and the new holder keeps the run
    run = store.run(run_id)
    assert (run["status"], run["worker"], run["test_accuracy"]) == ("running", "host-b:2", None)
    assert [e["val_accuracy"] for e in store.epochs(run_id)] == [0.1]

    store.finish(taker, {"test_accuracy": 0.5})
    with pytest.raises(ClaimLostError, match="cannot record its result: it is done now"):
        store.finish(paused, {"test_accuracy": 0.9})
    assert store.run(run_id)["test_accuracy"] == 0.5


def test_a_claim_is_one_claim_not_the_worker(store):
    # A worker that lost a run and claimed it again holds a new claim; the old one's writes
    # (a task it still runs for the old claim) are refused.
    (run_id,) = store.add_runs("s", [spec()]).run_ids
    with pytest.raises(StoreError, match=f"run '{run_id}' is pending, not claimed"):
        Claim.of(store.run(run_id))
    first = Claim.of(store.claim_next("s", "w:1"))
    second = Claim.of(store.claim_next("s", "w:1", stale_after_s=0.0))
    assert first.worker == second.worker and first != second
    assert store.heartbeat(first) is False and store.heartbeat(second) is True
    assert store.release(second) is True
    assert store.run(run_id)["status"] == "pending"


def test_a_run_that_always_fails_is_retried_once_per_cutoff(store):
    ids = store.add_runs("s", [spec(seed=0), spec(seed=1)]).run_ids
    for run_id in ids:
        store.claim_next("s", "w:1")
        store.fail(run_id, "diverged")
    since = datetime.now(UTC)  # what `run_study(retry_failed=True)` passes: its start
    for run_id in ids:
        retried = store.claim_next("s", "w:1", retry_failed_before=since)
        assert (retried["run_id"], retried["attempts"]) == (run_id, 2)
        store.fail(run_id, "diverged")  # again: after the cutoff, so not claimed again
    assert store.claim_next("s", "w:1", retry_failed_before=since) is None
    later = store.claim_next("s", "w:1", retry_failed_before=datetime.now(UTC))
    assert (later["run_id"], later["attempts"]) == (ids[0], 3)  # the next invocation retries


def claim_all(url: str, name: str, barrier, results) -> None:
    """A worker process: claim and finish runs until none is left; report the ids claimed."""
    try:
        with Store.open(url) as store:
            barrier.wait()
            claimed = []
            while (run := store.claim_next("s", name)) is not None:
                claimed.append(run["run_id"])
                time.sleep(0.01)  # "training": without it one worker can take every run
                store.record_epoch(run["run_id"], {"epoch": 1})
                store.finish(run["run_id"], {"test_accuracy": 0.5})
        results.put((name, claimed))
    except Exception as error:  # report it rather than leave the test waiting
        results.put((name, repr(error)))
        raise


def test_two_processes_never_claim_the_same_run(store, url):
    num_runs = 40
    ids = store.add_runs("s", [spec(seed=s) for s in range(num_runs)]).run_ids
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=claim_all, args=(url, f"w{i}", barrier, results)) for i in range(2)
    ]
    for worker in workers:
        worker.start()
    claimed = dict(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert all(isinstance(ids_, list) for ids_ in claimed.values()), claimed
    assert all(claimed.values()), "one worker claimed every run: no contention tested"
    every = claimed["w0"] + claimed["w1"]
    assert sorted(every) == sorted(ids)  # each run exactly once
    assert store.status_counts("s")["done"] == num_runs
    assert all(run["attempts"] == 1 for run in store.runs("s"))


# --- curves, progress ---------------------------------------------------------------------


def test_rewriting_an_epoch_replaces_it(store):
    (run_id,) = store.add_runs("s", [spec()]).run_ids
    store.claim_next("s", "w:1")
    for epoch in (1, 2, 3):
        store.record_epoch(run_id, {"epoch": epoch, "lr": 0.1, "val_accuracy": 0.1 * epoch})
    store.record_epoch(run_id, {"epoch": 2, "lr": 0.05, "member_train_loss": [1.0, 2.0]})
    curve = store.epochs(run_id)
    assert [row["epoch"] for row in curve] == [1, 2, 3]
    assert (curve[1]["lr"], curve[1]["val_accuracy"]) == (0.05, None)
    assert curve[1]["record"]["member_train_loss"] == [1.0, 2.0]
    with pytest.raises(StoreError, match="needs an integer 'epoch' >= 0, got '4'"):
        store.record_epoch(run_id, {"epoch": "4"})

    curve_in_result = [{"epoch": e, "train_loss": 1.0 / e, "epoch_time_s": 0.2} for e in (3, 4)]
    store.finish(run_id, {"curve": curve_in_result})
    assert [row["train_loss"] for row in store.epochs(run_id)] == [None, None, 1 / 3, 0.25]


def test_eta_is_mean_train_time_times_runs_left(store):
    ids = store.add_runs("s", [spec(seed=s) for s in range(4)]).run_ids
    assert store.eta_s("s") is None
    for run_id, seconds in zip(ids[:2], (10.0, 20.0), strict=True):
        store.claim_next("s", "w:1")
        store.finish(run_id, {"train_time_s": seconds})
    assert store.eta_s("s") == pytest.approx(30.0)
    store.claim_next("s", "a:1")
    store.claim_next("s", "b:1")
    assert store.eta_s() == pytest.approx(15.0)  # two runs left, two workers on them


# --- opening ------------------------------------------------------------------------------


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "results.db"
    Store.open(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    message = (
        rf"database '{path}' has schema version 7, newer than this paramsplit's "
        rf"{SCHEMA_VERSION}; upgrade paramsplit"
    )
    with pytest.raises(StoreError, match=message):
        Store.open(path)


# Version 1's `study_runs`: one link per (study, run), its budget nullable. Portable DDL, so
# the upgrade is tested on PostgreSQL as well.
STUDY_RUNS_V1 = """
CREATE TABLE study_runs (
    study VARCHAR(200) NOT NULL REFERENCES studies (name) ON DELETE CASCADE,
    run_id VARCHAR(32) NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    budget_params BIGINT,
    ratio DOUBLE PRECISION,
    PRIMARY KEY (study, run_id)
)
"""


def make_version_1(connect_url: str, links: list[tuple]) -> None:
    """Turn a new database into one that version 1 wrote, with these (study, run_id,
    position, budget_params, ratio) links: its other tables are the same."""
    engine = sqlalchemy.create_engine(connect_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE study_runs")
        connection.exec_driver_sql(STUDY_RUNS_V1)
        connection.exec_driver_sql("CREATE INDEX ix_study_runs_run_id ON study_runs (run_id)")
        insert = "INSERT INTO study_runs VALUES (:study, :run_id, :position, :budget, :ratio)"
        names = ("study", "run_id", "position", "budget", "ratio")
        values = [dict(zip(names, link, strict=True)) for link in links]
        connection.execute(sqlalchemy.text(insert), values)
        connection.exec_driver_sql("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    engine.dispose()


def test_a_version_1_database_is_upgraded_in_place_and_keeps_its_links(url):
    with Store.open(url) as store:
        store.add_study("s", {})
        store.add_study("t", {})
        ids = store.add_runs("s", [spec(seed=0), spec(seed=1, budget=None)]).run_ids
        store.claim_next("s", "w:1")
        store.finish(ids[0], {"test_accuracy": 0.9})
        connect_url = store.connect_url
    make_version_1(
        connect_url,
        [("s", ids[0], 0, 25_000, 0.96), ("s", ids[1], 1, None, None),
         ("t", ids[0], 0, 30_000, 0.8)],
    )  # fmt: skip

    with Store.open(url) as store:
        rows = [(r["run_id"], r["budget_params"], r["ratio"], r["status"]) for r in store.runs("s")]
        assert rows == [(ids[0], 25_000, 0.96, "done"), (ids[1], 24_000, 1.0, "pending")]
        assert [(r["run_id"], r["budget_params"]) for r in store.runs("t")] == [(ids[0], 30_000)]
        # The budget that version 1 dropped comes back when the study is added again.
        added = store.add_runs("s", [spec(seed=0), spec(seed=0, budget=50_000)])
        assert (added.new, added.existing, added.new_links) == (0, 1, 1)
        assert [r["budget_params"] for r in store.runs("s")] == [25_000, 24_000, 50_000]
    engine = sqlalchemy.create_engine(connect_url)
    with engine.connect() as connection:
        version = connection.exec_driver_sql("SELECT value FROM meta").scalar()
    engine.dispose()
    assert version == str(SCHEMA_VERSION)


def test_a_version_4_database_keeps_its_resident_set_figures_out_of_the_exact_columns(url):
    # Versions 1-4 stored a subprocess's resident set above a baseline in the memory columns;
    # version 5 stores the exact count there. Old figures must not be compared with new.
    rss = {"peak_train_memory_bytes": 38_500_000, "peak_inference_memory_bytes": 9_000_000}
    with Store.open(url) as store:
        store.add_study("s", {})
        (run_id,) = store.add_runs("s", [spec()]).run_ids
        store.claim_next("s", "w:1")
        store.finish(run_id, {**rss, "memory_method": "subprocess_peak_rss"})
        connect_url = store.connect_url
    engine = sqlalchemy.create_engine(connect_url)
    with engine.begin() as connection:
        for column in ("loop_train_memory_bytes", "loop_inference_memory_bytes", "memory_method"):
            connection.exec_driver_sql(f"ALTER TABLE runs DROP COLUMN {column}")
        connection.exec_driver_sql("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    engine.dispose()

    with Store.open(url) as store:
        run = store.run(run_id)
        assert run["peak_train_memory_bytes"] is run["peak_inference_memory_bytes"] is None
        assert run["memory_method"] is None and run["loop_train_memory_bytes"] is None
        assert {key: run["metrics"][key] for key in rss} == rss  # kept, with their method
        assert run["metrics"]["memory_method"] == "subprocess_peak_rss"
        exact = {"peak_train_memory_bytes": 7, "loop_train_memory_bytes": 5}
        store.add_runs("s", [spec(seed=1)])
        second = store.claim_next("s", "w:1")
        assert second is not None
        store.finish(second["run_id"], {**exact, "memory_method": "live_tensors"})
        again = store.run(second["run_id"])
        assert (again["peak_train_memory_bytes"], again["loop_train_memory_bytes"]) == (7, 5)
        assert again["memory_method"] == "live_tensors"


def test_connect_url_opens_the_same_database_and_only_it_shows_the_password(store, url):
    with Store.open(store.connect_url) as again:
        assert [study["name"] for study in again.studies()] == ["s"]
    password = sqlalchemy.engine.make_url(store.connect_url).password
    if password:  # the test server's URL has one
        assert password in store.connect_url
        assert password not in store.url and password not in repr(store)


def test_a_schema_older_than_every_migration_is_refused(tmp_path):
    path = tmp_path / "results.db"
    Store.open(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=r"has schema version 0, older .* no migration exists"):
        Store.open(path)


def test_sqlite_is_in_wal_mode_with_foreign_keys(tmp_path):
    path = tmp_path / "results.db"
    with Store.open(path) as store:
        store.add_study("s", {})
        assert store.url == str(path)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)


def test_what_is_not_a_paramsplit_database_is_refused(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE runs (x)")
    with pytest.raises(StoreError, match="is not a paramsplit database: it has tables runs"):
        Store.open(other)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not SQLite" * 100)
    with pytest.raises(StoreError, match=r"cannot open database .*: file is not a database"):
        Store.open(text)
    with pytest.raises(StoreError, match=r"folder '.*missing' does not exist"):
        Store.open(tmp_path / "missing" / "results.db")
    with pytest.raises(StoreError, match="cannot open database 'nodriver://h/db'"):
        Store.open("nodriver://h/db")


def test_timestamps_are_utc(store):
    (run_id,) = store.add_runs("s", [spec()]).run_ids
    created = store.run(run_id)["created_at"]
    assert created.tzinfo == UTC
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60


def test_importing_the_store_does_not_import_torch():
    code = "import paramsplit.store, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
