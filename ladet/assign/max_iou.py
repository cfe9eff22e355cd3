"""IoU pre-assignment of PAA (mmdet ``MaxIoUAssigner`` semantics, docs/algorithms.md §1.5 A), batched.

Every valid anchor ends either pre-positive (IoU >= threshold with some GT, or claimed by a GT in
the low-quality pass) or negative. The whole batch is handled at once, with no Python loop over
GTs: either IoUs between each GT and the anchors of its window only (``anchor_windows.py``, the
fast path used with an ``AnchorGrid``), or one dense [B, G_max, N] IoU tensor (GTs padded to the
batch maximum). Both give the same answer.

Worked example (one image, threshold 0.1, anchors a0..a2, GTs g0, g1)::

    IoU   a0    a1    a2
    g0   0.50  0.05  0.00
    g1   0.20  0.05  0.00

    threshold step: a0 -> g0 (max 0.5 >= 0.1); a1, a2 negative (max < 0.1)
    low-quality pass: g0's best IoU 0.5 is reached at a0 -> g0 claims a0; g1's best IoU 0.2 is
    also reached at a0 -> g1 claims a0 and, being the later GT, overwrites g0.
    result: a0 -> g1; a1 and a2 negative.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from ladet.assign.anchor_windows import WindowAssignment, pair_iou, sparse_supported, window_pass
from ladet.assign.inference import inference_internals

__all__ = ["PreAssignment", "pre_assign", "validate_gt_boxes", "pair_iou"]


@dataclass
class PreAssignment:
    """The IoU pre-assignment of a batch.

    Attributes:
        gt_index: [B, N] long. Index of the GT (inside its image) of every pre-positive anchor, -1 for
            negatives and invalid anchors.
        image_index: [P] long, image of each pre-positive; pre-positives are ordered by (image, anchor).
        anchor_index: [P] long, anchor index (0..N-1) of each pre-positive.
        gt_local: [P] long, GT index inside the image.
        gt_global: [P] long, GT index in the batch (image offset + gt_local).
        level: [P] long, FPN level (0 = P3) of the anchor.
        labels: [P] long, class of the assigned GT.
        box_targets: [P, 4] float, the assigned GT box.
        num_gts_per_image: G_i for every image.
        num_levels: number of FPN levels L (segments are (GT, level) pairs).
    """

    gt_index: Tensor
    image_index: Tensor
    anchor_index: Tensor
    gt_local: Tensor
    gt_global: Tensor
    level: Tensor
    labels: Tensor
    box_targets: Tensor
    num_gts_per_image: list[int]
    num_levels: int = 5

    @property
    def num_gts(self) -> int:
        """Total number of GTs in the batch (G_total)."""
        return sum(self.num_gts_per_image)

    @property
    def num_pre_positives(self) -> int:
        return int(self.anchor_index.shape[0])

    def gt_image_index(self) -> Tensor:
        """[G_total] long: the image of every GT of the batch."""
        counts = torch.tensor(self.num_gts_per_image, dtype=torch.long, device=self.gt_index.device)
        return torch.repeat_interleave(
            torch.arange(len(self.num_gts_per_image), device=counts.device), counts
        )


def validate_gt_boxes(gt_boxes: list[Tensor], gt_labels: list[Tensor]) -> None:
    """Raise ``ValueError`` naming image, box and value for a non-finite or empty GT box.

    One host synchronisation for the whole batch (nothing is reported when all boxes are fine).
    """
    _check_gt_shapes(gt_boxes, gt_labels)
    non_empty = [boxes for boxes in gt_boxes if boxes.shape[0] > 0]
    if non_empty:
        _check_gt_values(torch.cat(non_empty).float(), gt_boxes)


def _check_gt_shapes(gt_boxes: list[Tensor], gt_labels: list[Tensor]) -> None:
    """Raise ``ValueError`` for mismatched lists or tensors that are not [G, 4] boxes / [G] labels."""
    if len(gt_boxes) != len(gt_labels):
        raise ValueError(
            f"pre_assign: {len(gt_boxes)} gt_boxes tensors but {len(gt_labels)} gt_labels tensors"
        )
    for image, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
        if boxes.dim() != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"pre_assign: image {image}: gt_boxes must be [G, 4], got {tuple(boxes.shape)}")
        if labels.shape != boxes.shape[:1]:
            raise ValueError(
                f"pre_assign: image {image}: {boxes.shape[0]} boxes but labels of shape {tuple(labels.shape)}"
            )


def _check_gt_values(all_boxes: Tensor, gt_boxes: list[Tensor]) -> None:
    """Raise ``ValueError`` naming the first bad box when a box of ``all_boxes`` ([G_total, 4] float32,
    the concatenation of ``gt_boxes``) is non-finite or has x2 <= x1 or y2 <= y1. One host sync."""
    # A box is fine when 0 < width, height < inf: any NaN or infinite coordinate gives a NaN,
    # infinite or non-positive size (NaN propagates through aminmax). A finite box whose size
    # overflows float32 only sends us to the exact per-box check below, which accepts it.
    smallest, largest = torch.stack(torch.aminmax(all_boxes[:, 2:] - all_boxes[:, :2])).tolist()
    if smallest > 0 and largest < float("inf"):
        return
    # Error path only: find the first bad box and name it.
    for image, boxes in enumerate(gt_boxes):
        for box_index, box in enumerate(boxes.tolist()):
            finite = all(value == value and abs(value) != float("inf") for value in box)
            if not finite or box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(
                    f"pre_assign: image {image}, GT box {box_index} is invalid (non-finite or with "
                    f"non-positive width/height): {box}"
                )


def _dense_assign(
    anchors: Tensor, valid_mask: Tensor, padded_boxes: Tensor, gt_present: Tensor, iou_threshold: float
) -> Tensor:
    """MaxIoU on the full [B, G_max, N] IoU tensor -> [B, N] local GT index or -1."""
    max_gts = padded_boxes.shape[1]
    iou = pair_iou(anchors[None, None, :, :], padded_boxes[:, :, None, :])  # [B, G, N]
    # Padding GTs and invalid anchors must never win: push them below every real IoU (>= 0).
    iou.masked_fill_(~gt_present[:, :, None], -1.0)
    iou.masked_fill_(~valid_mask[:, None, :], -2.0)
    max_iou, argmax_gt = iou.max(dim=1)  # [B, N], first GT on ties
    assigned = torch.where(max_iou >= iou_threshold, argmax_gt, torch.full_like(argmax_gt, -1))
    best_per_gt = iou.amax(dim=2, keepdim=True)  # [B, G, 1]
    best_per_gt.masked_fill_(~gt_present[:, :, None], 2.0)  # padding GTs claim nothing
    claims = (iou == best_per_gt) & valid_mask[:, None, :]  # [B, G, N]
    gt_numbers = torch.arange(max_gts, device=anchors.device, dtype=torch.long)[None, :, None]
    winner = torch.where(claims, gt_numbers, torch.full_like(gt_numbers, -1)).amax(dim=1)  # [B, N]
    assigned = torch.where(winner >= 0, winner, assigned)
    return torch.where(valid_mask, assigned, torch.full_like(assigned, -1))


@inference_internals
def pre_assign(
    anchors: Tensor,
    valid_mask: Tensor,
    gt_boxes: list[Tensor],
    gt_labels: list[Tensor],
    iou_threshold: float,
    level_index: Tensor,
    num_levels: int | None = None,
    level_sizes: list[tuple[int, int]] | None = None,
    strides: list[int] | None = None,
) -> PreAssignment:
    """MaxIoU pre-assignment (§1.5 A) of a whole batch.

    Rules (pos threshold = neg threshold = ``iou_threshold``, ``gt_max_assign_all``,
    ``match_low_quality``, ``min_pos_iou = 0``), over VALID anchors only:
    1. a valid anchor whose max IoU over the image's GTs is >= threshold goes to the argmax GT
       (first GT on exact ties);
    2. low-quality pass: every valid anchor whose IoU with GT g equals g's best IoU over valid
       anchors is (re)assigned to g; when several GTs claim one anchor, the largest GT index wins
       (mmdet's "later GT overwrites"). As in mmdet, ``min_pos_iou = 0`` means a GT that overlaps
       no valid anchor at all (best IoU 0) claims every valid anchor with IoU 0 with it.
    Images without GT get no pre-positive.

    With ``level_sizes`` and ``strides`` (anchors laid out as an ``AnchorGrid``), IoUs are only
    computed between each GT and the anchors of its window (fast path); otherwise, or when a GT
    overlaps no valid anchor, the full [B, G_max, N] IoU tensor is used. Both give the same answer.

    Args:
        anchors: [N, 4] anchors of the shared grid.
        valid_mask: [B, N] bool, anchors inside each image's padded shape.
        gt_boxes: B tensors [G_i, 4] (x1, y1, x2, y2); partly outside the image is fine.
        gt_labels: B tensors [G_i] long.
        iou_threshold: 0.1 for PAA.
        level_index: [N] long, FPN level of each anchor.
        num_levels: L; defaults to ``len(level_sizes)`` or ``level_index.max() + 1``.
        level_sizes: (H_l, W_l) of every level (anchors level by level, row-major), optional.
        strides: stride of every level, optional (needed with ``level_sizes``).

    Raises:
        ValueError: a GT box is non-finite or has non-positive width/height (names image and box).
    """
    _check_gt_shapes(gt_boxes, gt_labels)
    device = anchors.device
    num_gts_per_image = [int(boxes.shape[0]) for boxes in gt_boxes]
    max_gts = max(num_gts_per_image, default=0)
    use_windows = (
        level_sizes is not None
        and strides is not None
        and sparse_supported(iou_threshold, max_gts, level_sizes)
    )
    if max_gts > 0:
        boxes = torch.cat(
            [boxes.to(device=device, dtype=torch.float32) for boxes in gt_boxes]
        )  # [G_total, 4]
        if not use_windows:  # the window pass checks the boxes within its own host sync
            _check_gt_values(boxes, gt_boxes)
    batch_size, num_anchors = valid_mask.shape
    if len(gt_boxes) != batch_size:
        raise ValueError(f"pre_assign: valid_mask has {batch_size} images but gt_boxes has {len(gt_boxes)}")
    if num_levels is None:
        if level_sizes is not None:
            num_levels = len(level_sizes)
        else:
            num_levels = int(level_index.max()) + 1 if level_index.numel() else 1
    anchors = anchors.float()
    if max_gts == 0:
        gt_index = torch.full((batch_size, num_anchors), -1, dtype=torch.long, device=device)
        return _pre_assignment(
            gt_index,
            anchors.new_zeros((0, 4)),
            torch.zeros(0, dtype=torch.long, device=device),
            _image_offsets(num_gts_per_image, device),
            level_index,
            num_gts_per_image,
            num_levels,
        )

    labels = torch.cat([labels.to(device=device, dtype=torch.long) for labels in gt_labels])  # [G_total]
    gt_image, gt_local = _gt_image_and_local(num_gts_per_image, device)  # [G_total] each
    windows: WindowAssignment | None = None
    if use_windows:
        assert level_sizes is not None and strides is not None
        minimum_iou: Tensor | None = None  # window_pass guesses it (see window_iou)
        for attempt in range(2):
            windows = window_pass(
                anchors,
                valid_mask,
                boxes,
                gt_image,
                iou_threshold,
                level_sizes,
                strides,
                minimum_iou,
                # Only the first pass checks the boxes (within its host sync).
                box_error=(lambda: _check_gt_values(boxes, gt_boxes)) if attempt == 0 else None,
            )
            if windows is None or not bool(windows.failed.any()):  # host sync
                break
            # Retry with the full overlap window for the GTs whose guess was wrong.
            guess = windows.minimum_iou
            minimum_iou = torch.where(windows.failed, torch.zeros_like(guess), guess)
            windows = None
    if windows is None:
        padded_boxes = anchors.new_zeros((batch_size, max_gts, 4))
        gt_present = torch.zeros((batch_size, max_gts), dtype=torch.bool, device=device)
        padded_boxes[gt_image, gt_local] = boxes
        gt_present[gt_image, gt_local] = True
        padded_boxes[~gt_present] = torch.tensor([0.0, 0.0, 1.0, 1.0], device=device)
        gt_index = _dense_assign(anchors, valid_mask, padded_boxes, gt_present, iou_threshold)
        offsets = _image_offsets(num_gts_per_image, device)
        return _pre_assignment(gt_index, boxes, labels, offsets, level_index, num_gts_per_image, num_levels)

    # Pre-positives straight from the window keys: no [B, N] decoding pass.
    # nonzero of the uint8 view: same indices, ~1.5x faster on CPU than on bool.
    flat_positive = torch.nonzero((windows.keys <= windows.positive_bound).view(torch.uint8)).flatten()  # [P]
    gt_global = windows.winners(flat_positive)  # [P]
    image_index = gt_image.index_select(0, gt_global)
    gt_local_of_pre = gt_local.index_select(0, gt_global)
    # gt_index reuses the memory of the keys (read for the last time above): a fresh [B*N] buffer
    # costs page faults on CPU.
    gt_index = windows.keys.fill_(-1).scatter_(0, flat_positive, gt_local_of_pre)
    anchor_index = torch.sub(flat_positive, image_index, alpha=num_anchors)
    return _assemble(
        gt_index.view(batch_size, num_anchors),
        image_index,
        anchor_index,
        gt_local_of_pre,
        gt_global,
        boxes,
        labels,
        level_index,
        num_gts_per_image,
        num_levels,
    )


def _gt_image_and_local(num_gts_per_image: list[int], device: torch.device) -> tuple[Tensor, Tensor]:
    """The image and the in-image index of every GT ([G_total] long each), without a host sync."""
    num_gts = sum(num_gts_per_image)
    counts = torch.tensor(num_gts_per_image, dtype=torch.long, device=device)
    gt_image = torch.repeat_interleave(counts, output_size=num_gts)  # [G_total] (repeats of 0..B-1)
    first_gt = _image_offsets(num_gts_per_image, device).index_select(0, gt_image)
    return gt_image, torch.arange(num_gts, device=device) - first_gt


def _image_offsets(num_gts_per_image: list[int], device: torch.device) -> Tensor:
    """[B+1] long: the batch index of the first GT of every image (and the total)."""
    image_starts = list(itertools.accumulate(num_gts_per_image, initial=0))
    return torch.tensor(image_starts, dtype=torch.long, device=device)


def _gather_boxes(boxes: Tensor, index: Tensor) -> Tensor:
    """``boxes.index_select(0, index)`` for [G, 4] float32 boxes ([P] index -> [P, 4]).

    A contiguous float32 box is 16 bytes: gathered as one complex128 element (a plain copy, so
    bit-identical), which is ~3x cheaper on CPU than ``index_select`` of 4-float rows.
    """
    if boxes.dtype != torch.float32 or not boxes.is_contiguous() or boxes.storage_offset() % 4:
        return boxes.index_select(0, index)
    return boxes.view(torch.complex128).view(-1).index_select(0, index).view(torch.float32).view(-1, 4)


def _pre_assignment(
    gt_index: Tensor,
    boxes: Tensor,
    labels: Tensor,
    offsets: Tensor,
    level_index: Tensor,
    num_gts_per_image: list[int],
    num_levels: int,
) -> PreAssignment:
    """``PreAssignment`` from a [B, N] ``gt_index`` (dense path and images without GT)."""
    image_index, anchor_index = torch.nonzero(gt_index >= 0, as_tuple=True)  # ordered by (image, anchor)
    flat_pre = image_index * gt_index.shape[1] + anchor_index  # [P]
    gt_local_of_pre = gt_index.reshape(-1).index_select(0, flat_pre)
    gt_global = offsets.index_select(0, image_index) + gt_local_of_pre
    return _assemble(
        gt_index,
        image_index,
        anchor_index,
        gt_local_of_pre,
        gt_global,
        boxes,
        labels,
        level_index,
        num_gts_per_image,
        num_levels,
    )


def _assemble(
    gt_index: Tensor,
    image_index: Tensor,
    anchor_index: Tensor,
    gt_local: Tensor,
    gt_global: Tensor,
    boxes: Tensor,
    labels: Tensor,
    level_index: Tensor,
    num_gts_per_image: list[int],
    num_levels: int,
) -> PreAssignment:
    """``PreAssignment`` from the per-pre-positive indices ([P] each) and the batch's GT tables
    (boxes [G_total, 4], labels [G_total]) and anchor levels ([N])."""
    return PreAssignment(
        gt_index=gt_index,
        image_index=image_index,
        anchor_index=anchor_index,
        gt_local=gt_local,
        gt_global=gt_global,
        level=level_index.to(anchor_index.device).index_select(0, anchor_index),
        labels=labels.index_select(0, gt_global),
        box_targets=_gather_boxes(boxes, gt_global),
        num_gts_per_image=num_gts_per_image,
        num_levels=num_levels,
    )
