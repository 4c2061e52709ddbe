"""The on-disk formats: each reader returns a dataset's official splits as uint8 NCHW arrays.

The files are read by small readers of our own (IDX, CIFAR's pickled batches, SVHN's .mat);
torchvision is used only to download them. Its dataset classes check the md5 of the real
files before reading, so they could not be tested on the small files the tests write, and
they hand out one sample at a time where we want whole arrays.
"""

from __future__ import annotations

import gzip
import http.client
import pickle
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from paramsplit.errors import DatasetError

# Debian's package `dataset-fashion-mnist` puts the original IDX files here.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES = tuple(str(digit) for digit in range(10))

# What a failed download raises: URLError and socket errors are OSErrors; torchvision raises
# RuntimeError for a bad checksum or when every mirror failed; a truncated archive raises
# one of the archive errors.
DOWNLOAD_ERRORS = (
    OSError,
    RuntimeError,
    EOFError,
    http.client.HTTPException,
    tarfile.TarError,
    zipfile.BadZipFile,
)


@dataclass(frozen=True)
class Split:
    """Images and labels of one split, as read from disk."""

    images: np.ndarray  # uint8 [N, C, H, W]
    labels: np.ndarray  # int64 [N]

    def __post_init__(self) -> None:
        assert self.images.dtype == np.uint8 and self.images.ndim == 4, self.images.shape
        assert self.labels.shape == (len(self.images),), (self.labels.shape, self.images.shape)


