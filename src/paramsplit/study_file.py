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
from paramsplit.specs import ArchSpec, TrainConfig, parse_budget, parse_members
from paramsplit.study import MEASURE_CHOICES, StudyDefinition

STUDY_KEYS = ("name", "families", "budgets", "singles", "grid", "members", "designs",
              "datasets", "seeds", "depth", "match", "measure", "keep_weights",
              "train")  # fmt: skip
TRAIN_KEYS = tuple(field.name for field in dataclasses.fields(TrainConfig))


def _where(path: Path, text: str, key: str) -> str:
    match = re.search(rf"^\s*{re.escape(key)}\s*=", text, flags=re.MULTILINE)
    line = f", line {text.count(chr(10), 0, match.start()) + 1}" if match else ""
    return f"{path}{line}"


def _strings(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise TypeError("expected a string or a list of strings")
    return tuple(items)


def _grid(value: Any) -> tuple[str, ...]:
    """`{family = "resnet", widths = [16, 24], depths = [26, 38]}` -> the 4 single networks."""
    if not isinstance(value, dict) or set(value) != {"family", "widths", "depths"}:
        raise TypeError("expected a table with family, widths and depths")
    family = get_family(value["family"]).name
    return tuple(
        ArchSpec(family, int(depth), int(width)).name
        for depth in value["depths"]
        for width in value["widths"]
    )


def _measure(value: Any) -> str:
    if value not in MEASURE_CHOICES:
        raise ValueError(f"expected one of {', '.join(MEASURE_CHOICES)}, got {value!r}")
    return str(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def load_study_file(path: str | Path) -> StudyDefinition:
    """Read and validate a TOML study file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise StudyFileError(f"cannot read study file {path}: {error.strerror}") from None
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
        "seeds": lambda v: tuple(range(v)) if isinstance(v, int) else tuple(int(s) for s in v),
        "depth": int,
        "match": str,
        "measure": _measure,
        "keep_weights": _boolean,
    }
    for key, convert in converters.items():
        if key not in data:
            continue
        try:
            value = convert(data[key])
            if key == "grid":  # the study's method: a grid of single networks
                key, value = "singles", fields.get("singles", ()) + value
            fields[key] = value
        except (ParamSplitError, TypeError, ValueError) as error:
            raise StudyFileError(f"{_where(path, text, key)}: field '{key}': {error}") from None
    try:
        if "milestones" in train:
            train = {**train, "milestones": tuple(train["milestones"])}
        fields["config"] = TrainConfig(**train)
        return StudyDefinition(**fields)
    except (ParamSplitError, TypeError) as error:
        raise StudyFileError(f"{path}: {error}") from None
