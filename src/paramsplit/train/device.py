"""How work on a device is timed and how tensors are laid out there: one home for each rule."""

from __future__ import annotations

import torch

from paramsplit.specs import TrainConfig


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read next times it (CUDA runs
    asynchronously; the CPU and MPS paths here return when the work is done)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_format(config: TrainConfig) -> torch.memory_format:
    """The layout networks and images use: channels_last where `config` asks for it."""
    return torch.channels_last if config.channels_last else torch.contiguous_format
