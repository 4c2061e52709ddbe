"""The `Store`: studies, runs and their claims, per-epoch curves, finished results."""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import OperationalError

import paramsplit
from paramsplit.errors import ClaimLostError, StoreError, StoreWriteError
from paramsplit.records import RunResult, RunSpec
from paramsplit.store import claims, database, queries, rows, schema
from paramsplit.store import measurements as measured
from paramsplit.store.claims import Claim
from paramsplit.store.identity import to_jsonable

# A `running` run whose heartbeat is older than this is taken over by the next claim. A
# worker beats at least once per epoch (`record_epoch` does), so this must exceed the
# longest epoch; a dead process on this host is detected at once by its pid instead.
STALE_AFTER_S = 900.0
_CLAIM_TRIES = 5

# A run named by its id is written as asked; named by the claim on it (`Claim.of(run)`), the
# write happens only while that claim still holds the run, and raises ClaimLostError if not.
RunRef = str | Claim


@dataclass(frozen=True)
class AddedRuns:
    """What `Store.add_runs` did: every spec's run id, in order; how many distinct runs were
    new to the database and how many existed already (in this study or another); how many
    (run, budget) links were new to the study (0 when the study is added again)."""

    run_ids: tuple[str, ...]
    new: int
    existing: int
    new_links: int


