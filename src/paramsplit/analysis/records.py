"""Finished and failed runs as the analysis reads them: flat, typed, independent of the store.

The analysis works on `RunRecord`s, so it can be tested on hand-written records and fed from
any source; `records_from_store` builds them from the results database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from paramsplit.errors import UsageError
from paramsplit.records import (
    EPOCH_FIELDS,
    LOAD_FIELDS,
    RESULT_FIELDS,
    RUN_SPEC_FIELDS,
    check_named,
)
from paramsplit.specs import design_name

if TYPE_CHECKING:
    from paramsplit.store import Store

# How an ensemble's members' outputs become one prediction, and the column holding the test
# accuracy of each: averaged probabilities (the default), averaged logits (the study's
# released code), or the members' majority vote.
ACCURACY_COLUMNS = {
    "prob": "test_accuracy",
    "logit": "test_logit_accuracy",
    "vote": "test_vote_accuracy",
}
DEFAULT_ACCURACY = "prob"
ACCURACY_NAMES = {
    "prob": "members' probabilities averaged",
    "logit": "members' logits averaged",
    "vote": "members' majority vote",
}


def check_accuracy(accuracy: str) -> str:
    """`accuracy` if it names a headline accuracy, else a one-line error."""
    if accuracy not in ACCURACY_COLUMNS:
        raise UsageError(
            f"--accuracy must be one of {', '.join(ACCURACY_COLUMNS)}, got '{accuracy}'"
        )
    return accuracy


@dataclass(frozen=True)
class CurvePoint:
    """One epoch of a run. Accuracies are fractions; `elapsed_train_s` sums training time."""

    epoch: int
    val_accuracy: float | None
    test_accuracy: float | None = None
    elapsed_train_s: float | None = None


@dataclass(frozen=True)
class RunRecord:
    """One run: a design trained with one seed on one dataset, and what it measured.

    `budget_params` is the budget the study asked for; `ratio` is total/budget. Metrics are
    None where a run did not measure them (or failed: see `status` and `reason`).
    """

    run_id: str
    family: str
    dataset: str
    design_class: str  # single, deq or weq
    num_members: int
    member: str
    budget_params: int
    total_params: int
    seed: int
    status: str = "done"
    reason: str | None = None
    ratio: float | None = None
    test_accuracy: float | None = None
    test_logit_accuracy: float | None = None
    test_vote_accuracy: float | None = None
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    train_time_s: float | None = None
    epoch_time_s: float | None = None
    latency_ms_batch1: float | None = None
    throughput_images_per_s: float | None = None
    peak_train_memory_bytes: int | None = None
    peak_inference_memory_bytes: int | None = None
    loop_train_memory_bytes: int | None = None
    flops_per_image: int | None = None
    concurrent_workers: int | None = None  # workers sharing the machine while it trained
    latency_under_load: bool | None = None  # its post-training latency taken beside them
    curve: tuple[CurvePoint, ...] = field(default=(), repr=False)

    @property
    def design(self) -> str:
        """'resnet-20-6' for a single network, '4x resnet-20-3' for an ensemble."""
        return design_name(self.num_members, self.member)

    @property
    def done(self) -> bool:
        return self.status == "done" and self.test_accuracy is not None

    def accuracy(self, kind: str = DEFAULT_ACCURACY) -> float | None:
        """Test accuracy with members combined by `kind` (prob, logit or vote). One network
        predicts the same all three ways, so a single network's runs stored without the
        logit and vote columns use their test accuracy."""
        value: float | None = getattr(self, ACCURACY_COLUMNS[kind])
        if value is None and self.num_members == 1:
            return self.test_accuracy
        return value


RECORD_FIELDS = tuple(f.name for f in fields(RunRecord) if f.name != "curve")
# A record reads a run's row by the names of its records' fields (`paramsplit.records`):
# the spec's and result's columns, and the load, kept in the metrics JSON only.
check_named(
    set(RECORD_FIELDS) - {"run_id", "status", "reason"},
    RUN_SPEC_FIELDS | RESULT_FIELDS,
    "analysis.RunRecord's fields",
)
check_named({f.name for f in fields(CurvePoint)}, EPOCH_FIELDS, "analysis.CurvePoint's fields")
check_named(ACCURACY_COLUMNS.values(), frozenset(RECORD_FIELDS), "analysis.ACCURACY_COLUMNS")


def record_from_row(row: Mapping[str, Any], curve: Iterable[Mapping[str, Any]] = ()) -> RunRecord:
    """A record from a row of the store's `runs` table (and its `epochs` rows)."""
    values: dict[str, Any] = {name: row.get(name) for name in RECORD_FIELDS}
    metrics = row.get("metrics") or {}
    values |= {name: metrics.get(name) for name in sorted(LOAD_FIELDS) if name not in row}
    if values["budget_params"] is None:  # a run added without a budget: its own size
        values["budget_params"] = values["total_params"]
    points = tuple(
        CurvePoint(
            epoch=int(point["epoch"]),
            val_accuracy=point.get("val_accuracy"),
            test_accuracy=point.get("test_accuracy"),
            elapsed_train_s=point.get("elapsed_train_s"),
        )
        for point in curve
    )
    return RunRecord(**values, curve=points)


def records_from_store(store: Store, study: str) -> list[RunRecord]:
    """Every run of `study` (finished, failed and not yet run), with its curve."""
    return [
        record_from_row(row, store.epochs(row["run_id"]) if row["status"] == "done" else ())
        for row in store.runs(study)
    ]
