"""THE ORACLE: the fused and vmap executors are k separate members, and the oracle's power
is itself tested.

The oracle trains the same k members as k separate networks (the loop: plain PyTorch, one
SGD per network) and through the executor under test, and compares after every step: the
member losses, every weight and its update, SGD's momentum buffers, BatchNorm's running
statistics and batch count, the learning rate, and eval-mode outputs after every epoch.
It runs in float64. In float32, grouped and plain convolutions round differently (~1e-7),
and over a few steps a ReLU or BatchNorm on the edge turns that into ~1% differences now and
then; in float64 the executors agree to ~1e-12, so the tolerance can be 1e-8 and the
smallest fault below stands 10^4 above it. (Whole runs in float32 are compared further
down.) The scenario makes each part of the protocol move something far above rounding:

- epoch 1 feeds zero images. Every activation is then zero and ReLU passes no gradient, so
  weight decay alone (through momentum and Nesterov) moves the weights: wrong decay changes
  the update by 100% or more, at the family's own weight decay;
- warm-up, then a milestone, stepped per epoch: the learning rate changes every epoch;
- three members, so a mix-up between members shows; 4 images per batch, so BatchNorm's
  batch statistics differ from its running ones.

`FAULTS` break an executor in one way each; the oracle must catch every one in every family.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor

import paramsplit as ps
from paramsplit.data import Augmentation, load_dataset
from paramsplit.specs import DesignClass, DesignSpec, TrainConfig
from paramsplit.train import Executor, lr_factor, make_executor, member_seeds, train_design

CPU = torch.device("cpu")
NUM_MEMBERS = 3
INPUT = ps.InputSpec(1, 8, 8, 10)
BATCH = 4
STEPS_PER_EPOCH = 2
DECAY_ONLY_EPOCHS = 1  # zero images: only weight decay moves the weights
# The family's own weight decay; lr factors per epoch 0.5 (warm-up), 1, 0.5 (milestone).
CONFIG = TrainConfig(
    epochs=3,
    lr=0.1,
    momentum=0.9,
    nesterov=True,
    schedule="multistep",
    milestones=(0.6,),
    gamma=0.5,
    warmup_epochs=1,
)
# Norm-wise: |candidate - reference| <= RTOL |reference| + ATOL sqrt(numel). Measured in
# float64: below 1e-11 in every family. ATOL covers tensors that hold rounding noise only
# (VGG's conv biases before BatchNorm, whose true gradient is zero).
RTOL = 1e-8
ATOL = 1e-11
ORACLE_FAILS = "differs from separate members"

Snapshot = dict[str, Any]


def _seeds() -> list[int]:
    return [s.init for s in member_seeds(7, NUM_MEMBERS)]


def _trace(executor: Executor) -> Iterator[tuple[str, Snapshot]]:
    """Run the scenario, yielding what the oracle compares after each step and epoch."""
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(8, *INPUT.shape, generator=generator)  # eval-mode inputs

    def evaluated() -> Tensor:
        executor.set_training(False)
        logits = executor.predict(probe)  # [8, k, classes]
        executor.set_training(True)
        return logits

    yield "initialisation", {"states": executor.member_states(), "eval": evaluated()}
    for epoch in range(1, CONFIG.epochs + 1):
        for step in range(1, STEPS_PER_EPOCH + 1):
            images = torch.randn(NUM_MEMBERS, BATCH, *INPUT.shape, generator=generator)
            targets = torch.randint(INPUT.num_classes, (NUM_MEMBERS, BATCH), generator=generator)
            if epoch <= DECAY_ONLY_EPOCHS:
                images = torch.zeros_like(images)
            losses = executor.train_step(images, targets)
            yield (
                f"epoch {epoch} step {step}",
                {
                    "losses": losses,
                    "states": executor.member_states(),
                    "momentum": executor.member_momentum(),
                    "lr": executor.lr,
                },
            )
        executor.end_epoch()
        yield f"end of epoch {epoch}", {"lr": executor.lr, "eval": evaluated()}


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # models and inputs built from here on
    yield
    torch.set_default_dtype(previous)


@functools.cache
def _separate_members(arch: ps.ArchSpec) -> list[tuple[str, Snapshot]]:
    """The reference: the loop executor, k plain networks with an optimizer each."""
    return list(_trace(make_executor("loop", arch, INPUT, _seeds(), CONFIG, CPU)))


def _check_close(
    actual: Tensor,
    expected: Tensor,
    what: str,
    *,
    exact: bool = False,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> None:
    if exact or not expected.dtype.is_floating_point:
        assert torch.equal(actual, expected), f"{ORACLE_FAILS}: {what} is not identical"
        return
    error = float((actual.double() - expected.double()).norm())
    allowed = rtol * float(expected.double().norm()) + atol * math.sqrt(expected.numel())
    assert error <= allowed, f"{ORACLE_FAILS}: {what}: error {error:.2e} > {allowed:.2e}"


def _check_members(
    actual: list[dict[str, Tensor]], expected: list[dict[str, Tensor]], what: str, **kw: Any
) -> None:
    assert len(actual) == len(expected), f"{ORACLE_FAILS}: {what}: number of members"
    for i, (ours, theirs) in enumerate(zip(actual, expected, strict=True)):
        assert ours.keys() == theirs.keys(), f"{ORACLE_FAILS}: {what}: keys of member {i}"
        for key, value in theirs.items():
            _check_close(ours[key], value, f"{what}: {key} of member {i}", **kw)


def _updates(after: list[dict[str, Tensor]], before: list[dict[str, Tensor]]):
    return [
        {key: value - old[key] for key, value in new.items() if value.dtype.is_floating_point}
        for new, old in zip(after, before, strict=True)
    ]


def check_against_separate_members(
    arch: ps.ArchSpec, name: str, fault: Callable[[Executor], None] | None = None
) -> None:
    """The oracle: executor `name` (broken by `fault`, if given) against separate members."""
    executor = make_executor(name, arch, INPUT, _seeds(), CONFIG, CPU)
    if fault is not None:
        fault(executor)
    previous: dict[str, Any] = {}
    for (where, expected), (_, actual) in zip(
        _separate_members(arch), _trace(executor), strict=True
    ):
        what = f"{name} at {where}"
        if "lr" in expected:
            assert math.isclose(actual["lr"], expected["lr"], rel_tol=1e-12), (
                f"{ORACLE_FAILS}: {what}: lr {actual['lr']} != {expected['lr']}"
            )
        if "losses" in expected:
            _check_close(actual["losses"], expected["losses"], f"{what}: losses")
        if "states" in expected:
            initial = where == "initialisation"  # the same weights, bit for bit
            _check_members(actual["states"], expected["states"], what, exact=initial)
            if previous:  # updates: small next to the weights, so compared on their own
                _check_members(
                    _updates(actual["states"], previous["actual"]),
                    _updates(expected["states"], previous["expected"]),
                    f"{what}: update",
                )
            previous = {"actual": actual["states"], "expected": expected["states"]}
        if "momentum" in expected:
            _check_members(actual["momentum"], expected["momentum"], f"{what}: momentum")
        if "eval" in expected:
            _check_close(actual["eval"], expected["eval"], f"{what}: eval-mode logits")


@pytest.mark.parametrize("name", ["fused", "vmap"])
def test_executor_equals_separate_members(float64, small_arch, name):
    check_against_separate_members(small_arch, name)


# --- Faults: each breaks one thing; the oracle must catch each in every family. ----------


def _optimizer_setting(key: str, change: Callable[[Any], Any]) -> Callable[[Executor], None]:
    def apply(executor: Executor) -> None:
        for group in executor.optimizers[0].param_groups:
            group[key] = change(group[key])

    return apply


def _schedule(**changes: Any) -> Callable[[Executor], None]:
    """The learning rate follows a schedule of another config."""
    other = dataclasses.replace(CONFIG, **changes)

    def apply(executor: Executor) -> None:
        optimizer = executor.optimizers[0]
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        executor.schedulers = [
            torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, other))
        ]

    return apply


def _schedule_per_batch(executor: Executor) -> None:
    step_schedule, train_step = executor.end_epoch, executor.train_step

    def train_step_and_schedule(images: Tensor, targets: Tensor) -> Tensor:
        losses = train_step(images, targets)
        step_schedule()
        return losses

    executor.train_step = train_step_and_schedule  # type: ignore[method-assign]
    executor.end_epoch = lambda: None  # type: ignore[method-assign]


def _schedule_never_stepped(executor: Executor) -> None:
    executor.end_epoch = lambda: None  # type: ignore[method-assign]


def _momentum_reset_every_epoch(executor: Executor) -> None:
    end_epoch = executor.end_epoch

    def end_epoch_and_reset() -> None:
        end_epoch()
        executor.optimizers[0].state.clear()

    executor.end_epoch = end_epoch_and_reset  # type: ignore[method-assign]


def _after_each_step(change: Callable[[str, Tensor, Tensor], Tensor]) -> Callable:
    """Rewrite member states after each step: `change(key, before, after)` -> after."""

    def apply(executor: Executor) -> None:
        train_step = executor.train_step

        def changed_train_step(images: Tensor, targets: Tensor) -> Tensor:
            before = executor.member_states()
            losses = train_step(images, targets)
            executor.load_member_states(
                [
                    {key: change(key, old[key], value) for key, value in new.items()}
                    for old, new in zip(before, executor.member_states(), strict=True)
                ]
            )
            return losses

        executor.train_step = changed_train_step  # type: ignore[method-assign]

    return apply


def _running_stats(change: Callable[[Tensor, Tensor], Tensor]) -> Callable:
    def rewrite(key: str, before: Tensor, after: Tensor) -> Tensor:
        running = key.endswith(("running_mean", "running_var"))
        return change(before, after) if running else after

    return _after_each_step(rewrite)


def _batches_not_counted(key: str, before: Tensor, after: Tensor) -> Tensor:
    return before if key.endswith("num_batches_tracked") else after


def _batch_statistics_in_eval(executor: Executor) -> None:
    set_training = executor.set_training
    executor.set_training = lambda mode: set_training(True)  # type: ignore[method-assign]


def _other_init_seeds(executor: Executor) -> None:
    executor.load_member_states(
        [
            ps.build_model(executor.arch, executor.input_spec, seed=seed + 1).state_dict()
            for seed in _seeds()
        ]
    )


def _members_permuted(executor: Executor) -> None:
    states = executor.member_states()
    executor.load_member_states(states[1:] + states[:1])


def _gradients(change: Callable[[Tensor], None]) -> Callable[[Executor], None]:
    """Change every gradient just before the optimizer steps; `change` gets it as [k, ...]."""

    def apply(executor: Executor) -> None:
        def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    change(param.grad.unflatten(0, (NUM_MEMBERS, -1)))

        executor.optimizers[0].register_step_pre_hook(hook)

    return apply


def _leak(grads: Tensor) -> None:
    grads[1] += 1e-4 * grads[0]


def _member_1_gets_member_0s_batch(executor: Executor) -> None:
    train_step = executor.train_step

    def shared_batch(images: Tensor, targets: Tensor) -> Tensor:
        images, targets = images.clone(), targets.clone()
        images[1], targets[1] = images[0], targets[0]
        return train_step(images, targets)

    executor.train_step = shared_batch  # type: ignore[method-assign]


FAULTS: dict[str, Callable[[Executor], None]] = {
    "no weight decay": _optimizer_setting("weight_decay", lambda wd: 0.0),
    "3x weight decay": _optimizer_setting("weight_decay", lambda wd: 3 * wd),
    "momentum 0.8": _optimizer_setting("momentum", lambda m: 0.8),
    "momentum reset every epoch": _momentum_reset_every_epoch,
    "no Nesterov": _optimizer_setting("nesterov", lambda n: False),
    "schedule stepped per batch": _schedule_per_batch,
    "schedule never stepped": _schedule_never_stepped,
    "no warm-up": _schedule(warmup_epochs=0),
    "milestones ignored": _schedule(milestones=()),
    "BatchNorm momentum 0.2": _running_stats(lambda before, after: 2 * after - before),
    "BatchNorm running stats frozen": _running_stats(lambda before, after: before),
    "BatchNorm batches not counted": _after_each_step(_batches_not_counted),
    "eval mode uses batch statistics": _batch_statistics_in_eval,
    "members initialised with other seeds": _other_init_seeds,
    "members' initial weights permuted": _members_permuted,
    "gradients of the mean loss (÷k)": _gradients(lambda grads: grads.div_(NUM_MEMBERS)),
    "0.01% of member 0's gradient leaks into member 1": _gradients(_leak),
    "member 1 trains on member 0's batch": _member_1_gets_member_0s_batch,
}


# 18 faults x 4 families per executor; the faults reach both executors through the same
# interface, so the vmap half runs with the slow tests.
@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
@pytest.mark.parametrize("name", ["fused", pytest.param("vmap", marks=pytest.mark.slow)])
def test_the_oracle_catches_each_fault_in_every_family(float64, small_arch, name, fault):
    with pytest.raises(AssertionError, match=ORACLE_FAILS):
        check_against_separate_members(small_arch, name, FAULTS[fault])


# --- Whole runs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_digits():
    digits = load_dataset("digits")
    return dataclasses.replace(
        digits,
        train_images=digits.train_images[:192],
        train_labels=digits.train_labels[:192],
        augmentation=Augmentation.CROP_FLIP,
        crop_padding=1,
    )


@pytest.mark.parametrize("name", ["fused", "vmap"])
def test_training_run_equals_separate_runs(tiny_digits, name):
    # Whole runs: own data order and augmentation per member, schedule stepped per epoch.
    design = DesignSpec(DesignClass.DEQ, 2, ps.parse_arch("resnet-8-4"))
    config = TrainConfig(epochs=2, batch_size=64, lr=0.05)
    runs = {
        executor: train_design(design, tiny_digits, config, seed=3, executor=executor)
        for executor in ("loop", name)
    }
    _check_members(
        runs[name].member_states, runs["loop"].member_states, "final states", rtol=1e-4, atol=1e-6
    )
    for ours, theirs in zip(runs[name].epochs, runs["loop"].epochs, strict=True):
        assert ours.train_loss == pytest.approx(theirs.train_loss, rel=1e-4)
        assert ours.lr == theirs.lr
        assert ours.val.nll == pytest.approx(theirs.val.nll, rel=1e-4)


# --- Loss scaling (fp16): one member's overflow never holds back the others. ---------------
# fp16 needs CUDA, so on a CPU the per-member scaler runs in fp32 (`loss_scaling=True`) and
# an overflow is injected into one member's gradient; the loop's k torch GradScalers are the
# reference for every decision: who steps, and each member's scale.

GROWTH_EVERY_2_STEPS = {"growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2}


def _scaled_pair(name: str, config: TrainConfig, device: torch.device, scales: list[float]):
    arch = ps.parse_arch("resnet-8-4")
    pair = [
        make_executor(n, arch, INPUT, _seeds(), config, device, loss_scaling=True)
        for n in ("loop", name)
    ]
    loop, joint = pair
    for scaler, scale in zip(loop.scalers, scales, strict=True):
        scaler.load_state_dict({"scale": scale, "_growth_tracker": 0, **GROWTH_EVERY_2_STEPS})
    joint.scalers[0].load_state_dict(
        {"scale": scales, "_growth_tracker": [0] * len(scales), **GROWTH_EVERY_2_STEPS}
    )
    return loop, joint


def _overflow(executor: Executor, member: int):
    """Make `member`'s next gradient of its classifier bias infinite; returns the hook."""
    if executor.name == "loop":
        param = dict(executor.models[member].named_parameters())["head.fc.bias"]
        return param.register_hook(lambda grad: torch.full_like(grad, math.inf))

    def infinite_for_member(grad: Tensor) -> Tensor:
        grad = grad.clone()
        grad.unflatten(0, (NUM_MEMBERS, -1))[member] = math.inf
        return grad

    return executor.named_params["head.fc.bias"].register_hook(infinite_for_member)


