"""The exact memory of a design: peak bytes of live tensors for one training step and one
inference call, split by category, for the loop (one member at a time) and fused execution
(all k at once).

The counted step is the one training runs: the study's executor (`make_executor`, with its
SGD, momentum buffers and precision) is built, brought to the steady state (every parameter
has a gradient, and the optimizer has stepped once and made its momentum buffers), and one
`train_step` is counted with `paramsplit.measure.live_tensors.LiveTensors`. Inference is one
`predict` call of a fresh executor in eval mode. Nothing is allocated: an fp32 CPU training
step is counted on the `meta` device, anything else on fake tensors of its own device (see
`paramsplit.measure.counting`); tests check both against real tensors. So the figure is the
same on every call, and available for designs far too large for this machine (WRN-28-10 at
batch 128 in about a second).

The figure covers the model's tensors: weights, gradients, optimizer state, the batch,
activations and temporaries. It leaves out what is the same for every design or is not a
tensor: the interpreter, library code, the allocator's caching and rounding beyond CUDA's
512-byte blocks, and kernels' private workspaces (cuDNN, oneDNN). `torch.compile` may need
less: the eager step is counted.

The loop's training figure is derived from one member's count: stepping member i of a loop,
the other k - 1 members hold their weights, gradients, momentum buffers and batch the whole
time, so the peak is one member's peak plus k - 1 times what a member holds between steps
(a test checks it against the loop executor stepped whole: it differs by the finished
members' loss scalars, 4 bytes each). Inference runs the loop executor whole. `vmap` is a way
to train, not to deploy, and is not counted (its `deepcopy` fails on fake tensors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from paramsplit.errors import ConfigError
from paramsplit.measure.counting import (
    EXECUTIONS,
    MemoryCount,
    count_inference,
    count_train_step,
    loop_train_step,
)
from paramsplit.specs import ArchSpec, InputSpec, TrainConfig

MEMORY_METHOD = "live_tensors"


@dataclass(frozen=True)
class DesignMemory:
    """Exact memory of `num_members` networks of `member`, trained and run both ways.

    `train` and `inference` map an execution ('loop': one member at a time; 'fused': all k
    at once) to its count; for one network the two are the same.
    """

    member: str
    num_members: int
    input: str
    num_classes: int
    precision: str
    channels_last: bool
    device: str
    train_batch_size: int
    inference_batch_size: int
    train: dict[str, MemoryCount]
    inference: dict[str, MemoryCount]

    def summary(self) -> dict[str, Any]:
        """Flat keys for `paramsplit describe`: all k at once, then one at a time."""
        summary: dict[str, Any] = {
            "num_members": self.num_members,
            "train_batch_size": self.train_batch_size,
            "inference_batch_size": self.inference_batch_size,
            "memory_method": MEMORY_METHOD,
        }
        for mode, counts in (("train", self.train), ("inference", self.inference)):
            for execution, infix in (("fused", ""), ("loop", "_loop")):
                summary[f"{mode}_memory{infix}_bytes"] = counts[execution].peak_bytes
                summary[f"{mode}_memory{infix}_breakdown"] = dict(counts[execution].breakdown)
        return summary

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": MEMORY_METHOD,
            "num_members": self.num_members,
            "device": self.device,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "train_batch_size": self.train_batch_size,
            "inference_batch_size": self.inference_batch_size,
            "train": {name: count.to_dict() for name, count in self.train.items()},
            "inference": {name: count.to_dict() for name, count in self.inference.items()},
        }


def _check(num_members: int, batch_size: int) -> None:
    if num_members < 1 or batch_size < 1:
        raise ConfigError(
            f"memory count needs num_members >= 1 and batch size >= 1, got {num_members} "
            f"and {batch_size}"
        )


def count_train_memory(
    member: ArchSpec,
    num_members: int,
    input_spec: InputSpec,
    config: TrainConfig | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, MemoryCount]:
    """One training step of k members at `config.batch_size`, by execution (loop, fused)."""
    config = config or TrainConfig()
    _check(num_members, config.batch_size)
    where = str(torch.device(device))
    loop = loop_train_step(member, input_spec, num_members, config, where)
    if num_members == 1:  # one network: the loop is the network itself
        return {"loop": loop, "fused": loop}
    fused = count_train_step("fused", member, input_spec, num_members, config, where)
    return {"loop": loop, "fused": fused}


def count_inference_memory(
    member: ArchSpec,
    num_members: int,
    input_spec: InputSpec,
    batch_size: int,
    config: TrainConfig | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, MemoryCount]:
    """One inference call of k members on `batch_size` images, by execution."""
    config = config or TrainConfig()
    _check(num_members, batch_size)
    where = str(torch.device(device))
    counts = {}
    for execution in EXECUTIONS[: 1 if num_members == 1 else 2]:
        counts[execution] = count_inference(
            execution, member, input_spec, num_members, config, batch_size, where
        )
    counts.setdefault("fused", counts["loop"])
    return counts


def count_design_memory(
    member: ArchSpec,
    num_members: int,
    input_spec: InputSpec,
    config: TrainConfig | None = None,
    *,
    inference_batch_size: int | None = None,
    device: torch.device | str = "cpu",
) -> DesignMemory:
    """Training (at `config.batch_size`) and inference memory of k members, loop and fused.

    `inference_batch_size` defaults to the training batch size.
    """
    config = config or TrainConfig()
    inference_batch = inference_batch_size or config.batch_size
    return DesignMemory(
        member=member.name,
        num_members=num_members,
        input=input_spec.name,
        num_classes=input_spec.num_classes,
        precision=config.precision,
        channels_last=config.channels_last,
        device=str(torch.device(device)),
        train_batch_size=config.batch_size,
        inference_batch_size=inference_batch,
        train=count_train_memory(member, num_members, input_spec, config, device),
        inference=count_inference_memory(
            member, num_members, input_spec, inference_batch, config, device
        ),
    )


def plan_memory_keys(
    member: ArchSpec, num_members: int, input_spec: InputSpec, config: TrainConfig
) -> dict[str, Any]:
    """A plan row's memory: one training step, one member at a time and all k at once."""
    counts = count_train_memory(member, num_members, input_spec, config)
    return {
        "train_memory_loop_bytes": counts["loop"].peak_bytes,
        "train_memory_fused_bytes": counts["fused"].peak_bytes,
        "train_batch_size": config.batch_size,
        "memory_method": MEMORY_METHOD,
    }
