"""LAD invariants: a teacher that is an exact copy of the student reproduces self-assignment."""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from methods_support import tiny_batch, tiny_detector

from ladet.assign.result import AssignResult
from ladet.config.schema import KnowledgeDistillationConfig
from ladet.methods.baseline import BaselineMethod
from ladet.methods.lad import LADMethod
from ladet.methods.solad import SoLADMethod


def _assert_same_assignment(first: AssignResult, second: AssignResult) -> None:
    assert torch.equal(first.positive_mask, second.positive_mask)
    assert torch.equal(first.labels, second.labels)
    assert torch.equal(first.box_targets, second.box_targets)
    assert torch.equal(first.positive_gt_index, second.positive_gt_index)


def test_lad_with_identical_teacher_equals_self_assignment_and_baseline_mean_loss() -> None:
    student = tiny_detector(seed=3)
    student.config.loss.box_loss_weighting = "mean"
    teacher = copy.deepcopy(student)
    lad = LADMethod(student, teacher)
    baseline = BaselineMethod(copy.deepcopy(student))
    batch = tiny_batch()

    pictures = lad.label_assignments(batch)
    assert pictures.training_assignment.num_positives.item() > 0
    _assert_same_assignment(pictures.training_assignment, pictures.student_assignment)

    lad_losses = lad(batch)
    baseline_losses = baseline(batch)
    assert set(lad_losses) == set(baseline_losses) == {"loss_cls", "loss_bbox", "loss_iou"}
    for key in lad_losses:
        torch.testing.assert_close(lad_losses[key], baseline_losses[key], rtol=1e-5, atol=1e-6)


def test_lad_box_loss_is_plain_mean_even_if_config_says_iou() -> None:
    student = tiny_detector(seed=3)
    assert student.config.loss.box_loss_weighting == "iou"
    lad = LADMethod(student, copy.deepcopy(student))
    assert lad.loss.config.box_loss_weighting == "mean"
    assert BaselineMethod(student).loss.config.box_loss_weighting == "iou"


def test_lad_uses_the_teacher_assignment_not_the_student_one() -> None:
    student = tiny_detector(seed=3)
    teacher = tiny_detector(seed=11)
    lad = LADMethod(student, teacher)
    batch = tiny_batch()
    pictures = lad.label_assignments(batch)
    teacher_outputs = lad.teacher_outputs(batch.images)
    grid, valid_mask = lad.anchors_for(teacher_outputs, batch)
    expected = lad.teacher_assigner.assign(teacher_outputs, grid, valid_mask, batch.gt_boxes, batch.gt_labels)
    _assert_same_assignment(pictures.training_assignment, expected)
    # and the loss is the student's loss on exactly those targets
    outputs = student(batch.images)
    expected_losses = lad.loss(outputs.float(), grid, expected, batch.batch_size)
    for key, value in lad(batch).items():
        torch.testing.assert_close(value, expected_losses[key], rtol=1e-5, atol=1e-6)


def test_solad_is_lad_plus_kd() -> None:
    student = tiny_detector(seed=3)
    teacher = tiny_detector(seed=11)
    kd_config = replace(KnowledgeDistillationConfig(), cls_weight=2.0, min_iou=0.5)
    solad = SoLADMethod(student, teacher, kd_config)
    batch = tiny_batch()
    losses = solad(batch)
    lad_losses = LADMethod(student, teacher)(batch)
    assert set(losses) == {"loss_cls", "loss_bbox", "loss_iou", "loss_kd_cls", "loss_kd_iou", "loss_kd_bbox"}
    for key, value in lad_losses.items():
        torch.testing.assert_close(losses[key], value, rtol=1e-5, atol=1e-6)
    student_outputs = student(batch.images).float()
    grid, valid_mask = solad.anchors_for(student_outputs, batch)
    kd = solad.distillation_loss(
        student_outputs,
        solad.teacher_outputs(batch.images),
        grid,
        valid_mask,
        batch.gt_boxes,
        batch.image_sizes,
    )
    for key, value in kd.items():
        torch.testing.assert_close(losses[key], value, rtol=1e-5, atol=1e-6)
