"""Run identity: a hash of what determines a result, and JSON that is safe in every database."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from paramsplit.errors import StoreError
from paramsplit.records import RUN_SPEC_FIELDS, RunSpec, check_named

# What determines a result. Changing any of these makes a new run; two studies that ask for
# the same values (at whatever budget) share one run. The member name carries its depth and
# width, and the dataset name its input shape.
IDENTITY_KEYS = ("family", "design_class", "num_members", "member", "dataset", "config", "seed")
check_named(IDENTITY_KEYS, RUN_SPEC_FIELDS, "store.identity.IDENTITY_KEYS")
RUN_ID_LENGTH = 16  # hex digits of sha256: 64 bits, ~1e-8 chance of a collision in 1M runs


def to_jsonable(value: Any) -> Any:
    """`value` as plain JSON data: tuples to lists, enums to values, dataclasses to dicts,
    numpy scalars and arrays to numbers and lists, NaN and infinities to None (PostgreSQL's
    JSON has no NaN; a diverged run says so in its status)."""
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if hasattr(value, "tolist"):  # numpy scalars and arrays, without importing numpy
        return to_jsonable(value.tolist())
    raise StoreError(
        f"cannot store a value of type {type(value).__name__} ({value!r:.60}); "
        "allowed: numbers, strings, booleans, None, lists and dicts of them"
    )


def canonical_json(value: Any) -> str:
    """The one text of `value`: sorted keys, no whitespace."""
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"))


def spec_data(spec: RunSpec | Mapping[str, Any]) -> Mapping[str, Any]:
    """A run spec as plain data: a `RunSpec`'s dict, or the mapping as given."""
    return spec.to_dict() if isinstance(spec, RunSpec) else spec


def identity_of(spec: RunSpec | Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `spec` that determine its result, checked and in JSON form."""
    spec = spec_data(spec)
    missing = [key for key in IDENTITY_KEYS if key not in spec]
    if missing:
        raise StoreError(
            f"run spec is missing {', '.join(repr(k) for k in missing)}; "
            f"a run spec needs {', '.join(IDENTITY_KEYS)}"
        )
    identity = {key: to_jsonable(spec[key]) for key in IDENTITY_KEYS}
    for key in ("num_members", "seed"):
        if not isinstance(identity[key], int) or isinstance(identity[key], bool):
            raise StoreError(f"run spec field {key!r} must be an integer, got {spec[key]!r}")
    for key in ("family", "design_class", "member", "dataset"):
        if not isinstance(identity[key], str) or not identity[key]:
            raise StoreError(
                f"run spec field {key!r} must be a non-empty string, got {spec[key]!r}"
            )
    if not isinstance(identity["config"], dict):
        raise StoreError(f"run spec field 'config' must be a dict, got {spec['config']!r:.60}")
    return identity


def run_id_for(spec: RunSpec | Mapping[str, Any]) -> str:
    """The run's id: sha256 of the canonical JSON of its design, dataset, config and seed.

    Pass the training config with its defaults resolved (e.g. the family's weight decay), so
    that one protocol has one text. Fields outside `IDENTITY_KEYS` (the budget, the ratio,
    parameter counts) do not change the id.
    """
    text = canonical_json(identity_of(spec))
    return hashlib.sha256(text.encode()).hexdigest()[:RUN_ID_LENGTH]
