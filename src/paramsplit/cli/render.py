"""Turning the API's data into terminal output: tables and units. Nothing here computes."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from paramsplit.quantities import format_bytes

if TYPE_CHECKING:  # type names only: rendering must not import torch
    from paramsplit.families import FamilyInfo
    from paramsplit.planner import PlannedDesign

# Piped output gets room for a plan's columns instead of rich's 80-column default.
_PIPE_WIDTH = 140
console = Console(highlight=False, width=None if sys.stdout.isatty() else _PIPE_WIDTH)
# An error is one line (see STYLE.md): piped or captured stderr gets room for the longest
# message with its paths, so that rich never wraps it into two.
_ERROR_PIPE_WIDTH = 400
error_console = Console(
    stderr=True, highlight=False, width=None if sys.stderr.isatty() else _ERROR_PIPE_WIDTH
)


def print_json(data: Any) -> None:
    # Plain print, not rich: JSON must reach pipes byte-exact, without wrapping or colour.
    print(json.dumps(data, indent=2))


def format_count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def format_flops(value: int | None) -> str:
    if value is None:
        return "—"
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value} FLOP"


def render_families(families: Sequence[FamilyInfo]) -> None:
    table = Table(title="CNN families", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("family", "width knob", "depth", "default"):
        table.add_column(column)
    for info in families:
        table.add_row(
            f"[bold]{info.name}[/]\n[dim]{info.title}[/]",
            f"{info.width_meaning}\n[dim]or dotted, {info.stage_meaning}[/]",
            f"{info.depth_rule}\n[dim]{info.depth_meaning}[/]",
            f"{info.name}-{info.default_depth}-{info.default_width}",
        )
    console.print(table)
    published = Table(
        title="Published configurations (3×32×32 input, 10 classes)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for column, justify in (("name", "left"), ("params", "right"), ("paper", "right")):
        published.add_column(column, justify=justify)  # type: ignore[arg-type]
    published.add_column("source")
    for info in families:
        for config in info.published:
            published.add_row(config.name, f"{config.params:,}", config.reported, config.source)
    console.print(published)


def _breakdown(breakdown: dict[str, int]) -> str:
    return ", ".join(
        f"{name.replace('_', ' ')} {format_bytes(value)}"
        for name, value in breakdown.items()
        if value
    )


def render_description(data: dict[str, Any]) -> None:
    """`paramsplit describe`: `ArchDescription.to_dict()` with the memory summary."""
    table = Table(show_header=False, title=data["name"], title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    published = ""
    if data["published_params"] is not None:
        published = f" (published: {data['published_reported']}, {data['published_source']})"
    k = data["num_members"]
    rows = [
        ("family", data["family"]),
        ("depth / width", f"{data['depth']} / {data['width']}  ({data['units']} units per stage)"),
        ("stage widths", " / ".join(map(str, data["stage_widths"]))),
        ("input", f"{data['input']}, {data['num_classes']} classes"),
        ("parameters", f"{data['total_params']:,}{published}"),
        ("weights (fp32)", format_bytes(data["weights_bytes"])),
        ("forward FLOPs / image", format_flops(data["flops_per_image"])),
    ]
    for mode, label in (("train", "training step"), ("inference", "inference")):
        batch = data[f"{mode}_batch_size"]
        fused = data[f"{mode}_memory_bytes"]
        if k == 1:
            rows.append((f"{label} memory", f"{format_bytes(fused)} at batch {batch}"))
        else:
            loop = data[f"{mode}_memory_loop_bytes"]
            rows.append(
                (
                    f"{label} memory, {k} networks",
                    f"{format_bytes(loop)} one at a time, {format_bytes(fused)} all at once, "
                    f"at batch {batch}",
                )
            )
        rows.append(("", _breakdown(data[f"{mode}_memory_breakdown"])))
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    console.print(
        "FLOPs: forward convolutions and linear layers, 2 per multiply-accumulate, summed "
        "from each layer's shape (as torch's FlopCounterMode counts them). Memory: peak bytes "
        "of live tensors in one steady-state SGD "
        "step (or one inference call), counted exactly without allocating; the breakdown is "
        "at the peak (of all networks at once). Allocator slack, library code and the "
        "interpreter are not included.",
        style="dim",
    )


def render_plan(
    rows: Sequence[PlannedDesign],
    warnings: Sequence[str] = (),
    memory: Sequence[dict[str, Any]] | None = None,
) -> None:
    """The plan table; `warnings` (one per unmatched row) are printed below it. `memory`
    holds each row's counted memory keys (`plan_memory_keys`; empty where not counted)."""
    memory = memory if memory is not None else [{} for _ in rows]
    first = rows[0]
    assert first.member is not None, "a plan starts with its single network"
    budget = ""
    if first.budget_params != first.single_params:  # budget mode
        budget = f"budget {first.budget_params:,} params, "
    title = (
        f"{first.family}: {budget}single {first.member.name} with |S| = "
        f"{first.single_params:,} params, rule '{first.match_rule}', "
        f"input {first.input_spec.name}, {first.input_spec.num_classes} classes"
    )
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("design", no_wrap=True)
    table.add_column("class")
    for column in ("k", "member params", "total params", "vs budget", "vs |S|", "FLOPs / image"):
        table.add_column(column, justify="right")
    table.add_column("train memory\n(one at a time / all k)", justify="right")
    for row, counted in zip(rows, memory, strict=True):
        if row.design is None:
            continue
        memory_cell = format_bytes(counted.get("train_memory_loop_bytes"))
        if row.num_members > 1 and counted:
            memory_cell += f" / {format_bytes(counted['train_memory_fused_bytes'])}"
        ratio_to_single = f"{row.ratio_to_single:.3f}"
        if not row.matched:
            ratio_to_single = f"[yellow]{ratio_to_single} *[/]"
        table.add_row(
            escape(row.design.name),
            row.design_class.value,
            str(row.num_members),
            format_count(row.member_params),
            format_count(row.total_params),
            f"{row.ratio:.3f}" if row.ratio is not None else "—",
            ratio_to_single,
            format_flops(row.flops_per_image),
            memory_cell,
        )
    console.print(table)
    for row in rows:
        if row.design is None:
            better = ""
            if row.better_rule is not None:
                better = f"; {row.better_rule} gives {row.better_ratio:.3f} ({row.better_design})"
            console.print(
                f"[yellow]infeasible[/] {row.design_class.value} k={row.num_members}: "
                f"{escape(row.reason or '')}{escape(better)}"
            )
    for warning in warnings:  # the rows marked * in the table
        console.print(f"[yellow]unmatched[/] {escape(warning)}")
    num_counted = sum(row.num_counted for row in rows)
    console.print(
        "vs budget = total / budget; vs |S| = total / the single network's parameters, which "
        f"every ensemble is matched to ({num_counted} candidate members counted exactly). "
        "Dotted widths (resnet-56-8.16.31) give each stage's channels, or each dense block's "
        "growth rate. FLOPs: forward, all members, 2 per multiply-accumulate, summed from each "
        "layer's shape (as torch's FlopCounterMode counts them). Training memory: peak bytes "
        "of live tensors in one SGD step at "
        f"batch {next((m['train_batch_size'] for m in memory if m), '—')}, counted exactly "
        "(weights, gradients, momentum, batch, activations, temporaries).",
        style="dim",
    )


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def _accuracy_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Test accuracy three ways and per member, NLL and ECE, and the epoch they come from."""
    members = summary["member_test_accuracy"] or []
    nll, ece = summary["test_nll"], summary["test_ece"]
    return [
        ("test accuracy (ensemble)", _percent(summary["test_accuracy"])),
        (
            "  logit averaging / vote",
            f"{_percent(summary['test_logit_accuracy'])} / "
            f"{_percent(summary['test_vote_accuracy'])}",
        ),
        ("  per member", ", ".join(_percent(a) for a in members)),
        ("test NLL / ECE", f"{nll:.4f} / {ece:.4f}" if nll is not None else "—"),
        ("selected epoch (by val)", f"{summary['best_epoch']} of {summary['epochs_trained']}"),
    ]


def _training_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Where the training time went, throughput and, if asked, the time to a target."""
    throughput = summary["train_images_per_s"]
    rows = [
        (
            "training time",
            f"{_seconds(summary['train_time_s'])} (compute "
            f"{_seconds(summary['compute_time_s'])}, data {_seconds(summary['data_time_s'])})",
        ),
        ("epoch time (median)", _seconds(summary["epoch_time_s"])),
        ("throughput", f"{throughput:,.0f} member-images/s" if throughput else "—"),
    ]
    if summary["target_accuracy"] is not None:
        rows.append(
            (f"time to {summary['target_accuracy']:.1%} val", _seconds(summary["time_to_target_s"]))
        )
    return rows


