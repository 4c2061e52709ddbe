"""Training one design: the epoch loop, executor choice by measurement, metrics per epoch.

Returns records and prints nothing; progress goes through an optional callback.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from paramsplit.accounting import count_params, profile_arch
from paramsplit.data import DatasetTensors
from paramsplit.data.loader import eval_batches, member_batches
from paramsplit.specs import DesignSpec, InputSpec, TrainConfig
from paramsplit.train.checkpoint import (
    load_checkpoint,
    metrics_from_dict,
    record_to_dict,
    save_checkpoint,
)
from paramsplit.train.executors import EXECUTORS, Executor, make_executor
from paramsplit.train.metrics import EnsembleMetrics, ensemble_metrics

EVAL_BATCH = 1024
AUTO_WARMUP_STEPS = 2
AUTO_TIMED_STEPS = 5  # per executor, interleaved; the median decides


@dataclass(frozen=True)
class MemberSeeds:
    """Independent random streams of one member: its initial weights, data order, augmentation."""

    init: int
    data_order: int
    augment: int


def member_seeds(seed: int, num_members: int) -> list[MemberSeeds]:
    """k members' seeds from a run's seed; member i's streams do not depend on k."""
    seeds = []
    for i in range(num_members):
        init, order, augment = np.random.SeedSequence([seed, i]).generate_state(3)
        seeds.append(MemberSeeds(int(init), int(order), int(augment)))
    return seeds


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
    executor_step_ms: dict[str, float]
    status: str  # "done" or "diverged"
    reason: str | None
    epochs: list[EpochRecord]
    best_epoch: int | None  # by validation accuracy, never by test
    test: EnsembleMetrics | None  # of the weights from `best_epoch`
    final_test: EnsembleMetrics | None  # of the weights after the last epoch
    train_time_s: float
    device: str
    member_states: list[dict[str, Tensor]] = field(default_factory=list, repr=False)

    def to_dict(self, target_accuracy: float | None = None) -> dict[str, Any]:
        """Everything about the run as JSON-ready data; units in every key."""
        member_params = count_params(self.design.member, self.input_spec)
        compute_s = sum(r.compute_time_s for r in self.epochs)
        data_s = sum(r.data_time_s for r in self.epochs)
        test, final = self.test, self.final_test
        return {
            "design": self.design.name,
            "design_class": self.design.design_class.value,
            "num_members": self.design.num_members,
            "family": self.design.member.family,
            "member": self.design.member.name,
            "member_params": member_params,
            "total_params": self.design.num_members * member_params,
            "flops_per_image": self.design.num_members
            * profile_arch(self.design.member, self.input_spec).flops_per_image,
            "dataset": self.dataset,
            "seed": self.seed,
            "status": self.status,
            "reason": self.reason,
            "executor": self.executor,
            "executor_step_ms": self.executor_step_ms,
            "device": self.device,
            "torch_version": torch.__version__,
            "num_threads": torch.get_num_threads(),
            "config": dataclasses.asdict(self.config),
            "epochs_trained": len(self.epochs),
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.epochs[self.best_epoch - 1].val.accuracy
            if self.best_epoch
            else None,
            "test_accuracy": test.accuracy if test else None,
            "test_logit_accuracy": test.logit_accuracy if test else None,
            "test_vote_accuracy": test.vote_accuracy if test else None,
            "member_test_accuracy": list(test.member_accuracy) if test else None,
            "test_nll": test.nll if test else None,
            "test_ece": test.ece if test else None,
            "final_test_accuracy": final.accuracy if final else None,
            "train_time_s": self.train_time_s,
            "compute_time_s": compute_s,
            "data_time_s": data_s,
            "epoch_time_s": statistics.median(r.epoch_time_s for r in self.epochs)
            if self.epochs
            else None,
            "train_images_per_s": statistics.median(r.train_images_per_s for r in self.epochs)
            if self.epochs
            else None,
            "target_accuracy": target_accuracy,
            "time_to_target_s": self.time_to_accuracy_s(target_accuracy)
            if target_accuracy is not None
            else None,
            "curve": [
                {
                    "epoch": r.epoch,
                    "lr": r.lr,
                    "train_loss": r.train_loss,
                    "val_accuracy": r.val.accuracy,
                    "val_nll": r.val.nll,
                    "test_accuracy": r.test.accuracy if r.test else None,
                    "epoch_time_s": r.epoch_time_s,
                    "elapsed_train_s": r.elapsed_train_s,
                }
                for r in self.epochs
            ],
        }

    def time_to_accuracy_s(self, target: float) -> float | None:
        """Training time until validation accuracy first reached `target` (a fraction)."""
        for record in self.epochs:
            if record.val.accuracy >= target:
                return record.elapsed_train_s
        return None


