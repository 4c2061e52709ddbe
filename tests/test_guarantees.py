"""What a study guarantees: what survives a kill, what two processes may share, and faults.

Checkpoints are bound to their run, and one that cannot be used is set aside; a worker that
lost its claim writes nothing more for the run; a full disk or a refused database write
pauses the study, which the same call resumes with nothing lost; workers die with their
parent; a study killed at random moments and resumed ends as an uninterrupted one.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from sqlalchemy import event

import paramsplit as ps
from paramsplit.errors import CheckpointError, DiskFullError
from paramsplit.specs import TrainConfig
from paramsplit.store import Store, StoreWriteError
from paramsplit.store import database as store_database
from paramsplit.study import StudyDefinition, checkpoint_dir_for, register_study, run_study
from paramsplit.study.interrupts import sigterm_as_interrupt
from paramsplit.train import checkpoint as checkpoint_module
from paramsplit.train.checkpoint import load_checkpoint, save_checkpoint

# What is compared between an interrupted study and an uninterrupted one, run by run.
RESULT_KEYS = ("status", "test_accuracy", "best_val_accuracy", "best_epoch", "epochs_trained")
CURVE_KEYS = ("epoch", "train_loss", "val_accuracy")


def _study(**changes) -> StudyDefinition:
    # One executor, not the timed choice: results compare exactly between two studies.
    fields = {
        "name": "guarded",
        "families": ("resnet",),
        "budgets": (5_000,),
        "members": (2,),
        "designs": ("single", "deq"),
        "config": TrainConfig(epochs=2, batch_size=64),
        "measure": "none",
    }
    return StudyDefinition(**{**fields, **changes})


def _outcomes(store: Store, study: str) -> dict[tuple, dict]:
    """Every run of a study by what it is (design and seed), with its result and curve."""
    outcomes = {}
    for run in store.runs(study):
        curve = [tuple(row[key] for key in CURVE_KEYS) for row in store.epochs(run["run_id"])]
        outcomes[(run["design"], run["seed"])] = {
            **{key: run[key] for key in RESULT_KEYS},
            "curve": curve,
        }
    return outcomes


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_digits):
    """The outcomes of studies that nothing interrupted, by their settings."""
    cache: dict[StudyDefinition, dict] = {}

    def outcomes_of(study: StudyDefinition) -> dict[tuple, dict]:
        if study not in cache:
            path = tmp_path_factory.mktemp("reference") / "reference.db"
            with Store.open(path) as store:
                run_study(store, study, executor="loop", datasets=small_digits)
                cache[study] = _outcomes(store, study.name)
        return cache[study]

    return outcomes_of


def _run(store: Store, study: StudyDefinition, folder: Path, datasets, **options) -> dict:
    return run_study(
        store, study, executor="loop", datasets=datasets, checkpoint_dir=folder, **options
    )


def _assert_consistent(store: Store, study: str, folder: Path, *, killed: bool = False) -> None:
    """Every run done once, no claim left, no temporary file left, and no checkpoint, except
    (after a kill) one whose run was done just before the kill removed it."""
    counts = store.status_counts(study)
    assert counts["done"] == counts["total"] and counts["running"] == counts["pending"] == 0
    left = [path.name for path in folder.glob("*") if not path.name.endswith(".rejected")]
    assert [name for name in left if not killed or not name.endswith(".pt")] == []


# --- checkpoints bound to their run ---------------------------------------------------------


def _stop_after_first_epoch(kind, done, total, values):
    if kind == "epoch" and done == 1:
        raise KeyboardInterrupt  # what Ctrl-C raises: the run is given back


def test_a_checkpoint_copied_under_another_runs_id_is_set_aside(tmp_path, small_digits, reference):
    # Before: seed 1 resumed seed 0's checkpoint, and its stored curve equalled seed 0's.
    study = _study(designs=("single",), seeds=(0, 1))
    folder = tmp_path / "checkpoints"
    store = Store.open(tmp_path / "study.db")
    with pytest.raises(KeyboardInterrupt):
        _run(store, study, folder, small_digits, on_progress=_stop_after_first_epoch)
    seed_0, seed_1 = (run["run_id"] for run in store.runs(study.name))
    (folder / f"{seed_1}.pt").write_bytes((folder / f"{seed_0}.pt").read_bytes())

    _run(store, study, folder, small_digits)
    assert _outcomes(store, study.name) == reference(study)  # seed 1 trained as seed 1
    (note,) = store.run(seed_1)["metrics"]["notes"]
    assert f"belongs to run {seed_0}, not to run {seed_1}" in note
    assert f"set aside as {seed_1}.pt.rejected, the run started from epoch 1" in note
    assert "notes" not in store.run(seed_0)["metrics"]  # seed 0 resumed its own
    assert (folder / f"{seed_1}.pt.rejected").exists()
    _assert_consistent(store, study.name, folder)


class Payload:
    """An object a checkpoint must not hold: loading it would run its class's code."""


