"""The typed result of a label assignment: the seam between an assigner and a loss.

LAD is "run the teacher's assigner, feed its AssignResult to the student's loss", so this
dataclass is the only thing that crosses from one network to the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class AssignResult:
    """Per-anchor training targets for a whole batch.

    Attributes:
        labels: [B, N] long. Class 0..C-1 for positives, C (background) for everything else.
        label_weights: [B, N] float. 1 for valid anchors, 0 for anchors in the batch-padding area.
        box_targets: [B, N, 4] float. The assigned GT box (resized frame) for positives, 0 elsewhere.
        positive_mask: [B, N] bool. Final positives.
        positive_gt_index: [B, N] long. For positives, the index of their GT inside their image
            (0..G_i-1); -1 elsewhere.
        num_positives: [] float tensor, number of final positives in the batch (kept as a tensor
            so that no host synchronisation is needed).
        pre_positive_mask: [B, N] bool. Anchors that were candidates of the IoU pre-assignment
            (kept for diagnostics and the assignment pictures).
    """

    labels: Tensor
    label_weights: Tensor
    box_targets: Tensor
    positive_mask: Tensor
    positive_gt_index: Tensor
    num_positives: Tensor
    pre_positive_mask: Tensor
