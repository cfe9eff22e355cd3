"""IoU pre-assignment (docs/algorithms.md §1.5 A): hand-built anchors with known answers, and the
per-image / per-GT reference loop (torchvision's ``box_iou``) on real anchor grids."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from ladet.assign.max_iou import PreAssignment, pre_assign
from ladet.boxes import batched_box_iou
from ladet.models.anchors import AnchorGenerator
from tests.support.reference_paa import reference_pre_assign

# Every per-pre-positive field of a PreAssignment (compared with the reference's).
PRE_ASSIGNMENT_FIELDS = (
    "gt_index",
    "image_index",
    "anchor_index",
    "gt_local",
    "gt_global",
    "level",
    "labels",
    "box_targets",
)


def _assert_equals_reference(pre: PreAssignment, reference: PreAssignment) -> None:
    for field in PRE_ASSIGNMENT_FIELDS:
        expected, actual = getattr(reference, field), getattr(pre, field)
        assert actual.dtype == expected.dtype and torch.equal(actual, expected), field
    assert pre.num_gts_per_image == reference.num_gts_per_image


def _assign(anchors, gt_boxes, valid=None, threshold=0.1):
    anchors = torch.tensor(anchors, dtype=torch.float32)
    boxes = [torch.tensor(image, dtype=torch.float32).reshape(-1, 4) for image in gt_boxes]
    labels = [torch.arange(len(image)) for image in gt_boxes]
    if valid is None:
        valid = torch.ones(len(boxes), anchors.shape[0], dtype=torch.bool)
    level = torch.zeros(anchors.shape[0], dtype=torch.long)
    return pre_assign(anchors, valid, boxes, labels, threshold, level)


def test_threshold_step_and_low_quality_override_known_answer():
    # a0 = g0 exactly (IoU 1 with g0); a1 overlaps g0 by half (IoU 1/3) -> g0 by threshold;
    # a2 is far from everything -> negative.
    anchors = [[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]]
    result = _assign(anchors, [[[0, 0, 10, 10]]])
    assert result.gt_index.tolist() == [[0, 0, -1]]
    assert result.anchor_index.tolist() == [0, 1]
    assert result.labels.tolist() == [0, 0]
    assert result.box_targets.tolist() == [[0, 0, 10, 10]] * 2


def test_later_gt_overwrites_in_low_quality_pass():
    # g0 [0,0,10,10] vs a0 [0,0,10,20]: overlap 100, union 200 -> 0.5 (g0's best).
    # g1 [0,10,10,60] vs a0: overlap 100, union 200 + 500 - 100 = 600 -> 1/6 (g1's best; a1 is far).
    anchors = [[0, 0, 10, 20], [50, 50, 60, 60]]
    result = _assign(anchors, [[[0, 0, 10, 10], [0, 10, 10, 60]]])
    # Threshold step gives a0 -> g0 (0.5 > 1/6); low-quality: g0 best 0.5 claims a0, g1 best 1/6 claims a0,
    # g1 is later -> a0 -> g1.
    assert result.gt_index.tolist() == [[1, -1]]
    # The same with the GT order swapped: g0 (the 1/6 one) claims first, g1 (0.5) later wins.
    result = _assign(anchors, [[[0, 10, 10, 60], [0, 0, 10, 10]]])
    assert result.gt_index.tolist() == [[1, -1]]


def test_gt_max_assign_all_ties():
    # Two anchors both at g0's best IoU (0.25) -> both claimed although 0.25 is well above threshold
    # anyway; a third anchor at IoU 0.05 < 0.1 is claimed only because it ties g1's best.
    anchors = [[0, 0, 20, 20], [10, 0, 30, 20], [200, 0, 220, 20], [205, 0, 225, 20]]
    # g0 [10, 5, 20, 15]: overlap with a0 = 10x10 = 100, union 400 -> 0.25; same with a1 -> 0.25.
    # g1 [219, 19, 220, 20] (1x1): with a2 overlap 1, union 400 -> 1/400; with a3 1/400 too: tie.
    result = _assign(anchors, [[[10, 5, 20, 15], [219, 19, 220, 20]]])
    assert result.gt_index.tolist() == [[0, 0, 1, 1]]


def test_threshold_step_takes_the_first_gt_on_exact_ties():
    # The tie rule rests on torch.max(dim) returning the first maximal index (documented).
    values, indices = torch.tensor([[0.5, 0.5, 0.25], [0.125, 0.75, 0.75], [0.0, 0.0, 0.0]]).max(dim=1)
    assert indices.tolist() == [0, 1, 0] and values.tolist() == [0.5, 0.75, 0.0]
    # a0 [0,0,10,10] has IoU 0.5 with both halves g_top [0,0,10,5] and g_bottom [0,5,10,10]; a1 / a2 equal
    # the halves (IoU 1), so the low-quality pass leaves a0 alone: a0 goes to the first of the tied GTs.
    anchors = [[0, 0, 10, 10], [0, 0, 10, 5], [0, 5, 10, 10]]
    top, bottom, far = [0, 0, 10, 5], [0, 5, 10, 10], [500, 500, 510, 510]
    assert _assign(anchors, [[top, bottom]]).gt_index.tolist() == [[0, 0, 1]]
    assert _assign(anchors, [[bottom, top]]).gt_index.tolist() == [[0, 1, 0]]
    # A third GT (far away, matched exactly by a3) in front of the tied pair: a0 goes to the first of the pair.
    anchors.append(far)
    assert _assign(anchors, [[far, top, bottom]]).gt_index.tolist() == [[1, 1, 2, 0]]


def test_iou_exactly_at_threshold_is_positive():
    # anchor 10x10, GT 10x1 inside it: IoU = 10 / 100 = 0.1 exactly (in float32 too).
    # A second GT elsewhere takes the low-quality pass away from nothing.
    anchors = [[0, 0, 10, 10], [0, 0, 10, 9], [500, 500, 510, 510]]
    # g0 [0,0,10,1]: IoU with a0 = 0.1, with a1 = 10/90 = 0.111 (its best -> claimed anyway).
    # g1 [500,500,510,510] exactly on a2.
    result = _assign(anchors, [[[0, 0, 10, 1], [500, 500, 510, 510]]])
    assert result.gt_index.tolist() == [[0, 0, 1]]
    # Raising the threshold just above 0.1 drops a0 (it is not g0's best).
    result = _assign(anchors, [[[0, 0, 10, 1], [500, 500, 510, 510]]], threshold=0.1001)
    assert result.gt_index.tolist() == [[-1, 0, 1]]


def test_invalid_anchors_are_never_candidates():
    anchors = [[0, 0, 10, 10], [0, 0, 10, 12], [100, 0, 110, 10]]
    valid = torch.tensor([[False, True, True]])
    result = _assign(anchors, [[[0, 0, 10, 10]]], valid=valid)
    # a0 would be the perfect match but is invalid; a1 (IoU 100/120) becomes the best.
    assert result.gt_index.tolist() == [[-1, 0, -1]]


def test_empty_gt_image_in_a_batch_with_gts():
    anchors = [[0, 0, 10, 10], [20, 0, 30, 10]]
    result = _assign(anchors, [[], [[20, 0, 30, 10]]])
    assert result.gt_index.tolist() == [[-1, -1], [-1, 0]]
    assert result.image_index.tolist() == [1]
    assert result.gt_global.tolist() == [0]
    assert result.num_gts_per_image == [0, 1]
    empty = _assign(anchors, [[], []])
    assert empty.anchor_index.shape[0] == 0 and (empty.gt_index == -1).all()


@pytest.mark.parametrize(
    "box, text",
    [
        ([5.0, 5.0, 5.0, 9.0], "non-positive"),
        ([0.0, 0.0, float("nan"), 3.0], "nan"),
        ([4.0, 0, 2.0, 3], "4.0"),
    ],
)
def test_bad_gt_boxes_raise_naming_image_box_and_value(box, text):
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    boxes = [torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([[0.0, 0.0, 4.0, 4.0], box])]
    labels = [torch.zeros(1, dtype=torch.long), torch.zeros(2, dtype=torch.long)]
    with pytest.raises(ValueError) as error:
        pre_assign(
            anchors, torch.ones(2, 1, dtype=torch.bool), boxes, labels, 0.1, torch.zeros(1, dtype=torch.long)
        )
    message = str(error.value)
    assert "image 1" in message and "GT box 1" in message and text in message


@pytest.mark.parametrize("seed, snap", [(3, False), (4, False), (5, True), (6, True)])
def test_matches_the_per_gt_reference_on_a_real_grid(seed, snap):
    """Tiny, huge, elongated, overlapping, out-of-image and duplicated GTs, partial valid masks,
    and (snap) boxes on the 8-px grid, whose edges coincide with anchor edges (exact IoU ties)."""
    generator = torch.Generator().manual_seed(seed)
    strides = [8, 16, 32, 64, 128]
    level_sizes = [(-(-160 // stride), -(-224 // stride)) for stride in strides]
    anchor_generator = AnchorGenerator(strides, 8.0)
    grid = anchor_generator.grid(level_sizes, "cpu")
    valid = anchor_generator.valid_mask(grid, torch.tensor([[160, 224], [128, 160], [160, 224]]))
    boxes, labels = [], []
    for count in (7, 0, 12):
        sizes = torch.exp(torch.empty(count, 2).uniform_(0.5, 6.0, generator=generator))  # 1.6 .. 400 px
        centres = torch.rand(count, 2, generator=generator) * torch.tensor([260.0, 200.0]) - 20.0
        image_boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
        if snap:
            image_boxes = (image_boxes / 8).round() * 8
            image_boxes[:, 2:] = torch.maximum(image_boxes[:, 2:], image_boxes[:, :2] + 8)
        if count:
            image_boxes[-1] = image_boxes[0]  # exact duplicate GT: the later one wins every claim
        boxes.append(image_boxes)
        labels.append(torch.randint(0, 5, (count,), generator=generator))
    arguments = (grid.anchors, valid, boxes, labels, 0.1, grid.level_index)
    reference = reference_pre_assign(*arguments, 5)
    assert (reference.gt_index >= 0).sum() > 100
    _assert_equals_reference(pre_assign(*arguments, 5), reference)


def test_gt_overlapping_no_valid_anchor_claims_zero_iou_anchors_like_mmdet():
    # min_pos_iou = 0: a GT whose best IoU is 0 claims every valid anchor with IoU 0 (mmdet quirk).
    grid = AnchorGenerator([8], 2.0).grid([(2, 2)], "cpu")  # 4 anchors of side 16 at (0|8, 0|8)
    boxes = [torch.tensor([[100.0, 100.0, 110.0, 110.0]])]
    labels = [torch.zeros(1, dtype=torch.long)]
    valid = torch.tensor([[True, True, False, True]])
    result = pre_assign(grid.anchors, valid, boxes, labels, 0.1, grid.level_index)
    assert result.gt_index.tolist() == [[0, 0, -1, 0]]


def _random_batch(seed: int, counts: tuple[int, ...], size: tuple[int, int], snap: bool = False):
    """Random GTs (tiny to huge, elongated, partly outside, one duplicate per image) for ``counts``."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    boxes, labels = [], []
    for count in counts:
        sides = torch.exp(torch.empty(count, 2).uniform_(0.0, 6.2, generator=generator))  # 1 .. 490 px
        centres = (
            torch.rand(count, 2, generator=generator) * torch.tensor([width + 40.0, height + 40.0]) - 20.0
        )
        image_boxes = torch.cat([centres - sides / 2, centres + sides / 2], dim=1)
        if snap:
            image_boxes = (image_boxes / 8).round() * 8
            image_boxes[:, 2:] = torch.maximum(image_boxes[:, 2:], image_boxes[:, :2] + 8)
        if count > 1:
            image_boxes[-1] = image_boxes[0]
        boxes.append(image_boxes)
        labels.append(torch.randint(0, 7, (count,), generator=generator))
    return boxes, labels


