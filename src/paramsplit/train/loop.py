"""Training one design: the epoch loop, executor choice by measurement, metrics per epoch.

Returns records and prints nothing; progress goes through an optional callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

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
from paramsplit.train.records import EpochRecord, TrainResult, record_from_dict, record_to_dict

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


def _selection_key(metrics: EnsembleMetrics) -> tuple[float, float]:
    return (metrics.accuracy, -metrics.nll)


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
    if saved is not None:
        choice = ExecutorChoice(
            saved["executor"],
            saved["executor_step_ms"],
            saved.get("executor_rounds_ms", {}),
            saved.get("executor_reason", "from the checkpoint"),
        )
    elif executor == "auto":
        choice = choose_executor(design, dataset, config, device)
    else:
        choice = ExecutorChoice(executor, reason="set by the caller")
    executor = choice.name
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
        records = [record_from_dict(r) for r in saved["records"]]
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
                    "executor_step_ms": choice.step_ms,
                    "executor_rounds_ms": choice.rounds_ms,
                    "executor_reason": choice.reason,
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
        executor_step_ms=choice.step_ms,
        executor_rounds_ms=choice.rounds_ms,
        executor_reason=choice.reason,
        status=status,
        reason=reason,
        epochs=records,
        best_epoch=best_epoch,
        test=best_test,
        final_test=final_test,
        train_time_s=elapsed_train_s,
        device=str(device),
        member_states=final_states,
        selected_member_states=best_states,
    )
