"""The training-method seam: a method owns its networks and turns a batch into a loss dict.

The engine only calls ``method(batch)``, sums the keys starting with ``loss_`` and logs the
others. Trainable networks are registered submodules (``detector``, and ``second_detector`` for
CoLAD), so ``parameters()``, ``state_dict()`` and DDP see exactly them. A frozen teacher is kept
OUTSIDE the module tree (a plain attribute): it is absent from ``parameters()``,
``state_dict()``, the optimiser and DDP, is moved explicitly by ``.to()`` / ``.cuda()`` (via
``_apply``), and is forced into eval mode by ``train()`` and before every forward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from ladet.assign.max_iou import PreAssignment
from ladet.assign.paa import PAAAssigner
from ladet.assign.result import AssignResult
from ladet.config.schema import BoxLossWeighting
from ladet.losses.detection import DetectionLoss
from ladet.methods.teacher import check_anchor_layout
from ladet.models.anchors import AnchorGrid
from ladet.models.detector import PAADetector
from ladet.models.outputs import HeadOutputs
from ladet.structures import Batch

__all__ = ["TrainingMethod", "LabelAssignments", "build_assigner", "build_detection_loss"]


@dataclass
class LabelAssignments:
    """The label assignments of one batch as a method sees them (for the assignment pictures).

    Attributes:
        training_assignment: the AssignResult the method trains with (the teacher's for LAD /
            SoLAD / KD, the shared one for CoLAD, the self-assignment for the baseline).
        student_assignment: the trained network's own PAA self-assignment (CoLAD: network 1's).
        anchor_grid: the anchors of the batch's padded shape.
        valid_mask: [B, N] bool anchor valid flags.
        pre_assignment: the IoU pre-assignment behind ``training_assignment`` when the method
            keeps it (CoLAD); None otherwise (``method.assigner.pre_assign`` recomputes it).
        uses_second: CoLAD only, [P] bool per pre-positive: True where network 2's cost was used.
        statistics: CoLAD only, the logged switching scalars (``s_mean``, ``t_ratio``, ...).
    """

    training_assignment: AssignResult
    student_assignment: AssignResult
    anchor_grid: AnchorGrid
    valid_mask: Tensor
    pre_assignment: PreAssignment | None = None
    uses_second: Tensor | None = None
    statistics: dict[str, Tensor] = field(default_factory=dict)


def build_assigner(detector: PAADetector) -> PAAAssigner:
    """The PAA assigner configured like ``detector`` (its assigner section and focal α/γ)."""
    config = detector.config
    return PAAAssigner(
        config.assigner,
        detector.num_classes,
        detector.box_coder,
        focal_alpha=config.loss.focal_alpha,
        focal_gamma=config.loss.focal_gamma,
    )


def build_detection_loss(
    detector: PAADetector, box_loss_weighting: BoxLossWeighting | None = None
) -> DetectionLoss:
    """The detection loss of ``detector``; ``box_loss_weighting`` overrides the config's choice."""
    loss_config = detector.config.loss
    if box_loss_weighting is not None:
        loss_config = replace(loss_config, box_loss_weighting=box_loss_weighting)
    return DetectionLoss(loss_config, detector.box_coder, detector.has_iou_branch)


class TrainingMethod(nn.Module):
    """Base class of the baseline and distillation methods.

    Args:
        detector: the trained network (registered as ``self.detector``).
        teacher: an optional frozen network, kept out of the module tree.

    Subclasses implement :meth:`forward` and :meth:`training_assignment`.
    """

    _teacher: PAADetector | None  # set with object.__setattr__: never a registered submodule

    def __init__(self, detector: PAADetector, teacher: PAADetector | None = None) -> None:
        super().__init__()
        self.detector = detector
        self.assigner = build_assigner(detector)
        object.__setattr__(self, "_teacher", None)
        if teacher is not None:
            check_anchor_layout(detector.config, teacher.config, "the teacher")
            teacher.requires_grad_(False)
            teacher.eval()
            object.__setattr__(self, "_teacher", teacher)
        # A freshly built detector is in train mode without its ``train()`` override having run,
        # i.e. with BatchNorm updating running statistics despite ``norm_eval``; re-apply the mode.
        self.train(True)

    # ------------------------------------------------------------------ networks
    def teacher_detector(self) -> PAADetector | None:
        """The frozen teacher (not a submodule), or None for methods without one."""
        return self._teacher

    def evaluation_detector(self) -> PAADetector:
        """The network used for validation, testing, prediction and export."""
        return self.detector

    def train(self, mode: bool = True) -> TrainingMethod:
        super().train(mode)
        if self._teacher is not None:
            self._teacher.eval()
        return self

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> TrainingMethod:  # type: ignore[override]
        """Moves/casts the teacher together with the registered networks (``.to()``, ``.cuda()``)."""
        super()._apply(fn, recurse)
        if self._teacher is not None:
            self._teacher._apply(fn, recurse)
        return self

    # ------------------------------------------------------------------ helpers
    def anchors_for(self, outputs: HeadOutputs, batch: Batch) -> tuple[AnchorGrid, Tensor]:
        """Anchor grid matching ``outputs`` and the [B, N] bool valid mask of ``batch``."""
        device = batch.images.device
        grid = self.detector.anchor_grid(outputs.level_sizes, device)
        valid_mask = self.detector.anchor_generator.valid_mask(grid, batch.padded_sizes.to(device))
        return grid, valid_mask

    def teacher_outputs(self, images: Tensor) -> HeadOutputs:
        """Teacher forward: eval mode, no grad; outputs returned in fp32 (before any cost).

        The teacher opens no autocast region of its own: it runs in the caller's, i.e. under the
        ``train.amp`` policy when the engine runs the method (``engine/precision.py``) and in fp32
        otherwise.
        """
        teacher = self._teacher
        if teacher is None:
            raise RuntimeError(f"{type(self).__name__} has no teacher")
        teacher.eval()
        with torch.no_grad():
            outputs = teacher(images)
        return outputs.float()

    def self_assignment(
        self, outputs: HeadOutputs, grid: AnchorGrid, valid_mask: Tensor, batch: Batch
    ) -> AssignResult:
        """PAA assignment from the network's own detached fp32 outputs (§1.5)."""
        return self.assigner.assign(
            outputs.detach().float(), grid, valid_mask, batch.gt_boxes, batch.gt_labels
        )

    # ------------------------------------------------------------------ interface
    def forward(self, batch: Batch) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def training_assignment(
        self, outputs: HeadOutputs, grid: AnchorGrid, valid_mask: Tensor, batch: Batch
    ) -> AssignResult:
        """The assignment the method trains ``detector`` with (default: self-assignment)."""
        return self.self_assignment(outputs, grid, valid_mask, batch)

    @torch.no_grad()
    def label_assignments(self, batch: Batch) -> LabelAssignments:
        """The assignment the method trains with and the detector's own, without grad (for pictures)."""
        outputs = self.detector(batch.images).float()
        grid, valid_mask = self.anchors_for(outputs, batch)
        return LabelAssignments(
            training_assignment=self.training_assignment(outputs, grid, valid_mask, batch),
            student_assignment=self.self_assignment(outputs, grid, valid_mask, batch),
            anchor_grid=grid,
            valid_mask=valid_mask,
        )
