"""Focal loss, element-wise, on logits (plain PAA head) or on probabilities (IOP / COP heads).

Both return the *unreduced* loss so that the same function serves the training loss (summed and
normalised by the caller) and the PAA anchor cost (summed over classes per anchor, §1.5 B).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Sigmoid focal loss (Lin et al.) per element.

    Args:
        logits: [..., C] raw scores.
        targets: [..., C] in {0, 1} (one-hot; background rows are all zero).
        alpha: weight of the positive term; negatives get 1 - alpha (alpha < 0 disables it).
        gamma: focusing exponent.

    Returns:
        [..., C] loss, same dtype as ``logits``.
    """
    probabilities = torch.sigmoid(logits)
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probabilities * targets + (1 - probabilities) * (1 - targets)
    loss = cross_entropy * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def probability_focal_loss(
    probabilities: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Focal loss written on probabilities (``ProbFocalLoss`` of the IOP/COP heads, §6).

    Always evaluated in fp32 and outside autocast: ``F.binary_cross_entropy`` refuses fp16 and
    its log is clamped at -100, which keeps p == 0 (IOP's ReLU) finite (§8.4).

    Args:
        probabilities: [..., C] in [0, 1].
        targets: [..., C] in {0, 1}.

    Returns:
        [..., C] fp32 loss.
    """
    with torch.autocast(device_type=probabilities.device.type, enabled=False):
        probabilities = probabilities.float()
        targets = targets.float()
        cross_entropy = F.binary_cross_entropy(probabilities, targets, reduction="none")
        p_t = probabilities * targets + (1 - probabilities) * (1 - targets)
        loss = cross_entropy * (1 - p_t) ** gamma
        if alpha >= 0:
            loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def focal_loss(
    class_scores: Tensor,
    targets: Tensor,
    scores_are_probabilities: bool,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> Tensor:
    """Dispatches to the logit or the probability form, per element."""
    if scores_are_probabilities:
        return probability_focal_loss(class_scores, targets, alpha, gamma)
    return sigmoid_focal_loss(class_scores, targets, alpha, gamma)
