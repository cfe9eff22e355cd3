"""The export graph's batched post-processing equals the eager ``postprocess_detections`` (same
detectors, same inputs), its pieces equal their eager counterparts, and the NMS operator's ONNX
translation equals the eager operator under ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn
from torchvision.ops import batched_nms

from ladet.config.schema import ModelConfig
from ladet.export.graph import DetectionGraph, UnsupportedExportError, batched_score_voting, graph_anchors
from ladet.export.nms import ONNX_TRANSLATIONS, class_wise_nms_mask
from ladet.export.parity import compare_detections, match_detections
from ladet.models.anchors import AnchorGenerator
from ladet.models.detector import PAADetector, build_detector
from ladet.models.postprocess import postprocess_detections, score_voting


def _detector(head: str, iou_branch: bool = True, nms_pre: int = 1000, seed: int = 0) -> PAADetector:
    config = ModelConfig(num_classes=4)
    config.backbone.depth, config.backbone.weights = 18, None
    config.neck.out_channels = config.head.feat_channels = 32
    config.head.num_convs, config.head.type, config.head.iou_branch = 1, head, iou_branch
    config.test.nms_pre = nms_pre
    torch.manual_seed(seed)
    detector = build_detector(config).eval()
    with torch.no_grad():  # spread the predictions: many classes above threshold, overlapping boxes
        for parameter in detector.head.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return detector


@pytest.mark.parametrize(
    ("head", "iou_branch", "nms_pre"),
    [("paa", True, 1000), ("paa", True, 30), ("iop", False, 1000), ("cop", True, 50), ("paa", False, 0)],
)
def test_graph_equals_eager_postprocess(head: str, iou_branch: bool, nms_pre: int) -> None:
    detector = _detector(head, iou_branch, nms_pre)
    if not iou_branch:  # without the IoU factor a random head scores ~π = 0.01: a lower threshold
        detector.config.test.score_threshold = 1e-3
    images = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(1))
    image_sizes = torch.tensor([[96, 150], [70, 160]])
    with torch.no_grad():
        boxes, scores, labels, counts = DetectionGraph(detector)(images, image_sizes)
        outputs = detector(images)
        grid = detector.anchor_grid(outputs.level_sizes, "cpu")
        expected = postprocess_detections(
            outputs, grid, detector.box_coder, image_sizes, torch.ones(2, 2), detector.config.test
        )
    assert counts.tolist() == [len(d.scores) for d in expected]
    assert min(counts.tolist()) > 10, "the test must exercise NMS and voting on real detections"
    for image, reference in enumerate(expected):
        count = int(counts[image])
        difference = compare_detections(
            labels[image, :count].numpy(),
            scores[image, :count].numpy(),
            boxes[image, :count].numpy(),
            reference.labels.numpy(),
            reference.scores.numpy(),
            reference.boxes.numpy(),
        )
        assert difference.within(score_tolerance=1e-6, box_tolerance=1e-3), difference
        assert torch.all(scores[image, :count][1:] <= scores[image, :count][:-1])  # sorted
        assert torch.all(labels[image, count:] == -1) and torch.all(scores[image, count:] == 0)
        assert torch.all(boxes[image, count:] == 0)


def test_graph_anchors_equal_the_anchor_generator() -> None:
    sizes = [(12, 20), (6, 10), (3, 5), (2, 3), (1, 2)]
    generator = AnchorGenerator([8, 16, 32, 64, 128], 4.0)
    assert torch.equal(graph_anchors(sizes, [8, 16, 32, 64, 128], 4.0), generator.grid(sizes, "cpu").anchors)


def test_batched_score_voting_equals_score_voting_per_image() -> None:
    generator = torch.Generator().manual_seed(3)
    corners = torch.rand(2, 40, 2, generator=generator) * 80
    candidate_boxes = torch.cat([corners, corners + 5 + torch.rand(2, 40, 2, generator=generator) * 30], -1)
    candidate_scores = torch.rand(2, 40, 3, generator=generator)  # [B, K, C]
    detection_boxes = candidate_boxes[:, :7] + torch.rand(2, 7, 4, generator=generator)
    detection_labels = torch.randint(0, 3, (2, 7), generator=generator)
    voted = batched_score_voting(
        detection_boxes, detection_labels, candidate_boxes, candidate_scores, 0.3, 0.025
    )
    for image in range(2):
        expected = score_voting(
            detection_boxes[image],
            detection_labels[image],
            candidate_boxes[image],
            candidate_scores[image],
            0.3,
            0.025,
        )
        assert torch.allclose(voted[image], expected, atol=1e-4)


def test_nms_mask_keeps_what_batched_nms_keeps() -> None:
    generator = torch.Generator().manual_seed(5)
    corners = torch.rand(2, 60, 2, generator=generator) * 50
    boxes = torch.cat([corners, corners + 10 + torch.rand(2, 60, 2, generator=generator) * 20], -1)
    scores = torch.rand(2, 3, 60, generator=generator)  # [B, C, K]
    mask = class_wise_nms_mask(boxes, scores, 0.5, 0.2, 100)
    for image in range(2):
        for label in range(3):
            above = (scores[image, label] > 0.2).nonzero().squeeze(1)
            kept = above[
                batched_nms(boxes[image, above], scores[image, label, above], torch.zeros_like(above), 0.5)
            ]
            assert sorted(kept.tolist()) == mask[image, label].nonzero().squeeze(1).tolist()


class _NmsOnly(nn.Module):
    def forward(self, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return class_wise_nms_mask(boxes, scores, 0.5, 0.2, 1000)


def test_nms_translation_equals_eager_under_onnx_runtime(tmp_path) -> None:
    from torch.export import Dim

    generator = torch.Generator().manual_seed(7)
    corners = torch.rand(2, 50, 2, generator=generator) * 50
    boxes = torch.cat([corners, corners + 10 + torch.rand(2, 50, 2, generator=generator) * 20], -1)
    scores = torch.rand(2, 3, 50, generator=generator)
    program = torch.onnx.export(
        _NmsOnly(),
        (boxes, scores),
        dynamo=True,
        dynamic_shapes={
            "boxes": {0: Dim("b"), 1: Dim("k")},
            "scores": {0: Dim("b"), 1: Dim("c"), 2: Dim("k")},
        },
        custom_translation_table=ONNX_TRANSLATIONS,
        verbose=False,
    )
    assert program is not None
    path = tmp_path / "nms.onnx"
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(2, 3, 50), (1, 5, 80), (3, 1, 7)]:
        corners = torch.rand(shape[0], shape[2], 2, generator=generator) * 50
        boxes = torch.cat(
            [corners, corners + 10 + torch.rand(shape[0], shape[2], 2, generator=generator) * 20], -1
        )
        scores = torch.rand(*shape, generator=generator)
        (onnx_mask,) = session.run(None, {"boxes": boxes.numpy(), "scores": scores.numpy()})
        assert np.array_equal(onnx_mask, class_wise_nms_mask(boxes, scores, 0.5, 0.2, 1000).numpy()), shape
    # boundaries: IoU exactly 0.5 is kept (strict >), a score exactly at the threshold is dropped
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 10, 20], [50, 50, 60, 60], [80, 80, 90, 90]]])
    scores = torch.tensor([[[0.9, 0.8, 0.2, 0.21]]])
    (onnx_mask,) = session.run(None, {"boxes": boxes.numpy(), "scores": scores.numpy()})
    assert onnx_mask.tolist() == [[[True, True, False, True]]]
    assert class_wise_nms_mask(boxes, scores, 0.5, 0.2, 1000).tolist() == [[[True, True, False, True]]]


def test_unsupported_options_are_refused() -> None:
    detector = _detector("paa")
    detector.config.test.max_per_image = 0
    with pytest.raises(UnsupportedExportError, match="max_per_image=0"):
        DetectionGraph(detector)
    detector.config.test.max_per_image, detector.config.test.score_threshold = 100, -0.1
    with pytest.raises(UnsupportedExportError, match="score_threshold=-0.1"):
        DetectionGraph(detector)
    with pytest.raises(UnsupportedExportError, match="expected a ladet PAADetector"):
        DetectionGraph(nn.Conv2d(3, 3, 1))


def test_matching_pairs_near_ties_and_reports_mismatches() -> None:
    labels = np.array([1, 2, 1])
    scores = np.array([0.5, 0.5 - 1e-8, 0.3], dtype=np.float32)
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 3, 3]], dtype=np.float32)
    order = np.array([1, 0, 2])  # the near-tie swapped
    index_a, index_b = match_detections(labels, scores, boxes, labels[order], scores[order], boxes[order])
    assert np.array_equal(order[index_b], index_a)
    assert compare_detections(labels, scores, boxes, labels[order], scores[order], boxes[order]).within()
    moved = boxes.copy()
    moved[2, 0] += 0.05
    difference = compare_detections(labels, scores, boxes, labels, scores, moved)
    assert not difference.within() and difference.max_box_difference == pytest.approx(0.05, abs=1e-6)
    assert not compare_detections(labels, scores, boxes, labels[:2], scores[:2], boxes[:2]).within()
