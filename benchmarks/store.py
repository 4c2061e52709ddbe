"""The store's overhead per run: add + claim + one record_epoch per epoch + finish.

Each run is added on its own (a study adds all its runs in one call, so this is an upper
bound), claimed, given `--epochs` epoch records, and finished with a result that carries
its whole curve, as the training loop's result does. Prints the median of each step over
`--runs` runs, and the total against a 10-second run (the target: under 5%, 500 ms).

Run: `.venv/bin/python benchmarks/store.py [--db PATH_OR_URL] [--runs 50] [--epochs 30]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from paramsplit.store import Store, default_worker

REFERENCE_RUN_S = 10.0
TARGET_FRACTION = 0.05
CONFIG = {"epochs": 30, "batch_size": 64, "lr": 0.1, "schedule": "cosine", "precision": "fp32"}


def spec(seed: int, study: str) -> dict[str, Any]:
    return {
        "family": "resnet",
        "design_class": "deq",
        "num_members": 4,
        "member": "resnet-20-8",
        "member_depth": 20,
        "member_width": 8,
        "total_params": 4 * 78_042,
        "budget_params": 320_000,
        "dataset": "digits",
        "config": CONFIG | {"benchmark": study},  # new runs, also in a reused database
        "seed": seed,
    }


def epoch_record(epoch: int) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "lr": 0.1,
        "train_loss": 1.0 / epoch,
        "member_train_loss": [1.0 / epoch] * 4,
        "val_accuracy": 0.9,
        "val_nll": 0.3,
        "test_accuracy": None,
        "epoch_time_s": 0.33,
        "elapsed_train_s": 0.33 * epoch,
    }


def result(num_epochs: int) -> dict[str, Any]:
    return {
        "test_accuracy": 0.97,
        "test_logit_accuracy": 0.968,
        "test_vote_accuracy": 0.965,
        "member_test_accuracy": [0.95, 0.96, 0.94, 0.955],
        "test_nll": 0.1,
        "test_ece": 0.02,
        "best_epoch": num_epochs - 1,
        "best_val_accuracy": 0.97,
        "train_time_s": REFERENCE_RUN_S,
        "executor": "fused",
        "executor_step_ms": {"loop": 12.0, "fused": 8.0},
        "device": "cpu",
        "torch_version": "2.14.0",
        "curve": [epoch_record(e) for e in range(1, num_epochs + 1)],
    }


def timed(durations: list[float], step: Callable[[], Any]) -> Any:
    began = time.perf_counter()
    value = step()
    durations.append(1000 * (time.perf_counter() - began))
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="SQLite path or SQLAlchemy URL (default: a temp file)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        target = args.db or str(Path(folder) / "bench.db")
        epochs_step = f"record_epoch × {args.epochs}"
        steps: dict[str, list[float]] = {
            "add_runs (1 run)": [], "claim_next": [], epochs_step: [], "finish": []
        }  # fmt: skip
        totals: list[float] = []
        worker = default_worker()
        with Store.open(target) as store:
            study = f"bench-{time.time_ns()}"
            store.add_study(study, {"benchmark": True})
            for seed in range(args.runs):
                began = time.perf_counter()
                timed(
                    steps["add_runs (1 run)"],
                    lambda s=seed: store.add_runs(study, [spec(s, study)]),
                )
                run = timed(steps["claim_next"], lambda: store.claim_next(study, worker))
                run_id = run["run_id"]
                epoch_ms: list[float] = []
                for epoch in range(1, args.epochs + 1):
                    record = epoch_record(epoch)
                    timed(epoch_ms, lambda r=record, i=run_id: store.record_epoch(i, r))
                steps[epochs_step].append(sum(epoch_ms))
                finished = result(args.epochs)
                timed(steps["finish"], lambda r=finished, i=run_id: store.finish(i, r))
                totals.append(1000 * (time.perf_counter() - began))
            shown = store.url
    table = Table(title=f"Store overhead per run ({args.runs} runs)")
    for column in ("step", "median ms", "p90 ms"):
        table.add_column(column, justify="right")
    for name, values in [*steps.items(), ("total per run", totals)]:
        deciles = statistics.quantiles(values, n=10)
        table.add_row(name, f"{statistics.median(values):.1f}", f"{deciles[-1]:.1f}")
    total_ms = statistics.median(totals)
    fraction = total_ms / (1000 * REFERENCE_RUN_S)
    verdict = "ok" if fraction < TARGET_FRACTION else "over target"
    console = Console()
    console.print(table)
    console.print(f"database: {shown}")
    console.print(
        f"median total {total_ms:.1f} ms = {100 * fraction:.2f}% of a {REFERENCE_RUN_S:.0f} s run "
        f"(target < {100 * TARGET_FRACTION:.0f}%): {verdict}"
    )


if __name__ == "__main__":
    main()
