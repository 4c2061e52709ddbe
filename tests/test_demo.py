"""`paramsplit demo`: the whole loop through the real machinery, shrunk to seconds.

The demo's own settings (4 budgets, 3 seeds, 10 epochs: minutes) run in `make demo`; here a
smaller study goes through the same code: plan, train, measure, store, analyse, report.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from typer.testing import CliRunner

import paramsplit.study.demo as demo_settings
from paramsplit.cli import app
from paramsplit.specs import TrainConfig
from paramsplit.store import Store

runner = CliRunner()
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture
def tiny_demo(monkeypatch):
    monkeypatch.setattr(demo_settings, "DEMO_BUDGETS", (5_000,))
    monkeypatch.setattr(demo_settings, "DEMO_MEMBERS", (2,))
    monkeypatch.setattr(demo_settings, "DEMO_SEEDS", (0, 1))
    monkeypatch.setattr(demo_settings, "DEMO_CONFIG", TrainConfig(epochs=1, batch_size=128))
    monkeypatch.setattr(demo_settings, "DEMO_QUESTION_BUDGET", 8_000)


def test_the_demo_names_its_study_by_the_rule_paramsplit_run_uses():
    study = demo_settings.demo_study()
    assert study.name == f"demo-resnet-digits-{study.digest()}"
    # What is measured is not what is studied, for the demo as for `paramsplit run`.
    assert dataclasses.replace(study, measure="none").digest() == study.digest()
    assert dataclasses.replace(study, seeds=(0,)).digest() != study.digest()


@pytest.mark.slow
def test_the_demo_answers_and_a_second_run_reuses_the_results(tiny_demo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the database and the report go to the working directory
    first = runner.invoke(app, ["demo", "--workers", "1"])
    out = " ".join(ANSI_ESCAPE.sub("", first.stdout).split())
    assert first.exit_code == 0, first.stderr
    assert "paramsplit demo: resnet on digits, budgets 5k;" in out
    assert "6 runs done, 0 failed, 0 not run yet" in out  # 3 designs × 2 seeds
    assert "Ensemble Switchover Threshold" in out
    # Every comparison with its parameter ratio: the win table, the EST lines, the answer.
    assert "params / single" in out and "the single network's" in out
    assert re.search(r"5k[✓✗?·] \(\d\.\d\d×", out)  # the EST sequence
    assert "Recommendation for 8k parameters" in out and "build " in out
    assert "8k was not measured; answering from 5k" in out
    assert "report: paramsplit-demo.html" in out
    assert (tmp_path / "paramsplit-demo.html").is_file()
    assert (tmp_path / "paramsplit-demo_files" / "analysis.json").is_file()
    with Store.open(tmp_path / "paramsplit-demo.db") as store:
        (study,) = store.studies()
        runs = store.runs(study["name"])
    assert {r["status"] for r in runs} == {"done"}
    assert all(r["latency_ms_batch1"] for r in runs)  # every run measured its latency
    assert all(r["peak_train_memory_bytes"] for r in runs if r["seed"] == 0)
    assert all(r["weights_path"] for r in runs)  # every run kept its weights, for export

    second = runner.invoke(app, ["demo", "--workers", "1"])
    assert second.exit_code == 0, second.stderr
    assert "all 6 runs are in paramsplit-demo.db already: reusing them" in second.stdout


def test_the_demo_refuses_zero_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["demo", "--workers", "0"])
    assert result.exit_code == 2
    assert "--workers must be in [1, " in result.stderr
