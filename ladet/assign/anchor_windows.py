"""Sparse IoU pre-assignment: IoUs only between each GT and the anchors of its window.

The anchors of every level form a regular grid, so the anchors that can reach a given IoU with a
GT lie in an index rectangle per level. Used by :func:`ladet.assign.max_iou.pre_assign`; gives the
same answer as the dense [B, G_max, N] computation (tested against it and a per-GT reference).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["pair_iou", "sparse_assign", "window_iou"]


def pair_iou(anchors: Tensor, gt_boxes: Tensor) -> Tensor:
    """IoU of broadcast pairs, ``torchvision.ops.box_iou`` maths (no eps: both areas are positive).

    The dense and the sparse paths both call this, so equal pairs give bit-identical IoUs.

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

    The anchors of level l form a regular grid (stride s_l, constant size), so the anchors that
    can reach IoU >= ``minimum_iou`` with a GT lie in an index rectangle (empty on levels whose
    anchor area is too different from the GT's); pairs (GT, anchor) are enumerated as a ragged
    list (no loop over GTs). Anchors outside every window have IoU < ``minimum_iou`` with every GT,
    which cannot matter as long as every GT's best IoU reaches ``minimum_iou`` (<= threshold): then
    neither the threshold step nor the low-quality claims can involve them.

    Returns:
        ([B, N] local GT index or -1, [G_total] bool ``failed``): the answer is only valid when no
        GT failed (best IoU found below ``minimum_iou``, or 0); the caller then retries those GTs
        with ``minimum_iou = 0`` (every anchor that overlaps them) or, if that fails too (a GT
        overlapping no valid anchor), uses the dense path.

    Necessary condition used for the window: IoU >= t needs overlap >= t * max(area_a, area_g), so
    the x-overlap must be >= t * max(area_a, area_g) / min(h_a, h_g) (and likewise for y).

    Args:
        boxes: [G_total, 4] all GTs of the batch; gt_image, gt_local: [G_total] long.
        minimum_iou: [G_total] the IoU each GT's window must cover (<= the threshold).
    """
    device = anchors.device
    batch_size, num_anchors = valid_mask.shape
    num_gts = boxes.shape[0]
    num_levels = len(level_sizes)
    counts = [height * width for height, width in level_sizes]
    offsets_list = [sum(counts[:level]) for level in range(num_levels)]
    offsets = torch.tensor(offsets_list, device=device)  # [L]
    first = anchors[offsets].double()  # [L, 4] anchor (0, 0) of every level
    centre_x = (first[:, 0] + first[:, 2]) / 2
    centre_y = (first[:, 1] + first[:, 3]) / 2
    half_width = (first[:, 2] - first[:, 0]) / 2
    half_height = (first[:, 3] - first[:, 1]) / 2
    stride = torch.tensor(strides, device=device, dtype=torch.float64)  # [L]
    heights = torch.tensor([size[0] for size in level_sizes], device=device)
    widths = torch.tensor([size[1] for size in level_sizes], device=device)

    gts = boxes.double()[:, None, :]  # [G, 1, 4]
    gt_width = gts[..., 2] - gts[..., 0]  # [G, 1]
    gt_height = gts[..., 3] - gts[..., 1]
    # Smallest x- and y-overlap compatible with IoU >= minimum_iou (slightly relaxed for rounding).
    needed_area = (minimum_iou.double()[:, None] * 0.999) * torch.maximum(
        gt_width * gt_height, 4 * half_width * half_height
    )  # [G, L]
    overlap_x = needed_area / torch.minimum(gt_height, 2 * half_height)
    overlap_y = needed_area / torch.minimum(gt_width, 2 * half_width)
    possible = (overlap_x <= torch.minimum(gt_width, 2 * half_width)) & (
        overlap_y <= torch.minimum(gt_height, 2 * half_height)
    )  # [G, L]
    # Index range of those anchors: j*s + c0 - w/2 <= x2 - overlap_x and j*s + c0 + w/2 >= x1 + overlap_x
    # (computed in float64 with a small slack in index units; the IoU bound is already relaxed).
    slack = 1e-3
    column_min = (
        torch.ceil((gts[..., 0] + overlap_x - half_width - centre_x) / stride - slack).long().clamp(min=0)
    )
    column_max = torch.minimum(
        torch.floor((gts[..., 2] - overlap_x + half_width - centre_x) / stride + slack).long(), widths - 1
    )
    row_min = (
        torch.ceil((gts[..., 1] + overlap_y - half_height - centre_y) / stride - slack).long().clamp(min=0)
    )
    row_max = torch.minimum(
        torch.floor((gts[..., 3] - overlap_y + half_height - centre_y) / stride + slack).long(), heights - 1
    )
    num_columns = (column_max - column_min + 1).clamp(min=0) * possible  # [G, L]
    num_rows = (row_max - row_min + 1).clamp(min=0)
    pair_counts = (num_columns * num_rows).flatten()  # [G*L]
    total = int(pair_counts.sum())  # one host sync: the ragged size
    window = torch.repeat_interleave(
        torch.arange(num_gts * num_levels, device=device), pair_counts, output_size=total
    )
    # Per-window integers, gathered once per pair: [G*L, 5].
    window_gt = torch.arange(num_gts, device=device).repeat_interleave(num_levels)  # [G*L]
    level_of_window = torch.arange(num_levels, device=device).repeat(num_gts)  # [G*L]
    window_width = widths[level_of_window]
    window_table = torch.stack(
        [
            pair_counts.cumsum(0) - pair_counts,  # first pair of the window
            num_columns.flatten(),
            offsets[level_of_window]
            + row_min.flatten() * window_width
            + column_min.flatten(),  # first anchor
            window_width,
            window_gt,
        ],
        dim=1,
    )
    per_pair = window_table.index_select(0, window)  # [E, 5]
    within = torch.arange(total, device=device) - per_pair[:, 0]  # [E]
    row_in_window = torch.div(within, per_pair[:, 1], rounding_mode="floor")
    anchor = (
        per_pair[:, 2] + row_in_window * per_pair[:, 3] + (within - row_in_window * per_pair[:, 1])
    )  # [E]
    gt = per_pair[:, 4]  # [E]
    flat = gt_image.index_select(0, gt) * num_anchors + anchor  # [E] index in the [B*N] batch
    valid = valid_mask.reshape(-1).index_select(0, flat)  # [E]
    iou = pair_iou(anchors.index_select(0, anchor), boxes.index_select(0, gt))  # [E]
    iou = torch.where(valid, iou, torch.full_like(iou, -1.0))
    max_iou = torch.full((batch_size * num_anchors,), -1.0, device=device).scatter_reduce_(
        0, flat, iou, reduce="amax"
    )  # [B*N]
    no_gt = torch.iinfo(torch.long).max
    is_max = valid & (iou == max_iou.index_select(0, flat))
    pair_gt_local = gt_local.index_select(0, gt)
    argmax_gt = torch.full(
        (batch_size * num_anchors,), no_gt, device=device, dtype=torch.long
    ).scatter_reduce_(0, flat, torch.where(is_max, pair_gt_local, torch.full_like(gt, no_gt)), reduce="amin")
    assigned = torch.where(max_iou >= iou_threshold, argmax_gt, torch.full_like(argmax_gt, -1))

    best_per_gt = torch.full((num_gts,), -1.0, device=device).scatter_reduce_(
        0, gt, iou, reduce="amax"
    )  # [G]
    failed = (best_per_gt < minimum_iou) | (best_per_gt <= 0)
    claims = valid & (iou == best_per_gt.index_select(0, gt))
    winner = torch.full((batch_size * num_anchors,), -1, device=device, dtype=torch.long).scatter_reduce_(
        0, flat, torch.where(claims, pair_gt_local, torch.full_like(gt, -1)), reduce="amax"
    )
    assigned = torch.where(winner >= 0, winner, assigned)
    return assigned.view(batch_size, num_anchors), failed


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
