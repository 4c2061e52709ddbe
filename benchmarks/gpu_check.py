"""The GPU check: one command to run whenever a GPU is at hand (`make gpu-check`).

On one GPU it takes under 5 minutes and prints one table of ratios:
1. the GPU-marked tests (`pytest -m gpu`);
2. fused against loop training throughput, stepped in alternation on one batch, for
   resnet-20 members of 0.1, 0.27 and 1.0M parameters at k = 4 and 8, in fp32 and bf16,
   with and without channels_last (member-images/s; > 1 means fused is faster);
3. the exact memory count (fake CUDA tensors, `paramsplit.measure.memory`) against
   `torch.cuda.max_memory_allocated` over the same training step or inference call (>= 1:
   the allocator also hands out cuDNN and cuBLAS workspaces, which are not tensors);
4. a 2-epoch study on CIFAR-shaped synthetic tensors through the whole pipeline (plan,
   train, measure, store, `paramsplit measure`, analysis): ensemble / single cost ratios.

Without CUDA it runs a small CPU version of every part (as `--quick`), skips what needs
CUDA and says so, so that the script itself stays tested:
`.venv/bin/python benchmarks/gpu_check.py [--quick] [--device cuda]`.
Exits with 1 when a GPU test fails or a figure is out of its allowed range.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import paramsplit as ps
from paramsplit.analysis import analyse_store
from paramsplit.data import Augmentation, DatasetTensors
from paramsplit.measure.counting import (
    MemoryCount,
    count_inference,
    count_predict,
    count_step,
    count_train_step,
    reach_steady_state,
)
from paramsplit.specs import InputSpec, TrainConfig
from paramsplit.store import Store
from paramsplit.study import StudyDefinition, run_study
from paramsplit.study.measuring import measure_study
from paramsplit.train import make_executor
from paramsplit.train.executors import Executor

ROOT = Path(__file__).resolve().parents[1]
CIFAR = InputSpec(3, 32, 32, 10)
# The allocator may exceed the count by workspaces; see tests/test_memory.py.
ALLOCATOR_ABOVE_FRACTION = 0.25
ALLOCATOR_ABOVE_BYTES = 64 * 2**20
MiB = 2**20


@dataclass(frozen=True)
class Scale:
    """How big each part runs: the GPU check, or its small CPU version."""

    widths: tuple[int, ...]  # resnet-20 members (`paramsplit describe resnet-20-W`)
    members: tuple[int, ...]
    variants: tuple[tuple[str, bool], ...]  # (precision, channels_last)
    batch_size: int
    warmup_steps: int
    timed_rounds: int
    memory_width: int
    study_images: int
    study_budget: int
    study_members: int
    study_designs: tuple[str, ...]


GPU = Scale(
    widths=(10, 16, 31),  # 0.11M, 0.27M and 1.02M parameters
    members=(4, 8),
    variants=(("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True)),
    batch_size=128,
    warmup_steps=3,
    timed_rounds=7,
    memory_width=16,
    study_images=4096,
    study_budget=300_000,
    study_members=4,
    study_designs=("single", "deq", "weq"),
)
QUICK = Scale(
    widths=(2,),
    members=(4,),
    variants=(("fp32", False),),
    batch_size=16,
    warmup_steps=1,
    timed_rounds=3,
    memory_width=2,
    study_images=256,
    study_budget=5_000,
    study_members=2,
    study_designs=("single", "deq"),
)


@dataclass(frozen=True)
class Row:
    check: str
    case: str
    ratio: float | None
    detail: str
    ok: bool = True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_tests(cuda: bool) -> list[Row]:
    """The GPU-marked tests, in a child pytest: one row with its summary line."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    summary = lines[-1].strip("= ") if lines else done.stderr.strip()[-300:]
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|error)", summary)}
    ran = sum(counts.values())
    # Exit code 5: no test was collected (none selected), which is no failure.
    ok = done.returncode in (0, 5) and not counts.get("failed") and not counts.get("error")
    note = summary if cuda else f"no CUDA device, so they skip: {summary}"
    ratio = counts.get("passed", 0) / ran if ran else None
    return [Row("GPU tests passed", "pytest -m gpu", ratio, note, ok)]


