"""Upgrading a database written by an older paramsplit, in place, one version at a time.

Each step runs in the transaction that opens the database (DDL is transactional in SQLite and
PostgreSQL): a database is upgraded whole or not at all, and a second process opening it at
the same time waits for the first (BEGIN IMMEDIATE, or the advisory lock), then finds it new.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect, select, text, update
from sqlalchemy.schema import CreateColumn

from paramsplit.errors import StoreError
from paramsplit.store import rows, schema


def upgrade(connection: Connection, version: int, shown: str) -> None:
    """Bring a database of schema `version` to `schema.SCHEMA_VERSION`."""
    steps = range(version, schema.SCHEMA_VERSION)
    if any(step not in STEPS for step in steps):
        raise StoreError(
            f"database '{shown}' has schema version {version}, older than this paramsplit's "
            f"{schema.SCHEMA_VERSION}, and no migration exists; use a new file or database"
        )
    for step in steps:
        STEPS[step](connection)
    meta = schema.meta
    connection.execute(
        update(meta).where(meta.c.key == "schema_version").values(value=str(schema.SCHEMA_VERSION))
    )


def _links_per_budget(connection: Connection) -> None:
    """1 -> 2: `study_runs` gets `budget_params` into its primary key, NOT NULL.

    Neither database can change a primary key in place (SQLite cannot alter it at all), so
    the links are read, the table is made anew and they go back in. Links are few (one per
    run of each study), so they fit in memory. A link without a budget gets the one that
    `add_runs` now gives it: the run's own size.
    """
    links, runs = schema.study_runs, schema.runs
    # Version 1 had the same columns, so the new table's names select from the old one.
    old = connection.execute(
        select(
            links.c.study,
            links.c.run_id,
            links.c.position,
            links.c.budget_params,
            links.c.ratio,
            runs.c.total_params,
        ).outerjoin(runs, runs.c.run_id == links.c.run_id)
    ).all()
    kept = []
    for link in old:
        budget, ratio = rows.link_budget(link.budget_params, link.total_params, link.ratio)
        kept.append(
            {"study": link.study, "run_id": link.run_id, "position": link.position}
            | {"budget_params": budget, "ratio": ratio}
        )
    links.drop(connection)  # its index goes with it, and comes back with `create`
    links.create(connection)
    if kept:
        connection.execute(links.insert(), kept)


def _measurements_table(connection: Connection) -> None:
    """2 -> 3: the `measurements` table of `paramsplit measure`; nothing else changes."""
    schema.measurements.create(connection, checkfirst=True)


def _weights_columns(connection: Connection) -> None:
    """3 -> 4: `runs` gets the columns of kept weights (`schema.WEIGHTS_COLUMNS`), NULL for
    every run so far (they kept none). Adds only the columns missing, so a step that ran
    on a database made with them already changes nothing."""
    present = {column["name"] for column in inspect(connection).get_columns("runs")}
    for name in schema.WEIGHTS_COLUMNS:
        if name not in present:
            kind = schema.runs.c[name].type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE runs ADD COLUMN {name} {kind}"))


# Added by version 5; older figures in the memory columns were a subprocess's resident set.
_MEMORY_COLUMNS = ("loop_train_memory_bytes", "loop_inference_memory_bytes", "memory_method")


def _exact_memory(connection: Connection) -> None:
    """4 -> 5: memory columns for the exact count; the resident-set figures leave them.

    Versions 1-4 filled `peak_*_memory_bytes` with a process's resident set above a baseline,
    which is not comparable with the exact count that fills them now. They are emptied
    rather than silently compared: each run's `metrics` JSON keeps them, with their
    `memory_method`.
    """
    runs = schema.runs
    present = {column["name"] for column in inspect(connection).get_columns(runs.name)}
    for name in _MEMORY_COLUMNS:
        if name not in present:  # a database made new, then marked older, has them already
            definition = CreateColumn(runs.c[name]).compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE {runs.name} ADD COLUMN {definition}"))
    connection.execute(
        update(runs).values(peak_train_memory_bytes=None, peak_inference_memory_bytes=None)
    )


def _stopped_status(connection: Connection) -> None:
    """5 -> 6: runs may be `stopped` (`Store.stop`). `status` is free text, so no table
    changes; the version keeps an older paramsplit, which would count such a run as
    neither done nor left, from opening the database."""


# From version N to N + 1.
STEPS: dict[int, Callable[[Connection], None]] = {
    1: _links_per_budget,
    2: _measurements_table,
    3: _weights_columns,
    4: _exact_memory,
    5: _stopped_status,
}
