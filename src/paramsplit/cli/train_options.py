"""The options of `paramsplit train`, as typed groups: the design, its data, how it trains,
and what is kept and reported after.

Each group is a frozen dataclass whose fields are the command's Typer options;
`takes_option_groups` spreads them into the command's signature and builds the group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from paramsplit.cli.options import Renamed, check_processes
from paramsplit.errors import UsageError
from paramsplit.specs import DESIGN_CLASSES

if TYPE_CHECKING:  # type names only: importing the CLI must not import torch
    import torch

    from paramsplit.data import DatasetTensors
    from paramsplit.specs import TrainConfig


@dataclass(frozen=True)
class DesignFlags:
    """Which design: a design class at a family's budget, matched by a rule."""

    family: Annotated[str, typer.Option(help="Family: resnet, wrn, densenet-bc, vgg.")]
    budget: Annotated[str, typer.Option(help="Parameter budget: 100k, 1M, ...")]
    design: Annotated[str, typer.Option(help="Design class: single, deq or weq.")] = "single"
    members: Annotated[int, typer.Option(help="Ensemble size k (deq, weq).")] = 4
    depth: Annotated[int | None, typer.Option(help="Depth (default: the family's).")] = None
    match: Annotated[str, typer.Option(help="Matching rule: le, nearest, tol:X.")] = "le"

    def check(self) -> None:
        from paramsplit.specs import check_depth

        if self.design not in DESIGN_CLASSES:
            raise UsageError(
                f"--design must be one of {', '.join(DESIGN_CLASSES)}, got '{self.design}'"
            )
        if self.depth is not None:
            check_depth(self.depth)

    def planned_row(self, data: DatasetTensors) -> Any:
        """The plan's row of this design, at the data's input shape; an error if infeasible."""
        from paramsplit.planner import plan_budget
        from paramsplit.quantities import parse_budget

        rows = plan_budget(
            self.family,
            parse_budget(self.budget),
            [self.members],
            depth=self.depth,
            match=self.match,
            input_spec=data.input_spec(),
        )
        for row in rows:
            if row.design_class.value == self.design and (
                self.design == "single" or row.num_members == self.members
            ):
                if row.design is None:
                    raise UsageError(f"{self.design} k={self.members} is infeasible: {row.reason}")
                return row
        raise UsageError(f"no {self.design} design with {self.members} members in the plan")


@dataclass(frozen=True)
class DataFlags:
    """Which dataset, and where it is kept."""

    dataset: Annotated[str, typer.Option(help="digits, fashion-mnist, cifar10, ...")] = "digits"
    data_root: Annotated[str | None, typer.Option(help="Dataset cache directory.")] = None
    download: Annotated[bool, typer.Option(help="Download missing datasets.")] = False

    def load(self, device: torch.device) -> DatasetTensors:
        from paramsplit.data import load_dataset

        return load_dataset(
            self.dataset, root=self.data_root, device=device, download=self.download
        )


@dataclass(frozen=True)
class TrainingFlags:
    """How the design trains: the protocol (`TrainConfig`), its seed, the member executor,
    the device and its threads."""

    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 30
    batch_size: Annotated[int, typer.Option(help="Batch size per member.")] = 128
    lr: Annotated[float, typer.Option(help="Peak learning rate (SGD, Nesterov).")] = 0.1
    weight_decay: Annotated[
        float | None, typer.Option(help="Weight decay (default: the family's).")
    ] = None
    schedule: Annotated[str, typer.Option(help="cosine or multistep.")] = "cosine"
    warmup_epochs: Annotated[int, typer.Option(help="Linear warm-up epochs.")] = 0
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing.")] = 0.0
    seed: Annotated[int, typer.Option(help="Run seed; members derive their own.")] = 0
    member_executor: Annotated[
        str,
        typer.Option(help="auto, loop, fused or vmap."),
        Renamed("--executor", "--member-executor"),
    ] = "auto"
    precision: Annotated[str, typer.Option(help="fp32, bf16 or fp16 (GPU).")] = "fp32"
    channels_last: Annotated[bool, typer.Option(help="channels_last memory format.")] = False
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile.")] = False
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")] = "auto"
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None
    test_every_epoch: Annotated[
        bool, typer.Option(help="Also evaluate the test set every epoch (curves only).")
    ] = False

    def check(self) -> None:
        """The options' own bounds, before anything is loaded."""
        from paramsplit.study.checks import MAX_SEED
        from paramsplit.train import check_executor_name

        check_executor_name(self.member_executor, allow_auto=True)
        check_processes("--threads", self.threads)
        if not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"--seed must be in [0, {MAX_SEED}], got {self.seed}")

    def config(self) -> TrainConfig:
        from paramsplit.specs import TrainConfig

        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            warmup_epochs=self.warmup_epochs,
            label_smoothing=self.label_smoothing,
            precision=self.precision,
            channels_last=self.channels_last,
            compile=self.compile_model,
            test_every_epoch=self.test_every_epoch,
        )

    def prepared_device(self) -> torch.device:
        """The device, with torch's threads set and the precision checked on it (before any
        progress bar: an error is one line)."""
        import torch

        from paramsplit.study.checks import check_precision
        from paramsplit.train import resolve_device

        if self.threads is not None:
            torch.set_num_threads(self.threads)
        target = resolve_device(self.device)
        check_precision(self.precision, target)
        return target


@dataclass(frozen=True)
class ResultFlags:
    """What is reported, measured and kept after training."""

    target_accuracy: Annotated[
        float | None, typer.Option(help="Report the time to this validation accuracy.")
    ] = None
    measure: Annotated[bool, typer.Option(help="Measure latency and memory after.")] = True
    weights_out: Annotated[
        str | None,
        typer.Option(help="Keep the weights of the selected epoch in this safetensors file."),
    ] = None
