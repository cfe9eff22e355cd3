"""Synthetic COCO ground truth + detections for the evaluator tests and ``benchmarks/evaluate.py``.

Deterministic in ``seed``. Ground truth covers small, medium and large boxes (log-uniform sides
4..400 px), non-contiguous category ids, some crowd boxes and some images without objects.
Detections per image: jittered copies of ground-truth boxes (some with a wrong class) plus random
false positives, ``detections_per_image`` in total, with distinct random scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ladet.structures import Detections


def make_synthetic_evaluation_set(
    num_images: int = 60,
    detections_per_image: int = 100,
    num_classes: int = 10,
    seed: int = 0,
) -> tuple[dict[str, Any], list[int], list[Detections], list[int]]:
    """Builds a COCO ground-truth dict and matching detections.

    Returns:
        (ground_truth_json, image_ids, detections per image (original frame), label_to_category_id).
    """
    rng = np.random.default_rng(seed)
    label_to_category_id = [2 * label + 1 for label in range(num_classes)]  # ids 1, 3, 5, ...
    categories = [{"id": cid, "name": f"class_{cid}"} for cid in label_to_category_id]
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    all_detections: list[Detections] = []
    image_ids: list[int] = []
    for image_index in range(num_images):
        image_id = 1000 + 3 * image_index
        width, height = int(rng.integers(320, 801)), int(rng.integers(240, 641))
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": width, "height": height})
        image_ids.append(image_id)
        num_objects = 0 if rng.random() < 0.05 else int(rng.integers(1, 16))
        sides = np.exp(rng.uniform(np.log(4), np.log(400), (num_objects, 2)))  # [G, 2] (w, h)
        sides = np.minimum(sides, [width - 1, height - 1])
        x1 = rng.uniform(0, width - sides[:, 0])
        y1 = rng.uniform(0, height - sides[:, 1])
        gt_boxes = np.stack([x1, y1, x1 + sides[:, 0], y1 + sides[:, 1]], axis=1)  # [G, 4]
        gt_labels = rng.integers(0, num_classes, num_objects)
        crowd = rng.random(num_objects) < 0.03
        for box, label, is_crowd in zip(gt_boxes, gt_labels, crowd, strict=True):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": label_to_category_id[int(label)],
                    "bbox": [float(box[0]), float(box[1]), w, h],
                    "area": w * h * float(rng.uniform(0.5, 1.0)),
                    "iscrowd": int(is_crowd),
                }
            )
        # True-positive-like detections: several jittered copies per GT.
        copies = min(detections_per_image // 2, 3 * num_objects)
        source = rng.integers(0, max(num_objects, 1), copies)
        if num_objects:
            base = gt_boxes[source]
            scale = np.stack([base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]] * 2, axis=1)
            jittered = base + rng.normal(0, 0.08, (copies, 4)) * scale
            labels = gt_labels[source].copy()
            wrong = rng.random(copies) < 0.1
            labels[wrong] = rng.integers(0, num_classes, int(wrong.sum()))
        else:
            jittered, labels = np.zeros((0, 4)), np.zeros((0,), dtype=np.int64)
        # False positives everywhere.
        remaining = detections_per_image - len(jittered)
        fp_sides = np.exp(rng.uniform(np.log(4), np.log(400), (remaining, 2)))
        fp_x1 = rng.uniform(-10, width, remaining)
        fp_y1 = rng.uniform(-10, height, remaining)
        false_positives = np.stack([fp_x1, fp_y1, fp_x1 + fp_sides[:, 0], fp_y1 + fp_sides[:, 1]], axis=1)
        boxes = np.concatenate([jittered, false_positives], axis=0)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 0.5)  # keep w, h > 0
        all_labels = np.concatenate([labels, rng.integers(0, num_classes, remaining)])
        scores = rng.uniform(0.05, 1.0, len(boxes))
        scores[: len(jittered)] = np.sqrt(scores[: len(jittered)])  # true positives score higher
        all_detections.append(
            Detections(
                boxes=torch.from_numpy(boxes).float(),
                scores=torch.from_numpy(scores).float(),
                labels=torch.from_numpy(all_labels).long(),
            )
        )
    ground_truth = {"images": images, "annotations": annotations, "categories": categories}
    return ground_truth, image_ids, all_detections, label_to_category_id
