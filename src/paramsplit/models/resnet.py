"""CIFAR ResNet (He et al. 2016, section 4.2): depth 6n+2, stages of width w, 2w, 4w.

Stage widths may also be given one by one (`resnet-56-8.16.31`); the stem has the first
stage's width, so the first stage keeps its identity shortcuts.

Shortcuts that change shape are 1×1 projections with batch norm ("option B"). The paper's
CIFAR networks used zero-padding ("option A"), which has 2,752 fewer parameters at w = 16;
option B is what common implementations use and gives the counts usually quoted
(ResNet-20: 272,474; ResNet-56: 855,770; ResNet-110: 1,730,714 for 10 classes).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from paramsplit.models.layers import MemberConv2d, MemberHead, MemberNetwork, member_batch_norm


class BasicBlock(nn.Module):
    def __init__(self, k: int, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = MemberConv2d(k, in_channels, out_channels, 3, stride, padding=1)
        self.bn1 = member_batch_norm(k, out_channels)
        self.conv2 = MemberConv2d(k, out_channels, out_channels, 3, 1, padding=1)
        self.bn2 = member_batch_norm(k, out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                MemberConv2d(k, in_channels, out_channels, 1, stride),
                member_batch_norm(k, out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(MemberNetwork):
    def __init__(
        self,
        units: int,
        stage_widths: tuple[int, ...],
        in_channels: int,
        num_classes: int,
        num_members: int = 1,
    ) -> None:
        super().__init__(num_members, in_channels)
        k = num_members
        stem = stage_widths[0]
        layers: list[nn.Module] = [
            MemberConv2d(k, in_channels, stem, 3, padding=1),
            member_batch_norm(k, stem),
            nn.ReLU(inplace=True),
        ]
        channels = stem
        for stage, stage_width in enumerate(stage_widths):
            for block in range(units):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(k, channels, stage_width, stride))
                channels = stage_width
        self.features = nn.Sequential(*layers)
        self.head = MemberHead(k, channels, num_classes)
