"""Terminal output for adaptive studies: the policy's state, what it saved, and replays."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from paramsplit.cli.render import console
from paramsplit.quantities import format_budget

if TYPE_CHECKING:  # type names only: rendering must not import torch
    from paramsplit.adaptive import Decision, PairState
    from paramsplit.adaptive.answer import Saving
    from paramsplit.adaptive.replay import ReplayResult


def _ladder(state: PairState) -> str:
    """'4.52k✗ 5.38k– 7.15k… 39.8k✓': each budget's verdict, – skipped, … training."""
    return "  ".join(
        f"{format_budget(s.budget_params)}{s.mark}"
        + (f"(e{s.early.epoch})" if s.early is not None else "")
        + (f"({len(s.seeds)}s)" if s.settled and s.early is None else "")
        for s in state.steps
    )


def render_policy(decision: Decision) -> None:
    """Each comparison's ladder as the policy sees it, and what it is doing there."""
    from paramsplit.adaptive import pair_label

    for state in decision.pairs:
        where = "done" if state.done else "searching"
        console.print(
            f"  {escape(pair_label(state.pair))}: {where}, {state.search.mode} — "
            f"{escape(state.search.note)}"
        )
        console.print(f"    [dim]{escape(_ladder(state))}[/]")
    console.print(
        "    [dim]✓ win  ✗ loss or tie  … training  – skipped  · no comparison; "
        "(3s) judged on 3 seeds a side, (e2) early at epoch 2[/]"
    )


def render_saving(saving: Saving, *, policy: bool = True) -> None:
    """What an adaptive study skipped, stopped and spent, each with its reason; `policy`:
    which search ran, first."""
    if policy and saving.policy:
        console.print(f"  [dim]{escape(saving.policy)}[/]")
    console.print(f"  compute: {escape(saving.describe())}")
    for title, count, lines in (
        ("budgets skipped", saving.num_skipped, saving.skipped),
        ("comparisons on fewer seeds", len(saving.fewer_seeds), saving.fewer_seeds),
        ("comparisons stopped early", len(saving.stopped), saving.stopped),
    ):
        if lines:
            console.print(f"  {title} ({count}):")
            for line in lines:
                console.print(f"    [dim]{escape(line)}[/]")


def render_adaptive_status(
    study: str, decision: Decision, saving: Saving, counts: dict[str, int]
) -> None:
    left = len(decision.want)
    state = "finished" if decision.finished else f"{left} run(s) wanted now"
    console.print(
        f"{escape(study)} (adaptive): {counts['done']} done, {counts['running']} running, "
        f"{counts.get('stopped', 0)} stopped early, {counts['failed']} failed of "
        f"{counts['total']} runs in the full grid; the policy: {state}"
    )
    console.print(f"  [dim]{escape(saving.policy)}[/]")
    render_policy(decision)
    render_saving(saving, policy=False)


def render_replay(result: ReplayResult) -> None:
    settings = result.settings
    console.print(
        f"[bold]replay of {escape(result.study)}[/] under the adaptive policy, "
        f"{settings.search} ({len(settings.seeds)} seeds, {settings.epochs} epochs)"
    )
    console.print(f"  [dim]{escape(settings.describe())}[/]")
    console.print(f"  compute: {escape(result.saving.describe())}")
    same = sum(p.same for p in result.pairs)
    console.print(f"  ESTs: {same} of {len(result.pairs)} the same as the full study's")
    for pair in result.pairs:
        mark = "[green]same[/]" if pair.same else "[red]DIFFERENT[/]"
        console.print(f"  {mark} {escape(pair.adaptive.describe())}")
        if not pair.same:
            console.print(f"    full study: {escape(pair.full.describe())}")
        console.print(f"    [dim]full:     {escape(pair.full.sequence)}[/]")
        console.print(f"    [dim]adaptive: {escape(pair.adaptive.sequence)}[/]")
        for why in pair.why:
            console.print(f"    why: {escape(why)}", style="yellow")
    for answer in result.recommendations:
        mark = "[green]same[/]" if answer.same else "[red]DIFFERENT[/]"
        console.print(
            f"  {mark} recommendation at {format_budget(answer.budget_params)}: "
            f"{escape(str(answer.adaptive_choice))} (full study: {escape(str(answer.full_choice))})"
        )
    e = result.errors
    console.print(
        f"  shortcuts: {e.fewer_seeds} verdicts settled on fewer seeds ({e.fewer_seeds_wrong} "
        f"turned around by all seeds), {e.early} early verdicts ({e.early_wrong} wrong), "
        f"{e.skipped} budgets skipped ({e.skipped_wrong} of them a non-win the EST "
        "assumed a win)"
    )
    verdict = "the same answer" if result.same else "a DIFFERENT answer"
    console.print(f"[bold]{verdict}[/] for {result.saving.fraction:.1%} of the member-epochs")
