"""Loss scaling per member: fp16 training of k fused members that stay k independent runs.

`torch.amp.GradScaler` keeps one scale for everything it scales: with one scaler over a fused
network, one member's overflow would skip every member's step and shrink every member's
scale. `MemberGradScaler` keeps one scale and one growth counter per member and applies
GradScaler's rules to each member on its own:

- member i's loss is multiplied by its own scale before the backward pass;
- member i's gradients (its slice `chunk(k, dim=0)[i]` of every parameter's gradient, the
  layout of `paramsplit.models.layers`) are multiplied by the inverse of its scale, and
  checked for inf/NaN on their own;
- a member whose gradients are not finite skips its step (`step_members` leaves its weights
  and momentum exactly as they were) and halves its scale; the others step, and each one's
  scale doubles after `growth_interval` finite steps in a row.

Scales are powers of two, so scaling and unscaling are exact: a member's unscaled gradient
is bit for bit the gradient a separate network with its own GradScaler would get.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

# GradScaler's defaults (torch.amp.grad_scaler), so one member behaves as one GradScaler.
INIT_SCALE = 2.0**16
GROWTH_FACTOR = 2.0
BACKOFF_FACTOR = 0.5
GROWTH_INTERVAL = 2000


def member_view(tensor: Tensor, num_members: int) -> Tensor:
    """The member-major dim 0 split into members; a view, also for channels-last tensors.

    Shape: [k*N, ...] -> [k, N, ...]; row i is `tensor.chunk(k, dim=0)[i]`.
    """
    return tensor.unflatten(0, (num_members, -1))


class MemberGradScaler:
    """k GradScalers in one: per-member scale, inf check and growth, on member slices."""

    def __init__(self, num_members: int, device: torch.device) -> None:
        self.num_members = num_members
        self.scale = torch.full((num_members,), INIT_SCALE, dtype=torch.float32, device=device)
        self.growth_tracker = torch.zeros(num_members, dtype=torch.int32, device=device)
        self.growth_factor = GROWTH_FACTOR
        self.backoff_factor = BACKOFF_FACTOR
        self.growth_interval = GROWTH_INTERVAL

    def scale_losses(self, losses: Tensor) -> Tensor:
        """The sum of each member's loss times its scale. Shape: [k] -> []."""
        return (losses * self.scale).sum()

    @torch.no_grad()
    def unscale_(self, params: Sequence[Tensor]) -> Tensor:
        """Unscale every member's gradient slices in place; which members' are all finite.

        Shape: -> [k] bool.
        """
        # As GradScaler: the inverse computed in double, applied in float (exact for powers
        # of two), and the check made on the scaled values.
        inverse = self.scale.double().reciprocal().float()
        finite = torch.ones(self.num_members, dtype=torch.bool, device=self.scale.device)
        for param in params:
            if param.grad is None:
                continue
            grad = member_view(param.grad, self.num_members)  # [k, N, ...]
            finite &= torch.isfinite(grad).reshape(self.num_members, -1).all(dim=1)
            grad.mul_(inverse.view(-1, *[1] * (grad.dim() - 1)))
        return finite

    @torch.no_grad()
    def update(self, finite: Tensor) -> None:
        """GradScaler.update per member: back off after an overflow, grow after a streak."""
        streak = torch.where(finite, self.growth_tracker + 1, 0)
        grow = streak == self.growth_interval
        # As torch._amp_update_scale_: the product in double, stored in float, and a grown
        # scale kept only when it is finite.
        backed_off = (self.scale.double() * self.backoff_factor).float()
        grown = (self.scale.double() * self.growth_factor).float()
        grown = torch.where(torch.isfinite(grown), grown, self.scale)
        self.scale = torch.where(finite, torch.where(grow, grown, self.scale), backed_off)
        self.growth_tracker = torch.where(grow, 0, streak).to(torch.int32)

    def state_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale.tolist(),
            "growth_factor": self.growth_factor,
            "backoff_factor": self.backoff_factor,
            "growth_interval": self.growth_interval,
            "_growth_tracker": self.growth_tracker.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Per-member state, or one GradScaler's (older checkpoints) for every member."""
        shape, device = (self.num_members,), self.scale.device
        scale = torch.tensor(state["scale"], dtype=torch.float32, device=device)
        tracker = torch.tensor(state["_growth_tracker"], dtype=torch.int32, device=device)
        self.scale, self.growth_tracker = scale.expand(shape).clone(), tracker.expand(shape).clone()
        self.growth_factor = float(state["growth_factor"])
        self.backoff_factor = float(state["backoff_factor"])
        self.growth_interval = int(state["growth_interval"])


@torch.no_grad()
def step_members(
    optimizer: torch.optim.Optimizer, params: Sequence[Tensor], finite: Tensor
) -> None:
    """One optimizer step for the members whose gradients are finite; the others keep their
    weights and momentum exactly (as a separate network's skipped GradScaler step would).

    SGD is elementwise, so stepping everything and then restoring the skipped members'
    slices equals stepping only the others.
    """
    num_members = len(finite)
    skipped = [i for i, ok in enumerate(finite.tolist()) if not ok]
    if not skipped:
        optimizer.step()
        return
    if len(skipped) == num_members:
        return
    state = optimizer.state
    had_buffer = {p for p in params if state.get(p, {}).get("momentum_buffer") is not None}
    saved_params = [member_view(p, num_members)[skipped].clone() for p in params]
    saved_buffers = {
        p: member_view(state[p]["momentum_buffer"], num_members)[skipped].clone()
        for p in had_buffer
    }
    optimizer.step()
    for p, values in zip(params, saved_params, strict=True):
        member_view(p, num_members)[skipped] = values
    for p in params:
        # A buffer this step created is zero for a skipped member: SGD's first step from a
        # zero buffer (momentum * 0 + gradient) equals its first step without one.
        buffer = state.get(p, {}).get("momentum_buffer")
        if buffer is not None:
            member_view(buffer, num_members)[skipped] = saved_buffers.get(p, 0)
