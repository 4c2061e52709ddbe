"""Per-epoch checkpoints: everything a run needs to carry on exactly where it stopped.

Written atomically (a temporary file, flushed to disk, then renamed over the old one), so a
kill at any moment leaves either the previous checkpoint or the new one, never half of one.
Loaded with `weights_only=True`: only tensors and plain containers, so a tampered file cannot
run code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_VERSION = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        torch.save({"version": CHECKPOINT_VERSION, **state}, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is none (or it is from another version)."""
    if not path.exists():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state if state.get("version") == CHECKPOINT_VERSION else None
