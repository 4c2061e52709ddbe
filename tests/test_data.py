"""Datasets, splits, batch augmentation and per-member data orders.

CIFAR-10/100, SVHN, MNIST, Tiny ImageNet and image folders are read from small files the
tests write in each format's exact on-disk layout, so every reader runs without a download.
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torch.testing import assert_close

from paramsplit.data import (
    Augmentation,
    augment_batch,
    augment_members,
    channel_statistics,
    data_root,
    eval_batches,
    get_dataset,
    load_dataset,
    loader,
    member_batches,
    read_idx,
    sources,
    stratified_split,
)
from paramsplit.errors import DatasetError, ParamSplitError, UsageError

DIGITS_SIZE = 1797


def rows(images: torch.Tensor, labels: torch.Tensor) -> list[bytes]:
    """Each example as bytes (label first), sorted: a multiset that ignores order."""
    flat = images.reshape(len(images), -1).numpy()
    return sorted(
        bytes([int(label)]) + row.tobytes() for row, label in zip(flat, labels, strict=True)
    )


# --- digits, splits and statistics ----------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_digits_sizes_and_types(digits) -> None:
    assert digits.name == "digits"
    assert digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10
    spec = digits.input_spec()
    assert (spec.channels, spec.height, spec.width, spec.num_classes) == (1, 8, 8, 10)
    sizes = [len(digits.split(s)[1]) for s in ("train", "val", "test")]
    assert sum(sizes) == DIGITS_SIZE
    assert sizes[2] == pytest.approx(0.2 * DIGITS_SIZE, abs=10)
    assert sizes[1] == pytest.approx(0.1 * (DIGITS_SIZE - sizes[2]), abs=10)
    for which in ("train", "val", "test"):
        images, labels = digits.split(which)
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert set(labels.tolist()) == set(range(10))  # stratified: every class in every split
    assert int(digits.train_images.max()) == 255  # 0..16 scaled to 0..255
    assert digits.augmentation is Augmentation.NONE and not digits.augments
    assert repr(digits).startswith("DatasetTensors(digits, 1x8x8, 10 classes, train=")


def test_digits_splits_partition_the_dataset(digits) -> None:
    from sklearn.datasets import load_digits

    original = load_digits()
    everything = torch.from_numpy(np.rint(original.images * 255 / 16).astype(np.uint8))[:, None]
    parts = [digits.split(which) for which in ("train", "val", "test")]
    combined = rows(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    assert combined == rows(everything, torch.from_numpy(original.target))


def test_digits_splits_deterministic_per_seed_and_differ_across_seeds(digits) -> None:
    again = load_dataset("digits", split_seed=0)
    other = load_dataset("digits", split_seed=1)
    assert torch.equal(again.val_images, digits.val_images)
    assert torch.equal(again.train_labels, digits.train_labels)
    assert not torch.equal(other.val_images, digits.val_images)
    # the test split is carved with a fixed seed: the same whatever split_seed is
    assert torch.equal(other.test_images, digits.test_images)
    assert any("fixed seed" in note for note in digits.notes)


def test_stratified_split_is_disjoint_and_keeps_class_proportions() -> None:
    labels = torch.arange(100) % 4
    kept, held = stratified_split(labels, 0.25, seed=3)
    assert sorted(torch.cat([kept, held]).tolist()) == list(range(100))
    assert torch.bincount(labels[held]).tolist() == [6, 6, 6, 6]  # round(0.25 × 25) each
    assert torch.equal(stratified_split(labels, 0.25, seed=3)[1], held)
    assert not torch.equal(stratified_split(labels, 0.25, seed=4)[1], held)


def test_statistics_come_from_the_training_split(digits) -> None:
    pixels = digits.train_images.to(torch.float64) / 255
    assert_close(digits.mean, pixels.mean(dim=(0, 2, 3)).float())
    assert_close(digits.std, pixels.std(dim=(0, 2, 3), unbiased=False).float())
    assert digits.mean.dtype == digits.std.dtype == torch.float32
    normalized = digits.normalize(digits.train_images)
    assert normalized.dtype == torch.float32
    assert_close(normalized.mean(), torch.tensor(0.0), atol=1e-4, rtol=0)
    assert_close(normalized.std(unbiased=False), torch.tensor(1.0), atol=1e-4, rtol=0)


def test_statistics_of_a_constant_channel_stay_finite() -> None:
    mean, std = channel_statistics(torch.full((3, 2, 4, 4), 7, dtype=torch.uint8))
    assert_close(mean, torch.full((2,), 7 / 255))
    assert torch.all(std > 0)


def test_val_fraction_zero_gives_an_empty_validation_split() -> None:
    dataset = load_dataset("digits", val_fraction=0)
    assert dataset.val_images.shape == (0, 1, 8, 8)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_bad_val_fraction(fraction: float) -> None:
    with pytest.raises(DatasetError, match=r"val_fraction must be in \[0, 1\), got"):
        load_dataset("digits", val_fraction=fraction)


def test_unknown_dataset_names_the_known_ones_and_suggests() -> None:
    with pytest.raises(
        DatasetError,
        match=r"unknown dataset 'fashon-mnist'; known .*cifar10.*imagefolder:PATH; "
        r"did you mean 'fashion-mnist'\?",
    ):
        load_dataset("fashon-mnist")
    with pytest.raises(ParamSplitError, match="unknown dataset"):  # and the base class
        load_dataset("imagenet-22k")


def test_names_ignore_case_and_separators() -> None:
    assert get_dataset("CIFAR-10").name == "cifar10"
    assert get_dataset("Fashion_MNIST").name == "fashion-mnist"
    assert get_dataset("TinyImageNet").name == "tiny-imagenet"


def test_unknown_split(digits) -> None:
    with pytest.raises(DatasetError, match="unknown split 'validation'; expected one of"):
        digits.split("validation")


def test_data_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARAMSPLIT_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("PARAMSPLIT_DATA")
    assert data_root() == Path("~/.cache/paramsplit/datasets").expanduser()
    (tmp_path / "file").write_text("")
    with pytest.raises(DatasetError, match=r"data root .*file is a file"):
        data_root(tmp_path / "file")


# --- IDX: Fashion-MNIST and MNIST ------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    content = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        import gzip

        content = gzip.compress(content)
    path.write_bytes(content)


def write_idx_dataset(folder: Path, num_train: int, num_test: int, suffix: str = "") -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for prefix, count in (("train", num_train), ("t10k", num_test)):
        write_idx(
            folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (count, 28, 28))
        )
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(count) % 10)


@pytest.mark.skipif(
    not sources.DEBIAN_FASHION_MNIST.is_dir(),
    reason="Debian package dataset-fashion-mnist is not installed (CI installs it)",
)
def test_fashion_mnist_from_the_debian_package() -> None:
    dataset = load_dataset("fashion-mnist")
    assert len(dataset.train_labels) + len(dataset.val_labels) == 60_000
    assert len(dataset.val_labels) == 6_000
    assert len(dataset.test_labels) == 10_000
    assert dataset.input_shape == (1, 28, 28)
    assert dataset.num_classes == 10 and dataset.class_names[0] == "T-shirt/top"
    assert torch.bincount(dataset.test_labels).tolist() == [1000] * 10
    assert not dataset.augments


def test_fashion_mnist_falls_back_to_the_data_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    write_idx_dataset(tmp_path / "FashionMNIST" / "raw", 50, 20, suffix=".gz")
    dataset = load_dataset("fashion-mnist", root=tmp_path, val_fraction=0.2)
    assert (len(dataset.train_labels), len(dataset.val_labels)) == (40, 10)
    assert dataset.test_images.shape == (20, 1, 28, 28)


def test_mnist_from_uncompressed_idx_files(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "MNIST" / "raw", 30, 10)
    dataset = load_dataset("mnist", root=tmp_path)
    written = read_idx(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte")
    assert torch.equal(dataset.test_images[:, 0], torch.from_numpy(written))
    assert dataset.test_labels.tolist() == list(range(10))


def test_missing_files_without_download(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"MNIST not found: .*missing in .*MNIST/raw; pass --download"
    ):
        load_dataset("mnist", root=tmp_path)
    with pytest.raises(DatasetError, match=r"CIFAR-100 not found: train, test, meta missing in"):
        load_dataset("cifar100", root=tmp_path)
    with pytest.raises(DatasetError, match=r"SVHN not found: train_32x32.mat, test_32x32.mat"):
        load_dataset("svhn", root=tmp_path)
    with pytest.raises(DatasetError, match=r"Tiny ImageNet not found: wnids.txt"):
        load_dataset("tiny-imagenet", root=tmp_path)


def test_failed_download_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("[Errno -3] Temporary failure in name resolution\n(no network)")

    # Stand-ins for torchvision's dataset classes that fail as they do offline; faking the
    # modules also spares this test the import of torchvision (seconds on 2 cores).
    fake_datasets = types.ModuleType("torchvision.datasets")
    fake_datasets.CIFAR10 = fake_datasets.CIFAR100 = offline  # type: ignore[attr-defined]
    fake_torchvision = types.ModuleType("torchvision")
    fake_torchvision.datasets = fake_datasets  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", fake_torchvision)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake_datasets)
    with pytest.raises(
        DatasetError, match=r"could not download CIFAR-10 into .*resolution \(no network\); check"
    ) as caught:
        load_dataset("cifar10", root=tmp_path, download=True)
    assert "\n" not in str(caught.value)


def test_idx_reader_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(DatasetError, match="is not an IDX file of unsigned bytes"):
        read_idx(tmp_path / "bad")


# --- CIFAR ----------------------------------------------------------------------------------


def write_python2_pickle(path: Path, content: dict) -> None:
    """As the real batches: protocol 2, and numpy arrays under numpy.core (numpy 1's name)."""
    data = pickle.dumps(content, protocol=2)
    path.write_bytes(data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))


