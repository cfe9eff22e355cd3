"""Soft-label distillation loss (docs/algorithms.md §3.1) with known answers and the no-GT case."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from ladet.config.schema import KnowledgeDistillationConfig
from ladet.losses.distillation import SoftLabelDistillationLoss, max_iou_with_ground_truth, pad_ground_truth
from ladet.models.box_coder import DeltaBoxCoder
from ladet.models.outputs import HeadOutputs


def _fkl(p: float, t: float, gamma: float) -> float:
    return (t * math.log(t / p) + (1 - t) * math.log((1 - t) / (1 - p))) * ((t - p) ** 2 + 1e-6) ** (
        gamma / 2
    )


def _setup(gt_boxes: list[torch.Tensor]) -> tuple[HeadOutputs, HeadOutputs, SimpleNamespace, torch.Tensor]:
    """One 64x64 image, C = 1, four anchors (the last one in the padding area)."""
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 20], [40, 40, 50, 50], [70, 70, 80, 80]])
    student_deltas = torch.zeros(1, 4, 4)
    student_deltas[0, 0, 0] = 1.0  # student box 0 = [1,0,11,10]
    student = HeadOutputs(
        torch.zeros(1, 4, 1, requires_grad=True),
        student_deltas.requires_grad_(True),
        torch.zeros(1, 4, requires_grad=True),
        [(2, 2)],
    )
    teacher_logit = math.log(4.0)  # t = 0.8
    teacher = HeadOutputs(
        torch.full((1, 4, 1), teacher_logit),
        torch.zeros(1, 4, 4),
        torch.full((1, 4), teacher_logit),
        [(2, 2)],
    )
    valid = torch.tensor([[True, True, True, False]])
    return student, teacher, SimpleNamespace(anchors=anchors), valid


def test_known_values() -> None:
    gt = [torch.tensor([[0.0, 0, 10, 10]])]
    student, teacher, grid, valid = _setup(gt)
    loss = SoftLabelDistillationLoss(KnowledgeDistillationConfig(), DeltaBoxCoder())
    losses = loss(student, teacher, grid, valid, gt, torch.tensor([[64, 64]]))
    # teacher boxes = anchors; omega = (1.0, 0.5, 0, -) -> Z = 1.5, selected = anchors 0 and 1
    normaliser = 1.5
    per_element = _fkl(0.5, 0.8, 0.5)
    # classification over ALL four anchors (padding included), lambda 10
    assert losses["loss_kd_cls"].item() == pytest.approx(10.0 * 4 * per_element / normaliser, rel=1e-4)
    assert losses["loss_kd_iou"].item() == pytest.approx(10.0 * 2 * per_element / normaliser, rel=1e-4)
    # box: anchor 0 student [1,0,11,10] vs teacher [0,0,10,10]: GIoU = 90/110, weight 1.0
    assert losses["loss_kd_bbox"].item() == pytest.approx(1.3 * 1.0 * (1 - 90 / 110) / normaliser, rel=1e-4)
    sum(losses.values()).backward()
    assert torch.isfinite(student.box_deltas.grad).all()


def test_min_iou_and_anchor_selection() -> None:
    gt = [torch.tensor([[0.0, 0, 10, 10]])]
    student, teacher, grid, valid = _setup(gt)
    config = replace(KnowledgeDistillationConfig(), min_iou=0.5)  # IoU 0.5 is NOT > 0.5
    losses = SoftLabelDistillationLoss(config, DeltaBoxCoder())(
        student, teacher, grid, valid, gt, torch.tensor([[64, 64]])
    )
    per_element = _fkl(0.5, 0.8, 0.5)
    # Z = 1.0 (only anchor 0)
    assert losses["loss_kd_iou"].item() == pytest.approx(10.0 * per_element, rel=1e-4)
    # teacher boxes moved far away, anchors used for selection -> same selection as with teacher == anchors
    teacher.box_deltas[0, :, 0] = 30.0
    config = replace(KnowledgeDistillationConfig(), use_predicted_boxes=False)
    losses = SoftLabelDistillationLoss(config, DeltaBoxCoder())(
        student, teacher, grid, valid, gt, torch.tensor([[64, 64]])
    )
    assert losses["loss_kd_iou"].item() == pytest.approx(10.0 * 2 * per_element / 1.5, rel=1e-4)


def test_no_ground_truth_in_batch_is_finite() -> None:
    gt = [torch.zeros(0, 4)]
    student, teacher, grid, valid = _setup(gt)
    losses = SoftLabelDistillationLoss(KnowledgeDistillationConfig(), DeltaBoxCoder())(
        student, teacher, grid, valid, gt, torch.tensor([[64, 64]])
    )
    assert all(torch.isfinite(value) for value in losses.values())
    assert losses["loss_kd_bbox"].item() == 0.0 and losses["loss_kd_iou"].item() == 0.0
    # Z clamped to 1
    assert losses["loss_kd_cls"].item() == pytest.approx(10.0 * 4 * _fkl(0.5, 0.8, 0.5), rel=1e-4)
    sum(losses.values()).backward()
    assert torch.isfinite(student.class_scores.grad).all()


def test_batched_max_iou_matches_pairwise() -> None:
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(2, 7, 2, generator=generator) * 50
    boxes = torch.cat([corners, corners + 5 + torch.rand(2, 7, 2, generator=generator) * 30], dim=-1)
    gts = [boxes[0, :3] + 2.0, torch.zeros(0, 4)]
    padded, mask = pad_ground_truth(gts, torch.device("cpu"))
    result = max_iou_with_ground_truth(boxes, padded, mask)
    from torchvision.ops import box_iou

    torch.testing.assert_close(result[0], box_iou(boxes[0], gts[0]).max(dim=1).values, rtol=1e-5, atol=1e-6)
    assert torch.all(result[1] == 0)
