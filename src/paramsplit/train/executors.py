"""Executors: ways to train k ensemble members, all computing the same thing.

- `loop`: k separate networks, each with its own optimizer, stepped in turn;
- `fused`: one network that computes all k members (grouped convolutions, per-member heads);
- `vmap`: k networks' parameters stacked and run through `torch.func.vmap`.

Every executor starts from the same member weights (member i is built with its own seed),
takes member i's batch from row i of its input, and applies the same optimizer and schedule,
so all three equal k independent runs up to float rounding; the oracle tests check that.
SGD (with momentum, Nesterov and weight decay) is elementwise, so one optimizer over a fused
network's parameters takes exactly the steps k separate optimizers would. With fp16 each
member keeps its own loss scale (`paramsplit.train.scaling`), as k separate GradScalers would.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from paramsplit.errors import ConfigError
from paramsplit.models import build_model, merge_members
from paramsplit.models.layers import MemberNetwork
from paramsplit.models.members import merge_states, split_state
from paramsplit.specs import ArchSpec, InputSpec, TrainConfig
from paramsplit.train.device import memory_format
from paramsplit.train.scaling import MemberGradScaler, step_members

EXECUTORS = ("loop", "fused", "vmap")


def lr_factor(epoch: int, config: TrainConfig) -> float:
    """The learning rate at `epoch` (0-based) as a fraction of `config.lr`."""
    if epoch < config.warmup_epochs:
        return (epoch + 1) / (config.warmup_epochs + 1)
    if config.schedule == "cosine":
        progress = (epoch - config.warmup_epochs) / (config.epochs - config.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * progress))
    passed = sum(epoch >= round(m * config.epochs) for m in config.milestones)
    return float(config.gamma**passed)


def full_precision(tensor: Tensor) -> Tensor:
    """fp16/bf16 as fp32; fp32 and fp64 as they are (the oracle tests run in fp64)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def member_losses(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy per member. Shape: logits [B, k, C], targets [k, B] -> [k]."""
    per_example = F.cross_entropy(
        full_precision(logits).permute(0, 2, 1),  # [B, C, k]
        targets.t(),  # [B, k]
        reduction="none",
        label_smoothing=label_smoothing,
    )  # [B, k]
    return per_example.mean(dim=0)


class Executor:
    """Base: optimizer, schedule and precision shared by the three ways of running members."""

    name = "base"

    def __init__(
        self,
        arch: ArchSpec,
        input_spec: InputSpec,
        init_seeds: Sequence[int],
        config: TrainConfig,
        device: torch.device,
        *,
        loss_scaling: bool | None = None,
    ) -> None:
        if config.precision == "fp16" and device.type != "cuda":
            raise ConfigError("precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        self.arch = arch
        self.input_spec = input_spec
        self.num_members = len(init_seeds)
        self.config = config
        self.device = device
        self.weight_decay = config.weight_decay_for(arch.family)
        # fp16 needs loss scaling; `loss_scaling=True` runs the same logic at any precision
        # (the tests check overflow handling in fp32 on a CPU).
        self.loss_scaling = config.precision == "fp16" if loss_scaling is None else loss_scaling
        self._dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        singles = [build_model(arch, input_spec, seed=s, device=device) for s in init_seeds]
        self._setup(singles)

    def _setup(self, singles: list[MemberNetwork]) -> None:
        raise NotImplementedError

    def _optimizer(self, params: Iterator[Tensor] | list[Tensor]) -> torch.optim.SGD:
        return torch.optim.SGD(
            params,
            lr=self.config.lr,
            momentum=self.config.momentum,
            nesterov=self.config.nesterov and self.config.momentum > 0,
            weight_decay=self.weight_decay,
        )

    def _scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        config = self.config
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, config))

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self._dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._dtype)

    def prepare(self, images: Tensor) -> Tensor:
        if self.config.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=memory_format(self.config))
        return images

    # The interface every executor implements.
    def train_step(self, images: Tensor, targets: Tensor) -> Tensor:
        """One optimizer step for every member. Shape: [k, B, C, H, W], [k, B] -> losses [k]."""
        raise NotImplementedError

    def predict(self, images: Tensor) -> Tensor:
        """Eval-mode logits, every member on the same images. Shape: [B, C, H, W] -> [B, k, C]."""
        raise NotImplementedError

    # Set by each executor's `_setup`: one optimizer, schedule and scaler per independent
    # parameter set (k for the loop, one for the fused and vmap executors).
    optimizers: list[torch.optim.SGD]
    schedulers: list[torch.optim.lr_scheduler.LambdaLR]
    scalers: Sequence[torch.amp.GradScaler | MemberGradScaler]

    def end_epoch(self) -> None:
        """Step the learning-rate schedule: once per epoch, never per batch."""
        for scheduler in self.schedulers:
            scheduler.step()

    def training_state(self) -> dict[str, Any]:
        """Optimizer, schedule and loss-scaler state: with `member_states`, a checkpoint."""
        return {
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "scalers": [s.state_dict() for s in self.scalers],
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        for optimizer, saved in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        for scheduler, saved in zip(self.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(saved)
        for scaler, saved in zip(self.scalers, state["scalers"], strict=True):
            if saved:
                scaler.load_state_dict(saved)

    def member_states(self) -> list[dict[str, Tensor]]:
        """Each member's weights and statistics as a single network's state dict."""
        raise NotImplementedError

    def load_member_states(self, states: Sequence[dict[str, Tensor]]) -> None:
        """Replace every member's weights and statistics (optimizer state is kept)."""
        raise NotImplementedError

    def member_momentum(self) -> list[dict[str, Tensor]]:
        """Each member's SGD momentum buffers, keyed like its parameters; zeros where the
        optimizer has none yet (SGD's first step from zeros equals its first step without)."""
        raise NotImplementedError

    def member_loss_scales(self) -> list[float]:
        """Each member's current loss scale (1.0 without loss scaling)."""
        raise NotImplementedError

    def set_training(self, mode: bool) -> None:
        raise NotImplementedError

    @property
    def lr(self) -> float:
        return float(self.optimizers[0].param_groups[0]["lr"])


def _momentum(optimizer: torch.optim.Optimizer, param: Tensor) -> Tensor:
    buffer = optimizer.state.get(param, {}).get("momentum_buffer")
    return (buffer if buffer is not None else torch.zeros_like(param)).detach().clone()


class LoopExecutor(Executor):
    name = "loop"

    def _setup(self, singles: list[MemberNetwork]) -> None:
        self.models = [m.to(memory_format=memory_format(self.config)) for m in singles]
        self.runners: list[nn.Module] = [
            torch.compile(m) if self.config.compile else m  # type: ignore[misc]
            for m in self.models
        ]
        self.optimizers = [self._optimizer(m.parameters()) for m in self.models]
        self.schedulers = [self._scheduler(o) for o in self.optimizers]
        self.grad_scalers = [
            torch.amp.GradScaler(self.device.type, enabled=self.loss_scaling) for _ in singles
        ]
        self.scalers = self.grad_scalers

    def train_step(self, images: Tensor, targets: Tensor) -> Tensor:
        losses = []
        for i, (runner, optimizer, scaler) in enumerate(
            zip(self.runners, self.optimizers, self.grad_scalers, strict=True)
        ):
            optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                logits = runner(self.prepare(images[i]))  # [B, 1, C]
            loss = member_losses(logits, targets[i : i + 1], self.config.label_smoothing)[0]
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(loss.detach())
        return torch.stack(losses)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        with self.autocast():
            outputs = [runner(self.prepare(images)) for runner in self.runners]
        return full_precision(torch.cat(outputs, dim=1))  # [B, k, C]

    def member_states(self) -> list[dict[str, Tensor]]:
        return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in self.models]

    def load_member_states(self, states: Sequence[dict[str, Tensor]]) -> None:
        for model, state in zip(self.models, states, strict=True):
            model.load_state_dict(state)

    def member_momentum(self) -> list[dict[str, Tensor]]:
        return [
            {name: _momentum(optimizer, p) for name, p in model.named_parameters()}
            for model, optimizer in zip(self.models, self.optimizers, strict=True)
        ]

    def member_loss_scales(self) -> list[float]:
        return [scaler.get_scale() for scaler in self.grad_scalers]

    def set_training(self, mode: bool) -> None:
        for model in self.models:
            model.train(mode)


