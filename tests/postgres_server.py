"""A throwaway PostgreSQL server for the tests: a cluster made by `initdb` in a temporary
folder, listening only on a Unix socket in that folder, stopped and deleted at the end.

No package beyond the server's own binaries (Debian's `postgresql`, which keeps them in
/usr/lib/postgresql/VERSION/bin, off PATH) and the driver, psycopg.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEBIAN_BIN_DIRS = Path("/usr/lib/postgresql")
USER = "paramsplit"  # the cluster's superuser, with a password: what a team's server has
DATABASE = "paramsplit_test"
# initdb and postgres refuse to run as root ("cannot be run as root"). Under root (CI) they
# run as Debian's `postgres` account, which the package creates, or else as `nobody`.
UNPRIVILEGED_ACCOUNTS = ("postgres", "nobody")
# A throwaway cluster needs no crash safety: PostgreSQL's "non-durable settings"
# (https://www.postgresql.org/docs/current/non-durability.html). A killed *client*, which the
# tests do kill, loses nothing either way.
SERVER_SETTINGS = {
    "listen_addresses": "''",  # no TCP port: nothing to collide with, nothing exposed
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "200",  # tests open a store per poll; the pool closes them late
}
START_TIMEOUT_S = 60


def find_bin_dir() -> Path | None:
    """The folder with initdb and pg_ctl: on PATH, else Debian's newest version."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    versions = [p / "bin" for p in DEBIAN_BIN_DIRS.glob("*") if (p / "bin" / "initdb").exists()]
    if not versions:
        return None
    return max(versions, key=lambda bin_dir: _version_key(bin_dir.parent.name))


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def missing_reason() -> str | None:
    """Why no throwaway server can start here, or None when one can."""
    if find_bin_dir() is None:
        return (
            "PostgreSQL's initdb was not found (on PATH or in /usr/lib/postgresql/*/bin); "
            "install Debian's postgresql package"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the PostgreSQL driver is missing: pip install 'psycopg[binary]'"
    return None


@dataclass(frozen=True)
class Account:
    """Who the server runs as: None for this process's own user."""

    user: str | None = None
    group: str | None = None

    @classmethod
    def for_server(cls) -> Account:
        if os.geteuid() != 0:
            return cls()
        for name in UNPRIVILEGED_ACCOUNTS:
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam(name)
                return cls(name, grp.getgrgid(entry.pw_gid).gr_name)
        raise RuntimeError(f"running as root and none of {UNPRIVILEGED_ACCOUNTS} exists")

    def run(self, command: list[str | Path]) -> None:
        """Run a server command as this account; its output only if it fails."""
        privileges = {"user": self.user, "group": self.group, "extra_groups": []}
        done = subprocess.run(
            [str(part) for part in command],
            capture_output=True,
            text=True,
            check=False,
            **(privileges if self.user else {}),  # type: ignore[arg-type]
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed:\n{done.stdout}{done.stderr}")

    def own(self, path: Path) -> None:
        if self.user:
            shutil.chown(path, self.user, self.group)


@contextlib.contextmanager
def running_server() -> Iterator[str]:
    """Start a cluster, create one database in it, yield its URL; stop and delete at the end.

    The URL is what a user would pass to `--db`:
    postgresql://paramsplit:PASSWORD@/paramsplit_test?host=/tmp/paramsplit-pg-XXXX
    """
    bin_dir = find_bin_dir()
    assert bin_dir is not None, missing_reason()
    account = Account.for_server()
    # Not under pytest's tmp_path: that is private to root (0700), and a socket path must
    # stay under ~100 bytes.
    folder = Path(tempfile.mkdtemp(prefix="paramsplit-pg-"))
    data, log, password_file = folder / "data", folder / "server.log", folder / "password"
    password = secrets.token_hex(8)
    password_file.write_text(password + "\n")
    account.own(folder)
    account.own(password_file)
    options = " ".join(f"-c {key}={value}" for key, value in SERVER_SETTINGS.items())
    options += f" -c unix_socket_directories={folder}"
    try:
        account.run([bin_dir / "initdb", "-D", data, "-U", USER, f"--pwfile={password_file}",
                     "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions"])  # fmt: skip
        account.run([bin_dir / "pg_ctl", "start", "-D", data, "-l", log, "-w",
                     "-t", str(START_TIMEOUT_S), "-o", options])  # fmt: skip
        try:
            _create_database(password, folder)
            yield f"postgresql://{USER}:{password}@/{DATABASE}?host={folder}"
        finally:
            account.run([bin_dir / "pg_ctl", "stop", "-D", data, "-m", "fast", "-w"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _create_database(password: str, socket_folder: Path) -> None:
    import psycopg

    with psycopg.connect(
        host=str(socket_folder), user=USER, password=password, dbname="postgres", autocommit=True
    ) as connection:
        connection.execute(f"CREATE DATABASE {DATABASE}")


def empty_public_schema(url: str) -> None:
    """Drop every table: each test starts on an empty database, as with a new SQLite file."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as connection:
            # A connection left inside a transaction by an earlier test would make the DROP
            # wait forever: fail instead, naming it.
            connection.exec_driver_sql("SET LOCAL lock_timeout = '20s'")
            connection.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        engine.dispose()
