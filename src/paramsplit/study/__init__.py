"""Studies: a design space swept over datasets and seeds, run into the results database.

- `definition`: what a study sweeps (`StudyDefinition`), expanded into runs by the planner;
- `checks`: a definition checked whole, before anything is registered;
- `file`: studies written as TOML files;
- `runner`: the local runner, claiming runs from the store one at a time (`run_study`);
- `training`: one claimed run trained, its weights kept, measured and recorded (`train_run`);
- `workers`: worker processes on this machine; `on_ray`: the same study on a Ray cluster;
- `adaptive`: an adaptive study's scheduler, handing out the runs the policy wants;
- `artifacts`: the kept weights of finished runs (safetensors files);
- `measuring`: `paramsplit measure`, trained runs measured again side by side;
- `demo`: the built-in demo study.
"""

from paramsplit.study.definition import (
    Expansion,
    Infeasible,
    StudyDefinition,
    expand_study,
    register_study,
    run_spec,
)
from paramsplit.study.runner import RunCallback, checkpoint_dir_for, retry_cutoff, run_study
from paramsplit.study.training import (
    Outcome,
    ProgressCallback,
    StopCheck,
    StopRun,
    WorkerSettings,
    record_outcome,
    train_run,
    with_load,
)

__all__ = [
    "Expansion",
    "Infeasible",
    "Outcome",
    "ProgressCallback",
    "RunCallback",
    "StopCheck",
    "StopRun",
    "StudyDefinition",
    "WorkerSettings",
    "checkpoint_dir_for",
    "expand_study",
    "record_outcome",
    "register_study",
    "retry_cutoff",
    "run_spec",
    "run_study",
    "train_run",
    "with_load",
]
