"""Small pure box functions on (x1, y1, x2, y2) tensors.

Pairwise IoU comes from ``torchvision.ops.box_iou`` (``batched_box_iou`` gives its numbers for a batch
of box sets against one shared set, e.g. the GTs of every image against the anchors); the *aligned*
(element-wise) forms that the losses and the assignment costs need are written here, with the eps of
docs/algorithms.md §1.4.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

__all__ = ["box_iou", "batched_box_iou", "aligned_iou", "aligned_giou", "box_area"]


def box_area(boxes: Tensor) -> Tensor:
    """[..., 4] -> [...] area, negative widths/heights clamped to 0."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def aligned_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-6) -> Tensor:
    """IoU of boxes1[i] with boxes2[i].

    Args:
        boxes1: [..., 4].
        boxes2: [..., 4], same leading shape.
        eps: added to the union (mmdet convention).

    Returns:
        [...] IoU in [0, 1].

    Example:
        >>> aligned_iou(torch.tensor([[0., 0., 2., 2.]]), torch.tensor([[1., 0., 3., 2.]]))
        tensor([0.3333])
    """
    top_left = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    union = box_area(boxes1) + box_area(boxes2) - overlap
    return overlap / union.clamp(min=eps)


def aligned_giou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-6) -> Tensor:
    """Generalised IoU of boxes1[i] with boxes2[i], in [-1, 1].

    Args:
        boxes1: [..., 4].
        boxes2: [..., 4], same leading shape.
        eps: floor on the union and on the enclosing area.

    Returns:
        [...] GIoU = IoU - (enclosing - union) / enclosing.
    """
    top_left = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    union = (box_area(boxes1) + box_area(boxes2) - overlap).clamp(min=eps)
    iou = overlap / union
    enclose_top_left = torch.minimum(boxes1[..., :2], boxes2[..., :2])
    enclose_bottom_right = torch.maximum(boxes1[..., 2:], boxes2[..., 2:])
    enclosing = (enclose_bottom_right - enclose_top_left).clamp(min=0).prod(dim=-1).clamp(min=eps)
    return iou - (enclosing - union) / enclosing


def batched_box_iou(boxes: Tensor, others: Tensor) -> Tensor:
    """IoU of every box of every batch entry with every box of a second set (shared or per entry).

    The numbers of ``torchvision.ops.box_iou(boxes[b], others[b])`` for every b (the same operations
    in the same order, tested bit for bit), computed one coordinate at a time on [B, G, N] tensors
    rather than on [G, N, 2] corner pairs, with three [B, G, N] buffers in all.

    Args:
        boxes: [B, G, 4] (x1, y1, x2, y2).
        others: [N, 4] shared by the batch, or [B, N, 4].

    Returns:
        [B, G, N] IoU.
    """
    x1, y1, x2, y2 = boxes.unsqueeze(-1).unbind(-2)  # [B, G, 1] each
    other_x1, other_y1, other_x2, other_y2 = others.transpose(-1, -2).contiguous().unsqueeze(-3).unbind(-2)
    width = torch.minimum(x2, other_x2)  # [B, G, N]
    scratch = torch.maximum(x1, other_x1)
    width.sub_(scratch).clamp_(min=0)
    height = torch.minimum(y2, other_y2)
    height.sub_(torch.maximum(y1, other_y1, out=scratch)).clamp_(min=0)
    overlap = width.mul_(height)
    area = (x2 - x1) * (y2 - y1)
    other_area = (other_x2 - other_x1) * (other_y2 - other_y1)
    union = torch.add(area, other_area, out=height).sub_(overlap)
    return overlap.div_(union)
