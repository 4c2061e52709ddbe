"""`paramsplit replay`: the adaptive policy simulated on a finished full-grid study."""

from __future__ import annotations

from typing import Annotated

import typer

from paramsplit.cli import render
from paramsplit.cli.answer_commands import (
    AccuracyOption,
    AlphaOption,
    SignificanceFlag,
    StudyOption,
)
from paramsplit.cli.options import DEFAULT_DB, JsonFlag, open_store
from paramsplit.cli.study_commands import DbOption
from paramsplit.errors import UsageError

# `adaptive` (the only policy before the exact search) is what `--adaptive` runs: exact.
POLICIES = ("exact", "bisection", "adaptive")


def replay(
    db: DbOption = DEFAULT_DB,
    study: StudyOption = None,
    policy: Annotated[
        str,
        typer.Option(
            help="The policy to replay: exact (a walk down from the largest budget, every "
            "seed: what --adaptive runs; also 'adaptive') or bisection (cheaper, assumes "
            "monotone verdicts)."
        ),
    ] = "exact",
    early: Annotated[
        bool | None,
        typer.Option(
            "--early/--no-early", help="Early verdicts at rungs (bisection only; default on)."
        ),
    ] = None,
    require_significance: SignificanceFlag = False,
    alpha: AlphaOption = 0.05,
    accuracy: AccuracyOption = "prob",
    as_json: JsonFlag = False,
) -> None:
    """Simulate an adaptive policy on a finished study: its compute, and whether every EST
    and the recommendation come out the same as the full study's."""
    from paramsplit.adaptive.replay import replay as replay_policy
    from paramsplit.adaptive.stored import load_records, load_settings
    from paramsplit.analysis import latest_study
    from paramsplit.analysis.records import check_accuracy

    if policy not in POLICIES:
        raise UsageError(f"--policy must be one of {', '.join(POLICIES)}, got '{policy}'")
    search = "exact" if policy == "adaptive" else policy
    if early and search == "exact":
        raise UsageError("--early needs --policy bisection: the exact search never stops early")
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha must be in (0, 1), got {alpha}")
    check_accuracy(accuracy)
    with open_store(db, create=False) as store:
        name = study or latest_study(store)
        settings = load_settings(
            store, name, search=search, early=early is not False,
            require_significance=require_significance, alpha=alpha, accuracy=accuracy,
        )  # fmt: skip
        records = load_records(store, name)
    left = [r for r in records if r.status not in ("done", "failed")]
    if left:
        raise UsageError(
            f"study '{name}' has {len({r.run_id for r in left})} runs not done "
            f"({left[0].status}, e.g. {left[0].design} seed {left[0].seed}); replay needs a "
            "finished full-grid study"
        )
    result = replay_policy(name, settings, records)
    if as_json:
        render.print_json(result.to_dict())
    else:
        from paramsplit.cli.render_adaptive import render_replay

        render_replay(result)
