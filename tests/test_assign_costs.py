"""PAA anchor cost (docs/algorithms.md §1.5 B): hand-computed value and the fused focal sum vs the
element-wise focal loss."""

from __future__ import annotations

import math

import pytest
import torch

from ladet.assign.costs import anchor_costs, summed_focal_cost
from ladet.assign.max_iou import pre_assign
from ladet.losses.focal import focal_loss
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
    assert pre.num_pre_positives == 1
    torch.testing.assert_close(cost, torch.tensor([0.25 * math.log(2.0) + 0.65]))


@pytest.mark.parametrize("probabilities", [False, True])
def test_fused_focal_sum_matches_elementwise_focal_loss(probabilities):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 80, generator=generator) * 4.0 - 3.0
    logits[0, :5] = torch.tensor([-60.0, 60.0, 0.0, 29.9, 35.0])  # extremes, around the exp clamp
    scores = torch.sigmoid(logits) if probabilities else logits
    if probabilities:
        scores[1, :3] = torch.tensor([0.0, 1.0, 1.0 - 1e-7])
    labels = torch.randint(0, 80, (300,), generator=generator)
    labels[0] = 1
    targets = torch.nn.functional.one_hot(labels, 80).float()
    expected = focal_loss(scores, targets, probabilities, 0.25, 2.0).sum(dim=1)
    fused = summed_focal_cost(scores, labels, probabilities, 0.25, 2.0)
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)
    # other alpha / gamma values
    expected = focal_loss(scores, targets, probabilities, 0.4, 1.5).sum(dim=1)
    torch.testing.assert_close(
        summed_focal_cost(scores, labels, probabilities, 0.4, 1.5), expected, rtol=1e-5, atol=1e-5
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
    "probabilities, scale, offset, inject_nan",
    [(False, 1.0, -4.0, False), (False, 3.0, 0.0, False), (True, 2.0, -2.0, False), (False, 1.0, -4.0, True)],
)
def test_candidate_costs_give_the_same_selection_as_all_costs(probabilities, scale, offset, inject_nan):
    from ladet.assign.costs import candidate_costs
    from ladet.assign.paa import PAAAssigner, select_positives
    from ladet.config.schema import AssignerConfig

    outputs, grid, valid, boxes, labels = _random_outputs(7, probabilities, scale, offset)
    assigner = PAAAssigner(AssignerConfig(), num_classes=7, box_coder=DeltaBoxCoder())
    pre = assigner.pre_assign(grid, valid, boxes, labels)
    if inject_nan:  # a NaN logit in some other class of a few pre-positives
        outputs.class_scores[pre.image_index[::7], pre.anchor_index[::7], 3] = float("nan")
    full = anchor_costs(outputs, grid, DeltaBoxCoder(), pre)
    pruned = candidate_costs(outputs, grid, DeltaBoxCoder(), pre, topk=9)
    computed = torch.isfinite(pruned)
    if offset < -3.0:  # confident background logits (a trained head): most rows are pruned
        assert computed.sum() < 0.7 * pre.num_pre_positives
    assert torch.equal(pruned[computed], full[computed])  # bit-identical where computed
    positive = select_positives(full, pre)
    assert positive.any()
    assert torch.equal(select_positives(pruned, pre), positive)
    result = assigner.assign(outputs, grid, valid, boxes, labels)
    assert torch.equal(result.positive_mask[pre.image_index, pre.anchor_index], positive)


@pytest.mark.parametrize("probabilities", [False, True])
@pytest.mark.parametrize("target", [1.0, 0.0])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.4, 1.5), (-1.0, 2.0)])
def test_fast_label_focal_term_is_bit_identical_to_focal_loss(probabilities, target, alpha, gamma):
    from ladet.assign.costs import label_focal_term
    from ladet.losses.focal import focal_loss

    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(5000, generator=generator) * 6.0 - 2.0
    logits[:8] = torch.tensor([-120.0, 120.0, 0.0, -0.0, 29.9, 35.0, float("inf"), -float("inf")])
    logits[8] = float("nan")
    scores = torch.sigmoid(logits) if probabilities else logits
    if probabilities:  # (binary_cross_entropy rejects NaN probabilities, both sides alike)
        scores[8:13] = torch.tensor([0.5, 0.0, 1.0, 1.0 - 1e-7, 1e-30])
    column = scores[:, None]
    expected = focal_loss(column, torch.full_like(column, target), probabilities, alpha, gamma)[:, 0]
    fast = label_focal_term(scores, target, probabilities, alpha, gamma)
    assert torch.equal(fast.isnan(), expected.isnan())
    assert torch.equal(fast.nan_to_num(), expected.nan_to_num())


