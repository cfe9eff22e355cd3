"""IoU pre-assignment of PAA: mmdet's ``MaxIoUAssigner`` rules for a whole batch (docs/algorithms.md §1.5 A).

One dense [B, G_max, N] IoU tensor between the GTs of every image (padded to the batch maximum) and
the shared anchors; no loop over GTs. Every valid anchor ends either pre-positive (IoU >= threshold
with some GT, or claimed by a GT in the low-quality pass) or negative.

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

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from ladet.boxes import batched_box_iou

__all__ = ["PreAssignment", "pre_assign"]


@dataclass
class PreAssignment:
    """The IoU pre-assignment of a batch (P pre-positives, ordered by (image, anchor)).

    Attributes:
        gt_index: [B, N] long. Index of the GT (inside its image) of every pre-positive anchor, -1 for
            negatives and invalid anchors.
        image_index: [P] long, image of each pre-positive.
        anchor_index: [P] long, anchor index (0..N-1) of each pre-positive.
        gt_local: [P] long, GT index inside the image.
        gt_global: [P] long, GT index in the batch (image offset + gt_local).
        level: [P] long, FPN level (0 = P3) of the anchor.
        labels: [P] long, class of the assigned GT.
        box_targets: [P, 4] float, the assigned GT box.
        num_gts_per_image: G_i for every image.
        num_levels: number of FPN levels L.
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

    def segment(self) -> Tensor:
        """[P] long: the (GT, level) segment of every pre-positive, ``gt_global * L + level``."""
        return torch.add(self.level, self.gt_global, alpha=self.num_levels)

    def gt_image_index(self) -> Tensor:
        """[G_total] long: the image of every GT of the batch."""
        counts = torch.tensor(self.num_gts_per_image, dtype=torch.long, device=self.gt_index.device)
        return torch.repeat_interleave(
            torch.arange(len(self.num_gts_per_image), device=counts.device), counts, output_size=self.num_gts
        )


def _check_gt_boxes(gt_boxes: list[Tensor], gt_labels: list[Tensor], batch_size: int) -> None:
    """Raise ``ValueError`` naming image, box and values for mismatched inputs or a non-finite or empty
    GT box. One host synchronisation for the whole batch (none at all without GTs)."""
    if len(gt_boxes) != len(gt_labels) or len(gt_boxes) != batch_size:
        raise ValueError(
            f"pre_assign: {batch_size} images in valid_mask, {len(gt_boxes)} gt_boxes tensors and "
            f"{len(gt_labels)} gt_labels tensors"
        )
    for image, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
        if boxes.dim() != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"pre_assign: image {image}: gt_boxes must be [G, 4], got {tuple(boxes.shape)}")
        if labels.shape != boxes.shape[:1]:
            raise ValueError(
                f"pre_assign: image {image}: {boxes.shape[0]} boxes but labels of shape {tuple(labels.shape)}"
            )
    if sum(boxes.shape[0] for boxes in gt_boxes) == 0:
        return
    all_boxes = torch.cat(gt_boxes).float()
    # A box is fine when 0 < width, height < inf: a NaN or infinite coordinate gives a NaN, infinite
    # or non-positive size (NaN propagates through aminmax).
    smallest, largest = torch.stack(torch.aminmax(all_boxes[:, 2:] - all_boxes[:, :2])).tolist()
    if smallest > 0 and largest < float("inf"):
        return
    for image, boxes in enumerate(gt_boxes):  # error path only: name the first bad box
        for box_index, box in enumerate(boxes.tolist()):
            finite = all(abs(value) < float("inf") for value in box)  # (False for NaN too)
            if not finite or box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(
                    f"pre_assign: image {image}, GT box {box_index} is invalid (non-finite or with "
                    f"non-positive width/height): {box}"
                )


