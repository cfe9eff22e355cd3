"""IoU pre-assignment (docs/algorithms.md §1.5 A) on hand-built anchors with known answers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ladet.assign.max_iou import pre_assign
from ladet.models.anchors import AnchorGenerator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from pre_assign import PRE_ASSIGNMENT_FIELDS  # noqa: E402
from reference_paa import reference_pre_assign  # noqa: E402


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
    assert empty.num_pre_positives == 0 and (empty.gt_index == -1).all()


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
def test_sparse_windowed_path_matches_dense_and_per_gt_reference(seed, snap):
    """The fast path (anchor windows) vs the dense tensor vs a per-image/per-GT loop, on a real grid
    with tiny, huge, elongated, overlapping, out-of-image and duplicated GTs, partial valid masks,
    and (snap) boxes on the 8-px grid, whose edges coincide with anchor edges."""
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
            image_boxes[-1] = image_boxes[0]  # exact duplicate GT: the later one wins every tie
        boxes.append(image_boxes)
        labels.append(torch.randint(0, 5, (count,), generator=generator))
    arguments = (grid.anchors, valid, boxes, labels, 0.1, grid.level_index)
    reference = reference_pre_assign(*arguments, 5)
    dense = pre_assign(*arguments, 5)
    sparse = pre_assign(*arguments, 5, level_sizes=grid.level_sizes, strides=grid.strides)
    assert (reference.gt_index >= 0).sum() > 100
    assert torch.equal(dense.gt_index, reference.gt_index)
    assert torch.equal(sparse.gt_index, reference.gt_index)
    for field in ("image_index", "anchor_index", "gt_local", "gt_global", "level", "labels", "box_targets"):
        assert torch.equal(getattr(sparse, field), getattr(reference, field)), field


def test_gt_overlapping_no_valid_anchor_claims_zero_iou_anchors_like_mmdet():
    # min_pos_iou = 0: a GT whose best IoU is 0 claims every valid anchor with IoU 0 (mmdet quirk).
    grid = AnchorGenerator([8], 2.0).grid([(2, 2)], "cpu")  # 4 anchors of side 16 at (0|8, 0|8)
    boxes = [torch.tensor([[100.0, 100.0, 110.0, 110.0]])]
    labels = [torch.zeros(1, dtype=torch.long)]
    valid = torch.tensor([[True, True, False, True]])
    sparse = pre_assign(
        grid.anchors,
        valid,
        boxes,
        labels,
        0.1,
        grid.level_index,
        level_sizes=grid.level_sizes,
        strides=grid.strides,
    )
    assert sparse.gt_index.tolist() == [[0, 0, -1, 0]]


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
@pytest.mark.parametrize("threshold", [0.1, 0.1001, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("partial_valid", [False, True])
def test_sparse_path_is_bit_identical_to_dense(scale, threshold, partial_valid):
    """Every field of the window path equals the dense [B, G, N] path (same dtypes too), for anchor
    scales whose float32 extents are uniform per level (8, 3) or not (8 * 2^(1/3)), thresholds
    whose float32 rounding matters (0.1001), all-valid and partly valid anchors."""
    strides = [8, 16, 32, 64, 128]
    level_sizes = [(-(-200 // stride), -(-264 // stride)) for stride in strides]
    anchor_generator = AnchorGenerator(strides, scale)
    grid = anchor_generator.grid(level_sizes, "cpu")
    padded = torch.tensor([[200, 264], [136, 200], [200, 264]] if partial_valid else [[200, 264]] * 3)
    valid = anchor_generator.valid_mask(grid, padded)
    for seed in range(3):
        boxes, labels = _random_batch(seed, (9, 0, 25), (200, 264), snap=seed == 2)
        arguments = (grid.anchors, valid, boxes, labels, threshold, grid.level_index, 5)
        dense = pre_assign(*arguments)
        sparse = pre_assign(*arguments, level_sizes=grid.level_sizes, strides=grid.strides)
        assert (dense.gt_index >= 0).sum() > 20
        for field in PRE_ASSIGNMENT_FIELDS:
            expected, actual = getattr(dense, field), getattr(sparse, field)
            assert actual.dtype == expected.dtype and torch.equal(actual, expected), (field, seed)
        assert sparse.num_gts_per_image == dense.num_gts_per_image == [9, 0, 25]


def test_sparse_path_single_gt_and_gts_outside_the_image():
    strides = [8, 16, 32, 64, 128]
    level_sizes = [(-(-128 // stride), -(-128 // stride)) for stride in strides]
    grid = AnchorGenerator(strides, 8.0).grid(level_sizes, "cpu")
    valid = torch.ones(2, grid.num_anchors, dtype=torch.bool)
    cases = [
        [torch.tensor([[10.0, 10.0, 20.0, 20.0]]), torch.zeros(0, 4)],
        [torch.tensor([[-900.0, -900.0, -850.0, -850.0]]), torch.tensor([[2000.0, 5.0, 2600.0, 9.0]])],
        [
            torch.tensor([[0.0, 0.0, 128.0, 128.0], [0.0, 0.0, 1.0, 1.0]]),
            torch.tensor([[60.0, 0.0, 61.0, 128.0]]),
        ],
    ]
    for boxes in cases:
        labels = [torch.zeros(len(image), dtype=torch.long) for image in boxes]
        arguments = (grid.anchors, valid, boxes, labels, 0.1, grid.level_index, 5)
        dense = pre_assign(*arguments)
        sparse = pre_assign(*arguments, level_sizes=grid.level_sizes, strides=grid.strides)
        for field in PRE_ASSIGNMENT_FIELDS:
            assert torch.equal(getattr(sparse, field), getattr(dense, field)), field


def test_sparse_path_with_anchor_extents_that_vary_along_the_grid():
    """Anchors whose x-extent varies by column and y-extent by row (still a grid: x depends only on
    the column, y only on the row), so the anchor area is not constant within a level."""
    strides = [8, 16, 32, 64, 128]
    level_sizes = [(-(-200 // stride), -(-264 // stride)) for stride in strides]
    anchor_generator = AnchorGenerator(strides, 8.0)
    grid = anchor_generator.grid(level_sizes, "cpu")
    generator = torch.Generator().manual_seed(11)
    anchors = grid.anchors.clone()
    start = 0
    for height, width in level_sizes:
        level = anchors[start : start + height * width].view(height, width, 4)
        level[:, :, 0::2] += (torch.rand(1, width, 2, generator=generator) - 0.5) * 2e-4  # per column
        level[:, :, 1::2] += (torch.rand(height, 1, 2, generator=generator) - 0.5) * 2e-4  # per row
        start += height * width
    assert len(set((anchors[:1000, 2] - anchors[:1000, 0]).tolist())) > 1
    valid = anchor_generator.valid_mask(grid, torch.tensor([[200, 264], [136, 200]]))
    for seed in range(3):
        boxes, labels = _random_batch(seed, (30, 12), (200, 264), snap=seed == 1)
        arguments = (anchors, valid, boxes, labels, 0.1, grid.level_index, 5)
        dense = pre_assign(*arguments)
        sparse = pre_assign(*arguments, level_sizes=grid.level_sizes, strides=grid.strides)
        for field in PRE_ASSIGNMENT_FIELDS:
            assert torch.equal(getattr(sparse, field), getattr(dense, field)), (field, seed)


def test_sparse_assign_and_window_iou_public_helpers_match_pre_assign():
    from ladet.assign.anchor_windows import sparse_assign, window_iou

    strides = [8, 16, 32, 64, 128]
    level_sizes = [(-(-200 // stride), -(-264 // stride)) for stride in strides]
    anchor_generator = AnchorGenerator(strides, 8.0)
    grid = anchor_generator.grid(level_sizes, "cpu")
    valid = anchor_generator.valid_mask(grid, torch.tensor([[200, 264], [136, 200]]))
    boxes, labels = _random_batch(5, (15, 8), (200, 264))
    expected = pre_assign(grid.anchors, valid, boxes, labels, 0.1, grid.level_index, 5)
    all_boxes = torch.cat(boxes)
    gt_image = torch.tensor([0] * 15 + [1] * 8)
    gt_local = torch.cat([torch.arange(15), torch.arange(8)])
    minimum_iou = window_iou(all_boxes, grid.anchors, grid.level_sizes, 0.1)
    assert (minimum_iou > 0).all() and (minimum_iou <= 0.1).all()
    assigned, failed = sparse_assign(
        grid.anchors,
        valid,
        all_boxes,
        gt_image,
        gt_local,
        0.1,
        grid.level_sizes,
        grid.strides,
        torch.zeros_like(minimum_iou),  # every overlapping anchor: never fails here
    )
    assert not failed.any()
    assert torch.equal(assigned, expected.gt_index)


@pytest.mark.parametrize("threshold", [0.0, 1.5])
def test_thresholds_outside_the_window_path_use_the_dense_answer(threshold):
    """Threshold 0 (every anchor positive) or above 1 (only low-quality claims): the dense path."""
    strides = [8, 16, 32, 64, 128]
    level_sizes = [(-(-96 // stride), -(-128 // stride)) for stride in strides]
    grid = AnchorGenerator(strides, 8.0).grid(level_sizes, "cpu")
    valid = torch.ones(1, grid.num_anchors, dtype=torch.bool)
    boxes, labels = _random_batch(2, (6,), (96, 128))
    arguments = (grid.anchors, valid, boxes, labels, threshold, grid.level_index, 5)
    dense = pre_assign(*arguments)
    sparse = pre_assign(*arguments, level_sizes=grid.level_sizes, strides=grid.strides)
    for field in PRE_ASSIGNMENT_FIELDS:
        assert torch.equal(getattr(sparse, field), getattr(dense, field)), field


def test_negative_zero_gt_edges_and_invalid_anchors():
    """A GT edge at -0.0 on an anchor edge at 0 gives IoUs of -0.0 (equal to 0): such pairs are
    neither positives nor claims, also on invalid anchors (regression test). Windows that cover
    every touching anchor (minimum IoU 0, as in the retry) contain such pairs."""
    from ladet.assign.anchor_windows import sparse_assign

    strides = [8, 16, 32]
    level_sizes = [(-(-256 // stride), -(-128 // stride)) for stride in strides]
    anchor_generator = AnchorGenerator(strides, 8.0)
    grid = anchor_generator.grid(level_sizes, "cpu")
    valid = anchor_generator.valid_mask(grid, torch.tensor([[256, 72]]))
    boxes = torch.tensor([[40.0, 8.0, 104.0, 72.0], [48.0, -24.0, 120.0, -0.0], [0.0, 200.0, 30.0, 250.0]])
    labels = [torch.arange(3)]
    for threshold in (0.1, 0.5, 0.9):
        dense = pre_assign(grid.anchors, valid, [boxes], labels, threshold, grid.level_index, 3)
        assigned, failed = sparse_assign(
            grid.anchors,
            valid,
            boxes,
            torch.zeros(3, dtype=torch.long),
            torch.arange(3),
            threshold,
            grid.level_sizes,
            grid.strides,
            torch.zeros(3),
        )
        assert not failed.any()
        assert torch.equal(assigned, dense.gt_index), threshold


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
def test_bad_gt_boxes_raise_the_same_error_on_the_window_path(box, text):
    """The window path checks the boxes within its own host sync; the error names image, box and
    value exactly like the dense path's check."""
    strides = [8, 16]
    grid = AnchorGenerator(strides, 4.0).grid([(4, 4), (2, 2)], "cpu")
    boxes = [torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([[0.0, 0.0, 4.0, 4.0], box])]
    labels = [torch.zeros(1, dtype=torch.long), torch.zeros(2, dtype=torch.long)]
    valid = torch.ones(2, grid.num_anchors, dtype=torch.bool)
    messages = []
    for windows in (False, True):
        extra = {"level_sizes": grid.level_sizes, "strides": grid.strides} if windows else {}
        with pytest.raises(ValueError) as error:
            pre_assign(grid.anchors, valid, boxes, labels, 0.1, grid.level_index, 2, **extra)
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert "image 1" in messages[1] and "GT box 1" in messages[1] and text in messages[1]


