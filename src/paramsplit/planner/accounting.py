"""Exact accounting of one network: parameters, FLOPs and activations, on the meta device.

Nothing here allocates weights: networks are built on PyTorch's `meta` device, where tensors
have shapes but no storage. Results are cached, since the planner asks about the same
architectures many times. FLOPs are summed from each layer's shape rather than by running
`FlopCounterMode` per network (a meta forward costs ~0.1 s). tests/test_accounting.py checks
the two against each other for every family, small and published sizes and per-stage
widths, forward and training step, single and fused, and the parameter counts against the
papers' figures and the built modules.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from paramsplit.families import PublishedConfig
from paramsplit.models import build_model, count_parameters
from paramsplit.models.layers import MemberLinear
from paramsplit.specs import ArchSpec, InputSpec, parse_arch

BYTES_PER_FP32 = 4


@dataclass(frozen=True)
class ArchProfile:
    """One network's exact size and cost for one input shape.

    `flops_per_image` counts the forward pass of convolutions and linear layers the way
    `torch.utils.flop_counter.FlopCounterMode` does: 2 FLOPs per multiply-accumulate; bias,
    batch norm, activations and pooling are not counted. `activation_elements_per_image` sums
    the outputs of every convolution and batch norm: autograd keeps about one tensor of each
    (a batch norm keeps its input, the convolution's output; the next convolution keeps the
    ReLU output, the batch norm's size).

    A training step costs 3 × `flops_per_image` less the first convolution's input gradient,
    which nothing needs: the backward pass takes each layer's input and weight gradients, a
    forward's worth each. An ensemble of k members costs k × one member's, fused or not.
    (`FlopCounterMode` counts a fused network's grouped weight gradients k times over: see
    tests/test_accounting.py.)
    """

    arch: ArchSpec
    total_params: int
    flops_per_image: int
    activation_elements_per_image: int


@dataclass(frozen=True)
class _Layer:
    """What accounting needs of one convolution, batch norm or linear layer."""

    name: str
    kind: str  # "conv", "norm" or "linear"
    out_channels: int
    macs_per_output_pixel: int  # conv: in/groups * kh * kw; linear: weight elements


@dataclass(frozen=True)
class _LayerTable:
    total_params: int
    layers: tuple[_Layer, ...]


@functools.lru_cache(maxsize=65536)
def _layer_table(arch: ArchSpec, channels: int, num_classes: int) -> _LayerTable:
    # One meta build per architecture serves both the count and the profile. Neither
    # depends on the input's height and width (every family ends in global average
    # pooling), so the key leaves them out and the cache is shared across input sizes.
    model = build_model(arch, InputSpec(channels, 32, 32, num_classes), device="meta")
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            kernel_h, kernel_w = module.kernel_size
            per_pixel = module.in_channels // module.groups * kernel_h * kernel_w
            layers.append(_Layer(name, "conv", module.out_channels, per_pixel))
        elif isinstance(module, nn.BatchNorm2d):
            layers.append(_Layer(name, "norm", module.num_features, 0))
        elif isinstance(module, MemberLinear):
            layers.append(_Layer(name, "linear", module.out_features, module.weight.numel()))
    return _LayerTable(count_parameters(model), tuple(layers))


def count_params(arch: ArchSpec, input_spec: InputSpec | None = None) -> int:
    """Exact parameter count of one network of `arch`, counted from the built module."""
    input_spec = input_spec or InputSpec()
    return _layer_table(arch, input_spec.channels, input_spec.num_classes).total_params


# Width 2 has every layer any stage widths can have: a WRN's first stage needs a projection
# shortcut only when its width is not the stem's 16, i.e. at every uniform width but 1.
_REFERENCE_WIDTH = 2


@functools.lru_cache(maxsize=1024)
def _output_sizes(arch: ArchSpec, input_spec: InputSpec) -> dict[str, tuple[int, int]]:
    """Height and width of every convolution's and batch norm's output, by module name.

    They depend on the family, depth and input size but not on the width, so one forward
    pass serves every width the planner tries at a depth. It runs on the CPU at a small
    width: a few milliseconds, where PyTorch's Python meta kernels take ~0.4 s for a
    DenseNet-BC-100.
    """
    # A seed keeps the caller's random state untouched by this throwaway model's init.
    model = build_model(arch, input_spec, seed=0).eval()
    sizes: dict[str, tuple[int, int]] = {}
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: sizes.__setitem__(name, tuple(out.shape[-2:]))
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.BatchNorm2d)
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_spec.shape))
    finally:
        for handle in handles:
            handle.remove()
    return sizes


@functools.lru_cache(maxsize=4096)
def profile_arch(arch: ArchSpec, input_spec: InputSpec | None = None) -> ArchProfile:
    """Parameters, forward FLOPs and activation size of one network, per image."""
    input_spec = input_spec or InputSpec()
    table = _layer_table(arch, input_spec.channels, input_spec.num_classes)
    sizes = _output_sizes(ArchSpec(arch.family, arch.depth, _REFERENCE_WIDTH), input_spec)
    flops = activations = 0
    for layer in table.layers:
        if layer.kind == "linear":
            flops += 2 * layer.macs_per_output_pixel
            continue
        assert layer.name in sizes, f"{arch.name}: {layer.name} missing at the reference width"
        height, width = sizes[layer.name]
        flops += 2 * height * width * layer.out_channels * layer.macs_per_output_pixel
        activations += layer.out_channels * height * width
    return ArchProfile(
        arch=arch,
        total_params=table.total_params,
        flops_per_image=flops,
        activation_elements_per_image=activations,
    )


def design_flops_per_image(
    num_members: int, member: ArchSpec, input_spec: InputSpec | None = None
) -> int:
    """Forward FLOPs of a design per image: k members share no computation, so k times one
    member's (fused or not, the arithmetic is the same)."""
    return num_members * profile_arch(member, input_spec).flops_per_image


@dataclass(frozen=True)
class ArchDescription:
    """What `paramsplit describe` shows about one network (its memory, which needs the
    training step, comes from `paramsplit.measure.memory`)."""

    profile: ArchProfile
    input_spec: InputSpec
    published: PublishedConfig | None

    def to_dict(self) -> dict[str, Any]:
        arch = self.profile.arch
        return {
            "name": arch.name,
            "family": arch.family,
            "depth": arch.depth,
            "width": arch.width,
            "stage_widths": list(arch.stage_widths),
            "units": arch.units,
            "total_params": self.profile.total_params,
            "flops_per_image": self.profile.flops_per_image,
            "activation_elements_per_image": self.profile.activation_elements_per_image,
            "weights_bytes": BYTES_PER_FP32 * self.profile.total_params,
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
        published=published,
    )
