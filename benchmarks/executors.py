"""Training throughput of the ensemble executors, auto's pick, and the harness's overhead.

For each design (resnet family, deq and weq at k in 2, 4, 8, planned under a budget), the
loop, fused and vmap executors take training steps in alternation on the same random
batch, so host drift hits them alike; the table shows medians in member-images/s (k × batch
per step) and ratios to the loop. "auto" is `paramsplit.train.loop.choose_executor`'s
pick, timed by its own few steps; "ok" means our measured throughput of that pick is within
5% of the fastest. The busy-machine table runs `auto` while background processes burn
every CPU in random bursts, and checks its pick against the quiet table's fastest; it shows
beside it what the old rule (the median of 5 rounds) would have picked from the same
timings. The harness table compares one epoch of `train_design` on digits with the same
number of bare `train_step` calls on an already warm executor.

Run on a quiet machine (the tables are the only load it should see):
`.venv/bin/python benchmarks/executors.py [--quick] [--threads N] [--busy-trials N]`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.table import Table

import paramsplit as ps
from paramsplit.data import Augmentation, DatasetTensors, load_dataset
from paramsplit.specs import DesignSpec, InputSpec, TrainConfig
from paramsplit.train import EXECUTORS, choose_executor, make_executor, train_design
from paramsplit.train.choice import ROUNDS

DEVICE = torch.device("cpu")
AUTO_TOLERANCE = 0.05  # auto is "ok" within 5% of the fastest executor's throughput
BURST_S = (0.5, 3.0)  # competing load: each burner is busy, then idle, for U(0.5, 3) s
OLD_RULE_ROUNDS = 5  # the rule auto had before: the median of 5 interleaved steps
WARMUP_STEPS = 2
HARNESS_REPEATS = 5
HARNESS_REPEATS_QUICK = 2


@dataclass(frozen=True)
class Case:
    input_spec: InputSpec
    budget: str
    members: tuple[int, ...]
    max_steps: int | None = None  # fewer timed steps where one step takes seconds


def cases(quick: bool) -> list[Case]:
    digits = InputSpec(1, 8, 8, 10)
    if quick:
        return [Case(digits, "50k", (4, 8))]
    # ResNet-20's size on 3x32x32, where a step takes 1-2 s on 2 cores. (Its weq ensemble
    # does not fit at k = 4: a resnet-8 member has a third of a resnet-20's parameters.)
    return [
        Case(digits, "50k", (2, 4, 8)),
        Case(digits, "200k", (2, 4, 8)),
        Case(InputSpec(3, 32, 32, 10), "272k", (4,), max_steps=5),
    ]


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line)
    except (OSError, StopIteration):
        pass
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")} or "glibc defaults"
    return (
        f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} thread(s), Python {platform.python_version()}, "
        f"allocator: {malloc}"
    )


def random_dataset(input_spec: InputSpec, num_train: int = 1024) -> DatasetTensors:
    """Random uint8 images: enough for `choose_executor` where no dataset is offline."""
    generator = torch.Generator().manual_seed(0)
    shape = (num_train, *input_spec.shape)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    labels = torch.randint(input_spec.num_classes, (num_train,), generator=generator)
    return DatasetTensors(
        name=f"random-{input_spec.name}",
        train_images=images,
        train_labels=labels,
        val_images=images[:256],
        val_labels=labels[:256],
        test_images=images[:256],
        test_labels=labels[:256],
        class_names=tuple(str(i) for i in range(input_spec.num_classes)),
        mean=torch.full((input_spec.channels,), 0.5),
        std=torch.full((input_spec.channels,), 0.25),
        augmentation=Augmentation.NONE,
        crop_padding=0,
    )


def random_batch(design: DesignSpec, input_spec: InputSpec, batch_size: int):
    generator = torch.Generator().manual_seed(0)
    k = design.num_members
    images = torch.randn(k, batch_size, *input_spec.shape, generator=generator)
    labels = torch.randint(input_spec.num_classes, (k, batch_size), generator=generator)
    return images, labels


def step_times_s(
    design: DesignSpec, input_spec: InputSpec, config: TrainConfig, names: list[str], steps: int
) -> dict[str, float]:
    """Median seconds per training step of each executor, stepped in alternation."""
    seeds = list(range(design.num_members))
    executors = {
        n: make_executor(n, design.member, input_spec, seeds, config, DEVICE) for n in names
    }
    images, labels = random_batch(design, input_spec, config.batch_size)
    times: dict[str, list[float]] = {name: [] for name in names}
    for step in range(WARMUP_STEPS + steps):
        for name, executor in executors.items():
            began = time.perf_counter()
            executor.train_step(images, labels)
            if step >= WARMUP_STEPS:
                times[name].append(time.perf_counter() - began)
    return {name: statistics.median(values) for name, values in times.items()}


def torchensemble_images_per_s(
    design: DesignSpec, input_spec: InputSpec, config: TrainConfig, steps: int
) -> float:
    """One epoch of torchensemble's VotingClassifier on `steps` random batches (a peer)."""
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from torchensemble import VotingClassifier  # type: ignore[import-not-found]

    class Single(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = ps.build_model(design.member, input_spec)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)[:, 0]  # [B, classes], as torchensemble expects

    images, labels = random_batch(DesignSpec.of(1, design.member), input_spec, config.batch_size)
    data = TensorDataset(images[0].repeat(steps, 1, 1, 1), labels[0].repeat(steps))
    ensemble = VotingClassifier(estimator=Single, n_estimators=design.num_members, cuda=False)
    ensemble.set_optimizer(
        "SGD",
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay_for(design.member.family),
    )
    began = time.perf_counter()
    ensemble.fit(DataLoader(data, batch_size=config.batch_size), epochs=1, save_model=False)
    return design.num_members * len(data) / (time.perf_counter() - began)


