"""DenseNet-BC (Huang et al. 2017): depth 6n+4, growth rate g.

Three dense blocks of n bottleneck layers (BN-ReLU-1×1 conv to 4g, BN-ReLU-3×3 conv to g),
transitions that halve the channels (compression 0.5, rounded down) and the resolution,
a 3×3 stem with 2g channels. DenseNet-BC-100-12 has 769,162 parameters for 10 classes.
Each block may have its own growth rate (`densenet-bc-100-6.6.7`); the stem then has twice
the first block's.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from paramsplit.models.layers import (
    MemberConv2d,
    MemberHead,
    MemberNetwork,
    member_batch_norm,
    member_cat,
)

BOTTLENECK_FACTOR = 4
COMPRESSION = 0.5


class Bottleneck(nn.Module):
    def __init__(self, k: int, in_channels: int, growth: int) -> None:
        super().__init__()
        self.num_members = k
        inner = BOTTLENECK_FACTOR * growth
        self.bn1 = member_batch_norm(k, in_channels)
        self.conv1 = MemberConv2d(k, in_channels, inner, 1)
        self.bn2 = member_batch_norm(k, inner)
        self.conv2 = MemberConv2d(k, inner, growth, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return member_cat([x, out], self.num_members)  # each member grows by `growth` channels


class Transition(nn.Module):
    def __init__(self, k: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.bn = member_batch_norm(k, in_channels)
        self.conv = MemberConv2d(k, in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNetBC(MemberNetwork):
    def __init__(
        self,
        units: int,
        stage_widths: tuple[int, ...],
        in_channels: int,
        num_classes: int,
        num_members: int = 1,
    ) -> None:
        super().__init__(num_members, in_channels)
        k, num_blocks = num_members, len(stage_widths)
        channels = 2 * stage_widths[0]
        layers: list[nn.Module] = [MemberConv2d(k, in_channels, channels, 3, padding=1)]
        for block, growth in enumerate(stage_widths):
            for _ in range(units):
                layers.append(Bottleneck(k, channels, growth))
                channels += growth
            if block < num_blocks - 1:
                compressed = int(channels * COMPRESSION)
                layers.append(Transition(k, channels, compressed))
                channels = compressed
        layers += [member_batch_norm(k, channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = MemberHead(k, channels, num_classes)
