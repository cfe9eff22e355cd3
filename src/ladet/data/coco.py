"""COCO-format detection annotations (docs/algorithms.md §1.8).

Load-time rules, in two kinds:

* **Hard errors** (malformed data, ``ValueError`` naming the annotation file, image id and
  annotation id): a missing required key (``images``/``annotations``/``categories`` at the top;
  ``id``, ``file_name``, ``width``, ``height`` per image; ``id``, ``image_id``, ``category_id``,
  ``bbox`` per annotation), a bbox that is not 4 numbers, a NaN/infinite coordinate, a negative
  width or height, an unknown category id, an annotation whose image id is not in ``images``,
  duplicate image or category ids.
* **Counted problems** (well-formed COCO contains them), reported by ``ladet check-data`` and at
  the start of ``train`` / ``test``: the box rules of :mod:`ladet.data.records` (clip partly
  outside boxes, drop degenerate and outside ones, crowd boxes as ignore regions) and ``area <= 0``.
  ``area`` is only used by the COCO evaluation to split small / medium / large objects; it never
  drops a box (the evaluation uses w * h where it is <= 0).

Training keeps only images with at least one usable box and min side >= ``min_image_side``;
evaluation keeps every image. Category ids (any integers, 0 included) map to contiguous labels
0..C-1 in sorted-id order and back.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ladet.data.dataset import DetectionDataset
from ladet.data.problems import ProblemLog
from ladet.data.records import DatasetAnnotations, ImageRecord, apply_box_rules, group_records

__all__ = ["CocoDetection", "ImageRecord", "load_coco_json", "parse_coco_annotations", "read_coco"]

_IMAGE_KEYS = ("id", "file_name", "width", "height")
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox")


def _require_keys(record: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        if key not in record:
            raise ValueError(f"{where}: missing key '{key}'")


def load_coco_json(ann_file: str) -> dict[str, Any]:
    """The JSON document, with clean errors for a missing file, bad JSON or missing top-level keys."""
    try:
        with open(ann_file, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as error:
        raise ValueError(f"annotation file {ann_file} does not exist") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"annotation file {ann_file} is not valid JSON: {error}") from error
    except UnicodeDecodeError as error:  # an image or other binary file given as annotations
        from ladet.file_kinds import binary_text_error

        raise ValueError(binary_text_error(ann_file, "annotation file", "a COCO JSON text file")) from error
    if not isinstance(data, dict):
        raise ValueError(f"annotation file {ann_file}: top level must be an object")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"annotation file {ann_file}: missing top-level key '{key}'")
    return data


def coco_categories(data: dict[str, Any], ann_file: str) -> tuple[list[int], list[str]]:
    """(category ids sorted, names) of a COCO document."""
    for category in data["categories"]:
        _require_keys(category, ("id",), f"{ann_file}: category {category}")
    categories = sorted(data["categories"], key=lambda category: int(category["id"]))
    category_ids = [int(category["id"]) for category in categories]
    if len(set(category_ids)) != len(category_ids):
        raise ValueError(f"{ann_file}: duplicate category ids in {category_ids}")
    return category_ids, [str(category.get("name", category["id"])) for category in categories]


def read_coco(
    ann_file: str | os.PathLike[str], image_dir: str | os.PathLike[str], train: bool, min_image_side: int = 32
) -> DatasetAnnotations:
    """Parses and validates a COCO detection JSON into records (see the module docstring)."""
    ann_file = os.fspath(ann_file)
    data = load_coco_json(ann_file)
    problems = ProblemLog(f"coco {ann_file}")
    category_ids, class_names = coco_categories(data, ann_file)
    category_to_label = {category_id: label for label, category_id in enumerate(category_ids)}

    positions: dict[int, int] = {}
    for position, image in enumerate(data["images"]):
        _require_keys(image, _IMAGE_KEYS, f"{ann_file}: image #{position} (id {image.get('id')})")
        image_id = int(image["id"])
        if image_id in positions:
            raise ValueError(f"{ann_file}: duplicate image id {image_id}")
        positions[image_id] = position
    images = data["images"]
    sizes = [(int(image["width"]), int(image["height"])) for image in images]

    # Parse every annotation once (load time, not a hot path), validate, then filter with numpy.
    count = len(data["annotations"])
    owner = np.zeros(count, dtype=np.int64)  # image position
    labels = np.zeros(count, dtype=np.int64)
    xywh = np.zeros((count, 4), dtype=np.float64)
    area = np.zeros(count, dtype=np.float64)
    crowd = np.zeros(count, dtype=bool)
    annotation_ids: list[Any] = []
    for position, annotation in enumerate(data["annotations"]):
        where = f"{ann_file}: annotation id {annotation.get('id')} (image id {annotation.get('image_id')})"
        _require_keys(annotation, _ANNOTATION_KEYS, where)
        image_id = int(annotation["image_id"])
        if image_id not in positions:
            raise ValueError(f"{where}: image id {image_id} is not listed in 'images'")
        category_id = int(annotation["category_id"])
        if category_id not in category_to_label:
            raise ValueError(f"{where}: unknown category id {category_id}")
        bbox = annotation["bbox"]
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise ValueError(f"{where}: bbox must be 4 numbers [x, y, w, h], got {bbox}")
        try:
            values = [float(value) for value in bbox]
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: bbox {bbox} is not numeric") from error
        if not all(math.isfinite(value) for value in values):
            raise ValueError(f"{where}: bbox {bbox} has a NaN or infinite value")
        if values[2] < 0 or values[3] < 0:
            raise ValueError(f"{where}: bbox {bbox} has a negative width or height")
        owner[position] = positions[image_id]
        labels[position] = category_to_label[category_id]
        xywh[position] = values
        area[position] = float(annotation.get("area", values[2] * values[3]))
        crowd[position] = bool(annotation.get("iscrowd", 0))
        annotation_ids.append(annotation["id"])

    def describe(index: int) -> str:
        return f"annotation id {annotation_ids[index]} (image id {images[int(owner[index])]['id']})"

    image_sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)[owner]  # [A, 2]
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)  # [A, 4]
    clipped, usable = apply_box_rules(boxes, image_sizes, crowd, describe, problems)
    no_area = np.flatnonzero(area <= 0)
    problems.add("area_not_positive", [describe(int(i)) for i in no_area[:3]], count=len(no_area))
    records = group_records(
        [int(image["id"]) for image in images],
        [str(image["file_name"]) for image in images],
        sizes,
        owner,
        clipped,
        labels,
        usable,
        crowd,
        train,
        min_image_side,
        problems,
    )
    return DatasetAnnotations(
        source=ann_file,
        data_format="coco",
        image_dir=Path(image_dir),
        train=train,
        records=records,
        category_ids=category_ids,
        class_names=class_names,
        problems=problems,
    )


def parse_coco_annotations(
    ann_file: str, train: bool, min_image_side: int = 32
) -> tuple[list[ImageRecord], list[int], list[str], ProblemLog]:
    """(records, label_to_category_id, class_names, problems) of a COCO JSON (see :func:`read_coco`)."""
    parsed = read_coco(ann_file, "", train, min_image_side)
    return parsed.records, parsed.category_ids, parsed.class_names, parsed.problems


class CocoDetection(DetectionDataset):
    """A COCO-format detection dataset producing transformed items (see ``ladet.data.transforms``).

    Args:
        ann_file: COCO JSON path.
        image_dir: folder the JSON ``file_name`` entries are relative to.
        train: training filters (drop images without boxes / too small) when True.
        transform, skip_unreadable, seed: as :class:`ladet.data.dataset.DetectionDataset`.
        min_image_side: training images whose shorter side is below this are dropped.
    """

    def __init__(
        self,
        ann_file: str | os.PathLike[str],
        image_dir: str | os.PathLike[str],
        train: bool,
        transform: Callable[..., dict[str, Any]] | None = None,
        skip_unreadable: bool = False,
        min_image_side: int = 32,
        seed: int = 0,
    ) -> None:
        annotations = read_coco(ann_file, image_dir, train, min_image_side)
        super().__init__(annotations, transform, skip_unreadable, seed)