def has_torchensemble() -> bool:
    try:
        import torchensemble  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


def throughput_row(
    design: DesignSpec,
    input_spec: InputSpec,
    dataset: DatasetTensors,
    config: TrainConfig,
    steps: int,
    peer: bool,
) -> tuple[list[str], str]:
    """The table cells of one design, and auto's pick."""
    k = design.num_members
    names = list(EXECUTORS) if k > 1 else ["loop"]
    step_s = step_times_s(design, input_spec, config, names, steps)
    rate = {name: k * config.batch_size / s for name, s in step_s.items()}
    fastest = max(rate, key=rate.__getitem__)
    auto = choose_executor(design, dataset, config, DEVICE).name
    ok = rate.get(auto, 0.0) >= (1 - AUTO_TOLERANCE) * rate[fastest]
    cells = [f"{rate[name]:,.0f}" if name in rate else "—" for name in EXECUTORS]
    cells += [f"{rate[n] / rate['loop']:.2f}×" if n in rate else "—" for n in ("fused", "vmap")]
    cells += [fastest, auto, "yes" if ok else "NO"]
    if peer:
        cells.append(f"{torchensemble_images_per_s(design, input_spec, config, steps):,.0f}")
    return cells, auto


def throughput_table(args: argparse.Namespace, console: Console) -> dict[str, str]:
    """The executor table; returns auto's pick per design name (used by the harness table)."""
    config = TrainConfig(batch_size=args.batch_size)
    digits = load_dataset("digits")
    table = Table(
        title=f"Training throughput, member-images/s (median of {args.steps} steps or as shown, "
        f"batch {args.batch_size} per member, fp32, {DEVICE}, {torch.get_num_threads()} threads)"
    )
    columns = ["input", "steps", "budget", "design", "class", "params (ratio)", *EXECUTORS]
    columns += ["fused/loop", "vmap/loop", "fastest", "auto", "auto ok"]
    columns += ["torchensemble"] if args.peer else []
    for column in columns:
        table.add_column(column, justify="right")
    picks: dict[str, str] = {}
    for case in cases(args.quick):
        spec = case.input_spec
        dataset = digits if spec == digits.input_spec() else random_dataset(spec)
        steps = min(args.steps, case.max_steps or args.steps)
        for row in ps.plan("resnet", case.budget, case.members, input_spec=spec):
            head = [spec.name, str(steps), case.budget]
            if row.design is None:
                blank = [""] * (len(columns) - 5)
                table.add_row(*head, "infeasible", str(row.design_class), *blank)
                continue
            cells, picks[row.design.name] = throughput_row(
                row.design, spec, dataset, config, steps, args.peer
            )
            params = f"{row.total_params:,} ({row.ratio:.2f})"
            table.add_row(*head, row.design.name, str(row.design_class), params, *cells)
    console.print(table)
    if not args.peer:
        console.print("torchensemble is not installed: its VotingClassifier peer was skipped.")
    return picks


