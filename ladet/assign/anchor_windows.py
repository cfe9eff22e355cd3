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
  int64 key per pair (float32 IoUs >= 0 order like their bit patterns), so one
  ``scatter_reduce(amin)`` into a [B*N] buffer resolves everything (see :func:`_pair_keys`); the
  buffer then also tells which GT (row entry) won each anchor.
"""

from __future__ import annotations

import struct
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["pair_iou", "sparse_assign", "window_iou"]

# Key layout (see _pair_keys): int64 keys (M << 32) | row entry, 0 <= M < 2**31, row entry
# < 2**_ROW_BITS. The low 32-bit word of a key (index _LOW_WORD of its int32 view) is the row entry
# (window row) of the pair.
_ROW_BITS = 21
_LOW_WORD, _HIGH_WORD = (0, 1) if sys.byteorder == "little" else (1, 0)
_NO_KEY = torch.iinfo(torch.int64).max  # above every key: the anchor has no pair
_INT32_INDEX_LIMIT = 2**31  # pair enumeration in int32 below this (see window_pass)


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


def sparse_supported(
    iou_threshold: float, num_gts: int, level_sizes: list[tuple[int, int]] | None = None
) -> bool:
    """Whether :func:`sparse_assign` applies: a threshold in (0, 1] (with a threshold <= 0 every
    anchor outside the windows would be positive too; above 1 the key layout would not hold) and
    no empty level."""
    levels_ok = level_sizes is None or all(height > 0 and width > 0 for height, width in level_sizes)
    return 0.0 < iou_threshold <= 1.0 and num_gts < 2**20 and levels_ok


@dataclass
class WindowAssignment:
    """Result of the window pass (internal to ``pre_assign``), valid only when no GT ``failed``.

    Attributes:
        keys: [B*N] int64, the winning pair key of every (image, anchor); ``_NO_KEY`` where no pair.
        positive_bound: an anchor is pre-positive iff ``keys <= positive_bound`` (int64 compare).
        row_gt: [R] long, the batch GT index of every row entry.
        failed: [G_total] bool, GTs whose window guess was wrong (see :func:`sparse_assign`).
        minimum_iou: [G_total] float32, the IoU the windows covered.
    """

    keys: Tensor
    positive_bound: int
    row_gt: Tensor
    failed: Tensor
    minimum_iou: Tensor

    def winners(self, flat_index: Tensor) -> Tensor:
        """[P] long batch GT index winning the anchors ``flat_index`` ([P] long, all pre-positive)."""
        # The row entry is the low 32-bit word of the key: gathered straight from the int32 view.
        row_entry = self.keys.view(torch.int32)[_LOW_WORD::2].index_select(0, flat_index)
        return self.row_gt.index_select(0, row_entry)


@dataclass
class _GridTables:
    """Everything of an anchor grid that does not depend on the GTs (cached per grid, see
    :func:`_grid_tables`). Axis tables list every column of every level (x), then every row (y).

    Attributes:
        anchor_size32: [2, 1, L] float32 anchor width / height of every level.
        anchor_area32: [L] float32 anchor width * height.
        anchor_size64, anchor_area64: the same in float64 (window maths).
        stride: [1, 1, 1, L] float64.
        edge_constant: [2, 2, 1, L] float64 (side, axis): x2_0 / s + slack for the first index,
            -x1_0 / s + slack for the last one (x1_0, x2_0: anchor (0, 0) of the level).
        index_limit: [2, 2, 1, L] float64: 0 (first index >= 0) and W_l - 1 / H_l - 1.
        side_sign: [2, 1, 1] float64 (-1, +1).
        swap_axes: [2] long (1, 0): the index that swaps the x and y rows of a table.
        axis_start: [2, 1, L] long, start of each (axis, level) block in the axis tables.
        axis_low, axis_high, axis_extent: [T] float32 x1, x2, x2 - x1 of column c (y1, y2, y2 - y1
            of row r) of each level.
        axis_anchor: [T] long, anchor index of (row 0, column c) / (row r, column 0).
        level_area: [L] float32 anchor area of every level when every anchor of a level has the
            same float32 extents (the usual case), else None.
    """

    anchor_size32: Tensor
    anchor_area32: Tensor
    anchor_size64: Tensor
    anchor_area64: Tensor
    stride: Tensor
    edge_constant: Tensor
    index_limit: Tensor
    side_sign: Tensor
    swap_axes: Tensor
    axis_start: Tensor
    axis_low: Tensor
    axis_high: Tensor
    axis_extent: Tensor
    axis_anchor: Tensor
    level_area: Tensor | None


_WINDOW_SLACK = 1e-3  # index units: rounding in the window maths can only widen a window
_TABLE_CACHE: dict[tuple, tuple[weakref.ref, int, _GridTables]] = {}


def _grid_tables(anchors: Tensor, level_sizes: list[tuple[int, int]], strides: list[int]) -> _GridTables:
    """The GT-independent tables of an anchor grid, cached per anchors tensor (the same object,
    not modified in place since: checked through its version counter), level sizes and strides."""
    key = (id(anchors), tuple(level_sizes), tuple(strides))
    try:
        version = anchors._version
    except RuntimeError:  # inference tensors have no version counter: no caching
        return _build_grid_tables(anchors, level_sizes, strides)
    cached = _TABLE_CACHE.get(key)
    if cached is not None and cached[0]() is anchors and cached[1] == version:
        return cached[2]
    tables = _build_grid_tables(anchors, level_sizes, strides)
    if len(_TABLE_CACHE) >= 16:
        _TABLE_CACHE.pop(next(iter(_TABLE_CACHE)))
    _TABLE_CACHE[key] = (weakref.ref(anchors), version, tables)
    return tables


def _build_grid_tables(
    anchors: Tensor, level_sizes: list[tuple[int, int]], strides: list[int]
) -> _GridTables:
    """The tables of :class:`_GridTables` from the anchors ([N, 4], levels concatenated, row-major)."""
    device = anchors.device
    # Per axis (x: columns, y: rows), per level.
    lows: tuple[list[Tensor], list[Tensor]] = ([], [])
    highs: tuple[list[Tensor], list[Tensor]] = ([], [])
    anchor_indices: tuple[list[Tensor], list[Tensor]] = ([], [])
    block_sizes: tuple[list[int], list[int]] = ([], [])
    first_anchors: list[Tensor] = []
    start = 0
    for height, width in level_sizes:  # a loop over levels, once per grid
        level = anchors[start : start + height * width].view(height, width, 4)
        first_anchors.append(level[0, 0])
        lows[0].append(level[0, :, 0])
        highs[0].append(level[0, :, 2])
        lows[1].append(level[:, 0, 1])
        highs[1].append(level[:, 0, 3])
        anchor_indices[0].append(start + torch.arange(width, device=device))
        anchor_indices[1].append(start + width * torch.arange(height, device=device))
        block_sizes[0].append(width)
        block_sizes[1].append(height)
        start += height * width
    axis_low = torch.cat(lows[0] + lows[1])
    axis_high = torch.cat(highs[0] + highs[1])
    axis_extent = axis_high - axis_low
    block_starts = torch.tensor(block_sizes[0] + block_sizes[1], device=device).cumsum(0)
    axis_start = (block_starts - torch.tensor(block_sizes[0] + block_sizes[1], device=device)).view(2, 1, -1)
    first = torch.stack(first_anchors)  # [L, 4]
    size32 = torch.stack([first[:, 2] - first[:, 0], first[:, 3] - first[:, 1]])  # [2, L]
    first64 = first.double()
    size64 = size32.double()
    stride = torch.tensor(strides, device=device, dtype=torch.float64)
    low64, high64 = first64[:, :2].T, first64[:, 2:].T  # [2, L] (axis, level)
    last_index = torch.tensor(
        [[width - 1 for _, width in level_sizes], [height - 1 for height, _ in level_sizes]],
        device=device,
        dtype=torch.float64,
    )
    # Uniform extents: every column of a level as wide as its first one (and rows likewise).
    block_extent = torch.repeat_interleave(
        torch.cat([size32[0], size32[1]]), torch.tensor(block_sizes[0] + block_sizes[1], device=device)
    )
    uniform = bool((axis_extent == block_extent).all())
    return _GridTables(
        anchor_size32=size32[:, None, :],
        anchor_area32=size32[0] * size32[1],
        anchor_size64=size64[:, None, :],
        anchor_area64=size64[0] * size64[1],
        stride=stride.view(1, 1, 1, -1),
        edge_constant=torch.stack([high64 / stride + _WINDOW_SLACK, -low64 / stride + _WINDOW_SLACK])[
            :, :, None
        ],
        index_limit=torch.stack([torch.zeros_like(last_index), last_index])[:, :, None],
        side_sign=torch.tensor([-1.0, 1.0], device=device, dtype=torch.float64).view(2, 1, 1),
        swap_axes=torch.tensor([1, 0], device=device),
        axis_start=axis_start,
        axis_low=axis_low,
        axis_high=axis_high,
        axis_extent=axis_extent,
        axis_anchor=torch.cat(anchor_indices[0] + anchor_indices[1]),
        level_area=size32[0] * size32[1] if uniform else None,
    )


def window_pass(
    anchors: Tensor,
    valid_mask: Tensor,
    boxes: Tensor,
    gt_image: Tensor,
    iou_threshold: float,
    level_sizes: list[tuple[int, int]],
    strides: list[int],
    minimum_iou: Tensor | None = None,
    box_error: Callable[[], None] | None = None,
) -> WindowAssignment | None:
    """The MaxIoU rules of ``max_iou.pre_assign`` on the pairs (GT, anchor of its windows).

    Window of (GT, level): the index rectangle of the anchors that can reach IoU >=
    ``minimum_iou``. Necessary condition used: IoU >= t needs overlap >= t * max(area_a, area_g),
    so the x-overlap must be >= t * max(area_a, area_g) / min(h_a, h_g) (and likewise for y); the
    index range follows from the grid (column j spans j*s + [x1_0, x2_0]). Computed in float64
    with a slightly relaxed IoU and a small slack in index units, so rounding only widens windows.

    Anchors outside every window have IoU < ``minimum_iou`` with every GT, which cannot matter as
    long as every GT's best IoU reaches ``minimum_iou`` (<= threshold): then neither the threshold
    step nor the low-quality claims can involve them. ``failed`` flags the GTs where that check
    fails (best IoU found below ``minimum_iou``, or 0): the result is only valid when none did.

    Host syncs: one (the ragged sizes), plus one the first time a grid is seen (its tables).
    Returns None when the batch is too large for the key layout (2**21 window rows or more); the
    caller then uses the dense path.

    Args:
        anchors: [N, 4] float32 of an ``AnchorGrid`` (levels concatenated, each row-major; the
            x-extent of an anchor depends only on its column, the y-extent only on its row).
        valid_mask: [B, N] bool.
        boxes: [G, 4] float32, all GTs of the batch; gt_image: [G] long, their image.
        iou_threshold: in (0, 1] (see :func:`sparse_supported`).
        minimum_iou: [G] float32, the IoU each GT's window must cover (<= the threshold);
            None: the guess of :func:`window_iou`.
        box_error: when given, the boxes are checked within the one host sync (every width and
            height > 0 and finite, in float64: NaN and infinite coordinates fail) and
            ``box_error`` is called (it should raise) when one is not.
    """
    device = anchors.device
    batch_size, num_anchors = valid_mask.shape
    num_gts = boxes.shape[0]
    num_levels = len(level_sizes)
    num_windows = num_gts * num_levels
    tables = _grid_tables(anchors, level_sizes, strides)

    # ---- windows, [2 (axis: x = columns, y = rows), G, L] ----
    box_columns = boxes.T.contiguous()  # [4, G] (x1, y1, x2, y2)
    gt_size32 = box_columns[2:] - box_columns[:2]  # [2, G]
    # Products and sums over a dimension of 2 are written as one binary op (same float result,
    # cheaper than a reduction kernel on CPU).
    gt_area32 = gt_size32[0] * gt_size32[1]  # [G], pair_iou's gt_area
    if minimum_iou is None:
        minimum_iou = _centred_guess(
            gt_size32, gt_area32, tables.anchor_size32, tables.anchor_area32, iou_threshold
        )
    # GT edges in float64, signed so that both window ends use floor: (-x1, -y1), (x2, y2).
    gt_edges = box_columns.double().view(2, 2, num_gts) * tables.side_sign  # [side, axis, G]
    gt_size = gt_edges[0] + gt_edges[1]  # [2, G]
    needed_area = (minimum_iou.double() * 0.999)[:, None] * torch.maximum(
        (gt_size[0] * gt_size[1])[:, None], tables.anchor_area64
    )  # [G, L]
    smaller_size = torch.minimum(gt_size[:, :, None], tables.anchor_size64)  # [2, G, L]
    # x-overlap needs area / min height (axes swapped by a row gather: cheaper than flip on CPU)
    swapped = smaller_size.view(2, -1).index_select(0, tables.swap_axes).view(2, num_gts, num_levels)
    needed_overlap = needed_area / swapped
    # Per axis; a window impossible along one axis loses its pairs below (count of the other axis too).
    possible = needed_overlap <= smaller_size  # [2, G, L]
    # side 0: -first index = floor((x2_0 - x1_gt - overlap) / s + slack) (clamped to <= 0);
    # side 1: last index = floor((x2_gt - overlap - x1_0) / s + slack) (clamped to <= W - 1).
    bounds = torch.minimum(
        ((gt_edges[:, :, :, None] - needed_overlap) / tables.stride + tables.edge_constant).floor_(),
        tables.index_limit,
    )  # [side, axis, G, L]
    count = (bounds[0] + bounds[1] + 1).clamp_(min=0) * possible  # [2, G, L] columns / rows
    pairs_per_window = count[0] * count[1]  # [G, L]
    count *= pairs_per_window > 0  # a window without column or row is empty
    # (all valid: uint8 minimum, ~10x faster on CPU than bool all())
    all_valid_anchors = (
        valid_mask.view(torch.uint8).amin().double() if valid_mask.numel() else pairs_per_window.new_ones(())
    )
    # One float64 vector for the one host sync (same dtypes: no promoting stack).
    synced = [count.view(2, -1).sum(dim=1), pairs_per_window.sum().view(1), all_valid_anchors.view(1)]
    if box_error is not None:
        # Smallest and largest GT width / height (NaN propagates through aminmax).
        synced += [size.view(1) for size in torch.aminmax(gt_size)]
    sizes = torch.cat(synced).tolist()  # the one host sync
    if box_error is not None and not (sizes[4] > 0 and sizes[5] < float("inf")):
        box_error()
        raise ValueError("window_pass: a GT box is non-finite or has a non-positive width or height")
    num_columns, num_rows, num_pairs, all_valid = (int(size) for size in sizes[:4])
    if num_rows >= 2**_ROW_BITS:
        return None
    if num_pairs == 0:
        return WindowAssignment(
            keys=torch.full((batch_size * num_anchors,), _NO_KEY, dtype=torch.long, device=device),
            positive_bound=-1,
            row_gt=torch.zeros(0, dtype=torch.long, device=device),
            failed=torch.ones(num_gts, dtype=torch.bool, device=device),
            minimum_iou=minimum_iou,
        )
    first = bounds[0].neg().long()  # [2, G, L] first column / row
    count = count.long()

    # ---- axis entries: every column of every window (x), then every row (y) ----
    num_entries = num_columns + num_rows
    owner_count = count.reshape(-1)  # [2W], owners = (axis, GT, level)
    owner_start = owner_count.cumsum(0) - owner_count
    # Entry k of an owner is column / row first + k: its index in the axis tables is "entry + delta".
    owner_delta = (tables.axis_start + first).reshape(-1) - owner_start  # [2W]
    # One repeat_interleave (the owner of every entry), then plain gathers: each repeat_interleave
    # costs a cumsum, an index build and a gather.
    entry_owner = torch.repeat_interleave(owner_count, output_size=num_entries)  # [C+R]
    entry_index = owner_delta.index_select(0, entry_owner)
    entry_index += torch.arange(num_entries, device=device)
    # The GT edges of each entry: owners are (axis, GT, level), so owner // L indexes the [2G]
    # (axis, GT) rows of box_columns (two 1-D gathers: contiguous operands below). owner // L is
    # gathered from a [2W] table: an int64 division per entry costs more on CPU.
    owner_axis_gt = torch.arange(2 * num_gts, device=device)[:, None].expand(-1, num_levels).reshape(-1)
    entry_axis_gt = owner_axis_gt.index_select(0, entry_owner)  # [C+R]
    entry_low = box_columns[:2].reshape(-1).index_select(0, entry_axis_gt)  # x1 / y1
    entry_high = box_columns[2:].reshape(-1).index_select(0, entry_axis_gt)  # x2 / y2
    # pair_iou's float32 operations, per column / row: overlap extent.
    # "+ 0.0" turns a -0.0 extent (a GT edge at -0.0) into +0.0 (pair_iou's -0.0 IoU compares equal
    # to 0 there): every pair IoU below is then +0.0 or positive, with a bit pattern >= 0.
    entry_overlap = (
        (
            torch.minimum(entry_high, tables.axis_high.index_select(0, entry_index))
            - torch.maximum(entry_low, tables.axis_low.index_select(0, entry_index))
        )
        .clamp_(min=0)
        .add_(0.0)
    )
    column_overlap, row_overlap = entry_overlap[:num_columns], entry_overlap[num_columns:]

    # ---- row entries: the window columns each row pairs with ----
    row_window = entry_owner[num_columns:] - num_windows  # [R]
    # Per window, gathered for every row (separate gathers: cheaper than stacking a table).
    row_columns = owner_count[:num_windows].index_select(0, row_window)  # columns of the window
    row_first_column = owner_start[:num_windows].index_select(0, row_window)  # its first column entry
    window_offset = first[0] + (gt_image * num_anchors)[:, None]  # [B*N] index of column "first", row 0
    row_offset = window_offset.reshape(-1).index_select(0, row_window)
    row_gt = entry_axis_gt[num_columns:] - num_gts  # y owners (1, g, l): the GT of every row
    if tables.level_area is not None:
        # pair_iou's gt_area + anchor_area, one value per window when anchor areas are uniform.
        window_sum = (gt_area32[:, None] + tables.level_area).reshape(-1)
    else:
        window_sum = gt_area32[:, None].expand(num_gts, num_levels).reshape(-1)  # gt_area only
    row_sum = window_sum.index_select(0, row_window)
    row_pair_start = row_columns.cumsum(0) - row_columns  # [R]
    # Pair e of row entry i: three sequences "slope * e + constant of i": row entry (slope 0),
    # column entry and [B*N] anchor index (slope 1), one cumulative sum of increments that are the
    # slope except at row starts (every row entry has >= 1 pair), where they jump by the change of
    # the constant. int32 when the values and their jumps fit (they index gathers; half the memory
    # traffic of the [3, E] passes), int64 otherwise.
    int32_fits = 2 * (max(batch_size * num_anchors, num_entries) + num_pairs) < _INT32_INDEX_LIMIT
    index_dtype = torch.int32 if int32_fits else torch.long
    row_constant = torch.stack(
        [
            torch.arange(num_rows, device=device),
            row_first_column - row_pair_start,
            tables.axis_anchor.index_select(0, entry_index[num_columns:]) + row_offset - row_pair_start,
        ]
    ).to(index_dtype)  # [3, R]
    increments = torch.ones((3, num_pairs), dtype=index_dtype, device=device)
    increments[0].zero_()  # slopes (0, 1, 1)
    increments[:, 0] = row_constant[:, 0]  # the first pair starts at its constant
    increments.index_add_(1, row_pair_start[1:], torch.diff(row_constant, dim=1))
    # In place: every fresh [3, E] buffer costs page faults on CPU.
    row_of_pair, column_of_pair, flat = increments.cumsum_(1).unbind(0)  # [E] each

    # ---- pairs ----
    overlap = column_overlap.index_select(0, column_of_pair) * row_overlap.index_select(0, row_of_pair)
    if tables.level_area is not None:
        union = row_sum.index_select(0, row_of_pair) - overlap
    else:
        entry_extent = tables.axis_extent.index_select(0, entry_index)
        anchor_area = entry_extent[:num_columns].index_select(0, column_of_pair) * entry_extent[
            num_columns:
        ].index_select(0, row_of_pair)
        union = row_sum.index_select(0, row_of_pair) + anchor_area
        union -= overlap
    if not all_valid:
        # IoU 0 with an invalid anchor: never above the threshold, never a GT's best (> 0).
        overlap *= valid_mask.reshape(-1).index_select(0, flat)
    # Bit patterns of IoUs >= 0 order like the IoUs; no IoU is -0.0 (the overlap extents are
    # +0.0 or positive, see entry_overlap), so every pattern is >= 0.
    iou_bits = (overlap / union).view(torch.int32)  # [E], bit-identical to pair_iou

    if tables.level_area is not None and all_valid:
        # Best IoU of a window without a pass over the pairs: with a constant anchor area the
        # float32 IoU is non-decreasing in the overlap, which is largest at the widest column
        # times the tallest row (a pair of the window).
        owner_best = torch.segment_reduce(entry_overlap, "max", lengths=owner_count, unsafe=True, initial=0.0)
        best_overlap = owner_best.view(2, num_gts, num_levels).prod(dim=0)  # [G, L]
        best_of_gt = (best_overlap / (window_sum.view(num_gts, num_levels) - best_overlap)).amax(dim=1)
        best_of_gt = best_of_gt.view(torch.int32)  # [G] bit pattern of each GT's best IoU
    else:
        best_of_row = torch.full((num_rows,), -1, dtype=torch.int32, device=device).scatter_reduce_(
            0, row_of_pair, iou_bits, reduce="amax"
        )
        best_of_gt = torch.full((num_gts,), -1, dtype=torch.int32, device=device).scatter_reduce_(
            0, row_gt, best_of_row, reduce="amax"
        )  # [G] bit pattern of each GT's best IoU (-1: no pair)
    # best < minimum_iou, or best <= 0 (bit pattern <= 0: also GTs without any pair, -1)
    failed = best_of_gt < minimum_iou.view(torch.int32).clamp(min=1)
    claims = iou_bits == best_of_gt.index_select(0, row_gt).index_select(0, row_of_pair)
    keys = _pair_keys(iou_bits, row_of_pair, claims)
    buffer = torch.full((batch_size * num_anchors,), _NO_KEY, dtype=torch.long, device=device)
    buffer.scatter_reduce_(0, flat.long(), keys, reduce="amin")
    threshold_bits = struct.unpack("<i", struct.pack("<f", iou_threshold))[0]  # float32(threshold)
    # The largest threshold-step key of an IoU >= float32(threshold), as in the dense comparison.
    bound = ((2**31 - 1 - threshold_bits) << 32) | (2**32 - 1)
    return WindowAssignment(
        keys=buffer,
        positive_bound=bound,
        row_gt=row_gt,
        failed=failed,
        minimum_iou=minimum_iou,
    )


def _pair_keys(iou_bits: Tensor, row_of_pair: Tensor, claims: Tensor) -> Tensor:
    """[E] int64 keys ``(M << 32) | row entry`` whose minimum per anchor is the MaxIoU winner.

    * threshold step, ``M = 2**31 - 1 - iou_bits`` (>= 2**30): the smallest key is the highest
      IoU, then the smallest row entry, i.e. the first GT (row entries are GT-major and a GT pairs
      with an anchor at most once).
    * low-quality claim (IoU == the GT's best), ``M = 2**30 - 1 - row``: below every threshold key
      (claims override), the smallest is the largest row entry = the last GT.

    The two 32-bit words are written straight into an [E, 2] int32 buffer viewed as int64: no
    widening, shift and or passes over the pairs.

    Args:
        iou_bits: [E] int32 IoU bit patterns (>= 0); row_of_pair: [E] int32 or long (< 2**_ROW_BITS);
        claims: [E] bool.
    """
    row = row_of_pair.int()
    words = torch.empty((iou_bits.shape[0], 2), dtype=torch.int32, device=iou_bits.device)
    torch.where(claims, (2**30 - 1) - row, (2**31 - 1) - iou_bits, out=words[:, _HIGH_WORD])
    words[:, _LOW_WORD] = row
    return words.view(torch.int64).view(-1)


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
    result = window_pass(
        anchors, valid_mask, boxes, gt_image, iou_threshold, level_sizes, strides, minimum_iou
    )
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
    it) and retries the GTs where it was wrong. (``window_pass`` makes the same guess from its
    cached tables.)"""
    counts = [height * width for height, width in level_sizes]
    first = torch.tensor([sum(counts[:level]) for level in range(len(counts))], device=anchors.device)
    level_anchors = anchors.index_select(0, first).T  # [4, L]
    anchor_size32 = (level_anchors[2:] - level_anchors[:2])[:, None, :]  # [2, 1, L]
    gt_size32 = (boxes[:, 2:] - boxes[:, :2]).T  # [2, G]
    return _centred_guess(
        gt_size32, gt_size32.prod(dim=0), anchor_size32, anchor_size32.prod(dim=0)[0], iou_threshold
    )


def _centred_guess(
    gt_size: Tensor, gt_area: Tensor, anchor_size: Tensor, anchor_area: Tensor, iou_threshold: float
) -> Tensor:
    """[2, G] GT (width, height), [G] areas, [2, 1, L] anchor sizes, [L] areas -> [G] half the best
    IoU of a GT with a centred anchor of any level, at most the threshold (see :func:`window_iou`)."""
    sizes = torch.minimum(gt_size[:, :, None], anchor_size)  # [2, G, L]
    overlap = sizes[0] * sizes[1]  # [G, L]
    centred_iou = overlap / (gt_area[:, None] + anchor_area - overlap)
    return (0.5 * centred_iou.amax(dim=1)).clamp_(max=iou_threshold)
