"""Which run to export for `--recommended`: one seed of the design `recommend` chooses.

The recommendation answers with a design, measured over several seeds; a deployed model is
one of those runs. The one picked has the highest validation accuracy (the selection the
runs themselves make, never by test accuracy), ties going to the lowest seed, among the runs
that kept their weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paramsplit.analysis import (
    Constraints,
    Recommendation,
    analyse_store,
    largest_budget,
    recommend,
)
from paramsplit.errors import ArtifactError
from paramsplit.store import Store


def recommended_run(
    store: Store,
    budget: int | None,
    constraints: Constraints | None = None,
    objective: str = "accuracy",
    *,
    family: str | None = None,
    dataset: str | None = None,
    study: str | None = None,
) -> tuple[Recommendation, dict[str, Any]]:
    """The recommendation `paramsplit recommend` gives for these options, and the run of
    its design to deploy (a row of the store). No budget: the study's largest."""
    analysis = analyse_store(store, study)
    designs = analysis.one_group(family, dataset)
    answer = recommend(
        designs, budget or largest_budget(designs), constraints, objective,
        analysis.measured_latencies, analysis.records,
    )  # fmt: skip
    if answer.choice is None:
        why = answer.notes[-1] if answer.notes else "no design to recommend"
        raise ArtifactError(f"nothing to export from study '{analysis.study}': {why}")
    runs = [store.run(run_id) for run_id in answer.choice.run_ids]
    return answer, pick_run(answer.choice.design, runs)


def pick_run(design: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The finished run with kept weights and the best validation accuracy (lowest seed on
    a tie)."""
    kept = [run for run in runs if run["status"] == "done" and run.get("weights_path")]
    if not kept:
        raise ArtifactError(
            f"none of the {len(runs)} runs of {design} kept weights "
            f"({', '.join(run['run_id'] for run in runs)}): they ran before weights were "
            "kept, or with --no-keep-weights; run them again to export one"
        )
    return min(kept, key=_selection_key)


def _selection_key(run: Mapping[str, Any]) -> tuple[float, int]:
    accuracy = run.get("best_val_accuracy")
    return (-(accuracy if accuracy is not None else -1.0), run["seed"])
