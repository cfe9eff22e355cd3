"""The PAA baseline: the network assigns its own labels (docs/algorithms.md §1.5-1.6)."""

from __future__ import annotations

from torch import Tensor

from ladet.methods.base import TrainingMethod, build_detection_loss
from ladet.models.detector import PAADetector
from ladet.structures import Batch

__all__ = ["BaselineMethod"]


class BaselineMethod(TrainingMethod):
    """PAA self-assignment from the detector's own detached fp32 outputs, then the PAA loss.

    The box loss weighting comes from ``model.loss.box_loss_weighting`` ("iou" for PAA, "mean"
    for the *base heads).

    Example:
        >>> method = BaselineMethod(build_detector(model_config))
        >>> losses = method(batch)  # {"loss_cls", "loss_bbox", "loss_iou"}
    """

    def __init__(self, detector: PAADetector) -> None:
        super().__init__(detector)
        self.loss = build_detection_loss(detector)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        outputs = self.detector(batch.images)
        grid, valid_mask = self.anchors_for(outputs, batch)
        assignment = self.self_assignment(outputs, grid, valid_mask, batch)
        return self.loss(outputs.float(), grid, assignment, batch.batch_size)
