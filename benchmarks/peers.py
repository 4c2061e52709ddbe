"""Peers side by side: the same k ensemble members trained and run under each contender.

Contenders, each skipped with one line saying why when its package is missing:
- paramsplit's executors: loop, fused and vmap (`paramsplit.train.make_executor`);
- torchensemble's `VotingClassifier` over the same k member networks (PyPI `torchensemble`);
- torch-uncertainty's Packed-Ensembles ResNet-20 (PyPI `torch-uncertainty`, which needs
  `lightning` to import) at the same parameter count: with M members and width factor α it
  has exactly the parameters of M × resnet-20-(16α/M), so it is a reference architecture,
  not the same members.

Measured in alternating rounds: after one warm-up round, each round every contender takes
`steps` training steps, then predicts at batch 1 and at `--infer-batch`, in an order rotated
from round to round, so that the host's drift hits them alike. The table shows medians over
rounds: training in member-images/s (k × batch per step), inference in images/s of the
averaged probabilities, and each as a ratio to paramsplit's loop. Peers are used through
their public API: a torchensemble round is one `fit` epoch over `steps` prepared batches
(each `fit` builds its k estimators afresh, as it does for its users).

Install the peers with `pip install -e '.[bench]'`.
Run: `.venv/bin/python benchmarks/peers.py [--quick] [--threads N] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

import paramsplit as ps
from executors import machine  # the host's description, as the executors benchmark prints it
from paramsplit.specs import ArchSpec, InputSpec, TrainConfig
from paramsplit.train import EXECUTORS, make_executor

INSTALL_HINT = "pip install -e '.[bench]'"
PACKED_BASE_WIDTH = 16  # torch-uncertainty's ResNet-20: 16 first-stage channels before α


@dataclass(frozen=True)
class Case:
    input_spec: InputSpec
    num_members: int
    alpha: int  # Packed-Ensembles' width factor; our members are resnet-20-(16α/k)
    batch_size: int

    @property
    def member(self) -> ArchSpec:
        return ps.parse_arch(f"resnet-20-{PACKED_BASE_WIDTH * self.alpha // self.num_members}")


def cases(quick: bool) -> list[Case]:
    digits, cifar = InputSpec(1, 8, 8, 10), InputSpec(3, 32, 32, 10)
    if quick:
        return [Case(digits, 4, 2, 64)]
    # 4 × resnet-20-8 is the README's Packed-Ensembles match (α=2, M=4); 2 × resnet-20-16
    # is the same total width split in two.
    return [Case(digits, 4, 2, 128), Case(digits, 2, 2, 128), Case(cifar, 4, 2, 128)]


@dataclass
class Contender:
    """One way to train and run the k members."""

    name: str
    num_params: int
    train_steps: Callable[[int], None]  # `steps` optimizer steps
    predict: Callable[[Tensor], Tensor]  # images [B, C, H, W] -> mean probabilities [B, classes]
    note: str = ""  # printed under the table


@dataclass(frozen=True)
class Batch:
    member_images: Tensor  # [k, B, C, H, W]: each paramsplit member its own batch
    member_labels: Tensor  # [k, B]

    @property
    def shared_images(self) -> Tensor:  # [B, C, H, W]: what peers feed every member
        return self.member_images[0]

    @property
    def shared_labels(self) -> Tensor:
        return self.member_labels[0]


def random_batch(case: Case, device: torch.device) -> Batch:
    generator = torch.Generator().manual_seed(0)
    k, spec = case.num_members, case.input_spec
    images = torch.randn(k, case.batch_size, *spec.shape, generator=generator)
    labels = torch.randint(spec.num_classes, (k, case.batch_size), generator=generator)
    return Batch(images.to(device), labels.to(device))


def sgd_settings(config: TrainConfig) -> dict[str, object]:
    """What paramsplit's executors give torch.optim.SGD, for the peers."""
    return {"lr": config.lr, "momentum": config.momentum, "nesterov": config.nesterov,
            "weight_decay": config.weight_decay_for("resnet")}  # fmt: skip


