"""Claims: which run a claim takes (stale running runs first, then pending, then failed
ones), and the token that proves a worker still holds the run it writes for."""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, select
from sqlalchemy.sql import ColumnElement, Select

from paramsplit.errors import StoreError
from paramsplit.store import queries, schema


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a running run, shown with every write of the run's progress or
    result. The claim's time tells two claims of one worker apart: a run that it lost and
    claimed again is a new claim, and the old one's writes are refused."""

    run_id: str
    worker: str
    claimed_at: datetime

    @classmethod
    def of(cls, run: Mapping[str, Any]) -> Claim:
        """The claim under which `Store.claim_next` returned `run`."""
        if run.get("status") != "running" or not run.get("worker") or not run.get("claimed_at"):
            raise StoreError(
                f"run {run.get('run_id')!r} is {run.get('status')}, not claimed: pass a run "
                "that claim_next returned"
            )
        return cls(run["run_id"], run["worker"], run["claimed_at"])


def held(claim: Claim) -> ColumnElement[bool]:
    """Where the run is still running under `claim`."""
    runs = schema.runs
    return and_(
        runs.c.run_id == claim.run_id,
        runs.c.status == "running",
        runs.c.worker == claim.worker,
        runs.c.claimed_at == claim.claimed_at,
    )


def describe_holder(connection: Connection, claim: Claim) -> str:
    """Who has the run now, for the message of a refused write."""
    runs = schema.runs
    row = connection.execute(
        select(runs.c.status, runs.c.worker).where(runs.c.run_id == claim.run_id)
    ).first()
    if row is None:
        return "it is no longer in the database"
    if row.status == "running":
        return f"{row.worker or 'another worker'} has claimed it since"
    return f"it is {row.status} now"


def pick(
    connection: Connection,
    study: str,
    now: datetime,
    stale_after_s: float,
    retry_failed_before: datetime | None,
    only: Collection[str] | None = None,
) -> tuple[str, str, str | None] | None:
    """The run to claim, locked where the database can (FOR UPDATE SKIP LOCKED). With
    `only` (an adaptive study's wanted runs), just those, in that order, stopped ones too."""
    runs = schema.runs
    if only is not None:
        return _pick_only(connection, study, now, stale_after_s, list(only))
    running = connection.execute(
        _candidates(study, runs.c.status == "running").with_only_columns(
            runs.c.run_id, runs.c.worker, runs.c.heartbeat_at, runs.c.claimed_at
        )
    ).all()
    cutoff = now - timedelta(seconds=stale_after_s)
    for run_id, worker, heartbeat_at, claimed_at in running:
        last_seen = heartbeat_at or claimed_at
        if (last_seen is None or last_seen < cutoff) or is_dead_here(worker):
            locked = _lock_first(
                connection, study, runs.c.run_id == run_id, runs.c.status == "running"
            )
            if locked is not None:
                return locked
    locked = _lock_first(connection, study, runs.c.status == "pending")
    if locked is None and retry_failed_before is not None:
        # Only failures from before the retrying began: one that failed again since then
        # would otherwise be claimed again at once, forever.
        failed_earlier = runs.c.finished_at < retry_failed_before
        locked = _lock_first(connection, study, runs.c.status == "failed", failed_earlier)
    return locked


def _pick_only(
    connection: Connection, study: str, now: datetime, stale_after_s: float, only: list[str]
) -> tuple[str, str, str | None] | None:
    """The first of `only` that is pending or stopped, or running under a stale claim."""
    runs = schema.runs
    found = connection.execute(
        select(runs.c.run_id, runs.c.status, runs.c.worker, runs.c.heartbeat_at,
               runs.c.claimed_at).where(runs.c.run_id.in_(only))
    ).all()  # fmt: skip
    cutoff = now - timedelta(seconds=stale_after_s)
    by_id = {row.run_id: row for row in found}
    for run_id in only:
        row = by_id.get(run_id)
        if row is None:
            continue
        last_seen = row.heartbeat_at or row.claimed_at
        stale = row.status == "running" and (
            last_seen is None or last_seen < cutoff or is_dead_here(row.worker)
        )
        if row.status in ("pending", "stopped") or stale:
            locked = _lock_first(connection, study, runs.c.run_id == run_id,
                                 runs.c.status == row.status)  # fmt: skip
            if locked is not None:
                return locked
    return None


def _candidates(study: str, *where: ColumnElement[bool]) -> Select[Any]:
    runs, asked = schema.runs, queries.runs_of(study)
    return (
        select(runs.c.run_id, runs.c.status, runs.c.worker)
        .join(asked, asked.c.run_id == runs.c.run_id)
        .where(*where)
        .order_by(asked.c.position)
    )


def _lock_first(
    connection: Connection, study: str, *where: ColumnElement[bool]
) -> tuple[str, str, str | None] | None:
    statement = _candidates(study, *where).limit(1)
    statement = statement.with_for_update(of=schema.runs, skip_locked=True)
    row = connection.execute(statement).first()
    return None if row is None else (row.run_id, row.status, row.worker)


def is_dead_here(worker: str | None) -> bool:
    """True if `worker` names a process on this host that no longer exists."""
    host, _, pid_text = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False