@pytest.mark.parametrize("target", [1.0, 0.0])
def test_label_focal_term_cross_entropy_matches_the_library_bit_for_bit(target):
    # label_focal_term writes BCE-with-logits for a constant 0/1 target as (1 - t) * z - log_sigmoid(z):
    # equal to the library call on logits of every magnitude, signed zeros, +-inf and NaN, and
    # of the same sign (a -0.0 that the library gives must stay -0.0).
    from ladet.assign.costs import label_focal_term

    generator = torch.Generator().manual_seed(2)
    logits = torch.cat(
        [torch.randn(20000, generator=generator) * scale for scale in (1e-40, 1e-8, 1.0, 10.0, 100.0, 1e30)]
        + [torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 88.7, -88.7, 1e38, -1e38])]
    )
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.full_like(logits, target), reduction="none"
    )
    probability = torch.sigmoid(logits)
    complement = 1 - probability if target == 1.0 else 1 - (1 - probability)
    # alpha < 0 and gamma = 0: the term is the cross-entropy times complement**0 = 1 (exact)
    fast = label_focal_term(logits, target, False, alpha=-1.0, gamma=0.0)
    numbers = ~expected.isnan()
    assert torch.equal(fast.isnan(), expected.isnan())
    assert torch.equal(fast[numbers], (expected * complement**0.0)[numbers])
    assert torch.equal(torch.signbit(fast[numbers]), torch.signbit(expected[numbers]))


