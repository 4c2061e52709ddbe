"""Hostile input: every mistake a new user can make gets one line and a non-zero exit.

Each row of the tables below is one mistake: the command line (and the study file or the
database it reads), the exit code, and the one-line error it must print. Every row also
checks what must NOT happen: a traceback, more than one line, or a database created where
none should be (a read-only command, or a study refused before it starts). The CLI runs
in-process (Typer's CliRunner, torch imported once); a few rows run the installed console
script, to see exactly what a shell sees.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import typer
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError
from typer.testing import CliRunner

from paramsplit.cli import app
from paramsplit.errors import StoreError
from paramsplit.store import Store
from paramsplit.store.database import errors_named

runner = CliRunner()
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
NO_CUDA = not torch.cuda.is_available()

# A valid study file; each study-file row changes one thing. Line numbers matter: the errors
# name them.
STUDY = """\
name = "hostile"
families = ["resnet"]
budgets = ["5k"]
members = [2]
designs = ["single"]
seeds = 1
measure = "none"
[train]
epochs = 1
"""


def top(old: str, new: str) -> str:
    """The study file with `old` (a top-level line) replaced by `new`."""
    assert old in STUDY
    return STUDY.replace(old, new)


def train(line: str) -> str:
    """The study file with one more line in its [train] table (line 10)."""
    return STUDY + line + "\n"


# A valid study by flags: tiny, so that a row that wrongly starts it fails fast.
SMALL = ("--budgets", "5k", "--members", "2", "--designs", "single", "--seeds", "1",
         "--epochs", "1", "--measure", "none")  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One hostile input. In `argv`, {db} is the case's database (new unless `database`
    names a prepared one), {study} its study file (`study`), {dir} its folder."""

    argv: tuple[str, ...]
    code: int
    message: str  # a regex the one error line must match
    study: str | bytes | None = None
    database: str | None = None  # a key of DATABASES: a prepared database at {db}
    needs: list[pytest.MarkDecorator] = field(default_factory=list)


def run_case(*argv: str, study: str | bytes | None = None, **kwargs) -> Case:
    return Case(("run", *argv), study=study, **kwargs)


def study_case(study: str | bytes, code: int, message: str, **kwargs) -> Case:
    return Case(("run", "{study}", "--db", "{db}"), code, message, study=study, **kwargs)


# --- 1. a study is checked whole before anything is registered ----------------------------