def burn_cpu_in_bursts(stop: multiprocessing.synchronize.Event, seed: int) -> None:
    """A competing job: spin for a random while, rest for a random while, until stopped."""
    rng = random.Random(seed)
    while not stop.is_set():
        busy_until = time.monotonic() + rng.uniform(*BURST_S)
        while time.monotonic() < busy_until:
            pass
        stop.wait(rng.uniform(*BURST_S))


@contextmanager
def competing_load(num_burners: int) -> Iterator[None]:
    """`num_burners` processes burning CPU in independent random bursts."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    burners = [
        context.Process(target=burn_cpu_in_bursts, args=(stop, seed), daemon=True)
        for seed in range(num_burners)
    ]
    for burner in burners:
        burner.start()
    try:
        yield
    finally:
        stop.set()
        for burner in burners:
            burner.join()


def busy_table(args: argparse.Namespace, console: Console) -> None:
    """auto under bursts of competing load, judged by throughput measured quietly."""
    config = TrainConfig(batch_size=args.batch_size)
    digits = load_dataset("digits")
    num_burners = args.burners or os.cpu_count() or 1
    table = Table(
        title=f"auto on a busy machine: {num_burners} competing process(es) burn CPU in bursts "
        f"(busy, then idle, U{BURST_S} s each) while auto times; {args.busy_trials} trials; "
        "throughput of each pick relative to the fastest, measured quietly"
    )
    columns = ["input", "design", "fastest (quiet)", "auto picks", "auto / fastest",
               "auto ok", "old rule picks", "old / fastest", "rounds", "re-timed"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for case in cases(args.quick):
        spec = case.input_spec
        dataset = digits if spec == digits.input_spec() else random_dataset(spec)
        steps = min(args.steps, case.max_steps or args.steps)
        for row in ps.plan("resnet", case.budget, case.members, input_spec=spec):
            design = row.design
            if design is None or design.num_members == 1:
                continue
            quiet_s = step_times_s(design, spec, config, list(EXECUTORS), steps)
            fastest = min(quiet_s, key=quiet_s.__getitem__)
            picks, old_picks, rounds, retimed = [], [], [], 0
            with competing_load(num_burners):
                for _ in range(args.busy_trials):
                    choice = choose_executor(design, dataset, config, DEVICE)
                    picks.append(choice.name)
                    first = {n: t[:OLD_RULE_ROUNDS] for n, t in choice.rounds_ms.items()}
                    medians = {n: statistics.median(t) for n, t in first.items()}
                    old_picks.append(min(medians, key=medians.__getitem__))
                    rounds.append(len(choice.rounds_ms[choice.name]))
                    retimed += rounds[-1] > ROUNDS
            worst = max(quiet_s[p] for p in picks)
            worst_old = max(quiet_s[p] for p in old_picks)
            table.add_row(
                spec.name, design.name, fastest, ", ".join(picks),
                f"{quiet_s[fastest] / worst:.2f}",
                "yes" if quiet_s[fastest] / worst >= 1 - AUTO_TOLERANCE else "NO",
                ", ".join(old_picks), f"{quiet_s[fastest] / worst_old:.2f}",
                "/".join(map(str, rounds)), f"{retimed}/{args.busy_trials}",
            )  # fmt: skip
    console.print(table)
    console.print(
        "auto / fastest: the quiet throughput of auto's slowest pick over the trials, as a "
        "fraction of the fastest executor's; old rule: the median of the first "
        f"{OLD_RULE_ROUNDS} rounds of the same timings."
    )


def harness_table(args: argparse.Namespace, console: Console, picks: dict[str, str]) -> None:
    """One epoch of train_design against the same number of bare steps, medians of repeats."""
    digits = load_dataset("digits")
    input_spec = digits.input_spec()
    config = TrainConfig(epochs=1, batch_size=args.batch_size)
    num_train = len(digits.train_images)
    full, last = divmod(num_train, config.batch_size)
    batch_sizes = [config.batch_size] * full + ([last] if last else [])
    rows = ps.plan("resnet", "50k", (4,), input_spec=input_spec)
    designs = [row.design for row in rows if row.design is not None]
    if args.quick:
        designs = designs[:2]  # the single network and the deq ensemble
    repeats = HARNESS_REPEATS_QUICK if args.quick else HARNESS_REPEATS
    table = Table(
        title=f"Harness overhead: 1 epoch of train_design on digits ({num_train} train images, "
        f"{len(batch_sizes)} steps) vs bare train_step, median of {repeats}"
    )
    for column in ("design", "executor", "bare steps s", "epoch train s", "epoch overhead",
                   "whole call s", "call overhead"):  # fmt: skip
        table.add_column(column, justify="right")
    for design in designs:
        name = picks.get(design.name, "fused" if design.num_members > 1 else "loop")
        seeds = list(range(design.num_members))
        executor = make_executor(name, design.member, input_spec, seeds, config, DEVICE)
        batches = [random_batch(design, input_spec, size) for size in batch_sizes]
        for images, labels in batches[:WARMUP_STEPS]:
            executor.train_step(images, labels)
        bare, epoch, call = [], [], []
        for _ in range(repeats):
            began = time.perf_counter()
            for images, labels in batches:
                executor.train_step(images, labels)
            bare.append(time.perf_counter() - began)
            began = time.perf_counter()
            result = train_design(design, digits, config, seed=0, executor=name, device=DEVICE)
            call.append(time.perf_counter() - began)
            epoch.append(result.train_time_s)
        bare_s, epoch_s, call_s = (statistics.median(v) for v in (bare, epoch, call))
        table.add_row(
            design.name, name, f"{bare_s:.3f}", f"{epoch_s:.3f}", f"{epoch_s / bare_s - 1:+.0%}",
            f"{call_s:.3f}", f"{call_s / bare_s - 1:+.0%}",
        )  # fmt: skip
    console.print(table)
    console.print(
        "epoch train s: the epoch's training time as train_design records it (batching, "
        "normalising, a fresh executor's first steps); whole call: also building the "
        "executor, validation, test evaluation and copying member states."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits at 50k only, fewer steps")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--steps", type=int, help="timed steps per executor (default 10; 5 quick)")
    parser.add_argument("--batch-size", type=int, default=128, help="per member (default 128)")
    parser.add_argument(
        "--busy-trials", type=int, help="auto runs under load per design (default 3; 1 quick)"
    )
    parser.add_argument("--burners", type=int, help="competing processes (default: one per CPU)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.steps = args.steps or (5 if args.quick else 10)
    args.busy_trials = args.busy_trials or (1 if args.quick else 3)
    args.peer = has_torchensemble()
    console = Console(width=200)  # tables are wider than a default 80-column pipe
    console.print(f"Machine: {machine()}")
    began = time.perf_counter()
    picks = throughput_table(args, console)
    busy_table(args, console)
    harness_table(args, console, picks)
    console.print(f"Finished in {time.perf_counter() - began:.0f} s.")


if __name__ == "__main__":
    main()
