"""Folders of image files (Tiny ImageNet, `imagefolder:PATH`), decoded once into a cache.

Decoding 100,000 JPEGs takes about a minute on 2 cores; the arrays are then kept in
`<data root>/decoded/<name>-<hash>.npz`, keyed by a hash of the file list (paths, labels,
sizes, modification times), and loaded with `numpy.load(allow_pickle=False)` next time.

Size and channel rules: every image is resized (bilinear, antialiased when shrinking) to the
size of the first training image in sorted path order, and the number resized is reported
in the dataset's notes. Images are kept with 1 channel if every image is greyscale, else
converted to RGB (alpha dropped, palettes expanded).
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from paramsplit.data.sources import RawDataset, Split, ensure_files, one_line
from paramsplit.errors import DatasetError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_GREYSCALE_MODES = frozenset({"1", "L", "LA"})
_CACHE_VERSION = "1"  # bump when the decoding rules change, so old caches are not reused

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"

FileList = dict[str, tuple[list[Path], list[int]]]  # split -> (paths, labels)


def read_tiny_imagenet(root: Path, download: bool) -> RawDataset:
    """Tiny ImageNet 200 as distributed: its labelled val/ folder serves as the test split
    (the official test images have no labels)."""
    folder = root / "tiny-imagenet-200"
    required = ("wnids.txt", "train", "val/images", "val/val_annotations.txt")

    def fetch() -> None:
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(TINY_IMAGENET_URL, str(root), md5=TINY_IMAGENET_MD5)

    def find_missing() -> list[str]:
        return [name for name in required if not (folder / name).exists()]

    ensure_files("Tiny ImageNet", folder, find_missing, download, fetch)
    wnids = (folder / "wnids.txt").read_text().split()
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    train_paths, train_labels = [], []
    for wnid in wnids:
        paths = _image_files(folder / "train" / wnid / "images")
        if not paths:
            raise DatasetError(f"Tiny ImageNet class {wnid} has no images in {folder / 'train'}")
        train_paths += paths
        train_labels += [label_of[wnid]] * len(paths)
    test_paths, test_labels = [], []
    for line in (folder / "val" / "val_annotations.txt").read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label_of:
            raise DatasetError(f"unexpected line in {folder / 'val/val_annotations.txt'}: {line!r}")
        test_paths.append(folder / "val" / "images" / fields[0])
        test_labels.append(label_of[fields[1]])
    files = {"train": (train_paths, train_labels), "test": (test_paths, test_labels)}
    note = "test split: the official val/ folder (the official test images have no labels)"
    return decode_cached("tiny-imagenet", folder, files, tuple(wnids), root, (note,))


def read_image_folder(path: str, cache_root: Path) -> RawDataset:
    """PATH/train/<class>/*, PATH/test/<class>/*, and optionally PATH/val/<class>/*."""
    base = Path(path).expanduser()
    layout = "expected PATH/train/<class>/*.png|jpg and PATH/test/<class>/*"
    if not base.is_dir():
        raise DatasetError(f"imagefolder path '{path}' is not a directory; {layout}")
    for split in ("train", "test"):
        if not (base / split).is_dir():
            raise DatasetError(f"imagefolder '{path}' has no {split}/ folder; {layout}")
    class_names = tuple(_class_folders(base / "train"))
    if len(class_names) < 2:
        raise DatasetError(
            f"imagefolder '{path}' has {len(class_names)} class folder(s) in train/, "
            f"expected at least 2; {layout}"
        )
    label_of = {name: label for label, name in enumerate(class_names)}
    files: FileList = {}
    for split in ("train", "val", "test"):
        if split == "val" and not (base / split).is_dir():
            continue
        paths, labels = [], []
        for name in _class_folders(base / split):
            if name not in label_of:
                raise DatasetError(
                    f"imagefolder '{path}': class folder {split}/{name} has no counterpart in "
                    f"train/; train classes: {', '.join(class_names)}"
                )
            found = _image_files(base / split / name)
            if split == "train" and not found:
                raise DatasetError(
                    f"imagefolder '{path}': train/{name} holds no images "
                    f"({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            paths += found
            labels += [label_of[name]] * len(found)
        if not paths:
            raise DatasetError(f"imagefolder '{path}': {split}/ holds no images")
        files[split] = (paths, labels)
    notes = (
        ("validation split: the val/ folder (val_fraction is not used)",) if "val" in files else ()
    )
    slug = "imagefolder-" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", base.resolve().name) or "root")
    return decode_cached(slug, base, files, class_names, cache_root, notes)


def _class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def decode_cached(
    slug: str,
    base: Path,
    files: FileList,
    class_names: tuple[str, ...],
    cache_root: Path,
    notes: tuple[str, ...],
) -> RawDataset:
    """Decode every listed image, or load the arrays a previous call decoded."""
    cache_path = cache_root / "decoded" / f"{slug}-{_file_list_hash(base, files)}.npz"
    arrays = _load_cache(cache_path)
    if arrays is not None:
        notes = (*notes, f"decoded images loaded from the cache {cache_path}")
    else:
        arrays = _decode_splits(files)
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            partial = cache_path.with_name(f"{cache_path.stem}.{os.getpid()}.partial.npz")
            np.savez(partial, **arrays)
            os.replace(partial, cache_path)  # atomic: a killed run leaves no half cache
        except OSError as error:
            notes = (*notes, f"could not write the decode cache {cache_path}: {one_line(error)}")
    num_resized, num_images = int(arrays["num_resized"]), int(arrays["num_images"])
    if num_resized:
        height, width = arrays["train_images"].shape[2:]
        notes = (
            *notes,
            f"resized {num_resized} of {num_images} images to {height}×{width} "
            "(the first training image's size)",
        )
    splits = {split: Split(arrays[f"{split}_images"], arrays[f"{split}_labels"]) for split in files}
    return RawDataset(
        splits["train"], splits["test"], class_names, val=splits.get("val"), notes=notes
    )


def _load_cache(path: Path) -> dict[str, Any] | None:
    """The cached arrays, or None when there is no readable cache (it is then rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            return {key: cached[key] for key in cached.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def _file_list_hash(base: Path, files: FileList) -> str:
    digest = hashlib.sha256(f"v{_CACHE_VERSION} {base.resolve()}\n".encode())
    for split, (paths, labels) in files.items():
        for path, label in zip(paths, labels, strict=True):
            try:
                stat = path.stat()
            except OSError as error:
                raise DatasetError(f"cannot read image {path}: {one_line(error)}") from None
            relative = path.relative_to(base)
            digest.update(
                f"{split} {relative} {label} {stat.st_size} {stat.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()[:16]


def _decode_splits(files: FileList) -> dict[str, Any]:
    with _open(files["train"][0][0]) as first:
        size = first.size  # (width, height)
    all_paths = [path for paths, _ in files.values() for path in paths]
    images = np.empty((len(all_paths), 3, size[1], size[0]), np.uint8)

    def decode(index: int) -> tuple[bool, bool]:
        with _open(all_paths[index]) as image:
            greyscale = image.mode in _GREYSCALE_MODES
            rgb = image.convert("RGB")
        resized = rgb.size != size
        if resized:
            rgb = rgb.resize(size, Image.Resampling.BILINEAR)
        images[index] = np.asarray(rgb).transpose(2, 0, 1)  # HWC -> CHW
        return greyscale, resized

    # PIL releases the GIL while decoding, so threads use every core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(pool.map(decode, range(len(all_paths))))
    if all(greyscale for greyscale, _ in results):
        images = np.ascontiguousarray(images[:, :1])
    arrays = {
        "num_resized": np.array(sum(resized for _, resized in results)),
        "num_images": np.array(len(all_paths)),
    }
    start = 0
    for split, (paths, labels) in files.items():
        arrays[f"{split}_images"] = images[start : start + len(paths)]
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
        start += len(paths)
    return arrays


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
    except (OSError, ValueError) as error:  # UnidentifiedImageError is an OSError
        raise DatasetError(f"cannot decode image {path}: {one_line(error)}") from None
    try:
        image.load()
    except (OSError, ValueError) as error:  # a truncated file
        image.close()
        raise DatasetError(f"cannot decode image {path}: {one_line(error)}") from None
    return image