def default_worker() -> str:
    """This process as a worker name, `host:pid`, which lets a claim be checked for life."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    """The results database. Every write is its own committed transaction.

    Open with `Store.open(path_or_url)`; use as a context manager or call `close()`. Open a
    Store in each process (after a fork, not before). A write the database cannot take now
    (disk full, locked past the busy timeout, read-only) raises `StoreWriteError` and
    changes nothing.
    """

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self.url = url

    @classmethod
    def open(
        cls, url_or_path: str | os.PathLike[str] = database.DEFAULT_PATH, *, create: bool = True
    ) -> Store:
        """Open a SQLite file (creating it if needed, unless `create=False`), or any
        SQLAlchemy URL such as `postgresql://user@host/db`. Refuses a damaged SQLite file and
        a database from a newer paramsplit; opens a file it cannot write read-only."""
        engine, shown = database.connect(url_or_path, create=create)
        return cls(engine, shown)

    @property
    def connect_url(self) -> str:
        """The URL that opens this database from another process (`Store.open`), password
        included. A secret: never print or log it; `url` is the form to show."""
        return self._engine.url.render_as_string(hide_password=False)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # -- studies and runs ------------------------------------------------------------------

    def add_study(self, name: str, definition: Mapping[str, Any]) -> bool:
        """Record a study; True if it is new. A changed definition replaces the stored one
        (a study grows when its file does); runs added before stay linked to it."""
        if not isinstance(name, str) or not name.strip():
            raise StoreError(f"study name must be a non-empty string, got {name!r}")
        stored = to_jsonable(definition)
        now = _now()
        with self._writing() as connection:
            table = schema.studies
            old = connection.execute(
                select(table.c.definition).where(table.c.name == name)
            ).one_or_none()
            if old is None:
                row = {"name": name, "definition": stored, "created_at": now, "updated_at": now}
                rows.insert_ignore(connection, table, [row])
                return True
            if old.definition != stored:
                connection.execute(
                    update(table)
                    .where(table.c.name == name)
                    .values(definition=stored, updated_at=now)
                )
            return False

    def add_runs(self, study: str, specs: Sequence[RunSpec | Mapping[str, Any]]) -> AddedRuns:
        """Add runs to a study, once each: a run already in the database (finished or not, in
        this study or another) is linked, never duplicated or reset. A run asked for at
        several budgets (two budgets can plan the same design) is linked once per budget."""
        prepared = [rows.run_row(spec) for spec in specs]  # check all before writing any
        unique = {row["run_id"]: row for row in prepared}
        now = _now()
        with self._writing() as connection:
            self._require_study(connection, study)
            runs = schema.runs
            existing = {
                run_id
                for (run_id,) in rows.select_in(connection, [runs.c.run_id], runs.c.run_id, unique)
            }
            new_rows = [
                {**row, "created_at": now} for key, row in unique.items() if key not in existing
            ]
            rows.insert_ignore(connection, runs, new_rows)
            new_links = _link_runs(connection, study, prepared)
        return AddedRuns(
            tuple(row["run_id"] for row in prepared),
            new=len(new_rows),
            existing=len(unique) - len(new_rows),
            new_links=new_links,
        )

    # -- claims ----------------------------------------------------------------------------

    def claim_next(
        self,
        study: str,
        worker: str,
        *,
        stale_after_s: float = STALE_AFTER_S,
        retry_failed_before: datetime | None = None,
        only: Collection[str] | None = None,
    ) -> dict[str, Any] | None:
        """Claim the study's next run for `worker` and return it (`run["spec"]` is what to
        train), or None when nothing is left to claim.

        First a stale `running` run (its heartbeat older than `stale_after_s`, or its worker
        a dead process on this host), so an interrupted run resumes before new ones start;
        then a pending run; then, with `retry_failed_before`, a run that failed before that
        time. Pass the time the retrying began: a run that fails again then fails after it
        and is not claimed again, so a run that always fails is retried once, not forever.
        With `only` (an adaptive study's wanted runs, in order), the first of those that is
        pending, stopped (it resumes) or stale instead. In one transaction, so concurrent
        workers never claim the same run.
        """
        for _ in range(_CLAIM_TRIES):
            now = _now()
            with self._writing() as connection:
                self._require_study(connection, study)
                found = claims.pick(
                    connection, study, now, stale_after_s, retry_failed_before, only
                )
                if found is None:
                    return None
                run_id, status, previous_worker = found
                runs = schema.runs
                claimed = connection.execute(
                    update(runs)
                    .where(
                        runs.c.run_id == run_id,
                        runs.c.status == status,
                        runs.c.worker.is_not_distinct_from(previous_worker),
                    )
                    .values(
                        status="running",
                        worker=worker,
                        reason=None,
                        attempts=runs.c.attempts + 1,
                        claimed_at=now,
                        heartbeat_at=now,
                        started_at=func.coalesce(runs.c.started_at, now),
                        finished_at=None,
                    )
                )
                if claimed.rowcount == 1:
                    return queries.run(connection, run_id)
        # Only a database without row locks gets here, and only under heavy contention.
        raise StoreError(f"could not claim a run of study '{study}' in {_CLAIM_TRIES} tries")

    def heartbeat(self, claim: Claim) -> bool:
        """Say that the claim's worker still runs the run. False: the claim was lost (taken
        over as stale, or released): the worker should stop this run."""
        with self._writing(durable=False) as connection:
            beat = connection.execute(
                update(schema.runs).where(claims.held(claim)).values(heartbeat_at=_now())
            )
            return bool(beat.rowcount == 1)

    def record_epoch(self, run: RunRef, record: Mapping[str, Any]) -> None:
        """Store one epoch of a run's curve (again: a resumed run rewriting an epoch replaces
        it). Counts as the run's heartbeat."""
        run_id = _run_id(run)
        row = rows.epoch_row(run_id, record)
        with self._writing(durable=False) as connection:
            beat = connection.execute(
                update(schema.runs).where(*_still_running(run)).values(heartbeat_at=_now())
            )
            if isinstance(run, Claim) and beat.rowcount != 1:
                raise _lost(connection, run, "record its epoch")
            rows.upsert_epochs(connection, [row])

    def finish(self, run: RunRef, result: RunResult | Mapping[str, Any]) -> None:
        """Mark a run done with its result (a `RunResult`, or its dict): keys named like a
        metric column fill it, the whole dict goes to `metrics`, and a `curve` list of epoch
        records to `epochs`."""
        run_id = _run_id(run)
        if isinstance(result, RunResult):
            result = result.to_dict()
        values = rows.columns_from(result, schema.runs, schema.METRIC_COLUMNS, "result")
        values |= rows.columns_from(result, schema.runs, schema.ENVIRONMENT_COLUMNS, "result")
        values |= rows.columns_from(result, schema.runs, schema.WEIGHTS_COLUMNS, "result")
        values.setdefault("package_version", paramsplit.__version__)
        metrics = to_jsonable(result)
        curve = [rows.epoch_row(run_id, record) for record in result.get("curve") or ()]
        runs = schema.runs
        with self._writing() as connection:
            if "host" not in values:
                worker = connection.execute(
                    select(runs.c.worker).where(runs.c.run_id == run_id)
                ).scalar()
                values["host"] = worker.rpartition(":")[0] if worker else socket.gethostname()
            self._update_run(
                connection,
                run,
                status="done",
                reason=None,
                finished_at=_now(),
                metrics=metrics,
                **values,
            )
            rows.upsert_epochs(connection, curve)

    def fail(self, run: RunRef, reason: str, *, notes: Sequence[str] = ()) -> None:
        """Mark a run failed: `reason` is e.g. 'diverged', 'oom' or 'error: <message>';
        `notes` (what else happened to the run) go to its `metrics`."""
        if not isinstance(reason, str) or not reason.strip():
            raise StoreError(f"a failed run needs a reason such as 'diverged', got {reason!r}")
        metrics = {"notes": list(notes)} if notes else None
        with self._writing() as connection:
            self._update_run(
                connection, run, status="failed", reason=reason, finished_at=_now(), metrics=metrics
            )

    def stop(self, run: RunRef, reason: str, *, epochs_trained: int | None = None) -> None:
        """Mark a run stopped before its last epoch (an adaptive study's early verdict): its
        curve stays, `reason` says why; it is neither done nor failed, and can resume."""
        if not isinstance(reason, str) or not reason.strip():
            raise StoreError(f"a stopped run needs a reason, got {reason!r}")
        with self._writing() as connection:
            self._update_run(
                connection, run, status="stopped", reason=reason, finished_at=_now(),
                epochs_trained=epochs_trained,
            )  # fmt: skip

    def release(self, run: RunRef) -> bool:
        """Give a running run back (e.g. on Ctrl-C): it is pending again, and its epochs stay
        for the resume. False if it was not running (under this claim, given one)."""
        run_id = _run_id(run)
        with self._writing() as connection:
            self._require_run(connection, run_id)
            released = connection.execute(
                update(schema.runs)
                .where(*_still_running(run))
                .values(status="pending", worker=None, claimed_at=None, heartbeat_at=None)
            )
            return bool(released.rowcount == 1)

    # -- reading ---------------------------------------------------------------------------

    def status_counts(self, study: str | None = None) -> dict[str, int]:
        """Runs per status: `done`, `running`, `pending`, `failed`, `stopped` and `total`."""
        with database.read_transaction(self._engine) as connection:
            if study is not None:
                self._require_study(connection, study)
            return queries.status_counts(connection, study)

    def runs(self, study: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Runs as dicts of every column, in the study's order (with a study, `budget_params`
        and `ratio` are the ones that study asked for)."""
        if status is not None and status not in schema.STATUSES:
            raise StoreError(f"status must be one of {', '.join(schema.STATUSES)}, got {status!r}")
        with database.read_transaction(self._engine) as connection:
            if study is not None:
                self._require_study(connection, study)
            return queries.runs(connection, study, status)

    def run(self, run_id: str) -> dict[str, Any]:
        """One run as a dict of every column."""
        with database.read_transaction(self._engine) as connection:
            self._require_run(connection, run_id)
            return queries.run(connection, run_id)

    def epochs(self, run_id: str) -> list[dict[str, Any]]:
        """A run's curve, one dict per epoch, in order."""
        with database.read_transaction(self._engine) as connection:
            self._require_run(connection, run_id)
            return queries.epochs(connection, run_id)

    def curves(self, study: str) -> dict[str, list[dict[str, Any]]]:
        """Every run's curve in `study` at once (as `epochs` gives one), by run id; runs
        without an epoch yet are absent."""
        with database.read_transaction(self._engine) as connection:
            self._require_study(connection, study)
            return queries.curves(connection, study)

    def studies(self) -> list[dict[str, Any]]:
        """Every study: `name`, `definition`, `created_at`, `updated_at`, `total` runs."""
        with database.read_transaction(self._engine) as connection:
            return queries.studies(connection)

    def eta_s(self, study: str | None = None) -> float | None:
        """Seconds until the study's runs are done: the mean `train_time_s` of done runs ×
        runs left (pending and running), shared among the workers running now. None before
        any run is done; failed runs are not counted as left."""
        with database.read_transaction(self._engine) as connection:
            if study is not None:
                self._require_study(connection, study)
            return queries.eta_s(connection, study)

    # -- inference measured side by side (paramsplit measure) --------------------------------

    def add_measurements(
        self, session: Mapping[str, Any], rows_of_session: Sequence[Mapping[str, Any]]
    ) -> None:
        """Store a measuring session's rows (see `schema.measurements`) in one transaction;
        rows of the same session, run and budget written before are replaced. `session` has
        `session_id`, `measured_at` (UTC), `study`, `device`, `num_threads`, `torch_version`
        (and `host`, `package_version`, else this host's and this paramsplit's)."""
        session = {
            "host": socket.gethostname(),
            "package_version": paramsplit.__version__,
            **session,
        }
        prepared = measured.measurement_rows(session, rows_of_session)
        with database.write_transaction(self._engine) as connection:
            if session.get("study") is not None:
                self._require_study(connection, session["study"])
            measured.replace(connection, prepared, self.url)

    def measurements(self, study: str | None = None) -> list[dict[str, Any]]:
        """Every stored measurement row (of `study`), oldest session first."""
        with database.read_transaction(self._engine) as connection:
            if study is not None:
                self._require_study(connection, study)
            return measured.read(connection, study)

    # -- helpers ---------------------------------------------------------------------------

    def _require_study(self, connection: Connection, study: str) -> None:
        table = schema.studies
        if connection.execute(select(table.c.name).where(table.c.name == study)).first():
            return
        known = connection.execute(select(table.c.name).order_by(table.c.name)).scalars().all()
        raise StoreError(
            f"unknown study {study!r} in '{self.url}'; "
            + (f"known: {', '.join(known)}" if known else "it has no studies yet")
        )

    def _require_run(self, connection: Connection, run_id: str) -> None:
        runs = schema.runs
        if not connection.execute(select(runs.c.run_id).where(runs.c.run_id == run_id)).first():
            raise StoreError(f"unknown run {run_id!r} in '{self.url}'")

    def _update_run(self, connection: Connection, run: RunRef, **values: Any) -> None:
        runs = schema.runs
        where = claims.held(run) if isinstance(run, Claim) else runs.c.run_id == run
        updated = connection.execute(update(runs).where(where).values(**values))
        if updated.rowcount == 1:
            return
        self._require_run(connection, _run_id(run))
        assert isinstance(run, Claim)  # a run that exists, named by id, is always updated
        raise _lost(connection, run, "record its result")

    @contextmanager
    def _writing(self, *, durable: bool = True) -> Iterator[Connection]:
        """A write transaction; one the database cannot take now is a StoreWriteError."""
        try:
            with database.write_transaction(self._engine, durable=durable) as connection:
                yield connection
        except OperationalError as error:
            raise StoreWriteError(_cannot_write(self.url, error)) from None