def test_coordinate_major_box_term_is_bit_identical_to_decode_and_giou():
    from ladet.assign.costs import _box_term
    from ladet.boxes import aligned_giou

    outputs, grid, valid, boxes, labels = _random_outputs(3, False, 1.0, 0.0)
    generator = torch.Generator().manual_seed(5)
    # extreme deltas (clamped exponent), degenerate and far-away GT boxes, inf / NaN deltas
    outputs.box_deltas.mul_(torch.rand(outputs.box_deltas.shape, generator=generator) * 30.0)
    boxes[0][0] = torch.tensor([20.0, 20.0, 20.001, 20.001])  # tiny GT: union near eps
    pre = pre_assign(grid.anchors, valid, boxes, labels, 0.1, grid.level_index)
    num_anchors = outputs.box_deltas.shape[1]
    flat = pre.image_index * num_anchors + pre.anchor_index
    outputs.box_deltas.reshape(-1, 4)[flat[:3]] = torch.tensor(
        [[float("inf"), 0.0, 0.0, 0.0], [0.0, float("nan"), 0.0, 0.0], [0.0, 0.0, -float("inf"), 1e30]]
    )
    coder = DeltaBoxCoder()
    deltas = outputs.box_deltas.reshape(-1, 4)[flat]
    decoded = coder.decode(grid.anchors[pre.anchor_index], deltas)
    expected = 1.3 * (1.0 - aligned_giou(decoded, pre.box_targets))
    fast = _box_term(outputs, grid, coder, pre, flat, 1.3)
    assert pre.num_pre_positives > 50
    assert torch.equal(fast.isnan(), expected.isnan())
    assert torch.equal(fast.nan_to_num(), expected.nan_to_num())
    numbers = ~expected.isnan()  # (the sign bit of a NaN may differ; it carries no value)
    assert torch.equal(torch.signbit(fast[numbers]), torch.signbit(expected[numbers]))

    class OtherCoder(DeltaBoxCoder):  # a coder with its own decode goes through that decode
        def decode(self, anchors, deltas, max_shape=None):
            return super().decode(anchors, deltas * 0.5, max_shape)

    # stds that are not pairwise equal (x != y, w != h) take the per-coordinate product
    uneven = DeltaBoxCoder(stds=(0.1, 0.3, 0.2, 0.7))
    decoded = uneven.decode(grid.anchors[pre.anchor_index], deltas)
    expected = 1.3 * (1.0 - aligned_giou(decoded, pre.box_targets))
    fast = _box_term(outputs, grid, uneven, pre, flat, 1.3)
    assert torch.equal(fast.isnan(), expected.isnan())
    assert torch.equal(fast.nan_to_num(), expected.nan_to_num())

    other = OtherCoder()
    expected = 1.3 * (
        1.0 - aligned_giou(other.decode(grid.anchors[pre.anchor_index], deltas), pre.box_targets)
    )
    torch.testing.assert_close(_box_term(outputs, grid, other, pre, flat, 1.3), expected, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_scalar_tensor_arithmetic_equals_python_number_arithmetic(dtype):
    # The cached 0-dim tensors that replace Python numbers in the cost arithmetic: same results,
    # one cached normal tensor per (value, dtype), even when first asked for in inference mode.
    from ladet.assign.segments import scalar_tensor

    generator = torch.Generator().manual_seed(6)
    values = (torch.randn(1000, generator=generator) * 50.0).to(dtype)
    values[:4] = torch.tensor([0.0, -0.0, float("inf"), float("nan")], dtype=dtype)
    with torch.inference_mode():
        scalar = scalar_tensor(0.1, dtype)
    if dtype == torch.float16:  # reduced precision computes with the number in float32: kept as is
        assert scalar == 0.1 and isinstance(scalar, float)
    else:
        assert not scalar.is_inference() and scalar.dtype == dtype and scalar.dim() == 0
        assert scalar_tensor(0.1, dtype) is scalar
    for number in (0.1, 1.3, 1e-5, 30.0, 1.0, 0.0):
        constant = scalar_tensor(number, dtype)
        for fast, slow in [
            (values * constant, values * number),
            (values + constant, values + number),
            (values - constant, values - number),
            (constant - values, number - values),
        ]:
            assert fast.dtype == slow.dtype == dtype
            assert torch.equal(fast.isnan(), slow.isnan())
            assert torch.equal(fast.nan_to_num(), slow.nan_to_num())


def test_background_focal_sum_reusing_its_input_gives_the_same_values():
    from ladet.assign.costs import _background_focal_sum, background_focal_sum

    generator = torch.Generator().manual_seed(11)
    logits = torch.randn(200, 80, generator=generator) * 8.0 - 3.0
    logits[0, :6] = torch.tensor([-120.0, 120.0, 29.9, 30.0, 35.0, -0.0])
    logits[1, :3] = torch.tensor([float("inf"), -float("inf"), float("nan")])
    expected = background_focal_sum(logits, False)
    overwritten = logits.clone()
    fast = _background_focal_sum(overwritten, False, 0.25, 2.0, reuse_input=True)
    assert torch.equal(fast.isnan(), expected.isnan())
    assert torch.equal(fast.nan_to_num(), expected.nan_to_num())
    assert not torch.equal(overwritten.nan_to_num(), logits.nan_to_num())  # the input was the workspace


@pytest.mark.parametrize("probabilities", [False, True])
@pytest.mark.parametrize("target", [1.0, 0.0])
def test_label_focal_term_leaves_its_input_untouched(probabilities, target):
    # (its in-place products work on its own intermediates only)
    from ladet.assign.costs import label_focal_term

    generator = torch.Generator().manual_seed(12)
    scores = torch.randn(500, generator=generator) * 4.0
    if probabilities:
        scores = torch.sigmoid(scores)
    before = scores.clone()
    label_focal_term(scores, target, probabilities)
    assert torch.equal(scores, before)


def test_box_term_with_half_precision_deltas_and_double_anchors():
    # The gathers into the fp32 corner buffer cast like ``.float()`` does.
    from ladet.assign.costs import _box_term
    from ladet.boxes import aligned_giou
    from ladet.models.anchors import AnchorGrid

    outputs, grid, valid, boxes, labels = _random_outputs(4, False, 1.0, 0.0)
    pre = pre_assign(grid.anchors, valid, boxes, labels, 0.1, grid.level_index)
    num_anchors = outputs.box_deltas.shape[1]
    flat = pre.image_index * num_anchors + pre.anchor_index
    half = HeadOutputs(
        class_scores=outputs.class_scores,
        box_deltas=outputs.box_deltas.half(),
        iou_logits=None,
        level_sizes=outputs.level_sizes,
        class_scores_are_probabilities=False,
    )
    double_grid = AnchorGrid(
        anchors=grid.anchors.double(),
        level_index=grid.level_index,
        num_per_level=grid.num_per_level,
        level_sizes=grid.level_sizes,
        strides=grid.strides,
    )
    deltas = half.box_deltas.reshape(-1, 4)[flat].float()
    anchors = double_grid.anchors[pre.anchor_index].float()
    expected = 1.3 * (1.0 - aligned_giou(DeltaBoxCoder().decode(anchors, deltas), pre.box_targets))
    fast = _box_term(half, double_grid, DeltaBoxCoder(), pre, flat, 1.3)
    assert fast.dtype == torch.float32 and pre.num_pre_positives > 20
    assert torch.equal(fast, expected)
