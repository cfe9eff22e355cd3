"""COCO box evaluation with ``faster_coco_eval`` (same numbers as pycocotools, much faster).

Usage::

    evaluator = CocoEvaluator(dataset.ann_file, dataset.label_to_category_id, dataset.class_names)
    for batch in loader:
        evaluator.add(batch.image_ids, detector.predict(batch))  # Detections in the original frame
    evaluator.gather()  # all ranks (collective); afterwards rank 0 holds every result
    metrics = evaluator.summarize()  # {"AP": ..., ..., "ARl": ..., "per_class_AP": {...}}
    print(format_table(metrics))
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as distributed
from faster_coco_eval import COCO, COCOeval_faster

from ladet.structures import Detections

logger = logging.getLogger(__name__)

METRIC_NAMES: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


def _silent(*_args: Any, **_kwargs: Any) -> None:
    return None


def detections_to_coco_array(
    image_id: int, detections: Detections, label_to_category_id: Sequence[int]
) -> np.ndarray:
    """Converts one image's detections to rows (image_id, x, y, w, h, score, category_id).

    w = x2 - x1 and h = y2 - y1 are computed in float64 from the float32 boxes (no rounding), so
    writing the records to JSON and reading them back gives exactly the same numbers.

    Args:
        detections: boxes [D, 4], scores [D], labels [D] (contiguous labels), original frame.

    Returns:
        [D, 7] float64.
    """
    boxes = detections.boxes.detach().to("cpu", torch.float64).numpy().reshape(-1, 4)  # [D, 4]
    scores = detections.scores.detach().to("cpu", torch.float64).numpy().reshape(-1)  # [D]
    labels = detections.labels.detach().to("cpu", torch.long).numpy().reshape(-1)  # [D]
    if not (len(boxes) == len(scores) == len(labels)):
        raise ValueError(
            f"image {image_id}: detections have {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(label_to_category_id)):
        raise ValueError(
            f"image {image_id}: label outside 0..{len(label_to_category_id) - 1}: {labels.min()}..{labels.max()}"
        )
    rows = np.empty((len(labels), 7), dtype=np.float64)  # [D, 7]
    rows[:, 0] = image_id
    rows[:, 1:3] = boxes[:, :2]
    rows[:, 3:5] = boxes[:, 2:] - boxes[:, :2]
    rows[:, 5] = scores
    rows[:, 6] = np.asarray(label_to_category_id, dtype=np.int64)[labels]
    return rows


def coco_array_to_results(rows: np.ndarray) -> list[dict[str, Any]]:
    """[D, 7] rows of :func:`detections_to_coco_array` -> COCO result records (JSON-ready)."""
    image_ids = rows[:, 0].astype(np.int64).tolist()
    category_ids = rows[:, 6].astype(np.int64).tolist()
    boxes = rows[:, 1:5].tolist()
    scores = rows[:, 5].tolist()
    return [
        {"image_id": image_id, "category_id": category_id, "bbox": box, "score": score}
        for image_id, category_id, box, score in zip(image_ids, category_ids, boxes, scores, strict=True)
    ]


def detections_to_coco_results(
    image_id: int, detections: Detections, label_to_category_id: Sequence[int]
) -> list[dict[str, Any]]:
    """One image's detections as COCO result records {"image_id", "category_id", "bbox" (xywh), "score"}."""
    return coco_array_to_results(detections_to_coco_array(image_id, detections, label_to_category_id))


def ground_truth_document(annotations: str | os.PathLike[str] | dict[str, Any] | COCO) -> dict[str, Any]:
    """A copy of the ground truth, ready for COCOeval.

    * Annotation ids are renumbered 1..N. The COCO evaluation code marks "unmatched" with id 0
      (``dtm``/``gtm``), so a ground-truth box whose id is 0 (labelme's files start there) could
      never count as matched: pycocotools scores a perfect detector below 1.0 on such a file.
    * A missing or non-positive ``area`` becomes w * h: ``area`` only decides the small / medium /
      large split, and 0 would put every box into "small".
    """
    if isinstance(annotations, COCO):
        document = copy.deepcopy(annotations.dataset)
    elif isinstance(annotations, dict):
        document = copy.deepcopy(annotations)
    else:
        with open(os.fspath(annotations), encoding="utf-8") as handle:
            document = json.load(handle)
    for number, annotation in enumerate(document.get("annotations", []), start=1):
        annotation["id"] = number
        if float(annotation.get("area", 0) or 0) <= 0:
            box = annotation["bbox"]
            annotation["area"] = float(box[2]) * float(box[3])
    return document


