"""Reading the results database: plain functions over one connection, rows as dicts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Subquery, func, select

from paramsplit.store import schema


def runs_of(study: str) -> Subquery:
    """Each run of `study` once (`run_id`), at the `position` it was first asked for. A study
    can ask for one run at several budgets; it is still one run to train, claim and count."""
    links = schema.study_runs
    return (
        select(links.c.run_id, func.min(links.c.position).label("position"))
        .where(links.c.study == study)
        .group_by(links.c.run_id)
        .subquery("study_run")
    )


def run(connection: Connection, run_id: str) -> dict[str, Any]:
    runs = schema.runs
    return dict(connection.execute(select(runs).where(runs.c.run_id == run_id)).one()._mapping)


def runs(connection: Connection, study: str | None, status: str | None) -> list[dict[str, Any]]:
    table, links = schema.runs, schema.study_runs
    if study is None:
        statement = select(table).order_by(table.c.created_at, table.c.run_id)
    else:
        # One row per link: the budget this study asked for (not the one of the study that
        # first added the run), and a run asked for at two budgets twice.
        asked = {
            "budget_params": func.nullif(links.c.budget_params, schema.NO_BUDGET),
            "ratio": links.c.ratio,
        }
        columns = [asked[c.name].label(c.name) if c.name in asked else c for c in table.c]
        statement = (
            select(*columns)
            .join(links, links.c.run_id == table.c.run_id)
            .where(links.c.study == study)
            .order_by(links.c.position)
        )
    if status is not None:
        statement = statement.where(table.c.status == status)
    return [dict(row._mapping) for row in connection.execute(statement)]


def epochs(connection: Connection, run_id: str) -> list[dict[str, Any]]:
    table = schema.epochs
    statement = select(table).where(table.c.run_id == run_id).order_by(table.c.epoch)
    return [dict(row._mapping) for row in connection.execute(statement)]


def curves(connection: Connection, study: str) -> dict[str, list[dict[str, Any]]]:
    """Every epoch of every run of `study`, by run id, in order: one query."""
    table, asked = schema.epochs, runs_of(study)
    statement = (
        select(table)
        .join(asked, asked.c.run_id == table.c.run_id)
        .order_by(table.c.run_id, table.c.epoch)
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for row in connection.execute(statement):
        found.setdefault(row.run_id, []).append(dict(row._mapping))
    return found


def studies(connection: Connection) -> list[dict[str, Any]]:
    table, links = schema.studies, schema.study_runs
    total = (
        select(func.count(func.distinct(links.c.run_id)))
        .where(links.c.study == table.c.name)
        .scalar_subquery()
        .label("total")
    )
    statement = select(table, total).order_by(table.c.created_at, table.c.name)
    return [dict(row._mapping) for row in connection.execute(statement)]


def status_counts(connection: Connection, study: str | None) -> dict[str, int]:
    table = schema.runs
    statement = select(table.c.status, func.count()).group_by(table.c.status)
    if study is not None:
        asked = runs_of(study)
        statement = statement.join(asked, asked.c.run_id == table.c.run_id)
    counts = dict.fromkeys(schema.STATUSES, 0)
    for status, count in connection.execute(statement):
        counts[status] = count
    return counts | {"total": sum(counts.values())}


def eta_s(connection: Connection, study: str | None) -> float | None:
    table = schema.runs
    statement = select(
        func.avg(table.c.train_time_s).filter(table.c.status == "done"),
        func.count().filter(table.c.status.in_(("pending", "running"))),
        func.count(func.distinct(table.c.worker)).filter(table.c.status == "running"),
    )
    if study is not None:
        asked = runs_of(study)
        statement = statement.join(asked, asked.c.run_id == table.c.run_id)
    mean_s, left, num_workers = connection.execute(statement).one()
    if left == 0:
        return 0.0
    if mean_s is None:
        return None
    return float(mean_s) * left / max(1, num_workers)
