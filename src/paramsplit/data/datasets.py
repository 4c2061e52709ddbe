"""The dataset catalogue and `load_dataset`: whole splits as uint8 tensors on the device.

Splits: validation is carved from the official training split by a stratified, seeded
permutation (`split_seed`); test is the official test split. `digits` has no official test
split, so a stratified 20% is carved first with the fixed seed `DIGITS_TEST_SEED`: the test
set stays the same whatever `split_seed` is, and validation is carved from the rest.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from paramsplit.data import images as image_files
from paramsplit.data import sources
from paramsplit.data.loader import augment_batch, augment_members
from paramsplit.errors import DatasetError
from paramsplit.specs import InputSpec

DATA_ROOT_ENV = "PARAMSPLIT_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/paramsplit/datasets")
DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 0
IMAGEFOLDER_PREFIX = "imagefolder:"
SPLITS = ("train", "val", "test")


class Augmentation(StrEnum):
    """What `DatasetTensors.augment` does during training."""

    NONE = "none"  # digits, MNIST, Fashion-MNIST: centred glyphs, the usual recipe has none
    CROP = "crop"  # SVHN: house numbers are not mirror-symmetric
    CROP_FLIP = "crop-flip"  # natural images: the CIFAR recipe


@dataclass(frozen=True)
class DatasetInfo:
    """One entry of the catalogue: `read(root, download)` returns the official splits."""

    name: str
    title: str
    augmentation: Augmentation
    read: Callable[[Path, bool], sources.RawDataset]


DATASETS: tuple[DatasetInfo, ...] = (
    DatasetInfo("digits", "scikit-learn 8×8 digits", Augmentation.NONE, sources.read_digits),
    DatasetInfo("mnist", "MNIST", Augmentation.NONE, sources.read_mnist),
    DatasetInfo("fashion-mnist", "Fashion-MNIST", Augmentation.NONE, sources.read_fashion_mnist),
    DatasetInfo("cifar10", "CIFAR-10", Augmentation.CROP_FLIP, sources.read_cifar10),
    DatasetInfo("cifar100", "CIFAR-100", Augmentation.CROP_FLIP, sources.read_cifar100),
    DatasetInfo("svhn", "SVHN, without its extra split", Augmentation.CROP, sources.read_svhn),
    DatasetInfo(
        "tiny-imagenet", "Tiny ImageNet 200", Augmentation.CROP_FLIP, image_files.read_tiny_imagenet
    ),
)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())  # 'CIFAR-10' and 'cifar_10' -> 'cifar10'


_BY_KEY = {_key(info.name): info for info in DATASETS}


def dataset_names() -> list[str]:
    return [info.name for info in DATASETS] + [f"{IMAGEFOLDER_PREFIX}PATH"]


def get_dataset(name: str) -> DatasetInfo:
    """Look a dataset up by name, ignoring case, '-' and '_'."""
    info = _BY_KEY.get(_key(name))
    if info is not None:
        return info
    suggestion = difflib.get_close_matches(_key(name), list(_BY_KEY), n=1)
    hint = f"; did you mean '{_BY_KEY[suggestion[0]].name}'?" if suggestion else ""
    raise DatasetError(
        f"unknown dataset '{name}'; known datasets: {', '.join(dataset_names())}{hint}"
    )


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Where datasets are kept: `root`, else $PARAMSPLIT_DATA, else DEFAULT_DATA_ROOT."""
    chosen = Path(root or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT).expanduser()
    if chosen.exists() and not chosen.is_dir():
        raise DatasetError(f"data root {chosen} is a file, expected a directory")
    return chosen


