"""Test-time post-processing of PAA head outputs with vectorised score voting (docs/algorithms.md §1.7).

Steps per image (the per-level top-k and the decode are batched over images):

1. p = σ(z) (or the head's probabilities); with an IoU branch S = sqrt(p · σ(o)), else S = p.
2. Per level keep the ``nms_pre`` anchors with the largest max_c S.
3. Decode clipped to the resized (unpadded) image.
4. Keep (anchor, class) pairs with S > ``score_threshold`` (strict), class-aware NMS, top
   ``max_per_image``.
5. Score voting: each kept box becomes the weighted mean of the step-2 boxes whose score for the
   same class is > threshold and whose IoU with it is > 0.01, weights exp(−(1−IoU)²/σ) · S;
   the score is unchanged. One [D, K] IoU matrix per image, no per-detection loop.
6. Boxes are divided by the per-axis resize factors (original image frame).

All of it runs in fp32 with autocast disabled (CPU and CUDA), whatever precision the head ran in:
under autocast, score voting's ``weights @ candidate_boxes`` would be lowered to fp16 / bf16 and
move the voted boxes by pixels.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from ladet.boxes import aligned_iou
from ladet.config.schema import TestConfig
from ladet.models.anchors import AnchorGrid
from ladet.models.box_coder import DeltaBoxCoder
from ladet.models.outputs import HeadOutputs
from ladet.structures import Detections

__all__ = ["postprocess_detections", "score_voting", "final_scores"]

VOTING_MIN_IOU = 0.01
_AUTOCAST_DEVICE_TYPES = ("cpu", "cuda")

_Parameters = ParamSpec("_Parameters")
_Result = TypeVar("_Result")


def _without_autocast(function: Callable[_Parameters, _Result]) -> Callable[_Parameters, _Result]:
    """Runs ``function`` with autocast disabled on every device type where it is enabled."""

    @functools.wraps(function)
    def fp32_function(*args: _Parameters.args, **kwargs: _Parameters.kwargs) -> _Result:
        with contextlib.ExitStack() as stack:
            for device_type in _AUTOCAST_DEVICE_TYPES:
                if torch.is_autocast_enabled(device_type):
                    stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
            return function(*args, **kwargs)

    return fp32_function


def final_scores(outputs: HeadOutputs) -> Tensor:
    """[B, N, C] test scores: sqrt(p · σ(iou)) with an IoU branch, p otherwise (fp32)."""
    class_scores = outputs.class_scores.float()
    probabilities = class_scores if outputs.class_scores_are_probabilities else class_scores.sigmoid()
    if outputs.iou_logits is None:
        return probabilities
    return (probabilities * outputs.iou_logits.float().sigmoid().unsqueeze(-1)).sqrt()


def _top_candidates_per_level(scores: Tensor, grid: AnchorGrid, nms_pre: int) -> Tensor:
    """[B, N, C] scores -> [B, K] anchor indices: per level the ``nms_pre`` best by max_c score."""
    best_per_anchor = scores.max(dim=-1).values  # [B, N]
    indices: list[Tensor] = []
    for level_slice in grid.level_slices():
        level_scores = best_per_anchor[:, level_slice]  # [B, N_l]
        count = level_scores.shape[1]
        if 0 < nms_pre < count:
            top = level_scores.topk(nms_pre, dim=1).indices + level_slice.start  # [B, nms_pre]
        else:
            top = torch.arange(level_slice.start, level_slice.stop, device=scores.device).expand(
                scores.shape[0], count
            )
        indices.append(top)
    return torch.cat(indices, dim=1)


@_without_autocast
def score_voting(
    detection_boxes: Tensor,
    detection_labels: Tensor,
    candidate_boxes: Tensor,
    candidate_scores: Tensor,
    score_threshold: float,
    sigma: float,
) -> Tensor:
    """PAA score voting, vectorised over detections and classes.

    Args:
        detection_boxes: [D, 4] boxes kept by NMS.
        detection_labels: [D] long, their classes.
        candidate_boxes: [K, 4] all pre-NMS boxes.
        candidate_scores: [K, C] final scores S of every candidate box for every class.
        score_threshold: a candidate counts for class c only if S[k, c] > threshold.
        sigma: the voting bandwidth (0.025).

    Returns:
        [D, 4] voted boxes Σ_k w_dk · box_k / Σ_k w_dk with
        w_dk = exp(−(1 − IoU_dk)² / σ) · S[k, c_d] over candidates with S[k, c_d] > threshold and
        IoU_dk > 0.01. A detection without candidates keeps its box.
    """
    if detection_boxes.shape[0] == 0 or candidate_boxes.shape[0] == 0:
        return detection_boxes
    # mmdet-style IoU (union floored at 1e-6): degenerate clipped boxes give 0, never NaN
    ious = aligned_iou(detection_boxes.unsqueeze(1), candidate_boxes.unsqueeze(0))  # [D, K]
    scores = candidate_scores[:, detection_labels].t()  # [D, K]: S of each candidate for d's class
    candidate = (scores > score_threshold) & (ious > VOTING_MIN_IOU)  # [D, K]
    weights = torch.where(candidate, torch.exp(-((1.0 - ious) ** 2) / sigma) * scores, 0.0)  # [D, K]
    weight_sum = weights.sum(dim=1, keepdim=True)  # [D, 1]
    voted = (weights @ candidate_boxes) / weight_sum.clamp(min=torch.finfo(weights.dtype).tiny)  # [D, 4]
    return torch.where(weight_sum > 0, voted, detection_boxes)


@_without_autocast
def postprocess_detections(
    outputs: HeadOutputs,
    grid: AnchorGrid,
    box_coder: DeltaBoxCoder,
    image_sizes: Tensor,
    scale_factors: Tensor,
    test_config: TestConfig,
) -> list[Detections]:
    """Turns head outputs into per-image detections in the original image frame.

    Args:
        outputs: the head's outputs for B images (class scores [B, N, C]).
        grid: the anchors of the batch (N anchors).
        box_coder: decodes the deltas.
        image_sizes: [B, 2] (h, w) after resizing, before padding; decoded boxes are clipped to it.
        scale_factors: [B, 2] (scale_x, scale_y) = resized / original size.
        test_config: nms_pre, score_threshold, nms_iou_threshold, max_per_image, score_voting,
            score_voting_sigma.

    Returns:
        B :class:`Detections`, each at most ``max_per_image`` boxes sorted by decreasing score.
    """
    scores = final_scores(outputs)  # [B, N, C]
    batch_size, num_anchors, num_classes = scores.shape
    if num_anchors != grid.num_anchors:
        raise ValueError(
            f"postprocess_detections: outputs have {num_anchors} anchors, grid has {grid.num_anchors}"
        )
    indices = _top_candidates_per_level(scores, grid, test_config.nms_pre)  # [B, K]
    candidate_scores = scores.gather(1, indices.unsqueeze(-1).expand(-1, -1, num_classes))  # [B, K, C]
    box_index = indices.unsqueeze(-1).expand(-1, -1, 4)  # [B, K, 4]
    candidate_deltas = outputs.box_deltas.float().gather(1, box_index)  # [B, K, 4]
    candidate_anchors = grid.anchors[indices]  # [B, K, 4]
    # [B, K, 4], clipped to each image's resized (unpadded) size
    candidate_boxes = box_coder.decode(candidate_anchors, candidate_deltas, max_shape=image_sizes)
    scale_xyxy = scale_factors.to(candidate_boxes).repeat(1, 2)  # [B, 4] (sx, sy, sx, sy)

    detections: list[Detections] = []
    for image in range(batch_size):
        image_scores = candidate_scores[image]  # [K, C]
        image_boxes = candidate_boxes[image]  # [K, 4]
        anchor_index, labels = (image_scores > test_config.score_threshold).nonzero(as_tuple=True)
        boxes = image_boxes[anchor_index]  # [M, 4]
        kept_scores = image_scores[anchor_index, labels]  # [M]
        keep = batched_nms(boxes, kept_scores, labels, test_config.nms_iou_threshold)
        if test_config.max_per_image > 0:
            keep = keep[: test_config.max_per_image]
        boxes, kept_scores, labels = boxes[keep], kept_scores[keep], labels[keep]
        if test_config.score_voting:
            boxes = score_voting(
                boxes,
                labels,
                image_boxes,
                image_scores,
                test_config.score_threshold,
                test_config.score_voting_sigma,
            )
        detections.append(Detections(boxes=boxes / scale_xyxy[image], scores=kept_scores, labels=labels))
    return detections
