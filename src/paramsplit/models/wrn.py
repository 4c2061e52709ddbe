"""Wide ResNet (Zagoruyko & Komodakis 2016): depth 6n+4, widen factor w.

Pre-activation blocks (BN-ReLU-conv), a 16-channel stem, stages of 16w, 32w, 64w channels,
1×1 projection shortcuts where the shape changes, no dropout. WRN-28-10 has 36,479,194
parameters for 10 classes (the paper: 36.5M).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from paramsplit.models.layers import MemberConv2d, MemberHead, MemberNetwork, member_batch_norm

STEM_CHANNELS = 16


class PreActBlock(nn.Module):
    def __init__(self, k: int, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = member_batch_norm(k, in_channels)
        self.conv1 = MemberConv2d(k, in_channels, out_channels, 3, stride, padding=1)
        self.bn2 = member_batch_norm(k, out_channels)
        self.conv2 = MemberConv2d(k, out_channels, out_channels, 3, 1, padding=1)
        self.projection: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.projection = MemberConv2d(k, in_channels, out_channels, 1, stride)

    def forward(self, x: Tensor) -> Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv1(activated)
        out = self.conv2(F.relu(self.bn2(out)))
        # As in the reference code, a projection reads the activated input, identity the raw one.
        shortcut = x if self.projection is None else self.projection(activated)
        return out + shortcut


class WideResNet(MemberNetwork):
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
        layers: list[nn.Module] = [MemberConv2d(k, in_channels, STEM_CHANNELS, 3, padding=1)]
        channels = STEM_CHANNELS
        for stage, stage_width in enumerate(stage_widths):  # 16w, 32w, 64w when uniform
            for block in range(units):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(PreActBlock(k, channels, stage_width, stride))
                channels = stage_width
        layers += [member_batch_norm(k, channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = MemberHead(k, channels, num_classes)
