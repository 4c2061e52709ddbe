"""Checking an exported model in its runtime: its outputs, its accuracy, its latency.

Outputs are compared with the PyTorch model's on the run's whole test set, per probability
(and per member logit, where exported), as absolute differences. The tolerances leave room
for the runtimes' own kernels (onnxruntime's convolutions sum in another order than
PyTorch's; a fused network's grouped convolutions than k single ones): measured on trained
digits runs, the probabilities of either form in onnxruntime differ by under 1e-6. A wrong
weight moves them by orders of magnitude more.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from paramsplit.errors import ArtifactError
from paramsplit.export.formats import Runner
from paramsplit.measure.latency import time_in_rounds

PROBABILITY_TOLERANCE = 1e-5
LOGIT_TOLERANCE = 1e-4
# The exported model and the PyTorch one run the split in the same batches, so they are
# compared call by call; 256 keeps one call small in any runtime (resnet-20, 3×32×32: 68 MiB
# of live tensors in PyTorch, by `paramsplit describe`).
EVAL_BATCH = 256
LATENCY_BATCH_SIZES = (1, 64)
LATENCY_BUDGET_S = 0.5  # time spent timing each model at each batch size
LATENCY_MAX_ROUNDS = 200
LATENCY_MIN_ROUNDS = 5


@dataclass(frozen=True)
class Outputs:
    """A model's outputs on a whole split. Shape: probabilities [N, classes], member logits
    [N, k, classes] or None."""

    probabilities: Tensor
    member_logits: Tensor | None

    def correct(self, labels: Tensor) -> int:
        """How many images the averaged probabilities classify right (the run's accuracy)."""
        return int((self.probabilities.argmax(dim=1) == labels).sum())


def predict_split(run: Runner, images: Tensor) -> Outputs:
    """A runner's outputs on every image, a batch at a time. Shape: images uint8 [N, C, H, W]."""
    starts = range(0, len(images), EVAL_BATCH)
    batches = [run(images[start : start + EVAL_BATCH]) for start in starts]
    probabilities = torch.cat([batch[0] for batch in batches])
    logits = torch.cat([batch[1] for batch in batches]) if len(batches[0]) > 1 else None
    return Outputs(probabilities, logits)


def largest_differences(exported: Outputs, reference: Outputs) -> tuple[float, float | None]:
    """The largest absolute difference of a probability, and of a member logit."""
    probability = float((exported.probabilities - reference.probabilities).abs().max())
    if exported.member_logits is None or reference.member_logits is None:
        return probability, None
    return probability, float((exported.member_logits - reference.member_logits).abs().max())


def check_outputs(run_id: str, exported: Outputs, reference: Outputs) -> tuple[float, float | None]:
    """The largest differences, or an error naming the run where one is out of tolerance."""
    probability, logit = largest_differences(exported, reference)
    if not probability <= PROBABILITY_TOLERANCE:  # NaN fails too
        raise ArtifactError(
            f"the export of run {run_id} does not match its PyTorch model: a probability "
            f"differs by {probability:.3g} (tolerance {PROBABILITY_TOLERANCE:g})"
        )
    if logit is not None and not logit <= LOGIT_TOLERANCE:
        raise ArtifactError(
            f"the export of run {run_id} does not match its PyTorch model: a member logit "
            f"differs by {logit:.3g} (tolerance {LOGIT_TOLERANCE:g})"
        )
    return probability, logit


def batch_of(images: Tensor, size: int) -> Tensor:
    """`size` images from `images`, repeated if there are fewer."""
    repeats = -(-size // len(images))
    return images.repeat(repeats, 1, 1, 1)[:size].contiguous()


def _first_output(run: Runner) -> Callable[[Tensor], Tensor]:
    return lambda images: run(images)[0]


def median_latency_ms(runners: list[Runner], images: Tensor, batch_size: int) -> list[float]:
    """Median milliseconds per call of each runner on a batch, timed in alternating rounds
    (`time_in_rounds`) so that a host's drift hits all of them alike."""
    batch = batch_of(images, batch_size)
    times_s = time_in_rounds(
        [_first_output(run) for run in runners],
        batch,
        torch.device("cpu"),
        warmup=3,
        min_rounds=LATENCY_MIN_ROUNDS,
        max_rounds=LATENCY_MAX_ROUNDS,
        budget_s=LATENCY_BUDGET_S,
    )
    return [1000 * statistics.median(own) for own in times_s]
