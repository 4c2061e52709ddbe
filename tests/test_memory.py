"""The exact memory count: live tensor bytes of the executors' own step, by category.

The count runs on meta or fake tensors; the trusted reference is the same counter on real
tensors (`allocate=True`), and on CUDA the allocator's own peak. These tests pin the torch
behaviour the counter relies on (the autograd engine's graph task, optimizer hooks, fake
tensors that survive `Module.to`), so a torch upgrade that changes it fails here.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import paramsplit as ps
from paramsplit.cli import app
from paramsplit.errors import ConfigError
from paramsplit.measure import (
    CATEGORIES,
    LiveTensors,
    count_design_memory,
    count_inference_memory,
    count_train_memory,
)
from paramsplit.measure.counting import (
    LOSS_SCALAR_BYTES,
    count_inference,
    count_step,
    count_train_step,
    loop_train_step,
    reach_steady_state,
)
from paramsplit.specs import TrainConfig
from paramsplit.train import make_executor

DIGITS = ps.parse_input("1x8x8", num_classes=10)
CIFAR = ps.parse_input("3x32x32", num_classes=10)
CONFIG = TrainConfig(batch_size=32)


def nbytes(tensors) -> int:
    return sum(t.untyped_storage().nbytes() for t in tensors)


# --- the counter --------------------------------------------------------------------------


def test_counter_splits_a_training_step_by_what_each_tensor_is():
    # A linear layer, SGD with momentum: every held category is known exactly.
    model = torch.nn.Linear(100, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images, labels = torch.randn(32, 100), torch.randint(10, (32,))
    for _ in range(2):  # the second step is counted: gradients and momentum exist
        counter = LiveTensors()
        counter.hold_optimizer(optimizer)
        counter.hold([images, labels], "inputs")
        with counter:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
    weights = nbytes(model.parameters())
    assert weights == (100 * 10 + 10) * 4
    assert counter.start_breakdown == {
        "parameters": weights,
        "gradients": weights,
        "optimizer_state": weights,
        "inputs": 32 * 100 * 4 + 32 * 8,
        "activations": 0,
        "temporaries": 0,
    }
    # The peak is in the backward pass: the old gradients were freed, the new ones and the
    # logits' gradient (temporaries until autograd stores them in `.grad`) are live.
    assert counter.peak_breakdown["temporaries"] >= weights + 32 * 10 * 4
    assert counter.peak_bytes >= sum(counter.start_breakdown.values()) + 32 * 10 * 4
    assert counter.peak_bytes == sum(counter.peak_breakdown.values())
    # After the step: weights, new gradients, momentum and the batch; the rest was freed.
    assert counter.current == {**counter.start_breakdown}


def test_counter_follows_momentum_buffers_made_by_a_first_step_into_optimizer_state():
    model = torch.nn.Linear(10, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    counter = LiveTensors()
    counter.hold_optimizer(optimizer)
    with counter:
        model(torch.randn(4, 10)).sum().backward()
        optimizer.step()
    assert counter.current["optimizer_state"] == nbytes(model.parameters())
    assert counter.current["gradients"] == nbytes(model.parameters())


def test_counter_rounds_cuda_blocks_up_to_512_bytes():
    counter = LiveTensors("cuda")  # only the rounding depends on the device named
    tensors = [torch.zeros(1), torch.zeros(129)]
    counter.hold(tensors, "inputs")
    assert counter.current["inputs"] == 512 + 1024
    del tensors
    assert counter.current["inputs"] == 0  # freed storages leave the count


# --- the count is the real step's, without allocating -------------------------------------


def test_counting_without_allocating_gives_the_bytes_of_real_tensors_for_every_family(
    small_arch,
):
    for execution, k in (("loop", 1), ("fused", 2)):
        real = count_train_step(execution, small_arch, DIGITS, k, CONFIG, allocate=True)
        counted = count_train_step(execution, small_arch, DIGITS, k, CONFIG)  # on meta
        assert counted == real, f"{execution} k={k}"
        real = count_inference(execution, small_arch, DIGITS, k, CONFIG, 64, allocate=True)
        assert count_inference(execution, small_arch, DIGITS, k, CONFIG, 64) == real  # fake


@pytest.mark.parametrize("execution", ["loop", "fused"])
def test_bf16_and_channels_last_count_on_fake_tensors_like_real_ones(execution):
    arch = ps.parse_arch("resnet-8-4")
    config = TrainConfig(batch_size=16, precision="bf16", channels_last=True)
    real = count_train_step(execution, arch, DIGITS, 2, config, allocate=True)
    assert count_train_step(execution, arch, DIGITS, 2, config) == real
    fp32 = count_train_step(execution, arch, DIGITS, 2, TrainConfig(batch_size=16))
    assert real.breakdown["activations"] != fp32.breakdown["activations"]  # autocast counted


def test_the_loop_figure_is_the_loop_executor_stepped_whole():
    arch, k = ps.parse_arch("resnet-8-4"), 3
    whole = count_train_step("loop", arch, DIGITS, k, CONFIG)
    derived = loop_train_step(arch, DIGITS, k, CONFIG)
    # The whole loop also keeps each finished member's loss until the step ends.
    assert 0 <= whole.peak_bytes - derived.peak_bytes <= (k - 1) * LOSS_SCALAR_BYTES
    assert derived.held == whole.held


def test_the_count_is_the_same_on_every_call():
    arch = ps.parse_arch("resnet-20-4")
    first = count_train_step("fused", arch, CIFAR, 2, CONFIG)
    count_train_step.cache_clear()
    count_inference.cache_clear()
    assert count_train_step("fused", arch, CIFAR, 2, CONFIG) == first


def test_memory_grows_with_depth_and_members():
    config = TrainConfig(batch_size=128)

    def train_bytes(name: str, k: int = 1, execution: str = "fused") -> int:
        return count_train_memory(ps.parse_arch(name), k, CIFAR, config)[execution].peak_bytes

    # Widths: see test_describe_gives_the_same_bytes_every_call_growing_with_width.
    depths = [train_bytes(f"resnet-{d}-4") for d in (8, 14, 20, 32)]
    assert depths == sorted(set(depths))
    # All k at once holds k members' activations; one at a time, one member's.
    assert train_bytes("resnet-20-4", 4, "loop") < train_bytes("resnet-20-4", 4, "fused")
    assert train_bytes("resnet-20-4", 2, "fused") < train_bytes("resnet-20-4", 4, "fused")


def test_a_design_too_large_for_this_machine_is_counted_without_allocating():
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    counts = count_train_memory(ps.parse_arch("wrn-28-10"), 1, CIFAR, TrainConfig())
    rss_grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    count = counts["fused"]
    assert count.peak_bytes > 2 * 2**30  # WRN-28-10 at batch 128: about 2.5 GiB of tensors
    assert rss_grew < count.peak_bytes / 8
    # Its 36.5M parameters, and SGD's momentum buffer for each, all fp32.
    assert count.breakdown["parameters"] >= 4 * 36_479_194
    assert count.breakdown["optimizer_state"] == 4 * 36_479_194


def test_design_memory_reports_both_executions_and_every_category():
    memory = count_design_memory(
        ps.parse_arch("resnet-8-4"), 2, DIGITS, CONFIG, inference_batch_size=64
    )
    assert memory.train["loop"].peak_bytes < memory.train["fused"].peak_bytes
    assert memory.inference["loop"].peak_bytes < memory.inference["fused"].peak_bytes
    detail = memory.to_dict()
    assert detail["method"] == "live_tensors"
    assert (detail["train_batch_size"], detail["inference_batch_size"]) == (32, 64)
    for mode in ("train", "inference"):
        for execution in ("loop", "fused"):
            count = detail[mode][execution]
            assert set(count["breakdown_bytes"]) == set(CATEGORIES)
            assert sum(count["breakdown_bytes"].values()) == count["peak_bytes"]
    inference = detail["inference"]["fused"]["breakdown_bytes"]
    assert inference["gradients"] == inference["optimizer_state"] == 0
    assert inference["temporaries"] == 0  # nothing runs backward
    single = count_inference_memory(ps.parse_arch("resnet-8-4"), 1, DIGITS, 64)
    assert single["loop"] == single["fused"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: count_train_step("vmap", ps.parse_arch("resnet-8-4"), DIGITS, 2, CONFIG),
         "memory is counted for executions loop and fused, got 'vmap'"),
        (lambda: count_train_memory(ps.parse_arch("resnet-8-4"), 0, DIGITS),
         "memory count needs num_members >= 1 and batch size >= 1, got 0 and 128"),
    ],
)  # fmt: skip
def test_what_cannot_be_counted_is_refused(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


# --- the CLI: describe and plan -----------------------------------------------------------


def cli_json(*args: str):
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_describe_gives_the_same_bytes_every_call_growing_with_width():
    def train_bytes(width: int) -> int:
        data = cli_json("describe", f"resnet-20-{width}", "--input", "3x32x32", "--batch", "128")
        return data["train_memory_bytes"]

    first = [train_bytes(w) for w in (4, 8, 16, 32)]
    count_train_step.cache_clear()
    assert [train_bytes(w) for w in (4, 8, 16, 32)] == first
    assert first == sorted(set(first))


def test_describe_counts_k_networks_with_the_breakdown():
    data = cli_json("describe", "resnet-8-4", "--input", "1x8x8", "--members", "4")
    assert data["num_members"] == 4 and data["memory_method"] == "live_tensors"
    assert data["train_memory_loop_bytes"] < data["train_memory_bytes"]
    assert sum(data["train_memory_breakdown"].values()) == data["train_memory_bytes"]
    assert (
        sum(data["inference_memory_loop_breakdown"].values())
        == (data["inference_memory_loop_bytes"])
    )
    assert data["train_batch_size"] == data["inference_batch_size"] == 128


def test_plan_shows_each_designs_counted_training_memory():
    rows = cli_json("plan", "--family", "resnet", "--budget", "20k", "--members", "2",
                    "--input", "1x8x8", "--batch", "64")  # fmt: skip
    for row in (row for row in rows if row["feasible"]):
        assert row["train_batch_size"] == 64 and row["memory_method"] == "live_tensors"
        if row["num_members"] == 1:
            assert row["train_memory_loop_bytes"] == row["train_memory_fused_bytes"]
        else:
            assert row["train_memory_loop_bytes"] < row["train_memory_fused_bytes"]
    skipped = cli_json("plan", "--family", "resnet", "--budget", "20k", "--no-memory")
    assert all("train_memory_fused_bytes" not in row for row in skipped)


# --- recommend compares like with like ---------------------------------------------------


def test_a_memory_limit_compares_the_stated_execution_and_says_so():
    from paramsplit.analysis import Constraints, RunRecord, analyse, recommend

    def runs(design_class: str, k: int, fused_bytes: int, loop_bytes: int) -> list[RunRecord]:
        return [
            RunRecord(f"{design_class}-{seed}", "resnet", "digits", design_class, k,
                      "resnet-8-4", 20_000, 20_000, seed, test_accuracy=accuracy,
                      peak_train_memory_bytes=fused_bytes, loop_train_memory_bytes=loop_bytes)
            for seed, accuracy in enumerate((0.90, 0.91, 0.92) if k == 1 else (0.95, 0.96, 0.97))
        ]  # fmt: skip

    designs = analyse("s", runs("single", 1, 5_000_000, 5_000_000)
                      + runs("deq", 4, 8_000_000, 3_000_000)).designs  # fmt: skip
    fused = recommend(designs, 20_000, Constraints(max_memory_bytes=6_000_000))
    assert fused.choice is not None and fused.choice.label == "single"
    assert any("all k members at once" in note for note in fused.notes)
    deq = next(c for c in fused.candidates if c.summary.label == "deq k=4")
    assert deq.violations == ("training memory 8e+06 bytes > 6e+06 bytes",)
    one_at_a_time = Constraints(max_memory_bytes=6_000_000, memory_execution="loop")
    loop = recommend(designs, 20_000, one_at_a_time)
    assert loop.choice is not None and loop.choice.label == "deq k=4"
    assert any("one member at a time" in note for note in loop.notes)
    with pytest.raises(ps.UsageError, match="memory execution must be fused or loop, got 'vmap'"):
        Constraints(memory_execution="vmap")


# --- CUDA: the count against the allocator ------------------------------------------------

# On CUDA the count is cross-checked against `torch.cuda.max_memory_allocated` over the same
# step. The allocator may hand out more than the live tensors: cuDNN and cuBLAS take their
# workspaces from it (not tensors the count sees), and it rounds every block up to 512 bytes
# (the count rounds too). It must not hand out less. Allowed: up to 25% + 64 MiB above.
CUDA_GAP_FRACTION = 0.25
CUDA_GAP_BYTES = 64 * 2**20


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("execution", "precision"), [("loop", "fp32"), ("fused", "fp32"),
                                                      ("fused", "bf16")])  # fmt: skip
def test_the_count_matches_the_cuda_allocator(execution, precision):
    device, k, batch = torch.device("cuda"), 4, 128
    arch = ps.parse_arch("resnet-20-8")
    config = TrainConfig(batch_size=batch, precision=precision)
    counted = count_train_step(execution, arch, CIFAR, k, config, "cuda")  # fake tensors
    torch.cuda.synchronize()
    others_bytes = torch.cuda.memory_allocated()  # whatever earlier tests left alive
    executor = make_executor(execution, arch, CIFAR, list(range(k)), config, device)
    images = torch.randn(k, batch, *CIFAR.shape, device=device)
    labels = torch.randint(10, (k, batch), device=device)
    executor.set_training(True)
    reach_steady_state(executor)
    executor.train_step(images, labels)  # kernels chosen, workspaces taken once
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    real = count_step(executor, images, labels, device)
    torch.cuda.synchronize()
    allocated = torch.cuda.max_memory_allocated() - others_bytes
    assert real == counted  # fake CUDA tensors count what real ones do
    assert counted.peak_bytes <= allocated
    assert allocated <= counted.peak_bytes * (1 + CUDA_GAP_FRACTION) + CUDA_GAP_BYTES


@pytest.mark.slow
def test_the_gpu_check_runs_on_a_cpu_and_says_what_it_skipped():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    done = subprocess.run([sys.executable, str(script), "--device", "cpu"], capture_output=True,
                          text=True, timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "no CUDA, GPU parts skipped" in done.stdout
    assert "real tensors / count" in done.stdout and "study runs done" in done.stdout