def _run_id(run: RunRef) -> str:
    return run.run_id if isinstance(run, Claim) else run


def _still_running(run: RunRef) -> tuple[Any, ...]:
    runs = schema.runs
    if isinstance(run, Claim):
        return (claims.held(run),)
    return (runs.c.run_id == run, runs.c.status == "running")


def _lost(connection: Connection, claim: Claim, action: str) -> ClaimLostError:
    return ClaimLostError(
        f"{claim.worker} no longer holds run {claim.run_id} and cannot {action}: "
        f"{claims.describe_holder(connection, claim)}"
    )


def _cannot_write(url: str, error: OperationalError) -> str:
    """One line for a write the database refused, with what to do about it."""
    reason = str(getattr(error, "orig", None) or error).splitlines()[0]
    if "full" in reason:
        advice = "free disk space, then run the same command again: the study resumes"
    elif "locked" in reason or "busy" in reason:
        advice = (
            "another process held it past the busy timeout; stop that process, then run "
            "the same command again: the study resumes"
        )
    elif "readonly" in reason or "read-only" in reason:
        advice = "make it writable or use a copy, then run the same command again"
    else:
        advice = "fix that, then run the same command again: the study resumes"
    return f"cannot write to database '{url}': {reason}; {advice}"


def _link_runs(connection: Connection, study: str, prepared: list[dict[str, Any]]) -> int:
    """Link each (run, budget) of `prepared` that the study lacks, after the links it
    has, in the order asked; how many were new."""
    links = schema.study_runs
    asked: dict[tuple[str, int], float | None] = {}
    for row in prepared:
        budget, ratio = rows.link_budget(
            row["budget_params"], row.get("total_params"), row["ratio"]
        )
        asked.setdefault((row["run_id"], budget), ratio)
    run_ids = {run_id for run_id, _ in asked}
    columns = [links.c.run_id, links.c.budget_params]
    linked = set(
        rows.select_in(connection, columns, links.c.run_id, run_ids, links.c.study == study)
    )
    position = connection.execute(
        select(func.coalesce(func.max(links.c.position), -1)).where(links.c.study == study)
    ).scalar_one()
    link_rows = []
    for (run_id, budget), ratio in asked.items():
        if (run_id, budget) not in linked:
            position += 1
            link_rows.append(
                {"study": study, "run_id": run_id, "budget_params": budget}
                | {"position": position, "ratio": ratio}
            )
    rows.insert_ignore(connection, links, link_rows)
    return len(link_rows)
