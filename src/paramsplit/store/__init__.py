"""The results database: studies, runs, claims, curves and results, via SQLAlchemy Core.

A SQLite file by default (WAL mode, so readers never wait for the writer), or any SQLAlchemy
URL, e.g. `postgresql://user@host/paramsplit` for a team. Imports no torch: results are
readable anywhere, fast.

A run's id is a hash of what determines its result (`run_id_for`): family, design class,
number of members, member network, dataset, training config and seed. Changing any of them
makes a new run; adding a study again adds nothing, and two studies that ask for the same
run share it. Each write commits at once: a finished run is on disk before the next starts.
Epoch records and heartbeats skip the sync to disk (SQLite synchronous=NORMAL, PostgreSQL
synchronous_commit=off): they survive a killed worker, and a power cut may lose the last
few; every other write is synced, and makes the ones before it durable too.

    store = Store.open("paramsplit.db")
    store.add_study("resnet-digits", definition)
    store.add_runs("resnet-digits", specs)
    while (run := store.claim_next("resnet-digits", default_worker())) is not None:
        claim = Claim.of(run)  # shown with every write: refused once another worker holds it
        ...  # train run["spec"]; store.record_epoch(claim, record) each epoch
        store.finish(claim, result)  # or store.fail(claim, "diverged")

A worker paused past `STALE_AFTER_S` loses its run to the next claim; its writes for that run
then raise `ClaimLostError` (and `heartbeat` says False), so it stops, and nothing it does
later reaches the run.
"""

from __future__ import annotations

from paramsplit.errors import ClaimLostError, StoreError, StoreWriteError
from paramsplit.store.claims import Claim
from paramsplit.store.database import DEFAULT_PATH
from paramsplit.store.identity import IDENTITY_KEYS, canonical_json, run_id_for
from paramsplit.store.results import STALE_AFTER_S, AddedRuns, Store, default_worker
from paramsplit.store.schema import (
    ENVIRONMENT_COLUMNS,
    EPOCH_COLUMNS,
    METRIC_COLUMNS,
    SCHEMA_VERSION,
    STATUSES,
)

__all__ = [
    "DEFAULT_PATH",
    "ENVIRONMENT_COLUMNS",
    "EPOCH_COLUMNS",
    "IDENTITY_KEYS",
    "METRIC_COLUMNS",
    "SCHEMA_VERSION",
    "STALE_AFTER_S",
    "STATUSES",
    "AddedRuns",
    "Claim",
    "ClaimLostError",
    "Store",
    "StoreError",
    "StoreWriteError",
    "canonical_json",
    "default_worker",
    "run_id_for",
]
