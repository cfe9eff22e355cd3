"""Test-time post-processing and vectorised score voting (docs/algorithms.md §1.7)."""

from __future__ import annotations

import math

import torch
from torchvision.ops import box_iou, nms

from ladet.config.schema import TestConfig as InferenceConfig
from ladet.models.anchors import AnchorGenerator
from ladet.models.box_coder import DeltaBoxCoder
from ladet.models.outputs import HeadOutputs
from ladet.models.postprocess import final_scores, postprocess_detections, score_voting

SIGMA = 0.025


def test_score_voting_hand_case() -> None:
    candidate_boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # A
            [0.0, 0.0, 10.0, 20.0],  # B: IoU 0.5 with A
            [20.0, 20.0, 30.0, 30.0],  # C: disjoint
            [5.0, 0.0, 15.0, 10.0],  # D: IoU 1/3 with A, 0.2 with B
        ]
    )
    candidate_scores = torch.tensor([[0.8, 0.0], [0.6, 0.9], [0.7, 0.0], [0.04, 0.5]])  # [K, C]
    detections = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]])
    labels = torch.tensor([0, 1])
    voted = score_voting(detections, labels, candidate_boxes, candidate_scores, 0.05, SIGMA)
    # class 0: A (w 0.8) and B (w exp(-0.25/0.025) * 0.6); D is below the threshold for class 0
    weight_b = math.exp(-(0.5**2) / SIGMA) * 0.6
    expected_first = [0.0, 0.0, 10.0, (0.8 * 10 + weight_b * 20) / (0.8 + weight_b)]
    # class 1: D itself (w 0.5) and B (IoU 0.2, w exp(-0.64/0.025) * 0.9); A has score 0 for class 1
    weight_b1 = math.exp(-(0.8**2) / SIGMA) * 0.9
    expected_second = [
        5.0 * 0.5 / (0.5 + weight_b1),
        0.0,
        (15.0 * 0.5 + 10.0 * weight_b1) / (0.5 + weight_b1),
        (10.0 * 0.5 + 20.0 * weight_b1) / (0.5 + weight_b1),
    ]
    assert torch.allclose(voted, torch.tensor([expected_first, expected_second]), atol=1e-5)
    assert voted[0, 3] > 10.0  # B really pulled the box


def _voting_loop_reference(detections, labels, candidate_boxes, candidate_scores, threshold):
    voted = []
    for d in range(detections.shape[0]):
        numerator = torch.zeros(4, dtype=torch.float64)
        denominator = 0.0
        for k in range(candidate_boxes.shape[0]):
            score = float(candidate_scores[k, labels[d]])
            iou = float(box_iou(detections[d : d + 1], candidate_boxes[k : k + 1])[0, 0])
            if score > threshold and iou > 0.01:
                weight = math.exp(-((1 - iou) ** 2) / SIGMA) * score
                numerator += weight * candidate_boxes[k].double()
                denominator += weight
        voted.append(numerator / denominator if denominator > 0 else detections[d].double())
    return torch.stack(voted).float()


def test_score_voting_matches_loop_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    top_left = torch.rand(80, 2, generator=generator) * 60
    candidate_boxes = torch.cat([top_left, top_left + 5 + torch.rand(80, 2, generator=generator) * 40], dim=1)
    candidate_scores = torch.rand(80, 4, generator=generator) * 0.3
    pick = torch.tensor([0, 5, 17, 33, 60, 79])
    detections = candidate_boxes[pick]
    labels = torch.tensor([0, 1, 2, 3, 0, 2])
    candidate_scores[pick, labels] = 0.5  # each detection is its own candidate
    voted = score_voting(detections, labels, candidate_boxes, candidate_scores, 0.05, SIGMA)
    expected = _voting_loop_reference(detections, labels, candidate_boxes, candidate_scores, 0.05)
    assert torch.allclose(voted, expected, atol=1e-4)