STUDY_FLAGS = {
    "unknown-family": run_case(
        "--family", "resnot", *SMALL, "--db", "{db}",
        code=1, message=r"^error: --family: unknown family 'resnot'.*did you mean 'resnet'\?$",
    ),
    "one-family-of-two-unknown": run_case(
        "--family", "resnet,resnot", *SMALL, "--db", "{db}",
        code=1, message=r"--family: unknown family 'resnot'",
    ),
    "match-not-a-number": run_case(
        "--match", "tol:abc", *SMALL, "--db", "{db}",
        code=1, message=r"--match: unknown matching rule 'tol:abc'; allowed: 'le', 'nearest'",
    ),
    "match-negative": run_case(
        "--match", "tol:-1", *SMALL, "--db", "{db}",
        code=1, message=r"--match: unknown matching rule 'tol:-1'",
    ),
    "match-above-one": run_case(
        "--match", "tol:1.5", *SMALL, "--db", "{db}",
        code=1, message=r"--match: unknown matching rule 'tol:1.5'; .*0 <= X < 1",
    ),
    "invalid-depth": run_case(
        "--depth", "21", *SMALL, "--db", "{db}",
        code=1, message=r"--depth: depth 21 is not valid for resnet .*14, 20, 26$",
    ),
    "huge-depth": run_case(
        "--depth", "60002", *SMALL, "--db", "{db}",
        code=1, message=r"--depth: depth 60002 is above the largest supported, 1202 \(",
    ),
    "no-feasible-run": run_case(
        "--budgets", "5k", "--members", "1000", "--designs", "deq", "--epochs", "1",
        "--db", "{db}",
        code=1,
        message=r"has no feasible run: resnet deq k=1000 at 5,000 params on digits: the "
        r"smallest, 1000x resnet-20-1 \(1,211,000 params\), exceeds",
    ),
    "budget-below-every-network": run_case(
        "--budgets", "100", "--members", "2", "--designs", "single", "--db", "{db}",
        code=1, message=r"has no feasible run: resnet single k=1 at 100 params .*no single",
    ),
    "no-design-class": run_case(
        "--designs", ",", "--budgets", "5k", "--db", "{db}",
        code=1, message=r"has no runs: no design class was asked for$",
    ),
    "zero-members": run_case(
        "--members", "0", "--budgets", "5k", "--db", "{db}",
        code=1, message=r"--members: number of members must be >= 1, got 0$",
    ),
    "members-not-numbers": run_case(
        "--members", "two", "--budgets", "5k", "--db", "{db}",
        code=2, message=r"--members: cannot parse member counts 'two'",
    ),
    "unknown-design-class": run_case(
        "--designs", "both", "--budgets", "5k", "--db", "{db}",
        code=2, message=r"--designs: unknown design class 'both'; allowed: single, deq, weq$",
    ),
    "unknown-dataset": run_case(
        "--dataset", "cifar11", *SMALL, "--db", "{db}",
        code=1, message=r"--dataset: unknown dataset 'cifar11'",
    ),
    "unknown-member-executor": run_case(
        "--member-executor", "turbo", *SMALL, "--db", "{db}",
        code=1, message=r"^error: --member-executor: unknown executor 'turbo'; allowed: auto",
    ),
    "unparsable-budget": run_case(
        "--budgets", "5x", "--db", "{db}",
        code=1, message=r"--budgets: cannot parse budget '5x'",
    ),
    "zero-budget": run_case(
        "--budgets", "0", "--db", "{db}",
        code=1, message=r"--budgets: budget must be a positive number of parameters, got '0'$",
    ),
    "huge-budget": run_case(
        "--budgets", "1e20", "--designs", "single", "--db", "{db}",
        code=1, message=r"--budgets: budget '1e20' is above the largest supported, 1000G",
    ),
    "no-seeds": run_case(
        "--seeds", "0", "--budgets", "5k", "--db", "{db}",
        code=2, message=r"--seeds: the number of seeds must be in \[1, 1000\] .*got 0$",
    ),
    "a-billion-seeds": run_case(
        "--seeds", "1000000000", "--budgets", "5k", "--db", "{db}",
        code=2, message=r"--seeds: the number of seeds must be in \[1, 1000\] .*1000000000$",
    ),
    "zero-epochs": run_case(
        "--epochs", "0", "--budgets", "5k", "--db", "{db}",
        code=1, message=r"epochs must be >= 1, got 0$",
    ),
    "infinite-learning-rate": run_case(
        "--lr", "inf", *SMALL, "--db", "{db}",
        code=1, message=r"--lr: lr must be a finite number, got inf$",
    ),
    "nan-learning-rate": run_case(
        "--lr", "nan", *SMALL, "--db", "{db}",
        code=1, message=r"lr must be > 0, got nan$",
    ),
    "label-smoothing-one": run_case(
        "--label-smoothing", "1", *SMALL, "--db", "{db}",
        code=1, message=r"label_smoothing must be in \[0, 1\), got 1.0$",
    ),
    "name-with-a-newline": run_case(
        "--name", "two\nlines", *SMALL, "--db", "{db}",
        code=2, message=r"--name: a study name is at most 200 printable characters",
    ),
    "name-too-long": run_case(
        "--name", "x" * 201, *SMALL, "--db", "{db}",
        code=2, message=r"--name: a study name is at most 200 printable characters",
    ),
    "unparsable-single": run_case(
        "--singles", "resnet", "--db", "{db}",
        code=1, message=r"--singles: cannot parse architecture 'resnet'",
    ),
    "invalid-single-depth": run_case(
        "--singles", "resnet-21", "--db", "{db}",
        code=1, message=r"--singles: depth 21 is not valid for resnet",
    ),
    "single-beyond-every-budget": run_case(
        "--singles", "resnet-20-100000", "--members", "2", "--db", "{db}",
        code=1, message=r"--singles: resnet-20-100000 has 10,540,016,500,010 parameters \(3×32×32 "
        r"input\), above the largest supported budget, 1000G$",
    ),
    "unknown-backend": run_case(
        "--backend", "moon", *SMALL, "--db", "{db}",
        code=2, message=r"--backend must be local or ray, got 'moon'$",
    ),
    "unknown-measure": run_case(
        "--measure", "memory", "--budgets", "5k", "--db", "{db}",
        code=2, message=r"--measure must be one of all, first-seed, latency, none, got 'memory'",
    ),
    "missing-study-file": run_case(
        "{dir}/missing.toml", "--db", "{db}",
        code=1, message=r"cannot read study file .*missing\.toml: No such file or directory$",
    ),
    "folder-as-study-file": run_case(
        "{dir}", "--db", "{db}", code=1, message=r"cannot read study file .*: Is a directory$",
    ),
}  # fmt: skip

