"""Exact accounting of one network: parameters, FLOPs and activations, on the meta device.

Nothing here allocates weights: networks are built on PyTorch's `meta` device, where tensors
have shapes but no storage. Results are cached, since the planner asks about the same
architectures many times.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from paramsplit.families import PublishedConfig
from paramsplit.models import build_model, count_parameters
from paramsplit.specs import ArchSpec, InputSpec, parse_arch

BYTES_PER_FP32 = 4
DEFAULT_TRAIN_BATCH = 128
# Weights, their gradients and SGD's momentum buffer: three fp32 copies of every parameter.
OPTIMIZER_COPIES = 3


@dataclass(frozen=True)
class ArchProfile:
    """One network's exact size and cost for one input shape.

    `flops_per_image` counts the forward pass of convolutions and linear layers with
    `torch.utils.flop_counter.FlopCounterMode`: 2 FLOPs per multiply-accumulate; batch norm,
    activations and pooling are not counted. `activation_elements_per_image` sums the outputs
    of every layer, the tensors autograd keeps for the backward pass.
    """

    arch: ArchSpec
    total_params: int
    flops_per_image: int
    activation_elements_per_image: int


@functools.lru_cache(maxsize=65536)
def _count_params(arch: ArchSpec, channels: int, num_classes: int) -> int:
    # The count does not depend on the input's height and width: every family ends in
    # global average pooling. Keying on channels and classes alone shares the cache.
    input_spec = InputSpec(channels, 32, 32, num_classes)
    return count_parameters(build_model(arch, input_spec, device="meta"))


def count_params(arch: ArchSpec, input_spec: InputSpec | None = None) -> int:
    """Exact parameter count of one network of `arch`, counted from the built module."""
    input_spec = input_spec or InputSpec()
    return _count_params(arch, input_spec.channels, input_spec.num_classes)


@functools.lru_cache(maxsize=4096)
def profile_arch(arch: ArchSpec, input_spec: InputSpec | None = None) -> ArchProfile:
    """Parameters, forward FLOPs and activation size of one network, per image."""
    input_spec = input_spec or InputSpec()
    model = build_model(arch, input_spec, device="meta").eval()
    activation_elements = 0

    def count_output(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal activation_elements
        activation_elements += output.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [leaf.register_forward_hook(count_output) for leaf in leaves]
    try:
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, *input_spec.shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return ArchProfile(
        arch=arch,
        total_params=count_params(arch, input_spec),
        flops_per_image=int(counter.get_total_flops()),
        activation_elements_per_image=activation_elements,
    )


@dataclass(frozen=True)
class TrainMemoryEstimate:
    """A rough fp32 training-memory figure: optimizer state plus stored activations.

    `sequential_bytes` trains members one at a time (only one member's activations live);
    `fused_bytes` trains all members together (all activations live). Equal for k = 1.
    Framework workspace and the allocator's slack are not included.
    """

    sequential_bytes: int
    fused_bytes: int


def estimate_train_memory(
    profile: ArchProfile, num_members: int, batch_size: int = DEFAULT_TRAIN_BATCH
) -> TrainMemoryEstimate:
    weights = OPTIMIZER_COPIES * num_members * profile.total_params
    activations = batch_size * profile.activation_elements_per_image
    return TrainMemoryEstimate(
        sequential_bytes=BYTES_PER_FP32 * (weights + activations),
        fused_bytes=BYTES_PER_FP32 * (weights + num_members * activations),
    )


@dataclass(frozen=True)
class ArchDescription:
    """What `paramsplit describe` shows about one network."""

    profile: ArchProfile
    input_spec: InputSpec
    train_memory_bytes: int
    published: PublishedConfig | None

    def to_dict(self) -> dict[str, Any]:
        arch = self.profile.arch
        return {
            "name": arch.name,
            "family": arch.family,
            "depth": arch.depth,
            "width": arch.width,
            "units": arch.units,
            "total_params": self.profile.total_params,
            "flops_per_image": self.profile.flops_per_image,
            "activation_elements_per_image": self.profile.activation_elements_per_image,
            "weights_bytes": BYTES_PER_FP32 * self.profile.total_params,
            "train_memory_bytes": self.train_memory_bytes,
            "train_batch_size": DEFAULT_TRAIN_BATCH,
            "input": self.input_spec.name,
            "num_classes": self.input_spec.num_classes,
            "published_params": self.published.params if self.published else None,
            "published_reported": self.published.reported if self.published else None,
            "published_source": self.published.source if self.published else None,
        }


def describe(arch: ArchSpec | str, input_spec: InputSpec | None = None) -> ArchDescription:
    """Exact size and cost of one network; names its publication where it has one."""
    arch = parse_arch(arch) if isinstance(arch, str) else arch
    input_spec = input_spec or InputSpec()
    profile = profile_arch(arch, input_spec)
    published = None
    if input_spec.channels == 3 and input_spec.num_classes == 10:
        published = next((p for p in arch.info.published if p.name == arch.name), None)
    return ArchDescription(
        profile=profile,
        input_spec=input_spec,
        train_memory_bytes=estimate_train_memory(profile, 1).fused_bytes,
        published=published,
    )
