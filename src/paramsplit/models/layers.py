"""Member-aware building blocks: one module computes k independent members at once.

Layout convention (everything below relies on it): a feature map of a k-member network has
shape [B, k*C, H, W] with member i's channels at [i*C, (i+1)*C). Every parameter and buffer
with member-specific values is laid out member-major along dim 0, so member i's slice is
`tensor.chunk(k, dim=0)[i]` and a single network (k = 1) has exactly the shapes of one slice.
That makes splitting a fused network into members, or merging members, a generic operation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paramsplit.specs import ArchSpec, InputSpec


class MemberConv2d(nn.Conv2d):
    """k independent convolutions as one grouped convolution (groups = k)."""

    def __init__(
        self,
        num_members: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
    ) -> None:
        super().__init__(
            num_members * in_channels,
            num_members * out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            groups=num_members,
            bias=bias,
        )
        self.num_members = num_members

    def reset_parameters(self) -> None:
        if self.weight.is_meta:  # counting only: random init on meta costs ~2 ms a layer
            return
        # He et al. 2015 normal init. Its fan-in (in_channels/groups * kh * kw) is one
        # member's, so a fused layer draws each member from the same distribution.
        nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="relu")
        if self.bias is not None:
            nn.init.zeros_(self.bias)


def member_batch_norm(num_members: int, channels: int) -> nn.BatchNorm2d:
    """Per-channel statistics over the batch are already per member in the [B, k*C] layout."""
    return nn.BatchNorm2d(num_members * channels)


class MemberLinear(nn.Module):
    """k independent linear layers. Shape: [B, k*F] -> [B, k, out]."""

    def __init__(self, num_members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.num_members = num_members
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(num_members, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(num_members, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight.is_meta:
            return
        # The same distribution as nn.Linear's default, per member.
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], self.num_members, self.in_features)  # [B, k, F]
        return torch.einsum("bkf,kof->bko", x, self.weight) + self.bias  # [B, k, out]


def member_cat(tensors: list[Tensor], num_members: int) -> Tensor:
    """Concatenate feature maps channel-wise within each member.

    Shape: each [B, k*C_i, H, W] -> [B, k*sum(C_i), H, W].
    """
    if num_members == 1:
        return torch.cat(tensors, dim=1)
    batch, _, height, width = tensors[0].shape
    split = [t.reshape(batch, num_members, -1, height, width) for t in tensors]
    return torch.cat(split, dim=2).reshape(batch, -1, height, width)


class MemberHead(nn.Module):
    """Global average pooling and a per-member classifier.

    Shape: [B, k*C, H, W] -> [B, k, classes].
    """

    def __init__(self, num_members: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = MemberLinear(num_members, channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class MemberNetwork(nn.Module):
    """Base of every family: k members in one module, k = 1 for a single network.

    Input: [B, C, H, W] (every member sees the same images) or [k, B, C, H, W] (member i
    sees batch i, e.g. its own data order). Output: [B, k, num_classes] logits, where
    output[:, i] is member i's prediction on its own input.
    """

    # Set by `build_model`: what this network is, so it can be rebuilt (e.g. split).
    arch: ArchSpec
    input_spec: InputSpec

    def __init__(self, num_members: int, in_channels: int) -> None:
        super().__init__()
        if num_members < 1:
            raise ValueError(f"num_members must be >= 1, got {num_members}")
        self.num_members = num_members
        self.in_channels = in_channels
        self.features: nn.Module = nn.Identity()
        self.head: nn.Module = nn.Identity()

    def member_input(self, x: Tensor) -> Tensor:
        """Arrange an input batch into the fused layout. Shape: -> [B, k*C, H, W]."""
        k = self.num_members
        if x.dim() == 4:
            return x if k == 1 else x.repeat(1, k, 1, 1)
        if x.dim() == 5 and x.shape[0] == k:
            _, batch, channels, height, width = x.shape
            return x.transpose(0, 1).reshape(batch, k * channels, height, width)
        raise ValueError(f"expected input [B, C, H, W] or [{k}, B, C, H, W], got {list(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(self.member_input(x)))
