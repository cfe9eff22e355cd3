"""LAD: the frozen teacher's PAA assignment trains the student (docs/algorithms.md §2)."""

from __future__ import annotations

from torch import Tensor

from ladet.assign.result import AssignResult
from ladet.methods.base import TrainingMethod, build_assigner, build_detection_loss
from ladet.models.anchors import AnchorGrid
from ladet.models.detector import PAADetector
from ladet.models.outputs import HeadOutputs
from ladet.structures import Batch

__all__ = ["LADMethod"]


class LADMethod(TrainingMethod):
    """Label assignment distillation.

    Per iteration: the teacher (eval, no grad, fp32 outputs) runs on the same batch, the teacher's
    outputs go through the whole PAA assignment (with the teacher's assigner settings), and the
    student gets focal + GIoU + IoU-BCE on those targets with the box loss as a PLAIN MEAN over
    positives (§2.1 step 5, whatever ``model.loss.box_loss_weighting`` says) and the IoU target
    computed from the student's own boxes. The teacher contributes no loss.

    Args:
        detector: the student.
        teacher: a frozen detector with the same classes and anchor layout (see ``load_teacher``).
    """

    def __init__(self, detector: PAADetector, teacher: PAADetector) -> None:
        super().__init__(detector, teacher)
        self.teacher_assigner = build_assigner(teacher)
        self.loss = build_detection_loss(detector, box_loss_weighting="mean")

    def teacher_assignment(
        self, teacher_outputs: HeadOutputs, grid: AnchorGrid, valid_mask: Tensor, batch: Batch
    ) -> AssignResult:
        """PAA assignment from the teacher's fp32 outputs."""
        return self.teacher_assigner.assign(
            teacher_outputs, grid, valid_mask, batch.gt_boxes, batch.gt_labels
        )

    def training_assignment(
        self, outputs: HeadOutputs, grid: AnchorGrid, valid_mask: Tensor, batch: Batch
    ) -> AssignResult:
        return self.teacher_assignment(self.teacher_outputs(batch.images), grid, valid_mask, batch)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        teacher_outputs = self.teacher_outputs(batch.images)
        outputs = self.detector(batch.images)
        grid, valid_mask = self.anchors_for(outputs, batch)
        assignment = self.teacher_assignment(teacher_outputs, grid, valid_mask, batch)
        return self.loss(outputs.float(), grid, assignment, batch.batch_size)