@pytest.mark.parametrize("scale", [8.0, 8.0 * 2 ** (1 / 3), 3.0])
@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.1001, 0.5, 1.5])
@pytest.mark.parametrize("partial_valid", [False, True])
def test_thresholds_scales_and_valid_masks_match_the_reference(scale, threshold, partial_valid):
    """Every field equals the reference for anchor scales whose float32 extents are uniform per
    level (8, 3) or not (8 * 2^(1/3)), thresholds whose float32 rounding matters (0.1001), 0 (every
    valid anchor positive) and above 1 (only low-quality claims), all-valid and partly valid anchors."""
    strides = [8, 16, 32, 64, 128]
    level_sizes = [(-(-200 // stride), -(-264 // stride)) for stride in strides]
    anchor_generator = AnchorGenerator(strides, scale)
    grid = anchor_generator.grid(level_sizes, "cpu")
    padded = torch.tensor([[200, 264], [136, 200], [200, 264]] if partial_valid else [[200, 264]] * 3)
    valid = anchor_generator.valid_mask(grid, padded)
    for seed in range(2):
        boxes, labels = _random_batch(seed, (9, 0, 25), (200, 264), snap=seed == 1)
        arguments = (grid.anchors, valid, boxes, labels, threshold, grid.level_index)
        _assert_equals_reference(pre_assign(*arguments, 5), reference_pre_assign(*arguments, 5))


def test_single_gt_gts_outside_the_image_and_negative_zero_edges():
    """GTs far outside the image, a GT edge at -0.0 on an anchor edge at 0 (IoU -0.0 == 0), GTs that
    only touch anchors, with all-valid and partly valid anchors."""
    strides = [8, 16, 32]
    level_sizes = [(-(-256 // stride), -(-128 // stride)) for stride in strides]
    anchor_generator = AnchorGenerator(strides, 8.0)
    grid = anchor_generator.grid(level_sizes, "cpu")
    cases = [
        [torch.tensor([[10.0, 10.0, 20.0, 20.0]]), torch.zeros(0, 4)],
        [torch.tensor([[-900.0, -900.0, -850.0, -850.0]]), torch.tensor([[2000.0, 5.0, 2600.0, 9.0]])],
        [
            torch.tensor([[40.0, 8.0, 104.0, 72.0], [48.0, -24.0, 120.0, -0.0]]),
            torch.tensor([[0.0, 200.0, 30.0, 250.0]]),
        ],
    ]
    for padded in ([[256, 128], [256, 128]], [[256, 72], [64, 128]]):
        valid = anchor_generator.valid_mask(grid, torch.tensor(padded))
        for boxes in cases:
            labels = [torch.zeros(len(image), dtype=torch.long) for image in boxes]
            for threshold in (0.1, 0.5, 0.9):
                arguments = (grid.anchors, valid, boxes, labels, threshold, grid.level_index)
                _assert_equals_reference(pre_assign(*arguments, 3), reference_pre_assign(*arguments, 3))


@pytest.mark.parametrize(
    "box, text",
    [
        ([5.0, 5.0, 5.0, 9.0], "non-positive"),
        ([5.0, 5.0, 9.0, 5.0], "non-positive"),
        ([0.0, 0.0, float("nan"), 3.0], "nan"),
        ([float("-inf"), 0.0, 2.0, 3.0], "inf"),
        ([0.0, 0.0, float("inf"), 3.0], "inf"),
        ([4.0, 0, 2.0, 3], "4.0"),
    ],
)
def test_bad_gt_boxes_of_every_kind_raise_naming_image_box_and_value(box, text):
    grid = AnchorGenerator([8, 16], 4.0).grid([(4, 4), (2, 2)], "cpu")
    boxes = [torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([[0.0, 0.0, 4.0, 4.0], box])]
    labels = [torch.zeros(1, dtype=torch.long), torch.zeros(2, dtype=torch.long)]
    valid = torch.ones(2, grid.num_anchors, dtype=torch.bool)
    with pytest.raises(ValueError) as error:
        pre_assign(grid.anchors, valid, boxes, labels, 0.1, grid.level_index, 2)
    assert "image 1" in str(error.value) and "GT box 1" in str(error.value) and text in str(error.value)


def test_finite_boxes_whose_float32_size_overflows_are_accepted():
    """x2 - x1 overflows float32 but the box is finite and valid: accepted, as by the reference."""
    grid = AnchorGenerator([8, 16], 4.0).grid([(4, 4), (2, 2)], "cpu")
    boxes = [torch.tensor([[-3e38, 0.0, 3e38, 20.0], [0.0, 0.0, 9.0, 9.0]])]
    labels = [torch.tensor([3, 4])]
    valid = torch.ones(1, grid.num_anchors, dtype=torch.bool)
    arguments = (grid.anchors, valid, boxes, labels, 0.1, grid.level_index)
    _assert_equals_reference(pre_assign(*arguments, 2), reference_pre_assign(*arguments, 2))


def test_batched_box_iou_is_torchvisions_box_iou_bit_for_bit():
    # Shared and per-entry second sets, touching / nested / disjoint / duplicated boxes, and empty
    # (zero-area) padding boxes, whose IoU is 0.
    generator = torch.Generator().manual_seed(2)
    boxes = torch.rand(3, 9, 4, generator=generator) * 50
    boxes[..., 2:] += boxes[..., :2] + 1
    boxes = (boxes * 2).round() / 2  # on a half-pixel grid: exact edge coincidences
    others = torch.cat(
        [boxes[0], torch.rand(40, 2, generator=generator).repeat(1, 2) * 60 + torch.tensor([0, 0, 8, 8])]
    )
    boxes[2, -2:] = 0.0
    per_entry = torch.stack([others, others.flip(0), others * 1.5])
    shared, separate = batched_box_iou(boxes, others), batched_box_iou(boxes, per_entry)
    for entry in range(3):
        assert torch.equal(shared[entry], box_iou(boxes[entry], others))
        assert torch.equal(separate[entry], box_iou(boxes[entry], per_entry[entry]))
    assert (shared[2, -2:] == 0).all()
