"""Connecting: a SQLite file or any SQLAlchemy URL, the schema version, write transactions.

A SQLite file is checked as it opens (`PRAGMA quick_check`): a damaged file is refused with a
message that names it, instead of failing later halfway through a command. A file this
process cannot write is opened read-only, so results stay readable from a read-only copy.
"""

from __future__ import annotations

import json
import os
import sqlite3
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)

from paramsplit.errors import StoreError
from paramsplit.store import migrations, schema

DEFAULT_PATH = "paramsplit.db"
# How long a SQLite writer waits for another one before giving up. Write transactions take
# milliseconds, so 60 s means something is wrong (a stopped process holding the lock).
SQLITE_BUSY_TIMEOUT_MS = 60_000
_WRITE = "paramsplit_write"  # execution option: this transaction will write
_SCHEMA_LOCK_ID = 0x5041524D  # PostgreSQL advisory lock serialising schema creation


_SQLITE_HEADER = b"SQLite format 3\x00"
# What SQLite says of a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB).
_DAMAGE_SIGNS = ("malformed", "not a database", "corrupt")


def connect(url_or_path: str | os.PathLike[str], *, create: bool = True) -> tuple[Engine, str]:
    """An engine on a checked database with the current schema, and its name for messages.

    With `create=False` a missing SQLite file is an error rather than a new database (for
    commands that only read). A SQLite file that cannot be written is opened read-only: it
    can be read, and must already have the current schema.
    """
    url = parse_url(url_or_path, create=create)
    shown = describe(url)
    path = sqlite_path(url)
    read_only = path is not None and path.exists() and not _writable(path)
    engine = _create_read_only(path) if read_only and path else make_engine(url)
    try:
        if path is not None and path.exists():  # a new file has nothing to check
            check_integrity(engine, path, shown)
        if read_only:
            check_schema(engine, shown)
        else:
            prepare_schema(engine, shown)
    except StoreError:
        engine.dispose()
        raise
    return engine, shown


def parse_url(url_or_path: str | os.PathLike[str], *, create: bool = True) -> URL:
    """A SQLAlchemy URL from a URL (anything with '://') or a SQLite file path; with
    `create=False`, the SQLite file must exist."""
    text_form = os.fspath(url_or_path)
    if "://" not in text_form:
        path = Path(text_form).expanduser()
        if not create and not path.exists():
            raise _missing(text_form)
        if path.is_dir():
            raise StoreError(
                f"cannot open database '{text_form}': it is a folder; give a file, such as "
                f"'{path / DEFAULT_PATH}'"
            )
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
    file = sqlite_path(url)
    if not create and file is not None and not file.exists():
        raise _missing(text_form)
    return url


def _missing(shown: str) -> StoreError:
    return StoreError(
        f"no database at '{shown}': check the path (only paramsplit run or demo creates one)"
    )


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL; None for a server or an in-memory database."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser()


def folder_beside(db: str, kind: str) -> Path:
    """Where a study keeps its files of one `kind` ('checkpoints', 'artifacts'): beside a
    SQLite file (`study.db` -> `study.checkpoints/`), or `paramsplit-KIND/` in the working
    directory for a database server (on a cluster, run from shared storage)."""
    if "://" in db and not db.startswith("sqlite"):
        return Path(f"paramsplit-{kind}")
    path = Path(db.removeprefix("sqlite:///"))
    return path.with_name(f"{path.stem}.{kind}")


