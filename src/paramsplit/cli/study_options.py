"""The options of `paramsplit run`, as typed groups: the study its flags describe, how and
where its runs train, and what every study (from flags or a file) keeps and measures.

Each group is a frozen dataclass whose fields are the command's Typer options;
`takes_option_groups` spreads them into the command's signature and builds the group.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from paramsplit.cli.options import Renamed, check_processes
from paramsplit.errors import ParamSplitError, StudyFileError, UsageError

if TYPE_CHECKING:  # type names only: importing the CLI must not import torch
    import torch

    from paramsplit.specs import TrainConfig
    from paramsplit.study import StudyDefinition

BACKENDS = ("local", "ray")

# The flag that sets each study field, for errors about a study given by flags.
FLAG_OF_FIELD = {
    "name": "--name", "families": "--family", "budgets": "--budgets", "singles": "--singles",
    "members": "--members", "designs": "--designs", "datasets": "--dataset",
    "seeds": "--seeds", "depth": "--depth", "match": "--match", "measure": "--measure",
    "executor": "--member-executor", "train.epochs": "--epochs",
    "train.batch_size": "--batch-size", "train.lr": "--lr",
    "train.label_smoothing": "--label-smoothing",
}  # fmt: skip


@dataclass(frozen=True)
class StudyFlags:
    """The study the design flags describe (a study file replaces them)."""

    family: Annotated[str, typer.Option(help="Families, comma-separated.")] = "resnet"
    budgets: Annotated[str, typer.Option(help="Budgets: 25k,50k,100k.")] = "25k,50k,100k"
    singles: Annotated[
        str | None,
        typer.Option(
            help="Single networks instead of budgets (the study's method): resnet-20,wrn-16-4."
        ),
    ] = None
    members: Annotated[str, typer.Option(help="Ensemble sizes: 2,4.")] = "2,4"
    designs: Annotated[str, typer.Option(help="Design classes.")] = "single,deq,weq"
    dataset: Annotated[str, typer.Option(help="Datasets, comma-separated.")] = "digits"
    seeds: Annotated[int, typer.Option(help="Seeds per design (0..N-1).")] = 1
    epochs: Annotated[int, typer.Option(help="Epochs per run.")] = 30
    batch_size: Annotated[int, typer.Option(help="Batch size per member.")] = 128
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 0.1
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing.")] = 0.0
    depth: Annotated[int | None, typer.Option(help="Depth (default: the family's).")] = None
    match: Annotated[str, typer.Option(help="Matching rule: le, nearest, tol:X.")] = "le"
    name: Annotated[str | None, typer.Option(help="Study name (default: derived).")] = None

    def train_config(self) -> TrainConfig:
        from paramsplit.specs import TrainConfig

        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            label_smoothing=self.label_smoothing,
        )

    def definition(self, *, adaptive: bool = False) -> StudyDefinition:
        """The study these flags describe; named from a hash of itself unless `--name`."""
        from paramsplit.quantities import parse_budget, parse_members, split_budgets
        from paramsplit.specs import parse_arch
        from paramsplit.study import StudyDefinition
        from paramsplit.study.checks import in_field, seed_range

        by_name = tuple(
            in_field("singles", parse_arch, n).name for n in (self.singles or "").split(",") if n
        )
        study = StudyDefinition(
            name=self.name or "unnamed",
            families=() if by_name else _listed(self.family),
            budgets=tuple(
                in_field("budgets", parse_budget, b)
                for b in ([] if by_name else split_budgets(self.budgets))
            ),
            singles=by_name,
            members=tuple(in_field("members", parse_members, self.members)),
            designs=_listed(self.designs),
            datasets=_listed(self.dataset),
            seeds=seed_range(self.seeds),
            depth=self.depth,
            match=self.match,
            config=self.train_config(),
            adaptive=adaptive,  # hashed into the name only when true: an adaptive study is another
        )
        if self.name:
            return study
        # Hashed as it always was, with an empty name: earlier runs of these flags find their
        # study.
        return dataclasses.replace(study, name=_study_name(study))


@dataclass(frozen=True)
class RunnerOptions:
    """How and where a study's runs train: the member executor, on this machine (worker
    processes) or on a Ray cluster, and where kept weights go."""

    member_executor: Annotated[
        str, typer.Option(help="How members train: auto, loop, fused or vmap.")
    ] = "auto"
    backend: Annotated[
        str,
        typer.Option(help="Where runs go: local or ray."),
        Renamed("--executor", "--backend"),
    ] = "local"
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start one here).")
    ] = None
    cpus_per_run: Annotated[float, typer.Option(help="Ray: CPUs per run.")] = 1.0
    gpus_per_run: Annotated[float, typer.Option(help="Ray: GPUs per run.")] = 0.0
    retry_failed: Annotated[bool, typer.Option(help="Run failed runs again.")] = False
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (per worker with --workers).")
    ] = None
    workers: Annotated[
        int, typer.Option(help="Processes training side by side on this machine.")
    ] = 1
    artifacts_dir: Annotated[
        str | None,
        typer.Option(
            help="Folder for kept weights (default: NAME.artifacts beside a SQLite file, "
            "paramsplit-artifacts for a database server)."
        ),
    ] = None

    @property
    def on_ray(self) -> bool:
        return self.backend == "ray"

    def check(self) -> None:
        """The options' own bounds, before anything is loaded."""
        if self.backend not in BACKENDS:
            raise UsageError(f"--backend must be local or ray, got '{self.backend}'")
        if self.workers > 1 and self.on_ray:
            raise UsageError(
                "--workers is for the local backend; Ray sizes itself (--cpus-per-run)"
            )
        check_processes("--workers", self.workers)
        check_processes("--threads", self.threads)
        if self.cpus_per_run <= 0 or self.gpus_per_run < 0:
            raise UsageError(
                f"--cpus-per-run must be > 0 and --gpus-per-run >= 0, got {self.cpus_per_run} "
                f"and {self.gpus_per_run}"
            )

    def runs_on(self, device: torch.device) -> torch.device | str:
        """Where the members train: here, or a Ray task's own GPU where it is given one."""
        if self.on_ray:
            return "cuda" if self.gpus_per_run > 0 else "cpu"
        return device

    def artifacts_for(self, db: str) -> Path:
        from paramsplit.study.artifacts import artifacts_dir_for

        return Path(self.artifacts_dir) if self.artifacts_dir else artifacts_dir_for(db)


