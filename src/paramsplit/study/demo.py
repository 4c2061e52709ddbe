"""The built-in demo: a small real study, offline, that a laptop finishes in minutes.

CIFAR ResNets on scikit-learn's 8×8 digits (1,797 images, shipped with scikit-learn): four
budgets from 5k to 40k parameters; at each, the single network and its deq and weq
ensembles at k = 2 and 4 (those that fit); three seeds; one protocol for all. The question
it answers at the end: "I can afford 40k parameters — what should I build?"

Measured on 2 CPU cores (2 workers, 1 thread each): 45 runs in about 4 minutes, measurement
included. The settings trade accuracy for time: 10 epochs and batch 128 (the study used
120+ epochs), label smoothing 0.1 (worth about 1 point on this small set), and the fused
executor, which won every measurement on that machine and saves `auto`'s timing per run.
"""

from __future__ import annotations

import dataclasses

from paramsplit.specs import DESIGN_CLASSES, TrainConfig
from paramsplit.study.definition import StudyDefinition

DEMO_FAMILY = "resnet"
DEMO_DATASET = "digits"
DEMO_BUDGETS = (5_000, 10_000, 20_000, 40_000)
DEMO_MEMBERS = (2, 4)
DEMO_SEEDS = (0, 1, 2)
DEMO_CONFIG = TrainConfig(epochs=10, batch_size=128, label_smoothing=0.1)
DEMO_EXECUTOR = "fused"
DEMO_QUESTION_BUDGET = 40_000  # the budget the demo recommends a design for


def demo_study() -> StudyDefinition:
    """The demo's study definition; its name carries a hash of it, so a changed demo is a
    new study and never mixes with results of an older one."""
    study = StudyDefinition(
        name="demo",
        families=(DEMO_FAMILY,),
        budgets=DEMO_BUDGETS,
        members=DEMO_MEMBERS,
        designs=DESIGN_CLASSES,
        datasets=(DEMO_DATASET,),
        seeds=DEMO_SEEDS,
        config=DEMO_CONFIG,
        measure="first-seed",  # memory does not depend on the seed
    )
    return dataclasses.replace(study, name=f"demo-{DEMO_FAMILY}-{DEMO_DATASET}-{study.digest()}")
