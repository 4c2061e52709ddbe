"""A run's typed records, from the study through the store to the analysis (no torch).

- `RunSpec`: what one run trains (design, dataset, training config, seed, and the planner's
  counts). The study registers it; a worker trains it.
- `TrainSummary` (with `EpochSummary` per epoch): what training left, as data
  (`paramsplit.train.TrainResult.summary`).
- `MeasureResult`: what was measured about a trained design (`paramsplit.measure`), and
  `MeasuredRun`, the measurement after training or why there is none.
- `RunResult`: a finished run as the store records it: its summary, its kept weights
  (`KeptWeights`), its measurements and the load it trained under (`TrainingLoad`).

Each key is spelled once, as a field. `to_dict` gives the plain data the store keeps (a
run's `spec` and `metrics` JSON, and its columns of the same names); `from_dict` reads it
back. mypy catches a renamed field where a record is built or read. The store's columns and
the analysis's `RunRecord` are checked against these fields when they are imported
(`check_named`).

This module sits beside `specs`, below the store and the analysis, so neither imports torch
to use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from paramsplit.errors import StoreError
from paramsplit.specs import DesignClass, DesignSpec, TrainConfig, parse_arch


def _fields_of(record: Any) -> dict[str, Any]:
    """Each field by name, its value as it is (not copied, unlike `dataclasses.asdict`)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