class JointExecutor(Executor):
    """An executor whose members' weights are one parameter set with one optimizer.

    Every parameter holds member i's values at `chunk(k, dim=0)[i]` (fused: the layout of
    `paramsplit.models.layers`; vmap: stacked along a new dim 0).
    """

    def _joint_optimizer(self, named_params: dict[str, Tensor]) -> None:
        self.named_params = named_params
        self.optimizer = self._optimizer(list(named_params.values()))
        self.scaler = MemberGradScaler(self.num_members, self.device)
        self.optimizers, self.scalers = [self.optimizer], [self.scaler]
        self.schedulers = [self._scheduler(self.optimizer)]

    def _logits(self, images: Tensor) -> Tensor:
        """Every member on its own batch. Shape: [k, B, C, H, W] -> [B, k, classes]."""
        raise NotImplementedError

    def train_step(self, images: Tensor, targets: Tensor) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self._logits(images)  # [B, k, C]
        losses = member_losses(logits, targets, self.config.label_smoothing)
        # The sum's gradient with respect to member i's weights is member i's own gradient.
        if not self.loss_scaling:
            losses.sum().backward()
            self.optimizer.step()
            return losses.detach()
        # Each member's own scale, inf check and skipped step: one member's overflow never
        # holds back the others (one shared GradScaler would skip every member's step).
        self.scaler.scale_losses(losses).backward()
        params = list(self.named_params.values())
        finite = self.scaler.unscale_(params)
        step_members(self.optimizer, params, finite)
        self.scaler.update(finite)
        return losses.detach()

    def _member_parts(self, tensor: Tensor) -> Sequence[Tensor]:
        """Member i's part of a joint tensor, shaped as in member i's own network."""
        raise NotImplementedError

    def member_momentum(self) -> list[dict[str, Tensor]]:
        members: list[dict[str, Tensor]] = [{} for _ in range(self.num_members)]
        for name, param in self.named_params.items():
            parts = self._member_parts(_momentum(self.optimizer, param))
            for member, part in zip(members, parts, strict=True):
                member[name] = part
        return members

    def member_loss_scales(self) -> list[float]:
        if not self.loss_scaling:
            return [1.0] * self.num_members
        return self.scaler.scale.tolist()


