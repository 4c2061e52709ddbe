"""`paramsplit run --db postgresql://…` as a team uses it: a study into a PostgreSQL server,
killed mid-run, resumed by the same command, then its status and report from the server.

The console script runs in a temporary working directory: with a server database, checkpoints
go to `paramsplit-checkpoints/` there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import postgres_server
from paramsplit.store import Store, StoreError

pytestmark = [pytest.mark.slow, pytest.mark.postgres]  # three CLI processes: ~30 s on 2 cores

SCRIPT = Path(sys.executable).with_name("paramsplit")  # the venv's console script
STUDY = "e2e"
# Four tiny runs (single and 2x deq at two budgets), two epochs each so that a run can be
# killed between its epochs; nothing measured (measuring has tests of its own).
RUN_ARGS = ("run", "--name", STUDY, "--family", "resnet", "--budgets", "5k,10k", "--members",
            "2", "--designs", "single,deq", "--dataset", "digits", "--epochs", "2",
            "--batch-size", "64", "--measure", "none", "--threads", "1")  # fmt: skip
NUM_RUNS = 4
TIMEOUT_S = 300


def environment() -> dict[str, str]:
    # Without FORCE_COLOR, rich sees a pipe or file: plain text, no live progress redraws.
    return {key: value for key, value in os.environ.items() if key != "FORCE_COLOR"}


def start_study(folder: Path, url: str) -> subprocess.Popen[bytes]:
    """`paramsplit run` in `folder`, its output into `folder/run.log` (appended)."""
    with (folder / "run.log").open("ab") as log:
        return subprocess.Popen(
            [str(SCRIPT), *RUN_ARGS, "--db", url],
            cwd=folder,
            env=environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def json_of(folder: Path, *args: str) -> dict:
    """What a `paramsplit ... --json` command printed, after checking that it succeeded."""
    done = subprocess.run(
        [str(SCRIPT), *args, "--json"],
        cwd=folder,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_for_a_run_between_epochs(url: str, child: subprocess.Popen[bytes]) -> str:
    """Poll the server until one run is done and another has finished its first epoch (so
    has a checkpoint); that run's id."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        assert child.poll() is None, "the study ended before it could be killed"
        time.sleep(0.1)
        try:
            with Store.open(url) as store:
                runs = store.runs(STUDY)
                done = [run for run in runs if run["status"] == "done"]
                running = [run for run in runs if run["status"] == "running"]
                if done and running and store.epochs(running[0]["run_id"]):
                    return str(running[0]["run_id"])
        except StoreError:  # the study is not registered yet
            continue
    pytest.fail("the study never got going")


def test_a_study_on_postgresql_survives_a_kill_and_reports(tmp_path, postgres_url):
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT}"
    url = postgres_url
    postgres_server.empty_public_schema(url)
    child = start_study(tmp_path, url)
    try:
        interrupted = wait_for_a_run_between_epochs(url, child)
        child.send_signal(signal.SIGKILL)  # no handler runs: the run stays "running"
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    checkpoints = tmp_path / "paramsplit-checkpoints"
    with Store.open(url) as store:
        assert store.run(interrupted)["status"] == "running"  # held by a dead process
        done_before = {r["run_id"]: r for r in store.runs(STUDY) if r["status"] == "done"}
    assert (checkpoints / f"{interrupted}.pt").exists()

    # The same command again takes the dead process's run over and finishes the study.
    resumed = start_study(tmp_path, url)
    log = tmp_path / "run.log"
    assert resumed.wait(timeout=TIMEOUT_S) == 0, log.read_text()
    with Store.open(url) as store:
        runs = store.runs(STUDY)
        assert store.status_counts(STUDY) == {"done": NUM_RUNS, "running": 0, "pending": 0,
                                              "failed": 0, "stopped": 0,
                                              "total": NUM_RUNS}  # fmt: skip
        assert len({run["run_id"] for run in runs}) == NUM_RUNS
        for run in runs:  # every run trained to the end exactly once
            assert [epoch["epoch"] for epoch in store.epochs(run["run_id"])] == [1, 2]
            assert run["attempts"] == (2 if run["run_id"] == interrupted else 1), run
        for run_id, before in done_before.items():  # finished runs were not redone
            after = store.run(run_id)
            assert after["finished_at"] == before["finished_at"]
            assert after["test_accuracy"] == before["test_accuracy"]
    assert not list(checkpoints.glob("*.pt"))

    assert json_of(tmp_path, "status", "--study", STUDY, "--db", url)["done"] == NUM_RUNS
    answer = json_of(tmp_path, "report", "--study", STUDY, "--db", url, "--html", "report.html")
    assert (answer["num_runs"], answer["num_done"]) == (NUM_RUNS, NUM_RUNS)
    assert len(answer["designs"]) == NUM_RUNS  # one seed each: a design per run
    assert "report.html" in " ".join(answer["files"])
    assert "<html" in (tmp_path / "report.html").read_text().lower()