def _median_step_s(
    executors: dict[str, Executor],
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    scale: Scale,
) -> dict[str, float]:
    """Median seconds per training step of each executor, stepped in alternation."""
    times: dict[str, list[float]] = {name: [] for name in executors}
    for step in range(scale.warmup_steps + scale.timed_rounds):
        for name, executor in executors.items():
            _sync(device)
            began = time.perf_counter()
            executor.train_step(images, labels)
            _sync(device)
            if step >= scale.warmup_steps:
                times[name].append(time.perf_counter() - began)
    return {name: statistics.median(values) for name, values in times.items()}


def fused_vs_loop(device: torch.device, scale: Scale) -> list[Row]:
    rows = []
    batch = scale.batch_size
    for width in scale.widths:
        arch = ps.ArchSpec("resnet", 20, width)
        for k in scale.members:
            images = torch.randn(k, batch, *CIFAR.shape, device=device)
            labels = torch.randint(10, (k, batch), device=device)
            for precision, channels_last in scale.variants:
                config = TrainConfig(
                    batch_size=batch, precision=precision, channels_last=channels_last
                )
                executors = {
                    name: make_executor(name, arch, CIFAR, list(range(k)), config, device)
                    for name in ("loop", "fused")
                }
                step_s = _median_step_s(executors, images, labels, device, scale)
                rate = {name: k * batch / seconds for name, seconds in step_s.items()}
                setting = precision + (", channels_last" if channels_last else "")
                case = f"{k}x {arch.name} ({ps.count_params(arch):,} params), {setting}"
                detail = f"loop {rate['loop']:,.0f}, fused {rate['fused']:,.0f} member-img/s"
                rows.append(
                    Row("fused / loop training", case, rate["fused"] / rate["loop"], detail)
                )
    return rows


def allocator_peak_bytes(
    execution: str, arch: ps.ArchSpec, k: int, config: TrainConfig, training: bool
) -> tuple[int, MemoryCount]:
    """The CUDA allocator's peak over one training step or inference call (what it handed
    out beyond what was there before), and the live-tensor count of the same call."""
    device = torch.device("cuda")
    _sync(device)
    before = torch.cuda.memory_allocated(device)
    executor = make_executor(execution, arch, CIFAR, list(range(k)), config, device)
    executor.set_training(training)
    batch = config.batch_size
    if training:
        images = torch.randn(k, batch, *CIFAR.shape, device=device)
        labels = torch.randint(10, (k, batch), device=device)
        reach_steady_state(executor)
        executor.train_step(images, labels)  # algorithms chosen, workspaces taken once
    else:
        images = torch.randn(batch, *CIFAR.shape, device=device)
        executor.predict(images)
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    if training:
        real = count_step(executor, images, labels, device)
    else:
        real = count_predict(executor, images, device)
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - before, real


def _count(
    execution: str,
    arch: ps.ArchSpec,
    k: int,
    config: TrainConfig,
    training: bool,
    device: torch.device,
    allocate: bool = False,
) -> MemoryCount:
    where = str(device)
    if training:
        return count_train_step(execution, arch, CIFAR, k, config, where, allocate=allocate)
    batch = config.batch_size
    return count_inference(execution, arch, CIFAR, k, config, batch, where, allocate=allocate)


def memory_against_allocator(device: torch.device, scale: Scale) -> list[Row]:
    """The count (no memory used) against the CUDA allocator, or real CPU tensors."""
    arch, k = ps.ArchSpec("resnet", 20, scale.memory_width), 4
    cases = [("loop", "fp32", True), ("fused", "fp32", True), ("fused", "bf16", True),
             ("fused", "fp32", False)]  # fmt: skip
    rows = []
    for execution, precision, training in cases:
        config = TrainConfig(batch_size=scale.batch_size, precision=precision)
        case = f"{k}x {arch.name} {execution} {precision} " + ("step" if training else "inference")
        counted = _count(execution, arch, k, config, training, device)
        if device.type != "cuda":
            real = _count(execution, arch, k, config, training, device, allocate=True)
            detail = "no CUDA allocator here: the same count on real CPU tensors"
            rows.append(Row("real tensors / count", case, real.peak_bytes / counted.peak_bytes,
                            detail, real == counted))  # fmt: skip
            continue
        allocated, real = allocator_peak_bytes(execution, arch, k, config, training)
        highest = counted.peak_bytes * (1 + ALLOCATOR_ABOVE_FRACTION) + ALLOCATOR_ABOVE_BYTES
        ok = real == counted and counted.peak_bytes <= allocated <= highest
        detail = (
            f"count {counted.peak_bytes / MiB:.1f} MiB (real tensors "
            f"{real.peak_bytes / MiB:.1f}), allocator {allocated / MiB:.1f} MiB"
        )
        rows.append(Row("CUDA allocator / count", case, allocated / counted.peak_bytes, detail, ok))
    return rows