@dataclass(frozen=True)
class StudyChoices:
    """What a study measures and keeps, and whether it is adaptive: for a study from flags
    or a file alike (given here, they replace the file's)."""

    measure: Annotated[
        str | None,
        typer.Option(
            help="After each run, measure: all, first-seed (memory for the lowest seed only), "
            "latency or none. Default: the study file's, else all."
        ),
    ] = None
    keep_weights: Annotated[
        bool | None,
        typer.Option(
            "--keep-weights/--no-keep-weights",
            help="Keep each finished run's weights (its selected epoch) for paramsplit export. "
            "Default: the study file's, else keep.",
        ),
    ] = None
    adaptive: Annotated[
        bool,
        typer.Option(
            "--adaptive",
            help="Train only what the answer needs, with the same ESTs as the full grid: "
            "each comparison measured from the largest budget down to its first non-win, "
            "every seed (paramsplit replay). A study file may ask for adaptive = "
            '"bisection" instead: cheaper, assumes monotone verdicts.',
        ),
    ] = False

    def check(self) -> None:
        from paramsplit.study.checks import MEASURE_CHOICES

        if self.measure is not None and self.measure not in MEASURE_CHOICES:
            raise UsageError(
                f"--measure must be one of {', '.join(MEASURE_CHOICES)}, got '{self.measure}'"
            )

    def applied_to(self, study: StudyDefinition) -> StudyDefinition:
        if self.measure is not None:
            study = dataclasses.replace(study, measure=self.measure)
        if self.keep_weights is not None:
            study = dataclasses.replace(study, keep_weights=self.keep_weights)
        if self.adaptive and not study.adaptive:  # a file's "bisection" stays
            study = dataclasses.replace(study, adaptive=True)
        return study


def located(error: ParamSplitError, study_file: str | None) -> ParamSplitError:
    """The error pointing at what the user typed: the study file's line, or the flag."""
    if error.field is None:
        return error
    reason = str(error).removeprefix(f"field '{error.field}': ")
    if study_file is not None and error.field != "executor":
        from paramsplit.study.file import where_in_file

        return StudyFileError(f"{where_in_file(study_file, error.field)}: {error}")
    flag = FLAG_OF_FIELD.get(error.field)
    return type(error)(f"{flag}: {reason}") if flag else error


def _listed(text: str) -> tuple[str, ...]:
    return tuple(item for item in text.split(",") if item)


def _study_name(study: StudyDefinition) -> str:
    source = "+".join(study.families) or "singles"
    return f"{source}-{'+'.join(study.datasets)}-{study.digest()}"
