"""A finished run's weights, kept: one safetensors file per run, its size and hash in its row.

The file holds the weights of the run's selected epoch (the one its test accuracy comes
from), member i's state dict under `member.{i}.{key}` with the keys of a single network, and
the training split's statistics the run normalised its inputs with (`normalize.mean`,
`normalize.std`, float32 [C]). Its header's metadata says what the run was: run id, design,
member network, input shape, classes, precision (see `save_run_weights`).

safetensors holds tensors and strings only, so a tampered file cannot run code; the sha256 in
the run's row catches one that was altered or swapped all the same. Files are written
atomically (an exclusively created temporary file in the same folder, flushed to disk, then
renamed): a kill at any moment leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import Tensor

import paramsplit
from paramsplit.errors import ArtifactError
from paramsplit.records import KeptWeights, RunSpec
from paramsplit.specs import ArchSpec, InputSpec, parse_arch, parse_input
from paramsplit.store.database import folder_beside
from paramsplit.store.identity import run_id_for
from paramsplit.train.checkpoint import write_atomically

if TYPE_CHECKING:
    from paramsplit.data import DatasetTensors
    from paramsplit.train import TrainResult

WEIGHTS_FORMAT = "paramsplit-weights"
WEIGHTS_FORMAT_VERSION = "1"
WEIGHTS_SUFFIX = ".safetensors"


def artifacts_dir_for(db: str) -> Path:
    """Weights live beside a SQLite file (`study.db` -> `study.artifacts/`), or in
    `paramsplit-artifacts/` for a database server."""
    return folder_beside(db, "artifacts")


def weights_path_for(folder: Path, run_id: str) -> Path:
    return folder / f"{run_id}{WEIGHTS_SUFFIX}"


def weights_file(
    run_id: str, result: TrainResult, dataset: DatasetTensors
) -> tuple[bytes, dict[str, str]]:
    """The safetensors bytes of a run's selected weights, and the metadata in their header."""
    states = result.selected_member_states
    if not states:
        raise ArtifactError(f"run {run_id} has no selected weights to keep (it trained no epoch)")
    tensors: dict[str, Tensor] = {
        f"member.{i}.{key}": tensor.detach().to("cpu").contiguous()
        for i, state in enumerate(states)
        for key, tensor in state.items()
    }
    tensors["normalize.mean"] = dataset.mean.to("cpu").contiguous()
    tensors["normalize.std"] = dataset.std.to("cpu").contiguous()
    test = result.test
    metadata = {
        "format": WEIGHTS_FORMAT,
        "format_version": WEIGHTS_FORMAT_VERSION,
        "run_id": run_id,
        "design": result.design.name,
        "design_class": result.design.design_class.value,
        "num_members": str(result.design.num_members),
        "member": result.design.member.name,
        "dataset": result.dataset,
        "input_shape": result.input_spec.name,
        "num_classes": str(result.input_spec.num_classes),
        "class_names": json.dumps(list(dataset.class_names)),
        "precision": result.config.precision,
        "seed": str(result.seed),
        "selected_epoch": str(result.best_epoch),
        "test_accuracy": repr(test.accuracy) if test else "",
        "test_examples": str(test.num_examples) if test else "",
        "executor": result.executor,
        "paramsplit_version": paramsplit.__version__,
        "torch_version": torch.__version__,
    }
    return save_tensors(tensors, metadata=metadata), metadata


def write_run_weights(
    path: Path, run_id: str, result: TrainResult, dataset: DatasetTensors
) -> KeptWeights:
    """Write a run's selected weights to `path` (atomically); where they are (the path made
    absolute), their size and hash."""
    path = path.resolve()
    data, _ = weights_file(run_id, result, dataset)
    write_atomically(path, [data], mode=0o644)  # data to share, unlike a private checkpoint
    return KeptWeights(
        weights_path=str(path),
        weights_bytes=len(data),
        weights_sha256=hashlib.sha256(data).hexdigest(),
    )


def save_run_weights(
    folder: Path, spec: RunSpec, result: TrainResult, dataset: DatasetTensors
) -> KeptWeights:
    """Keep a finished run's selected weights in `folder`, named by its run id (the hash of
    `spec`, `run_id_for`). A file that cannot be written is not the run's failure: the
    result then says why in `weights_error`, and the run is recorded all the same."""
    run_id = run_id_for(spec)
    path = weights_path_for(folder, run_id)
    try:
        return write_run_weights(path, run_id, result, dataset)
    except OSError as error:
        return KeptWeights(weights_error=f"cannot write {path}: {error.strerror or error}")


@dataclass(frozen=True)
class RunWeights:
    """A run's kept weights, checked against its row, with what its header says."""

    run_id: str
    member: ArchSpec
    num_members: int
    input_spec: InputSpec
    member_states: list[dict[str, Tensor]]
    mean: Tensor  # float32 [C], on the 0..1 scale
    std: Tensor
    metadata: dict[str, str]

    @property
    def design(self) -> str:
        return self.metadata["design"]

    @property
    def precision(self) -> str:
        return self.metadata["precision"]

    @property
    def class_names(self) -> list[str]:
        names: list[str] = json.loads(self.metadata["class_names"])
        return names


def load_run_weights(run: Mapping[str, Any]) -> RunWeights:
    """The kept weights of a run (a row of the store, `Store.run`), after checking that the
    file is there and is byte for byte the one its row records."""
    run_id = run["run_id"]
    path_text = run.get("weights_path")
    if not path_text:
        why = (run.get("metrics") or {}).get("weights_error")
        raise ArtifactError(
            f"run {run_id} kept no weights: "
            + (why or "it ran before weights were kept, or with --no-keep-weights; run it again")
        )
    path = Path(path_text)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ArtifactError(
            f"the weights of run {run_id} are missing: cannot read {path} ({error.strerror})"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != run.get("weights_sha256") or len(data) != run.get("weights_bytes"):
        raise ArtifactError(
            f"the weights of run {run_id} were altered: {path} no longer matches the sha256 "
            "recorded with the run"
        )
    return _parse(run_id, data)


def _parse(run_id: str, data: bytes) -> RunWeights:
    metadata = _header_metadata(data)
    if metadata.get("format") != WEIGHTS_FORMAT or metadata.get("run_id") != run_id:
        raise ArtifactError(f"the weights file of run {run_id} holds another run's weights")
    tensors = load_tensors(data)
    num_members = int(metadata["num_members"])
    states: list[dict[str, Tensor]] = [{} for _ in range(num_members)]
    for name, tensor in tensors.items():
        if name.startswith("member."):
            index, key = name.removeprefix("member.").split(".", 1)
            states[int(index)][key] = tensor
    return RunWeights(
        run_id=run_id,
        member=parse_arch(metadata["member"]),
        num_members=num_members,
        input_spec=parse_input(metadata["input_shape"], int(metadata["num_classes"])),
        member_states=states,
        mean=tensors["normalize.mean"],
        std=tensors["normalize.std"],
        metadata=metadata,
    )


def _header_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors header: 8 bytes of little-endian length, then JSON
    (the format's specification); `safetensors.torch.load` returns tensors only."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    metadata: dict[str, str] = header.get("__metadata__") or {}
    return metadata
