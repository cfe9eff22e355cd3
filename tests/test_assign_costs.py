"""PAA anchor cost (docs/algorithms.md §1.5 B): hand-computed value, the one-hot focal sum vs the
element-wise focal loss, and the whole cost vs the reference formula."""

from __future__ import annotations

import math

import pytest
import torch

from ladet.assign.costs import anchor_costs
from ladet.assign.max_iou import pre_assign
from ladet.boxes import aligned_giou
from ladet.losses.focal import focal_loss, one_hot_focal_loss_sum
from ladet.models.anchors import AnchorGrid
from ladet.models.box_coder import DeltaBoxCoder
from ladet.models.outputs import HeadOutputs


def _one_anchor_setup(class_scores: torch.Tensor, probabilities: bool):
    grid = AnchorGrid(
        anchors=torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
        level_index=torch.zeros(1, dtype=torch.long),
        num_per_level=[1],
        level_sizes=[(1, 1)],
        strides=[8],
    )
    gt_boxes = [torch.tensor([[0.0, 0.0, 10.0, 20.0]])]  # IoU with the anchor 0.5 -> pre-positive
    pre = pre_assign(
        grid.anchors, torch.ones(1, 1, dtype=torch.bool), gt_boxes, [torch.tensor([0])], 0.1, grid.level_index
    )
    outputs = HeadOutputs(
        class_scores=class_scores.reshape(1, 1, -1),
        box_deltas=torch.zeros(1, 1, 4),  # decoded box = the anchor itself
        iou_logits=None,
        level_sizes=[(1, 1)],
        class_scores_are_probabilities=probabilities,
    )
    return outputs, grid, pre


@pytest.mark.parametrize("probabilities", [False, True])
def test_cost_known_answer(probabilities):
    # p = 0.5 for both classes (logit 0 / probability 0.5), GT class 0:
    #   FL(0.5, 1) = 0.25 * 0.5^2 * log 2, FL(0.5, 0) = 0.75 * 0.5^2 * log 2 -> sum = 0.25 * log 2.
    # Box: decoded = anchor [0,0,10,10], GT [0,0,10,20]: IoU 0.5, enclosing = union -> GIoU 0.5,
    #   1.3 * (1 - 0.5) = 0.65.
    scores = torch.full((2,), 0.5) if probabilities else torch.zeros(2)
    outputs, grid, pre = _one_anchor_setup(scores, probabilities)
    cost = anchor_costs(outputs, grid, DeltaBoxCoder(), pre, 0.25, 2.0, 1.3)
    assert pre.anchor_index.shape[0] == 1
    torch.testing.assert_close(cost, torch.tensor([0.25 * math.log(2.0) + 0.65]))


@pytest.mark.parametrize("probabilities", [False, True])
def test_one_hot_focal_sum_matches_elementwise_focal_loss(probabilities):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 80, generator=generator) * 4.0 - 3.0
    logits[0, :6] = torch.tensor([-60.0, 60.0, 0.0, 29.9, 35.0, 120.0])  # extremes, around the exp clamp
    scores = torch.sigmoid(logits) if probabilities else logits
    if probabilities:
        scores[1, :3] = torch.tensor([0.0, 1.0, 1.0 - 1e-7])
    labels = torch.randint(0, 80, (300,), generator=generator)
    labels[0] = 1
    targets = torch.nn.functional.one_hot(labels, 80).float()
    expected = focal_loss(scores, targets, probabilities, 0.25, 2.0).sum(dim=1)
    fused = one_hot_focal_loss_sum(scores, labels, probabilities, 0.25, 2.0)
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)
    # other alpha / gamma values, alpha disabled
    for alpha, gamma in ((0.4, 1.5), (-1.0, 2.0)):
        expected = focal_loss(scores, targets, probabilities, alpha, gamma).sum(dim=1)
        torch.testing.assert_close(
            one_hot_focal_loss_sum(scores, labels, probabilities, alpha, gamma),
            expected,
            rtol=1e-5,
            atol=1e-5,
        )