def _checkpoint_of(path: Path, run_id: str | None = None) -> None:
    save_checkpoint(path, {"weights": torch.arange(1000.0)}, run_id=run_id)


def _truncated(path: Path, outside: Path) -> None:
    _checkpoint_of(path)
    path.write_bytes(path.read_bytes()[:-500])


def _corrupt(path: Path, outside: Path) -> None:
    _checkpoint_of(path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))


UNUSABLE = {
    "truncated": (_truncated, r"is truncated: [\d,]+ of [\d,]+ payload bytes"),
    "corrupt": (_corrupt, "is corrupt: its content hash does not match"),
    "another run's": (
        lambda path, outside: _checkpoint_of(path, run_id="f" * 32),
        f"belongs to run {'f' * 32}, not to run ",
    ),
    "not a checkpoint": (
        lambda path, outside: path.write_bytes(b"\x00\x01 nothing useful"),
        "is not a paramsplit checkpoint of version 2 \\(no header line\\)",
    ),
    "version 1": (
        lambda path, outside: torch.save({"version": 1}, path),
        "is not a paramsplit checkpoint of version 2",
    ),
    "a symbolic link": (lambda path, outside: path.symlink_to(outside), "is a symbolic link"),
    "code to run": (
        lambda path, outside: save_checkpoint(path, {"payload": Payload()}),
        "holds more than tensors and plain containers; not loaded",
    ),
}


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_an_unusable_checkpoint_is_set_aside_and_the_run_starts_afresh(
    tmp_path, small_digits, reference, case
):
    # Before: a corrupt or truncated checkpoint failed its run, with torch's advice to load
    # it with weights_only=False as the reason.
    make, why = UNUSABLE[case]
    study = _study(designs=("single",), config=TrainConfig(epochs=1, batch_size=64))
    folder, outside = tmp_path / "checkpoints", tmp_path / "outside.txt"
    outside.write_text("not paramsplit's")
    store = Store.open(tmp_path / "study.db")
    register_study(store, study, small_digits)
    (run_id,) = (run["run_id"] for run in store.runs(study.name))
    folder.mkdir()
    make(folder / f"{run_id}.pt", outside)
    with pytest.raises(CheckpointError, match=why):
        load_checkpoint(folder / f"{run_id}.pt")

    _run(store, study, folder, small_digits)
    assert _outcomes(store, study.name) == reference(study)
    (note,) = store.run(run_id)["metrics"]["notes"]
    assert f"set aside as {run_id}.pt.rejected, the run started from epoch 1" in note
    assert "weights_only" not in note
    assert outside.read_text() == "not paramsplit's"
    _assert_consistent(store, study.name, folder)


def test_a_planted_temporary_file_or_link_is_never_written_through(tmp_path):
    # Before: a `.pt.tmp` symbolic link to a file outside had that file overwritten.
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "run.pt.tmp").symlink_to(outside)
    (folder / "other.pt").symlink_to(outside)
    save_checkpoint(folder / "run.pt", {"weights": torch.ones(3)})
    save_checkpoint(folder / "other.pt", {"weights": torch.zeros(3)})
    assert outside.read_text() == "keep me"
    assert not (folder / "other.pt").is_symlink()  # the link was replaced, not written through
    assert torch.equal(load_checkpoint(folder / "run.pt")["weights"], torch.ones(3))
    assert sorted(path.name for path in folder.iterdir()) == ["other.pt", "run.pt", "run.pt.tmp"]


# --- claims ---------------------------------------------------------------------------------


