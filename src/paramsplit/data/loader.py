"""Batches as index tensors, and augmentation of whole batches on the device.

Random numbers are drawn on each generator's own device and then moved to the data's
device, so a seed gives the same data order and augmentation on CPU and GPU. Member i of an
ensemble draws from generator i exactly what a single run with that generator draws, in
the same order: one `randperm` per epoch in `member_batches`, then per step the crop
offsets and flips of `augment_batch`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from paramsplit.errors import UsageError


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")


def member_batches(
    num_examples: int,
    batch_size: int,
    generators: Sequence[torch.Generator],
    *,
    drop_last: bool = False,
    device: torch.device | str | None = None,
) -> Iterator[Tensor]:
    """One epoch of batches for k members, each in its own seeded random order.

    Row i is what a single run with `generators[i]` would see: `member_batches(n, b, [g])`
    yields exactly row i. Without `drop_last` the last step is smaller (n mod b).

    Shape:
        yields int64 [k, B] indices on `device` (default: the first generator's device).
    """
    _check_batch_size(batch_size)
    if not generators:
        raise UsageError("member_batches needs one generator per member, got none")
    if drop_last and num_examples < batch_size:
        raise UsageError(
            f"batch size {batch_size} is larger than the {num_examples} examples, so "
            "drop_last would leave no batch; lower the batch size"
        )
    target = torch.device(device) if device is not None else generators[0].device
    # Drawn now, not at the first step: the call is where each generator advances.
    orders = torch.stack(
        [torch.randperm(num_examples, generator=g, device=g.device).to(target) for g in generators]
    )  # [k, N]
    num_steps = num_examples // batch_size if drop_last else -(-num_examples // batch_size)
    return (orders[:, i * batch_size : (i + 1) * batch_size] for i in range(num_steps))


def eval_batches(num_examples: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices over a split in its fixed order; slicing a tensor with them makes
    views, not copies."""
    _check_batch_size(batch_size)
    starts = range(0, num_examples, batch_size)
    return (slice(start, min(start + batch_size, num_examples)) for start in starts)


def draw_augmentation(
    num_images: int, generator: torch.Generator, *, pad: int, flip: bool
) -> tuple[Tensor, Tensor | None]:
    """Random crop offsets in [0, 2·pad] and, when `flip`, flip decisions (else None),
    drawn on the generator's device.

    Shape:
        returns int64 [N, 2] (row, column offset) and bool [N].
    """
    device = generator.device
    offsets = torch.randint(0, 2 * pad + 1, (num_images, 2), generator=generator, device=device)
    flips = torch.rand(num_images, generator=generator, device=device) < 0.5 if flip else None
    return offsets, flips


def apply_augmentation(
    images: Tensor, offsets: Tensor, flips: Tensor | None, *, pad: int
) -> Tensor:
    """Crop each image at its offset in the zero-padded batch, mirrored where `flips`.

    One gather over a view of every crop window: no per-image Python, any dtype. Indexing
    the windows by (image, row, column) took 2.5-4× less CPU time than indexing every pixel
    (uint8 batches of 128-1024 images, 1 thread).

    Shape:
        images [N, C, H, W], offsets [N, 2], flips [N] -> [N, C, H, W]
    """
    num_images, _, height, width = images.shape
    device = images.device
    rows, columns = offsets.to(device).unbind(1)
    # Zero padding, as torchvision's RandomCrop(32, padding=4) in the CIFAR recipe.
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images  # [N, C, H+2p, W+2p]
    if flips is None:
        sources = padded[None]  # [1, N, C, H+2p, W+2p]
        mirrored = torch.zeros(num_images, dtype=torch.long, device=device)
    else:
        flips = flips.to(device)
        sources = torch.stack([padded, padded.flip(-1)])  # [2, N, C, H+2p, W+2p]
        # The crop at column x of the mirrored image is the mirror of the crop at 2p - x.
        columns = torch.where(flips, 2 * pad - columns, columns)
        mirrored = flips.long()
    windows = sources.unfold(3, height, 1).unfold(4, width, 1)  # [S, N, C, P, P, H, W], a view
    windows = windows.permute(0, 1, 3, 4, 2, 5, 6)  # [S, N, P, P, C, H, W]
    return windows[mirrored, torch.arange(num_images, device=device), rows, columns]


def augment_batch(
    images: Tensor, generator: torch.Generator, *, pad: int = 4, flip: bool = True
) -> Tensor:
    """Random crop with `pad` pixels of zero padding, and a horizontal flip for half the
    images when `flip` (leave it off for digits, which are not mirror-symmetric).

    Shape:
        [N, C, H, W] -> [N, C, H, W], same dtype and device.
    """
    if pad == 0 and not flip:
        return images
    offsets, flips = draw_augmentation(len(images), generator, pad=pad, flip=flip)
    return apply_augmentation(images, offsets, flips, pad=pad)


def augment_members(
    images: Tensor, generators: Sequence[torch.Generator], *, pad: int = 4, flip: bool = True
) -> Tensor:
    """`augment_batch` for k members at once: member i's images are augmented exactly as
    `augment_batch(images[i], generators[i])` would, in one gather for all members.

    Shape:
        [k, B, C, H, W] -> [k, B, C, H, W]
    """
    num_members, batch_size = images.shape[:2]
    if len(generators) != num_members:
        raise UsageError(
            f"augment_members got {len(generators)} generators for {num_members} members"
        )
    if pad == 0 and not flip:
        return images
    drawn = [draw_augmentation(batch_size, g, pad=pad, flip=flip) for g in generators]
    offsets = torch.cat([offsets.to(images.device) for offsets, _ in drawn])  # [k·B, 2]
    flips = torch.cat([f.to(images.device) for _, f in drawn if f is not None]) if flip else None
    flat = images.reshape(num_members * batch_size, *images.shape[2:])
    return apply_augmentation(flat, offsets, flips, pad=pad).reshape(images.shape)