@pytest.mark.parametrize("name", ["fused", "vmap"])
def test_an_overflow_skips_only_that_members_step(name):
    config = TrainConfig(lr=0.05)
    loop, joint = _scaled_pair(name, config, CPU, [2.0**16] * NUM_MEMBERS)
    generator = torch.Generator().manual_seed(0)
    # Member 1 overflows on its very first step (before it has a momentum buffer), then
    # members 0 and 2 together, then all three.
    overflows = [{1}, set(), {0, 2}, {0, 1, 2}, set(), set()]
    scales, streaks = [2.0**16] * NUM_MEMBERS, [0] * NUM_MEMBERS  # GradScaler's rules by hand
    for step, overflowing in enumerate(overflows, start=1):
        images = torch.randn(NUM_MEMBERS, 8, *INPUT.shape, generator=generator)
        targets = torch.randint(INPUT.num_classes, (NUM_MEMBERS, 8), generator=generator)
        for executor in (loop, joint):
            before = executor.member_states(), executor.member_momentum()
            hooks = [_overflow(executor, member) for member in overflowing]
            executor.train_step(images, targets)
            for hook in hooks:
                hook.remove()
            after = executor.member_states(), executor.member_momentum()
            for member in range(NUM_MEMBERS):
                weights = [
                    torch.equal(after[0][member][key], value)
                    for key, value in before[0][member].items()
                    if "running" not in key and "num_batches" not in key
                ]
                momentum = [
                    torch.equal(after[1][member][key], value)
                    for key, value in before[1][member].items()
                ]
                skipped = member in overflowing
                assert all(weights + momentum) == skipped, (executor.name, step, member)
        for member in range(NUM_MEMBERS):
            streaks[member] = 0 if member in overflowing else streaks[member] + 1
            if member in overflowing:
                scales[member] /= 2
            elif streaks[member] == 2:
                scales[member], streaks[member] = 2 * scales[member], 0
        assert loop.member_loss_scales() == scales, step
        assert joint.member_loss_scales() == scales, step
        _check_members(
            joint.member_states(), loop.member_states(), f"step {step}", rtol=1e-5, atol=1e-7
        )
        _check_members(
            joint.member_momentum(), loop.member_momentum(), f"step {step}", rtol=1e-5, atol=1e-7
        )
    restored = make_executor(name, joint.arch, INPUT, _seeds(), config, CPU, loss_scaling=True)
    restored.load_training_state(joint.training_state())  # as a checkpoint carries it
    assert restored.member_loss_scales() == scales


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["fused", "vmap"])
def test_fp16_members_overflow_on_their_own(name):
    # Member 1 starts with a loss scale far beyond fp16's range, so its scaled gradients
    # overflow and it backs off every step; the others (at a modest scale) step every time.
    cuda = torch.device("cuda")
    config = TrainConfig(lr=0.05, precision="fp16")
    loop, joint = _scaled_pair(name, config, cuda, [2.0**10, 2.0**40, 2.0**10])
    generator = torch.Generator().manual_seed(0)
    initial = loop.member_states()
    for step in range(1, 5):
        images = torch.randn(NUM_MEMBERS, 8, *INPUT.shape, generator=generator).to(cuda)
        targets = torch.randint(INPUT.num_classes, (NUM_MEMBERS, 8), generator=generator)
        for executor in (loop, joint):
            executor.train_step(images, targets.to(cuda))
        assert joint.member_loss_scales() == loop.member_loss_scales(), step
    assert loop.member_loss_scales()[1] == 2.0**36
    for executor in (loop, joint):
        states = executor.member_states()
        weight = "head.fc.weight"
        assert torch.equal(states[1][weight].cpu(), initial[1][weight].cpu())
        assert not torch.equal(states[0][weight].cpu(), initial[0][weight].cpu())
    _check_members(
        [{k: v.cpu() for k, v in s.items()} for s in joint.member_states()],
        [{k: v.cpu() for k, v in s.items()} for s in loop.member_states()],
        "fp16 states",
        rtol=1e-2,
        atol=1e-4,
    )
