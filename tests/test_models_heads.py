"""PAA / IOP / COP heads (docs/algorithms.md §1.2, §6): init, layout, probability formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ladet.config.schema import HeadConfig
from ladet.models.heads import COPHead, IOPHead, PAAHead, build_head, conditional_objectness

NUM_CLASSES = 3
FEAT = 32


def _features(batch_size: int = 2, channels: int = 16, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    sizes = [(6, 7), (3, 4), (2, 2), (1, 1), (1, 1)]
    return [torch.randn(batch_size, channels, h, w, generator=generator) for h, w in sizes]


def _head(kind: type, iou_branch: bool = True) -> nn.Module:
    return kind(
        NUM_CLASSES, in_channels=16, num_levels=5, feat_channels=FEAT, num_convs=2, iou_branch=iou_branch
    )


def test_paa_head_init() -> None:
    torch.manual_seed(0)
    head = PAAHead(80, in_channels=256, num_levels=5)
    assert len(head.cls_convs) == 4 and len(head.reg_convs) == 4
    assert head.cls_convs[0].conv.bias is None and isinstance(head.cls_convs[0].norm, nn.GroupNorm)
    assert head.cls_convs[0].norm.num_groups == 32
    assert torch.allclose(head.class_predictor.bias, torch.full((80,), -math.log(99.0)))
    assert abs(float(head.class_predictor.bias[0].detach()) + 4.595) < 1e-3
    for conv in [head.cls_convs[0].conv, head.reg_convs[3].conv, head.class_predictor, head.box_predictor]:
        assert abs(float(conv.weight.detach().std()) - 0.01) < 1e-3
    assert (
        torch.count_nonzero(head.box_predictor.bias) == 0
        and torch.count_nonzero(head.iou_predictor.bias) == 0
    )
    assert all(float(scale.scale.detach()) == 1.0 for scale in head.scales) and len(head.scales) == 5
    assert (
        torch.all(head.cls_convs[1].norm.weight == 1)
        and torch.count_nonzero(head.cls_convs[1].norm.bias) == 0
    )


def test_paa_head_output_layout_is_level_then_row_major() -> None:
    head = _head(PAAHead)
    features = _features()
    outputs = head(features)
    assert outputs.level_sizes == [(6, 7), (3, 4), (2, 2), (1, 1), (1, 1)]
    assert outputs.class_scores.shape == (2, 42 + 12 + 4 + 1 + 1, NUM_CLASSES)
    assert outputs.box_deltas.shape == (2, 60, 4) and outputs.iou_logits.shape == (2, 60)
    assert not outputs.class_scores_are_probabilities
    # recompute level 1 by hand: location (i=2, j=1) -> flat 42 + 2*4 + 1
    with torch.no_grad():
        tower = features[1]
        for layer in head.cls_convs:
            tower = layer(tower)
        logits = head.class_predictor(tower)
        regression = features[1]
        for layer in head.reg_convs:
            regression = layer(regression)
        head.scales[1].scale.fill_(2.0)
        deltas = head.box_predictor(regression) * 2.0
        iou = head.iou_predictor(regression)
        outputs = head(features)
    assert torch.allclose(outputs.class_scores[:, 42 + 2 * 4 + 1], logits[:, :, 2, 1], atol=1e-6)
    assert torch.allclose(outputs.box_deltas[:, 42 + 2 * 4 + 1], deltas[:, :, 2, 1], atol=1e-6)
    assert torch.allclose(outputs.iou_logits[:, 42 + 2 * 4 + 1], iou[:, 0, 2, 1], atol=1e-6)


def test_heads_without_iou_branch_build_no_iou_conv() -> None:
    for kind in (PAAHead, IOPHead, COPHead):
        head = _head(kind, iou_branch=False)
        assert head.iou_predictor is None
        assert not any("iou" in name for name, _ in head.named_parameters())
        assert head(_features()).iou_logits is None
    # every parameter gets a gradient (no dead layers under DDP)
    for kind in (PAAHead, IOPHead, COPHead):
        head = _head(kind)
        outputs = head(_features())
        (outputs.class_scores.sum() + outputs.box_deltas.sum() + outputs.iou_logits.sum()).backward()
        assert all(p.grad is not None for p in head.parameters()), kind.__name__


def test_iop_formula_and_init() -> None:
    head = _head(IOPHead)
    assert abs(float(head.threshold_predictor.bias.detach()) - (-math.log((1 - 1e-4) / 1e-4))) < 1e-4
    assert float(head.objectness_predictor.bias.detach()) == 0.0
    with torch.no_grad():
        for conv in (head.class_predictor, head.objectness_predictor, head.threshold_predictor):
            conv.weight.zero_()
        head.class_predictor.bias.copy_(torch.tensor([0.0, 2.0, -3.0]))  # σ: 0.5, 0.8808, 0.0474
        head.threshold_predictor.bias.fill_(-1.0)  # σ = 0.2689
        head.objectness_predictor.bias.fill_(1.0)  # σ = 0.7311
        outputs = head(_features())
    assert outputs.class_scores_are_probabilities
    sigmoid = torch.sigmoid
    expected = torch.relu(sigmoid(torch.tensor([0.0, 2.0, -3.0])) - sigmoid(torch.tensor(-1.0))) * sigmoid(
        torch.tensor(1.0)
    )
    assert expected[2] == 0  # ReLU clips the third class
    assert torch.allclose(outputs.class_scores, expected.expand_as(outputs.class_scores), atol=1e-6)


def _cop_unfold_reference(class_logits: torch.Tensor, coefficient_logits: torch.Tensor) -> torch.Tensor:
    """The literal §6.3 definition with nn.Unfold on (B*C) x 1 x H x W (materialises 9x)."""
    batch, classes, height, width = class_logits.shape
    unfolded = F.unfold(class_logits.reshape(batch * classes, 1, height, width), 3, padding=1)  # [BC, 9, HW]
    unfolded = unfolded.reshape(batch, classes, 9, height, width).permute(0, 1, 3, 4, 2)  # [B, C, H, W, 9]
    coefficients = coefficient_logits.permute(0, 2, 3, 1).unsqueeze(1)  # [B, 1, H, W, 9]
    return (unfolded.sigmoid() * coefficients.sigmoid()).mean(dim=-1)


def test_cop_fused_equals_unfold_reference() -> None:
    generator = torch.Generator().manual_seed(3)
    class_logits = torch.randn(2, 5, 6, 7, generator=generator) * 3
    coefficient_logits = torch.randn(2, 9, 6, 7, generator=generator) * 3
    fused = conditional_objectness(class_logits, coefficient_logits.sigmoid())
    assert torch.allclose(fused, _cop_unfold_reference(class_logits, coefficient_logits), atol=1e-6)


def test_cop_head_border_uses_sigmoid_of_zero_padding() -> None:
    head = _head(COPHead)
    with torch.no_grad():
        head.class_predictor.weight.zero_()
        head.class_predictor.bias.fill_(2.0)
        head.coefficient_predictor.weight.zero_()
        head.coefficient_predictor.bias.fill_(0.5)
        outputs = head(_features())
    assert outputs.class_scores_are_probabilities
    inside, border = torch.sigmoid(torch.tensor(2.0)), 0.5
    weight = torch.sigmoid(torch.tensor(0.5))
    level0 = outputs.class_scores[0, :42, 0].view(6, 7)
    assert torch.allclose(level0[2, 3], inside * weight, atol=1e-6)  # interior: all 9 inside
    assert torch.allclose(level0[0, 0], (4 * inside + 5 * border) * weight / 9, atol=1e-6)  # corner
    assert torch.allclose(level0[0, 3], (6 * inside + 3 * border) * weight / 9, atol=1e-6)  # top edge
    # a 1x1 level: only the centre is inside
    assert torch.allclose(outputs.class_scores[0, -1, 0], (inside + 8 * border) * weight / 9, atol=1e-6)


def test_build_head_dispatch_and_errors() -> None:
    config = HeadConfig(type="cop", iou_branch=False, num_convs=1, feat_channels=32)
    head = build_head(config, num_classes=4, in_channels=16, num_levels=5)
    assert isinstance(head, COPHead) and head.iou_predictor is None and len(head.cls_convs) == 1
    assert isinstance(build_head(HeadConfig(type="iop", feat_channels=32), 4, 16, 5), IOPHead)
    with pytest.raises(ValueError, match="model.head.type.*'retina'"):
        build_head(HeadConfig(type="retina"), 4, 16, 5)
    with pytest.raises(ValueError, match="expected 5 feature maps"):
        build_head(HeadConfig(feat_channels=32), 4, 16, 5)(_features()[:3])