class FusedExecutor(JointExecutor):
    name = "fused"

    def _setup(self, singles: list[MemberNetwork]) -> None:
        self.model = merge_members(singles).to(memory_format=memory_format(self.config))
        self.runner: nn.Module = torch.compile(self.model) if self.config.compile else self.model  # type: ignore[assignment]
        self._joint_optimizer(dict(self.model.named_parameters()))

    def _logits(self, images: Tensor) -> Tensor:
        return self.runner(images)

    def _member_parts(self, tensor: Tensor) -> Sequence[Tensor]:
        return tensor.chunk(self.num_members, dim=0)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        with self.autocast():
            return full_precision(self.runner(self.prepare(images)))

    def member_states(self) -> list[dict[str, Tensor]]:
        return split_state(self.model.state_dict(), self.num_members)

    def load_member_states(self, states: Sequence[dict[str, Tensor]]) -> None:
        self.model.load_state_dict(merge_states(list(states)))

    def set_training(self, mode: bool) -> None:
        self.model.train(mode)


class VmapExecutor(JointExecutor):
    name = "vmap"

    def _setup(self, singles: list[MemberNetwork]) -> None:
        if self.config.compile:
            raise ConfigError("torch.compile is not supported with the vmap executor")
        self.params, self.buffers = stack_module_state(singles)
        # A stateless copy to call with the stacked tensors; its own weights are never used.
        self.base = copy.deepcopy(singles[0]).to("meta")
        self._joint_optimizer(self.params)

    def _call(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def _logits(self, images: Tensor) -> Tensor:
        logits = vmap(self._call)(self.params, self.buffers, images)  # [k, B, 1, C]
        return logits[:, :, 0].transpose(0, 1)

    def _member_parts(self, tensor: Tensor) -> Sequence[Tensor]:
        return tensor.unbind(0)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        with self.autocast():
            logits = vmap(self._call, in_dims=(0, 0, None))(self.params, self.buffers, images)
        return full_precision(logits[:, :, 0].transpose(0, 1))  # [B, k, C]

    def member_states(self) -> list[dict[str, Tensor]]:
        stacked = {**self.params, **self.buffers}
        return [
            {k: v[i].detach().clone() for k, v in stacked.items()} for i in range(self.num_members)
        ]

    @torch.no_grad()
    def load_member_states(self, states: Sequence[dict[str, Tensor]]) -> None:
        for key, tensor in {**self.params, **self.buffers}.items():
            tensor.copy_(torch.stack([state[key] for state in states]))

    def set_training(self, mode: bool) -> None:
        self.base.train(mode)


_CLASSES: dict[str, type[Executor]] = {
    "loop": LoopExecutor,
    "fused": FusedExecutor,
    "vmap": VmapExecutor,
}


def make_executor(
    name: str,
    arch: ArchSpec,
    input_spec: InputSpec,
    init_seeds: Sequence[int],
    config: TrainConfig,
    device: torch.device,
    *,
    loss_scaling: bool | None = None,
) -> Executor:
    """`loss_scaling` (default: on for fp16) is fp16's per-member loss scaling."""
    check_executor_name(name)
    return _CLASSES[name](arch, input_spec, init_seeds, config, device, loss_scaling=loss_scaling)


def check_executor_name(name: str, *, allow_auto: bool = False) -> None:
    if name not in _CLASSES and not (allow_auto and name == "auto"):
        raise ConfigError(f"unknown executor '{name}'; allowed: auto, {', '.join(EXECUTORS)}")


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` is the GPU where there is one, else the CPU; a device this machine lacks is
    refused here rather than failing halfway through a run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    allowed = "auto, cpu, cuda, cuda:N or mps"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; allowed: {allowed}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ConfigError(f"device '{name}' asked for, but this machine has {count} CUDA GPUs")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device '{name}' asked for, but MPS is not available here")
    elif device.type not in ("cpu", "mps"):
        raise ConfigError(f"device '{name}' is not supported; allowed: {allowed}")
    return device
