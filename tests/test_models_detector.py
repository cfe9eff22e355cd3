"""PAADetector end to end (tiny R18) and the mmdet checkpoint key mapping (docs/algorithms.md §10)."""

from __future__ import annotations

import pytest
import torch

from ladet.config.schema import ModelConfig
from ladet.models.detector import PAADetector, build_detector
from ladet.models.mmdet_compat import convert_mmdet_paa_state_dict
from ladet.structures import Batch, Detections
from tests.support.mmdet_checkpoints import to_mmdet_paa_state_dict


def _tiny_config(head_type: str = "paa", iou_branch: bool = True) -> ModelConfig:
    config = ModelConfig(num_classes=4)
    config.backbone.depth = 18
    config.backbone.weights = None
    config.neck.out_channels = 32
    config.head.type = head_type
    config.head.iou_branch = iou_branch
    config.head.feat_channels = 32
    config.head.num_convs = 2
    config.test.score_threshold = 0.001  # an untrained IOP head scores ~0.005
    return config


def _batch() -> Batch:
    torch.manual_seed(0)
    return Batch(
        images=torch.randn(2, 3, 128, 160),
        image_sizes=torch.tensor([[120, 160], [100, 90]]),
        padded_sizes=torch.tensor([[128, 160], [128, 96]]),
        scale_factors=torch.tensor([[2.0, 2.0], [0.5, 0.5]]),
        original_sizes=torch.tensor([[60, 80], [200, 180]]),
        gt_boxes=[torch.zeros(0, 4), torch.zeros(0, 4)],
        gt_labels=[torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)],
        image_ids=[1, 2],
    )


@pytest.mark.parametrize(("head_type", "iou_branch"), [("paa", True), ("iop", False), ("cop", True)])
def test_tiny_detector_forward_and_predict(head_type: str, iou_branch: bool) -> None:
    detector = build_detector(_tiny_config(head_type, iou_branch))
    assert isinstance(detector, PAADetector) and detector.num_classes == 4
    batch = _batch()
    detector.train()
    outputs = detector(batch.images)
    # 16*20 + 8*10 + 4*5 + 2*3 + 1*2 anchors for a 128x160 input
    assert outputs.level_sizes == [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]
    assert outputs.class_scores.shape == (2, 428, 4) and outputs.box_deltas.shape == (2, 428, 4)
    assert (outputs.iou_logits is not None) == iou_branch
    grid = detector.anchor_grid(outputs.level_sizes, batch.images.device)
    assert grid.num_anchors == 428
    assert detector.anchor_generator.valid_mask(grid, batch.padded_sizes).shape == (2, 428)

    detections = detector.predict(batch)
    assert detector.training  # mode restored
    assert len(detections) == 2
    for result, (height, width) in zip(detections, batch.original_sizes.tolist(), strict=True):
        assert isinstance(result, Detections)
        count = result.boxes.shape[0]
        assert 0 < count <= 100
        assert result.scores.shape == (count,) and result.labels.shape == (count,)
        assert not result.boxes.requires_grad
        assert bool(torch.all(result.scores > 0.001))
        assert bool(torch.all((result.labels >= 0) & (result.labels < 4)))
        # original frame: clipped to the resized image, then divided by the scale factor
        assert float(result.boxes[:, 0::2].max()) <= width + 1e-3
        assert float(result.boxes[:, 1::2].max()) <= height + 1e-3


def test_detector_rejects_inconsistent_levels() -> None:
    config = _tiny_config()
    config.anchors.strides = [8, 16, 32]
    with pytest.raises(ValueError, match="model.anchors.strides"):
        build_detector(config)


def test_mmdet_state_dict_round_trip_loads_strictly() -> None:
    torch.manual_seed(0)
    detector = build_detector(_tiny_config())
    mmdet_state = to_mmdet_paa_state_dict(detector.state_dict())
    # spot-check the mmdet names of §10
    for key in [
        "backbone.layer2.0.downsample.0.weight",
        "neck.lateral_convs.2.conv.bias",
        "neck.fpn_convs.2.conv.weight",
        "neck.fpn_convs.3.conv.weight",
        "neck.fpn_convs.4.conv.bias",
        "bbox_head.cls_convs.1.conv.weight",
        "bbox_head.reg_convs.0.gn.bias",
        "bbox_head.atss_cls.bias",
        "bbox_head.atss_reg.weight",
        "bbox_head.atss_centerness.weight",
        "bbox_head.scales.4.scale",
    ]:
        assert key in mmdet_state, key
    assert torch.equal(mmdet_state["neck.fpn_convs.4.conv.weight"], detector.neck.extra_convs[1].weight)
    assert torch.equal(mmdet_state["bbox_head.reg_convs.0.gn.weight"], detector.head.reg_convs[0].norm.weight)

    fresh = build_detector(_tiny_config())
    fresh.load_state_dict(convert_mmdet_paa_state_dict({"state_dict": mmdet_state}), strict=True)
    images = torch.randn(1, 3, 64, 160)  # P7 1x2: GN(32) on 32 channels needs > 1 value
    detector.eval()
    fresh.eval()
    with torch.no_grad():
        expected, actual = detector(images), fresh(images)
    assert torch.equal(expected.class_scores, actual.class_scores)
    assert torch.equal(expected.box_deltas, actual.box_deltas)
    assert torch.equal(expected.iou_logits, actual.iou_logits)


def test_mmdet_conversion_names_unmapped_keys() -> None:
    with pytest.raises(KeyError, match=r"bbox_head\.objectness\.weight"):
        convert_mmdet_paa_state_dict(
            {"bbox_head.objectness.weight": torch.zeros(1), "neck.fpn_convs.0.conv.bias": torch.zeros(1)}
        )
    with pytest.raises(KeyError, match=r"head\.coefficient_predictor\.weight"):
        to_mmdet_paa_state_dict(build_detector(_tiny_config("cop")).state_dict())
