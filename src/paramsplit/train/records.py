"""What a training run leaves behind: one record per epoch, and the run's result."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from paramsplit.planner.accounting import count_params, design_flops_per_image
from paramsplit.records import EpochSummary, TrainSummary
from paramsplit.specs import DesignSpec, InputSpec, TrainConfig, time_to_accuracy_s
from paramsplit.train.metrics import EnsembleMetrics


@dataclass(frozen=True)
class EpochRecord:
    """One epoch. Times in seconds; `elapsed_train_s` sums training time up to this epoch."""

    epoch: int
    lr: float
    train_loss: float
    member_train_loss: tuple[float, ...]
    val: EnsembleMetrics
    test: EnsembleMetrics | None
    epoch_time_s: float
    compute_time_s: float
    data_time_s: float
    eval_time_s: float
    elapsed_train_s: float
    train_images_per_s: float


@dataclass
class TrainResult:
    """A finished (or stopped) training run of one design with one seed."""

    design: DesignSpec
    dataset: str
    input_spec: InputSpec
    seed: int
    config: TrainConfig
    executor: str
    executor_step_ms: dict[str, float]  # auto's figure per candidate: its fastest round
    status: str  # "done" or "diverged"
    reason: str | None
    epochs: list[EpochRecord]
    best_epoch: int | None  # by validation accuracy, never by test
    test: EnsembleMetrics | None  # of the weights from `best_epoch`
    final_test: EnsembleMetrics | None  # of the weights after the last epoch
    train_time_s: float
    device: str
    member_states: list[dict[str, Tensor]] = field(default_factory=list, repr=False)  # final
    # The weights of `best_epoch`, which `test` was measured with (what a run keeps).
    selected_member_states: list[dict[str, Tensor]] = field(default_factory=list, repr=False)
    executor_rounds_ms: dict[str, list[float]] = field(default_factory=dict)  # auto's timings
    executor_reason: str = ""  # why this executor: auto's decision, or who set it

    def summary(self, target_accuracy: float | None = None) -> TrainSummary:
        """The run as data (no tensors), with the time to `target_accuracy` if given."""
        member_params = count_params(self.design.member, self.input_spec)
        test, final = self.test, self.final_test
        return TrainSummary(
            design=self.design.name,
            design_class=self.design.design_class,
            num_members=self.design.num_members,
            family=self.design.member.family,
            member=self.design.member.name,
            member_params=member_params,
            total_params=self.design.num_members * member_params,
            flops_per_image=design_flops_per_image(
                self.design.num_members, self.design.member, self.input_spec
            ),
            dataset=self.dataset,
            seed=self.seed,
            status=self.status,
            reason=self.reason,
            executor=self.executor,
            executor_step_ms=self.executor_step_ms,
            executor_rounds_ms=self.executor_rounds_ms,
            executor_reason=self.executor_reason,
            device=self.device,
            torch_version=torch.__version__,
            num_threads=torch.get_num_threads(),
            config=self.config,
            epochs_trained=len(self.epochs),
            best_epoch=self.best_epoch,
            best_val_accuracy=self.epochs[self.best_epoch - 1].val.accuracy
            if self.best_epoch
            else None,
            test_accuracy=test.accuracy if test else None,
            test_logit_accuracy=test.logit_accuracy if test else None,
            test_vote_accuracy=test.vote_accuracy if test else None,
            member_test_accuracy=tuple(test.member_accuracy) if test else None,
            test_nll=test.nll if test else None,
            test_ece=test.ece if test else None,
            final_test_accuracy=final.accuracy if final else None,
            train_time_s=self.train_time_s,
            compute_time_s=sum(r.compute_time_s for r in self.epochs),
            data_time_s=sum(r.data_time_s for r in self.epochs),
            epoch_time_s=statistics.median(r.epoch_time_s for r in self.epochs)
            if self.epochs
            else None,
            train_images_per_s=statistics.median(r.train_images_per_s for r in self.epochs)
            if self.epochs
            else None,
            target_accuracy=target_accuracy,
            time_to_target_s=self.time_to_accuracy_s(target_accuracy)
            if target_accuracy is not None
            else None,
            curve=tuple(epoch_summary(r) for r in self.epochs),
        )

    def to_dict(self, target_accuracy: float | None = None) -> dict[str, Any]:
        """Everything about the run as JSON-ready data (`summary`'s); units in every key."""
        return self.summary(target_accuracy).to_dict()

    def time_to_accuracy_s(self, target: float) -> float | None:
        """Training time until validation accuracy first reached `target` (a fraction)."""
        return time_to_accuracy_s(
            ((r.val.accuracy, r.elapsed_train_s) for r in self.epochs), target
        )


def epoch_summary(record: EpochRecord) -> EpochSummary:
    """One epoch of the run's curve, as the store keeps it."""
    return EpochSummary(
        epoch=record.epoch,
        lr=record.lr,
        train_loss=record.train_loss,
        val_accuracy=record.val.accuracy,
        val_nll=record.val.nll,
        test_accuracy=record.test.accuracy if record.test else None,
        epoch_time_s=record.epoch_time_s,
        elapsed_train_s=record.elapsed_train_s,
    )


def record_to_dict(record: EpochRecord) -> dict[str, Any]:
    """Plain containers only, as a `weights_only` checkpoint can hold."""
    return dataclasses.asdict(record)


def metrics_from_dict(data: dict[str, Any] | None) -> EnsembleMetrics | None:
    if data is None:
        return None
    return EnsembleMetrics(**{**data, "member_accuracy": tuple(data["member_accuracy"])})


def record_from_dict(data: dict[str, Any]) -> EpochRecord:
    val = metrics_from_dict(data["val"])
    assert val is not None
    return EpochRecord(
        **{
            **data,
            "member_train_loss": tuple(data["member_train_loss"]),
            "val": val,
            "test": metrics_from_dict(data["test"]),
        }
    )
