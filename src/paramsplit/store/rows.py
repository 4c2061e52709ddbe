"""Rows from user dicts (checked and typed), and portable insert-or-ignore and upsert."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Float, Integer, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement

from paramsplit.errors import StoreError
from paramsplit.records import RunSpec
from paramsplit.specs import design_name
from paramsplit.store import schema
from paramsplit.store.identity import identity_of, run_id_for, spec_data, to_jsonable

_IN_CHUNK = 500  # ids per `IN (...)`: well under SQLite's and PostgreSQL's parameter limits


def run_row(spec: RunSpec | Mapping[str, Any]) -> dict[str, Any]:
    """A new `runs` row from a run spec; `ratio` and `design` derived where not given."""
    spec = spec_data(spec)
    identity = identity_of(spec)
    row = columns_from(spec, schema.runs, schema.DESIGN_COLUMNS, "run spec") | {
        "run_id": run_id_for(spec),
        "config": identity["config"],
        "spec": to_jsonable(spec),
        "status": "pending",
        "attempts": 0,
    }
    row |= {key: identity[key] for key in identity if key != "config"}
    for key in ("budget_params", "ratio"):
        row.setdefault(key, None)
    if "design" not in row:
        member, num_members = identity["member"], identity["num_members"]
        row["design"] = design_name(num_members, member)
    if row["ratio"] is None and row.get("total_params") and row["budget_params"]:
        row["ratio"] = row["total_params"] / row["budget_params"]
    return row


def link_budget(
    budget_params: int | None, total_params: int | None, ratio: float | None
) -> tuple[int, float | None]:
    """The budget and ratio a study's link to a run keeps. Asked without a budget, a run is
    asked at its own size (ratio 1), as the analysis reads it; `NO_BUDGET` if that is
    unknown too. Never NULL: the budget is part of the link's key."""
    if budget_params:
        return budget_params, ratio
    if total_params:
        return total_params, 1.0
    return schema.NO_BUDGET, None


def epoch_row(run_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """An `epochs` row from one epoch record (a dict with at least `epoch`)."""
    epoch = record.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise StoreError(f"epoch record needs an integer 'epoch' >= 0, got {epoch!r}")
    # Every column, so that rewriting an epoch replaces all of the old record.
    values = dict.fromkeys(schema.EPOCH_COLUMNS)
    values |= columns_from(record, schema.epochs, schema.EPOCH_COLUMNS, "epoch record")
    return {"run_id": run_id, "epoch": epoch, **values, "record": to_jsonable(record)}


def columns_from(
    source: Mapping[str, Any], table: Table, names: Iterable[str], what: str
) -> dict[str, Any]:
    """The keys of `source` among `names` (columns of `table`), converted to their types."""
    values: dict[str, Any] = {}
    for name in names:
        if name not in source:
            continue
        value = to_jsonable(source[name])
        kind = table.c[name].type
        try:
            if value is None:
                values[name] = None
            elif isinstance(kind, Integer):
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                values[name] = int(value)
            elif isinstance(kind, Float):
                values[name] = float(value)
            else:
                values[name] = str(value)
        except (TypeError, ValueError):
            allowed = "an integer" if isinstance(kind, Integer) else "a number"
            raise StoreError(f"{what} field {name!r} must be {allowed}, got {value!r}") from None
    return values


def insert_ignore(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows, skipping any whose primary key exists (a concurrent writer's)."""
    if not rows:
        return
    dialect = connection.dialect.name
    if dialect == "sqlite":
        connection.execute(sqlite.insert(table).on_conflict_do_nothing(), rows)
    elif dialect == "postgresql":
        connection.execute(postgresql.insert(table).on_conflict_do_nothing(), rows)
    else:
        connection.execute(table.insert(), rows)


def upsert_epochs(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert epoch rows, replacing any with the same run and epoch."""
    if not rows:
        return
    table, dialect = schema.epochs, connection.dialect.name
    try:
        if dialect in ("sqlite", "postgresql"):
            insert = (sqlite if dialect == "sqlite" else postgresql).insert(table)
            key = ["run_id", "epoch"]
            changed = {name: insert.excluded[name] for name in rows[0] if name not in key}
            connection.execute(insert.on_conflict_do_update(index_elements=key, set_=changed), rows)
        else:
            for row in rows:
                connection.execute(
                    table.delete().where(
                        table.c.run_id == row["run_id"], table.c.epoch == row["epoch"]
                    )
                )
            connection.execute(table.insert(), rows)
    except IntegrityError:
        raise StoreError(f"unknown run {rows[0]['run_id']!r}: cannot record its epochs") from None


def select_in(
    connection: Connection,
    columns: Sequence[Any],
    key: Any,
    values: Iterable[str],
    *where: ColumnElement[bool],
) -> Iterator[tuple[Any, ...]]:
    """`columns` of the rows whose `key` is in `values`, as tuples, a chunk of ids at a time."""
    values = list(values)
    for start in range(0, len(values), _IN_CHUNK):
        chunk = values[start : start + _IN_CHUNK]
        for row in connection.execute(select(*columns).where(key.in_(chunk), *where)):
            yield tuple(row)
