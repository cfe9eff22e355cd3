"""CocoEvaluator: parity with pycocotools (outside oracle), empty detections, gather, formats."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ladet.evaluation import METRIC_NAMES, CocoEvaluator, detections_to_coco_results, format_table
from ladet.structures import Detections
from tests.support.coco_evaluation import make_synthetic_evaluation_set


def _pycocotools_stats(ann_file: Path, results_file: Path) -> tuple[np.ndarray, np.ndarray]:
    coco_module = pytest.importorskip("pycocotools.coco")
    eval_module = pytest.importorskip("pycocotools.cocoeval")
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = coco_module.COCO(str(ann_file))
        detections = ground_truth.loadRes(str(results_file))
        evaluation = eval_module.COCOeval(ground_truth, detections, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return np.asarray(evaluation.stats), np.asarray(evaluation.eval["precision"])


@pytest.fixture(scope="module")
def synthetic_files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("evaluation")
    ground_truth, image_ids, detections, label_to_category_id = make_synthetic_evaluation_set(
        num_images=60, detections_per_image=100, seed=3
    )
    ann_file = folder / "gt.json"
    ann_file.write_text(json.dumps(ground_truth))
    evaluator = CocoEvaluator(ann_file, label_to_category_id)
    evaluator.add(image_ids, detections)
    results_file = folder / "results.json"
    evaluator.write_results_json(results_file)
    return {
        "ann_file": ann_file,
        "results_file": results_file,
        "evaluator": evaluator,
        "ground_truth": ground_truth,
    }


def test_synthetic_set_covers_all_area_ranges(synthetic_files: dict) -> None:
    areas = np.array([a["area"] for a in synthetic_files["ground_truth"]["annotations"]])
    assert (areas < 32**2).sum() > 20 and ((areas >= 32**2) & (areas < 96**2)).sum() > 20
    assert (areas >= 96**2).sum() > 20
    assert any(a["iscrowd"] for a in synthetic_files["ground_truth"]["annotations"])


def test_metrics_identical_to_pycocotools(synthetic_files: dict) -> None:
    metrics = synthetic_files["evaluator"].summarize()
    reference, precision = _pycocotools_stats(synthetic_files["ann_file"], synthetic_files["results_file"])
    ours = np.array([metrics[name] for name in METRIC_NAMES])
    assert 0.05 < metrics["AP"] < 0.95  # a non-trivial operating point
    np.testing.assert_allclose(ours, reference[:12], rtol=0, atol=1e-12)
    # Per-class AP against the oracle's precision array (IoU .50:.95, area all, 100 dets).
    for label, (name, value) in enumerate(metrics["per_class_AP"].items()):
        column = precision[:, :, label, 0, -1]
        expected = column[column > -1].mean()
        assert name == f"class_{2 * label + 1}"
        assert value == pytest.approx(expected, abs=1e-12)


def test_results_json_roundtrip_is_exact(synthetic_files: dict) -> None:
    records = json.loads(synthetic_files["results_file"].read_text())
    assert len(records) == 60 * 100
    first = records[0]
    assert set(first) == {"image_id", "category_id", "bbox", "score"}


def test_conversion_to_xywh_and_category_ids() -> None:
    detections = Detections(
        boxes=torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.5, 0.25, 1.5, 2.0]]),
        scores=torch.tensor([0.9, 0.5]),
        labels=torch.tensor([1, 0]),
    )
    records = detections_to_coco_results(7, detections, [4, 9])
    assert records[0] == {
        "image_id": 7,
        "category_id": 9,
        "bbox": [10.0, 20.0, 20.0, 40.0],
        "score": 0.8999999761581421,
    }
    assert records[1]["category_id"] == 4 and records[1]["bbox"] == [0.5, 0.25, 1.0, 1.75]
    with pytest.raises(ValueError, match="label outside"):
        detections_to_coco_results(
            7, Detections(detections.boxes, detections.scores, torch.tensor([0, 2])), [4, 9]
        )


def test_no_detections_gives_zero(synthetic_files: dict) -> None:
    evaluator = CocoEvaluator(synthetic_files["ann_file"], list(range(1, 20, 2)))
    evaluator.add([1000, 1003], [Detections.empty(), Detections.empty()])
    metrics = evaluator.summarize()
    assert metrics["AP"] == 0.0 and metrics["AR100"] == 0.0
    empty = CocoEvaluator(synthetic_files["ann_file"], list(range(1, 20, 2))).summarize()
    assert empty["AP"] == 0.0
    assert all(value == 0.0 or math.isnan(value) for value in empty["per_class_AP"].values())
    table = format_table(metrics)
    assert "AP50" in table and "class_1" in table


def test_perfect_detections_give_ap_one(tmp_path: Path) -> None:
    ground_truth = {
        "images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [40, 40, 50, 50], "area": 2500, "iscrowd": 0},
        ],
        "categories": [{"id": 5, "name": "a"}, {"id": 7, "name": "b"}],
    }
    evaluator = CocoEvaluator(ground_truth, [5, 7])
    evaluator.add(
        [1],
        [
            Detections(
                torch.tensor([[10.0, 10, 30, 30], [40, 40, 90, 90]]),
                torch.tensor([0.9, 0.8]),
                torch.tensor([0, 1]),
            )
        ],
    )
    metrics = evaluator.summarize()
    assert metrics["AP"] == pytest.approx(1.0) and metrics["APs"] == pytest.approx(1.0)
    assert metrics["APl"] == -1.0  # no large ground truth: COCO's "undefined"
    assert metrics["per_class_AP"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_unknown_category_and_image_are_errors(synthetic_files: dict) -> None:
    with pytest.raises(ValueError, match="category ids"):
        CocoEvaluator(synthetic_files["ann_file"], [1, 2])
    evaluator = CocoEvaluator(synthetic_files["ann_file"], list(range(1, 20, 2)))
    evaluator.add([424242], [Detections.empty()])
    with pytest.raises(ValueError, match="424242"):
        evaluator.summarize()
