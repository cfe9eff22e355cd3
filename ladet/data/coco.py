"""COCO-format detection dataset (docs/algorithms.md §1.8).

Load-time rules, in two kinds:

* **Hard errors** (malformed data, ``ValueError`` naming the annotation file, image id and
  annotation id): a missing required key (``images``/``annotations``/``categories`` at the top;
  ``id``, ``file_name``, ``width``, ``height`` per image; ``id``, ``image_id``, ``category_id``,
  ``bbox`` per annotation), a bbox that is not 4 numbers, a NaN/infinite coordinate, a negative
  width or height, an unknown category id, an annotation whose image id is not in ``images``,
  duplicate image or category ids.
* **Silent drops, counted and logged once** (well-formed COCO contains them): boxes with w < 1 or
  h < 1, area <= 0, or no overlap with the image (entirely outside it). ``iscrowd=1`` boxes are
  never passed to the model (crowd regions become ordinary background).

Training keeps only images with at least one usable box and min side >= ``min_image_side``;
evaluation keeps every image. Category ids map to contiguous labels 0..C-1 in sorted-id order.
Boxes are (x, y, x + w, y + h), not clipped.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ladet.data.transforms import DetectionTransform, image_to_tensor, sample_generator

logger = logging.getLogger(__name__)

_IMAGE_KEYS = ("id", "file_name", "width", "height")
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox")


@dataclass
class ImageRecord:
    """One image of the dataset with its usable boxes in the original frame."""

    image_id: int
    file_name: str
    width: int
    height: int
    boxes: np.ndarray  # [G, 4] float32 (x1, y1, x2, y2)
    labels: np.ndarray  # [G] int64 contiguous labels


@dataclass
class LoadStatistics:
    """Counts of what the loader dropped."""

    crowd_boxes: int = 0
    degenerate_boxes: int = 0  # w < 1, h < 1 or area <= 0
    outside_boxes: int = 0  # no overlap with the image
    images_without_boxes: int = 0  # dropped in training
    small_images: int = 0  # dropped in training
    unreadable_images: set[int] = field(default_factory=set)  # dataset indices skipped at read time


def _require_keys(record: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        if key not in record:
            raise ValueError(f"{where}: missing key '{key}'")


def _load_json(ann_file: str) -> dict[str, Any]:
    try:
        with open(ann_file, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as error:
        raise ValueError(f"annotation file {ann_file} does not exist") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"annotation file {ann_file} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"annotation file {ann_file}: top level must be an object")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"annotation file {ann_file}: missing top-level key '{key}'")
    return data


def parse_coco_annotations(
    ann_file: str, train: bool, min_image_side: int = 32
) -> tuple[list[ImageRecord], list[int], list[str], LoadStatistics]:
    """Parses and validates a COCO detection JSON.

    Returns:
        (records, label_to_category_id, class_names, statistics). Records keep the JSON image
        order; in training, images without usable boxes or smaller than ``min_image_side`` are
        left out.
    """
    data = _load_json(ann_file)
    statistics = LoadStatistics()

    categories = sorted(data["categories"], key=lambda category: category.get("id", -1))
    for category in categories:
        _require_keys(category, ("id",), f"{ann_file}: category {category}")
    label_to_category_id = [int(category["id"]) for category in categories]
    if len(set(label_to_category_id)) != len(label_to_category_id):
        raise ValueError(f"{ann_file}: duplicate category ids in {label_to_category_id}")
    class_names = [str(category.get("name", category["id"])) for category in categories]
    category_to_label = {category_id: label for label, category_id in enumerate(label_to_category_id)}

    images: dict[int, dict[str, Any]] = {}
    for position, image in enumerate(data["images"]):
        _require_keys(image, _IMAGE_KEYS, f"{ann_file}: image #{position} (id {image.get('id')})")
        image_id = int(image["id"])
        if image_id in images:
            raise ValueError(f"{ann_file}: duplicate image id {image_id}")
        images[image_id] = image

    # Parse every annotation once (load time, not a hot path), validate, then filter with numpy.
    count = len(data["annotations"])
    owner = np.zeros(count, dtype=np.int64)
    labels = np.zeros(count, dtype=np.int64)
    xywh = np.zeros((count, 4), dtype=np.float64)
    area = np.zeros(count, dtype=np.float64)
    crowd = np.zeros(count, dtype=bool)
    for position, annotation in enumerate(data["annotations"]):
        where = f"{ann_file}: annotation id {annotation.get('id')} (image id {annotation.get('image_id')})"
        _require_keys(annotation, _ANNOTATION_KEYS, where)
        image_id = int(annotation["image_id"])
        if image_id not in images:
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
        owner[position] = image_id
        labels[position] = category_to_label[category_id]
        xywh[position] = values
        area[position] = float(annotation.get("area", values[2] * values[3]))
        crowd[position] = bool(annotation.get("iscrowd", 0))

    widths_by_annotation = np.array([float(images[int(i)]["width"]) for i in owner], dtype=np.float64)
    heights_by_annotation = np.array([float(images[int(i)]["height"]) for i in owner], dtype=np.float64)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)  # [A, 4]
    degenerate = (xywh[:, 2] < 1) | (xywh[:, 3] < 1) | (area <= 0)
    overlap_width = np.minimum(boxes[:, 2], widths_by_annotation) - np.maximum(boxes[:, 0], 0.0)
    overlap_height = np.minimum(boxes[:, 3], heights_by_annotation) - np.maximum(boxes[:, 1], 0.0)
    outside = (overlap_width <= 0) | (overlap_height <= 0)
    statistics.crowd_boxes = int(crowd.sum())
    statistics.degenerate_boxes = int((degenerate & ~crowd).sum())
    statistics.outside_boxes = int((outside & ~degenerate & ~crowd).sum())
    usable = ~crowd & ~degenerate & ~outside

    order = np.argsort(owner[usable], kind="stable")
    usable_owner = owner[usable][order]
    usable_boxes = boxes[usable][order].astype(np.float32)
    usable_labels = labels[usable][order]
    unique_owner, starts, counts = np.unique(usable_owner, return_index=True, return_counts=True)
    spans = {int(i): (int(s), int(s + c)) for i, s, c in zip(unique_owner, starts, counts, strict=True)}

    records: list[ImageRecord] = []
    for image_id, image in images.items():
        start, end = spans.get(image_id, (0, 0))
        width, height = int(image["width"]), int(image["height"])
        if train and end == start:
            statistics.images_without_boxes += 1
            continue
        if train and min(width, height) < min_image_side:
            statistics.small_images += 1
            continue
        records.append(
            ImageRecord(
                image_id=image_id,
                file_name=str(image["file_name"]),
                width=width,
                height=height,
                boxes=usable_boxes[start:end],
                labels=usable_labels[start:end],
            )
        )
    dropped = statistics.crowd_boxes + statistics.degenerate_boxes + statistics.outside_boxes
    if dropped or statistics.images_without_boxes or statistics.small_images:
        logger.info(
            "%s: excluded %d crowd, %d degenerate (w<1, h<1 or area<=0) and %d outside boxes; "
            "dropped %d images without boxes and %d images with a side < %d",
            ann_file,
            statistics.crowd_boxes,
            statistics.degenerate_boxes,
            statistics.outside_boxes,
            statistics.images_without_boxes,
            statistics.small_images,
            min_image_side,
        )
    return records, label_to_category_id, class_names, statistics


class CocoDetection(Dataset):
    """A COCO-format detection dataset producing transformed items (see ``ladet.data.transforms``).

    Args:
        ann_file: COCO JSON path.
        image_dir: folder the JSON ``file_name`` entries are relative to.
        train: training filters (drop images without boxes / too small) when True.
        transform: applied as ``transform(image [3,H,W], boxes [G,4], generator)``; defaults to
            the test transform of the default data config (1333 x 800, no flip).
        skip_unreadable: if True, a missing or corrupt image is skipped (the next readable item is
            returned, the index recorded in ``statistics.unreadable_images`` and a warning logged
            with the running count); if False it raises ValueError naming the file. With DataLoader
            workers each worker holds its own copy of ``statistics``: the warnings are the report.
        min_image_side: training images whose shorter side is below this are dropped.
        seed: base seed of the per-sample random generators.

    Indexing: ``dataset[index]`` uses the epoch set by :meth:`set_epoch`; ``dataset[(index,
    epoch)]`` (what :class:`ladet.data.samplers.GroupedBatchSampler` yields) carries the epoch
    itself so workers never depend on a stale copy of the dataset.
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
        self.ann_file = os.fspath(ann_file)
        self.image_dir = Path(image_dir)
        self.train = train
        self.transform = transform if transform is not None else DetectionTransform()
        self.skip_unreadable = skip_unreadable
        self.seed = seed
        self.epoch = 0
        self.records, self.label_to_category_id, self.class_names, self.statistics = parse_coco_annotations(
            self.ann_file, train, min_image_side
        )
        if not self.records:
            raise ValueError(f"{self.ann_file}: no usable images (train={train})")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.label_to_category_id)

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose random draws ``dataset[index]`` uses."""
        self.epoch = epoch

    def aspect_ratio_groups(self) -> list[int]:
        """Group id per image: 1 if width / height > 1 (landscape), else 0 (mmdet flag)."""
        return [int(record.width / record.height > 1) for record in self.records]

    def image_path(self, index: int) -> Path:
        return self.image_dir / self.records[index].file_name

    def read_image(self, index: int) -> Image.Image:
        """Decodes image ``index`` as RGB; ValueError naming the file if missing or unreadable."""
        path = self.image_path(index)
        try:
            with Image.open(path) as opened:
                return opened.convert("RGB")
        except (OSError, ValueError) as error:
            raise ValueError(
                f"cannot read image {path} (image id {self.records[index].image_id}): {error}"
            ) from error

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple):
            index, epoch = int(key[0]), int(key[1])
        else:
            index, epoch = int(key), self.epoch
        generator = sample_generator(self.seed, epoch, index)
        for attempt in range(len(self.records)):
            current = (index + attempt) % len(self.records)
            try:
                image = self.read_image(current)
            except ValueError:
                if not self.skip_unreadable:
                    raise
                if current not in self.statistics.unreadable_images:
                    self.statistics.unreadable_images.add(current)
                    logger.warning(
                        "skipping unreadable image %s (%d skipped so far)",
                        self.image_path(current),
                        len(self.statistics.unreadable_images),
                    )
                continue
            return self._make_item(current, image, generator)
        raise ValueError(f"{self.ann_file}: no readable image in {self.image_dir}")

    def _make_item(self, index: int, image: Image.Image, generator: torch.Generator) -> dict[str, Any]:
        record = self.records[index]
        if image.size != (record.width, record.height):
            raise ValueError(
                f"image {self.image_path(index)} (image id {record.image_id}) is "
                f"{image.size[0]}x{image.size[1]} but {self.ann_file} says {record.width}x{record.height}"
            )
        item = self.transform(image_to_tensor(image), torch.from_numpy(record.boxes), generator)
        item["labels"] = torch.from_numpy(record.labels)
        item["image_id"] = record.image_id
        return item
