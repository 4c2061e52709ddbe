"""Moving weights between a fused k-member network and k single networks.

Relies on the layout of `paramsplit.models.layers`: member-specific tensors are member-major
along dim 0, so member i's slice is `chunk(k, dim=0)[i]`. Scalars (BatchNorm's
`num_batches_tracked`) are the same for every member.
"""

from __future__ import annotations

import torch
from torch import Tensor

from paramsplit.models.layers import MemberNetwork
from paramsplit.models.registry import build_model


def split_state(state: dict[str, Tensor], num_members: int) -> list[dict[str, Tensor]]:
    """One state dict per member from a fused network's state dict."""
    members: list[dict[str, Tensor]] = [{} for _ in range(num_members)]
    for key, tensor in state.items():
        parts = tensor.chunk(num_members, dim=0) if tensor.dim() else [tensor] * num_members
        for member, part in zip(members, parts, strict=True):
            member[key] = part.clone()
    return members


def merge_states(states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """A fused network's state dict from one state dict per member."""
    return {
        key: torch.cat([s[key] for s in states]) if tensor.dim() else tensor.clone()
        for key, tensor in states[0].items()
    }


def split_members(fused: MemberNetwork) -> list[MemberNetwork]:
    """k single networks with the fused network's weights and statistics."""
    states = split_state(fused.state_dict(), fused.num_members)
    reference = next(fused.parameters())
    singles = []
    for state in states:
        single = build_model(fused.arch, fused.input_spec, device=reference.device)
        single = single.to(reference.dtype)
        single.load_state_dict(state)
        singles.append(single.train(fused.training))
    return singles


def merge_members(singles: list[MemberNetwork]) -> MemberNetwork:
    """One fused network computing the given single networks."""
    first = singles[0]
    reference = next(first.parameters())
    fused = build_model(
        first.arch, first.input_spec, num_members=len(singles), device=reference.device
    ).to(reference.dtype)
    fused.load_state_dict(merge_states([s.state_dict() for s in singles]))
    return fused.train(first.training)
