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

__all__ = ["anchor_costs", "BoxDecoder"]


class BoxDecoder(Protocol):
    """What the cost needs from a box coder (``ladet.models.box_coder.DeltaBoxCoder``)."""

    def decode(self, anchors: Tensor, deltas: Tensor, max_shape: Tensor | None = None) -> Tensor: ...


class _HasAnchors(Protocol):
    anchors: Tensor


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
    class_scores = outputs.class_scores[pre.image_index, pre.anchor_index].float()  # [P, C]
    deltas = outputs.box_deltas[pre.image_index, pre.anchor_index].float()  # [P, 4]
    targets = torch.zeros_like(class_scores)  # [P, C]
    targets.scatter_(1, pre.labels[:, None], 1.0)
    classification = focal_loss(
        class_scores,
        targets,
        outputs.class_scores_are_probabilities,
        alpha=focal_alpha,
        gamma=focal_gamma,
    ).sum(dim=1)  # [P]
    anchors = grid.anchors[pre.anchor_index].float()  # [P, 4]
    decoded = box_coder.decode(anchors, deltas)  # [P, 4]
    giou = aligned_giou(decoded, pre.box_targets.float())  # [P]
    return classification + box_weight * (1.0 - giou)
