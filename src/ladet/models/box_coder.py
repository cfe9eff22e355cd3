"""Delta (dx, dy, dw, dh) box coder, mmdet ``DeltaXYWHBBoxCoder`` semantics (docs/algorithms.md §1.3).

Centre/size without the legacy +1; means 0, stds (0.1, 0.1, 0.2, 0.2); dw, dh clamped to
±|log(16/1000)| before the exponential.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["DeltaBoxCoder", "clip_boxes"]


class DeltaBoxCoder:
    """Encodes boxes as normalised deltas from anchors and decodes them back.

    Args:
        stds: (std_x, std_y, std_w, std_h) the deltas are divided by.
        max_ratio: |dw| and |dh| (after the stds) are clamped to |log(max_ratio)| = |log(16/1000)|.

    Example:
        >>> coder = DeltaBoxCoder()
        >>> coder.decode(torch.tensor([[0., 0., 10., 10.]]), torch.tensor([[1., 0., 0., 0.]]))
        tensor([[ 1.,  0., 11., 10.]])
    """

    def __init__(
        self,
        stds: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2),
        max_ratio: float = 16.0 / 1000.0,
    ) -> None:
        self.stds = tuple(float(value) for value in stds)
        self.max_log_ratio = abs(math.log(max_ratio))

    def encode(self, anchors: Tensor, boxes: Tensor) -> Tensor:
        """[..., 4] anchors and boxes (broadcastable) -> [..., 4] deltas."""
        anchor_width = anchors[..., 2] - anchors[..., 0]
        anchor_height = anchors[..., 3] - anchors[..., 1]
        anchor_x = anchors[..., 0] + 0.5 * anchor_width
        anchor_y = anchors[..., 1] + 0.5 * anchor_height
        box_width = boxes[..., 2] - boxes[..., 0]
        box_height = boxes[..., 3] - boxes[..., 1]
        box_x = boxes[..., 0] + 0.5 * box_width
        box_y = boxes[..., 1] + 0.5 * box_height
        deltas = torch.stack(
            [
                (box_x - anchor_x) / anchor_width,
                (box_y - anchor_y) / anchor_height,
                torch.log(box_width / anchor_width),
                torch.log(box_height / anchor_height),
            ],
            dim=-1,
        )
        return deltas / deltas.new_tensor(self.stds)

    def decode(self, anchors: Tensor, deltas: Tensor, max_shape: Tensor | None = None) -> Tensor:
        """Applies deltas to anchors.

        Args:
            anchors: [N, 4] broadcast against deltas [B, N, 4], or [..., 4] matching ``deltas``.
            deltas: [..., 4] (dx, dy, dw, dh), already including the per-level scale.
            max_shape: optional [B, 2] (h, w) per image (deltas must then be [B, N, 4]) or [2]
                for all boxes: x is clipped to [0, w], y to [0, h] (test time only).

        Returns:
            [..., 4] boxes (x1, y1, x2, y2), same shape as ``deltas``.
        """
        anchors = anchors.to(deltas.dtype)
        stds = deltas.new_tensor(self.stds)
        scaled = deltas * stds  # [..., 4]
        dx, dy = scaled[..., 0], scaled[..., 1]
        dw = scaled[..., 2].clamp(min=-self.max_log_ratio, max=self.max_log_ratio)
        dh = scaled[..., 3].clamp(min=-self.max_log_ratio, max=self.max_log_ratio)
        anchor_width = anchors[..., 2] - anchors[..., 0]
        anchor_height = anchors[..., 3] - anchors[..., 1]
        anchor_x = anchors[..., 0] + 0.5 * anchor_width
        anchor_y = anchors[..., 1] + 0.5 * anchor_height
        centre_x = anchor_x + anchor_width * dx
        centre_y = anchor_y + anchor_height * dy
        half_width = 0.5 * anchor_width * dw.exp()
        half_height = 0.5 * anchor_height * dh.exp()
        boxes = torch.stack(
            [centre_x - half_width, centre_y - half_height, centre_x + half_width, centre_y + half_height],
            dim=-1,
        )
        if max_shape is not None:
            boxes = clip_boxes(boxes, max_shape)
        return boxes


def clip_boxes(boxes: Tensor, max_shape: Tensor) -> Tensor:
    """Clips x to [0, w] and y to [0, h].

    Args:
        boxes: [B, N, 4] with ``max_shape`` [B, 2] (h, w), or [..., 4] with ``max_shape`` [2].
        max_shape: (h, w) per image or shared.
    """
    max_shape = max_shape.to(device=boxes.device, dtype=boxes.dtype)
    if max_shape.dim() == 2:
        if boxes.dim() != 3 or boxes.shape[0] != max_shape.shape[0]:
            raise ValueError(
                f"clip_boxes: per-image max_shape {tuple(max_shape.shape)} needs boxes [B, N, 4], "
                f"got {tuple(boxes.shape)}"
            )
        height = max_shape[:, 0].view(-1, 1)  # [B, 1]
        width = max_shape[:, 1].view(-1, 1)
    else:
        height = max_shape[0]
        width = max_shape[1]
    zero = torch.zeros_like(boxes[..., 0])
    return torch.stack(
        [
            torch.minimum(torch.maximum(boxes[..., 0], zero), width + zero),
            torch.minimum(torch.maximum(boxes[..., 1], zero), height + zero),
            torch.minimum(torch.maximum(boxes[..., 2], zero), width + zero),
            torch.minimum(torch.maximum(boxes[..., 3], zero), height + zero),
        ],
        dim=-1,
    )