def _random_outputs(seed: int, probabilities: bool, scale: float, offset: float):
    from ladet.models.anchors import AnchorGenerator

    generator = torch.Generator().manual_seed(seed)
    strides = [8, 16, 32, 64, 128]
    level_sizes = [(-(-128 // stride), -(-160 // stride)) for stride in strides]
    anchor_generator = AnchorGenerator(strides, 8.0)
    grid = anchor_generator.grid(level_sizes, "cpu")
    valid = anchor_generator.valid_mask(grid, torch.tensor([[128, 160], [96, 128]]))
    boxes, labels = [], []
    for count in (5, 3):
        sizes = torch.exp(torch.empty(count, 2).uniform_(2.5, 5.0, generator=generator))
        centres = torch.rand(count, 2, generator=generator) * torch.tensor([160.0, 128.0])
        boxes.append(torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1))
        labels.append(torch.randint(0, 7, (count,), generator=generator))
    scores = torch.randn(2, grid.num_anchors, 7, generator=generator) * scale + offset
    scores[:, ::3] = scores[:, 1::3][:, : scores[:, ::3].shape[1]]  # duplicated rows -> equal costs
    outputs = HeadOutputs(
        class_scores=torch.sigmoid(scores) if probabilities else scores,
        box_deltas=torch.randn(2, grid.num_anchors, 4, generator=generator) * 0.3,
        iou_logits=None,
        level_sizes=level_sizes,
        class_scores_are_probabilities=probabilities,
    )
    return outputs, grid, valid, boxes, labels


@pytest.mark.parametrize(
    "probabilities, scale, offset", [(False, 1.0, -4.0), (False, 3.0, 0.0), (True, 2.0, -2.0)]
)
def test_costs_match_the_reference_formula(probabilities, scale, offset):
    # focal_loss(scores, one_hot(label)).sum() + 1.3 * (1 - GIoU(decode(anchor, delta), GT)): the box
    # term bit for bit (the same calls), the focal sum to float rounding.
    from tests.support.reference_paa import reference_costs

    outputs, grid, valid, boxes, labels = _random_outputs(7, probabilities, scale, offset)
    pre = pre_assign(grid.anchors, valid, boxes, labels, 0.1, grid.level_index)
    costs = anchor_costs(outputs, grid, DeltaBoxCoder(), pre)
    assert costs.dtype == torch.float32 and pre.anchor_index.shape[0] > 50
    torch.testing.assert_close(costs, reference_costs(outputs, grid.anchors, DeltaBoxCoder(), pre))
    zero_scores = HeadOutputs(
        class_scores=torch.full_like(outputs.class_scores, -1e4)
        if not probabilities
        else torch.zeros_like(outputs.class_scores),
        box_deltas=outputs.box_deltas,
        iou_logits=None,
        level_sizes=outputs.level_sizes,
        class_scores_are_probabilities=probabilities,
    )
    box_only = anchor_costs(zero_scores, grid, DeltaBoxCoder(), pre)  # focal terms vanish but the label's
    decoded = DeltaBoxCoder().decode(
        grid.anchors[pre.anchor_index], outputs.box_deltas[pre.image_index, pre.anchor_index]
    )
    box_term = 1.3 * (1.0 - aligned_giou(decoded, pre.box_targets))
    label_term = focal_loss(
        zero_scores.class_scores[pre.image_index, pre.anchor_index, pre.labels][:, None],
        torch.ones(pre.anchor_index.shape[0], 1),
        probabilities,
    )[:, 0]
    assert torch.equal(box_only, label_term + box_term)


def test_costs_with_half_precision_outputs_and_double_anchors():
    # The cost reads fp16 scores / deltas and fp64 anchors in fp32, like ``.float()`` does.
    from ladet.models.anchors import AnchorGrid

    outputs, grid, valid, boxes, labels = _random_outputs(4, False, 1.0, 0.0)
    pre = pre_assign(grid.anchors, valid, boxes, labels, 0.1, grid.level_index)
    half = HeadOutputs(
        class_scores=outputs.class_scores.half(),
        box_deltas=outputs.box_deltas.half(),
        iou_logits=None,
        level_sizes=outputs.level_sizes,
    )
    double_grid = AnchorGrid(
        anchors=grid.anchors.double(),
        level_index=grid.level_index,
        num_per_level=grid.num_per_level,
        level_sizes=grid.level_sizes,
        strides=grid.strides,
    )
    as_float = HeadOutputs(half.class_scores.float(), half.box_deltas.float(), None, half.level_sizes)
    costs = anchor_costs(half, double_grid, DeltaBoxCoder(), pre)
    assert costs.dtype == torch.float32 and pre.anchor_index.shape[0] > 20
    assert torch.equal(costs, anchor_costs(as_float, grid, DeltaBoxCoder(), pre))
