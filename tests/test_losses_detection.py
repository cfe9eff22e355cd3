"""DetectionLoss (docs/algorithms.md §1.6 / §2.1) on hand-built assignments with known answers."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from ladet.assign.result import AssignResult
from ladet.config.schema import LossConfig
from ladet.losses.detection import DetectionLoss
from ladet.models.box_coder import DeltaBoxCoder
from ladet.models.outputs import HeadOutputs

LOG2 = math.log(2.0)


def _case(
    iou_logit: float = 1.0, positives: bool = True
) -> tuple[HeadOutputs, SimpleNamespace, AssignResult]:
    """One image, C = 1, four anchors: two positives, one negative, one invalid (padding).

    Anchor 0 = [0,0,10,10] with GT [0,0,10,20] (IoU = GIoU = 0.5); anchor 1 = [0,0,10,10] with GT
    [0,0,10,10] (IoU = GIoU = 1). All deltas 0, all class logits 0 (p = 0.5).
    """
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    class_scores = torch.zeros(1, 4, 1, requires_grad=True)
    box_deltas = torch.zeros(1, 4, 4, requires_grad=True)
    iou_logits = torch.full((1, 4), iou_logit, requires_grad=True)
    outputs = HeadOutputs(class_scores, box_deltas, iou_logits, [(2, 2)])
    positive = torch.tensor([[True, True, False, False]]) & positives
    labels = torch.where(positive, 0, 1)
    box_targets = torch.zeros(1, 4, 4)
    box_targets[0, 0] = torch.tensor([0.0, 0, 10, 20])
    box_targets[0, 1] = torch.tensor([0.0, 0, 10, 10])
    assignment = AssignResult(
        labels=labels,
        label_weights=torch.tensor([[1.0, 1.0, 1.0, 0.0]]),
        box_targets=box_targets * positive.unsqueeze(-1),
        positive_mask=positive,
        positive_gt_index=torch.where(positive, torch.tensor([[0, 1, 0, 0]]), -1),
        num_positives=positive.sum().float(),
        pre_positive_mask=positive.clone(),
    )
    return outputs, SimpleNamespace(anchors=anchors), assignment


def test_known_values_iou_weighting() -> None:
    outputs, grid, assignment = _case()
    losses = DetectionLoss(LossConfig(), DeltaBoxCoder(), True)(outputs, grid, assignment, batch_size=1)
    positive_focal = 0.25 * 0.25 * LOG2  # alpha * (1 - 0.5)^2 * log 2
    negative_focal = 0.75 * 0.25 * LOG2
    # 2 positives + 1 negative (the padded anchor has weight 0) / max(2, 1)
    assert losses["loss_cls"].item() == pytest.approx((2 * positive_focal + negative_focal) / 2, rel=1e-5)
    # 1.3 * (0.5 * (1 - 0.5) + 1 * (1 - 1)) / (0.5 + 1)
    assert losses["loss_bbox"].item() == pytest.approx(1.3 * 0.25 / 1.5, rel=1e-5)
    # BCE(logit 1, u) = softplus(1) - u; 0.5 * ((sp - 0.5) + (sp - 1)) / 2
    softplus_one = math.log1p(math.e)
    assert losses["loss_iou"].item() == pytest.approx(0.5 * (2 * softplus_one - 1.5) / 2, rel=1e-5)


def test_known_values_mean_weighting_and_weights() -> None:
    outputs, grid, assignment = _case()
    config = replace(LossConfig(), box_loss_weighting="mean", cls_weight=2.0)
    losses = DetectionLoss(config, DeltaBoxCoder(), True)(outputs, grid, assignment, batch_size=1)
    assert losses["loss_bbox"].item() == pytest.approx(1.3 * (0.5 + 0.0) / 2, rel=1e-5)
    assert losses["loss_cls"].item() == pytest.approx(2.0 * (2 * 0.0625 + 0.1875) * LOG2 / 2, rel=1e-5)


def test_one_anchor_decoded_with_deltas() -> None:
    # anchor [0,0,10,10], dx = 1 -> decoded [1,0,11,10]; GT [0,0,10,10]: IoU = 90/110, GIoU = IoU (enclosing = union)
    anchors = torch.tensor([[0.0, 0, 10, 10]])
    deltas = torch.tensor([[[1.0, 0, 0, 0]]], requires_grad=True)
    outputs = HeadOutputs(torch.zeros(1, 1, 2, requires_grad=True), deltas, None, [(1, 1)])
    assignment = AssignResult(
        labels=torch.tensor([[1]]),
        label_weights=torch.ones(1, 1),
        box_targets=torch.tensor([[[0.0, 0, 10, 10]]]),
        positive_mask=torch.tensor([[True]]),
        positive_gt_index=torch.tensor([[0]]),
        num_positives=torch.tensor(1.0),
        pre_positive_mask=torch.tensor([[True]]),
    )
    losses = DetectionLoss(LossConfig(), DeltaBoxCoder(), True)(
        outputs, SimpleNamespace(anchors=anchors), assignment, 4
    )
    assert set(losses) == {"loss_cls", "loss_bbox"}  # no IoU branch in the outputs
    assert losses["loss_bbox"].item() == pytest.approx(1.3 * (1 - 90 / 110), rel=1e-5)
    # class 1 positive, class 0 negative, normalised by max(1, B=4)
    assert losses["loss_cls"].item() == pytest.approx((0.0625 + 0.1875) * LOG2 / 4, rel=1e-5)
    losses["loss_bbox"].backward()
    assert deltas.grad[0, 0, 0].item() > 0  # moving right increases the loss


def test_no_positive_gives_zero_box_loss_that_backpropagates() -> None:
    outputs, grid, assignment = _case(positives=False)
    losses = DetectionLoss(LossConfig(), DeltaBoxCoder(), True)(outputs, grid, assignment, batch_size=2)
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_iou"].item() == 0.0
    assert losses["loss_bbox"].requires_grad and losses["loss_iou"].requires_grad
    # 3 valid negatives / max(0, B = 2)
    assert losses["loss_cls"].item() == pytest.approx(3 * 0.1875 * LOG2 / 2, rel=1e-5)
    sum(losses.values()).backward()
    assert torch.all(outputs.box_deltas.grad == 0) and torch.all(outputs.iou_logits.grad == 0)
    assert torch.isfinite(outputs.class_scores.grad).all()


def test_probability_scores_use_probability_focal() -> None:
    outputs, grid, assignment = _case()
    probability_outputs = HeadOutputs(
        torch.full((1, 4, 1), 0.5, requires_grad=True), outputs.box_deltas, outputs.iou_logits, [(2, 2)], True
    )
    losses = DetectionLoss(LossConfig(), DeltaBoxCoder(), True)(probability_outputs, grid, assignment, 1)
    assert losses["loss_cls"].dtype == torch.float32
    assert losses["loss_cls"].item() == pytest.approx((2 * 0.0625 + 0.1875) * LOG2 / 2, rel=1e-5)


def test_bad_weighting_and_layout_are_refused() -> None:
    with pytest.raises(ValueError, match="box_loss_weighting"):
        DetectionLoss(replace(LossConfig(), box_loss_weighting="sum"), DeltaBoxCoder(), True)
    outputs, grid, assignment = _case()
    assignment.labels = assignment.labels[:, :3]
    with pytest.raises(ValueError, match="anchor layouts"):
        DetectionLoss(LossConfig(), DeltaBoxCoder(), True)(outputs, grid, assignment, 1)
