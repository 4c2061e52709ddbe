"""An adaptive study as stored: its definition's settings, and its runs with their curves
so far (a running or stopped run's curve is what the early verdicts read)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from paramsplit.adaptive.policy import AdaptiveSettings
from paramsplit.analysis.records import RunRecord, record_from_row
from paramsplit.errors import StoreError

if TYPE_CHECKING:
    from paramsplit.store import Store

WITH_CURVES = ("done", "running", "stopped")


def definition_of(store: Store, study: str) -> dict[str, Any]:
    """The stored definition of `study`."""
    for row in store.studies():
        if row["name"] == study:
            return dict(row["definition"])
    raise StoreError(f"no study '{study}' in {store.url}")


def is_adaptive(definition: Mapping[str, Any]) -> bool:
    return bool(definition.get("adaptive", False))


def load_records(store: Store, study: str) -> list[RunRecord]:
    """Every run of `study`, each with its curve as far as it got (two queries)."""
    curves = store.curves(study)
    return [
        record_from_row(row, curves.get(row["run_id"], []) if row["status"] in WITH_CURVES else ())
        for row in store.runs(study)
    ]


def load_settings(store: Store, study: str, **overrides: Any) -> AdaptiveSettings:
    """The policy's settings for `study`, from its stored definition."""
    return AdaptiveSettings.for_study(definition_of(store, study), **overrides)
