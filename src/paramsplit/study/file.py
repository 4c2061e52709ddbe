"""Study files: a study written down in TOML, validated before anything runs.

    name = "resnet-digits"
    families = ["resnet"]
    budgets = ["25k", "50k", 100000]
    members = [2, 4]
    designs = ["single", "deq", "weq"]
    datasets = ["digits"]
    seeds = 3                 # seeds 0, 1, 2 (or a list)
    singles = ["densenet-bc-40-12"]                         # and/or single networks by name,
    grid = {family = "resnet", widths = [16, 24], depths = [26, 38]}   # or as a grid
    measure = "first-seed"    # after each run: all, first-seed, latency or none
    keep_weights = true       # each finished run keeps its weights (for paramsplit export)
    adaptive = true           # train only what the answer needs (paramsplit.adaptive):
                              # true or "exact", or "bisection" (cheaper, assumes monotone)
    [train]                   # any TrainConfig field
    epochs = 30
    batch_size = 64

Parsed with the standard library's `tomllib` (no code runs); every error names the file, the
field and, where it can be found, the line.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paramsplit.errors import ParamSplitError, StudyFileError
from paramsplit.families import get_family
from paramsplit.quantities import parse_budget, parse_members
from paramsplit.specs import ArchSpec, TrainConfig, check_depth
from paramsplit.study.checks import (
    MAX_STUDY_RUNS,
    MEASURE_CHOICES,
    check_train_settings,
    seed_range,
)
from paramsplit.study.definition import StudyDefinition

STUDY_KEYS = ("name", "families", "budgets", "singles", "grid", "members", "designs",
              "datasets", "seeds", "depth", "match", "measure", "keep_weights", "adaptive",
              "train")  # fmt: skip
TRAIN_KEYS = tuple(field.name for field in dataclasses.fields(TrainConfig))
# A study file is a page of TOML; a bigger one is the wrong file (or /dev/zero).
MAX_STUDY_FILE_BYTES = 1_000_000


def _where(path: Path, text: str, key: str) -> str:
    match = re.search(rf"^\s*{re.escape(key)}\s*=", text, flags=re.MULTILINE)
    line = f", line {text.count(chr(10), 0, match.start()) + 1}" if match else ""
    return f"{path}{line}"


def where_in_file(path: str | Path, field: str) -> str:
    """`PATH, line N` of a study field (`train.epochs` is `epochs`), or `PATH` alone."""
    path = Path(path)
    try:
        text = _read(path)
    except StudyFileError:
        return str(path)
    return _where(path, text, field.rpartition(".")[2])


def _strings(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise TypeError("expected a string or a list of strings")
    return tuple(items)


def _whole(value: Any) -> int:
    """A TOML integer: no float, no bool, no text ('depth = 21.5' is not a depth)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, got {value!r}")
    return value


def _wholes(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list of whole numbers, got {value!r}")
    return tuple(_whole(v) for v in value)


def _grid(value: Any) -> tuple[str, ...]:
    """`{family = "resnet", widths = [16, 24], depths = [26, 38]}` -> the 4 single networks."""
    if not isinstance(value, dict) or set(value) != {"family", "widths", "depths"}:
        raise TypeError("expected a table with family, widths and depths")
    family = get_family(value["family"]).name
    widths, depths = _wholes(value["widths"]), _wholes(value["depths"])
    if len(widths) * len(depths) > MAX_STUDY_RUNS:  # before naming a million networks
        raise ValueError(f"{len(widths)} widths × {len(depths)} depths is too many networks")
    return tuple(
        ArchSpec(family, check_depth(depth), width).name for depth in depths for width in widths
    )


def _seeds(value: Any) -> tuple[int, ...]:
    """`seeds = 3` (seeds 0, 1, 2) or `seeds = [0, 7]`."""
    return seed_range(value) if isinstance(value, int) else _wholes(value)


def _read(path: Path) -> str:
    """The file's text; one error for a missing, unreadable, huge or binary file."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_STUDY_FILE_BYTES + 1)
    except OSError as error:
        raise StudyFileError(f"cannot read study file {path}: {error.strerror}") from None
    if len(data) > MAX_STUDY_FILE_BYTES:
        raise StudyFileError(
            f"study file {path} is over {MAX_STUDY_FILE_BYTES:,} bytes: not a study file"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise StudyFileError(
            f"study file {path} is not text (byte {data[error.start]:#04x} at offset "
            f"{error.start} is not UTF-8); a study file is TOML"
        ) from None


def _measure(value: Any) -> str:
    if value not in MEASURE_CHOICES:
        raise ValueError(f"expected one of {', '.join(MEASURE_CHOICES)}, got {value!r}")
    return str(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _adaptive(value: Any) -> bool | str:
    if isinstance(value, bool) or value in ("exact", "bisection"):
        return value
    raise TypeError(f'expected true, false, "exact" or "bisection", got {value!r}')


def load_study_file(path: str | Path) -> StudyDefinition:
    """Read and validate a TOML study file."""
    path = Path(path)
    text = _read(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise StudyFileError(f"{path}: not valid TOML: {error}") from None
    unknown = sorted(set(data) - set(STUDY_KEYS))
    if unknown:
        raise StudyFileError(
            f"{_where(path, text, unknown[0])}: unknown field '{unknown[0]}'; "
            f"allowed: {', '.join(STUDY_KEYS)}"
        )
    train = data.get("train", {})
    unknown = sorted(set(train) - set(TRAIN_KEYS)) if isinstance(train, dict) else ["train"]
    if unknown:
        raise StudyFileError(
            f"{_where(path, text, unknown[0])}: unknown training setting '{unknown[0]}'; "
            f"allowed: {', '.join(TRAIN_KEYS)}"
        )
    fields: dict[str, Any] = {"name": data.get("name", path.stem)}
    converters: dict[str, Callable[[Any], Any]] = {
        "families": _strings,
        "budgets": lambda v: tuple(parse_budget(b) for b in (v if isinstance(v, list) else [v])),
        "members": lambda v: tuple(
            parse_members(",".join(map(str, v if isinstance(v, list) else [v])))
        ),
        "singles": _strings,
        "grid": _grid,
        "designs": _strings,
        "datasets": _strings,
        "seeds": _seeds,
        "depth": _whole,
        "match": str,
        "measure": _measure,
        "keep_weights": _boolean,
        "adaptive": _adaptive,
    }
    for key, convert in converters.items():
        if key not in data:
            continue
        try:
            value = convert(data[key])
            if key == "grid":  # the study's method: a grid of single networks
                key, value = "singles", fields.get("singles", ()) + value
            fields[key] = value
        except ParamSplitError as error:
            reason = str(error).removeprefix(f"field '{error.field}': ")
            raise StudyFileError(f"{_where(path, text, key)}: field '{key}': {reason}") from None
        except (TypeError, ValueError) as error:
            raise StudyFileError(f"{_where(path, text, key)}: field '{key}': {error}") from None
    try:
        check_train_settings(train)
        fields["config"] = TrainConfig.from_dict(train)
        return StudyDefinition(**fields)
    except ParamSplitError as error:
        # TrainConfig's range errors begin with the setting's name ("epochs must be >= 1").
        setting = str(error).split(" ", 1)[0]
        key = (error.field or "").rpartition(".")[2] or (setting if setting in train else "")
        where = _where(path, text, key) if key else str(path)
        raise StudyFileError(f"{where}: {error}") from None