@dataclass(frozen=True, eq=False)
class DatasetTensors:
    """A dataset's three splits as tensors on one device, with what training needs to know.

    Images are uint8 [N, C, H, W]; labels int64 [N]. `mean` and `std` are float32 [C] on
    the 0..1 scale, computed from the training split (validation excluded).
    """

    name: str
    train_images: Tensor
    train_labels: Tensor
    val_images: Tensor
    val_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    class_names: tuple[str, ...]
    mean: Tensor
    std: Tensor
    augmentation: Augmentation
    crop_padding: int
    notes: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.train_images.shape[1:]
        return (channels, height, width)

    @property
    def augments(self) -> bool:
        return self.augmentation is not Augmentation.NONE

    @property
    def device(self) -> torch.device:
        return self.train_images.device

    def __repr__(self) -> str:  # the default would print every pixel
        sizes = ", ".join(f"{split}={len(getattr(self, f'{split}_labels'))}" for split in SPLITS)
        shape = "x".join(map(str, self.input_shape))
        return (
            f"DatasetTensors({self.name}, {shape}, {self.num_classes} classes, {sizes}, "
            f"augmentation={self.augmentation}, device={self.device})"
        )

    def input_spec(self) -> InputSpec:
        return InputSpec(*self.input_shape, num_classes=self.num_classes)

    def split(self, which: str) -> tuple[Tensor, Tensor]:
        """Images and labels of 'train', 'val' or 'test'."""
        if which not in SPLITS:
            raise DatasetError(f"unknown split '{which}'; expected one of {', '.join(SPLITS)}")
        return getattr(self, f"{which}_images"), getattr(self, f"{which}_labels")

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 pixels -> float32, standardised per channel with the training statistics.

        Shape:
            [..., C, H, W] uint8 -> [..., C, H, W] float32
        """
        if images.dtype != torch.uint8:
            raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
        scale = (1 / (255 * self.std)).view(-1, 1, 1)  # [C, 1, 1]
        shift = (self.mean / self.std).view(-1, 1, 1)
        return images.to(torch.float32).mul_(scale).sub_(shift)

    def augment(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """This dataset's training augmentation (see `Augmentation`) of one batch.

        Shape:
            [N, C, H, W] -> [N, C, H, W]
        """
        if not self.augments:
            return images
        flip = self.augmentation is Augmentation.CROP_FLIP
        return augment_batch(images, generator, pad=self.crop_padding, flip=flip)

    def augment_members(self, images: Tensor, generators: Sequence[torch.Generator]) -> Tensor:
        """`augment` for k members, member i drawing from `generators[i]`.

        Shape:
            [k, B, C, H, W] -> [k, B, C, H, W]
        """
        if not self.augments:
            return images
        flip = self.augmentation is Augmentation.CROP_FLIP
        return augment_members(images, generators, pad=self.crop_padding, flip=flip)

    def to(self, device: torch.device | str) -> DatasetTensors:
        moved: dict[str, Any] = {
            field.name: value.to(device)
            for field in dataclasses.fields(self)
            if isinstance(value := getattr(self, field.name), Tensor)
        }
        return dataclasses.replace(self, **moved)


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    device: torch.device | str = "cpu",
    val_fraction: float = 0.1,
    split_seed: int = 0,
    download: bool = False,
) -> DatasetTensors:
    """Load a dataset (see `dataset_names()`) with a seeded validation split, onto `device`."""
    if not 0 <= val_fraction < 1:
        raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction}")
    raw, canonical, augmentation = _read(name, data_root(root), download)
    splits, split_notes = _splits(raw, val_fraction, split_seed)
    (train_images, train_labels), (val_images, val_labels), (test_images, test_labels) = (
        splits[split] for split in SPLITS
    )
    if len(train_labels) == 0:
        raise DatasetError(f"{canonical}: no training images left after the validation split")
    for split, (images, labels) in splits.items():
        _check_split(canonical, split, images, labels, train_images.shape[1:], len(raw.class_names))
    mean, std = channel_statistics(train_images)
    dataset = DatasetTensors(
        name=canonical,
        train_images=train_images.contiguous(),
        train_labels=train_labels.contiguous(),
        val_images=val_images.contiguous(),
        val_labels=val_labels.contiguous(),
        test_images=test_images.contiguous(),
        test_labels=test_labels.contiguous(),
        class_names=raw.class_names,
        mean=mean,
        std=std,
        augmentation=augmentation,
        crop_padding=_crop_padding(train_images, augmentation),
        notes=(*raw.notes, *split_notes),
    )
    return dataset.to(device)


def _read(
    name: str, cache_root: Path, download: bool
) -> tuple[sources.RawDataset, str, Augmentation]:
    """The official splits of a catalogued dataset or an image folder; its canonical name
    and augmentation."""
    if name.strip().lower().startswith(IMAGEFOLDER_PREFIX):
        path = name.strip()[len(IMAGEFOLDER_PREFIX) :]
        if not path:
            raise DatasetError(f"'{name}' names no folder; expected {IMAGEFOLDER_PREFIX}PATH")
        raw = image_files.read_image_folder(path, cache_root)
        return raw, f"{IMAGEFOLDER_PREFIX}{path}", Augmentation.CROP_FLIP
    info = get_dataset(name)
    return info.read(cache_root, download), info.name, info.augmentation


def _splits(
    raw: sources.RawDataset, val_fraction: float, split_seed: int
) -> tuple[dict[str, tuple[Tensor, Tensor]], list[str]]:
    """Images and labels of 'train', 'val' and 'test': the official splits, with test and
    validation carved from the training split where the dataset has none; notes on what was
    carved."""
    notes = []
    train_images, train_labels = _tensors(raw.train)
    if raw.test is None:
        train_images, train_labels, test_images, test_labels = _carve(
            train_images, train_labels, DIGITS_TEST_FRACTION, DIGITS_TEST_SEED
        )
        notes.append(
            f"no official test split: a stratified {DIGITS_TEST_FRACTION * 100:g}% test split "
            f"is carved with the fixed seed {DIGITS_TEST_SEED}, the same for every split_seed"
        )
    else:
        test_images, test_labels = _tensors(raw.test)
    if raw.val is not None:
        val_images, val_labels = _tensors(raw.val)
    else:
        train_images, train_labels, val_images, val_labels = _carve(
            train_images, train_labels, val_fraction, split_seed
        )
        notes.append(
            f"validation split: {len(val_labels)} images ({val_fraction * 100:g}% of each "
            f"class of the training split, split_seed {split_seed})"
        )
    splits = {
        "train": (train_images, train_labels),
        "val": (val_images, val_labels),
        "test": (test_images, test_labels),
    }
    return splits, notes


def _crop_padding(train_images: Tensor, augmentation: Augmentation) -> int:
    """An eighth of the side: CIFAR's 4 pixels at 32, 8 at Tiny ImageNet's 64; none where
    the dataset is not cropped."""
    if augmentation is Augmentation.NONE:
        return 0
    height, width = train_images.shape[2:]
    return max(1, round(min(height, width) / 8))


def _carve(
    images: Tensor, labels: Tensor, fraction: float, seed: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(kept images, kept labels, held-out images, held-out labels), see `stratified_split`."""
    kept, held = stratified_split(labels, fraction, seed)
    return images[kept], labels[kept], images[held], labels[held]


