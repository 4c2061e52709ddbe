"""The explicit table of families and the one public way to build a network."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from paramsplit.models.densenet import DenseNetBC
from paramsplit.models.layers import MemberNetwork
from paramsplit.models.resnet import ResNet
from paramsplit.models.vgg import VGG
from paramsplit.models.wrn import WideResNet
from paramsplit.specs import ArchSpec, InputSpec

# Each builder takes (units, stage_widths, in_channels, num_classes, num_members).
BUILDERS: dict[str, Callable[[int, tuple[int, ...], int, int, int], MemberNetwork]] = {
    "resnet": ResNet,
    "wrn": WideResNet,
    "densenet-bc": DenseNetBC,
    "vgg": VGG,
}


def build_model(
    arch: ArchSpec,
    input_spec: InputSpec | None = None,
    *,
    num_members: int = 1,
    seed: int | None = None,
    device: torch.device | str | None = None,
) -> MemberNetwork:
    """Build `num_members` copies of `arch` as one network (k = 1: the single network).

    With a seed, the initial weights are a function of the seed alone. On the `meta` device
    nothing is allocated, which is how parameters are counted.
    """
    input_spec = input_spec or InputSpec()
    builder = BUILDERS[arch.family]
    generator_state = torch.random.get_rng_state() if seed is not None else None
    try:
        if seed is not None:
            torch.manual_seed(seed)
        with torch.device(device) if device is not None else contextlib.nullcontext():
            model = builder(
                arch.units,
                arch.stage_widths,
                input_spec.channels,
                input_spec.num_classes,
                num_members,
            )
    finally:
        if generator_state is not None:
            torch.random.set_rng_state(generator_state)
    model.arch = arch
    model.input_spec = input_spec
    return model


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
