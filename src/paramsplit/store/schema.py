"""The tables of the results database, as SQLAlchemy Core metadata.

Every measured quantity has its own column with its unit in the name, so a plain SQL query
answers most questions; the `metrics` JSON column keeps the whole result dict (member
accuracies, executor timings, ...) for everything else. Times of day are UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

from paramsplit.records import (
    EPOCH_FIELDS,
    RESULT_FIELDS,
    RUN_SPEC_FIELDS,
    WEIGHTS_FIELDS,
    check_named,
)

# Bump with every change to the tables below, and add a step to `migrations.STEPS`.
# 2: a study links a run once per budget it asked for (budget_params in the primary key).
# 3: `measurements`, inference measured side by side after training (`paramsplit measure`).
# 4: `runs` gets `WEIGHTS_COLUMNS`, where each run's kept weights are and their hash.
# 5: memory is the exact count of live tensors (`memory_method`), fused and loop; the
#    resident-set figures of versions 1-4 leave the columns (they stay in `metrics`).
# 6: a run may be `stopped` (an adaptive study's early verdict: curve kept, reason given).
SCHEMA_VERSION = 6

STATUSES = ("pending", "running", "done", "failed", "stopped")


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC time stored naive (SQLite has no time zones) and read back time-zone aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _json() -> JSON:
    return JSON(none_as_null=True)


metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

studies = Table(
    "studies",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("definition", _json(), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# What a run is: the columns `run_id_for` hashes, plus descriptive ones from the planner.
DESIGN_COLUMNS: dict[str, Any] = {
    "family": String(50),
    "design_class": String(10),
    "num_members": Integer,
    "member": String(100),
    "design": String(120),
    "member_depth": Integer,
    "member_width": Integer,
    "member_params": BigInteger,
    "total_params": BigInteger,
    "budget_params": BigInteger,
    "ratio": Double,
    "dataset": String(100),
    "seed": Integer,
}

# Filled by `Store.finish` from the result's keys of the same name (`records.RunResult`).
METRIC_COLUMNS: dict[str, Any] = {
    "test_accuracy": Double,
    "test_logit_accuracy": Double,
    "test_vote_accuracy": Double,
    "test_nll": Double,
    "test_ece": Double,
    "final_test_accuracy": Double,
    "best_epoch": Integer,
    "best_val_accuracy": Double,
    "epochs_trained": Integer,
    "train_time_s": Double,
    "epoch_time_s": Double,
    "train_images_per_s": Double,
    "time_to_target_s": Double,
    "latency_ms_batch1": Double,
    "throughput_images_per_s": Double,
    # Peak bytes of live tensors, weights included (`paramsplit.measure.memory`): `peak_*`
    # for all k members at once (fused; a single network's own), `loop_*` for one member at
    # a time. `memory_method` says how they were taken ("live_tensors").
    "peak_train_memory_bytes": BigInteger,
    "peak_inference_memory_bytes": BigInteger,
    "loop_train_memory_bytes": BigInteger,
    "loop_inference_memory_bytes": BigInteger,
    "memory_method": String(50),
    "flops_per_image": BigInteger,
    "executor": String(50),
}

# Filled by `Store.finish` too: the file of a run's kept weights (`paramsplit.study.artifacts`), its
# size, and the sha256 that loading checks it against. NULL where a run kept none.
WEIGHTS_COLUMNS: dict[str, Any] = {
    "weights_path": Text,
    "weights_bytes": BigInteger,
    "weights_sha256": String(64),
}

# The columns a run's records fill name their fields (`paramsplit.records`): a field renamed
# there must be renamed here, and in the database (a new SCHEMA_VERSION and migration).
# (`design` is the name of `RunSpec.design`, which the store derives.)
check_named(set(DESIGN_COLUMNS) - {"design"}, RUN_SPEC_FIELDS, "schema.DESIGN_COLUMNS")
check_named(METRIC_COLUMNS, RESULT_FIELDS, "schema.METRIC_COLUMNS")
check_named(WEIGHTS_COLUMNS, WEIGHTS_FIELDS, "schema.WEIGHTS_COLUMNS")

ENVIRONMENT_COLUMNS: dict[str, Any] = {
    "device": String(200),
    "torch_version": String(50),
    "package_version": String(50),
    "host": String(200),
}

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    *(Column(name, kind, nullable=True) for name, kind in DESIGN_COLUMNS.items()),
    Column("config", _json(), nullable=False),
    Column("spec", _json(), nullable=False),
    Column("status", String(10), nullable=False, default="pending"),
    Column("reason", Text),
    Column("worker", String(250)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    Column("claimed_at", UtcDateTime),
    Column("heartbeat_at", UtcDateTime),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    *(Column(name, kind) for name, kind in METRIC_COLUMNS.items()),
    *(Column(name, kind) for name, kind in WEIGHTS_COLUMNS.items()),
    Column("metrics", _json()),
    *(Column(name, kind) for name, kind in ENVIRONMENT_COLUMNS.items()),
    Index("ix_runs_status", "status"),
)

# A link's budget where the study gave none and the run's size is unknown too. No real
# budget is 0 parameters, and a NOT NULL key column keeps one link per (study, run, budget)
# on every database (NULLs never collide in a unique key).
NO_BUDGET = 0

# Many-to-many: two studies that ask for the same run share one row of `runs`. The budget is
# the study's question, not part of the run's identity (two budgets can plan the same
# design: deq k=4 is `4x resnet-20-1` at 5k and at 10k), so a study links a run once per
# budget it asked for, each link with its ratio against that budget. The `budget_params` and
# `ratio` of `runs` are those of the first study that added the run.
study_runs = Table(
    "study_runs",
    metadata,
    Column("study", ForeignKey("studies.name", ondelete="CASCADE"), primary_key=True),
    Column("run_id", ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    # Asked without a budget: the run's own size (as the analysis reads it), or NO_BUDGET.
    Column("budget_params", BigInteger, primary_key=True, autoincrement=False),
    Column("position", Integer, nullable=False),  # order in which the study asked for it
    Column("ratio", Double),
    Index("ix_study_runs_run_id", "run_id"),
)

EPOCH_COLUMNS: dict[str, Any] = {
    "lr": Double,
    "train_loss": Double,
    "val_accuracy": Double,
    "val_nll": Double,
    "test_accuracy": Double,
    "epoch_time_s": Double,
    "elapsed_train_s": Double,
}

check_named(EPOCH_COLUMNS, EPOCH_FIELDS, "schema.EPOCH_COLUMNS")

epochs = Table(
    "epochs",
    metadata,
    Column("run_id", ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("epoch", Integer, primary_key=True),
    *(Column(name, kind) for name, kind in EPOCH_COLUMNS.items()),
    Column("record", _json()),  # the whole epoch record, e.g. per-member losses
)

# One row per design, budget, batch size and inference executor measured by one session of
# `paramsplit measure`: every design of a budget (the single network and its ensembles) timed
# in alternating rounds in one process, so each ratio to the single network is side by side.
# `run_id` is the run whose design was measured (its lowest seed: latency does not depend on
# the seed); `single_run_id` the single network it was paired with. Quartiles are over rounds.
MEASUREMENT_COLUMNS: dict[str, Any] = {
    "study": String(200),
    "family": String(50),
    "dataset": String(100),
    "input": String(50),
    "design_class": String(10),
    "num_members": Integer,
    "design": String(120),
    "member": String(100),
    "chosen": Boolean,  # the executor this design deploys with at this batch: the fastest
    "latency_ms": Double,
    "latency_q1_ms": Double,
    "latency_q3_ms": Double,
    "throughput_images_per_s": Double,
    "ratio_to_single": Double,  # median over rounds of (this / the single network, same round)
    "ratio_q1": Double,
    "ratio_q3": Double,
    "single_design": String(120),
    "single_run_id": String(32),
    "rounds": Integer,
    "weights": String(20),  # 'trained' (from a checkpoint) or 'fresh' (built anew)
    "precision": String(10),
}

# What one session shares: where, how and when it measured.
MEASUREMENT_SESSION_COLUMNS: dict[str, Any] = {
    "device": String(200),
    "num_threads": Integer,
    "torch_version": String(50),
    "package_version": String(50),
    "host": String(200),
    "measured_at": UtcDateTime,
}

measurements = Table(
    "measurements",
    metadata,
    Column("session_id", String(32), primary_key=True),
    Column("run_id", ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("budget_params", BigInteger, primary_key=True, autoincrement=False),
    Column("batch_size", Integer, primary_key=True, autoincrement=False),
    Column("executor", String(50), primary_key=True),
    *(Column(name, kind) for name, kind in MEASUREMENT_COLUMNS.items()),
    *(Column(name, kind) for name, kind in MEASUREMENT_SESSION_COLUMNS.items()),
    Index("ix_measurements_study", "study"),
)
