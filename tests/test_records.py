"""A run's typed records: plain data out and back, the store's layout kept, names checked."""

from __future__ import annotations

import dataclasses
import json

import pytest

import paramsplit as ps
from paramsplit.errors import ConfigError, StoreError
from paramsplit.records import (
    RESULT_FIELDS,
    KeptWeights,
    MeasuredRun,
    MeasureResult,
    RunResult,
    RunSpec,
    TrainingLoad,
    TrainSummary,
    check_named,
)
from paramsplit.specs import DesignClass, TrainConfig
from paramsplit.store import METRIC_COLUMNS, Store, run_id_for
from paramsplit.study import run_spec
from run_records import a_measure_result, a_run_spec, a_train_summary


def test_each_record_comes_back_from_its_plain_data():
    spec, summary, measured = a_run_spec(), a_train_summary(), a_measure_result()
    # Through JSON, as the store keeps them: lists where the records hold tuples.
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert TrainSummary.from_dict(json.loads(json.dumps(summary.to_dict()))) == summary
    assert MeasureResult.from_dict(json.loads(json.dumps(measured.to_dict()))) == measured


def test_a_run_spec_keeps_the_stored_layout_and_run_id():
    # The `spec` JSON of every run in a database has these keys in this order; the run id
    # hashes the identity among them, so a spec that kept its values keeps its id.
    planned = ps.plan_budget("resnet", 20_000, [2], input_spec=ps.parse_input("1x8x8"))[1]
    spec = run_spec(planned, "digits", TrainConfig(epochs=2), seed=3)
    stored = spec.to_dict()
    assert list(stored) == [
        "family", "design_class", "num_members", "member", "member_depth", "member_width",
        "member_params", "total_params", "budget_params", "ratio", "dataset", "config", "seed",
    ]  # fmt: skip
    assert stored["design_class"] == "deq" and type(stored["design_class"]) is str
    assert stored["config"]["weight_decay"] == ps.get_family("resnet").weight_decay
    assert run_id_for(spec) == run_id_for(stored)
    assert spec.design == planned.design and spec.total_params == planned.total_params


def test_a_run_spec_without_a_field_is_refused_by_name():
    stored = a_run_spec().to_dict()
    del stored["seed"], stored["member_params"]
    with pytest.raises(StoreError, match="run spec is missing 'member_params', 'seed'"):
        RunSpec.from_dict(stored)


def test_the_store_takes_the_records_as_they_are(tmp_path):
    spec, summary = a_run_spec(), a_train_summary()
    result = RunResult(summary, measured=MeasuredRun(a_measure_result()))
    with Store.open(tmp_path / "runs.db") as store:
        store.add_study("s", {"name": "s"})
        (run_id,) = store.add_runs("s", [spec]).run_ids
        store.finish(run_id, result)
        row = store.run(run_id)
    assert RunSpec.from_dict(row["spec"]) == spec
    assert row["test_accuracy"] == summary.test_accuracy
    assert row["latency_ms_batch1"] == a_measure_result().latency_ms_batch1
    assert [point["val_accuracy"] for point in store.epochs(run_id)] == [
        epoch.val_accuracy for epoch in summary.curve
    ]
    assert TrainSummary.from_dict(row["metrics"]) == summary


def test_train_config_from_a_dict_is_the_one_way_back():
    config = TrainConfig(epochs=3, milestones=(0.3, 0.6), weight_decay=1e-4)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig.from_dict({"epochs": 3}) == TrainConfig(epochs=3)
    with pytest.raises(ConfigError, match=r"setting\(s\) 'epoch'; allowed: batch_size, "):
        TrainConfig.from_dict({"epoch": 3})
    # A config stored by another version: what this one knows of it.
    stored = {**config.to_dict(), "optimizer": "lamb"}
    assert TrainConfig.from_dict(stored, ignore_unknown=True) == config


def test_a_results_flat_keys_keep_the_trained_and_kept_figures_first():
    kept = KeptWeights(weights_path="/w/run.safetensors", weights_bytes=70_000, weights_sha256="ab")
    measured = a_measure_result(executor="loop", device="cuda", weights_bytes=32_000)
    result = RunResult(
        a_train_summary(), kept, MeasuredRun(measured, measure_time_s=0.5), TrainingLoad(2, True)
    )
    stored = result.to_dict()
    # The executor that trained and the file's size win over the measurement's namesakes.
    assert (stored["executor"], stored["device"]) == ("fused", "cpu")
    assert stored["weights_bytes"] == 70_000
    assert stored["measure_time_s"] == 0.5 and stored["loop_latency_ms_batch1"] == 3.0
    assert (stored["concurrent_workers"], stored["latency_under_load"]) == (2, True)
    assert set(stored) <= RESULT_FIELDS
    assert list(stored)[: len(dataclasses.fields(TrainSummary))] == [
        f.name for f in dataclasses.fields(TrainSummary)
    ]
    failed = RunResult(a_train_summary(), measured=MeasuredRun(None, measure_error="boom"))
    assert failed.to_dict()["measure_error"] == "boom" and not failed.latency_measured
    assert KeptWeights(weights_error="disk full").to_dict() == {"weights_error": "disk full"}


def test_every_metric_column_names_a_result_field_and_a_stray_name_is_caught():
    assert set(METRIC_COLUMNS) <= RESULT_FIELDS
    with pytest.raises(AssertionError, match=r"schema.METRIC_COLUMNS name\(s\) test_acc, no field"):
        check_named([*METRIC_COLUMNS, "test_acc"], RESULT_FIELDS, "schema.METRIC_COLUMNS")


def test_a_design_class_reads_back_as_the_enum():
    spec = RunSpec.from_dict(a_run_spec(design_class=DesignClass.SINGLE, num_members=1).to_dict())
    assert spec.design_class is DesignClass.SINGLE and spec.design.name == "resnet-8-4"
