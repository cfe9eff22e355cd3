"""Focal-KL: the element-wise soft-label distillation loss of docs/algorithms.md §3.2.

Each class channel is treated as an independent Bernoulli variable (per-class sigmoid, no
softmax, no temperature). With the student's probability p and the teacher's probability t:

    KL(t || p) = t·(log t − log p) + (1 − t)·(log(1 − t) − log(1 − p))
    FKL        = ((t − p)² + 1e-6)^(γ / 2) · KL(t || p)

The modulating factor stays inside the graph; the 1e-6 keeps its gradient finite at t = p.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["focal_kl_loss", "focal_kl_loss_from_probabilities"]

MODULATION_SMOOTHING = 1e-6
PROBABILITY_CLAMP = (1e-4, 0.9999)


def _modulation(teacher_probabilities: Tensor, student_probabilities: Tensor, gamma: float) -> Tensor:
    """((t − p)² + 1e-6)^(γ/2), element-wise."""
    return ((teacher_probabilities - student_probabilities).pow(2) + MODULATION_SMOOTHING).pow(gamma / 2)


def focal_kl_loss(student_logits: Tensor, teacher_probabilities: Tensor, gamma: float = 0.5) -> Tensor:
    """Focal-KL on student LOGITS, element-wise, unreduced.

    log p and log(1 − p) come from ``logsigmoid`` (stable for large |z|); the entropy terms
    t·log t and (1 − t)·log(1 − t) follow the ``kl_div`` convention 0·log 0 = 0.

    Args:
        student_logits: [...] raw scores z (any shape; e.g. [B, N, C] or [S]).
        teacher_probabilities: [...] t in [0, 1], same shape, treated as a constant.
        gamma: focusing exponent of the modulating factor (0.5 in the released configs).

    Returns:
        [...] fp32 loss, same shape as the inputs.

    Example:
        >>> focal_kl_loss(torch.tensor([0.0]), torch.tensor([1.0]), gamma=0.0)  # = log 2
        tensor([0.6931])
    """
    if student_logits.shape != teacher_probabilities.shape:
        raise ValueError(
            f"focal_kl_loss: student logits {tuple(student_logits.shape)} and teacher probabilities "
            f"{tuple(teacher_probabilities.shape)} differ in shape"
        )
    logits = student_logits.float()
    target = teacher_probabilities.detach().float()
    log_probability = F.logsigmoid(logits)  # log p
    log_complement = log_probability - logits  # log(1 − p) = logsigmoid(z) − z
    kl_divergence = (
        torch.xlogy(target, target)
        - target * log_probability
        + torch.xlogy(1 - target, 1 - target)
        - (1 - target) * log_complement
    )
    return _modulation(target, torch.sigmoid(logits), gamma) * kl_divergence


def focal_kl_loss_from_probabilities(
    student_probabilities: Tensor, teacher_probabilities: Tensor, gamma: float = 0.5
) -> Tensor:
    """Focal-KL for students whose head already outputs probabilities (IOP / COP heads).

    Both p and t are clamped to [1e-4, 0.9999] before the logs (docs/algorithms.md §3.2, second mode);
    computed in fp32 outside autocast.

    Args:
        student_probabilities: [...] p in [0, 1].
        teacher_probabilities: [...] t in [0, 1], same shape, treated as a constant.
        gamma: focusing exponent.

    Returns:
        [...] fp32 loss.
    """
    if student_probabilities.shape != teacher_probabilities.shape:
        raise ValueError(
            f"focal_kl_loss_from_probabilities: student {tuple(student_probabilities.shape)} and teacher "
            f"{tuple(teacher_probabilities.shape)} differ in shape"
        )
    low, high = PROBABILITY_CLAMP
    with torch.autocast(device_type=student_probabilities.device.type, enabled=False):
        probability = student_probabilities.float().clamp(low, high)
        target = teacher_probabilities.detach().float().clamp(low, high)
        kl_divergence = target * (target.log() - probability.log()) + (1 - target) * (
            (1 - target).log() - (1 - probability).log()
        )
        return _modulation(target, probability, gamma) * kl_divergence
