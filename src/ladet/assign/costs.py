"""PAA anchor cost of every pre-positive (docs/algorithms.md §1.5 B).

    cost(a) = sum_c FL(score_{a,c}, onehot(k)_c) + box_weight * (1 - GIoU(decode(anchor_a, delta_a), box_g))

Computed from the package's own pieces (``ladet.losses.focal``, the box coder's ``decode``,
``ladet.boxes.aligned_giou``), without gradient, in fp32 (fp16 costs create ties in the top-k and
the GMM, §8.4), and only for the P pre-positives of the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ladet.assign.max_iou import PreAssignment
from ladet.boxes import aligned_giou
from ladet.losses.focal import one_hot_focal_loss_sum
from ladet.models.outputs import HeadOutputs
from ladet.structures import AnchorsHolder, BoxDecoder

__all__ = ["anchor_costs"]


@torch.no_grad()
def anchor_costs(
    outputs: HeadOutputs,
    grid: AnchorsHolder,
    box_coder: BoxDecoder,
    pre: PreAssignment,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    box_weight: float = 1.3,
) -> Tensor:
    """Per-pre-positive PAA cost.

    Args:
        outputs: head outputs; ``class_scores`` [B, N, C] (logits, or probabilities when
            ``class_scores_are_probabilities``), ``box_deltas`` [B, N, 4]; read in fp32.
        grid: the anchors ([N, 4] ``grid.anchors``).
        box_coder: decodes (anchors [P, 4], deltas [P, 4]) -> boxes [P, 4], without clipping.
        pre: the pre-assignment (image_index, anchor_index, labels, box_targets per pre-positive).
        focal_alpha, focal_gamma: focal-loss parameters (0.25, 2).
        box_weight: weight of the (1 - GIoU) term (1.3).

    Returns:
        [P] fp32 costs, ordered like the pre-positives.
    """
    num_anchors, num_classes = outputs.class_scores.shape[1:]
    flat = pre.image_index * num_anchors + pre.anchor_index  # [P] rows of the [B * N, ...] outputs
    scores = outputs.class_scores.reshape(-1, num_classes).index_select(0, flat).float()  # [P, C]
    classification = one_hot_focal_loss_sum(
        scores, pre.labels, outputs.class_scores_are_probabilities, focal_alpha, focal_gamma
    )
    deltas = outputs.box_deltas.reshape(-1, 4).index_select(0, flat).float()  # [P, 4]
    decoded = box_coder.decode(grid.anchors.index_select(0, pre.anchor_index).float(), deltas)
    return classification + box_weight * (1.0 - aligned_giou(decoded, pre.box_targets.float()))
