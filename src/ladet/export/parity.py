"""Comparing two detection lists of one image (ONNX Runtime vs PyTorch) up to the order of near-ties.

Two backends can order detections whose scores differ by float rounding (~1e-7) differently, so
detections are matched one to one before they are compared: same label, then the smallest
score + box difference first (greedy on the [D, D] cost matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DetectionDifference", "match_detections", "compare_detections"]

LABEL_MISMATCH_COST = 1e9


def match_detections(
    labels_a: np.ndarray,
    scores_a: np.ndarray,
    boxes_a: np.ndarray,
    labels_b: np.ndarray,
    scores_b: np.ndarray,
    boxes_b: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching of two equally long detection lists.

    Args:
        labels_*: [D] int; scores_*: [D] float; boxes_*: [D, 4] float.

    Returns:
        (index_a, index_b), each [D]: detection ``index_a[i]`` of a is matched with ``index_b[i]`` of b.
        Cost of a pair: 1e9 if the labels differ, else |Δscore| · 1e4 + max |Δbox|.
    """
    count = len(labels_a)
    if len(labels_b) != count:
        raise ValueError(f"cannot match {count} detections with {len(labels_b)}")
    cost = np.abs(scores_a[:, None].astype(np.float64) - scores_b[None, :]) * 1e4  # [D, D]
    cost += np.abs(boxes_a[:, None, :].astype(np.float64) - boxes_b[None, :, :]).max(axis=-1, initial=0.0)
    cost += (labels_a[:, None] != labels_b[None, :]) * LABEL_MISMATCH_COST
    index_a = np.empty(count, dtype=np.int64)
    index_b = np.empty(count, dtype=np.int64)
    for step in range(count):  # at most max_per_image steps; verification only, not a hot path
        row, column = np.unravel_index(np.argmin(cost), cost.shape)
        index_a[step], index_b[step] = row, column
        cost[row, :] = np.inf
        cost[:, column] = np.inf
    return index_a, index_b


@dataclass
class DetectionDifference:
    """How two detection lists of one image differ after matching."""

    count_a: int
    count_b: int
    labels_equal: bool
    max_score_difference: float
    max_box_difference: float

    def within(self, score_tolerance: float = 1e-4, box_tolerance: float = 0.01) -> bool:
        return (
            self.count_a == self.count_b
            and self.labels_equal
            and self.max_score_difference <= score_tolerance
            and self.max_box_difference <= box_tolerance
        )


def compare_detections(
    labels_a: np.ndarray,
    scores_a: np.ndarray,
    boxes_a: np.ndarray,
    labels_b: np.ndarray,
    scores_b: np.ndarray,
    boxes_b: np.ndarray,
) -> DetectionDifference:
    """Counts, and after :func:`match_detections` label equality and the largest score / box gaps."""
    if len(labels_a) != len(labels_b):
        return DetectionDifference(len(labels_a), len(labels_b), False, float("inf"), float("inf"))
    index_a, index_b = match_detections(labels_a, scores_a, boxes_a, labels_b, scores_b, boxes_b)
    return DetectionDifference(
        count_a=len(labels_a),
        count_b=len(labels_b),
        labels_equal=bool(np.array_equal(labels_a[index_a], labels_b[index_b])),
        max_score_difference=float(np.abs(scores_a[index_a] - scores_b[index_b]).max(initial=0.0)),
        max_box_difference=float(np.abs(boxes_a[index_a] - boxes_b[index_b]).max(initial=0.0)),
    )