def test_a_worker_that_lost_its_claim_stops_the_run_and_writes_nothing_more(tmp_path, small_digits):
    # Before: a worker paused past the stale-claim limit trained on after a second process
    # took its run over; both finished it, and the last to write won.
    study = _study()
    folder, path = tmp_path / "checkpoints", tmp_path / "study.db"
    store, other = Store.open(path), Store.open(path)
    events: list[tuple[str, str]] = []
    taken: list[dict] = []

    def take_over_the_first_run(kind, done, total, values):
        if kind == "epoch" and not taken:  # as a second process does once the claim is stale
            taken.append(other.claim_next(study.name, "elsewhere:1", stale_after_s=0.0))

    counts = _run(
        store, study, folder, small_digits, on_progress=take_over_the_first_run,
        on_run=lambda kind, run: events.append((kind, run["run_id"])),
    )  # fmt: skip
    first, second = (run["run_id"] for run in store.runs(study.name))
    assert taken[0]["run_id"] == first
    assert events == [("start", first), ("lost", first), ("start", second), ("end", second)]
    assert counts == {"done": 1, "running": 1, "pending": 0, "failed": 0, "stopped": 0,
                      "total": 2}  # fmt: skip
    lost = store.run(first)
    assert (lost["status"], lost["worker"]) == ("running", "elsewhere:1")
    assert lost["test_accuracy"] is None
    assert [row["epoch"] for row in store.epochs(first)] == [1]  # epoch 2 was refused
    assert (folder / f"{first}.pt").exists()  # left to the new holder


# --- an interrupt between a claim and the code that gives its run back ----------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("moment", ["claimed", "starting"])
def test_an_interrupt_just_after_a_claim_gives_the_run_back(
    tmp_path, small_digits, monkeypatch, signum, moment
):
    # Before: a SIGTERM that landed after the claim was committed but before the training's
    # `try` (CI caught one in `test_workers_end_with_their_parent_however_it_ends`) left the
    # run `running` under a worker that had stopped, until another call took it over.

    study = _study()
    store = Store.open(tmp_path / "study.db")
    claim_next = store.claim_next

    def claim_then_signal(*args, **kwargs):
        run = claim_next(*args, **kwargs)
        os.kill(os.getpid(), signum)  # the handler runs at the next bytecode: right here
        return run

    def signal_at_start(kind, run):
        if kind == "start":
            os.kill(os.getpid(), signum)

    if moment == "claimed":
        monkeypatch.setattr(store, "claim_next", claim_then_signal)
    on_run = signal_at_start if moment == "starting" else None
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        _run(store, study, tmp_path / "checkpoints", small_digits, on_run=on_run)
    runs = store.runs(study.name)
    assert [(run["status"], run["worker"]) for run in runs] == [("pending", None)] * 2
    assert all(store.epochs(run["run_id"]) == [] for run in runs)  # not one epoch trained


# --- faults: a full disk, a database that refuses writes --------------------------------------


class _FullDisk:
    """A file whose writes stop halfway with ENOSPC, as on a full disk."""

    def __init__(self, file):
        self._file = file

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()

    def write(self, data):
        self._file.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._file, name)


def test_a_full_disk_pauses_the_study_and_the_same_call_resumes_it(
    tmp_path, small_digits, reference, monkeypatch
):
    # Before: an OperationalError, the run left `running` and a `.pt.tmp` left behind.
    study = _study()
    folder = tmp_path / "checkpoints"
    store = Store.open(tmp_path / "study.db")
    saves = []

    def open_on_a_disk_that_fills(descriptor, mode):
        file = builtins.open(descriptor, mode)  # noqa: SIM115 (the caller closes it)
        if "w" not in mode:
            return file
        saves.append(descriptor)
        return _FullDisk(file) if len(saves) == 2 else file  # epoch 2 of the first run

    monkeypatch.setattr(checkpoint_module, "open", open_on_a_disk_that_fills, raising=False)
    with pytest.raises(DiskFullError, match=r"disk full writing checkpoint '.*'; free space"):
        _run(store, study, folder, small_digits)
    first = store.runs(study.name)[0]
    assert first["status"] == "pending"  # given back
    assert [path.name for path in folder.iterdir()] == [f"{first['run_id']}.pt"]  # epoch 1's
    assert [row["epoch"] for row in store.epochs(first["run_id"])] == [1]

    monkeypatch.undo()
    _run(store, study, folder, small_digits)
    assert _outcomes(store, study.name) == reference(study)
    _assert_consistent(store, study.name, folder)