def _writable(path: Path) -> bool:
    # SQLite writes beside the file too (the WAL and its index), so the folder counts.
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def describe(url: URL) -> str:
    """The URL as shown in messages: a SQLite path as given, never a password."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return url.render_as_string(hide_password=True)


def make_engine(url: URL) -> Engine:
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


def _create_read_only(path: Path) -> Engine:
    """An engine that only reads `path` (SQLite's `mode=ro`)."""
    engine = create_engine("sqlite://", creator=lambda: _connect_read_only(path))
    event.listen(engine, "connect", _configure_sqlite_reader)
    event.listen(engine, "begin", _begin_sqlite)
    return engine


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection. A WAL database needs its index file (`-shm`) even to be read,
    and in a read-only folder no one can create it; there the file is opened `immutable`,
    without the index (https://sqlite.org/wal.html#readonly). Whoever could still write
    it could also have made the index, so nobody is writing it meanwhile."""
    uri = path.resolve().as_uri()
    connection = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
    try:
        connection.execute("PRAGMA schema_version").fetchone()
        return connection
    except sqlite3.OperationalError:
        connection.close()
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False)


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


def _configure_sqlite_reader(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # BEGIN is `_begin_sqlite`'s, as for a writer
    dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


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


def damaged(shown: str, detail: str) -> StoreError:
    """The error for a damaged database: what was found, and how to get the data back."""
    return StoreError(
        f"database '{shown}' is damaged ({detail}); restore it from a copy, or save what is "
        f"readable with: sqlite3 '{shown}' .recover | sqlite3 recovered.db"
    )


def check_integrity(engine: Engine, path: Path, shown: str) -> None:
    """Refuse a file that is not SQLite, or a SQLite file with damaged pages.

    `quick_check` reads every page once, but skips the costlier index-content checks of
    `integrity_check` (on the busy 2-core machine, a few tenths of a second for 170 MB:
    10,000 runs of 30 epochs).
    """
    with path.open("rb") as file:
        header = file.read(len(_SQLITE_HEADER))
    if header and header != _SQLITE_HEADER:
        raise StoreError(
            f"cannot open database '{shown}': file is not a database (not a SQLite file; "
            "check the path)"
        )
    try:
        with engine.connect() as connection:
            problems = [row[0] for row in connection.exec_driver_sql("PRAGMA quick_check")]
    except DatabaseError as error:
        reason = _reason(error)
        if any(sign in reason for sign in _DAMAGE_SIGNS):
            raise damaged(shown, reason) from None
        raise StoreError(f"cannot open database '{shown}': {reason}") from None
    if problems != ["ok"]:
        first = problems[0].removeprefix("*** in database main ***").strip()
        more = f", and {len(problems) - 1} more problems" if len(problems) > 1 else ""
        raise damaged(shown, f"{first}{more}")


def _reason(error: BaseException) -> str:
    return str(getattr(error, "orig", None) or error).splitlines()[0]


@contextmanager
def errors_named(shown: str) -> Iterator[None]:
    """Turn a database failure while it is used into one StoreError naming the file: a
    damaged file, a stored JSON value that does not parse, or what the database refuses to
    do (a lock held too long, a full disk, a read-only file). A constraint or a statement
    the database rejects is a bug, and goes on as it is."""
    try:
        yield
    except json.JSONDecodeError as error:
        raise damaged(shown, f"a stored JSON value does not parse: {error}") from None
    except DatabaseError as error:
        reason = _reason(error)
        if any(sign in reason for sign in _DAMAGE_SIGNS):
            raise damaged(shown, reason) from None
        if isinstance(error, OperationalError):
            raise StoreError(f"database '{shown}': {reason}") from None
        raise


def check_schema(engine: Engine, shown: str) -> None:
    """Check, without writing, that a database has this paramsplit's schema."""
    try:
        with read_transaction(engine) as connection:
            tables = set(inspect(connection).get_table_names())
            if not tables:
                raise StoreError(f"database '{shown}' is empty: no study has been run into it")
            version = _stored_version(connection, tables, shown)
    except SQLAlchemyError as error:
        raise StoreError(f"cannot open database '{shown}': {_reason(error)}") from None
    if version < schema.SCHEMA_VERSION:
        raise StoreError(
            f"database '{shown}' has schema version {version}, older than this paramsplit's "
            f"{schema.SCHEMA_VERSION}, and is read-only, so it cannot be upgraded; make it "
            "writable or open a writable copy"
        )


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
        raise StoreError(f"cannot open database '{shown}': {_reason(error)}") from None


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
    if not str(version).isdigit():
        raise damaged(shown, f"its schema version is {str(version)[:40]!r}, not a number")
    if int(version) > schema.SCHEMA_VERSION:
        raise StoreError(
            f"database '{shown}' has schema version {version}, newer than this paramsplit's "
            f"{schema.SCHEMA_VERSION}; upgrade paramsplit"
        )
    return int(version)