ProgressCallback = Callable[[str, int, int, dict[str, float]], None]


def _record_from_dict(data: dict[str, Any]) -> EpochRecord:
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


def _selection_key(metrics: EnsembleMetrics) -> tuple[float, float]:
    return (metrics.accuracy, -metrics.nll)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(
    executor: Executor, images: Tensor, labels: Tensor, dataset: DatasetTensors
) -> EnsembleMetrics:
    """Metrics of every member and the ensemble on a split, in eval mode."""
    executor.set_training(False)
    logits = [
        executor.predict(dataset.normalize(images[batch]))
        for batch in eval_batches(len(images), EVAL_BATCH)
    ]
    executor.set_training(True)
    return ensemble_metrics(torch.cat(logits), labels)


def _generators(seeds: Sequence[int], device: torch.device) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(s) for s in seeds]


def _batch(
    dataset: DatasetTensors, indices: Tensor, augment_generators: Sequence[torch.Generator]
) -> tuple[Tensor, Tensor]:
    """Member batches, augmented and normalised.

    Shape: indices [k, B] -> images [k, B, C, H, W], labels [k, B].
    """
    images = dataset.augment_members(dataset.train_images[indices], augment_generators)
    return dataset.normalize(images), dataset.train_labels[indices]


def restore_executor(result: TrainResult, device: torch.device | str | None = None) -> Executor:
    """The executor of a finished run, holding its final weights (e.g. to measure it)."""
    executor = make_executor(
        result.executor,
        result.design.member,
        result.input_spec,
        [s.init for s in member_seeds(result.seed, result.design.num_members)],
        result.config,
        torch.device(device if device is not None else result.device),
    )
    executor.load_member_states(result.member_states)
    return executor


def choose_executor(
    design: DesignSpec,
    dataset: DatasetTensors,
    config: TrainConfig,
    device: torch.device,
    candidates: Sequence[str] = EXECUTORS,
) -> tuple[str, dict[str, float]]:
    """Time a few training steps of each executor on this hardware and batch; pick the fastest.

    Returns the name and each candidate's median step time in ms. A single network has
    nothing to choose: the loop is one network.
    """
    if design.num_members == 1:
        return "loop", {}
    seeds = member_seeds(0, design.num_members)
    generator = torch.Generator(device=device).manual_seed(0)
    batch_size = min(config.batch_size, len(dataset.train_images))
    indices = torch.randint(
        len(dataset.train_images),
        (design.num_members, batch_size),
        generator=generator,
        device=device,
    )
    images, labels = _batch(dataset, indices, _generators([s.augment for s in seeds], device))
    executors = {
        name: make_executor(
            name, design.member, dataset.input_spec(), [s.init for s in seeds], config, device
        )
        for name in candidates
    }
    for executor in executors.values():
        for _ in range(AUTO_WARMUP_STEPS):  # allocations, kernel selection
            executor.train_step(images, labels)
    # Round-robin, one step of each executor in turn: drift in the host's speed (up to 1.9×
    # within an hour here) then hits every candidate alike.
    step_ms: dict[str, list[float]] = {name: [] for name in executors}
    for _ in range(AUTO_TIMED_STEPS):
        for name, executor in executors.items():
            _sync(device)
            began = time.perf_counter()
            executor.train_step(images, labels)
            _sync(device)
            step_ms[name].append(1000 * (time.perf_counter() - began))
    timings = {name: statistics.median(times) for name, times in step_ms.items()}
    return min(timings, key=timings.__getitem__), timings


