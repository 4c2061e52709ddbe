"""mypy catches a misspelt (or renamed) field of a run's records, where it is built or read.

The same snippet is checked twice, with each field spelt right and spelt wrong: the right
spelling must pass (so the test can fail), and the wrong one must fail naming the field.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import paramsplit

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(paramsplit.__file__).resolve().parents[1]

# Each record: a line that reads one of its fields, and a line that builds it by keyword.
SNIPPET = """
from paramsplit.analysis.records import RunRecord
from paramsplit.records import MeasureResult, RunResult, RunSpec, TrainSummary


def read(
    spec: RunSpec, summary: TrainSummary, measured: MeasureResult, result: RunResult,
    record: RunRecord,
) -> list[object]:
    return [
        spec.{seed}, summary.{test_accuracy}, measured.{latency_ms_batch1},
        result.{train}, record.{budget_params},
    ]


def build(summary: TrainSummary) -> RunResult:
    return RunResult(train=summary, {measured_kw}=None)
"""
RIGHT = {
    "seed": "seed",
    "test_accuracy": "test_accuracy",
    "latency_ms_batch1": "latency_ms_batch1",
    "train": "train",
    "budget_params": "budget_params",
    "measured_kw": "measured",
}
WRONG = {
    "seed": "sed",
    "test_accuracy": "test_acuracy",
    "latency_ms_batch1": "latency_ms_batch_1",
    "train": "trained",
    "budget_params": "budget",
    "measured_kw": "measurements",
}


def _mypy(folder: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (folder / name).write_text(text)
    # This checkout's sources, not whatever paramsplit the environment has installed.
    env = {**os.environ, "MYPYPATH": str(SRC)}
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    command += ["--cache-dir", str(folder / ".mypy_cache"), "--no-incremental"]
    return subprocess.run(
        [*command, *files], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow  # mypy over the records and their imports: 20-60 s on 2 busy cores
def test_mypy_names_each_misspelt_record_field_and_passes_the_right_spelling(tmp_path):
    checked = _mypy(
        tmp_path,
        {"right.py": SNIPPET.format(**RIGHT), "wrong.py": SNIPPET.format(**WRONG)},
    )
    report = checked.stdout
    assert checked.returncode == 1, report + checked.stderr
    assert "right.py" not in report, report  # the right spelling type-checks
    errors = [line for line in report.splitlines() if line.startswith("wrong.py")]
    for field in WRONG.values():
        assert any(re.search(rf'"{field}"', line) for line in errors), (field, report)
    assert len(errors) == len(WRONG), report