def synthetic_cifar(num_images: int, device: torch.device) -> DatasetTensors:
    """Random CIFAR-shaped uint8 images and labels, already on the device."""
    generator = torch.Generator().manual_seed(0)
    shape = (num_images, *CIFAR.shape)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator).to(device)
    labels = torch.randint(10, (num_images,), generator=generator).to(device)
    eighth = num_images // 8
    return DatasetTensors(
        name="synthetic-cifar",
        train_images=images[2 * eighth :],
        train_labels=labels[2 * eighth :],
        val_images=images[:eighth],
        val_labels=labels[:eighth],
        test_images=images[eighth : 2 * eighth],
        test_labels=labels[eighth : 2 * eighth],
        class_names=tuple(str(i) for i in range(10)),
        mean=torch.full((3,), 0.5, device=device),
        std=torch.full((3,), 0.25, device=device),
        augmentation=Augmentation.NONE,
        crop_padding=0,
    )


COMPARED = (
    ("epoch_time_s", "epoch time"),
    ("latency_ms_batch1", "latency, batch 1"),
    ("peak_train_memory_bytes", "training memory, all k at once"),
    ("loop_train_memory_bytes", "training memory, one at a time"),
)


def pipeline(device: torch.device, scale: Scale) -> list[Row]:
    """A 2-epoch study end to end; ensemble / single cost ratios from its analysis."""
    data = synthetic_cifar(scale.study_images, device)
    study = StudyDefinition(
        "gpu-check",
        ("resnet",),
        (scale.study_budget,),
        members=(scale.study_members,),
        designs=scale.study_designs,
        datasets=(data.name,),
        config=TrainConfig(epochs=2, batch_size=min(128, scale.study_images // 8)),
    )
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, Store.open(Path(folder) / "check.db") as store:
        counts = run_study(store, study, device=device, datasets={data.name: data})
        sizes, inputs = (1, 64), {data.name: CIFAR}
        measure_study(store, study.name, device=device, batch_sizes=sizes, input_specs=inputs)
        analysis = analyse_store(store, study.name)
    done, total = counts.get("done", 0), counts.get("total", 0)
    detail = f"{done} of {total} done, {counts.get('failed', 0)} failed, in "
    detail += f"{time.perf_counter() - began:.0f} s"
    ok = done == total > 0
    rows = [Row("study runs done", study.name, done / total if total else None, detail, ok)]
    for row in analysis.comparisons:
        for key, label in COMPARED:
            ratio = row.cost_ratios.get(key)
            budget = f"budget {row.ensemble.budget_params:,}"
            rows.append(Row(f"study: ensemble / single {label}", row.ensemble.design, ratio,
                            budget, ratio is not None))  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description="The GPU check (see the module docstring).")
    parser.add_argument("--quick", action="store_true", help="the small CPU version")
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (the GPU if any)")
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    scale = GPU if cuda and not args.quick else QUICK
    if not cuda:
        torch.set_num_threads(1)  # tiny networks, shared cores (REFERENCE.md)
    console = Console(width=None if sys.stdout.isatty() else 150)
    where = torch.cuda.get_device_name(device) if cuda else "CPU: no CUDA, GPU parts skipped"
    console.print(f"{where}; torch {torch.__version__}; {'quick' if scale is QUICK else 'full'}")
    rows: list[Row] = []
    parts = [
        ("GPU tests", lambda: gpu_tests(cuda)),
        ("fused vs loop", lambda: fused_vs_loop(device, scale)),
        ("memory", lambda: memory_against_allocator(device, scale)),
        ("study", lambda: pipeline(device, scale)),
    ]
    for name, part in parts:
        began = time.perf_counter()
        rows += part()
        console.print(f"  {name}: {time.perf_counter() - began:.0f} s", style="dim")
    table = Table(title="GPU check: ratios", title_justify="left")
    for column in ("check", "case", "ratio", "detail", "ok"):
        table.add_column(column, justify="right" if column == "ratio" else "left")
    for row in rows:
        ratio = "—" if row.ratio is None else f"{row.ratio:.3f}"
        table.add_row(row.check, row.case, ratio, row.detail, "✓" if row.ok else "[red]✗[/]")
    console.print(table)
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