def train_design(
    design: DesignSpec,
    dataset: DatasetTensors,
    config: TrainConfig,
    seed: int,
    *,
    executor: str = "auto",
    device: torch.device | str | None = None,
    progress: ProgressCallback | None = None,
    checkpoint: Path | None = None,
) -> TrainResult:
    """Train every member of `design` on `dataset` under `config`; metrics every epoch.

    With `checkpoint`, the run's whole state is saved there after every epoch, and a run
    that finds one carries on from it: the result equals an uninterrupted run's.
    """
    device = torch.device(device) if device is not None else dataset.device
    dataset = dataset.to(device) if dataset.device != device else dataset
    saved = load_checkpoint(checkpoint) if checkpoint is not None else None
    executor_step_ms: dict[str, float] = {}
    if saved is not None:
        executor, executor_step_ms = saved["executor"], saved["executor_step_ms"]
    elif executor == "auto":
        executor, executor_step_ms = choose_executor(design, dataset, config, device)
    seeds = member_seeds(seed, design.num_members)
    runner = make_executor(
        executor, design.member, dataset.input_spec(), [s.init for s in seeds], config, device
    )
    order_generators = _generators([s.data_order for s in seeds], device)
    augment_generators = _generators([s.augment for s in seeds], device)
    num_train = len(dataset.train_images)
    num_steps = -(-num_train // config.batch_size)

    records: list[EpochRecord] = []
    best_epoch: int | None = None
    best_states: list[dict[str, Tensor]] = []
    elapsed_train_s = 0.0
    if saved is not None:
        runner.load_member_states(saved["member_states"])
        runner.load_training_state(saved["training_state"])
        for generator, state in zip(
            order_generators + augment_generators, saved["generators"], strict=True
        ):
            generator.set_state(state)
        records = [_record_from_dict(r) for r in saved["records"]]
        best_epoch, best_states = saved["best_epoch"], saved["best_states"]
        elapsed_train_s = saved["elapsed_train_s"]
    status, reason = "done", None
    runner.set_training(True)
    for epoch in range(len(records) + 1, config.epochs + 1):
        lr = runner.lr
        epoch_began = time.perf_counter()
        data_s = compute_s = 0.0
        loss_sum = torch.zeros(design.num_members, device=device)
        for step, indices in enumerate(
            member_batches(num_train, config.batch_size, order_generators, device=device), start=1
        ):
            began = time.perf_counter()
            images, labels = _batch(dataset, indices, augment_generators)
            _sync(device)
            data_done = time.perf_counter()
            losses = runner.train_step(images, labels)
            loss_sum += losses * labels.shape[1]
            _sync(device)
            compute_s += time.perf_counter() - data_done
            data_s += data_done - began
            if progress is not None:
                progress("step", step, num_steps, {"epoch": epoch})
        runner.end_epoch()
        member_loss = (loss_sum / num_train).tolist()
        train_s = time.perf_counter() - epoch_began
        elapsed_train_s += train_s
        if not all(np.isfinite(member_loss)):
            status, reason = "diverged", f"non-finite training loss in epoch {epoch}"
            break
        eval_began = time.perf_counter()
        val = evaluate(runner, dataset.val_images, dataset.val_labels, dataset)
        test = (
            evaluate(runner, dataset.test_images, dataset.test_labels, dataset)
            if config.test_every_epoch
            else None
        )
        eval_s = time.perf_counter() - eval_began
        if not np.isfinite(val.nll):  # the last step blew the weights up after its loss
            status, reason = "diverged", f"non-finite validation predictions in epoch {epoch}"
            break
        record = EpochRecord(
            epoch=epoch,
            lr=lr,
            train_loss=float(np.mean(member_loss)),
            member_train_loss=tuple(member_loss),
            val=val,
            test=test,
            epoch_time_s=train_s + eval_s,
            compute_time_s=compute_s,
            data_time_s=data_s,
            eval_time_s=eval_s,
            elapsed_train_s=elapsed_train_s,
            train_images_per_s=design.num_members * num_train / max(train_s, 1e-9),
        )
        records.append(record)
        # Validation accuracy decides; on a small validation set it ties often, and the
        # lower validation NLL breaks the tie (the better-fitted weights of the two).
        if best_epoch is None or _selection_key(val) > _selection_key(records[best_epoch - 1].val):
            best_epoch, best_states = epoch, runner.member_states()
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                {
                    "executor": executor,
                    "executor_step_ms": executor_step_ms,
                    "member_states": runner.member_states(),
                    "training_state": runner.training_state(),
                    "generators": [g.get_state() for g in order_generators + augment_generators],
                    "records": [record_to_dict(r) for r in records],
                    "best_epoch": best_epoch,
                    "best_states": best_states,
                    "elapsed_train_s": elapsed_train_s,
                },
            )
        if progress is not None:
            progress(
                "epoch",
                epoch,
                config.epochs,
                {
                    "loss": record.train_loss,
                    "val_accuracy": val.accuracy,
                    "images_per_s": record.train_images_per_s,
                },
            )

    final_states = runner.member_states()
    final_test = best_test = None
    if records:
        final_test = evaluate(runner, dataset.test_images, dataset.test_labels, dataset)
        best_test = final_test
        if best_epoch != records[-1].epoch:
            runner.load_member_states(best_states)
            best_test = evaluate(runner, dataset.test_images, dataset.test_labels, dataset)
    return TrainResult(
        design=design,
        dataset=dataset.name,
        input_spec=dataset.input_spec(),
        seed=seed,
        config=config,
        executor=executor,
        executor_step_ms=executor_step_ms,
        status=status,
        reason=reason,
        epochs=records,
        best_epoch=best_epoch,
        test=best_test,
        final_test=final_test,
        train_time_s=elapsed_train_s,
        device=str(device),
        member_states=final_states,
    )
