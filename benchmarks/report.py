"""How long the answer takes for a large study: reading it from the database, analysing it,
and writing the HTML report — without torch.

A synthetic study of budgets × designs × seeds with 30-epoch curves is written to a scratch
SQLite file once; then each stage is timed (median of a few repeats).
Run: `.venv/bin/python benchmarks/report.py [--budgets 10] [--seeds 10] [--epochs 30]`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from paramsplit.analysis import analyse, recommend, records_from_store
from paramsplit.report import write_report
from paramsplit.store import Store

DESIGNS = (("single", 1), ("deq", 2), ("deq", 4), ("weq", 2), ("weq", 4))


def fill(path: Path, num_budgets: int, num_seeds: int, num_epochs: int) -> int:
    """A finished study with plausible numbers; returns the number of runs."""
    rng = random.Random(0)
    config = {"epochs": num_epochs}
    with Store.open(path) as store:
        store.add_study("bench", {"name": "bench"})
        specs = [
            {
                "family": "resnet", "design_class": design_class, "num_members": k,
                "member": f"resnet-20-{b + 2}", "member_depth": 20, "member_width": b + 2,
                "total_params": 10_000 * 2**b - 7, "budget_params": 10_000 * 2**b,
                "dataset": "digits", "config": config, "seed": seed,
            }
            for b in range(num_budgets)
            for design_class, k in DESIGNS
            for seed in range(num_seeds)
        ]  # fmt: skip
        store.add_runs("bench", specs)
        while (run := store.claim_next("bench", "bench")) is not None:
            final = 0.9 + 0.01 * rng.random()
            curve = [
                {"epoch": e, "val_accuracy": final * (1 - 0.5 / e), "elapsed_train_s": e * 1.5}
                for e in range(1, num_epochs + 1)
            ]
            store.finish(run["run_id"], {
                "test_accuracy": final, "best_val_accuracy": final, "train_time_s": 45.0,
                "epoch_time_s": 1.5, "latency_ms_batch1": 2 + rng.random(),
                "throughput_images_per_s": 900.0, "peak_train_memory_bytes": 10**7,
                "curve": curve,
            })  # fmt: skip
    return len(specs)


def median_s(action: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budgets", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        num_runs = fill(path, args.budgets, args.seeds, args.epochs)
        store = Store.open(path)
        records = records_from_store(store, "bench")
        analysis = analyse("bench", records)
        answer = recommend(analysis.designs, 10_000 * 2 ** (args.budgets - 1))
        stages = {
            "read runs and curves": lambda: records_from_store(store, "bench"),
            "analyse": lambda: analyse("bench", records),
            "recommend": lambda: recommend(analysis.designs, 40_000),
            "write report (HTML, PNG, CSV, JSON)": lambda: write_report(
                analysis, Path(folder) / "report.html", recommendation=answer
            ),
        }
        table = Table(
            title=f"{num_runs} runs ({args.budgets} budgets × {len(DESIGNS)} designs × "
            f"{args.seeds} seeds, {args.epochs}-epoch curves); median of 3",
            title_justify="left",
        )
        table.add_column("stage")
        table.add_column("time (s)", justify="right")
        for name, action in stages.items():
            table.add_row(name, f"{median_s(action):.3f}")
        store.close()
    Console().print(table)
    print(f"torch imported: {'torch' in sys.modules}")


if __name__ == "__main__":
    main()
