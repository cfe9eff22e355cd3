"""Soft-label distillation with the focal-KL loss (docs/algorithms.md §3)."""

from __future__ import annotations

from torch import Tensor

from ladet.config.schema import KnowledgeDistillationConfig
from ladet.losses.distillation import SoftLabelDistillationLoss
from ladet.methods.base import TrainingMethod, build_detection_loss
from ladet.models.detector import PAADetector
from ladet.structures import Batch

__all__ = ["SoftLabelMethod"]


class SoftLabelMethod(TrainingMethod):
    """KD as released: the student is trained ONLY with ``loss_kd_cls``, ``loss_kd_iou``, ``loss_kd_bbox``.

    GT boxes only choose the anchors (and weights) of the box/IoU terms. With
    ``kd_config.with_ground_truth_losses`` the student's own PAA losses (self-assignment,
    ``model.loss`` box weighting) are added under the usual keys.

    Args:
        detector: the student.
        teacher: the frozen teacher (same classes and anchor layout).
        kd_config: ``method.kd``.
    """

    def __init__(
        self, detector: PAADetector, teacher: PAADetector, kd_config: KnowledgeDistillationConfig
    ) -> None:
        super().__init__(detector, teacher)
        self.kd_config = kd_config
        self.distillation_loss = SoftLabelDistillationLoss(kd_config, detector.box_coder)
        self.loss = build_detection_loss(detector) if kd_config.with_ground_truth_losses else None

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        teacher_outputs = self.teacher_outputs(batch.images)
        outputs = self.detector(batch.images)
        grid, valid_mask = self.anchors_for(outputs, batch)
        student = outputs.float()
        losses = self.distillation_loss(
            student,
            teacher_outputs,
            grid,
            valid_mask,
            batch.gt_boxes,
            batch.image_sizes.to(valid_mask.device),
        )
        if self.loss is not None:
            assignment = self.self_assignment(outputs, grid, valid_mask, batch)
            losses.update(self.loss(student, grid, assignment, batch.batch_size))
        return losses