def pre_assign(
    anchors: Tensor,
    valid_mask: Tensor,
    gt_boxes: list[Tensor],
    gt_labels: list[Tensor],
    iou_threshold: float,
    level_index: Tensor,
    num_levels: int | None = None,
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
    Images without GT get no pre-positive. Two host synchronisations (the box check and the list of
    pre-positives), whatever the number of GTs.

    Args:
        anchors: [N, 4] anchors of the shared grid.
        valid_mask: [B, N] bool, anchors inside each image's padded shape.
        gt_boxes: B tensors [G_i, 4] (x1, y1, x2, y2); partly outside the image is fine.
        gt_labels: B tensors [G_i] long.
        iou_threshold: 0.1 for PAA.
        level_index: [N] long, FPN level of each anchor.
        num_levels: L; defaults to ``level_index.max() + 1``.

    Raises:
        ValueError: a GT box is non-finite or has non-positive width/height (names image and box).
    """
    batch_size, num_anchors = valid_mask.shape
    _check_gt_boxes(gt_boxes, gt_labels, batch_size)
    device = anchors.device
    if num_levels is None:
        num_levels = int(level_index.max()) + 1 if level_index.numel() else 1
    num_gts_per_image = [int(boxes.shape[0]) for boxes in gt_boxes]
    gt_index = torch.full((batch_size, num_anchors), -1, dtype=torch.long, device=device)
    if sum(num_gts_per_image) > 0:
        boxes = [image_boxes.to(device=device, dtype=torch.float32) for image_boxes in gt_boxes]
        gt_index = _max_iou(anchors.float(), valid_mask, boxes, num_gts_per_image, iou_threshold)
    # Pre-positives ordered by (image, anchor): the candidates' tie rule relies on this order.
    image_index, anchor_index = torch.nonzero(gt_index >= 0, as_tuple=True)  # host sync
    gt_local = gt_index[image_index, anchor_index]
    first_gt = torch.tensor([0, *num_gts_per_image], device=device).cumsum(0)  # [B + 1]
    gt_global = first_gt[image_index] + gt_local
    if sum(num_gts_per_image) > 0:
        all_boxes = torch.cat(boxes)
        all_labels = torch.cat([labels.to(device=device, dtype=torch.long) for labels in gt_labels])
    else:
        all_boxes, all_labels = anchors.new_zeros((0, 4)), torch.zeros(0, dtype=torch.long, device=device)
    return PreAssignment(
        gt_index=gt_index,
        image_index=image_index,
        anchor_index=anchor_index,
        gt_local=gt_local,
        gt_global=gt_global,
        level=level_index.to(device)[anchor_index],
        labels=all_labels[gt_global],
        box_targets=all_boxes[gt_global],
        num_gts_per_image=num_gts_per_image,
        num_levels=num_levels,
    )


def _max_iou(
    anchors: Tensor,
    valid_mask: Tensor,
    boxes: list[Tensor],
    num_gts_per_image: list[int],
    iou_threshold: float,
) -> Tensor:
    """The rules of :func:`pre_assign` on the dense IoU tensor -> [B, N] local GT index or -1.

    Two reductions over the GTs and one over the anchors; the IoU tensor itself is reused for the
    low-quality equality mask, so no second [B, G_max, N] tensor is made.
    """
    device = anchors.device
    # GTs padded to [B, G_max, 4] with empty boxes: IoU 0 with every anchor, behind the real GTs.
    # Invalid anchors become empty boxes too: IoU 0 with every GT, so they never raise a GT's best
    # IoU (>= 0 on valid anchors); whatever they are given below is dropped by the valid mask.
    image_anchors = torch.where(valid_mask[:, :, None], anchors, 0.0)  # [B, N, 4]
    iou = batched_box_iou(pad_sequence(boxes, batch_first=True), image_anchors)  # [B, G_max, N]
    num_gts = torch.tensor(num_gts_per_image, device=device)[:, None]  # [B, 1]
    gt_number = torch.arange(1, iou.shape[1] + 1, dtype=iou.dtype, device=device)[
        :, None
    ]  # [G_max, 1], 1-based
    # 1. Threshold step: an anchor whose max IoU is >= threshold goes to the first GT with that IoU
    #    (``max`` returns the first maximal index). Padding GTs (IoU 0) come after the real ones, so
    #    they only win in an image without GT.
    max_iou, first = iou.max(dim=1)  # [B, N] each
    assigned = torch.where((max_iou >= iou_threshold) & (first < num_gts), first, -1)
    # 2. Low-quality pass: GT g claims every anchor whose IoU equals g's best IoU; the largest
    #    claiming GT wins ("later GT overwrites") = the max of g * [IoU == best of g]. Padding GTs
    #    aim at 2 (above any IoU) and claim nothing.
    best = iou.amax(dim=2, keepdim=True)  # [B, G_max, 1]
    best.masked_fill_(gt_number.view(1, -1, 1) > num_gts[:, :, None], 2.0)
    claimed = iou.eq_(best).mul_(gt_number).amax(dim=1).long() - 1  # [B, N], -1: none
    assigned = torch.where(claimed >= 0, claimed, assigned)
    return torch.where(valid_mask, assigned, -1)
