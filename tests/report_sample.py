"""A hand-written study for the report tests: known ESTs, missing costs, a failed run.

resnet on digits, budgets 20k/50k/100k, single and deq/weq at k = 2 and 4, seeds 0-2:
- deq k=2 wins everywhere (EST ≤ 20k), deq k=4 from 50k on, weq k=4 at 100k only, weq k=2
  never (no EST);
- latency is measured for single and deq only, inference memory for none;
- ensembles learn more slowly at first (the more members, the slower), then catch up;
- weq k=4 at 100k lost its seed 2 to an out-of-memory failure.
"""

from __future__ import annotations

import math

from paramsplit.analysis import Analysis, CurvePoint, RunRecord, analyse

BUDGETS = (20_000, 50_000, 100_000)
CLASSES = (("single", 1), ("deq", 2), ("deq", 4), ("weq", 2), ("weq", 4))
SEEDS = (0, 1, 2)
NUM_EPOCHS = 10
SINGLE_ACCURACY = {20_000: 0.900, 50_000: 0.930, 100_000: 0.950}
GAIN_POINTS = {  # ensemble − single at each budget, in points
    ("deq", 2): (0.5, 0.5, 0.5),
    ("deq", 4): (-0.8, 0.4, 0.9),
    ("weq", 2): (-0.5, -0.3, -0.2),
    ("weq", 4): (-1.0, -0.6, 0.6),
}
FAILED = ("weq", 4, 100_000, 2)  # class, k, budget, seed
NUM_DESIGNS = len(BUDGETS) * len(CLASSES)
NUM_ENSEMBLES = len(BUDGETS) * (len(CLASSES) - 1)


def member_name(design_class: str, k: int, budget: int) -> str:
    width = budget // 2_000
    if design_class == "deq":
        return f"resnet-14-{width // k}"
    if design_class == "weq":
        return f"resnet-{14 // k + 2}-{width}"
    return f"resnet-14-{width}"


def run_record(design_class: str, k: int, budget: int, seed: int) -> RunRecord:
    index = BUDGETS.index(budget)
    gain = 0.0 if design_class == "single" else GAIN_POINTS[(design_class, k)][index] / 100
    accuracy = SINGLE_ACCURACY[budget] + gain + (seed - 1) * 0.003
    epoch_time = budget / 1e4 * 0.2 * (1 + (0.15 if design_class == "deq" else 0.1) * (k - 1))
    final_val = accuracy + 0.002
    curve = tuple(
        CurvePoint(
            epoch=e,
            val_accuracy=final_val - (final_val - 0.1) * math.exp(-e / (0.6 + 0.25 * k)),
            elapsed_train_s=e * epoch_time,
        )
        for e in range(1, NUM_EPOCHS + 1)
    )
    best = max(curve, key=lambda p: p.val_accuracy or 0.0)
    memory = {"single": 1.0, "deq": 0.9, "weq": 1.3}[design_class]
    total = int(budget * (0.97 if design_class == "single" else 0.95))
    common = {
        "run_id": f"{design_class}{k}-{budget}-s{seed}",
        "family": "resnet",
        "dataset": "digits",
        "design_class": design_class,
        "num_members": k,
        "member": member_name(design_class, k, budget),
        "budget_params": budget,
        "total_params": total,
        "seed": seed,
        "ratio": total / budget,
    }
    if (design_class, k, budget, seed) == FAILED:
        return RunRecord(**common, status="failed", reason="out of memory at batch size 512")
    return RunRecord(
        **common,
        test_accuracy=accuracy,
        best_val_accuracy=best.val_accuracy,
        best_epoch=best.epoch,
        train_time_s=NUM_EPOCHS * epoch_time,
        epoch_time_s=epoch_time,
        latency_ms_batch1=None if design_class == "weq" else (1 + budget / 1e5) * (0.8 + 0.3 * k),
        peak_train_memory_bytes=int(budget * 400 * memory),
        curve=curve,
    )


def sample_records() -> list[RunRecord]:
    return [
        run_record(design_class, k, budget, seed)
        for budget in BUDGETS
        for design_class, k in CLASSES
        for seed in SEEDS
    ]


def sample_analysis(study: str = "sample-study") -> Analysis:
    return analyse(study, sample_records())