STUDY_FILES = {
    "file-invalid-depth": study_case(
        top("seeds = 1", "seeds = 1\ndepth = 21"), 1,
        r"s\.toml, line 7: field 'depth': depth 21 is not valid for resnet",
    ),
    "file-fractional-depth": study_case(
        top("seeds = 1", "seeds = 1\ndepth = 20.5"), 1,
        r"s\.toml, line 7: field 'depth': expected a whole number, got 20\.5$",
    ),
    "file-unknown-family": study_case(
        top('families = ["resnet"]', 'families = ["resnett"]'), 1,
        r"s\.toml, line 2: field 'families': unknown family 'resnett'",
    ),
    "file-family-not-a-name": study_case(
        top('families = ["resnet"]', "families = [1]"), 1,
        r"line 2: field 'families': expected a string or a list of strings$",
    ),
    "file-fractional-budget": study_case(
        top('budgets = ["5k"]', "budgets = [5000.5]"), 1,
        r"line 3: field 'budgets': budget must be a whole number or text such as '1.5M'",
    ),
    "file-boolean-budget": study_case(
        top('budgets = ["5k"]', "budgets = [true]"), 1,
        r"line 3: field 'budgets': budget must be a whole number or text",
    ),
    "file-huge-budget": study_case(
        top('budgets = ["5k"]', 'budgets = ["1e99"]'), 1,
        r"line 3: field 'budgets': budget '1e99' is above the largest supported",
    ),
    "file-no-feasible-run": study_case(
        top('designs = ["single"]', 'designs = ["deq"]').replace("[2]", "[1000]"), 1,
        r"study 'hostile' has no feasible run: resnet deq k=1000",
    ),
    "file-negative-seeds": study_case(
        top("seeds = 1", "seeds = [-1, -5]"), 1,
        r"s\.toml, line 6: field 'seeds': expected seeds in \[0, 2147483647\], got \[-1\]$",
    ),
    "file-a-billion-seeds": study_case(
        top("seeds = 1", "seeds = 1000000000"), 1,
        r"line 6: field 'seeds': the number of seeds must be in \[1, 1000\]",
    ),
    "file-fractional-seed": study_case(
        top("seeds = 1", "seeds = [1.5]"), 1,
        r"line 6: field 'seeds': expected a whole number, got 1\.5$",
    ),
    "file-no-seeds": study_case(
        top("seeds = 1", "seeds = []"), 1, r"line 6: field 'seeds': a study needs at least one",
    ),
    "file-bad-match": study_case(
        top("seeds = 1", 'seeds = 1\nmatch = "tol:abc"'), 1,
        r"line 7: field 'match': unknown matching rule 'tol:abc'",
    ),
    "file-name-not-text": study_case(
        top('name = "hostile"', "name = 5"), 1,
        r"line 1: field 'name': expected a non-empty name, got 5$",
    ),
    "file-unknown-field": study_case(
        top("seeds = 1", "seeds = 1\nsedes = 3"), 1, r"line 7: unknown field 'sedes'; allowed",
    ),
    "file-fractional-epochs": study_case(
        STUDY.replace("epochs = 1", "epochs = 1.5"), 1,
        r"s\.toml, line 9: field 'train\.epochs': epochs must be a whole number, got 1\.5$",
    ),
    "file-epochs-as-text": study_case(
        STUDY.replace("epochs = 1", 'epochs = "3"'), 1,
        r"line 9: field 'train\.epochs': epochs must be a whole number, got '3'$",
    ),
    "file-zero-epochs": study_case(
        STUDY.replace("epochs = 1", "epochs = 0"), 1, r"line 9: epochs must be >= 1, got 0$",
    ),
    "file-learning-rate-as-text": study_case(
        train('lr = "fast"'), 1,
        r"line 10: field 'train\.lr': lr must be a finite number, got 'fast'$",
    ),
    "file-nesterov-as-number": study_case(
        train("nesterov = 1"), 1, r"field 'train\.nesterov': nesterov must be true or false",
    ),
    "file-weight-decay-as-text": study_case(
        train('weight_decay = "none"'), 1,
        r"field 'train\.weight_decay': weight_decay must be a finite number or unset",
    ),
    "file-milestone-as-text": study_case(
        train('milestones = [0.5, "x"]'), 1,
        r"field 'train\.milestones': milestones must be a list of finite numbers",
    ),
    "file-unknown-precision": study_case(
        train('precision = "fp8"'), 1, r"line 10: precision must be fp32 or bf16 or fp16",
    ),
    "file-fp16-on-cpu": study_case(
        train('precision = "fp16"'), 1,
        r"line 10: field 'train\.precision': precision fp16 needs a CUDA device",
        needs=[pytest.mark.skipif(not NO_CUDA, reason="fp16 runs where CUDA is")],
    ),
    "file-unknown-training-setting": study_case(
        train("epoch = 3"), 1, r"line 10: unknown training setting 'epoch'",
    ),
    "file-grid-invalid-depth": study_case(
        top('families = ["resnet"]', 'grid = {family = "resnet", widths = [4], depths = [21]}'),
        1, r"line 2: field 'grid': depth 21 is not valid for resnet",
    ),
    "file-grid-too-large": study_case(
        top('families = ["resnet"]', "grid = {family = \"resnet\", widths = ["
            + ", ".join(map(str, range(1, 1001))) + "], depths = ["
            + ", ".join(str(6 * n + 2) for n in range(1, 201)) + "]}"),
        1, r"field 'grid': 1000 widths × 200 depths is too many networks$",
    ),
    "file-not-toml": study_case(
        top("members = [2]", "members = [2"), 1, r"s\.toml: not valid TOML",
    ),
    "file-binary": study_case(
        bytes(range(256)) * 4, 1,
        r"study file .*s\.toml is not text \(byte 0x80 at offset 128 is not UTF-8\)",
    ),
    "file-huge": study_case(
        "# " + "x" * 1_000_001, 1, r"study file .*s\.toml is over 1,000,000 bytes",
    ),
}  # fmt: skip