@contextlib.contextmanager
def _refused_once(store: Store, statement_start: str, message: str, when=lambda p: True):
    """The database refuses the first matching statement, as SQLite does when full or
    locked, then takes every write again."""
    refused = []

    def refuse(connection, cursor, statement, parameters, context, executemany):
        if not refused and statement.startswith(statement_start) and when(parameters):
            refused.append(statement)
            raise sqlite3.OperationalError(message)

    engine = store._engine  # fault injection reaches into the store's engine
    event.listen(engine, "before_cursor_execute", refuse)
    try:
        yield refused
    finally:
        event.remove(engine, "before_cursor_execute", refuse)


@pytest.mark.parametrize(
    ("statement", "when", "message", "advice"),
    [
        ("INSERT INTO epochs", lambda p: True, "database or disk is full", "free disk space"),
        (
            "UPDATE runs SET status",
            lambda p: "done" in p,  # the result of the first run
            "database is locked",
            "another process held it past the busy timeout",
        ),
    ],
    ids=["disk full on an epoch", "locked on a result"],
)
def test_a_refused_database_write_pauses_the_study_and_loses_nothing(
    tmp_path, small_digits, reference, statement, when, message, advice
):
    study = _study()
    folder = tmp_path / "checkpoints"
    store = Store.open(tmp_path / "study.db")
    with (
        _refused_once(store, statement, message, when) as refused,
        pytest.raises(StoreWriteError, match=f"cannot write to database '.*': {message}; {advice}"),
    ):
        _run(store, study, folder, small_digits)
    assert refused
    assert store.status_counts(study.name)["pending"] == 2  # the first run was given back
    _run(store, study, folder, small_digits)
    assert _outcomes(store, study.name) == reference(study)
    _assert_consistent(store, study.name, folder)


def test_a_database_locked_for_a_moment_is_waited_for(tmp_path, small_digits, reference):
    # Another process holds the write lock for 0.3 s in the middle of a run (60 s is the
    # limit): the study waits for it, and nothing changes.
    study = _study()
    folder, path = tmp_path / "checkpoints", tmp_path / "study.db"
    store = Store.open(path)
    locks: list[threading.Timer] = []

    def lock_for_a_moment(kind, done, total, values):
        if kind == "epoch" and not locks:
            holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            holder.execute("BEGIN IMMEDIATE")
            locks.append(threading.Timer(0.3, holder.execute, ["COMMIT"]))
            locks[0].start()

    _run(store, study, folder, small_digits, on_progress=lock_for_a_moment)
    locks[0].join()
    assert _outcomes(store, study.name) == reference(study)
    _assert_consistent(store, study.name, folder)


