"""Soft-label distillation (KD) of docs/algorithms.md §3.1, used alone (KD) and inside SoLAD (§4).

Per batch, with the teacher's fp32 outputs and the student's outputs on the same anchor grid:

1. Decode the teacher's and the student's deltas for every anchor, clipped to each image's
   resized (unpadded) shape.
2. For valid anchors, ω_a = max over the image's GT boxes of IoU(teacher box_a, GT)
   (anchor boxes instead of teacher boxes when ``use_predicted_boxes`` is False).
3. Selected set S = valid anchors with ω_a > ``min_iou``; Z = Σ_{a∈S} ω_a over the batch,
   clamped to ≥ 1 (a batch without GT, or without a teacher box above ``min_iou``, stays finite:
   docs/algorithms.md §8.3).

Losses (keys): ``loss_kd_cls`` = λ_cls · Σ_{all anchors, classes} FKL(student, σ(teacher)) / Z;
``loss_kd_iou`` = λ_iou · Σ_{a∈S} FKL(o^S_a, σ(o^T_a)) / Z (only when both heads have an IoU
branch); ``loss_kd_bbox`` = λ_box · Σ_{a∈S} ω_a·(1 − GIoU(b^S_a, b^T_a)) / Z.

Everything is batched: the GT lists are padded to the largest G in the batch (one copy per
image); nothing loops over GT boxes or anchors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ladet.boxes import aligned_giou, aligned_iou
from ladet.config.schema import KnowledgeDistillationConfig
from ladet.losses.focal_kl import focal_kl_loss, focal_kl_loss_from_probabilities
from ladet.models.outputs import HeadOutputs
from ladet.structures import AnchorsHolder, BoxDecoder

__all__ = ["SoftLabelDistillationLoss", "max_iou_with_ground_truth", "pad_ground_truth"]


def pad_ground_truth(gt_boxes: list[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """Stacks per-image GT boxes into one padded tensor.

    Args:
        gt_boxes: B tensors [G_i, 4].

    Returns:
        boxes [B, G_max, 4] (zeros in the padding) and mask [B, G_max] bool (True = real box).
        G_max is at least 1 so that later reductions are defined.
    """
    batch_size = len(gt_boxes)
    largest = max([1] + [int(boxes.shape[0]) for boxes in gt_boxes])
    padded = torch.zeros((batch_size, largest, 4), device=device)
    mask = torch.zeros((batch_size, largest), dtype=torch.bool, device=device)
    for image, boxes in enumerate(gt_boxes):  # one copy per image, no per-GT work
        count = int(boxes.shape[0])
        padded[image, :count] = boxes.to(device=device, dtype=padded.dtype)
        mask[image, :count] = True
    return padded, mask


def max_iou_with_ground_truth(boxes: Tensor, gt_boxes: Tensor, gt_mask: Tensor) -> Tensor:
    """Per box, the largest IoU with any real GT box of its image.

    Args:
        boxes: [B, N, 4].
        gt_boxes: [B, G, 4] padded GT boxes.
        gt_mask: [B, G] bool, False for padding.

    Returns:
        [B, N] max IoU, 0 for images without GT.
    """
    overlaps = aligned_iou(boxes.unsqueeze(2), gt_boxes.unsqueeze(1))  # [B, N, G]
    overlaps = overlaps.masked_fill(~gt_mask.unsqueeze(1), 0.0)
    return overlaps.max(dim=2).values


class SoftLabelDistillationLoss:
    """Focal-KL classification/IoU distillation plus box distillation onto the teacher's boxes.

    Args:
        kd_config: γ, λ_cls, λ_iou, λ_box, ``min_iou``, ``use_predicted_boxes``.
        box_coder: the (shared) delta box coder.
    """

    def __init__(self, kd_config: KnowledgeDistillationConfig, box_coder: BoxDecoder) -> None:
        self.config = kd_config
        self.box_coder = box_coder

    def __call__(
        self,
        student_outputs: HeadOutputs,
        teacher_outputs: HeadOutputs,
        grid: AnchorsHolder,
        valid_mask: Tensor,
        gt_boxes: list[Tensor],
        image_sizes: Tensor,
    ) -> dict[str, Tensor]:
        """Computes ``loss_kd_cls``, ``loss_kd_iou`` (if both heads have an IoU branch), ``loss_kd_bbox``.

        Args:
            student_outputs: with grad; class_scores [B, N, C], box_deltas [B, N, 4], iou_logits [B, N].
            teacher_outputs: fp32, no grad, same shapes.
            grid: anchors [N, 4] shared by both networks.
            valid_mask: [B, N] bool anchor valid flags.
            gt_boxes: B tensors [G_i, 4] in the resized frame.
            image_sizes: [B, 2] (height, width) after resize, before padding (clipping shape).
        """
        config = self.config
        if student_outputs.class_scores.shape != teacher_outputs.class_scores.shape:
            raise ValueError(
                f"student class scores {tuple(student_outputs.class_scores.shape)} and teacher class scores "
                f"{tuple(teacher_outputs.class_scores.shape)} differ: teacher and student must share "
                "num_classes and the anchor layout"
            )
        teacher = teacher_outputs.detach().float()
        anchors = grid.anchors  # [N, 4]
        device = valid_mask.device

        # 1-3. selection and weights (constants: no graph)
        with torch.no_grad():
            teacher_boxes = self.box_coder.decode(anchors, teacher.box_deltas, image_sizes)  # [B, N, 4]
            reference_boxes = (
                teacher_boxes if config.use_predicted_boxes else anchors.unsqueeze(0).expand_as(teacher_boxes)
            )
            padded_gt, gt_mask = pad_ground_truth(gt_boxes, device)
            max_iou = max_iou_with_ground_truth(reference_boxes.float(), padded_gt, gt_mask)  # [B, N]
            selected = valid_mask & (max_iou > config.min_iou)  # [B, N]
            weights = torch.where(selected, max_iou, torch.zeros_like(max_iou))  # [B, N]
            normaliser = weights.sum().clamp(min=1.0)  # Z

        # classification: every anchor (padding included), every class
        if teacher.class_scores_are_probabilities:
            teacher_probabilities = teacher.class_scores
        else:
            teacher_probabilities = torch.sigmoid(teacher.class_scores)
        if student_outputs.class_scores_are_probabilities:
            kd_cls = focal_kl_loss_from_probabilities(
                student_outputs.class_scores, teacher_probabilities, config.gamma
            )
        else:
            kd_cls = focal_kl_loss(student_outputs.class_scores, teacher_probabilities, config.gamma)
        losses = {"loss_kd_cls": config.cls_weight * kd_cls.sum() / normaliser}

        # IoU branch on the selected anchors
        if student_outputs.iou_logits is not None and teacher.iou_logits is not None:
            kd_iou = focal_kl_loss(
                student_outputs.iou_logits[selected],
                torch.sigmoid(teacher.iou_logits[selected]),
                config.gamma,
            )  # [S]
            losses["loss_kd_iou"] = config.iou_weight * kd_iou.sum() / normaliser

        # boxes: student's decoded box regressed onto the teacher's decoded box
        student_boxes = self.box_coder.decode(
            anchors, student_outputs.box_deltas.float(), image_sizes
        )  # [B, N, 4], clipped like the teacher's
        box_loss = weights[selected] * (1 - aligned_giou(student_boxes[selected], teacher_boxes[selected]))
        losses["loss_kd_bbox"] = config.box_weight * box_loss.sum() / normaliser
        return losses
