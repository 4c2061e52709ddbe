"""Ensemble metrics from members' logits: accuracy three ways, per-member accuracy, NLL, ECE."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

ECE_BINS = 15  # Guo et al. 2017


@dataclass(frozen=True)
class EnsembleMetrics:
    """Metrics of one split. Accuracies are fractions in [0, 1]; NLL in nats per example.

    `accuracy` averages the members' probabilities (deep-ensemble practice, the default);
    `logit_accuracy` averages their logits (the study's released code); `vote_accuracy` takes
    the majority of the members' predictions (ties go to the lowest class index).
    """

    accuracy: float
    logit_accuracy: float
    vote_accuracy: float
    member_accuracy: tuple[float, ...]
    nll: float
    ece: float
    num_examples: int


def expected_calibration_error(probs: Tensor, targets: Tensor, num_bins: int = ECE_BINS) -> float:
    """|confidence - accuracy| averaged over equal-width confidence bins, weighted by count.

    Shape: probs [N, C], targets [N].
    """
    confidence, predicted = probs.max(dim=1)
    # A diverged network gives NaN probabilities; bin them at 0 rather than fail to count.
    confidence = torch.nan_to_num(confidence, nan=0.0)
    correct = (predicted == targets).float()
    bins = torch.clamp((confidence * num_bins).long(), max=num_bins - 1)  # [N]
    confidence_sum = torch.bincount(bins, weights=confidence, minlength=num_bins)
    correct_sum = torch.bincount(bins, weights=correct, minlength=num_bins)
    return float((confidence_sum - correct_sum).abs().sum() / max(1, len(targets)))


def ensemble_metrics(logits: Tensor, targets: Tensor) -> EnsembleMetrics:
    """Shape: logits [N, k, C] (member i's logits at [:, i]), targets [N]."""
    logits = logits.float()
    num_classes = logits.shape[-1]
    probs = F.softmax(logits, dim=-1)  # [N, k, C]
    mean_probs = probs.mean(dim=1)  # [N, C]
    member_predictions = logits.argmax(dim=-1)  # [N, k]
    votes = F.one_hot(member_predictions, num_classes).sum(dim=1)  # [N, C]
    target_prob = mean_probs.gather(1, targets[:, None]).squeeze(1)
    return EnsembleMetrics(
        accuracy=_accuracy(mean_probs.argmax(dim=1), targets),
        logit_accuracy=_accuracy(logits.mean(dim=1).argmax(dim=1), targets),
        vote_accuracy=_accuracy(votes.argmax(dim=1), targets),
        member_accuracy=tuple(
            _accuracy(member_predictions[:, i], targets) for i in range(logits.shape[1])
        ),
        # Probabilities are clamped so one confident mistake gives a large, finite loss.
        nll=float(-torch.log(target_prob.clamp_min(1e-12)).mean()),
        ece=expected_calibration_error(mean_probs, targets),
        num_examples=len(targets),
    )


def _accuracy(predictions: Tensor, targets: Tensor) -> float:
    return float((predictions == targets).float().mean())