def _design_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Size and FLOPs of the design, and the executor that trained it (with auto's timings)."""
    timings = ", ".join(f"{k} {v:.1f} ms" for k, v in summary["executor_step_ms"].items())
    return [
        (
            "parameters",
            f"{summary['total_params']:,} "
            f"({summary['num_members']} × {summary['member_params']:,})",
        ),
        ("FLOPs / image", format_flops(summary["flops_per_image"])),
        ("executor", f"{summary['executor']}" + (f" (measured: {timings})" if timings else "")),
    ]


def _measured_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Inference latency, throughput and memory measured after training (none if not)."""
    if "latency_ms_batch1" not in summary:
        return []
    return [
        (
            "inference latency, batch 1",
            f"{summary['latency_ms_batch1']:.2f} ms "
            f"(plain loop {summary['loop_latency_ms_batch1']:.2f} ms)",
        ),
        (
            "inference throughput",
            f"{summary['throughput_images_per_s']:,.0f} img/s "
            f"(plain loop {summary['loop_throughput_images_per_s']:,.0f} img/s)",
        ),
        (
            "memory, train / infer",
            f"{format_bytes(summary['peak_train_memory_bytes'])} / "
            f"{format_bytes(summary['peak_inference_memory_bytes'])} all at once; "
            f"{format_bytes(summary.get('loop_train_memory_bytes'))} / "
            f"{format_bytes(summary.get('loop_inference_memory_bytes'))} one at a time "
            f"({summary['memory_method']})",
        ),
        ("weights", format_bytes(summary["weights_bytes"])),
    ]


def render_train(summary: dict[str, Any], notes: Sequence[str] = ()) -> None:
    """The table after `paramsplit train`: accuracy, training, the design, measurements."""
    table = Table(
        title=f"{summary['design']} ({summary['design_class']}) on {summary['dataset']}, "
        f"seed {summary['seed']}: {summary['status']}",
        title_justify="left",
        show_header=False,
        box=box.SIMPLE_HEAD,
    )
    table.add_column(style="bold")
    table.add_column()
    rows = [
        *_accuracy_rows(summary),
        *_training_rows(summary),
        *_design_rows(summary),
        *_measured_rows(summary),
    ]
    if summary["reason"]:
        rows.append(("reason", summary["reason"]))
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    for note in notes:
        console.print(f"note: {note}", style="dim")


def render_status(name: str, counts: dict[str, int], eta_s: float | None) -> None:
    parts = ", ".join(f"{counts[key]} {key}" for key in ("done", "running", "pending", "failed"))
    eta = f"; about {eta_s / 60:.1f} min left" if eta_s else ""
    console.print(f"{escape(name)}: {parts} of {counts['total']} runs{eta}")