def test_a_database_locked_past_the_busy_timeout_refuses_the_study(
    tmp_path, small_digits, monkeypatch
):
    monkeypatch.setattr(store_database, "SQLITE_BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "study.db"
    store = Store.open(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreWriteError, match="database is locked; another process held it"):
        _run(store, _study(), tmp_path / "checkpoints", small_digits)
    holder.execute("COMMIT")
    assert store.studies() == []  # nothing was written


# --- kills ------------------------------------------------------------------------------------

# A study in a child process: two runs of small digits, checkpoints beside the database.
CHILD = """
import dataclasses, sys, torch
from paramsplit.data import load_dataset
from paramsplit.specs import TrainConfig
from paramsplit.store import Store
from paramsplit.study import StudyDefinition, checkpoint_dir_for, register_study, run_study
if __name__ == "__main__":  # worker processes import this file; they must not run it
    torch.set_num_threads(1)
    db, workers, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    digits = load_dataset("digits")
    small = dataclasses.replace(digits, train_images=digits.train_images[:128],
                                train_labels=digits.train_labels[:128])
    study = StudyDefinition("guarded", ("resnet",), (5_000,), members=(2,),
                            designs=("single", "deq"), seeds=(0, 1),
                            config=TrainConfig(epochs=epochs, batch_size=64), measure="none")
    run_study(Store.open(db), study, executor="loop", datasets={"digits": small},
              checkpoint_dir=checkpoint_dir_for(db), workers=workers)
"""


def _study_runs(store: Store) -> list[dict]:
    with contextlib.suppress(ps.StoreError):  # not registered yet
        return store.runs("guarded")
    return []


def _epochs_recorded(store: Store) -> int:
    return sum(len(store.epochs(run["run_id"])) for run in _study_runs(store))


@pytest.mark.slow  # five child processes, each importing torch: 100-170 s on 2 busy cores
def test_a_study_killed_at_random_moments_ends_as_an_uninterrupted_one(
    tmp_path, small_digits, reference
):
    db, script = str(tmp_path / "study.db"), tmp_path / "child.py"
    script.write_text(CHILD)
    watcher = Store.open(db)
    moments = random.Random(11)  # fixed: a failure can be replayed
    finished: dict[str, dict] = {}
    for kill in range(4):
        child = subprocess.Popen([sys.executable, str(script), db, "1", "2"])
        try:
            # Kill after a random number of recorded epochs (of 8), then a random instant
            # more: mid-epoch, mid-checkpoint, mid-write, between runs.
            target = min(7, kill * 2 + moments.randint(0, 2))
            deadline = time.monotonic() + 120
            while _epochs_recorded(watcher) < target and child.poll() is None:
                assert time.monotonic() < deadline, "the child study never got going"
                time.sleep(0.1)
            time.sleep(moments.uniform(0.0, 0.4))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
        for run in _study_runs(watcher):  # a finished run is never redone or changed
            if run["status"] == "done":
                before = finished.setdefault(run["run_id"], run)
                assert (run["finished_at"], run["test_accuracy"]) == (
                    before["finished_at"],
                    before["test_accuracy"],
                )

    assert subprocess.run([sys.executable, str(script), db, "1", "2"], timeout=300).returncode == 0
    store = Store.open(db)
    study = _study(seeds=(0, 1))
    assert _outcomes(store, study.name) == reference(study)
    _assert_consistent(store, study.name, Path(checkpoint_dir_for(db)), killed=True)


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` now, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


CLI = "from paramsplit.cli import main; main()"
CLI_RUN = (
    "run", "--family", "resnet", "--budgets", "5k", "--members", "2", "--designs", "single,deq",
    "--epochs", "500", "--measure", "none", "--member-executor", "loop", "--threads", "1",
    "--name", "guarded", "--workers", "2",
)  # fmt: skip


@pytest.mark.slow  # a parent and a worker process, each importing torch: ~30 s each
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts processes in /proc")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_workers_end_with_their_parent_however_it_ends(tmp_path, how):
    # Before: SIGTERM or SIGKILL to `paramsplit run --workers N` left the workers training
    # and writing to the database, reparented to init.
    db = str(tmp_path / "study.db")
    if how == "SIGKILL":  # the Python API, which installs no handler: nothing but the kernel
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        command = [sys.executable, str(script), db, "2", "500"]
    else:  # the command line, which stops on SIGTERM as on Ctrl-C
        command = [sys.executable, "-c", CLI, *CLI_RUN, "--db", db]
    # A file, not a pipe: an orphaned worker would hold a pipe open, and the wait with it.
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr_file:
        parent = subprocess.Popen(command, stderr=stderr_file)
    watcher = Store.open(db)
    try:
        deadline = time.monotonic() + 180
        while len(running := [r for r in _study_runs(watcher) if r["status"] == "running"]) < 2:
            assert time.monotonic() < deadline, "the two workers never both got going"
            assert parent.poll() is None, stderr_path.read_text()
            time.sleep(0.2)
        below = _descendants(parent.pid)
        workers = {int(run["worker"].rpartition(":")[2]) for run in running} - {parent.pid}
        assert workers and workers <= below  # the worker is among the processes counted
        parent.send_signal(getattr(signal, how))
        parent.wait(timeout=120)
    finally:
        if parent.poll() is None:
            parent.kill()
    deadline = time.monotonic() + 90
    while (orphans := [pid for pid in below if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in orphans:  # a failing test leaves nothing training in the background either
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert orphans == []

    store = Store.open(db)
    for run in running:
        pid = int(run["worker"].rpartition(":")[2])
        after = store.run(run["run_id"])
        if how == "SIGTERM" or pid != parent.pid:  # a worker gives its run back as it ends
            assert (after["status"], after["worker"]) == ("pending", None)
        else:  # the parent's own run: its holder is dead, so the next claim takes it over
            assert not _alive(pid) and after["status"] == "running"
    if how == "SIGTERM":
        assert parent.returncode == 128 + signal.SIGTERM
        assert stderr_path.read_text().strip().splitlines()[-1] == (
            "stopped by SIGTERM: the runs in progress were given back; run the same command "
            "again to resume"
        )
