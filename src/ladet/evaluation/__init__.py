"""COCO-style evaluation (AP, AP50, AP75, APs, APm, APl, AR1..ARl, per-class AP)."""

from ladet.evaluation.coco import (
    METRIC_NAMES,
    CocoEvaluator,
    coco_array_to_results,
    detections_to_coco_array,
    detections_to_coco_results,
    format_table,
)

__all__ = [
    "METRIC_NAMES",
    "CocoEvaluator",
    "coco_array_to_results",
    "detections_to_coco_array",
    "detections_to_coco_results",
    "format_table",
]
