"""Training designs: executors for k members, the epoch loop, metrics."""

from paramsplit.train.choice import ExecutorChoice, decide_executor, time_candidates
from paramsplit.train.executors import (
    EXECUTORS,
    Executor,
    check_executor_name,
    lr_factor,
    make_executor,
    member_losses,
    resolve_device,
)
from paramsplit.train.loop import (
    MemberSeeds,
    choose_executor,
    evaluate,
    member_seeds,
    restore_executor,
    train_design,
)
from paramsplit.train.metrics import EnsembleMetrics, ensemble_metrics, expected_calibration_error
from paramsplit.train.records import EpochRecord, TrainResult

__all__ = [
    "EXECUTORS",
    "EnsembleMetrics",
    "EpochRecord",
    "Executor",
    "ExecutorChoice",
    "MemberSeeds",
    "TrainResult",
    "check_executor_name",
    "choose_executor",
    "decide_executor",
    "ensemble_metrics",
    "evaluate",
    "expected_calibration_error",
    "lr_factor",
    "make_executor",
    "member_losses",
    "member_seeds",
    "resolve_device",
    "restore_executor",
    "time_candidates",
    "train_design",
]