def _read(record: type[Any], data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The values of `record`'s fields in `data`; every field without a default must be there."""
    required = [
        f.name
        for f in fields(record)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        raise StoreError(f"{what} is missing {', '.join(map(repr, missing))}")
    return {f.name: data[f.name] for f in fields(record) if f.name in data}


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: a design, trained on a dataset under a config with a seed.

    `config` carries its resolved weight decay, so one protocol always has one text and one
    run id (`paramsplit.store.run_id_for`). `member`'s name carries its depth and every
    stage's width (`resnet-56-8.16.31`): it, not `member_width`, rebuilds the network.
    """

    family: str
    design_class: DesignClass
    num_members: int
    member: str
    member_depth: int
    member_width: int
    member_params: int
    total_params: int
    budget_params: int
    ratio: float
    dataset: str
    config: TrainConfig
    seed: int

    @property
    def design(self) -> DesignSpec:
        return DesignSpec(self.design_class, self.num_members, parse_arch(self.member))

    def to_dict(self) -> dict[str, Any]:
        return _fields_of(self) | {
            "design_class": self.design_class.value,
            "config": self.config.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        values = _read(cls, data, "run spec")
        values["design_class"] = DesignClass(values["design_class"])
        values["config"] = TrainConfig.from_dict(values["config"])
        return cls(**values)


@dataclass(frozen=True)
class EpochSummary:
    """One epoch of a run's curve. Accuracies are fractions; `elapsed_train_s` sums the
    training time up to this epoch; `test_accuracy` only when every epoch was tested."""

    epoch: int
    lr: float
    train_loss: float
    val_accuracy: float
    val_nll: float
    test_accuracy: float | None
    epoch_time_s: float
    elapsed_train_s: float

    def to_dict(self) -> dict[str, Any]:
        return _fields_of(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpochSummary:
        return cls(**_read(cls, data, "epoch record"))


@dataclass(frozen=True)
class TrainSummary:
    """A trained run as data. Units in every name; accuracies are fractions.

    `test_*` are of the weights of `best_epoch` (by validation accuracy, never by test),
    `final_test_accuracy` of the weights after the last epoch. `flops_per_image` counts one
    forward pass of every member. `epoch_time_s` and `train_images_per_s` are medians over
    epochs. `time_to_target_s`: training time until validation accuracy first reached
    `target_accuracy`.
    """

    design: str
    design_class: DesignClass
    num_members: int
    family: str
    member: str
    member_params: int
    total_params: int
    flops_per_image: int
    dataset: str
    seed: int
    status: str
    reason: str | None
    executor: str
    executor_step_ms: dict[str, float]
    executor_rounds_ms: dict[str, list[float]]
    executor_reason: str
    device: str
    torch_version: str
    num_threads: int
    config: TrainConfig
    epochs_trained: int
    best_epoch: int | None
    best_val_accuracy: float | None
    test_accuracy: float | None
    test_logit_accuracy: float | None
    test_vote_accuracy: float | None
    member_test_accuracy: tuple[float, ...] | None
    test_nll: float | None
    test_ece: float | None
    final_test_accuracy: float | None
    train_time_s: float
    compute_time_s: float
    data_time_s: float
    epoch_time_s: float | None
    train_images_per_s: float | None
    target_accuracy: float | None
    time_to_target_s: float | None
    curve: tuple[EpochSummary, ...]

    def to_dict(self) -> dict[str, Any]:
        member_accuracy = self.member_test_accuracy
        return _fields_of(self) | {
            "design_class": self.design_class.value,
            "config": self.config.to_dict(),
            "member_test_accuracy": None if member_accuracy is None else list(member_accuracy),
            "curve": [epoch.to_dict() for epoch in self.curve],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainSummary:
        values = _read(cls, data, "training result")
        member_accuracy = values["member_test_accuracy"]
        values["design_class"] = DesignClass(values["design_class"])
        values["config"] = TrainConfig.from_dict(values["config"])
        values["member_test_accuracy"] = None if member_accuracy is None else tuple(member_accuracy)
        values["curve"] = tuple(EpochSummary.from_dict(epoch) for epoch in values["curve"])
        return cls(**values)


@dataclass(frozen=True)
class MeasureResult:
    """Everything measured about one trained design on one device.

    `latency_*` and `throughput_*` are of the design's own executor, `loop_*` of its members
    run one at a time; `throughput_batch_size` is the batch size of the best throughput.
    Memory figures are exact peaks of live tensors, weights included
    (`paramsplit.measure.memory`): `peak_*` for all k members at once (fused), `loop_*` for
    one member at a time; `memory` holds both with their breakdown by category. All None
    when memory was not measured. FLOPs count one forward pass of every member, 2 per
    multiply-accumulate (`paramsplit.planner.accounting.profile_arch` × k).
    """

    member: str
    num_members: int
    executor: str
    device: str
    input: str
    precision: str
    latency_ms_batch1: float
    throughput_images_per_s: float
    throughput_batch_size: int
    loop_latency_ms_batch1: float
    loop_throughput_images_per_s: float
    timing_repeats: int
    weights_bytes: int
    flops_per_image: int
    peak_train_memory_bytes: int | None
    peak_inference_memory_bytes: int | None
    loop_train_memory_bytes: int | None
    loop_inference_memory_bytes: int | None
    train_batch_size: int
    inference_batch_size: int
    memory_method: str | None
    memory: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeasureResult:
        return cls(**_read(cls, data, "measurement"))


@dataclass(frozen=True)
class MeasuredRun:
    """The measurement after training: `result` and how long it took, or, where it failed
    (which is not the run's failure), `measure_error`."""

    result: MeasureResult | None
    measure_time_s: float | None = None
    measure_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.result is None:
            return {"measure_error": self.measure_error}
        return self.result.to_dict() | {"measure_time_s": self.measure_time_s}


@dataclass(frozen=True)
class KeptWeights:
    """Where a finished run's selected weights were kept (`paramsplit.study.artifacts`): the
    file, its size and the sha256 that loading checks; or why they could not be kept."""

    weights_path: str | None = None
    weights_bytes: int | None = None
    weights_sha256: str | None = None
    weights_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: value for name, value in _fields_of(self).items() if value is not None}


@dataclass(frozen=True)
class TrainingLoad:
    """How many workers shared the machine while a run trained, and whether its latency
    after training was taken beside them (None where no latency was measured)."""

    concurrent_workers: int
    latency_under_load: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: value for name, value in _fields_of(self).items() if value is not None}


@dataclass(frozen=True)
class RunResult:
    """A finished run, as `Store.finish` records it.

    `to_dict` is flat, the store's `metrics` JSON: the training summary's keys, then the kept
    weights', then the measurement's that the summary lacks (the summary's `executor`,
    `device` and `flops_per_image` win; so do the kept file's `weights_bytes`), then the load.
    """

    train: TrainSummary
    weights: KeptWeights | None = None
    measured: MeasuredRun | None = None
    load: TrainingLoad | None = None

    @property
    def latency_measured(self) -> bool:
        return self.measured is not None and self.measured.result is not None

    def to_dict(self) -> dict[str, Any]:
        values = self.train.to_dict()
        if self.weights is not None:
            values |= self.weights.to_dict()
        if self.measured is not None:
            measured = self.measured.to_dict()
            values |= {key: value for key, value in measured.items() if key not in values}
        if self.load is not None:
            values |= self.load.to_dict()
        return values


def field_names(*records: type[Any]) -> frozenset[str]:
    return frozenset(f.name for record in records for f in fields(record))


RUN_SPEC_FIELDS = field_names(RunSpec)
EPOCH_FIELDS = field_names(EpochSummary)
LOAD_FIELDS = field_names(TrainingLoad)
WEIGHTS_FIELDS = field_names(KeptWeights)
# Every key of a run's result (`RunResult.to_dict`).
RESULT_FIELDS = field_names(TrainSummary, MeasureResult, KeptWeights, TrainingLoad) | (
    field_names(MeasuredRun) - {"result"}
)


def check_named(names: Iterable[str], allowed: frozenset[str], what: str) -> None:
    """Raise if one of `names` (keys spelled elsewhere, e.g. columns) is not among the fields
    `allowed`: a record's field was renamed, and so must they be."""
    unknown = sorted(set(names) - allowed)
    if unknown:
        raise AssertionError(
            f"{what} name(s) {', '.join(unknown)}, no field of the run records "
            "(paramsplit.records): rename them with the field"
        )
