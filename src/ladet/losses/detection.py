"""The PAA detection loss given an assignment: focal + GIoU + IoU-branch BCE (docs/algorithms.md §1.6, §2.1).

The same module trains the PAA baseline (box loss weighted by IoU, §1.6), LAD students and both
CoLAD networks (plain mean box loss, §2.1 step 5), whatever assignment it is handed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ladet.assign.result import AssignResult
from ladet.boxes import aligned_giou, aligned_iou
from ladet.config.schema import BoxLossWeighting, LossConfig, choices
from ladet.losses.focal import focal_loss
from ladet.models.outputs import HeadOutputs
from ladet.structures import AnchorsHolder, BoxDecoder

__all__ = ["DetectionLoss"]

IOU_WEIGHT_FLOOR = 1e-12  # max(u, 1e-12) of §1.6


class DetectionLoss:
    """Turns head outputs and an :class:`AssignResult` into ``loss_cls``, ``loss_bbox`` [, ``loss_iou``].

    * ``loss_cls`` = cls_weight · Σ_{valid anchors, classes} focal / max(num_pos, B). Focal on
      logits, or the probability form in fp32 for IOP/COP heads.
    * ``loss_bbox`` = box_weight · (1 − GIoU(decoded prediction, GT box)) over positives, either
      IoU-weighted (``box_loss_weighting="iou"``: Σ max(u, 1e-12)·(1 − GIoU) / Σ max(u, 1e-12),
      u = IoU(detached decoded box, GT)) or a plain mean (``"mean"``: Σ (1 − GIoU) / num_pos).
      Decoded boxes are NOT clipped (training decode, §1.3).
    * ``loss_iou`` = iou_weight · Σ BCEWithLogits(o, u) / num_pos, only when the head has an IoU
      branch and ``with_iou_branch`` is set.

    With no positive in the batch the box and IoU terms are sums over an empty selection: exactly
    0, still attached to the graph (backward gives zero gradients). Dividing by num_pos uses
    max(num_pos, 1), so nothing is divided by zero and no host synchronisation is needed.

    Args:
        loss_config: weights, focal α/γ and ``box_loss_weighting``.
        box_coder: the detector's coder (``decode(anchors [..., 4], deltas [..., 4], max_shape)``).
        with_iou_branch: compute ``loss_iou`` (False for the *base heads of §6).
    """

    def __init__(self, loss_config: LossConfig, box_coder: BoxDecoder, with_iou_branch: bool = True) -> None:
        if loss_config.box_loss_weighting not in choices(BoxLossWeighting):
            raise ValueError(
                f"model.loss.box_loss_weighting = {loss_config.box_loss_weighting!r}; "
                f"expected one of {list(choices(BoxLossWeighting))}"
            )
        self.config = loss_config
        self.box_coder = box_coder
        self.with_iou_branch = with_iou_branch

    def __call__(
        self, outputs: HeadOutputs, grid: AnchorsHolder, assignment: AssignResult, batch_size: int
    ) -> dict[str, Tensor]:
        """Computes the loss dict.

        Args:
            outputs: the trained network's outputs (with grad). class_scores [B, N, C],
                box_deltas [B, N, 4], iou_logits [B, N] | None.
            grid: the anchor grid (``anchors`` [N, 4]).
            assignment: targets for the same B×N anchors (from any network's assigner).
            batch_size: B, the lower bound of the classification normaliser.
        """
        class_scores = outputs.class_scores  # [B, N, C]
        if assignment.labels.shape != class_scores.shape[:2]:
            raise ValueError(
                f"assignment labels {tuple(assignment.labels.shape)} do not match head outputs "
                f"{tuple(class_scores.shape[:2])} (different anchor layouts?)"
            )
        num_classes = class_scores.shape[-1]
        config = self.config
        num_positives = assignment.num_positives.to(class_scores.device).float()  # []

        # classification: one-hot over C classes, background (label C) -> all zeros. Every row
        # writes one value (1 at its class, or 0 at class C-1 for background): no host sync.
        labels = assignment.labels
        foreground = (labels < num_classes).unsqueeze(-1).to(class_scores.dtype)  # [B, N, 1]
        one_hot = torch.zeros_like(class_scores).scatter_(
            2, labels.clamp(max=num_classes - 1).unsqueeze(-1), foreground
        )  # [B, N, C]
        elementwise = focal_loss(
            class_scores,
            one_hot,
            outputs.class_scores_are_probabilities,
            config.focal_alpha,
            config.focal_gamma,
        )  # [B, N, C]
        cls_normaliser = num_positives.clamp(min=float(batch_size))
        loss_cls = (elementwise.float() * assignment.label_weights.unsqueeze(-1)).sum() / cls_normaliser
        losses = {"loss_cls": config.cls_weight * loss_cls}

        positive = assignment.positive_mask  # [B, N]
        anchors = grid.anchors.unsqueeze(0).expand(positive.shape[0], -1, -1)[positive]  # [P, 4]
        deltas = outputs.box_deltas[positive].float()  # [P, 4]
        targets = assignment.box_targets[positive].float()  # [P, 4]
        predicted = self.box_coder.decode(anchors, deltas, None)  # [P, 4], unclipped
        box_loss = 1 - aligned_giou(predicted, targets)  # [P]
        iou_with_target = aligned_iou(predicted.detach(), targets)  # [P]
        positive_normaliser = num_positives.clamp(min=1.0)
        if config.box_loss_weighting == "iou":
            weights = iou_with_target.clamp(min=IOU_WEIGHT_FLOOR)
            loss_bbox = (weights * box_loss).sum() / weights.sum().clamp(min=IOU_WEIGHT_FLOOR)
        else:
            loss_bbox = box_loss.sum() / positive_normaliser
        losses["loss_bbox"] = config.box_weight * loss_bbox

        if self.with_iou_branch and outputs.iou_logits is not None:
            iou_logits = outputs.iou_logits[positive].float()  # [P]
            loss_iou = F.binary_cross_entropy_with_logits(iou_logits, iou_with_target, reduction="sum")
            losses["loss_iou"] = config.iou_weight * loss_iou / positive_normaliser
        return losses
