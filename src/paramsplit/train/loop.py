"""Training one design: the epoch loop, executor choice by measurement, metrics per epoch.

Returns records and prints nothing; progress goes through an optional callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from paramsplit.data import DatasetTensors
from paramsplit.data.loader import eval_batches, member_batches
from paramsplit.specs import DesignSpec, TrainConfig
from paramsplit.train.checkpoint import load_checkpoint, save_checkpoint
from paramsplit.train.choice import WARMUP_STEPS, ExecutorChoice, time_candidates
from paramsplit.train.device import synchronize
from paramsplit.train.executors import EXECUTORS, Executor, make_executor
from paramsplit.train.metrics import EnsembleMetrics, ensemble_metrics
from paramsplit.train.records import EpochRecord, TrainResult
from paramsplit.train.run_state import RunState

# Evaluation keeps no activations for a backward pass, so it takes 8× the default training
# batch for about a training step's memory (resnet-20, 3×32×32, counted by `paramsplit
# describe`: 269 MiB to infer 1024 images, 198 MiB for a training step at 128); a 10,000-image
# split is then 10 calls. Metrics do not depend on it (up to float rounding): in eval mode
# each image's outputs are its own.
EVAL_BATCH = 1024


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


ProgressCallback = Callable[[str, int, int, dict[str, float]], None]


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
) -> ExecutorChoice:
    """Time training steps of each executor on this hardware and batch; pick the fastest.

    Interleaved rounds, each candidate's fastest round, more rounds while they are unsettled
    (see `paramsplit.train.choice`). A single network has nothing to choose: the loop is
    one network.
    """
    if design.num_members == 1:
        return ExecutorChoice("loop", reason="a single network: nothing to choose")
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

    def step(executor: Executor) -> None:
        executor.train_step(images, labels)
        synchronize(device)

    for executor in executors.values():
        for _ in range(WARMUP_STEPS):
            step(executor)
    synchronize(device)
    return time_candidates({name: partial(step, e) for name, e in executors.items()})


def _choice(
    saved: dict[str, Any] | None,
    executor: str,
    design: DesignSpec,
    dataset: DatasetTensors,
    config: TrainConfig,
    device: torch.device,
) -> ExecutorChoice:
    """The checkpoint's executor, else the one asked for, else (`auto`) the fastest here."""
    if saved is not None:
        return ExecutorChoice(
            saved["executor"],
            saved["executor_step_ms"],
            saved.get("executor_rounds_ms", {}),
            saved.get("executor_reason", "from the checkpoint"),
        )
    if executor == "auto":
        return choose_executor(design, dataset, config, device)
    return ExecutorChoice(executor, reason="set by the caller")


def _start(
    choice: ExecutorChoice,
    design: DesignSpec,
    dataset: DatasetTensors,
    config: TrainConfig,
    seed: int,
    device: torch.device,
) -> RunState:
    """A run at its first epoch: members initialised and random streams seeded from `seed`."""
    seeds = member_seeds(seed, design.num_members)
    runner = make_executor(
        choice.name, design.member, dataset.input_spec(), [s.init for s in seeds], config, device
    )
    return RunState(
        choice,
        runner,
        order_generators=_generators([s.data_order for s in seeds], device),
        augment_generators=_generators([s.augment for s in seeds], device),
    )


@dataclass(frozen=True)
class _EpochTraining:
    """One pass over the training set: each member's mean loss, and where the time went."""

    member_loss: list[float]
    train_s: float
    data_s: float
    compute_s: float


