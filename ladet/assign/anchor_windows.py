"""Sparse IoU pre-assignment: IoUs only between each GT and the anchors of its window.

The anchors of every level form a regular grid, so the anchors that can reach a given IoU with a
GT lie in an index rectangle per level (a "window"). Used by :func:`ladet.assign.max_iou.pre_assign`;
gives the same answer as the dense [B, G_max, N] computation (tested against it and a per-GT
reference).

How the window pass stays cheap (the batch is a few thousand windows and tens of thousands of
(GT, anchor) pairs; on CPU every eager op costs microseconds of dispatch, so the op count and the
number of passes over pair-sized tensors are what matter):

* Separable IoU. Anchor (r, c) of a level has the x-extent of column c and the y-extent of row r,
  so the x-overlap of a GT with it depends only on (window, c) and the y-overlap only on
  (window, r). Both are computed once per window column / row ("axis entries", a few thousand)
  with exactly the float32 operations of :func:`pair_iou`; a pair then needs two products, one
  sum, one difference and one division, which gives bit-identical IoUs to the dense path.
* Pairs are enumerated row by row: pair e belongs to row entry ``row_of_pair[e]`` (one row of one
  window) and to column entry ``column_of_pair[e]``; both indices and the [B*N] anchor index
  ``flat[e]`` are "arange + a constant per row entry", built with a single cumulative sum.
* Resolution with one key per pair. The MaxIoU rules (threshold step: max IoU, first GT on ties;
  low-quality pass: every anchor at a GT's best IoU goes to the last such GT) are folded into one
  integer key per pair, so one ``scatter_reduce(amin)`` into a [B*N] buffer resolves everything
  (see :func:`_pair_keys`); the buffer then also tells which GT (row entry) won each anchor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["pair_iou", "sparse_assign", "window_iou"]

# Key layout (see _pair_keys). Keys are integers below 2**52 stored in float64 (exact) and
# scattered as the int64 bit pattern of that float64: for non-negative doubles the bit patterns
# order like the values, and float64 arithmetic is several times cheaper than int64 arithmetic
# on CPU. The low _ROW_BITS bits of a key are the row entry (window row) of the pair.
_ROW_BITS = 21
_ROW_SCALE = float(2**_ROW_BITS)
_IOU_BITS_LIMIT = 2**30  # float32 bit patterns of IoUs in [0, 1] are below 2**30
_THRESHOLD_BASE = float(2**51)  # every threshold-step key is >= this, every claim key is below
_DECODE_OFFSET = float(2**52)  # key + 2**52 has exponent 52: its mantissa bits are the key
_NO_KEY = torch.iinfo(torch.int64).max  # above every key: the anchor has no pair


def pair_iou(anchors: Tensor, gt_boxes: Tensor) -> Tensor:
    """IoU of broadcast pairs, ``torchvision.ops.box_iou`` maths (no eps: both areas are positive).

    The dense and the sparse paths use the same float32 operations in the same order (the sparse
    path factorises them per window row / column, see the module docstring), so equal pairs give
    bit-identical IoUs.

    Args:
        anchors: [..., 4].
        gt_boxes: [..., 4], broadcastable against ``anchors``.

    Returns:
        [...] IoU.
    """
    anchor_area = (anchors[..., 2] - anchors[..., 0]) * (anchors[..., 3] - anchors[..., 1])
    gt_area = (gt_boxes[..., 2] - gt_boxes[..., 0]) * (gt_boxes[..., 3] - gt_boxes[..., 1])
    width = (
        torch.minimum(gt_boxes[..., 2], anchors[..., 2]) - torch.maximum(gt_boxes[..., 0], anchors[..., 0])
    ).clamp_(min=0)
    height = (
        torch.minimum(gt_boxes[..., 3], anchors[..., 3]) - torch.maximum(gt_boxes[..., 1], anchors[..., 1])
    ).clamp_(min=0)
    overlap = width * height
    return overlap / (gt_area + anchor_area - overlap)


def sparse_supported(iou_threshold: float, num_gts: int) -> bool:
    """Whether :func:`sparse_assign` applies: a threshold in (0, 1] (with a threshold <= 0 every
    anchor outside the windows would be positive too; above 1 the key layout would not hold)."""
    return 0.0 < iou_threshold <= 1.0 and num_gts < 2**20


@dataclass
class WindowAssignment:
    """Result of the window pass (internal to ``pre_assign``), valid only when no GT ``failed``.

    Attributes:
        keys: [B*N] int64, the winning pair key of every (image, anchor); ``_NO_KEY`` where no pair.
        positive_bound: an anchor is pre-positive iff ``keys <= positive_bound`` (int64 compare).
        row_gt: [R] long, the batch GT index of every row entry.
        failed: [G_total] bool, GTs whose window guess was wrong (see :func:`sparse_assign`).
    """

    keys: Tensor
    positive_bound: int
    row_gt: Tensor
    failed: Tensor

    def winners(self, flat_index: Tensor) -> Tensor:
        """[P] long batch GT index winning the anchors ``flat_index`` ([P] long, all pre-positive)."""
        keys = self.keys.index_select(0, flat_index).view(torch.float64)
        # key < 2**52, so key + 2**52 is exact with exponent 52 and its low mantissa bits are the key.
        row_entry = (keys + _DECODE_OFFSET).view(torch.int64) & (2**_ROW_BITS - 1)
        return self.row_gt.index_select(0, row_entry)


def _window_bounds(
    anchors: Tensor,
    boxes: Tensor,
    minimum_iou: Tensor,
    level_sizes: list[tuple[int, int]],
    strides: list[int],
    level_offsets: Tensor,
) -> tuple[Tensor, Tensor]:
    """Index rectangle of the anchors of every (GT, level) that can reach IoU >= ``minimum_iou``.

    Necessary condition used: IoU >= t needs overlap >= t * max(area_a, area_g), so the x-overlap
    must be >= t * max(area_a, area_g) / min(h_a, h_g) (and likewise for y); the index range of the
    anchors with that much overlap follows from the grid (anchor j spans j*s + [x1_0, x2_0]).
    Computed in float64 with a slightly relaxed IoU and a small slack in index units, so rounding
    can only widen the window.

    Args:
        anchors: [N, 4] float32; boxes: [G, 4] float32; minimum_iou: [G] float32.
        level_offsets: [L] long, index of anchor (0, 0) of every level.

    Returns:
        (first [G, L, 2] long, count [G, L, 2] long): first column / row and number of columns /
        rows of every window (last axis: x = columns, y = rows); both counts are 0 for windows
        without any pair.
    """
    device = anchors.device
    # Per level: last column / row index and stride, [L, 2] and [L, 1].
    last_index = torch.tensor(
        [[width - 1, height - 1] for height, width in level_sizes], device=device, dtype=torch.float64
    )
    stride = torch.tensor(strides, device=device, dtype=torch.float64)[:, None]
    first_anchor = anchors.index_select(0, level_offsets).double().view(-1, 2, 2)  # [L, (lo, hi), (x, y)]
    anchor_low, anchor_high = first_anchor[:, 0], first_anchor[:, 1]  # [L, 2]
    anchor_size = anchor_high - anchor_low  # [L, 2] (w, h)
    gts = boxes.double().view(-1, 2, 2)
    gt_low, gt_high = gts[:, None, 0], gts[:, None, 1]  # [G, 1, 2]
    gt_size = gt_high - gt_low  # [G, 1, 2]
    needed_area = (minimum_iou.double()[:, None] * 0.999) * torch.maximum(
        gt_size.prod(dim=2), anchor_size.prod(dim=1)
    )  # [G, L]
    smaller_size = torch.minimum(gt_size, anchor_size)  # [G, L, 2]
    # x-overlap needed = area / min height, y-overlap needed = area / min width.
    needed_overlap = needed_area[:, :, None] / smaller_size.flip(2)  # [G, L, 2]
    possible = (needed_overlap <= smaller_size).all(dim=2, keepdim=True)  # [G, L, 1]
    slack = 1e-3
    first = torch.ceil((gt_low + needed_overlap - anchor_high) / stride - slack).clamp_(min=0)
    last = torch.minimum(torch.floor((gt_high - needed_overlap - anchor_low) / stride + slack), last_index)
    count = (last - first + 1).clamp_(min=0) * possible
    count = count * (count.prod(dim=2, keepdim=True) > 0)  # a window with no column or no row is empty
    return first.long(), count.long()


def window_pass(
    anchors: Tensor,
    valid_mask: Tensor,
    boxes: Tensor,
    gt_image: Tensor,
    iou_threshold: float,
    level_sizes: list[tuple[int, int]],
    strides: list[int],
    minimum_iou: Tensor,
) -> WindowAssignment | None:
    """The MaxIoU rules of ``max_iou.pre_assign`` on the pairs (GT, anchor of its windows).

    Anchors outside every window have IoU < ``minimum_iou`` with every GT, which cannot matter as
    long as every GT's best IoU reaches ``minimum_iou`` (<= threshold): then neither the threshold
    step nor the low-quality claims can involve them. ``failed`` flags the GTs where that check
    fails (best IoU found below ``minimum_iou``, or 0): the result is only valid when none did.

    Host syncs: one (the ragged sizes). Returns None when the batch is too large for the key
    layout (more than 2**21 window rows); the caller then uses the dense path.

    Args:
        anchors: [N, 4] float32 of an ``AnchorGrid`` (levels concatenated, each row-major).
        valid_mask: [B, N] bool.
        boxes: [G, 4] float32, all GTs of the batch; gt_image: [G] long, their image.
        iou_threshold: in (0, 1] (see :func:`sparse_supported`).
        minimum_iou: [G] float32, the IoU each GT's window must cover (<= the threshold).
    """
    device = anchors.device
    batch_size, num_anchors = valid_mask.shape
    num_gts = boxes.shape[0]
    num_levels = len(level_sizes)
    counts = [height * width for height, width in level_sizes]
    level_start = [sum(counts[:level]) for level in range(num_levels)]
    # Per level (long): index of anchor (0, 0), anchor-index step of a column and of a row.
    level_table = torch.tensor(
        [[start, 1, width] for start, (_height, width) in zip(level_start, level_sizes, strict=True)],
        device=device,
    )  # [L, 3]
    first, count = _window_bounds(anchors, boxes, minimum_iou, level_sizes, strides, level_table[:, 0])
    num_windows = num_gts * num_levels
    # Axis entries: every column of every window (x, window-major), then every row (y).
    entry_count = count.permute(2, 0, 1).reshape(-1)  # [2W]: columns of windows 0..W-1, then rows
    column_count, row_count = entry_count[:num_windows], entry_count[num_windows:]
    sizes = torch.stack(
        [column_count.sum(), row_count.sum(), (column_count * row_count).sum(), valid_mask.all()]
    ).tolist()  # the one host sync: ragged sizes, and whether every anchor is valid
    num_columns, num_rows, num_pairs, all_valid = (int(size) for size in sizes)
    if num_rows >= 2**_ROW_BITS:
        return None
    if num_pairs == 0:
        return WindowAssignment(
            keys=torch.full((batch_size * num_anchors,), _NO_KEY, dtype=torch.long, device=device),
            positive_bound=-1,
            row_gt=torch.zeros(0, dtype=torch.long, device=device),
            failed=torch.ones(num_gts, dtype=torch.bool, device=device),
        )
    num_entries = num_columns + num_rows
    entry_owner = torch.repeat_interleave(entry_count, output_size=num_entries)  # [C+R] in [0, 2W)
    owner_start = entry_count.cumsum(0) - entry_count  # [2W] first entry of every owner
    # Per owner (long): anchor-index step, anchor index of its first entry minus its first entry
    # position times the step (so that anchor = position * step + base), axis, GT.
    window_level = torch.arange(num_levels, device=device).repeat(num_gts)  # [W]
    window_gt = torch.arange(num_gts, device=device).repeat_interleave(num_levels)  # [W]
    step = level_table[:, 1:].T.index_select(1, window_level).reshape(-1)  # [2W] (x steps, y steps)
    owner_base = (
        level_table[:, 0].index_select(0, window_level).repeat(2)
        + (first.permute(2, 0, 1).reshape(-1) - owner_start) * step
    )  # [2W]
    axis = torch.arange(2, device=device).repeat_interleave(num_windows)  # [2W]
    owner_table = torch.stack([step, owner_base, 4 * window_gt.repeat(2) + axis, axis], dim=1)  # [2W, 4]
    entry_step, entry_base, entry_gt_coordinate, entry_axis = owner_table.index_select(0, entry_owner).unbind(1)
    entry_anchor = torch.arange(num_entries, device=device) * entry_step + entry_base  # [C+R]
    anchor_coordinate = 4 * entry_anchor + entry_axis  # index of x1 (or y1) in anchors.view(-1)
    flat_anchors = anchors.reshape(-1)
    flat_boxes = boxes.reshape(-1)
    anchor_low = flat_anchors.index_select(0, anchor_coordinate)
    anchor_high = flat_anchors.index_select(0, anchor_coordinate + 2)
    gt_low = flat_boxes.index_select(0, entry_gt_coordinate)
    gt_high = flat_boxes.index_select(0, entry_gt_coordinate + 2)
    # pair_iou's float32 operations, per axis entry: overlap extent and anchor extent.
    entry_overlap = (torch.minimum(gt_high, anchor_high) - torch.maximum(gt_low, anchor_low)).clamp_(min=0)
    entry_extent = anchor_high - anchor_low
    column_overlap, row_overlap = entry_overlap[:num_columns], entry_overlap[num_columns:]
    column_extent, row_extent = entry_extent[:num_columns], entry_extent[num_columns:]

    # Row entries: the window of each, its column count / first column entry / first column.
    row_window = entry_owner[num_columns:] - num_windows  # [R]
    window_table = torch.stack(
        [
            column_count,
            owner_start[:num_windows],
            first[:, :, 0].reshape(-1) + gt_image.repeat_interleave(num_levels) * num_anchors,
            window_gt,
        ],
        dim=1,
    )  # [W, 4]
    row_columns, row_first_column_entry, row_column_offset, row_gt = window_table.index_select(
        0, row_window
    ).unbind(1)
    gt_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # [G] as in pair_iou
    row_gt_area = gt_area.index_select(0, row_gt)  # [R]
    row_pair_start = row_columns.cumsum(0) - row_columns  # [R]
    # Pair e of row entry i (i-th row, j-th column of its window): three sequences
    # "slope * e + per-row constant": row entry (slope 0), column entry and [B*N] anchor index
    # (slope 1), built as one cumulative sum of increments that jump at every row start.
    slope = torch.tensor([[0], [1], [1]], device=device)
    row_constant = torch.stack(
        [
            torch.arange(num_rows, device=device),
            row_first_column_entry - row_pair_start,
            entry_anchor[num_columns:] + row_column_offset - row_pair_start,
        ]
    )  # [3, R]
    previous = torch.cat([slope, row_constant[:, :-1]], dim=1)
    increments = slope.expand(3, num_pairs).contiguous()
    increments.index_copy_(1, row_pair_start, row_constant - previous + slope)
    row_of_pair, column_of_pair, flat = increments.cumsum(1).unbind(0)  # [E] each

    overlap = column_overlap.index_select(0, column_of_pair) * row_overlap.index_select(0, row_of_pair)
    union = row_gt_area.index_select(0, row_of_pair) + column_extent.index_select(
        0, column_of_pair
    ) * row_extent.index_select(0, row_of_pair)
    union -= overlap
    if not all_valid:
        # IoU 0 with an invalid anchor: never above the threshold, never a GT's best (> 0).
        overlap *= valid_mask.reshape(-1).index_select(0, flat)
    iou = overlap / union  # [E], bit-identical to pair_iou
    iou_bits = iou.view(torch.int32)  # IoU >= 0: ordered like the IoUs

    best_of_row = torch.full((num_rows,), -1, dtype=torch.int32, device=device).scatter_reduce_(
        0, row_of_pair, iou_bits, reduce="amax"
    )
    best_of_gt = torch.full((num_gts,), -1, dtype=torch.int32, device=device).scatter_reduce_(
        0, row_gt, best_of_row, reduce="amax"
    )  # [G] bit pattern of each GT's best IoU (-1: no pair)
    failed = (best_of_gt < minimum_iou.view(torch.int32)) | (best_of_gt <= 0)
    claims = iou_bits == best_of_gt.index_select(0, row_gt).index_select(0, row_of_pair)
    keys = _pair_keys(iou_bits, row_of_pair, claims)
    buffer = torch.full((batch_size * num_anchors,), _NO_KEY, dtype=torch.long, device=device)
    buffer.scatter_reduce_(0, flat, keys.view(torch.int64), reduce="amin")
    threshold_bits = int(torch.tensor(iou_threshold, dtype=torch.float32).view(torch.int32))
    bound = torch.tensor(
        _THRESHOLD_BASE + (_IOU_BITS_LIMIT - 1 - threshold_bits) * _ROW_SCALE + (_ROW_SCALE - 1),
        dtype=torch.float64,
    ).view(torch.int64)
    return WindowAssignment(keys=buffer, positive_bound=int(bound), row_gt=row_gt, failed=failed)


def _pair_keys(iou_bits: Tensor, row_of_pair: Tensor, claims: Tensor) -> Tensor:
    """[E] float64 keys whose minimum per anchor is the MaxIoU winner.

    * threshold step, ``2**51 + (2**30 - 1 - iou_bits) * 2**21 + row``: the smallest is the
      highest IoU, then the smallest row entry, i.e. the first GT (row entries are GT-major).
    * low-quality claim (IoU == the GT's best), ``(2**30 - 1 - row) * 2**21 + row``: below every
      threshold key (claims override), the smallest is the largest row entry = the last GT.
    Every key is an integer < 2**52 whose low 21 bits are the row entry.
    """
    row = row_of_pair.double()
    threshold_key = (row + (_THRESHOLD_BASE + (_IOU_BITS_LIMIT - 1) * _ROW_SCALE)).sub_(
        iou_bits.double(), alpha=_ROW_SCALE
    )
    claim_key = row.mul(1.0 - _ROW_SCALE).add_((_IOU_BITS_LIMIT - 1) * _ROW_SCALE)
    return torch.where(claims, claim_key, threshold_key)


def sparse_assign(
    anchors: Tensor,
    valid_mask: Tensor,
    boxes: Tensor,
    gt_image: Tensor,
    gt_local: Tensor,
    iou_threshold: float,
    level_sizes: list[tuple[int, int]],
    strides: list[int],
    minimum_iou: Tensor,
) -> tuple[Tensor, Tensor]:
    """Same answer as the dense MaxIoU of ``max_iou.py``, computing IoUs only inside each GT's window of anchors.

    Returns:
        ([B, N] local GT index or -1, [G_total] bool ``failed``): the answer is only valid when no
        GT failed (best IoU found below ``minimum_iou``, or 0); the caller then retries those GTs
        with ``minimum_iou = 0`` (every anchor that overlaps them) or, if that fails too (a GT
        overlapping no valid anchor), uses the dense path.

    Args:
        boxes: [G_total, 4] all GTs of the batch; gt_image, gt_local: [G_total] long.
        iou_threshold: in (0, 1].
        minimum_iou: [G_total] the IoU each GT's window must cover (<= the threshold).
    """
    batch_size, num_anchors = valid_mask.shape
    result = window_pass(anchors, valid_mask, boxes, gt_image, iou_threshold, level_sizes, strides, minimum_iou)
    if result is None:
        raise ValueError("sparse_assign: too many window rows for the key layout; use the dense path")
    assigned = torch.full((batch_size * num_anchors,), -1, dtype=torch.long, device=anchors.device)
    flat_positive = torch.nonzero(result.keys <= result.positive_bound).flatten()
    assigned.index_copy_(0, flat_positive, gt_local.index_select(0, result.winners(flat_positive)))
    return assigned.view(batch_size, num_anchors), result.failed


def window_iou(
    boxes: Tensor, anchors: Tensor, level_sizes: list[tuple[int, int]], iou_threshold: float
) -> Tensor:
    """[G] IoU that each GT's anchor window must cover: the threshold, lowered for GTs whose best
    IoU may stay below it (a GT much smaller, larger or more elongated than every anchor: its
    low-quality match is then the anchor at its best IoU). The guess is half the best IoU a
    centred anchor of each level could reach; the caller verifies it (the best IoU found must reach
    it) and retries the GTs where it was wrong."""
    counts = [height * width for height, width in level_sizes]
    first = torch.tensor([sum(counts[:level]) for level in range(len(counts))], device=anchors.device)
    level_anchors = anchors.index_select(0, first)  # [L, 4]
    anchor_width = level_anchors[:, 2] - level_anchors[:, 0]  # [L]
    anchor_height = level_anchors[:, 3] - level_anchors[:, 1]
    gt_width = (boxes[:, 2] - boxes[:, 0])[:, None]  # [G, 1]
    gt_height = (boxes[:, 3] - boxes[:, 1])[:, None]
    overlap = torch.minimum(gt_width, anchor_width) * torch.minimum(gt_height, anchor_height)  # [G, L]
    centred_iou = overlap / (gt_width * gt_height + anchor_width * anchor_height - overlap)
    return (0.5 * centred_iou.amax(dim=1)).clamp(max=iou_threshold)
