"""Random assignment inputs at COCO scale, shared by the assigner tests and ``benchmarks/assign.py``.

Two images of 800x1333 (padded 800x1344, 22 400 anchors each), C = 80, random head outputs and
random GT boxes with COCO-like sizes, from a fixed seed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ladet.models.anchors import AnchorGenerator, AnchorGrid
from ladet.models.outputs import HeadOutputs

__all__ = ["NUM_CLASSES", "make_inputs"]

NUM_CLASSES = 80
IMAGE_HEIGHT, IMAGE_WIDTH = 800, 1333
PADDED_HEIGHT, PADDED_WIDTH = 800, 1344
STRIDES = (8, 16, 32, 64, 128)


def make_inputs(
    num_gts: int, seed: int, batch_size: int = 2
) -> tuple[HeadOutputs, AnchorGrid, Tensor, list[Tensor], list[Tensor]]:
    """(outputs, grid, valid_mask [B, N], gt_boxes, gt_labels) for ``batch_size`` images of 800x1333
    with ``num_gts`` random GTs each."""
    generator = torch.Generator().manual_seed(seed)
    level_sizes = [(-(-PADDED_HEIGHT // stride), -(-PADDED_WIDTH // stride)) for stride in STRIDES]
    anchor_generator = AnchorGenerator(STRIDES, 8.0)
    grid = anchor_generator.grid(level_sizes, "cpu")
    padded_sizes = torch.tensor([[PADDED_HEIGHT, PADDED_WIDTH]] * batch_size)
    valid_mask = anchor_generator.valid_mask(grid, padded_sizes)
    gt_boxes, gt_labels = [], []
    for _ in range(batch_size):
        # COCO-like sizes: side log-uniform in 8..512 px (about 1/3 small, 1/3 medium, 1/3 large).
        sizes = torch.exp(
            torch.empty(num_gts, 2).uniform_(math.log(8.0), math.log(512.0), generator=generator)
        )
        centres = torch.rand(num_gts, 2, generator=generator) * torch.tensor([IMAGE_WIDTH, IMAGE_HEIGHT])
        boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, IMAGE_WIDTH)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, IMAGE_HEIGHT)
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 4.0)
        gt_boxes.append(boxes)
        gt_labels.append(torch.randint(0, NUM_CLASSES, (num_gts,), generator=generator))
    num_anchors = grid.num_anchors
    outputs = HeadOutputs(
        class_scores=torch.randn(batch_size, num_anchors, NUM_CLASSES, generator=generator) - 4.0,
        box_deltas=torch.randn(batch_size, num_anchors, 4, generator=generator) * 0.5,
        iou_logits=None,
        level_sizes=level_sizes,
    )
    return outputs, grid, valid_mask, gt_boxes, gt_labels
