"""Plain data containers passed between the data layer, the models, the assigner and the losses,
and the two protocols (box decoder, anchors holder) those layers share.

Everything here is a dataclass of tensors; nothing holds behaviour beyond small helpers.
Shapes use: B = images in the batch, G_i = ground-truth boxes of image i, N = anchors per image
(all FPN levels concatenated, P3 first, each level row-major), C = number of classes.
Boxes are always absolute pixel coordinates (x1, y1, x2, y2) in the *resized* image frame unless a
name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor


class BoxDecoder(Protocol):
    """What the assigner and the losses need from a box coder (``ladet.models.box_coder.DeltaBoxCoder``)."""

    def decode(self, anchors: Tensor, deltas: Tensor, max_shape: Tensor | None = None) -> Tensor:
        """anchors [..., 4] and deltas [..., 4] -> boxes [..., 4], clipped to ``max_shape`` [B, 2] (h, w) if given."""
        ...


class AnchorsHolder(Protocol):
    """Anything with the anchors of a batch shape (``ladet.models.anchors.AnchorGrid``)."""

    anchors: Tensor  # [N, 4] (x1, y1, x2, y2), levels concatenated P3 first


@dataclass
class Batch:
    """One collated training or evaluation batch.

    Attributes:
        images: [B, 3, H_pad, W_pad] float32, normalised, padded right/bottom to the batch max
            (itself a multiple of 32).
        image_sizes: [B, 2] long, (height, width) of each image after resizing, before padding.
        padded_sizes: [B, 2] long, (height, width) of each image after padding to a multiple of 32
            but before padding to the batch maximum. Anchor valid flags are derived from these.
        scale_factors: [B, 2] float, (scale_x, scale_y) = resized size / original size, per axis.
        original_sizes: [B, 2] long, (height, width) of the image as stored on disk.
        gt_boxes: B tensors [G_i, 4] float32, boxes in the resized frame.
        gt_labels: B tensors [G_i] long, contiguous labels 0..C-1.
        image_ids: the dataset's image ids (COCO ``image.id``), one per image.
    """

    images: Tensor
    image_sizes: Tensor
    padded_sizes: Tensor
    scale_factors: Tensor
    original_sizes: Tensor
    gt_boxes: list[Tensor]
    gt_labels: list[Tensor]
    image_ids: list[int] = field(default_factory=list)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Returns a copy with every tensor moved to ``device``."""
        return Batch(
            images=self.images.to(device, non_blocking=non_blocking),
            image_sizes=self.image_sizes.to(device, non_blocking=non_blocking),
            padded_sizes=self.padded_sizes.to(device, non_blocking=non_blocking),
            scale_factors=self.scale_factors.to(device, non_blocking=non_blocking),
            original_sizes=self.original_sizes.to(device, non_blocking=non_blocking),
            gt_boxes=[b.to(device, non_blocking=non_blocking) for b in self.gt_boxes],
            gt_labels=[lab.to(device, non_blocking=non_blocking) for lab in self.gt_labels],
            image_ids=list(self.image_ids),
        )

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[0])


@dataclass
class Detections:
    """Detections of one image, in the ORIGINAL image frame.

    Attributes:
        boxes: [D, 4] float32 (x1, y1, x2, y2).
        scores: [D] float32.
        labels: [D] long, contiguous labels 0..C-1.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    @staticmethod
    def empty(device: torch.device | str = "cpu") -> Detections:
        return Detections(
            boxes=torch.zeros((0, 4), device=device),
            scores=torch.zeros((0,), device=device),
            labels=torch.zeros((0,), dtype=torch.long, device=device),
        )
