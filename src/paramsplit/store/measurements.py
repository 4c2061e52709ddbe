"""Inference measured side by side (`paramsplit measure`): rows in, rows out, one connection.

A session is one `paramsplit measure`: it adds rows, never changes another session's, so
measuring again keeps the history and readers take the latest session (see
`paramsplit.analysis.latency`). Writing a session's rows for a (run, budget) again replaces
them, so a session written in parts can repeat a part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from paramsplit.errors import StoreError
from paramsplit.store import rows, schema

KEY_COLUMNS = ("run_id", "budget_params", "batch_size", "executor")


def measurement_rows(
    session: Mapping[str, Any], measurements: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Checked, typed rows: each measurement's fields with its session's."""
    table = schema.measurements
    session_id = session.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        raise StoreError(f"a measurement session needs a 'session_id' string, got {session_id!r}")
    measured_at = session.get("measured_at")
    if not isinstance(measured_at, datetime) or measured_at.tzinfo is None:
        raise StoreError(
            f"a measurement session needs 'measured_at', a time-zone aware datetime, "
            f"got {measured_at!r}"
        )
    described = [name for name in schema.MEASUREMENT_SESSION_COLUMNS if name != "measured_at"]
    shared = rows.columns_from(session, table, [*described, "study"], "measurement session")
    shared["measured_at"] = measured_at
    prepared = []
    for measurement in measurements:
        missing = [key for key in KEY_COLUMNS if measurement.get(key) is None]
        if missing:
            raise StoreError(
                f"a measurement needs {', '.join(KEY_COLUMNS)}; missing {', '.join(missing)}"
            )
        key = rows.columns_from(measurement, table, KEY_COLUMNS, "measurement")
        values = rows.columns_from(measurement, table, schema.MEASUREMENT_COLUMNS, "measurement")
        if values.get("chosen") is not None:  # a Boolean column: columns_from made it text
            values["chosen"] = bool(measurement["chosen"])
        prepared.append({"session_id": session_id, **shared, **values, **key})
    return prepared


def replace(connection: Connection, prepared: list[dict[str, Any]], shown: str) -> None:
    """Write the rows, replacing the session's rows for the same (run, budget)."""
    run_ids = {row["run_id"] for row in prepared}
    runs = schema.runs
    known = {
        run_id for (run_id,) in rows.select_in(connection, [runs.c.run_id], runs.c.run_id, run_ids)
    }
    if unknown := sorted(run_ids - known):
        raise StoreError(f"cannot store measurements of unknown run {unknown[0]!r} in '{shown}'")
    table = schema.measurements
    for session_id, run_id, budget in {
        (r["session_id"], r["run_id"], r["budget_params"]) for r in prepared
    }:
        connection.execute(
            table.delete().where(
                table.c.session_id == session_id,
                table.c.run_id == run_id,
                table.c.budget_params == budget,
            )
        )
    if prepared:
        connection.execute(table.insert(), prepared)


def read(connection: Connection, study: str | None) -> list[dict[str, Any]]:
    """Rows of every session (of `study`, with one), oldest session first."""
    table = schema.measurements
    statement = select(table).order_by(
        table.c.measured_at,
        table.c.session_id,
        table.c.dataset,
        table.c.budget_params,
        table.c.batch_size,
        table.c.design_class,
        table.c.num_members,
        table.c.executor,
    )
    if study is not None:
        statement = statement.where(table.c.study == study)
    return [dict(row._mapping) for row in connection.execute(statement)]