# --- 2. commands that take sizes, devices and processes ----------------------------------

RESOURCES = {
    "plan-unknown-family": Case(
        ("plan", "--family", "resnot", "--budget", "1M"), 1, r"unknown family 'resnot'",
    ),
    "plan-budget-1e99": Case(
        ("plan", "--family", "resnet", "--budget", "1e99"), 1,
        r"^error: budget '1e99' is above the largest supported, 1000G parameters \(4 TB",
    ),
    "plan-budget-1e20": Case(
        ("plan", "--family", "resnet", "--budget", "1e20"), 1,
        r"budget '1e20' is above the largest supported",
    ),
    "plan-budget-a-billion-digits": Case(
        ("plan", "--family", "resnet", "--budget", "1e999999999"), 1,
        r"budget '1e999999999' is above the largest supported",
    ),
    "plan-huge-depth": Case(
        ("plan", "--family", "resnet", "--budget", "1M", "--depth", "60002"), 1,
        r"depth 60002 is above the largest supported, 1202",
    ),
    "plan-bad-match": Case(
        ("plan", "--family", "resnet", "--budget", "1M", "--match", "tol:abc"), 1,
        r"unknown matching rule 'tol:abc'",
    ),
    "plan-huge-input": Case(
        ("plan", "--family", "resnet", "--budget", "1M", "--input", "3x100000x100000"), 1,
        r"input must be at most 1024×1024 pixels \(32 times CIFAR's side\), got 100000×100000$",
    ),
    "plan-a-hundred-million-classes": Case(
        ("plan", "--family", "resnet", "--budget", "1M", "--classes", "100000000"), 1,
        r"classes <= 100,000 \(ImageNet-21k has 21,841\), got 3 and 100000000$",
    ),
    "describe-huge-depth": Case(
        ("describe", "resnet-60002"), 1,
        r"^error: depth 60002 is above the largest supported, 1202 \(the deepest published",
    ),
    "train-zero-threads": Case(
        ("train", "--family", "resnet", "--budget", "5k", "--threads", "0"), 2,
        r"--threads must be in \[1, \d+\] \(the cores of this machine\), got 0$",
    ),
    "train-a-million-threads": Case(
        ("train", "--family", "resnet", "--budget", "5k", "--threads", "1000000"), 2,
        r"--threads must be in \[1, \d+\]",
    ),
    "train-cuda-without-gpu": Case(
        ("train", "--family", "resnet", "--budget", "5k", "--device", "cuda"), 1,
        r"device 'cuda' asked for, but this machine has 0 CUDA GPUs$",
        needs=[pytest.mark.skipif(not NO_CUDA, reason="this machine has a GPU")],
    ),
    "train-fp16-on-cpu": Case(
        ("train", "--family", "resnet", "--budget", "5k", "--device", "cpu", "--precision",
         "fp16"), 1, r"^error: precision fp16 needs a CUDA device, and this runs on cpu; use",
    ),
    "train-gpu-that-is-not-there": Case(
        ("train", "--family", "resnet", "--budget", "5k", "--device", "cuda:63"), 1,
        r"device 'cuda:63' asked for, but this machine has \d+ CUDA GPUs$",
    ),
    "train-unknown-device": Case(
        ("train", "--family", "resnet", "--budget", "5k", "--device", "moon"), 1,
        r"unknown device 'moon'; allowed: auto, cpu, cuda, cuda:N or mps$",
    ),
    "train-meta-device": Case(
        ("train", "--family", "resnet", "--budget", "5k", "--device", "meta"), 1,
        r"device 'meta' is not supported",
    ),
    "train-negative-seed": Case(
        ("train", "--family", "resnet", "--budget", "5k", "--seed", "-1"), 2,
        r"--seed must be in \[0, 2147483647\], got -1$",
    ),
    "train-huge-budget": Case(
        ("train", "--family", "resnet", "--budget", "1e99"), 1,
        r"budget '1e99' is above the largest supported",
    ),
    "train-huge-depth": Case(
        ("train", "--family", "resnet", "--budget", "5k", "--depth", "60002"), 1,
        r"depth 60002 is above the largest supported",
    ),
    "run-zero-threads": run_case(
        "--threads", "0", *SMALL, "--db", "{db}", code=2, message=r"--threads must be in \[1,",
    ),
    "run-zero-workers": run_case(
        "--workers", "0", *SMALL, "--db", "{db}", code=2, message=r"--workers must be in \[1,",
    ),
    "run-a-thousand-workers": run_case(
        "--workers", "1000", *SMALL, "--db", "{db}", code=2,
        message=r"--workers must be in \[1, \d+\] \(the cores of this machine\), got 1000$",
    ),
    "run-ray-without-cpus": run_case(
        "--backend", "ray", "--cpus-per-run", "0", *SMALL, "--db", "{db}", code=2,
        message=r"--cpus-per-run must be > 0",
    ),
}  # fmt: skip