def paramsplit_contenders(case: Case, batch: Batch, config: TrainConfig, device: torch.device):
    seeds = list(range(case.num_members))
    num_params = case.num_members * ps.count_params(case.member, case.input_spec)
    for name in EXECUTORS:
        executor = make_executor(name, case.member, case.input_spec, seeds, config, device)

        def train_steps(steps: int, executor=executor) -> None:
            for _ in range(steps):
                executor.train_step(batch.member_images, batch.member_labels)

        def predict(images: Tensor, executor=executor) -> Tensor:
            executor.set_training(False)
            probabilities = executor.predict(images).softmax(dim=-1).mean(dim=1)  # [B, C]
            executor.set_training(True)
            return probabilities

        yield Contender(f"paramsplit {name}", num_params, train_steps, predict)


class Member(nn.Module):
    """One paramsplit member as torchensemble expects an estimator: logits [B, classes]."""

    def __init__(self, arch: str, channels: int, height: int, width: int, classes: int) -> None:
        super().__init__()
        self.net = ps.build_model(ps.parse_arch(arch), InputSpec(channels, height, width, classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[:, 0]  # [B, 1, classes] -> [B, classes]


class PreparedBatches(torch.utils.data.Dataset):
    """`steps` copies of one batch, served whole (DataLoader(batch_size=None)): no per-image
    collation is timed. `classes` spares torchensemble a pass over the labels."""

    def __init__(self, images: Tensor, labels: Tensor, steps: int, num_classes: int) -> None:
        self.images, self.labels, self.steps = images, labels, steps
        self.classes = list(range(num_classes))

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images, self.labels


def torchensemble_contender(case: Case, batch: Batch, config: TrainConfig, device: torch.device):
    try:
        from torchensemble import VotingClassifier  # type: ignore[import-not-found]
    except ImportError as error:
        return f"torchensemble: skipped ({error}; {INSTALL_HINT})"
    spec = case.input_spec
    ensemble = VotingClassifier(
        estimator=Member, n_estimators=case.num_members, cuda=device.type == "cuda",
        estimator_args={"arch": case.member.name, "channels": spec.channels,
                        "height": spec.height, "width": spec.width, "classes": spec.num_classes},
    )  # fmt: skip
    ensemble.set_optimizer("SGD", **sgd_settings(config))

    def train_steps(steps: int) -> None:
        data = PreparedBatches(batch.shared_images, batch.shared_labels, steps, spec.num_classes)
        loader = torch.utils.data.DataLoader(data, batch_size=None)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints each member's first batch
            ensemble.fit(loader, epochs=1, save_model=False)

    def predict(images: Tensor) -> Tensor:
        return ensemble.predict(images)  # eval mode, mean of the members' softmax

    train_steps(1)  # `predict` needs the estimators that `fit` builds
    num_params = sum(p.numel() for p in ensemble.estimators_.parameters())
    note = (
        "torchensemble: a round is one `fit` epoch, which builds its k estimators and "
        "optimizers afresh (as each `fit` does) and trains them one after another."
    )
    return Contender("torchensemble voting", num_params, train_steps, predict, note)


def packed_contender(case: Case, batch: Batch, config: TrainConfig, device: torch.device):
    try:
        from torch_uncertainty.models.classification import (  # type: ignore[import-not-found]
            packed_resnet,
        )
    except ImportError as error:  # torch-uncertainty itself, or lightning, which it imports
        return f"torch-uncertainty Packed-Ensembles: skipped ({error}; {INSTALL_HINT})"
    spec, k = case.input_spec, case.num_members

    def build(gamma: int) -> nn.Module:
        shape = {"in_channels": spec.channels, "num_classes": spec.num_classes, "arch": 20}
        return packed_resnet(**shape, num_estimators=k, alpha=case.alpha, gamma=gamma,
                             style="cifar")  # fmt: skip

    model = build(gamma=1).to(device)
    optimizer = torch.optim.SGD(model.parameters(), **sgd_settings(config))
    targets = batch.shared_labels.repeat(k)  # its output is [(M B), classes], member-major

    def train_steps(steps: int) -> None:
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(batch.shared_images), targets).backward()
            optimizer.step()

    @torch.no_grad()
    def predict(images: Tensor) -> Tensor:
        model.eval()
        logits = model(images).reshape(k, len(images), -1)  # [M, B, classes]
        model.train()
        return logits.softmax(dim=-1).mean(dim=0)

    note = (
        f"Packed-Ensembles: ResNet-20, M={k}, α={case.alpha}, γ=1. Its "
        "minimum_channels_per_group=64 lowers γ silently at small widths: asked for γ=2 here, "
        f"it builds γ={effective_gamma(build(gamma=2), k)}. All its members see the same "
        "batch, as torchensemble's do; paramsplit's members each take their own, as k "
        "independent runs would."
    )
    num_params = sum(p.numel() for p in model.parameters())
    return Contender("Packed-Ensembles (reference)", num_params, train_steps, predict, note)


def effective_gamma(model: nn.Module, num_members: int) -> int:
    """γ as built: the most groups of any convolution, per member."""
    groups = [m.groups for m in model.modules() if isinstance(m, nn.Conv2d)]
    return max(groups) // num_members


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(call: Callable[[], object], calls: int, device: torch.device) -> float:
    synchronize(device)
    began = time.perf_counter()
    for _ in range(calls):
        call()
    synchronize(device)
    return (time.perf_counter() - began) / calls


def measure(contenders: list[Contender], batch: Batch, args: argparse.Namespace, device):
    """Median seconds per training step and per prediction at batch 1 and `infer_batch`, over
    alternating rounds (the first, a warm-up, dropped)."""
    images = batch.shared_images
    one = images[:1]
    many = images.repeat(-(-args.infer_batch // len(images)), 1, 1, 1)[: args.infer_batch]
    times: dict[str, dict[str, list[float]]] = {
        c.name: {"train": [], "infer1": [], "infer": []} for c in contenders
    }
    for round_number in range(1 + args.rounds):
        shift = round_number % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            train_s = seconds_per_call(lambda c=contender: c.train_steps(args.steps), 1, device)
            infer1_s = seconds_per_call(lambda c=contender: c.predict(one), args.calls, device)
            infer_s = seconds_per_call(lambda c=contender: c.predict(many), args.calls, device)
            if round_number > 0:
                entry = times[contender.name]
                entry["train"].append(train_s / args.steps)
                entry["infer1"].append(infer1_s)
                entry["infer"].append(infer_s)
    return {name: {key: statistics.median(v) for key, v in entry.items()}
            for name, entry in times.items()}  # fmt: skip


def case_table(case: Case, args: argparse.Namespace, console: Console, device) -> None:
    config = TrainConfig(batch_size=case.batch_size)
    batch = random_batch(case, device)
    k, skipped = case.num_members, []
    contenders = list(paramsplit_contenders(case, batch, config, device))
    for made in (torchensemble_contender(case, batch, config, device),
                 packed_contender(case, batch, config, device)):  # fmt: skip
        if isinstance(made, str):
            skipped.append(made)
        else:
            contenders.append(made)
    seconds = measure(contenders, batch, args, device)
    table = Table(
        title=f"{k} × {case.member.name} on {case.input_spec.name}: batch {case.batch_size} "
        f"per member, medians of {args.rounds} rounds of {args.steps} steps",
        caption=f"{device}, {torch.get_num_threads()} thread(s); × loop: ratio to paramsplit's "
        "loop, measured side by side",
    )
    columns = ["contender", "params", "train member-img/s", "× loop", "infer img/s @1",
               "× loop", f"infer img/s @{args.infer_batch}", "× loop"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    images_per_call = {"train": k * case.batch_size, "infer1": 1, "infer": args.infer_batch}
    loop = seconds["paramsplit loop"]
    for contender in contenders:
        own, cells = seconds[contender.name], []
        for key, images in images_per_call.items():
            # Same images per call for every contender: the rate ratio is the time ratio.
            cells += [f"{images / own[key]:,.0f}", f"{loop[key] / own[key]:.2f}×"]
        table.add_row(contender.name, f"{contender.num_params:,}", *cells)
    console.print(table)
    for line in [c.note for c in contenders if c.note] + skipped:
        console.print(line, markup=False)  # "[bench]" is not a style


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small case, few rounds")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 5; 2 quick)")
    parser.add_argument("--steps", type=int, help="training steps per round (default 5; 2 quick)")
    parser.add_argument("--calls", type=int, help="predictions per round (default 10; 3 quick)")
    parser.add_argument("--infer-batch", type=int, default=64, help="(default 64)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.steps = args.steps or (2 if args.quick else 5)
    args.calls = args.calls or (3 if args.quick else 10)
    device = torch.device(args.device)
    console = Console(width=200)  # tables are wider than a default 80-column pipe
    console.print(f"Machine: {machine()}")
    began = time.perf_counter()
    for case in cases(args.quick):
        case_table(case, args, console, device)
    console.print(f"Finished in {time.perf_counter() - began:.0f} s.")


if __name__ == "__main__":
    main()