def test_score_voting_empty_and_degenerate() -> None:
    empty = score_voting(
        torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.rand(5, 4), torch.rand(5, 2), 0.05, SIGMA
    )
    assert empty.shape == (0, 4)
    # zero-area clipped boxes must not produce NaN
    flat = torch.tensor([[30.0, 0.0, 30.0, 10.0]])
    voted = score_voting(flat, torch.tensor([0]), flat.repeat(3, 1), torch.full((3, 1), 0.5), 0.05, SIGMA)
    assert torch.equal(voted, flat)


def _single_level_setup():
    generator = AnchorGenerator([8], 8)
    grid = generator.grid([(2, 2)], "cpu")  # anchors centred (0,0), (8,0), (0,8), (8,8), side 64
    probabilities = torch.zeros(1, 4, 2)
    probabilities[0, 0, 0] = 0.9
    probabilities[0, 1, 0] = 0.05  # exactly at the threshold: dropped (strict >)
    probabilities[0, 2, 1] = 0.3
    probabilities[0, 3, 0] = 0.2
    outputs = HeadOutputs(
        probabilities, torch.zeros(1, 4, 4), None, [(2, 2)], class_scores_are_probabilities=True
    )
    return grid, outputs


def test_postprocess_hand_case_with_voting_and_rescale() -> None:
    grid, outputs = _single_level_setup()
    image_sizes = torch.tensor([[40, 30]])  # (h, w)
    scale_factors = torch.tensor([[0.5, 2.0]])  # (sx, sy)
    config = InferenceConfig(nms_pre=1000, score_threshold=0.05, nms_iou_threshold=0.6, max_per_image=100)
    (result,) = postprocess_detections(outputs, grid, DeltaBoxCoder(), image_sizes, scale_factors, config)
    # clipped boxes: a0 [0,0,30,32], a2 [0,0,30,40], a3 [0,0,30,40]; IoU(a0, a3) = 960/1200 = 0.8 > 0.6
    assert result.scores.tolist() == [0.8999999761581421, 0.30000001192092896]
    assert result.labels.tolist() == [0, 1]
    weight = math.exp(-(0.2**2) / SIGMA) * 0.2  # a3 votes for a0 with IoU 0.8
    voted_y2 = (0.9 * 32 + weight * 40) / (0.9 + weight)
    expected = torch.tensor([[0.0, 0.0, 30.0, voted_y2], [0.0, 0.0, 30.0, 40.0]]) / torch.tensor(
        [0.5, 2.0, 0.5, 2.0]
    )
    assert torch.allclose(result.boxes, expected, atol=1e-4)

    config.score_voting = False
    (plain,) = postprocess_detections(outputs, grid, DeltaBoxCoder(), image_sizes, scale_factors, config)
    assert torch.allclose(plain.boxes[0], torch.tensor([0.0, 0.0, 60.0, 16.0]))

    config.max_per_image = 1
    (top_one,) = postprocess_detections(outputs, grid, DeltaBoxCoder(), image_sizes, scale_factors, config)
    assert top_one.labels.tolist() == [0] and top_one.boxes.shape == (1, 4)


def test_nms_pre_limits_candidates_per_level() -> None:
    grid, outputs = _single_level_setup()
    config = InferenceConfig(nms_pre=2, nms_iou_threshold=0.99)
    (result,) = postprocess_detections(
        outputs, grid, DeltaBoxCoder(), torch.tensor([[40, 30]]), torch.tensor([[1.0, 1.0]]), config
    )
    # only anchors 0 (0.9) and 2 (0.3) survive the per-level top-2, so anchor 3 neither appears nor votes
    assert result.scores.tolist() == [0.8999999761581421, 0.30000001192092896]
    assert torch.allclose(result.boxes[0], torch.tensor([0.0, 0.0, 30.0, 32.0]))


def test_empty_detections() -> None:
    grid, outputs = _single_level_setup()
    outputs.class_scores = torch.full_like(outputs.class_scores, 0.01)
    results = postprocess_detections(
        outputs,
        grid,
        DeltaBoxCoder(),
        torch.tensor([[40, 30]]),
        torch.tensor([[1.0, 1.0]]),
        InferenceConfig(),
    )
    assert len(results) == 1
    assert results[0].boxes.shape == (0, 4) and results[0].scores.shape == (0,)
    assert results[0].labels.shape == (0,) and results[0].labels.dtype == torch.long


