"""Delta box coder (docs/algorithms.md §1.3): hand values, round trip, clamp, clipping, torchvision oracle."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder as TorchvisionBoxCoder

from ladet.models.box_coder import DeltaBoxCoder, clip_boxes


def test_hand_computed_decode() -> None:
    coder = DeltaBoxCoder()
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), size 10 x 20
    # dx = 0.1 * 2 = 0.2 -> centre x 5 + 2 = 7; dy = 0.1 * -1 -> centre y 10 - 2 = 8
    # dw = 0.2 * 5 * log(2) = log 2 -> width 20; dh = 0 -> height 20
    deltas = torch.tensor([[2.0, -1.0, 5.0 * math.log(2.0), 0.0]])
    boxes = coder.decode(anchors, deltas)
    assert torch.allclose(boxes, torch.tensor([[-3.0, -2.0, 17.0, 18.0]]), atol=1e-5)


def test_hand_computed_encode() -> None:
    coder = DeltaBoxCoder()
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    boxes = torch.tensor([[-3.0, -2.0, 17.0, 18.0]])
    assert torch.allclose(
        coder.encode(anchors, boxes), torch.tensor([[2.0, -1.0, 5.0 * math.log(2.0), 0.0]]), atol=1e-5
    )


def test_round_trip_random_boxes() -> None:
    generator = torch.Generator().manual_seed(0)
    coder = DeltaBoxCoder()
    top_left = torch.rand(50, 2, generator=generator) * 100
    anchors = torch.cat([top_left, top_left + 5 + torch.rand(50, 2, generator=generator) * 80], dim=1)
    top_left = torch.rand(50, 2, generator=generator) * 100
    boxes = torch.cat([top_left, top_left + 5 + torch.rand(50, 2, generator=generator) * 80], dim=1)
    assert torch.allclose(coder.decode(anchors, coder.encode(anchors, boxes)), boxes, atol=1e-3)


def test_dw_dh_clamped_to_log_1000_over_16() -> None:
    coder = DeltaBoxCoder()
    anchors = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    huge = torch.tensor([[0.0, 0.0, 100.0, -100.0]])  # 0.2 * 100 = 20 >> 4.135
    boxes = coder.decode(anchors, huge)
    width = boxes[0, 2] - boxes[0, 0]
    height = boxes[0, 3] - boxes[0, 1]
    # exp(|log(16/1000)|) = 62.5 and exp(-4.135) = 0.016
    assert torch.allclose(width, torch.tensor(16.0 * 62.5), rtol=1e-5)
    assert torch.allclose(height, torch.tensor(16.0 * 0.016), rtol=1e-4)


def test_matches_torchvision_box_coder_with_weights_10_10_5_5() -> None:
    generator = torch.Generator().manual_seed(1)
    anchors = torch.rand(30, 2, generator=generator) * 200
    anchors = torch.cat([anchors, anchors + 10 + torch.rand(30, 2, generator=generator) * 100], dim=1)
    deltas = torch.randn(30, 4, generator=generator) * 3
    oracle = TorchvisionBoxCoder(weights=(10.0, 10.0, 5.0, 5.0)).decode_single(deltas, anchors)
    assert torch.allclose(DeltaBoxCoder().decode(anchors, deltas), oracle, atol=1e-3)


def test_broadcast_over_batch_and_per_image_clipping() -> None:
    coder = DeltaBoxCoder()
    anchors = torch.tensor([[-32.0, -32.0, 32.0, 32.0], [40.0, 40.0, 104.0, 104.0]])  # [N=2, 4]
    deltas = torch.zeros(2, 2, 4)  # [B=2, N, 4]
    unclipped = coder.decode(anchors, deltas)
    assert torch.equal(unclipped, anchors.expand(2, 2, 4))
    clipped = coder.decode(anchors, deltas, max_shape=torch.tensor([[100, 90], [50, 60]]))  # (h, w)
    expected = torch.tensor(
        [
            [[0.0, 0.0, 32.0, 32.0], [40.0, 40.0, 90.0, 100.0]],
            [[0.0, 0.0, 32.0, 32.0], [40.0, 40.0, 60.0, 50.0]],
        ]
    )
    assert torch.equal(clipped, expected)


def test_clip_rejects_mismatched_batch() -> None:
    with pytest.raises(ValueError, match="per-image max_shape"):
        clip_boxes(torch.zeros(3, 4), torch.tensor([[10, 10]]))