# --- 3. databases: missing, damaged, from elsewhere --------------------------------------

MISSING = r"^error: no database at '.*typo\.db': check the path"
DAMAGED = r"is damaged \({}\); restore it from a copy, or save what is readable with: sqlite3 "
PAGE_DAMAGE = r"(?:Page \d+: .*|database disk image is malformed)"

DATABASES_CASES = {
    "status-missing-database": Case(("status", "--db", "{dir}/typo.db"), 1, MISSING),
    "report-missing-database": Case(("report", "--db", "{dir}/typo.db"), 1, MISSING),
    "recommend-missing-database": Case(
        ("recommend", "--budget", "5k", "--db", "{dir}/typo.db"), 1, MISSING
    ),
    "export-missing-database": Case(  # before: export created an empty paramsplit.db
        ("export", "--recommended", "--out", "{dir}/x.onnx", "--db", "{dir}/typo.db"), 1, MISSING
    ),
    "status-missing-database-url": Case(("status", "--db", "sqlite:///{dir}/typo.db"), 1, MISSING),
    "status-missing-folder": Case(
        ("status", "--db", "{dir}/nowhere/typo.db"), 1, r"no database at '.*nowhere/typo\.db'"
    ),
    "status-a-folder": Case(
        ("status", "--db", "{dir}"), 1, r"cannot open database '.*': it is a folder; give a file"
    ),
    "status-not-sqlite": Case(
        ("status", "--db", "{db}"), 1,
        r"cannot open database '.*': file is not a database \(not a SQLite file; check the path\)",
        database="text",
    ),
    "status-schema-version-two": Case(
        ("status", "--db", "{db}"), 1,
        DAMAGED.format(r"its schema version is 'two', not a number"), database="schema-two",
    ),
    "status-newer-schema": Case(
        ("status", "--db", "{db}"), 1, r"has schema version 99, newer than this paramsplit's",
        database="schema-99",
    ),
    "report-corrupt-json": Case(
        ("report", "--db", "{db}", "--html", "{dir}/r.html"), 1,
        DAMAGED.format(r"a stored JSON value does not parse: .*"), database="json",
    ),
    "status-damaged-page": Case(
        ("status", "--db", "{db}"), 1,
        DAMAGED.format(PAGE_DAMAGE), database="page",
    ),
    "report-damaged-page": Case(
        ("report", "--db", "{db}", "--html", "{dir}/r.html"), 1,
        DAMAGED.format(PAGE_DAMAGE), database="page",
    ),
    "run-into-a-damaged-page": run_case(
        *SMALL, "--db", "{db}", code=1, message=DAMAGED.format(PAGE_DAMAGE),
        database="page",
    ),
    "run-into-a-text-file": run_case(
        *SMALL, "--db", "{db}", code=1, message=r"file is not a database", database="text",
    ),
}  # fmt: skip

