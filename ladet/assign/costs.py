"""PAA anchor cost of every pre-positive (ALGORITHMS.md §1.5 B).

    cost(a) = sum_c FL(score_{a,c}, onehot(k)_c) + box_weight * (1 - GIoU(decode(anchor_a, delta_a), box_g))

Computed without gradient, in fp32 (fp16 costs create ties in the top-k and the GMM, §8.4), and
only for the P pre-positives of the batch (a few hundred rows instead of B*N).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from ladet.assign.max_iou import PreAssignment
from ladet.boxes import aligned_giou
from ladet.losses.focal import focal_loss
from ladet.models.outputs import HeadOutputs

__all__ = ["anchor_costs", "summed_focal_cost", "BoxDecoder"]


class BoxDecoder(Protocol):
    """What the cost needs from a box coder (``ladet.models.box_coder.DeltaBoxCoder``)."""

    def decode(self, anchors: Tensor, deltas: Tensor, max_shape: Tensor | None = None) -> Tensor: ...


class _HasAnchors(Protocol):
    anchors: Tensor


def summed_focal_cost(
    class_scores: Tensor,
    labels: Tensor,
    scores_are_probabilities: bool,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> Tensor:
    """sum_c FL(score_c, onehot(label)_c) per row, without building the one-hot target.

    Written as (sum over all classes of the target-0 term) + (target-1 term - target-0 term) at the
    label, so the [P, C] work is one fused pass (exp, log, power, product, sum) instead of the ~15
    passes of the element-wise focal loss; the label column goes through
    :func:`ladet.losses.focal.focal_loss` itself. Target-0 term: (1 - alpha) * p^gamma * (-log(1 - p)),
    with -log(1 - sigmoid(z)) = softplus(z) for logits and the log clamped at -100 for
    probabilities (``F.binary_cross_entropy``). Matches ``focal_loss(...).sum(-1)`` to float rounding.

    Args:
        class_scores: [P, C] fp32 logits or probabilities.
        labels: [P] long class of each row (0..C-1).
        scores_are_probabilities: selects the probability form (IOP / COP heads).

    Returns:
        [P] fp32.
    """
    negative_weight = (1.0 - alpha) if alpha >= 0 else 1.0
    if scores_are_probabilities:
        probability = class_scores.clamp(0.0, 1.0)
        negative_log = torch.log1p(-probability).clamp_(min=-100.0).neg_()  # [P, C]
        powered = probability.pow(gamma)
    else:
        # softplus(z) = log(1 + e^z); exp is clamped at z = 30 and the excess added back linearly.
        exponential = class_scores.clamp(max=30.0).exp_()  # [P, C]
        denominator = exponential + 1.0
        powered = exponential.div_(denominator)  # sigmoid(z)
        negative_log = denominator.log_().add_((class_scores - 30.0).clamp_(min=0.0))
        powered = powered.square_() if gamma == 2.0 else powered.pow_(gamma)
    background_sum = powered.mul_(negative_log).sum(dim=1).mul_(negative_weight)  # [P]
    label_scores = class_scores.gather(1, labels[:, None])  # [P, 1]
    positive = focal_loss(label_scores, torch.ones_like(label_scores), scores_are_probabilities, alpha, gamma)
    negative = focal_loss(
        label_scores, torch.zeros_like(label_scores), scores_are_probabilities, alpha, gamma
    )
    return background_sum + (positive - negative)[:, 0]


@torch.no_grad()
def anchor_costs(
    outputs: HeadOutputs,
    grid: _HasAnchors,
    box_coder: BoxDecoder,
    pre: PreAssignment,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    box_weight: float = 1.3,
) -> Tensor:
    """Per-pre-positive PAA cost.

    Args:
        outputs: head outputs; ``class_scores`` [B, N, C] (logits, or probabilities when
            ``class_scores_are_probabilities``), ``box_deltas`` [B, N, 4]. Read under no_grad, cast
            to fp32.
        grid: anything with ``anchors`` [N, 4] (an ``AnchorGrid``).
        box_coder: decodes (anchors [P, 4], deltas [P, 4]) -> boxes [P, 4], without clipping.
        pre: the pre-assignment (image_index, anchor_index, labels, box_targets per pre-positive).
        focal_alpha, focal_gamma: focal-loss parameters (0.25, 2).
        box_weight: weight of the (1 - GIoU) term (1.3).

    Returns:
        [P] fp32 costs, ordered like the pre-positives.
    """
    batch_size, num_anchors, num_classes = outputs.class_scores.shape
    flat = pre.image_index * num_anchors + pre.anchor_index  # [P]
    class_scores = outputs.class_scores.reshape(-1, num_classes).index_select(0, flat).float()  # [P, C]
    deltas = outputs.box_deltas.reshape(-1, 4).index_select(0, flat).float()  # [P, 4]
    classification = summed_focal_cost(
        class_scores, pre.labels, outputs.class_scores_are_probabilities, focal_alpha, focal_gamma
    )  # [P]
    anchors = grid.anchors.index_select(0, pre.anchor_index).float()  # [P, 4]
    decoded = box_coder.decode(anchors, deltas)  # [P, 4]
    giou = aligned_giou(decoded, pre.box_targets.float())  # [P]
    return classification + box_weight * (1.0 - giou)
