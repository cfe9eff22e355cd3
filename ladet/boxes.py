"""Small pure box functions on (x1, y1, x2, y2) tensors.

Pairwise IoU comes from ``torchvision.ops.box_iou``; the *aligned* (element-wise) forms that the
losses and the assignment costs need are written here, with the eps of docs/algorithms.md §1.4.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

__all__ = ["box_iou", "aligned_iou", "aligned_giou", "box_area"]


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
