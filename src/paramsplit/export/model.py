"""A run's whole ensemble as one module: raw images in, averaged probabilities out.

The module takes uint8 pixels as the dataset stores them and normalises them itself, with
the training split's statistics the run used (kept with its weights), in the same float32
operations as `DatasetTensors.normalize`: a deployed model needs no preprocessing code, and
it sees bit for bit the inputs the run was tested on. Its output is what the run's test
accuracy is computed from (`ensemble_metrics`): the mean of the members' softmax
probabilities; with `member_logits`, each member's logits too.

Two forms compute the same function: `separate`, the k single networks one after another,
and `fused`, one grouped-convolution network computing all k (`merge_members`). Which is
faster depends on the runtime and the hardware, so `paramsplit.export` times both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paramsplit.errors import UsageError
from paramsplit.models import MemberNetwork, build_model, merge_members
from paramsplit.study.artifacts import RunWeights

FORMS = ("fused", "separate")


class SeparateMembers(nn.Module):
    """k single networks run one after another. Shape: [B, C, H, W] -> [B, k, classes]."""

    def __init__(self, members: list[MemberNetwork]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([member(x) for member in self.members], dim=1)


class EnsembleModel(nn.Module):
    """Normalisation, k members and the mean of their probabilities, in one module.

    Shape:
        images uint8 [B, C, H, W] -> probabilities float32 [B, classes]
        (with `member_logits`: and member logits float32 [B, k, classes])
    """

    scale: Tensor  # buffers: saved with the model, in every format
    shift: Tensor

    def __init__(self, network: nn.Module, mean: Tensor, std: Tensor, member_logits: bool) -> None:
        super().__init__()
        self.network = network
        self.member_logits = member_logits
        # The very expressions of `DatasetTensors.normalize`, so the inputs match bit for bit.
        self.register_buffer("scale", (1 / (255 * std.float())).view(-1, 1, 1))  # [C, 1, 1]
        self.register_buffer("shift", (mean.float() / std.float()).view(-1, 1, 1))

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        x = images.to(torch.float32) * self.scale - self.shift  # [B, C, H, W]
        logits = self.network(x).float()  # [B, k, classes]
        probabilities = F.softmax(logits, dim=-1).mean(dim=1)  # [B, classes]
        if self.member_logits:
            return probabilities, logits
        return probabilities


def build_members(weights: RunWeights) -> list[MemberNetwork]:
    """The run's k members as single networks in eval mode, rebuilt from the member's name."""
    members = []
    for state in weights.member_states:
        member = build_model(weights.member, weights.input_spec)
        member.load_state_dict(state)
        members.append(member.eval())
    return members


def build_ensemble(weights: RunWeights, form: str, *, member_logits: bool = False) -> EnsembleModel:
    """The run's ensemble as one eval-mode module in `form` (`FORMS`); a single network is
    the same in either."""
    if form not in FORMS:
        raise UsageError(f"--form must be one of auto, {', '.join(FORMS)}, got '{form}'")
    members = build_members(weights)
    network: nn.Module
    if len(members) == 1:
        network = members[0]
    elif form == "fused":
        network = merge_members(members)
    else:
        network = SeparateMembers(members)
    return EnsembleModel(network, weights.mean, weights.std, member_logits).eval()
