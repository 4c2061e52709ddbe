"""What the study machinery costs per run, what measuring costs, and what workers buy.

1. Overhead: for the same runs, `train_design` called directly against the whole study
   through `run_study` (store, claims, per-epoch records, checkpoints) and through the Ray
   executor (tasks, object store, result streaming; Ray started beforehand). Overhead per
   run = (study wall time − bare training time) / runs, also as a share of a 10-second run.
2. Measuring after training: seconds per run for latency and throughput alone, and with
   peak memory (two child processes of the memory server), against the training time.
3. Local workers: one study run with 1 and with 2 worker processes (1 torch thread each).
Run: `.venv/bin/python benchmarks/study.py [--epochs 6] [--no-ray] [--only workers]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from paramsplit.data import DatasetTensors, load_dataset
from paramsplit.records import RunResult
from paramsplit.specs import TrainConfig
from paramsplit.store import Store
from paramsplit.study import Outcome, StudyDefinition, expand_study, run_study, train_run

REFERENCE_RUN_S = 10.0
SECTIONS = ("overhead", "measure", "workers")


def overhead(datasets: dict[str, DatasetTensors], epochs: int, with_ray: bool) -> Table:
    study = StudyDefinition(
        "overhead", ("resnet",), (5_000, 10_000), members=(2,), designs=("single", "deq"),
        config=TrainConfig(epochs=epochs, batch_size=64), measure="none",
    )  # fmt: skip
    specs, _ = expand_study(study, datasets)
    cpu = torch.device("cpu")

    def bare_training_s() -> float:
        began = time.perf_counter()
        for spec in specs:
            train_run(spec, datasets["digits"], "loop", cpu, None)
        return time.perf_counter() - began

    bare_training_s()  # warm-up: first-use costs of torch belong to no one
    bare_s = bare_training_s()

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(Path(folder) / "local.db")
        began = time.perf_counter()
        run_study(store, study, executor="loop", datasets=datasets,
                  checkpoint_dir=Path(folder) / "ckpt")  # fmt: skip
        rows.append(("local", time.perf_counter() - began))
        if with_ray:
            import ray

            from paramsplit.study.on_ray import run_study_on_ray

            ray.init(num_cpus=1, include_dashboard=False, logging_level="error")
            for label in ("ray (first tasks: workers import torch)", "ray (warm workers)"):
                ray_store = Store.open(Path(folder) / f"{len(rows)}.db")
                began = time.perf_counter()
                run_study_on_ray(ray_store, study, datasets, executor="loop",
                                 checkpoint_dir=Path(folder) / "ckpt-ray")  # fmt: skip
                rows.append((label, time.perf_counter() - began))
            ray.shutdown()
    bare_before_s, bare_after_s = bare_s, bare_training_s()
    bare_s = (bare_before_s + bare_after_s) / 2

    table = Table(
        title=f"Study overhead per run ({len(specs)} runs of ~{bare_s / len(specs):.1f} s)",
        caption=f"bare training before and after: {bare_before_s:.2f} s / {bare_after_s:.2f} s "
        "(the difference is the host's own drift)",
    )
    for column in ("executor", "study wall s", "bare training s", "overhead / run ms",
                   f"% of a {REFERENCE_RUN_S:g} s run"):  # fmt: skip
        table.add_column(column, justify="right")
    for label, wall_s in rows:
        per_run_ms = 1000 * (wall_s - bare_s) / len(specs)
        table.add_row(label, f"{wall_s:.2f}", f"{bare_s:.2f}", f"{per_run_ms:.0f}",
                      f"{per_run_ms / 10 / REFERENCE_RUN_S:.1f}%")  # fmt: skip
    return table


def _finished(outcome: Outcome) -> RunResult:
    if outcome.result is None:
        raise RuntimeError(f"a benchmark run failed: {outcome.reason}")
    return outcome.result


def _measure_time_s(result: RunResult) -> float:
    measured = result.measured
    if measured is None or measured.measure_time_s is None:
        raise RuntimeError(f"a benchmark run was not measured: {measured}")
    return measured.measure_time_s


def measurement(datasets: dict[str, DatasetTensors], epochs: int) -> Table:
    """Each run trained twice, measured once with latency only and once with memory too."""
    study = StudyDefinition(
        "measure", ("resnet",), (10_000, 40_000), members=(2, 4),
        config=TrainConfig(epochs=epochs, batch_size=64),
    )  # fmt: skip
    specs, _ = expand_study(study, datasets)
    cpu = torch.device("cpu")
    table = Table(
        title=f"Measuring after training, seconds per run (digits, {epochs} epochs)",
        caption="memory is counted on meta and fake tensors (paramsplit.measure.memory)",
    )
    for column in ("design", "executor", "train s", "latency s", "latency + memory s"):
        table.add_column(column, justify="right")
    totals: dict[str, list[float]] = {"train": [], "latency": [], "all": []}
    for spec in specs:
        digits = datasets["digits"]
        latency = _finished(train_run(spec, digits, "auto", cpu, None, measure="latency"))
        full = _finished(train_run(spec, digits, "auto", cpu, None, measure="all"))
        figures = {
            "train": latency.train.train_time_s,
            "latency": _measure_time_s(latency),
            "all": _measure_time_s(full),
        }
        for key, value in figures.items():
            totals[key].append(value)
        table.add_row(latency.train.design, latency.train.executor,
                      *(f"{value:.2f}" for value in figures.values()))  # fmt: skip
    table.add_row("median", "", *(f"{statistics.median(v):.2f}" for v in totals.values()))
    return table


def workers(datasets: dict[str, DatasetTensors], epochs: int) -> Table:
    study = StudyDefinition(
        "workers", ("resnet",), (5_000, 10_000, 20_000), members=(2,), seeds=(0, 1),
        config=TrainConfig(epochs=epochs, batch_size=64), measure="none",
    )  # fmt: skip
    specs, _ = expand_study(study, datasets)
    table = Table(title=f"Local workers: {len(specs)} runs, digits, {epochs} epochs")
    for column in ("workers", "threads each", "wall s", "runs / min", "speed-up"):
        table.add_column(column, justify="right")
    first_s = None
    with tempfile.TemporaryDirectory() as folder:
        for count in (1, 2):
            store = Store.open(Path(folder) / f"{count}.db")
            began = time.perf_counter()
            run_study(store, study, datasets=datasets, workers=count, threads=1)
            wall_s = time.perf_counter() - began
            first_s = first_s or wall_s
            table.add_row(str(count), "1", f"{wall_s:.1f}", f"{60 * len(specs) / wall_s:.1f}",
                          f"{first_s / wall_s:.2f}×")  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--only", choices=SECTIONS, action="append")
    args = parser.parse_args()
    torch.set_num_threads(1)
    digits = load_dataset("digits")
    small = {"digits": dataclasses.replace(digits, train_images=digits.train_images[:512],
                                           train_labels=digits.train_labels[:512])}  # fmt: skip
    console = Console()
    sections = args.only or SECTIONS
    if "overhead" in sections:
        console.print(overhead(small, args.epochs, with_ray=not args.no_ray))
    if "measure" in sections:
        console.print(measurement(small, args.epochs))
    if "workers" in sections:
        console.print(workers({"digits": digits}, args.epochs))


if __name__ == "__main__":
    main()