def _train_epoch(
    run: RunState,
    dataset: DatasetTensors,
    batch_size: int,
    epoch: int,
    progress: ProgressCallback | None,
) -> _EpochTraining:
    runner, device = run.runner, run.runner.device
    num_train = len(dataset.train_images)
    num_steps = -(-num_train // batch_size)
    epoch_began = time.perf_counter()
    data_s = compute_s = 0.0
    loss_sum = torch.zeros(runner.num_members, device=device)
    batches = member_batches(num_train, batch_size, run.order_generators, device=device)
    for step, indices in enumerate(batches, start=1):
        began = time.perf_counter()
        images, labels = _batch(dataset, indices, run.augment_generators)
        synchronize(device)
        data_done = time.perf_counter()
        losses = runner.train_step(images, labels)
        loss_sum += losses * labels.shape[1]
        synchronize(device)
        compute_s += time.perf_counter() - data_done
        data_s += data_done - began
        if progress is not None:
            progress("step", step, num_steps, {"epoch": epoch})
    runner.end_epoch()
    train_s = time.perf_counter() - epoch_began
    return _EpochTraining((loss_sum / num_train).tolist(), train_s, data_s, compute_s)


def _final_tests(
    run: RunState, dataset: DatasetTensors
) -> tuple[EnsembleMetrics | None, EnsembleMetrics | None]:
    """Test metrics of the selected epoch's weights and of the last epoch's (None without an
    epoch). Leaves the selected weights loaded."""
    if not run.records:
        return None, None
    final_test = evaluate(run.runner, dataset.test_images, dataset.test_labels, dataset)
    if run.best_epoch == run.records[-1].epoch:
        return final_test, final_test
    run.runner.load_member_states(run.best_states)
    best_test = evaluate(run.runner, dataset.test_images, dataset.test_labels, dataset)
    return best_test, final_test


def _epoch(
    run: RunState,
    dataset: DatasetTensors,
    config: TrainConfig,
    epoch: int,
    progress: ProgressCallback | None,
) -> str | None:
    """Train and validate one epoch and keep its record; why the run diverged, or None."""
    lr = run.runner.lr
    trained = _train_epoch(run, dataset, config.batch_size, epoch, progress)
    run.elapsed_train_s += trained.train_s
    if not all(np.isfinite(trained.member_loss)):
        return f"non-finite training loss in epoch {epoch}"
    eval_began = time.perf_counter()
    val = evaluate(run.runner, dataset.val_images, dataset.val_labels, dataset)
    test = (
        evaluate(run.runner, dataset.test_images, dataset.test_labels, dataset)
        if config.test_every_epoch
        else None
    )
    eval_s = time.perf_counter() - eval_began
    if not np.isfinite(val.nll):  # the last step blew the weights up after its loss
        return f"non-finite validation predictions in epoch {epoch}"
    images_per_epoch = run.runner.num_members * len(dataset.train_images)
    run.keep(
        EpochRecord(
            epoch=epoch,
            lr=lr,
            train_loss=float(np.mean(trained.member_loss)),
            member_train_loss=tuple(trained.member_loss),
            val=val,
            test=test,
            epoch_time_s=trained.train_s + eval_s,
            compute_time_s=trained.compute_s,
            data_time_s=trained.data_s,
            eval_time_s=eval_s,
            elapsed_train_s=run.elapsed_train_s,
            train_images_per_s=images_per_epoch / max(trained.train_s, 1e-9),
        )
    )
    return None


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
    choice = _choice(saved, executor, design, dataset, config, device)
    run = _start(choice, design, dataset, config, seed, device)
    if saved is not None:
        run.resume(saved)
    status, reason = "done", None
    run.runner.set_training(True)
    for epoch in range(len(run.records) + 1, config.epochs + 1):
        diverged = _epoch(run, dataset, config, epoch, progress)
        if diverged is not None:
            status, reason = "diverged", diverged
            break
        if checkpoint is not None:
            save_checkpoint(checkpoint, run.checkpoint_state())
        if progress is not None:
            record = run.records[-1]
            progress(
                "epoch",
                epoch,
                config.epochs,
                {
                    "loss": record.train_loss,
                    "val_accuracy": record.val.accuracy,
                    "images_per_s": record.train_images_per_s,
                },
            )

    final_states = run.runner.member_states()
    best_test, final_test = _final_tests(run, dataset)
    return TrainResult(
        design=design,
        dataset=dataset.name,
        input_spec=dataset.input_spec(),
        seed=seed,
        config=config,
        executor=choice.name,
        executor_step_ms=choice.step_ms,
        executor_rounds_ms=choice.rounds_ms,
        executor_reason=choice.reason,
        status=status,
        reason=reason,
        epochs=run.records,
        best_epoch=run.best_epoch,
        test=best_test,
        final_test=final_test,
        train_time_s=run.elapsed_train_s,
        device=str(device),
        member_states=final_states,
        selected_member_states=run.best_states,
    )
