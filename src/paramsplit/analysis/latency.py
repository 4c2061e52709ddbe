"""Inference latency as the analysis reads it: side by side where measured, and from where else.

`paramsplit measure` times each budget's single network and ensembles side by side, at the
batch sizes asked (the `measurements` table). Those figures are preferred. Without them a
latency falls back, and says so (`LATENCY_SOURCES`): at batch 1 to the figure each run took
right after training, alone (and perhaps beside another worker's training); at another
batch size to an estimate from the throughput measured at the largest batch, which is
optimistic (a large batch uses the hardware better than a small one).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from paramsplit.analysis.designs import DesignKey, DesignSummary
from paramsplit.analysis.records import RunRecord

if TYPE_CHECKING:
    from paramsplit.store import Store

SIDE_BY_SIDE = "side-by-side"
POST_TRAINING = "post-training"
ESTIMATED = "estimated from throughput"
LATENCY_SOURCES = (SIDE_BY_SIDE, POST_TRAINING, ESTIMATED)


@dataclass(frozen=True)
class MeasuredLatency:
    """A design's latency at one batch size, measured side by side with its budget's single
    network, through its fastest executor. Ratios are to that single network, per round."""

    family: str
    dataset: str
    budget_params: int
    design_class: str
    num_members: int
    design: str
    batch_size: int
    executor: str
    latency_ms: float
    latency_q1_ms: float | None
    latency_q3_ms: float | None
    throughput_images_per_s: float | None
    ratio_to_single: float | None
    ratio_q1: float | None
    ratio_q3: float | None
    rounds: int | None
    session_id: str
    measured_at: datetime

    @property
    def key(self) -> DesignKey:
        return (self.family, self.dataset, self.budget_params, self.design_class, self.num_members)


def measured_latencies(rows: Iterable[Mapping[str, Any]]) -> list[MeasuredLatency]:
    """The rows of the `measurements` table that count: the fastest executor's, from the
    latest session that measured each budget at each batch size."""
    by_budget: dict[tuple[Any, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["chosen"]:
            key = (row["family"], row["dataset"], row["budget_params"], row["batch_size"])
            by_budget[key].append(row)
    latest = []
    for budget_rows in by_budget.values():
        newest = max(budget_rows, key=lambda r: (r["measured_at"], r["session_id"]))
        session = newest["session_id"]
        latest += [row for row in budget_rows if row["session_id"] == session]
    names = MeasuredLatency.__dataclass_fields__
    return [MeasuredLatency(**{name: row[name] for name in names}) for row in latest]


def measured_latencies_from_store(store: Store, study: str) -> list[MeasuredLatency]:
    return measured_latencies(store.measurements(study))


def latency_at(
    summary: DesignSummary, batch_size: int, measured: Sequence[MeasuredLatency] = ()
) -> tuple[float | None, str | None]:
    """Latency of one batch of `batch_size` in ms, and its source (`LATENCY_SOURCES`);
    (None, None) when nothing measured it."""
    for latency in measured:
        if latency.key == summary.key and latency.batch_size == batch_size:
            return latency.latency_ms, SIDE_BY_SIDE
    if batch_size == 1:
        if summary.latency_ms_batch1 is None:
            return None, None
        return summary.latency_ms_batch1.median, POST_TRAINING
    if summary.throughput_images_per_s is None:
        return None, None
    return 1000.0 * batch_size / summary.throughput_images_per_s.median, ESTIMATED


def fallback_note(sources: Mapping[str, str | None], batch_size: int) -> str | None:
    """One sentence naming the designs whose latency is not side by side, or None."""
    described = {
        POST_TRAINING: "taken right after each run trained, alone, not side by side",
        ESTIMATED: "estimated from measured throughput at another batch size (optimistic)",
    }
    parts = []
    for source, description in described.items():
        designs = [design for design, used in sources.items() if used == source]
        if designs:
            parts.append(f"{', '.join(designs)}: {description}")
    if not parts:
        return None
    return (
        f"latency at batch {batch_size} — {'; '.join(parts)}; "
        f"paramsplit measure --batch {batch_size} measures them side by side"
    )


def load_notes(
    records: Iterable[RunRecord], *, train_time: bool = True, latency: bool = True
) -> list[str]:
    """What to say about loads: training times taken beside different numbers of workers
    compare unfairly (with `train_time`), and post-training latency taken beside another
    worker's training is disturbed (with `latency`)."""
    done = [record for record in records if record.done]
    notes = []
    workers = sorted({r.concurrent_workers for r in done if r.concurrent_workers is not None})
    if train_time and len(workers) > 1:
        counts = ", ".join(str(count) for count in workers)
        notes.append(
            f"training times were taken under different loads ({counts} workers sharing the "
            "machine): compare them with care"
        )
    loaded = {r.run_id for r in done if r.latency_under_load}
    if latency and loaded:
        notes.append(
            f"the post-training latency of {len(loaded)} run(s) was taken while other workers "
            "trained; paramsplit measure times the designs side by side, alone"
        )
    return notes
