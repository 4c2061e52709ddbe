"""Per-epoch checkpoints: everything a run needs to carry on exactly where it stopped.

A checkpoint is bound to its run. It is named by the run (a study names each one by its run
id, `<run_id>.pt`), and its file starts with a header line that records that run id and a
SHA-256 of the run id and the payload, the `torch.save` bytes of the state:

    paramsplit-checkpoint {"version": 2, "run_id": ..., "payload_bytes": ..., "sha256": ...}

`load_checkpoint` refuses a file that is another run's (copied or renamed), truncated,
corrupt, or not a checkpoint of this version, with a `CheckpointError` that says which; the
caller sets it aside (`set_aside`) and starts the run afresh. The payload is loaded with
`weights_only=True`: only tensors and plain containers, so a tampered file cannot run code.

Written atomically: a temporary file created exclusively (`O_EXCL | O_NOFOLLOW`, under a
random name, in the checkpoint's folder: a planted file or symbolic link is never written
through), flushed to disk, then renamed over the old checkpoint. A kill at any moment leaves
the previous checkpoint or the new one, never half of one; a failed write (a full disk)
removes its temporary file and leaves the previous checkpoint as it was. `write_atomically`
serves the weights a study keeps (`paramsplit.study.artifacts`) too.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from paramsplit.errors import CheckpointError, DiskFullError

CHECKPOINT_VERSION = 2  # 2: the header line binding the file to its run
_MAGIC = b"paramsplit-checkpoint "
_MAX_HEADER_BYTES = 4096
REJECTED_SUFFIX = ".rejected"


def _digest(run_id: str, payload: bytes) -> str:
    return hashlib.sha256(run_id.encode() + b"\0" + payload).hexdigest()


def save_checkpoint(path: Path, state: dict[str, Any], *, run_id: str | None = None) -> None:
    """Write `state` as the checkpoint of `run_id` (default: the file's stem) at `path`."""
    owner = run_id if run_id is not None else path.stem
    buffer = io.BytesIO()
    torch.save({"version": CHECKPOINT_VERSION, **state}, buffer)
    payload = buffer.getvalue()
    header = {
        "version": CHECKPOINT_VERSION,
        "run_id": owner,
        "payload_bytes": len(payload),
        "sha256": _digest(owner, payload),
    }
    try:
        write_atomically(path, [_MAGIC + json.dumps(header).encode() + b"\n", payload])
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise DiskFullError(
            f"disk full writing checkpoint '{path}'; free space and run the same command "
            "again: the run resumes from its last checkpoint"
        ) from None


def write_atomically(path: Path, parts: Sequence[bytes], *, mode: int = 0o600) -> None:
    """Write `parts` one after the other to `path`, so that a kill leaves the old file or
    the new one (checkpoints, and the weights a study keeps).

    The temporary file is created exclusively (mkstemp: O_CREAT | O_EXCL | O_NOFOLLOW under
    a random name nobody could plant) in the same folder, so the rename stays on one file
    system; it is flushed to disk before the rename, the rename is made durable, and on any
    failure the temporary file is removed. `mode` is the file's permissions (mkstemp's own
    are private, 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(descriptor, mode)
        with open(descriptor, "wb") as file:
            for part in parts:
                file.write(part)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)  # replaces a link at `path` itself, never its target
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (a power cut could otherwise undo it)."""
    with contextlib.suppress(OSError):  # not every system can open a folder
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def load_checkpoint(path: Path, *, run_id: str | None = None) -> dict[str, Any] | None:
    """The state saved for `run_id` (default: the file's stem), or None when there is none.

    Raises `CheckpointError` for a file that cannot be used: another run's, truncated,
    corrupt, from another checkpoint version, or a symbolic link.
    """
    if not os.path.lexists(path):
        return None
    owner = run_id if run_id is not None else path.stem
    payload = _read_payload(path, owner)
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception:  # torch's message advises weights_only=False: exactly what not to do
        raise CheckpointError(
            f"checkpoint '{path}' holds more than tensors and plain containers; not loaded"
        ) from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint '{path}' is not a version {CHECKPOINT_VERSION} state")
    return state


def _read_payload(path: Path, owner: str) -> bytes:
    """The payload of the checkpoint at `path`, once its header says that it is `owner`'s
    and that it is whole."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with open(descriptor, "rb") as file:
            content = file.read()
    except OSError as error:
        reason = "is a symbolic link" if error.errno == errno.ELOOP else f"cannot be read: {error}"
        raise CheckpointError(f"checkpoint '{path}' {reason}") from None
    line, newline, _ = content[:_MAX_HEADER_BYTES].partition(b"\n")
    if not line.startswith(_MAGIC) or not newline:
        raise CheckpointError(
            f"checkpoint '{path}' is not a paramsplit checkpoint of version "
            f"{CHECKPOINT_VERSION} (no header line)"
        )
    payload = content[len(line) + 1 :]
    try:
        header = json.loads(line[len(_MAGIC) :])
        version, written_for = header["version"], header["run_id"]
        size, digest = int(header["payload_bytes"]), str(header["sha256"])
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"checkpoint '{path}' has a malformed header") from None
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint '{path}' is of version {version}, not {CHECKPOINT_VERSION}"
        )
    if written_for != owner:
        raise CheckpointError(
            f"checkpoint '{path}' belongs to run {written_for}, not to run {owner}"
        )
    if len(payload) < size:
        raise CheckpointError(
            f"checkpoint '{path}' is truncated: {len(payload):,} of {size:,} payload bytes"
        )
    if len(payload) > size or _digest(owner, payload) != digest:
        raise CheckpointError(f"checkpoint '{path}' is corrupt: its content hash does not match")
    return payload


def set_aside(path: Path) -> Path:
    """Move an unusable checkpoint out of the way (`X.pt` -> `X.pt.rejected`, replacing an
    older one), kept for inspection; returns where it went."""
    rejected = path.with_name(path.name + REJECTED_SUFFIX)
    os.replace(path, rejected)  # moves a link itself, never its target
    return rejected


def remove_checkpoint(path: Path) -> None:
    """Delete a run's checkpoint and any temporary file a killed write left beside it."""
    path.unlink(missing_ok=True)
    for leftover in path.parent.glob(f"{glob.escape(path.name)}.*.tmp"):
        leftover.unlink(missing_ok=True)
