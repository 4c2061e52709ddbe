"""The `paramsplit` commands. Each parses its options, calls the API and renders the result."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from paramsplit.cli import render
from paramsplit.cli.answer_commands import recommend, report
from paramsplit.cli.demo_command import demo
from paramsplit.cli.export_command import export
from paramsplit.cli.measure_command import measure
from paramsplit.cli.options import (
    BatchOption,
    ClassesOption,
    InputOption,
    JsonFlag,
    reports_errors,
)
from paramsplit.cli.replay_command import replay
from paramsplit.cli.study_commands import run, status
from paramsplit.cli.train_command import train

app = typer.Typer(
    help="One CNN or an ensemble of smaller ones under the same parameter budget?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.command()
@reports_errors
def families(as_json: JsonFlag = False) -> None:
    """List the CNN families, their knobs and published configurations."""
    from paramsplit.families import FAMILIES

    if as_json:
        render.print_json(
            [
                {
                    "name": f.name,
                    "title": f.title,
                    "width": f.width_meaning,
                    "stage_widths": f.stage_meaning,
                    "stage_multipliers": list(f.stage_multipliers),
                    "depth_rule": f.depth_rule,
                    "default": f"{f.name}-{f.default_depth}-{f.default_width}",
                    "published": {p.name: p.params for p in f.published},
                }
                for f in FAMILIES
            ]
        )
    else:
        render.render_families(FAMILIES)


@app.command()
@reports_errors
def describe(
    name: Annotated[str, typer.Argument(help="FAMILY-DEPTH-WIDTH, e.g. wrn-28-10 or resnet-56.")],
    members: Annotated[int, typer.Option(help="Memory of k such networks (loop and fused).")] = 1,
    input_shape: InputOption = "3x32x32",
    classes: ClassesOption = 10,
    batch: BatchOption = 128,
    as_json: JsonFlag = False,
) -> None:
    """Exact parameters, FLOPs and memory (training step and inference) of one network."""
    from paramsplit.measure.memory import count_design_memory
    from paramsplit.planner.accounting import describe as describe_arch
    from paramsplit.specs import TrainConfig, parse_input

    input_spec = parse_input(input_shape, classes)
    description = describe_arch(name, input_spec)
    config = TrainConfig(batch_size=batch)
    memory = count_design_memory(description.profile.arch, members, input_spec, config)
    data = description.to_dict() | memory.summary()
    if as_json:
        render.print_json(data)
    else:
        render.render_description(data)


@app.command()
@reports_errors
def plan(
    family: Annotated[
        str | None, typer.Option(help="Family for budget mode: resnet, wrn, densenet-bc, vgg.")
    ] = None,
    budget: Annotated[
        str | None, typer.Option(help="Parameter budget: 1M, 250k, 2e6, 1,000,000.")
    ] = None,
    single: Annotated[
        str | None, typer.Option(help="Single network for the study's method, e.g. resnet-56.")
    ] = None,
    members: Annotated[str, typer.Option(help="Ensemble sizes k, e.g. 2,4,8.")] = "2,4,8",
    depth: Annotated[
        int | None, typer.Option(help="Depth in budget mode (default: the family's).")
    ] = None,
    match: Annotated[str, typer.Option(help="Matching rule: le, nearest or tol:X.")] = "le",
    match_tolerance: Annotated[
        str,
        typer.Option(help="Matched range of total / |S| for a warning-free row: LOW,HIGH."),
    ] = "0.9,1.0",
    input_shape: InputOption = "3x32x32",
    classes: ClassesOption = 10,
    batch: BatchOption = 128,
    memory: Annotated[
        bool, typer.Option(help="Count each design's training memory (about 1 s a design).")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """The design space: a single network and its deq/weq ensembles, each matched to the
    single network's exact parameter count |S|."""
    from paramsplit.planner import plan as plan_designs
    from paramsplit.planner import plan_warnings
    from paramsplit.quantities import parse_tolerance
    from paramsplit.specs import check_depth, parse_input

    if depth is not None:
        check_depth(depth)
    input_spec = parse_input(input_shape, classes)
    rows = plan_designs(
        family,
        budget,
        members,
        single=single,
        depth=depth,
        match=match,
        input_spec=input_spec,
        tolerance=parse_tolerance(match_tolerance),
    )
    counted: list[dict[str, Any]] = [{} for _ in rows]
    if memory:
        from paramsplit.measure.memory import plan_memory_keys
        from paramsplit.specs import TrainConfig

        config = TrainConfig(batch_size=batch)
        for row, keys in zip(rows, counted, strict=True):
            if row.member is not None:
                keys |= plan_memory_keys(row.member, row.num_members, input_spec, config)
    if as_json:  # each row says whether it is matched, and if not, why
        render.print_json([row.to_dict() | keys for row, keys in zip(rows, counted, strict=True)])
    else:
        render.render_plan(rows, plan_warnings(rows), memory=counted)


app.command()(reports_errors(train))
app.command()(reports_errors(run))
app.command()(reports_errors(status))
app.command()(reports_errors(report))
app.command()(reports_errors(recommend))
app.command()(reports_errors(demo))
app.command()(reports_errors(measure))
app.command()(reports_errors(export))
app.command()(reports_errors(replay))
