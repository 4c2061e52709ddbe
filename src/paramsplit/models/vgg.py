"""VGG for small inputs (Simonyan & Zisserman 2015, as adapted to 32×32 images).

Five stages of 3×3 conv-BN-ReLU with w, 2w, 4w, 8w, 8w channels, each followed by 2×2 max
pooling (stage widths may also be given one by one: `vgg-16-45.90.181.362.362`), then
global average pooling and one linear classifier. VGG naming counts the three
fully connected layers of the ImageNet original, so depth d has d-3 convolutions:
VGG-11 = [1,1,2,2,2], VGG-16 = [2,2,3,3,3], VGG-19 = [2,2,4,4,4] convolutions per stage.
At 32×32, VGG-16 (w = 64) has 14,728,266 parameters for 10 classes.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from paramsplit.models.layers import MemberConv2d, MemberHead, MemberNetwork, member_batch_norm

NUM_STAGES = 5


def convs_per_stage(num_convs: int) -> list[int]:
    """Spread convolutions over the stages the way the published configs do.

    One per stage, then one more per stage from the last stage backwards; beyond ten the
    extra convolutions go to the last three stages only, again from the back.
    """
    counts = [1] * NUM_STAGES
    extra = num_convs - NUM_STAGES
    order = list(range(NUM_STAGES - 1, -1, -1))
    for stage in order[:extra]:
        counts[stage] += 1
    extra -= min(extra, NUM_STAGES)
    deep_stages = order[:3]
    for i in range(extra):
        counts[deep_stages[i % 3]] += 1
    return counts


class PoolIfLarge(nn.Module):
    """2×2 max pooling on each side that is still at least 2 pixels long.

    Small inputs (8×8) run out of resolution before the fifth stage; the parameter count
    does not depend on the input size.
    """

    def forward(self, x: Tensor) -> Tensor:
        kernel = (2 if x.shape[-2] >= 2 else 1, 2 if x.shape[-1] >= 2 else 1)
        return x if kernel == (1, 1) else F.max_pool2d(x, kernel)


class VGG(MemberNetwork):
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
        num_convs = units + 4  # depth = units + 7 = convs + 3
        layers: list[nn.Module] = []
        channels = in_channels
        for out, count in zip(stage_widths, convs_per_stage(num_convs), strict=True):
            for _ in range(count):
                layers += [
                    MemberConv2d(k, channels, out, 3, padding=1, bias=True),
                    member_batch_norm(k, out),
                    nn.ReLU(inplace=True),
                ]
                channels = out
            layers.append(PoolIfLarge())
        self.features = nn.Sequential(*layers)
        self.head = MemberHead(k, channels, num_classes)