class CocoEvaluator:
    """Accumulates detections, gathers them across ranks and computes the COCO box metrics.

    Args:
        annotations: a COCO JSON path, a loaded COCO dict, or a ``faster_coco_eval.COCO``
            (copied, see :func:`ground_truth_document`: annotation ids are renumbered).
        label_to_category_id: COCO category id of each contiguous label.
        class_names: name of each label (for ``per_class_AP``); defaults to the JSON's names.
        excluded_image_ids: images left out by the data check (unreadable, skipped): never
            evaluated, even if detections for them were added; their count is reported.
    """

    def __init__(
        self,
        annotations: str | os.PathLike[str] | dict[str, Any] | COCO,
        label_to_category_id: Sequence[int],
        class_names: Sequence[str] | None = None,
        excluded_image_ids: Sequence[int] = (),
    ) -> None:
        self.ground_truth = COCO(ground_truth_document(annotations), print_function=_silent)
        self.excluded_image_ids = sorted({int(image_id) for image_id in excluded_image_ids})
        self.label_to_category_id = [int(category_id) for category_id in label_to_category_id]
        known = set(self.ground_truth.getCatIds())
        unknown = [category_id for category_id in self.label_to_category_id if category_id not in known]
        if unknown:
            raise ValueError(f"category ids {unknown} are not in the ground-truth annotations")
        if class_names is None:
            categories = self.ground_truth.loadCats(self.label_to_category_id)
            class_names = [str(category.get("name", category["id"])) for category in categories]
        if len(class_names) != len(self.label_to_category_id):
            raise ValueError(
                f"{len(class_names)} class names for {len(self.label_to_category_id)} categories"
            )
        self.class_names = list(class_names)
        self.image_ids: list[int] = []
        self._chunks: list[np.ndarray] = []  # [D_i, 7] rows per added image

    def reset(self) -> None:
        self.image_ids = []
        self._chunks = []

    def result_rows(self) -> np.ndarray:
        """Every accumulated detection as [D, 7] rows (image_id, x, y, w, h, score, category_id)."""
        if not self._chunks:
            return np.zeros((0, 7), dtype=np.float64)
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks, axis=0)]
        return self._chunks[0]

    @property
    def results(self) -> list[dict[str, Any]]:
        """Every accumulated detection as COCO result records."""
        return coco_array_to_results(self.result_rows())

    def add(self, image_ids: Sequence[int], detections: Sequence[Detections]) -> None:
        """Records the detections (original frame) of the given images (one entry per image)."""
        if len(image_ids) != len(detections):
            raise ValueError(f"{len(image_ids)} image ids for {len(detections)} detection sets")
        for image_id, image_detections in zip(image_ids, detections, strict=True):
            self.image_ids.append(int(image_id))
            self._chunks.append(
                detections_to_coco_array(int(image_id), image_detections, self.label_to_category_id)
            )

    def gather(self) -> None:
        """Collects every rank's results (``all_gather_object``) into every rank, in rank order.

        A no-op without an initialised process group. Images seen on several ranks are kept once
        (the first rank's results), so the metrics do not depend on the world size.
        """
        if not (distributed.is_available() and distributed.is_initialized()):
            return
        world_size = distributed.get_world_size()
        if world_size == 1:
            return
        gathered: list[Any] = [None] * world_size
        distributed.all_gather_object(gathered, (self.image_ids, self.result_rows()))
        image_ids: list[int] = []
        chunks: list[np.ndarray] = []
        seen: set[int] = set()
        for rank_image_ids, rank_rows in gathered:
            new_ids = sorted({image_id for image_id in rank_image_ids if image_id not in seen})
            image_ids.extend(image_id for image_id in rank_image_ids if image_id not in seen)
            chunks.append(rank_rows[np.isin(rank_rows[:, 0].astype(np.int64), new_ids)])
            seen.update(new_ids)
        self.image_ids, self._chunks = image_ids, chunks

    def write_results_json(self, path: str | os.PathLike[str]) -> None:
        """Writes the accumulated results in the COCO results format (a JSON list)."""
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.results, handle)

    def evaluated_image_ids(self) -> list[int]:
        """Images added so far (unique, sorted); every GT image if nothing was added; never an
        excluded image."""
        image_ids = set(self.image_ids) if self.image_ids else set(self.ground_truth.getImgIds())
        return sorted(image_ids - set(self.excluded_image_ids))

    def summarize(self) -> dict[str, Any]:
        """Runs COCOeval (bbox) on the evaluated images.

        Returns:
            {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}
            as floats (COCO's -1 means "no ground truth in that range"), plus "per_class_AP"
            {class name: AP at IoU .50:.95, area all, 100 detections; NaN if the class has no
            ground truth}. No detections at all gives zeros, not an error.
        """
        image_ids = self.evaluated_image_ids()
        unknown = set(image_ids) - set(self.ground_truth.getImgIds())
        if unknown:
            raise ValueError(f"image ids {sorted(unknown)[:10]} are not in the ground-truth annotations")
        detections = self._detections_dataset()
        evaluation = COCOeval_faster(self.ground_truth, detections, "bbox", print_function=_silent)
        evaluation.params.imgIds = image_ids
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        stats = [float(value) for value in evaluation.stats[: len(METRIC_NAMES)]]
        metrics: dict[str, Any] = dict(zip(METRIC_NAMES, stats, strict=True))
        metrics["per_class_AP"] = self._per_class_average_precision(evaluation)
        if self.excluded_image_ids:
            metrics["num_excluded_images"] = len(self.excluded_image_ids)
            logger.warning(
                "%d unreadable image(s) excluded from the evaluation (data.skip_unreadable_images), e.g. ids %s",
                len(self.excluded_image_ids),
                self.excluded_image_ids[:5],
            )
        return metrics

    def _detections_dataset(self) -> COCO:
        """The detections as a COCO object, built like ``COCO.loadRes`` does for boxes (id = 1..D,
        area = w * h, iscrowd 0) but without the unused polygon ``segmentation`` per record."""
        records = self.results
        for number, record in enumerate(records, start=1):
            box = record["bbox"]
            record["area"] = box[2] * box[3]
            record["id"] = number
            record["iscrowd"] = 0
        detections = COCO(print_function=_silent)
        detections.dataset = {
            "images": list(self.ground_truth.dataset["images"]),
            "categories": copy.deepcopy(self.ground_truth.dataset["categories"]),
            "annotations": records,
        }
        detections.createIndex()
        return detections

    def _per_class_average_precision(self, evaluation: COCOeval_faster) -> dict[str, float]:
        precision = np.asarray(evaluation.eval["precision"])  # [T, R, K, A, M]
        category_order = list(evaluation.params.catIds)
        per_class: dict[str, float] = {}
        for name, category_id in zip(self.class_names, self.label_to_category_id, strict=True):
            values = precision[:, :, category_order.index(category_id), 0, -1]
            values = values[values > -1]
            per_class[name] = float(values.mean()) if values.size else math.nan
        return per_class