def test_window_path_accepts_finite_boxes_whose_float32_size_overflows():
    """x2 - x1 overflows float32 but the box is finite and valid: accepted, as on the dense path."""
    strides = [8, 16]
    grid = AnchorGenerator(strides, 4.0).grid([(4, 4), (2, 2)], "cpu")
    boxes = [torch.tensor([[-3e38, 0.0, 3e38, 20.0], [0.0, 0.0, 9.0, 9.0]])]
    labels = [torch.tensor([3, 4])]
    valid = torch.ones(1, grid.num_anchors, dtype=torch.bool)
    arguments = (grid.anchors, valid, boxes, labels, 0.1, grid.level_index, 2)
    dense = pre_assign(*arguments)
    sparse = pre_assign(*arguments, level_sizes=grid.level_sizes, strides=grid.strides)
    for field in PRE_ASSIGNMENT_FIELDS:
        assert torch.equal(getattr(sparse, field), getattr(dense, field)), field


def test_pair_keys_order_claims_and_threshold_pairs_like_the_maxiou_rules():
    """The int64 keys built from two int32 words: claims below threshold pairs, the last GT first
    among claims, the highest IoU then the first GT among threshold pairs; the row entry is the low
    word; all keys below the no-pair key."""
    from ladet.assign.anchor_windows import _LOW_WORD, _NO_KEY, _pair_keys

    iou = torch.tensor([0.5, 0.5, 0.25, 1.0, 0.0, 0.25, 0.25], dtype=torch.float32)
    rows = torch.tensor([0, 1, 2, 3, 2**21 - 1, 7, 9])
    claims = torch.tensor([False, False, False, False, False, True, True])
    for row_dtype in (torch.long, torch.int32):
        keys = _pair_keys(iou.view(torch.int32), rows.to(row_dtype), claims)
        assert keys.dtype == torch.long and keys.shape == (7,)
        assert torch.equal(keys.view(torch.int32)[_LOW_WORD::2].long(), rows)
        order = torch.argsort(keys).tolist()
        assert order == [6, 5, 3, 0, 1, 2, 4]  # claims (last row first), IoU 1, 0.5 (row 0, 1), ...
        assert bool((keys < _NO_KEY).all()) and bool((keys >= 0).all())


