"""The raw outputs of a dense detection head, flattened over levels."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class HeadOutputs:
    """Everything a PAA-style head predicts for a batch, flattened over FPN levels.

    Anchors are ordered level by level (P3 first), each level row-major (H, W), matching
    :class:`ladet.models.anchors.AnchorGrid`.

    Attributes:
        class_scores: [B, N, C]. Logits when ``class_scores_are_probabilities`` is False (plain
            PAA head), probabilities in [0, 1] otherwise (IOP and COP heads, docs/algorithms.md §6).
        box_deltas: [B, N, 4] deltas (dx, dy, dw, dh) for the delta box coder, already multiplied
            by the per-level learnable scale.
        iou_logits: [B, N] logits of the IoU branch, or None for heads without it (*base heads).
        level_sizes: the (H_l, W_l) of each level's feature map, P3..P7.
        class_scores_are_probabilities: see ``class_scores``.
    """

    class_scores: Tensor
    box_deltas: Tensor
    iou_logits: Tensor | None
    level_sizes: list[tuple[int, int]]
    class_scores_are_probabilities: bool = False

    def detach(self) -> HeadOutputs:
        return HeadOutputs(
            class_scores=self.class_scores.detach(),
            box_deltas=self.box_deltas.detach(),
            iou_logits=None if self.iou_logits is None else self.iou_logits.detach(),
            level_sizes=list(self.level_sizes),
            class_scores_are_probabilities=self.class_scores_are_probabilities,
        )

    def float(self) -> HeadOutputs:
        """fp32 copy (costs and probability-space losses are always computed in fp32)."""
        return HeadOutputs(
            class_scores=self.class_scores.float(),
            box_deltas=self.box_deltas.float(),
            iou_logits=None if self.iou_logits is None else self.iou_logits.float(),
            level_sizes=list(self.level_sizes),
            class_scores_are_probabilities=self.class_scores_are_probabilities,
        )
