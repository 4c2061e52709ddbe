"""Training designs: executors for k members, the epoch loop, metrics."""

from paramsplit.train.executors import EXECUTORS, Executor, lr_factor, make_executor, member_losses
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
    "MemberSeeds",
    "TrainResult",
    "choose_executor",
    "ensemble_metrics",
    "evaluate",
    "expected_calibration_error",
    "lr_factor",
    "make_executor",
    "member_losses",
    "member_seeds",
    "restore_executor",
    "train_design",
]
