"""Focal loss, element-wise, on logits (plain PAA head) or on probabilities (IOP / COP heads).

Both return the *unreduced* loss so that the same function serves the training loss (summed and
normalised by the caller) and the PAA anchor cost (summed over classes per anchor, §1.5 B), for which
``one_hot_focal_loss_sum`` gives that per-anchor sum without building the one-hot target.
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


def one_hot_focal_loss_sum(
    class_scores: Tensor,
    labels: Tensor,
    scores_are_probabilities: bool,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> Tensor:
    """Per row, the focal loss summed over the classes against a one-hot target.

    ``focal_loss(class_scores, one_hot(labels)).sum(-1)`` up to float rounding, without the [M, C]
    target: only the label column has target 1, so the sum is the target-0 loss summed over every
    class plus, at the label column, (target-1 loss - target-0 loss), the latter two from
    :func:`focal_loss` on the [M, 2] label column. At target 0 the focal loss is
    (1 - alpha) p^gamma BCE(p, 0) with BCE(p, 0) = -log(1 - p), i.e. softplus(logit) for logits and
    the log clamped at -100 for probabilities (as ``F.binary_cross_entropy``).

    Args:
        class_scores: [M, C] logits, or probabilities when ``scores_are_probabilities``.
        labels: [M] long class of each row (0..C-1).

    Returns:
        [M] fp32 (the dtype of the scores for logits).
    """
    with torch.autocast(device_type=class_scores.device.type, enabled=False):
        if scores_are_probabilities:
            class_scores = class_scores.float()
            negative_log = torch.log1p(-class_scores).clamp_(min=-100.0).neg_()  # [M, C]
            powered = class_scores.pow(gamma)
        else:
            # p = e^z / (1 + e^z) and softplus(z) = log(1 + e^z), from one exp of z clamped at 30 (no
            # overflow; beyond 30, log(1 + e^z) = z in fp32: the excess z - 30 is added back).
            clamped = class_scores.clamp(max=30.0)  # [M, C]
            excess = class_scores - clamped
            exponential = clamped.exp_()
            one_plus = exponential + 1.0
            powered = exponential.div_(one_plus).pow_(gamma)
            negative_log = one_plus.log_().add_(excess)
        target_zero_sum = powered.mul_(negative_log).sum(dim=-1)  # [M]
        if alpha >= 0:
            target_zero_sum = target_zero_sum.mul_(1 - alpha)
        label_column = class_scores.gather(-1, labels[:, None]).expand(-1, 2)  # [M, 2]
        targets = torch.tensor([[1.0, 0.0]], dtype=label_column.dtype, device=labels.device)
        label_loss = focal_loss(
            label_column, targets.expand_as(label_column), scores_are_probabilities, alpha, gamma
        )
    return target_zero_sum + (label_loss[:, 0] - label_loss[:, 1])