def write_cifar10(root: Path, per_batch: int = 4) -> np.ndarray:
    """Five training batches and a test batch; returns the test batch's data rows."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, per_batch)]
        batch = {
            "batch_label": name,
            "labels": labels,
            "data": data,
            "filenames": ["x.png"] * per_batch,
        }
        write_python2_pickle(folder / name, batch)
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    write_python2_pickle(folder / "batches.meta", {"label_names": names, "num_vis": 3072})
    return data


def test_cifar10_from_its_pickled_batches(tmp_path: Path) -> None:
    test_rows = write_cifar10(tmp_path)
    dataset = load_dataset("cifar10", root=tmp_path, val_fraction=0)
    assert dataset.train_images.shape == (20, 3, 32, 32)
    assert dataset.input_shape == (3, 32, 32) and dataset.num_classes == 10
    assert dataset.class_names[-1] == "truck"
    # each row holds the red, green and blue planes of 32×32 pixels, one after the other
    assert int(dataset.test_images[2, 1, 5, 7]) == int(test_rows[2, 1024 + 5 * 32 + 7])
    assert dataset.augmentation is Augmentation.CROP_FLIP and dataset.crop_padding == 4


def test_a_training_step_for_k_members(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=20)
    dataset = load_dataset("cifar10", root=tmp_path)
    gens = generators(0, 1, 2)
    num_train = len(dataset.train_labels)
    for indices in member_batches(num_train, 16, gens, drop_last=True, device=dataset.device):
        images = dataset.normalize(dataset.augment_members(dataset.train_images[indices], gens))
        labels = dataset.train_labels[indices]
        assert images.shape == (3, 16, 3, 32, 32) and images.dtype == torch.float32
        assert labels.shape == (3, 16)


def test_cifar100_reads_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for name, count in (("train", 12), ("test", 5)):
        batch = {
            "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
            "fine_labels": [i % 100 for i in range(count)],
            "coarse_labels": [0] * count,
        }
        write_python2_pickle(folder / name, batch)
    names = [f"class{i}" for i in range(100)]
    write_python2_pickle(folder / "meta", {"fine_label_names": names, "coarse_label_names": []})
    dataset = load_dataset("cifar-100", root=tmp_path, val_fraction=0)
    assert dataset.num_classes == 100
    assert dataset.test_labels.tolist() == [0, 1, 2, 3, 4]


def test_cifar_batches_may_not_run_code(tmp_path: Path) -> None:
    write_cifar10(tmp_path)

    class Payload:
        def __reduce__(self):  # what a tampered file would hold
            return (print, ("pwned",))

    write_python2_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", {"data": Payload()})
    with pytest.raises(DatasetError, match=r"cannot read CIFAR batch .*print' is not allowed"):
        load_dataset("cifar10", root=tmp_path)


# --- SVHN -----------------------------------------------------------------------------------


def write_svhn(root: Path, num_train: int = 40, num_test: int = 10) -> np.ndarray:
    """Returns the test X array, [32, 32, 3, N] as in the real files."""
    folder = root / "svhn"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for name, count in (("train_32x32.mat", num_train), ("test_32x32.mat", num_test)):
        images = rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8)
        labels = (np.arange(count) % 10 + 1).astype(np.uint8)[:, None]  # 1..10; 10 is digit 0
        scipy.io.savemat(folder / name, {"X": images, "y": labels})
    return images


def test_svhn_from_mat_files(tmp_path: Path) -> None:
    test_x = write_svhn(tmp_path)
    dataset = load_dataset("svhn", root=tmp_path)
    assert dataset.input_shape == (3, 32, 32)
    assert dataset.test_labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert int(dataset.test_images[4, 2, 3, 9]) == int(test_x[3, 9, 2, 4])  # [H, W, C, N]
    assert dataset.augmentation is Augmentation.CROP


# --- image folders --------------------------------------------------------------------------


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_image_folder(base: Path, with_val: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    written = {}
    splits = {"train": 5, "test": 2, **({"val": 1} if with_val else {})}
    for split, count in splits.items():
        for name in ("cat", "dog"):
            for i in range(count):
                array = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)  # H 10, W 12
                write_png(base / split / name / f"{i}.png", array)
                written[f"{split}/{name}/{i}"] = array
    write_png(
        base / "train" / "dog" / "9-large.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    )
    return written


def test_image_folder_decodes_resizes_and_caches(tmp_path: Path) -> None:
    written = write_image_folder(tmp_path / "pets")
    name = f"imagefolder:{tmp_path / 'pets'}"
    first = load_dataset(name, root=tmp_path / "cache", val_fraction=0)
    assert first.class_names == ("cat", "dog")
    assert first.input_shape == (3, 10, 12)
    assert first.train_labels.tolist() == [0] * 5 + [1] * 6
    assert np.array_equal(first.test_images[3].permute(1, 2, 0).numpy(), written["test/dog/1"])
    assert any("resized 1 of 15 images to 10×12" in note for note in first.notes)
    assert first.augmentation is Augmentation.CROP_FLIP
    (cache_file,) = (tmp_path / "cache" / "decoded").glob("imagefolder-pets-*.npz")
    second = load_dataset(name, root=tmp_path / "cache", val_fraction=0)
    assert any("loaded from the cache" in note for note in second.notes)
    assert torch.equal(second.train_images, first.train_images)
    cache_file.write_bytes(b"truncated")  # a damaged cache is decoded anew, not trusted
    third = load_dataset(name, root=tmp_path / "cache", val_fraction=0)
    assert not any("loaded from the cache" in note for note in third.notes)
    assert torch.equal(third.train_images, first.train_images)


def test_image_folder_with_val_folder_and_greyscale(tmp_path: Path) -> None:
    base = tmp_path / "letters"
    for split, count in (("train", 3), ("val", 1), ("test", 1)):
        for name in ("a", "b", "c"):
            for i in range(count):
                write_png(base / split / name / f"{i}.png", np.full((8, 8), i * 40, np.uint8))
    dataset = load_dataset(f"imagefolder:{base}", root=tmp_path / "cache")
    assert dataset.input_shape == (1, 8, 8)  # every image greyscale: one channel kept
    assert len(dataset.val_labels) == 3 and len(dataset.train_labels) == 9
    assert any("the val/ folder" in note for note in dataset.notes)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"imagefolder path '.*nowhere' is not a directory; expected PATH/train"
    ):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}", root=tmp_path)
    with pytest.raises(DatasetError, match="names no folder"):
        load_dataset("imagefolder:", root=tmp_path)
    write_image_folder(tmp_path / "pets")
    write_png(tmp_path / "pets" / "test" / "bird" / "0.png", np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"class folder test/bird has no counterpart in train/"):
        load_dataset(f"imagefolder:{tmp_path / 'pets'}", root=tmp_path)
    (tmp_path / "pets" / "test" / "bird" / "0.png").unlink()
    (tmp_path / "pets" / "test" / "bird").rmdir()
    (tmp_path / "pets" / "train" / "cat" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"cannot decode image .*0.png"):
        load_dataset(f"imagefolder:{tmp_path / 'pets'}", root=tmp_path)


def test_tiny_imagenet_layout(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    rng = np.random.default_rng(5)
    for wnid in wnids:
        for i in range(4):
            write_png(
                folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG",
                rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
            )
    lines = []
    for i, wnid in enumerate(wnids * 2):
        write_png(
            folder / "val" / "images" / f"val_{i}.JPEG",
            rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        )
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t15\t15")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    dataset = load_dataset("tiny-imagenet", root=tmp_path, val_fraction=0.25)
    assert dataset.class_names == tuple(wnids)
    assert (len(dataset.train_labels), len(dataset.val_labels)) == (6, 2)
    assert dataset.test_labels.tolist() == [0, 1, 0, 1]
    assert dataset.input_shape == (3, 16, 16) and dataset.crop_padding == 2


# --- augmentation ---------------------------------------------------------------------------


def distinct_images(num_images: int = 32, channels: int = 3, size: int = 16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(
        0, 256, (num_images, channels, size, size), generator=generator, dtype=torch.uint8
    )


def reference_augmentation(
    images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor | None, pad: int
) -> torch.Tensor:
    """The obvious per-image loop that the batched gather must equal."""
    padded = torch.nn.functional.pad(images, (pad,) * 4)
    height, width = images.shape[2:]
    out = []
    flips_list = [False] * len(images) if flips is None else flips.tolist()
    for image, (row, column), flip in zip(padded, offsets.tolist(), flips_list, strict=True):
        crop = image[:, row : row + height, column : column + width]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize(("pad", "flip"), [(4, True), (4, False), (0, True), (2, True)])
def test_augmentation_equals_the_per_image_loop(dtype: torch.dtype, pad: int, flip: bool) -> None:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (32, 3, 12, 16), generator=generator).to(dtype)  # not square
    offsets, flips = loader.draw_augmentation(len(images), generator, pad=pad, flip=flip)
    augmented = loader.apply_augmentation(images, offsets, flips, pad=pad)
    assert augmented.shape == images.shape and augmented.dtype == dtype
    assert torch.equal(augmented, reference_augmentation(images, offsets, flips, pad))


def test_augmentation_is_deterministic_per_seed() -> None:
    images = distinct_images()
    first = augment_batch(images, torch.Generator().manual_seed(7))
    assert torch.equal(first, augment_batch(images, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, augment_batch(images, torch.Generator().manual_seed(8)))


def test_flips_happen_for_some_images_only() -> None:
    images = distinct_images(64)
    flipped = augment_batch(images, torch.Generator().manual_seed(0), pad=0, flip=True)
    mirrored = [torch.equal(a, b.flip(-1)) for a, b in zip(flipped, images, strict=True)]
    unchanged = [torch.equal(a, b) for a, b in zip(flipped, images, strict=True)]
    assert all(m or u for m, u in zip(mirrored, unchanged, strict=True))
    assert 10 < sum(mirrored) < 54


def translations(image: torch.Tensor, pad: int) -> list[torch.Tensor]:
    padded = torch.nn.functional.pad(image, (pad,) * 4)
    size = image.shape[-1]
    return [
        padded[:, r : r + size, c : c + size]
        for r in range(2 * pad + 1)
        for c in range(2 * pad + 1)
    ]


def test_crops_shift_content() -> None:
    images = distinct_images(32)
    cropped = augment_batch(images, torch.Generator().manual_seed(0), pad=4, flip=False)
    assert (
        sum(not torch.equal(a, b) for a, b in zip(cropped, images, strict=True)) > 24
    )  # 1 in 81 unshifted
    for crop, image in zip(cropped, images, strict=True):
        assert any(torch.equal(crop, t) for t in translations(image, 4))


def test_svhn_is_cropped_but_never_flipped(tmp_path: Path) -> None:
    write_svhn(tmp_path, num_train=64)
    dataset = load_dataset("svhn", root=tmp_path, val_fraction=0)
    images = dataset.train_images
    augmented = dataset.augment(images, torch.Generator().manual_seed(0))
    assert not torch.equal(augmented, images)
    for crop, image in zip(augmented, images, strict=True):
        assert any(torch.equal(crop, t) for t in translations(image, dataset.crop_padding))


def test_digits_are_not_augmented(digits) -> None:
    batch = digits.train_images[:16]
    assert digits.augment(batch, torch.Generator().manual_seed(0)) is batch


def test_augment_members_equals_one_augment_batch_per_member() -> None:
    images = distinct_images(24).reshape(3, 8, 3, 16, 16)
    seeds = [11, 12, 13]
    together = augment_members(images, [torch.Generator().manual_seed(s) for s in seeds])
    for member, seed in enumerate(seeds):
        alone = augment_batch(images[member], torch.Generator().manual_seed(seed))
        assert torch.equal(together[member], alone)
    with pytest.raises(UsageError, match="got 2 generators for 3 members"):
        augment_members(images, [torch.Generator(), torch.Generator()])


# --- batch orders ---------------------------------------------------------------------------


def generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_member_batches_are_independent_permutations() -> None:
    gens = generators(0, 1, 2, 3)
    for _epoch in range(2):
        steps = list(member_batches(103, 10, gens))
        assert [s.shape for s in steps] == [(4, 10)] * 10 + [(4, 3)]
        epoch = torch.cat(steps, dim=1)  # [4, 103]
        assert epoch.dtype == torch.int64
        for order in epoch:
            assert torch.equal(order.sort().values, torch.arange(103))
        assert len({tuple(order.tolist()) for order in epoch}) == 4


def test_member_i_sees_what_a_single_run_with_its_seed_sees() -> None:
    together, singles = generators(5, 6, 7), generators(5, 6, 7)
    for _epoch in range(3):  # the generators advance identically across epochs
        joint = list(member_batches(50, 8, together, drop_last=True))
        for member, generator in enumerate(singles):
            alone = list(member_batches(50, 8, [generator], drop_last=True))
            assert len(alone) == len(joint) == 6
            for step_joint, step_alone in zip(joint, alone, strict=True):
                assert torch.equal(step_joint[member], step_alone[0])


def test_epochs_differ() -> None:
    gens = generators(0)
    first = torch.cat(list(member_batches(40, 40, gens)), dim=1)
    second = torch.cat(list(member_batches(40, 40, gens)), dim=1)
    assert not torch.equal(first, second)


def test_member_batches_errors() -> None:
    with pytest.raises(UsageError, match="batch size must be >= 1, got 0"):
        next(member_batches(10, 0, generators(0)))
    with pytest.raises(UsageError, match="one generator per member, got none"):
        next(member_batches(10, 2, []))
    with pytest.raises(UsageError, match="batch size 20 is larger than the 10 examples"):
        next(member_batches(10, 20, generators(0), drop_last=True))


def test_eval_batches_cover_a_split_in_order() -> None:
    slices = list(eval_batches(25, 10))
    assert slices == [slice(0, 10), slice(10, 20), slice(20, 25)]
    values = torch.arange(25)
    assert torch.equal(torch.cat([values[s] for s in slices]), values)


# --- on the GPU -----------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_seed_same_data_on_cpu_and_gpu(digits) -> None:
    on_gpu = digits.to("cuda")
    assert on_gpu.mean.device.type == "cuda"
    cpu_steps = list(member_batches(100, 16, generators(1, 2)))
    gpu_steps = list(member_batches(100, 16, generators(1, 2), device="cuda"))
    assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu_steps, gpu_steps, strict=True))
    images = distinct_images(64)
    expected = augment_batch(images, torch.Generator().manual_seed(3))
    actual = augment_batch(images.cuda(), torch.Generator().manual_seed(3))
    assert torch.equal(actual.cpu(), expected)
    cuda_generator = torch.Generator(device="cuda").manual_seed(3)
    assert augment_batch(images.cuda(), cuda_generator).device.type == "cuda"
    assert_close(on_gpu.normalize(on_gpu.train_images).cpu(), digits.normalize(digits.train_images))
