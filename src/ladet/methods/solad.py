"""SoLAD: LAD plus soft-label distillation from one teacher forward (docs/algorithms.md §4)."""

from __future__ import annotations

from torch import Tensor

from ladet.config.schema import KnowledgeDistillationConfig
from ladet.losses.distillation import SoftLabelDistillationLoss
from ladet.methods.lad import LADMethod
from ladet.models.detector import PAADetector
from ladet.structures import Batch

__all__ = ["SoLADMethod"]


class SoLADMethod(LADMethod):
    """Total loss = LAD student loss (``loss_cls``, ``loss_bbox``, ``loss_iou``) + KD loss
    (``loss_kd_cls``, ``loss_kd_iou``, ``loss_kd_bbox``) with the SoLAD weights of ``method.kd``
    (released: λ_cls 2.0, λ_iou 10.0, box 1.3, min_iou 0.5, γ 0.5). One teacher forward feeds both.
    """

    def __init__(
        self, detector: PAADetector, teacher: PAADetector, kd_config: KnowledgeDistillationConfig
    ) -> None:
        super().__init__(detector, teacher)
        self.kd_config = kd_config
        self.distillation_loss = SoftLabelDistillationLoss(kd_config, detector.box_coder)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        teacher_outputs = self.teacher_outputs(batch.images)
        outputs = self.detector(batch.images)
        grid, valid_mask = self.anchors_for(outputs, batch)
        assignment = self.teacher_assignment(teacher_outputs, grid, valid_mask, batch)
        student = outputs.float()
        losses = self.loss(student, grid, assignment, batch.batch_size)
        losses.update(
            self.distillation_loss(
                student,
                teacher_outputs,
                grid,
                valid_mask,
                batch.gt_boxes,
                batch.image_sizes.to(valid_mask.device),
            )
        )
        return losses
