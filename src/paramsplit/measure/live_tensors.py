"""Bytes of live tensors, counted at the allocation level while PyTorch runs.

`LiveTensors` is a `TorchDispatchMode`: it sees every operator's outputs, follows each new
tensor storage with a weak reference until it is freed, and keeps the running total and its
peak, split by what each storage holds. It counts what a program asks the allocator for, not
what the process or the allocator keeps (no allocator slack, no library pages, no
interpreter), so the same step gives the same bytes on every call. Under `FakeTensorMode`
the operators only compute shapes, so the count needs no memory at all (see
`paramsplit.measure.memory`).

A hand-written mode rather than `torch.distributed._tools.mem_tracker.MemTracker`: that
tracker gives the same peak (REFERENCE.md), but it is private API, takes one iteration per
tracker, files the optimizer step's temporaries under optimizer state, and needs modules to
find parameters, which a `vmap` executor calls functionally. Here a tensor's category is what
it *is* (a parameter, a gradient, a momentum buffer, the input batch) and, for a new tensor,
when it was made: in the forward pass an activation, in the backward pass or the optimizer
step a temporary (a new gradient too, until autograd stores it in `.grad`). Known limits:
storages resized in place (`UntypedStorage.resize_`) keep their first size, and memory a
kernel allocates for itself (a cuDNN or oneDNN workspace) is not a tensor and is not seen.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

# What a byte holds. Parameters include buffers (batch-norm statistics): the state dict.
CATEGORIES = (
    "parameters",
    "gradients",
    "optimizer_state",
    "inputs",
    "activations",
    "temporaries",
)
# The CUDA caching allocator hands out blocks in multiples of 512 bytes (kMinBlockSize in
# c10/cuda/CUDACachingAllocator.cpp); `max_memory_allocated` counts the rounded blocks.
CUDA_BLOCK_BYTES = 512
# Batch norm saves its batch mean and inverse std in float32 (the accumulate type) for bf16
# and fp16 inputs, on CPU and CUDA alike; the meta kernels that fake tensors run give them
# the input's dtype (torch 2.14). Outputs at these positions are counted as float32.
_FLOAT32_OUTPUTS = {
    getattr(torch.ops.aten, name).default: (1, 2)
    for name in ("native_batch_norm", "cudnn_batch_norm")
}


class _Entry:
    """One storage: its bytes and category (mutable: a temporary becomes a gradient)."""

    __slots__ = ("__weakref__", "category", "num_bytes")

    def __init__(self, num_bytes: int, category: str) -> None:
        self.num_bytes = num_bytes
        self.category = category


class LiveTensors(TorchDispatchMode):
    """Live tensor bytes by category while active, and the peak of their total.

    Tensors that exist before the mode is entered are counted only once `hold` names them.
    Use it for one step: enter, run, exit, then read `peak_bytes` and `peak_breakdown`.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        """`device`: where the counted program is meant to run (CUDA rounds up blocks),
        which may differ from the `meta` or fake tensors it is counted on."""
        super().__init__()
        self._round_bytes = CUDA_BLOCK_BYTES if torch.device(device).type == "cuda" else 1
        self._entries: WeakIdKeyDictionary = WeakIdKeyDictionary()  # storage -> _Entry
        self._hooks: list[Any] = []
        self._in_optimizer_step = False
        self.current: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self.start_breakdown: dict[str, int] = dict(self.current)
        self.peak_breakdown: dict[str, int] = dict(self.current)

    @property
    def current_bytes(self) -> int:
        return sum(self.current.values())

    @property
    def peak_bytes(self) -> int:
        return sum(self.peak_breakdown.values())

    def hold(self, tensors: Iterable[Tensor | None], category: str) -> None:
        """Count tensors made before the step (or move them to `category`)."""
        for tensor in tensors:
            if tensor is not None:
                self._count(tensor, category, reclassify=True)

    def hold_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Count an optimizer's parameters, their gradients and its state; follow new
        gradients as they are accumulated."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.hold(params, "parameters")
        self.hold((p.grad for p in params), "gradients")
        self.hold(_state_tensors(optimizer), "optimizer_state")
        for param in params:
            self._hooks.append(param.register_post_accumulate_grad_hook(self._on_gradient))

    def hold_modules(self, *modules: nn.Module) -> None:
        self.hold((t for m in modules for t in [*m.parameters(), *m.buffers()]), "parameters")

    def _on_gradient(self, param: Tensor) -> None:
        if param.grad is not None:
            self._count(param.grad, "gradients", reclassify=True)

    def _count(
        self,
        tensor: Tensor,
        category: str,
        *,
        reclassify: bool = False,
        size_bytes: int | None = None,
    ) -> None:
        """Count `tensor`'s storage once; `size_bytes` overrides the storage's own size."""
        if tensor.layout != torch.strided:
            return
        storage = tensor.untyped_storage()
        entry = self._entries.get(storage)
        if entry is not None:
            if reclassify and entry.category != category:
                self.current[entry.category] -= entry.num_bytes
                self.current[category] += entry.num_bytes
                entry.category = category
            return
        size = storage.nbytes() if size_bytes is None else size_bytes
        entry = _Entry(-(-size // self._round_bytes) * self._round_bytes, category)
        self._entries[storage] = entry
        weakref.finalize(storage, self._free, entry).atexit = False
        self.current[category] += entry.num_bytes

    def _free(self, entry: _Entry) -> None:
        self.current[entry.category] -= entry.num_bytes

    def _on_optimizer_step(self, optimizer: torch.optim.Optimizer, *_: Any) -> None:
        self._in_optimizer_step = True

    def _after_optimizer_step(self, optimizer: torch.optim.Optimizer, *_: Any) -> None:
        self._in_optimizer_step = False
        # Momentum buffers made by a first step were temporaries until now.
        self.hold(_state_tensors(optimizer), "optimizer_state")

    def __enter__(self) -> LiveTensors:
        self.start_breakdown = dict(self.current)
        self.peak_breakdown = dict(self.current)
        self._hooks += [
            register_optimizer_step_pre_hook(self._on_optimizer_step),
            register_optimizer_step_post_hook(self._after_optimizer_step),
        ]
        super().__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        super().__exit__(kind, error, traceback)
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        outputs = func(*args, **(kwargs or {}))
        # The autograd engine sets a graph task while it runs a backward pass.
        backward = torch._C._current_graph_task_id() != -1
        category = "temporaries" if backward or self._in_optimizer_step else "activations"
        float32_positions = _FLOAT32_OUTPUTS.get(func, ())
        for position, output in enumerate(tree_leaves(outputs)):
            if isinstance(output, Tensor):
                size = 4 * output.numel() if position in float32_positions else None
                self._count(output, category, size_bytes=size)
        if self.current_bytes > self.peak_bytes:
            self.peak_breakdown = dict(self.current)
        return outputs


def _state_tensors(optimizer: torch.optim.Optimizer) -> Iterator[Tensor]:
    for state in optimizer.state.values():
        for value in state.values():
            # SGD keeps a CPU `step` scalar only when fused or capturable; count tensors only.
            if isinstance(value, Tensor):
                yield value
