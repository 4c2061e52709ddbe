"""Connecting: a SQLite file or any SQLAlchemy URL, the schema version, write transactions."""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from paramsplit.errors import StoreError
from paramsplit.store import migrations, schema

DEFAULT_PATH = "paramsplit.db"
# How long a SQLite writer waits for another one before giving up. Write transactions take
# milliseconds, so 60 s means something is wrong (a stopped process holding the lock).
SQLITE_BUSY_TIMEOUT_MS = 60_000
_WRITE = "paramsplit_write"  # execution option: this transaction will write
_SCHEMA_LOCK_ID = 0x5041524D  # PostgreSQL advisory lock serialising schema creation


def parse_url(url_or_path: str | os.PathLike[str]) -> URL:
    """A SQLAlchemy URL from a URL (anything with '://') or a SQLite file path."""
    text_form = os.fspath(url_or_path)
    if "://" not in text_form:
        path = Path(text_form).expanduser()
        if not path.parent.is_dir():
            raise StoreError(
                f"cannot create database '{text_form}': folder '{path.parent}' does not exist"
            )
        return URL.create("sqlite", database=str(path))
    try:
        url = make_url(text_form)
    except ArgumentError:
        raise StoreError(
            f"cannot parse database URL '{text_form}'; expected a file path or a URL such "
            "as 'postgresql://user@host/paramsplit'"
        ) from None
    if url.drivername == "postgresql":
        # psycopg 3, whatever SQLAlchemy's default driver (psycopg2 before 2.1).
        url = url.set(drivername="postgresql+psycopg")
    return url


def describe(url: URL) -> str:
    """The URL as shown in messages: a SQLite path as given, never a password."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return url.render_as_string(hide_password=True)


def create(url: URL) -> Engine:
    """An engine with the settings a shared results database needs."""
    try:
        if url.get_backend_name() == "sqlite":
            engine = create_engine(url, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _configure_sqlite)
            event.listen(engine, "begin", _begin_sqlite)
        else:
            # Servers close idle connections; a study can sit on one for an hour of training.
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError) as error:
        raise StoreError(
            f"cannot open database '{describe(url)}': {error}; install its driver "
            "(for PostgreSQL: pip install 'psycopg[binary]')"
        ) from None
    # A forked child must not share the parent's open connections (SQLAlchemy's advice).
    reference = weakref.ref(engine)
    os.register_at_fork(after_in_child=lambda: _forget_connections(reference))
    return engine


def _forget_connections(reference: weakref.ref[Engine]) -> None:
    engine = reference()
    if engine is not None:
        engine.dispose(close=False)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # Take transactions out of the driver's hands so that `_begin_sqlite` can say BEGIN
    # IMMEDIATE (SQLAlchemy's recipe for pysqlite).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer and the writer never blocks readers.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin_sqlite(connection: Connection) -> None:
    write = connection.get_execution_options().get(_WRITE)
    if write is None:
        connection.exec_driver_sql("BEGIN")
        return
    # In WAL mode, synchronous=FULL syncs the log at every commit (~5 ms here) and NORMAL
    # does not: NORMAL's commits survive a killed process but not a power cut. A FULL
    # commit also makes every earlier one durable, so only curves and heartbeats go NORMAL
    # (https://sqlite.org/pragma.html#pragma_synchronous).
    connection.exec_driver_sql(f"PRAGMA synchronous={'FULL' if write == 'durable' else 'NORMAL'}")
    # A writer takes the write lock up front. A deferred transaction that reads and then
    # writes can fail at once with SQLITE_BUSY when another writer committed in between, and
    # the busy timeout does not help it (https://sqlite.org/lang_transaction.html).
    connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def write_transaction(engine: Engine, *, durable: bool = True) -> Iterator[Connection]:
    """One write transaction, committed on exit: BEGIN IMMEDIATE on SQLite. With
    `durable=False`, a power cut (or a server crash) may lose it; a killed worker cannot."""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE: "durable" if durable else "fast"})
        with connection.begin():
            if not durable and connection.dialect.name == "postgresql":
                # The server's equivalent of SQLite's NORMAL: no wait for the log flush.
                connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
            yield connection


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """One consistent snapshot for reading."""
    with engine.connect() as connection, connection.begin():
        yield connection


def prepare_schema(engine: Engine, shown: str) -> None:
    """Create the tables if missing, upgrade those of an older paramsplit in place; refuse a
    database from a newer paramsplit or elsewhere."""
    try:
        with write_transaction(engine) as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEMA_LOCK_ID}
                )
            tables = set(inspect(connection).get_table_names())
            if tables:
                version = _stored_version(connection, tables, shown)
                if version < schema.SCHEMA_VERSION:
                    migrations.upgrade(connection, version, shown)
            schema.metadata.create_all(connection)
            if not tables:
                current = str(schema.SCHEMA_VERSION)
                connection.execute(schema.meta.insert().values(key="schema_version", value=current))
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise StoreError(f"cannot open database '{shown}': {reason}") from None


def _stored_version(connection: Connection, tables: set[str], shown: str) -> int:
    """The database's schema version; refuses one from a newer paramsplit or elsewhere."""
    version = None
    if "meta" in tables:
        version = connection.execute(
            select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
        ).scalar()
    if version is None:
        raise StoreError(
            f"database '{shown}' is not a paramsplit database: it has tables "
            f"{', '.join(sorted(tables))} but no schema version; use a new file or database"
        )
    if int(version) > schema.SCHEMA_VERSION:
        raise StoreError(
            f"database '{shown}' has schema version {version}, newer than this paramsplit's "
            f"{schema.SCHEMA_VERSION}; upgrade paramsplit"
        )
    return int(version)