CASES = {**STUDY_FLAGS, **STUDY_FILES, **RESOURCES, **DATABASES_CASES}


# --- prepared databases ----------------------------------------------------------------------


def finished_study(path: Path) -> None:
    """A study of two finished runs, as `paramsplit run` leaves one (without training)."""
    with Store.open(path) as store:
        store.add_study("kept", {"name": "kept"})
        specs = [
            {"family": "resnet", "design_class": "single", "num_members": 1,
             "member": "resnet-20-2", "member_depth": 20, "member_width": 2,
             "total_params": 4_520, "budget_params": 5_000, "dataset": "digits",
             "config": {"epochs": 1}, "seed": seed}
            for seed in (0, 1)
        ]  # fmt: skip
        for run_id in store.add_runs("kept", specs).run_ids:
            store.claim_next("kept", "test:1")
            store.finish(run_id, {"test_accuracy": 0.5, "best_val_accuracy": 0.5})
    connection = sqlite3.connect(path)  # everything into the main file, for byte edits
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def _execute(sql: str) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        connection = sqlite3.connect(path)
        connection.execute(sql)
        connection.commit()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()

    return change


def _damage_runs_page(path: Path) -> None:
    """Garbage over the `runs` table's page; the schema and the status index stay readable
    (so that, unchecked, `status` would still print counts)."""
    connection = sqlite3.connect(path)
    (page,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'")
    size = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    data = bytearray(path.read_bytes())
    for offset in range((page[0] - 1) * size + 8, page[0] * size, 7):
        data[offset] = 0xA5
    path.write_bytes(bytes(data))


DATABASES: dict[str, Callable[[Path], None]] = {
    "schema-two": _execute("UPDATE meta SET value = 'two' WHERE key = 'schema_version'"),
    "schema-99": _execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'"),
    "json": _execute("UPDATE runs SET metrics = '{bad', spec = '{bad', config = '{bad'"),
    "page": _damage_runs_page,
}


@pytest.fixture(scope="module")
def kept_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kept") / "kept.db"
    finished_study(path)
    return path


def prepare(kind: str, path: Path, kept: Path) -> None:
    if kind == "text":
        path.write_text("these are my notes, not a database\n" * 50)
        return
    shutil.copy(kept, path)
    DATABASES[kind](path)


# --- the table, run ------------------------------------------------------------------------


def one_error_line(stderr: str) -> str:
    text = ANSI_ESCAPE.sub("", stderr)
    assert "Traceback" not in text
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{text}"
    return lines[0]


def expand(argv: tuple[str, ...], tmp_path: Path) -> list[str]:
    places = {"{db}": str(tmp_path / "case.db"), "{study}": str(tmp_path / "s.toml"),
              "{dir}": str(tmp_path)}  # fmt: skip
    expanded = []
    for arg in argv:
        for key, value in places.items():
            arg = arg.replace(key, value)
        expanded.append(arg)
    return expanded


def params(cases: dict[str, Case]) -> list[object]:
    return [pytest.param(case, id=name, marks=case.needs) for name, case in cases.items()]


@pytest.mark.parametrize("case", params(CASES))
def test_hostile_input_gets_one_line_and_leaves_nothing_behind(
    case: Case, tmp_path: Path, kept_study: Path
) -> None:
    if isinstance(case.study, bytes):
        (tmp_path / "s.toml").write_bytes(case.study)
    elif case.study is not None:
        (tmp_path / "s.toml").write_text(case.study)
    db = tmp_path / "case.db"
    if case.database is not None:
        prepare(case.database, db, kept_study)
    before = db.read_bytes() if db.exists() else None
    result = runner.invoke(app, expand(case.argv, tmp_path))
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    assert result.exit_code == case.code, result.output
    assert result.stdout == ""
    assert re.search(case.message, one_error_line(result.stderr))
    # Nothing written: no new database, a prepared one unchanged, no typo.db.
    assert (db.read_bytes() if db.exists() else None) == before
    assert not (tmp_path / "typo.db").exists()
    assert not (tmp_path / "case.checkpoints").exists()


def test_a_refused_study_leaves_an_existing_database_as_it_was(tmp_path, kept_study):
    db = tmp_path / "kept.db"
    shutil.copy(kept_study, db)
    result = runner.invoke(app, ["run", "--family", "resnot", *SMALL, "--db", str(db)])
    assert result.exit_code == 1
    with Store.open(db) as store:
        assert [study["name"] for study in store.studies()] == ["kept"]
        assert store.status_counts(None)["total"] == 2


# --- what must still work -------------------------------------------------------------------


@pytest.fixture
def read_only_folder(tmp_path: Path, kept_study: Path):
    """A folder holding a copy of the kept study that nobody, root included, can write:
    chmod does not stop root, the immutable attribute does (where chattr works)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    shutil.copy(kept_study, folder / "kept.db")
    (folder / "kept.db").chmod(0o444)
    folder.chmod(0o555)
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
        if made.returncode != 0:
            pytest.skip("as root, and chattr cannot make the folder read-only here")
    yield folder
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def test_a_database_in_a_read_only_folder_can_be_read(read_only_folder: Path):
    # A WAL database needs an index file beside it even to be read; none can be made here.
    db = read_only_folder / "kept.db"
    status = runner.invoke(app, ["status", "--db", str(db)])
    assert status.exit_code == 0, status.output
    assert status.stdout.startswith("all studies: 2 done, 0 running, 0 pending, 0 failed")
    report = runner.invoke(app, ["report", "--db", str(db), "--json"])
    assert report.exit_code == 0, report.output
    assert '"study": "kept"' in report.stdout
    refused = runner.invoke(app, ["run", *SMALL, "--db", str(db)])
    assert refused.exit_code == 1
    assert re.search(r"database '.*kept\.db': attempt to write a readonly database; make it "
                     r"writable or use a copy", one_error_line(refused.stderr))  # fmt: skip
    assert sorted(p.name for p in read_only_folder.iterdir()) == ["kept.db"]


def test_a_read_only_database_file_is_read_without_being_written(tmp_path, kept_study, monkeypatch):
    db = tmp_path / "kept.db"
    shutil.copy(kept_study, db)
    before = db.read_bytes()
    # As root, chmod does not stop writes: the store is made to see the file as read-only.
    monkeypatch.setattr("paramsplit.store.database._writable", lambda path: False)
    status = runner.invoke(app, ["status", "--db", str(db)])
    assert status.exit_code == 0, status.output
    assert status.stdout.startswith("all studies: 2 done, 0 running, 0 pending, 0 failed")
    report = runner.invoke(app, ["report", "--db", str(db), "--json"])
    assert report.exit_code == 0, report.output
    assert db.read_bytes() == before


def test_a_read_only_database_of_an_older_schema_says_it_cannot_be_upgraded(
    tmp_path, kept_study, monkeypatch
):
    db = tmp_path / "kept.db"
    shutil.copy(kept_study, db)
    _execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")(db)
    monkeypatch.setattr("paramsplit.store.database._writable", lambda path: False)
    result = runner.invoke(app, ["status", "--db", str(db)])
    assert result.exit_code == 1
    assert re.search(
        r"has schema version 1, older .* and is read-only, so it cannot be upgraded",
        one_error_line(result.stderr),
    )


def test_a_study_name_with_markup_is_registered_shown_and_reported(tmp_path):
    db = tmp_path / "study.db"
    name = "x[/]y[bold]"
    result = runner.invoke(
        app,
        ["run", "--name", name, *SMALL, "--member-executor", "loop", "--db", str(db)],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{name}: 1 done")
    status = runner.invoke(app, ["status", "--study", name, "--db", str(db)])
    assert status.stdout.startswith(f"{name}: 1 done")


# --- the boundary: a bug is one line too, and its traceback is there for the asking ---------


def test_an_internal_error_is_one_line_with_exit_70(tmp_path, kept_study, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(Store, "status_counts", broken)
    monkeypatch.delenv("PARAMSPLIT_DEBUG", raising=False)
    result = runner.invoke(app, ["status", "--db", str(kept_study)])
    assert result.exit_code == 70
    line = one_error_line(result.stderr)
    assert line.startswith("internal error: RuntimeError: something inside broke (a bug")
    assert "rerun with PARAMSPLIT_DEBUG=1 for the traceback" in line


@pytest.mark.parametrize("ending", [typer.Exit(143), typer.Abort()])
def test_a_command_ending_on_purpose_passes_the_boundary(ending):
    # Typer 0.29's own Exit is not click's: a SIGTERM's exit code 143 came out as 70.
    from paramsplit.cli.options import reports_errors

    @reports_errors
    def ends() -> None:
        raise ending

    with pytest.raises(type(ending)):
        ends()


def test_paramsplit_debug_shows_the_traceback_of_an_internal_error(kept_study, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(Store, "status_counts", broken)
    monkeypatch.setenv("PARAMSPLIT_DEBUG", "1")
    result = runner.invoke(app, ["status", "--db", str(kept_study)])
    assert isinstance(result.exception, RuntimeError)


# --- the installed console script: what a shell sees ---------------------------------------

SCRIPT = Path(sys.executable).with_name("paramsplit")


@pytest.mark.slow  # each run imports torch afresh: seconds of CPU on the 2-core machine
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("plan", "--family", "resnot", "--budget", "1M"), r"unknown family 'resnot'"),
        (("plan", "--family", "resnet", "--budget", "1e99"), r"above the largest supported"),
        (("run", "--family", "resnot", *SMALL, "--db", "{dir}/a.db"), r"--family: unknown"),
        (("status", "--db", "{dir}/typo.db"), MISSING),
        (("report", "--db", "{db}"), DAMAGED.format(PAGE_DAMAGE)),
    ],
    ids=["plan-family", "plan-budget", "run-family", "status-missing", "report-damaged"],
)
def test_console_script_prints_one_line_and_creates_nothing(argv, message, tmp_path, kept_study):
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT}"
    prepare("page", tmp_path / "case.db", kept_study)
    env = {key: value for key, value in os.environ.items() if key != "FORCE_COLOR"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)  # this checkout's paramsplit
    run = subprocess.run(
        [str(SCRIPT), *expand(argv, tmp_path)],
        capture_output=True, text=True, env=env, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert run.stdout == ""
    assert re.search(message, one_error_line(run.stderr))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.db"]


# --- what the store's boundary turns into one line, and what it lets through -----------------


@pytest.mark.parametrize(
    ("raised", "message"),
    [
        (OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked")),
         r"^database 'x\.db': database is locked$"),
        (DatabaseError("SELECT", {}, sqlite3.DatabaseError("database disk image is malformed")),
         r"^database 'x\.db' is damaged \(database disk image is malformed\); restore it"),
        (json.JSONDecodeError("Expecting value", "{bad", 1),
         r"^database 'x\.db' is damaged \(a stored JSON value does not parse: Expecting value"),
    ],
    ids=["locked", "malformed", "json"],
)  # fmt: skip
def test_a_database_failure_in_use_becomes_one_store_error(raised, message):
    with pytest.raises(StoreError, match=message), errors_named("x.db"):
        raise raised


def test_a_statement_the_database_rejects_is_a_bug_and_goes_through():
    rejected = IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed"))
    with pytest.raises(IntegrityError, match="UNIQUE constraint failed"), errors_named("x.db"):
        raise rejected