def build_dataset_evaluator(config: Any, dataset: Any) -> CocoEvaluator:
    """The evaluator of a :class:`ladet.data.dataset.DetectionDataset` (any layout): the COCO JSON
    for COCO data, the records as a COCO document for VOC / YOLO; images excluded by the data
    check are left out and reported."""
    from ladet.data.loading import evaluation_ground_truth

    annotations = dataset.annotations
    return CocoEvaluator(
        evaluation_ground_truth(config, annotations),
        dataset.label_to_category_id,
        dataset.class_names,
        excluded_image_ids=annotations.excluded_image_ids,
    )


def _percent(value: float) -> str:
    """A fraction as percent, width 6; COCO's -1 (no ground truth in that range) and NaN as n/a."""
    return f"{100 * value:6.2f}" if value >= 0 else f"{'n/a':>6}"


def format_table(metrics: dict[str, Any]) -> str:
    """A fixed-width text table of the 12 COCO numbers (in %) and the per-class AP."""
    lines = ["  ".join(f"{name:>6}" for name in METRIC_NAMES)]
    lines.append("  ".join(_percent(float(metrics[name])) for name in METRIC_NAMES))
    per_class = metrics.get("per_class_AP", {})
    if per_class:
        width = max(len(name) for name in per_class)
        lines.append("")
        lines.append(f"{'class':<{width}}  AP")
        lines.extend(f"{name:<{width}}  {_percent(value)}" for name, value in per_class.items())
    return "\n".join(lines)
