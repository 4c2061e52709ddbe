"""What a training run carries from epoch to epoch, and what its checkpoint keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from paramsplit.train.choice import ExecutorChoice
from paramsplit.train.executors import Executor
from paramsplit.train.metrics import EnsembleMetrics
from paramsplit.train.records import EpochRecord, record_from_dict, record_to_dict


def _selection_key(metrics: EnsembleMetrics) -> tuple[float, float]:
    return (metrics.accuracy, -metrics.nll)


@dataclass
class RunState:
    """What training carries from epoch to epoch, and a checkpoint keeps: the executor with
    its weights, the members' random streams, the epochs so far and the best of them."""

    choice: ExecutorChoice
    runner: Executor
    order_generators: list[torch.Generator]
    augment_generators: list[torch.Generator]
    records: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    best_states: list[dict[str, Tensor]] = field(default_factory=list)
    elapsed_train_s: float = 0.0

    @property
    def generators(self) -> list[torch.Generator]:
        return self.order_generators + self.augment_generators

    def keep(self, record: EpochRecord) -> None:
        """Add an epoch; its weights become the selected ones if it is the best so far.

        Validation accuracy decides; on a small validation set it ties often, and the lower
        validation NLL breaks the tie (the better-fitted weights of the two).
        """
        self.records.append(record)
        best = self.records[self.best_epoch - 1].val if self.best_epoch is not None else None
        if best is None or _selection_key(record.val) > _selection_key(best):
            self.best_epoch, self.best_states = record.epoch, self.runner.member_states()

    def checkpoint_state(self) -> dict[str, Any]:
        """The whole state, as `save_checkpoint` writes it and `resume` reads it back."""
        return {
            "executor": self.choice.name,
            "executor_step_ms": self.choice.step_ms,
            "executor_rounds_ms": self.choice.rounds_ms,
            "executor_reason": self.choice.reason,
            "member_states": self.runner.member_states(),
            "training_state": self.runner.training_state(),
            "generators": [g.get_state() for g in self.generators],
            "records": [record_to_dict(r) for r in self.records],
            "best_epoch": self.best_epoch,
            "best_states": self.best_states,
            "elapsed_train_s": self.elapsed_train_s,
        }

    def resume(self, saved: dict[str, Any]) -> None:
        """Carry on from the state a checkpoint saved (`checkpoint_state`)."""
        self.runner.load_member_states(saved["member_states"])
        self.runner.load_training_state(saved["training_state"])
        for generator, state in zip(self.generators, saved["generators"], strict=True):
            generator.set_state(state)
        self.records = [record_from_dict(r) for r in saved["records"]]
        self.best_epoch, self.best_states = saved["best_epoch"], saved["best_states"]
        self.elapsed_train_s = saved["elapsed_train_s"]
