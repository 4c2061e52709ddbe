"""Overhead per run of the study machinery: local runner and Ray, against bare training.

For the same runs, it times `train_design` called directly, then the whole study through
`run_study` (store, claims, per-epoch records, checkpoints) and through the Ray executor
(tasks, object store, result streaming; Ray started beforehand). Overhead per run =
(study wall time − bare training time) / runs, also as a share of a 10-second run.
Run: `.venv/bin/python benchmarks/study.py [--epochs 6] [--no-ray]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from paramsplit.data import load_dataset
from paramsplit.specs import TrainConfig
from paramsplit.store import Store
from paramsplit.study import StudyDefinition, expand_study, run_study, train_run

REFERENCE_RUN_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    digits = load_dataset("digits")
    datasets = {"digits": dataclasses.replace(digits, train_images=digits.train_images[:512],
                                              train_labels=digits.train_labels[:512])}  # fmt: skip
    study = StudyDefinition(
        "overhead", ("resnet",), (5_000, 10_000), members=(2,), designs=("single", "deq"),
        config=TrainConfig(epochs=args.epochs, batch_size=64),
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
        if not args.no_ray:
            import ray

            from paramsplit.study_ray import run_study_on_ray

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
        title=f"Study overhead per run ({len(specs)} runs of ~{bare_s / len(specs):.1f} s)"
    )
    for column in ("executor", "study wall s", "bare training s", "overhead / run ms",
                   f"% of a {REFERENCE_RUN_S:g} s run"):  # fmt: skip
        table.add_column(column, justify="right")
    for label, wall_s in rows:
        per_run_ms = 1000 * (wall_s - bare_s) / len(specs)
        table.add_row(label, f"{wall_s:.2f}", f"{bare_s:.2f}", f"{per_run_ms:.0f}",
                      f"{per_run_ms / 10 / REFERENCE_RUN_S:.1f}%")  # fmt: skip
    Console().print(table)
    print(f"bare training before and after: {bare_before_s:.2f} s / {bare_after_s:.2f} s "
          "(the difference is the host's own drift)")  # fmt: skip


if __name__ == "__main__":
    main()
