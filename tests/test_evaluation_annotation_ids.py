"""COCO evaluation on files whose annotation ids start at 0 (labelme writes them), side by side
with pycocotools, which scores a perfect detector below 1 there; and ``area: 0`` boxes."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from ladet.evaluation.coco import CocoEvaluator
from ladet.structures import Detections


def _labelme_style_document(num_images: int = 6, boxes_per_image: int = 3) -> dict:
    """Annotation ids 0..N-1; category ids 0 and 1 (labelme's first label gets id 0 too)."""
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 200, "height": 200})
        for _ in range(boxes_per_image):
            x, y = rng.integers(0, 100, 2).tolist()
            w, h = rng.integers(40, 90, 2).tolist()
            annotations.append(
                {
                    "id": len(annotations),
                    "image_id": image_id,
                    "category_id": len(annotations) % 2,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": 0, "name": "person"}, {"id": 1, "name": "car"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def _perfect_results(document: dict) -> list[dict]:
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in document["annotations"]
    ]


def _ladet_average_precision(document: dict) -> dict:
    evaluator = CocoEvaluator(document, [0, 1])
    for image in document["images"]:
        own = [a for a in document["annotations"] if a["image_id"] == image["id"]]
        xywh = torch.tensor([a["bbox"] for a in own], dtype=torch.float32)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        labels = torch.tensor([a["category_id"] for a in own])  # label = index of the sorted id
        evaluator.add([image["id"]], [Detections(boxes, torch.ones(len(own)), labels)])
    return evaluator.summarize()


def test_perfect_detector_scores_one_where_pycocotools_does_not() -> None:
    coco_module = pytest.importorskip("pycocotools.coco")
    cocoeval_module = pytest.importorskip("pycocotools.cocoeval")
    document = _labelme_style_document()
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = coco_module.COCO()
        ground_truth.dataset = document
        ground_truth.createIndex()
        evaluation = cocoeval_module.COCOeval(
            ground_truth, ground_truth.loadRes(_perfect_results(document)), "bbox"
        )
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    pycocotools_ap = float(evaluation.stats[0])
    ladet_ap = _ladet_average_precision(document)["AP"]
    print(
        f"perfect detector, annotation ids from 0: pycocotools AP {pycocotools_ap:.3f}, ladet AP {ladet_ap:.3f}"
    )
    assert pycocotools_ap < 0.99  # the id-0 box can never be matched there
    assert ladet_ap == pytest.approx(1.0)


def test_ids_that_do_not_start_at_zero_are_unchanged_by_the_renumbering() -> None:
    document = _labelme_style_document()
    for annotation in document["annotations"]:
        annotation["id"] += 1000
    assert _ladet_average_precision(document)["AP"] == pytest.approx(1.0)


def test_zero_area_uses_the_box_area_for_the_size_split() -> None:
    """With area 0 every box was 'small': APm = -1 (no medium GT) although the boxes are medium."""
    document = _labelme_style_document()
    for annotation in document["annotations"]:
        annotation["area"] = 0
    metrics = _ladet_average_precision(document)
    assert metrics["APs"] == -1.0 and metrics["APm"] == pytest.approx(1.0)
