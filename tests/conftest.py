"""Fixtures shared by the tests: one small network per registered family; results databases
on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import paramsplit as ps
import postgres_server
from paramsplit.data import DatasetTensors, load_dataset

# Small enough that a forward and backward pass on CPU takes milliseconds, big enough that
# every kind of block appears (shortcut projections, transitions, five VGG stages). A family
# missing here is still tested, at its minimum depth and width 2.
SMALL_WIDTHS = {"resnet": 4, "wrn": 1, "densenet-bc": 4, "vgg": 4}


# The same networks with stage widths that are not uniform (as the planner picks them to
# match an ensemble to |S|): no stage has its uniform width, and the WRN's first stage is
# not the stem's 16 channels, so it has a projection as at every uniform width but 1.
SMALL_STAGE_WIDTHS = {
    "resnet": (5, 7, 17),
    "wrn": (15, 33, 63),
    "densenet-bc": (4, 3, 5),
    "vgg": (3, 9, 15, 33, 31),
}
_SMALL_ARCHS = [info.name for info in ps.FAMILIES] + [
    f"{name}-stages" for name in SMALL_STAGE_WIDTHS
]


@pytest.fixture(params=_SMALL_ARCHS)
def small_arch(request: pytest.FixtureRequest) -> ps.ArchSpec:
    """The smallest-depth network of each family, e.g. resnet-8-4, wrn-10-1, and the same
    with per-stage widths, e.g. resnet-8-5.7.17."""
    name = request.param.removesuffix("-stages")
    info = ps.get_family(name)
    if name != request.param:
        return ps.ArchSpec.from_stage_widths(info.name, info.min_depth, SMALL_STAGE_WIDTHS[name])
    return ps.ArchSpec(info.name, info.min_depth, SMALL_WIDTHS.get(info.name, 2))


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Run the suite's tiny networks on one thread.

    Measured on the 2-core machine while other jobs ran: a resnet-8-4 forward pass took
    ~270 ms with torch's default 2 threads (OpenMP workers waiting on a busy core) and ~3 ms
    with one. The networks here are too small to gain from a second thread anyway.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A scratch PostgreSQL database for the whole session: the server named by
    PARAMSPLIT_TEST_POSTGRES_URL, else a throwaway one started here (a few seconds)."""
    given = os.environ.get("PARAMSPLIT_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    reason = postgres_server.missing_reason()
    if reason is not None:
        message = f"{reason} (.ci/run installs the server, the dev extra the driver)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must run the PostgreSQL tests, not skip them")
        pytest.skip(message)
    with postgres_server.running_server() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty results database, as `--db` takes it: a SQLite file path, then (a second
    test) the PostgreSQL database with every table dropped."""
    if request.param == "sqlite":
        return str(tmp_path / "results.db")
    url: str = request.getfixturevalue("postgres_url")
    postgres_server.empty_public_schema(url)
    return url


@pytest.fixture(scope="module")
def small_digits() -> dict[str, DatasetTensors]:
    """Digits with 128 training images, by name as studies take datasets: a study of it
    trains in seconds."""
    digits = load_dataset("digits")
    train = {"train_images": digits.train_images[:128], "train_labels": digits.train_labels[:128]}
    return {"digits": dataclasses.replace(digits, **train)}
