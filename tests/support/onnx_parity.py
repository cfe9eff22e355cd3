"""Parity checks between the PyTorch ``Predictor`` and the ONNX Runtime ``OnnxPredictor`` (tests only)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from ladet.config.schema import Config
from ladet.deploy import OnnxPredictor
from ladet.evaluation.coco import CocoEvaluator
from ladet.export.parity import DetectionDifference, compare_detections
from ladet.predictor import Predictor
from ladet.structures import Detections

__all__ = ["val_images", "with_input_size", "predict_both", "assert_parity", "coco_ap"]


def val_images(config: Config) -> tuple[list[Path], list[int]]:
    """The paths and COCO ids of the config's val images."""
    record = json.loads(Path(config.data.val.ann_file).read_text(encoding="utf-8"))
    image_dir = Path(config.data.val.image_dir)
    return [image_dir / image["file_name"] for image in record["images"]], [
        image["id"] for image in record["images"]
    ]


def with_input_size(
    config: Config, onnx: OnnxPredictor, short_size: int, max_size: int
) -> tuple[Config, OnnxPredictor]:
    """Both predictors' pre-processing switched to another test size (the graph is the same)."""
    changed = dataclasses.replace(
        config, data=dataclasses.replace(config.data, short_size=short_size, max_size=max_size)
    )
    onnx.metadata = dataclasses.replace(onnx.metadata, short_size=short_size, max_size=max_size)
    return changed, onnx


def predict_both(
    torch_predictor: Predictor, onnx_predictor: OnnxPredictor, images: list[Path]
) -> tuple[list[Detections], list[Any]]:
    return torch_predictor(images), onnx_predictor(images)


def assert_parity(
    torch_detections: list[Detections], onnx_detections: list[Any]
) -> list[DetectionDifference]:
    """Same count per image; after matching labels equal, scores within 1e-4, boxes within 0.01 px."""
    differences = []
    for index, (expected, actual) in enumerate(zip(torch_detections, onnx_detections, strict=True)):
        difference = compare_detections(
            actual.labels,
            actual.scores,
            actual.boxes,
            expected.labels.numpy(),
            expected.scores.numpy(),
            expected.boxes.numpy(),
        )
        assert difference.within(score_tolerance=1e-4, box_tolerance=0.01), f"image {index}: {difference}"
        differences.append(difference)
    return differences


def coco_ap(config: Config, image_ids: list[int], detections: list[Any], category_ids: list[int]) -> float:
    """COCO box AP (%) of detections given as torch ``Detections`` or numpy ``ArrayDetections``."""
    evaluator = CocoEvaluator(config.data.val.ann_file, category_ids)
    as_torch = [
        d
        if isinstance(d, Detections)
        else Detections(torch.from_numpy(d.boxes), torch.from_numpy(d.scores), torch.from_numpy(d.labels))
        for d in detections
    ]
    evaluator.add(image_ids, as_torch)
    return 100.0 * float(evaluator.summarize()["AP"])
