"""The end-to-end detection graph that ``ladet export --format onnx`` writes (docs/algorithms.md §1.7).

:class:`DetectionGraph` wraps an evaluation detector: ``(images [B, 3, H, W], image_sizes [B, 2])
-> (boxes [B, D, 4], scores [B, D], labels [B, D], num_detections [B])`` with D =
``model.test.max_per_image``. It is the batched, fixed-shape form of
:func:`ladet.models.postprocess.postprocess_detections` (tested equal to it), written so that
``torch.export`` sees no data-dependent shape and no Python loop over images:

1. final scores S (sqrt(p · σ(iou)) or p), as in ``final_scores``;
2. per level the ``nms_pre`` best anchors by max_c S: each level is padded with ``nms_pre``
   filler entries before ``topk(nms_pre)``, so K = ``nms_pre`` x levels for every input size; a
   filler (only present when a level has fewer anchors than ``nms_pre``) gets score −1 for every
   class and so never passes the threshold, NMS or voting;
3. decode clipped to ``image_sizes`` (the resized, unpadded size);
4. class-wise NMS of the (candidate, class) pairs with S > threshold
   (:func:`ladet.export.nms.class_wise_nms_mask`, ONNX ``NonMaxSuppression``), then the D best
   kept pairs of each image by score (a [B, C·K] masked ``topk``);
5. score voting over the [B, D, K] IoU matrix.

Boxes stay in the *resized* frame (the runtime divides by the resize factors). Rows ``>=
num_detections[b]`` are padding: box 0, score 0, label −1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ladet.boxes import aligned_iou
from ladet.models.postprocess import VOTING_MIN_IOU, final_scores

__all__ = ["DetectionGraph", "UnsupportedExportError", "graph_anchors", "batched_score_voting"]

FILLER_SCORE = -1.0


class UnsupportedExportError(ValueError):
    """The detector uses a head or a test option the export graph does not express."""


def graph_anchors(level_sizes: list[tuple[Any, Any]], strides: list[int], octave_base_scale: float) -> Tensor:
    """[N, 4] anchors of :class:`ladet.models.anchors.AnchorGenerator`, built from (symbolic) sizes."""
    anchors: list[Tensor] = []
    for (height, width), stride in zip(level_sizes, strides, strict=True):
        half_side = 0.5 * octave_base_scale * stride
        shift_y = torch.arange(height, dtype=torch.float32) * stride  # [H]
        shift_x = torch.arange(width, dtype=torch.float32) * stride  # [W]
        centre_y, centre_x = torch.meshgrid(shift_y, shift_x, indexing="ij")  # [H, W]
        centres = torch.stack([centre_x, centre_y, centre_x, centre_y], dim=-1).reshape(-1, 4)
        anchors.append(centres + torch.tensor([-half_side, -half_side, half_side, half_side]))
    return torch.cat(anchors)


def batched_score_voting(
    detection_boxes: Tensor,
    detection_labels: Tensor,
    candidate_boxes: Tensor,
    candidate_scores: Tensor,
    score_threshold: float,
    sigma: float,
) -> Tensor:
    """:func:`ladet.models.postprocess.score_voting` over a batch of images.

    Args:
        detection_boxes: [B, D, 4]; detection_labels: [B, D] long (any value >= 0 on padding rows).
        candidate_boxes: [B, K, 4]; candidate_scores: [B, K, C].

    Returns:
        [B, D, 4] voted boxes (a detection without voters keeps its box).
    """
    ious = aligned_iou(detection_boxes.unsqueeze(2), candidate_boxes.unsqueeze(1))  # [B, D, K]
    num_candidates = candidate_scores.shape[1]
    by_class = candidate_scores.transpose(1, 2)  # [B, C, K]
    scores = by_class.gather(1, detection_labels.unsqueeze(-1).expand(-1, -1, num_candidates))  # [B, D, K]
    voter = (scores > score_threshold) & (ious > VOTING_MIN_IOU)
    weights = torch.where(voter, torch.exp(-((1.0 - ious) ** 2) / sigma) * scores, 0.0)  # [B, D, K]
    weight_sum = weights.sum(dim=2, keepdim=True)  # [B, D, 1]
    voted = torch.bmm(weights, candidate_boxes) / weight_sum.clamp(min=torch.finfo(weights.dtype).tiny)
    return torch.where(weight_sum > 0, voted, detection_boxes)


class DetectionGraph(nn.Module):
    """Evaluation detector + batched post-processing, the module that is exported to ONNX.

    Args:
        detector: a :class:`ladet.models.detector.PAADetector` in eval mode.

    Raises:
        UnsupportedExportError: ``max_per_image <= 0`` (unbounded output), a negative score
            threshold (fillers would pass it), or a head without a ``class_scores`` form.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        config = getattr(detector, "config", None)
        if config is None or not hasattr(detector, "anchor_generator"):
            raise UnsupportedExportError(
                f"cannot export {type(detector).__name__}: expected a ladet PAADetector (with .config)"
            )
        test = config.test
        if test.max_per_image <= 0:
            raise UnsupportedExportError(
                f"model.test.max_per_image={test.max_per_image}: the ONNX graph pads detections to a fixed "
                "maximum; set a positive max_per_image"
            )
        if test.score_threshold < 0:
            raise UnsupportedExportError(
                f"model.test.score_threshold={test.score_threshold}: the ONNX graph needs a threshold >= 0"
            )
        self.detector = detector
        self.test_config = test
        anchor_generator: Any = detector.anchor_generator
        self.strides = list(anchor_generator.strides)
        self.octave_base_scale = float(anchor_generator.octave_base_scale)

    def forward(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Detections of a padded batch.

        Args:
            images: [B, 3, H, W] float32, normalised, padded (H, W multiples of the size divisor).
            image_sizes: [B, 2] int64 (h, w) of each image after resizing, before padding.

        Returns:
            boxes [B, D, 4] float32 (resized frame), scores [B, D] float32, labels [B, D] int64
            (−1 on padding rows), num_detections [B] int64; rows sorted by decreasing score.
        """
        detector: Any = self.detector
        features = detector.features(images)
        outputs = detector.head(features)
        scores = final_scores(outputs)  # [B, N, C]
        deltas = outputs.box_deltas.float()  # [B, N, 4]
        level_sizes = [(feature.shape[-2], feature.shape[-1]) for feature in features]
        anchors = graph_anchors(level_sizes, self.strides, self.octave_base_scale).to(images.device)  # [N, 4]
        index, real = self._top_candidates_per_level(scores, level_sizes)  # [B, K] each
        num_classes = scores.shape[-1]
        candidate_scores = scores.gather(1, index.unsqueeze(-1).expand(-1, -1, num_classes))  # [B, K, C]
        candidate_scores = torch.where(real.unsqueeze(-1), candidate_scores, FILLER_SCORE)
        candidate_deltas = deltas.gather(1, index.unsqueeze(-1).expand(-1, -1, 4))  # [B, K, 4]
        candidate_boxes = detector.box_coder.decode(anchors[index], candidate_deltas, max_shape=image_sizes)
        return self._select(candidate_boxes, candidate_scores)

    def _top_candidates_per_level(
        self, scores: Tensor, level_sizes: list[tuple[Any, Any]]
    ) -> tuple[Tensor, Tensor]:
        """[B, N, C] -> anchor index [B, K] long and ``real`` [B, K] bool (False for fillers)."""
        nms_pre = self.test_config.nms_pre
        best = scores.max(dim=-1).values  # [B, N]
        if nms_pre <= 0:
            return (
                torch.arange(best.shape[1], device=best.device).expand_as(best),
                torch.ones_like(best, dtype=torch.bool),
            )
        indices: list[Tensor] = []
        reals: list[Tensor] = []
        start: Any = 0
        for height, width in level_sizes:
            count = height * width
            level = best[:, start : start + count]  # [B, N_l]
            filler = torch.full((best.shape[0], nms_pre), 2.0 * FILLER_SCORE, device=best.device)
            top = torch.cat([level, filler], dim=1).topk(nms_pre, dim=1).indices  # [B, nms_pre]
            real = top < count
            indices.append(torch.where(real, top + start, 0))
            reals.append(real)
            start = start + count
        return torch.cat(indices, dim=1), torch.cat(reals, dim=1)

    def _select(
        self, candidate_boxes: Tensor, candidate_scores: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Threshold, class-wise NMS, top D, score voting: [B, K, 4], [B, K, C] -> the graph outputs."""
        from ladet.export.nms import class_wise_nms_mask

        test = self.test_config
        max_detections = test.max_per_image
        batch_size, num_candidates, num_classes = candidate_scores.shape
        by_class = candidate_scores.transpose(1, 2).contiguous()  # [B, C, K]
        keep = class_wise_nms_mask(
            candidate_boxes, by_class, test.nms_iou_threshold, test.score_threshold, max_detections
        )  # [B, C, K]
        masked = torch.where(keep, by_class, FILLER_SCORE).flatten(1)  # [B, C*K]
        filler = torch.full((batch_size, max_detections), FILLER_SCORE, device=masked.device)
        top_scores, top_index = torch.cat([masked, filler], dim=1).topk(max_detections, dim=1)  # [B, D]
        valid = top_scores > FILLER_SCORE  # [B, D]
        top_index = torch.where(valid, top_index, 0)
        labels = top_index // num_candidates  # [B, D]
        anchor = top_index % num_candidates  # [B, D]
        boxes = candidate_boxes.gather(1, anchor.unsqueeze(-1).expand(-1, -1, 4))  # [B, D, 4]
        if test.score_voting:
            boxes = batched_score_voting(
                boxes,
                labels,
                candidate_boxes,
                candidate_scores,
                test.score_threshold,
                test.score_voting_sigma,
            )
        boxes = torch.where(valid.unsqueeze(-1), boxes, 0.0)
        scores = torch.where(valid, top_scores, 0.0)
        labels = torch.where(valid, labels, -1)
        return boxes, scores, labels, valid.sum(dim=1)
