"""CoLAD: two networks trained together on ONE shared, dynamically switched assignment (docs/algorithms.md §5)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ladet.assign.colad import CoLADChoice, choose_costs_std_mean
from ladet.assign.max_iou import PreAssignment
from ladet.assign.result import AssignResult
from ladet.config.schema import CoLADCriterion, EvaluateNetwork, choices
from ladet.methods.base import LabelAssignments, TrainingMethod, build_detection_loss
from ladet.methods.teacher import check_anchor_layout
from ladet.models.anchors import AnchorGrid
from ladet.models.detector import PAADetector
from ladet.models.outputs import HeadOutputs
from ladet.structures import Batch

__all__ = ["CoLADMethod", "SharedAssignment", "SECOND_NETWORK_SUFFIX", "network_attribute"]

SECOND_NETWORK_SUFFIX = "_second"
# The implementation of each ``CoLADCriterion`` of the schema.
CRITERIA: dict[CoLADCriterion, Callable[[Tensor, Tensor, PreAssignment], CoLADChoice]] = {
    "std_mean": choose_costs_std_mean
}


def network_attribute(network: EvaluateNetwork) -> str:
    """The module attribute (and checkpoint prefix) of a CoLAD network: "detector" or "second_detector"."""
    if network not in choices(EvaluateNetwork):
        raise ValueError(
            f"method.colad.evaluate_network = {network!r}; expected one of {list(choices(EvaluateNetwork))}"
        )
    return "second_detector" if network == "second" else "detector"


@dataclass
class SharedAssignment:
    """The shared assignment of one iteration and how it was made.

    Attributes:
        result: the AssignResult both networks are trained with.
        pre_assignment: the IoU pre-assignment (P pre-positives).
        choice: the per-(GT, level) switching (``uses_second`` [P], statistics).
    """

    result: AssignResult
    pre_assignment: PreAssignment
    choice: CoLADChoice


class CoLADMethod(TrainingMethod):
    """Co-learning LAD with the Std/Mean criterion.

    Both networks forward with grad on the same batch. Costs of every pre-positive are computed
    from each network's detached fp32 outputs; per (image, GT, level) the cost vector with the
    larger coefficient of variation (n ≥ 2) or the lower mean (n = 1) is chosen; the chosen costs
    go through the unchanged PAA selection. Both networks then get the LAD loss (plain-mean box
    loss) on that shared assignment; network 2's keys carry the suffix ``_second``
    (``loss_cls_second``...). ``s_mean``, ``t_mean``, ``s_std``, ``t_std``, ``t_ratio`` are returned
    detached as diagnostics (not ``loss_`` keys, so never summed).

    Args:
        detector: network 1 (the "student" slot of the reference code).
        second_detector: network 2 (the "teacher" slot; evaluated in the released config).
        evaluate_network: "first" or "second".
        criterion: the switching rule ("std_mean").
    """

    def __init__(
        self,
        detector: PAADetector,
        second_detector: PAADetector,
        evaluate_network: EvaluateNetwork = "second",
        criterion: CoLADCriterion = "std_mean",
    ) -> None:
        super().__init__(detector)
        network_attribute(evaluate_network)  # checks the name
        if criterion not in CRITERIA:
            raise ValueError(
                f"method.colad.criterion = {criterion!r}; expected one of {list(choices(CoLADCriterion))}"
            )
        check_anchor_layout(detector.config, second_detector.config, "the CoLAD second network")
        self.second_detector = second_detector
        self.train(True)  # re-apply norm_eval to the newly registered network (see TrainingMethod)
        self.evaluate_network = evaluate_network
        self.choose_costs = CRITERIA[criterion]
        self.loss = build_detection_loss(detector, box_loss_weighting="mean")
        self.second_loss = build_detection_loss(second_detector, box_loss_weighting="mean")

    def evaluation_detector(self) -> PAADetector:
        return self.second_detector if self.evaluate_network == "second" else self.detector

    def shared_assignment(
        self,
        outputs_first: HeadOutputs,
        outputs_second: HeadOutputs,
        grid: AnchorGrid,
        valid_mask: Tensor,
        batch: Batch,
    ) -> SharedAssignment:
        """One pre-assignment, two cost vectors, per-(GT, level) switch, one PAA selection."""
        with torch.no_grad():
            first = outputs_first.detach().float()
            second = outputs_second.detach().float()
            pre = self.assigner.pre_assign(grid, valid_mask, batch.gt_boxes, batch.gt_labels)
            choice = self.choose_costs(
                self.assigner.costs(first, grid, pre), self.assigner.costs(second, grid, pre), pre
            )
            positive = self.assigner.select_positives(choice.costs, pre)
            result = self.assigner.build_result(pre, positive, valid_mask)
        return SharedAssignment(result=result, pre_assignment=pre, choice=choice)

    def training_assignment(
        self, outputs: HeadOutputs, grid: AnchorGrid, valid_mask: Tensor, batch: Batch
    ) -> AssignResult:
        outputs_second = self.second_detector(batch.images)
        return self.shared_assignment(outputs, outputs_second, grid, valid_mask, batch).result

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        outputs_first = self.detector(batch.images)
        outputs_second = self.second_detector(batch.images)
        if outputs_first.class_scores.shape != outputs_second.class_scores.shape:
            raise ValueError(
                f"CoLAD networks disagree on outputs: {tuple(outputs_first.class_scores.shape)} vs "
                f"{tuple(outputs_second.class_scores.shape)} (num_classes and anchor layout must match)"
            )
        grid, valid_mask = self.anchors_for(outputs_first, batch)
        shared = self.shared_assignment(outputs_first, outputs_second, grid, valid_mask, batch)
        losses = self.loss(outputs_first.float(), grid, shared.result, batch.batch_size)
        second_losses = self.second_loss(outputs_second.float(), grid, shared.result, batch.batch_size)
        losses.update({key + SECOND_NETWORK_SUFFIX: value for key, value in second_losses.items()})
        losses.update({key: value.detach() for key, value in shared.choice.statistics.items()})
        return losses

    @torch.no_grad()
    def label_assignments(self, batch: Batch) -> LabelAssignments:
        """The shared assignment, network 1's self-assignment, and how the costs were switched."""
        outputs_first = self.detector(batch.images).float()
        outputs_second = self.second_detector(batch.images).float()
        grid, valid_mask = self.anchors_for(outputs_first, batch)
        shared = self.shared_assignment(outputs_first, outputs_second, grid, valid_mask, batch)
        return LabelAssignments(
            training_assignment=shared.result,
            student_assignment=self.self_assignment(outputs_first, grid, valid_mask, batch),
            anchor_grid=grid,
            valid_mask=valid_mask,
            pre_assignment=shared.pre_assignment,
            uses_second=shared.choice.uses_second,
            statistics=shared.choice.statistics,
        )