@dataclass(frozen=True)
class RawDataset:
    """A dataset's official splits. `test` is None where the dataset has none (digits)."""

    train: Split
    test: Split | None
    class_names: tuple[str, ...]
    val: Split | None = None
    notes: tuple[str, ...] = ()


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def ensure_files(
    title: str,
    folder: Path,
    find_missing: Callable[[], list[str]],
    download: bool,
    fetch: Callable[[], None],
) -> None:
    """Download what `find_missing` reports missing, or raise a DatasetError saying what to do."""
    missing = find_missing()
    if not missing:
        return
    if not download:
        raise DatasetError(
            f"{title} not found: {', '.join(missing)} missing in {folder}; "
            f"pass --download (download=True) to fetch it, or put the files in {folder}"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fetch()
    except DOWNLOAD_ERRORS as error:
        raise DatasetError(
            f"could not download {title} into {folder}: {one_line(error)}; "
            f"check the network, or put the files ({', '.join(missing)}) in {folder}"
        ) from None
    still_missing = find_missing()
    if still_missing:
        raise DatasetError(
            f"{title} download finished but {', '.join(still_missing)} is still missing in "
            f"{folder}; put the files there by hand"
        )


# IDX (MNIST's format): two zero bytes, a type code, the number of dimensions, each
# dimension as a big-endian uint32, then the values. Only type 0x08 (uint8) is used.
_IDX_UINT8 = 0x08


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes, gzipped (`.gz`) or not."""
    try:
        content = path.read_bytes()
        if path.suffix == ".gz":
            content = gzip.decompress(content)  # one call: 3× faster than reading gzip.open
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"cannot read IDX file {path}: {one_line(error)}") from None
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] != _IDX_UINT8:
        raise DatasetError(
            f"{path} is not an IDX file of unsigned bytes (header {content[:4].hex()}, "
            "expected 0000 08 NN)"
        )
    num_dims = content[3]
    shape = tuple(int(d) for d in np.frombuffer(content, ">u4", count=num_dims, offset=4))
    values = np.frombuffer(content, np.uint8, offset=4 + 4 * num_dims)
    if values.size != int(np.prod(shape)):
        raise DatasetError(f"IDX file {path} declares shape {shape} but holds {values.size} values")
    return values.reshape(shape).copy()  # writable, as torch.from_numpy wants


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _missing_idx(folder: Path) -> list[str]:
    stems = [stem for pair in _IDX_STEMS.values() for stem in pair]
    return [f"{stem}[.gz]" for stem in stems if _idx_file(folder, stem) is None]


def read_idx_folder(
    folder: Path, class_names: tuple[str, ...], notes: tuple[str, ...] = ()
) -> RawDataset:
    """MNIST-style train and t10k IDX files (optionally gzipped) in one folder."""
    splits = {}
    for split, (image_stem, label_stem) in _IDX_STEMS.items():
        image_path, label_path = _idx_file(folder, image_stem), _idx_file(folder, label_stem)
        assert image_path is not None and label_path is not None, "checked by ensure_files"
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise DatasetError(
                f"{image_path} and {label_path} do not match: images {images.shape}, "
                f"labels {labels.shape}; expected [N, H, W] and [N]"
            )
        splits[split] = Split(images[:, None], labels.astype(np.int64))
    return RawDataset(splits["train"], splits["test"], class_names, notes=notes)


def read_mnist(root: Path, download: bool) -> RawDataset:
    folder = root / "MNIST" / "raw"  # where torchvision.datasets.MNIST downloads to

    def fetch() -> None:
        from torchvision.datasets import MNIST

        MNIST(root, train=True, download=True)

    ensure_files("MNIST", folder, lambda: _missing_idx(folder), download, fetch)
    return read_idx_folder(folder, DIGIT_CLASSES)


def read_fashion_mnist(root: Path, download: bool) -> RawDataset:
    if not _missing_idx(DEBIAN_FASHION_MNIST):
        note = f"read from {DEBIAN_FASHION_MNIST} (Debian package dataset-fashion-mnist)"
        return read_idx_folder(DEBIAN_FASHION_MNIST, FASHION_MNIST_CLASSES, (note,))
    folder = root / "FashionMNIST" / "raw"

    def fetch() -> None:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(root, train=True, download=True)

    ensure_files("Fashion-MNIST", folder, lambda: _missing_idx(folder), download, fetch)
    return read_idx_folder(folder, FASHION_MNIST_CLASSES)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's batches and nothing else: only the globals a pickled numpy array
    needs may load, so a tampered batch file cannot run code."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        # The real files name numpy.core, which numpy 2 keeps only as a deprecated alias.
        return super().find_class(module.replace("numpy.core.", "numpy._core."), name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as stream:
            # latin1: the batches were pickled by Python 2; its byte strings become str.
            content = _ArrayUnpickler(stream, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as error:
        raise DatasetError(f"cannot read CIFAR batch {path}: {one_line(error)}") from None
    if not isinstance(content, dict):
        raise DatasetError(f"{path} holds a {type(content).__name__}, expected a dict")
    return content


def _cifar_split(folder: Path, files: tuple[str, ...], label_key: str) -> Split:
    images, labels = [], []
    for name in files:
        batch = _unpickle(folder / name)
        if "data" not in batch or label_key not in batch:
            raise DatasetError(
                f"{folder / name} has keys {sorted(batch)}, expected 'data' and '{label_key}'"
            )
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DatasetError(f"{folder / name}: data has shape {data.shape}, expected [N, 3072]")
        images.append(data.reshape(-1, 3, 32, 32))  # rows are R, G, B planes of 32×32
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return Split(np.concatenate(images), np.concatenate(labels))


@dataclass(frozen=True)
class _CifarLayout:
    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str


CIFAR10 = _CifarLayout(
    "CIFAR-10",
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",),
    "batches.meta",
    "labels",
    "label_names",
)
CIFAR100 = _CifarLayout(
    "CIFAR-100",
    "cifar-100-python",
    ("train",),
    ("test",),
    "meta",
    "fine_labels",
    "fine_label_names",
)


def _read_cifar(layout: _CifarLayout, root: Path, download: bool) -> RawDataset:
    folder = root / layout.folder
    files = (*layout.train_files, *layout.test_files, layout.meta_file)

    def fetch() -> None:
        from torchvision.datasets import CIFAR10 as TorchCIFAR10
        from torchvision.datasets import CIFAR100 as TorchCIFAR100

        dataset_class = TorchCIFAR10 if layout is CIFAR10 else TorchCIFAR100
        dataset_class(root, train=True, download=True)

    def find_missing() -> list[str]:
        return [name for name in files if not (folder / name).is_file()]

    ensure_files(layout.title, folder, find_missing, download, fetch)
    meta = _unpickle(folder / layout.meta_file)
    if layout.names_key not in meta:
        raise DatasetError(f"{folder / layout.meta_file} has no '{layout.names_key}'")
    return RawDataset(
        _cifar_split(folder, layout.train_files, layout.label_key),
        _cifar_split(folder, layout.test_files, layout.label_key),
        tuple(str(name) for name in meta[layout.names_key]),
    )


def read_cifar10(root: Path, download: bool) -> RawDataset:
    return _read_cifar(CIFAR10, root, download)


def read_cifar100(root: Path, download: bool) -> RawDataset:
    return _read_cifar(CIFAR100, root, download)


_SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def _svhn_split(path: Path) -> Split:
    import scipy.io

    try:
        content = scipy.io.loadmat(path, variable_names=("X", "y"))
    except (OSError, ValueError, TypeError) as error:
        raise DatasetError(f"cannot read SVHN file {path}: {one_line(error)}") from None
    if "X" not in content or "y" not in content:
        raise DatasetError(f"{path} has no 'X' and 'y' variables")
    images, labels = content["X"], content["y"].astype(np.int64).reshape(-1)
    if images.ndim != 4 or images.shape[2] != 3 or images.shape[3] != len(labels):
        raise DatasetError(
            f"{path}: X has shape {images.shape} and y {content['y'].shape}, "
            "expected [32, 32, 3, N] and [N, 1]"
        )
    labels[labels == 10] = 0  # SVHN labels the digit 0 as 10
    # X is [H, W, C, N] (MATLAB order) -> [N, C, H, W]
    return Split(np.ascontiguousarray(images.transpose(3, 2, 0, 1), dtype=np.uint8), labels)


def read_svhn(root: Path, download: bool) -> RawDataset:
    folder = root / "svhn"

    def fetch() -> None:
        from torchvision.datasets import SVHN

        for split in _SVHN_FILES:
            SVHN(folder, split=split, download=True)

    def find_missing() -> list[str]:
        return [name for name in _SVHN_FILES.values() if not (folder / name).is_file()]

    ensure_files("SVHN", folder, find_missing, download, fetch)
    return RawDataset(
        _svhn_split(folder / _SVHN_FILES["train"]),
        _svhn_split(folder / _SVHN_FILES["test"]),
        DIGIT_CLASSES,
    )


def read_digits(root: Path, download: bool) -> RawDataset:
    """scikit-learn's bundled 8×8 digits (1,797 images), which ship with no test split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are counts 0..16 of set pixels in 4×4 blocks; scale them to 0..255.
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    return RawDataset(Split(images, digits.target.astype(np.int64)), None, DIGIT_CLASSES)