def _tensors(split: sources.Split) -> tuple[Tensor, Tensor]:
    return torch.from_numpy(split.images), torch.from_numpy(split.labels)


def _check_split(
    name: str, split: str, images: Tensor, labels: Tensor, shape: torch.Size, num_classes: int
) -> None:
    if images.shape[1:] != shape:
        raise DatasetError(
            f"{name}: {split} images are {tuple(images.shape[1:])}, train images {tuple(shape)}"
        )
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        raise DatasetError(
            f"{name}: {split} labels span {int(labels.min())}..{int(labels.max())}, "
            f"expected 0..{num_classes - 1}"
        )


def stratified_split(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (kept, held out), each sorted; every class gives round(fraction × its size)
    of its examples, chosen by a permutation seeded with `seed`, to the held-out part.

    Shape:
        labels [N] -> int64 [N - M], int64 [M]
    """
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    shuffled = labels[order]
    held_parts = []
    for label in torch.unique(labels):
        members = order[shuffled == label]
        held_parts.append(members[: int(fraction * len(members) + 0.5)])
    held = torch.cat(held_parts).sort().values if held_parts else order[:0]
    kept_mask = torch.ones(len(labels), dtype=torch.bool)
    kept_mask[held] = False
    return kept_mask.nonzero().squeeze(1), held


def channel_statistics(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation on the 0..1 scale, exact in float64.

    Counting the 256 grey levels per channel needs no float copy of the images.

    Shape:
        images uint8 [N, C, H, W] -> float32 [C], float32 [C]
    """
    levels = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = (counts * levels).sum() / total
        variance = (counts * (levels - mean) ** 2).sum() / total
        means.append(mean)
        # A constant channel would divide by zero; one grey level keeps it finite.
        stds.append(variance.sqrt().clamp_min(1 / 255))
    return torch.stack(means).to(torch.float32), torch.stack(stds).to(torch.float32)