def test_final_scores_with_and_without_iou_branch() -> None:
    logits = torch.tensor([[[0.0, math.log(3.0)]]])  # σ: 0.5, 0.75
    with_iou = HeadOutputs(logits, torch.zeros(1, 1, 4), torch.tensor([[0.0]]), [(1, 1)])
    assert torch.allclose(final_scores(with_iou), torch.tensor([[[0.5, math.sqrt(0.375)]]]))
    probabilities = HeadOutputs(torch.tensor([[[0.2, 0.4]]]), torch.zeros(1, 1, 4), None, [(1, 1)], True)
    assert torch.allclose(final_scores(probabilities), torch.tensor([[[0.2, 0.4]]]))


def _pipeline_reference(outputs, grid, image_sizes, scale_factors, config):
    """Straightforward per-image, per-level, per-class version of §1.7."""
    coder = DeltaBoxCoder()
    probabilities = outputs.class_scores.sigmoid()
    results = []
    for image in range(outputs.class_scores.shape[0]):
        scores = (probabilities[image] * outputs.iou_logits[image].sigmoid()[:, None]).sqrt()
        keep_indices = []
        for level_slice in grid.level_slices():
            best = scores[level_slice].max(dim=1).values
            order = best.argsort(descending=True)[: config.nms_pre] + level_slice.start
            keep_indices.append(order)
        indices = torch.cat(keep_indices)
        boxes = coder.decode(grid.anchors[indices], outputs.box_deltas[image, indices])
        height, width = image_sizes[image].tolist()
        boxes = torch.stack(
            [
                boxes[:, 0].clamp(0, width),
                boxes[:, 1].clamp(0, height),
                boxes[:, 2].clamp(0, width),
                boxes[:, 3].clamp(0, height),
            ],
            1,
        )
        scores = scores[indices]
        detections = []
        for label in range(scores.shape[1]):
            mask = scores[:, label] > config.score_threshold
            class_boxes, class_scores = boxes[mask], scores[mask, label]
            for kept in nms(class_boxes, class_scores, config.nms_iou_threshold).tolist():
                detections.append((float(class_scores[kept]), label, class_boxes[kept]))
        detections.sort(key=lambda item: -item[0])
        detections = detections[: config.max_per_image]
        voted = _voting_loop_reference(
            torch.stack([d[2] for d in detections]),
            torch.tensor([d[1] for d in detections]),
            boxes,
            scores,
            config.score_threshold,
        )
        scale = scale_factors[image].repeat(2)
        results.append(([d[0] for d in detections], [d[1] for d in detections], voted / scale))
    return results


def test_pipeline_matches_straightforward_reference() -> None:
    generator = torch.Generator().manual_seed(7)
    level_sizes = [(6, 7), (3, 4), (2, 2), (1, 1), (1, 1)]
    grid = AnchorGenerator([8, 16, 32, 64, 128], 8).grid(level_sizes, "cpu")
    outputs = HeadOutputs(
        class_scores=torch.randn(2, grid.num_anchors, 3, generator=generator) * 2 - 2,
        box_deltas=torch.randn(2, grid.num_anchors, 4, generator=generator),
        iou_logits=torch.randn(2, grid.num_anchors, generator=generator),
        level_sizes=level_sizes,
    )
    image_sizes = torch.tensor([[48, 56], [40, 30]])
    scale_factors = torch.tensor([[1.5, 1.5], [0.5, 0.75]])
    config = InferenceConfig(nms_pre=20, max_per_image=15)
    results = postprocess_detections(outputs, grid, DeltaBoxCoder(), image_sizes, scale_factors, config)
    reference = _pipeline_reference(outputs, grid, image_sizes, scale_factors, config)
    for result, (scores, labels, boxes) in zip(results, reference, strict=True):
        assert len(scores) == 15
        assert torch.allclose(result.scores, torch.tensor(scores), atol=1e-6)
        assert result.labels.tolist() == labels
        assert torch.allclose(result.boxes, boxes, atol=1e-3)