def test_gt_image_and_local_indices():
    from ladet.assign.max_iou import _gt_image_and_local

    image, local = _gt_image_and_local([3, 0, 2, 1], torch.device("cpu"))
    assert image.dtype == local.dtype == torch.long and image.is_contiguous() and local.is_contiguous()
    assert image.tolist() == [0, 0, 0, 2, 2, 3] and local.tolist() == [0, 1, 2, 0, 1, 0]
    counts = torch.tensor([3, 0, 2, 1])
    assert torch.equal(image, torch.repeat_interleave(torch.arange(4), counts))
    image, local = _gt_image_and_local([1], torch.device("cpu"))
    assert image.tolist() == [0] and local.tolist() == [0]


def test_window_path_int64_pair_enumeration_matches_int32(monkeypatch):
    """The pair enumeration runs in int32 when its values fit and in int64 otherwise (forced here):
    same answer, every field."""
    import ladet.assign.anchor_windows as anchor_windows

    strides = [8, 16, 32, 64, 128]
    level_sizes = [(-(-200 // stride), -(-264 // stride)) for stride in strides]
    anchor_generator = AnchorGenerator(strides, 8.0)
    grid = anchor_generator.grid(level_sizes, "cpu")
    valid = anchor_generator.valid_mask(grid, torch.tensor([[200, 264], [136, 200], [200, 264]]))
    boxes, labels = _random_batch(5, (9, 0, 25), (200, 264), snap=False)
    arguments = (grid.anchors, valid, boxes, labels, 0.1, grid.level_index, 5)
    extra = {"level_sizes": grid.level_sizes, "strides": grid.strides}
    narrow = pre_assign(*arguments, **extra)
    monkeypatch.setattr(anchor_windows, "_INT32_INDEX_LIMIT", 0)
    wide = pre_assign(*arguments, **extra)
    dense = pre_assign(*arguments)
    assert (dense.gt_index >= 0).sum() > 20
    for field in PRE_ASSIGNMENT_FIELDS:
        assert torch.equal(getattr(narrow, field), getattr(dense, field)), field
        assert torch.equal(getattr(wide, field), getattr(dense, field)), field
