"""What every reader (COCO, VOC, YOLO) produces: image records and the shared box rules.

Box rules (the same for the three layouts, applied on whole arrays at load time):

* crowd (COCO ``iscrowd=1``) and VOC ``difficult=1`` boxes are not trained on; they are kept
  per image (``ignore_boxes``) and are ignore regions in evaluation;
* a box with width or height < 1 px is dropped (``box_degenerate``);
* a box partly outside the image is clipped to [0, W] x [0, H] (``box_partly_outside``), as
  torchvision's ``clip_boxes_to_image`` and detectron2's ``Boxes.clip`` do;
* a box with less than 1 px inside the image after clipping is dropped (``box_outside``).

Every drop and clip is counted in the dataset's :class:`ladet.data.problems.ProblemLog`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ladet.data.problems import ProblemLog


@dataclass
class ImageRecord:
    """One image of the dataset with its usable boxes in the original frame.

    ``boxes`` [G, 4] float32 (x1, y1, x2, y2) clipped to the image; ``labels`` [G] int64
    contiguous labels; ``ignore_boxes`` [C, 4] / ``ignore_labels`` [C]: crowd or difficult boxes.
    """

    image_id: int
    file_name: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    ignore_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.float32))
    ignore_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))


@dataclass
class DatasetAnnotations:
    """A parsed split: records, categories and the problems found.

    Attributes:
        source: the annotation file / list / label folder the split was read from.
        data_format: ``"coco"``, ``"voc"`` or ``"yolo"``.
        image_dir: folder the records' ``file_name`` entries are relative to.
        records: images in file order (training filters applied when ``train``).
        category_ids: dataset category id of each contiguous label.
        class_names: name of each contiguous label.
        problems: what the reader found (and the image pass adds to).
        excluded_image_ids: images left out after the image pass (unreadable + skip option).
    """

    source: str
    data_format: str
    image_dir: Path
    train: bool
    records: list[ImageRecord]
    category_ids: list[int]
    class_names: list[str]
    problems: ProblemLog
    excluded_image_ids: list[int] = field(default_factory=list)
    images_checked: bool = False

    def exclude_images(self, image_ids: set[int]) -> None:
        """Removes these images (found unreadable by the image pass) from the records."""
        if not image_ids:
            return
        self.records = [record for record in self.records if record.image_id not in image_ids]
        self.excluded_image_ids = sorted(set(self.excluded_image_ids) | image_ids)

    def coco_document(self) -> dict:
        """The split as a COCO ground-truth dict (evaluation of VOC / YOLO data).

        Annotation ids are 1..N; ``area`` is the box area; ignore boxes are ``iscrowd=1``.
        """
        annotations: list[dict] = []
        for record in self.records:
            for boxes, labels, crowd in (
                (record.boxes, record.labels, 0),
                (record.ignore_boxes, record.ignore_labels, 1),
            ):
                xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64)
                for box, label in zip(xywh.tolist(), labels.tolist(), strict=True):
                    annotations.append(
                        {
                            "id": len(annotations) + 1,
                            "image_id": record.image_id,
                            "category_id": self.category_ids[label],
                            "bbox": box,
                            "area": box[2] * box[3],
                            "iscrowd": crowd,
                        }
                    )
        images = [
            {"id": r.image_id, "file_name": r.file_name, "width": r.width, "height": r.height}
            for r in self.records
        ]
        categories = [
            {"id": category_id, "name": name}
            for category_id, name in zip(self.category_ids, self.class_names, strict=True)
        ]
        return {"images": images, "annotations": annotations, "categories": categories}


def format_box(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{value:g}" for value in box.tolist()) + "]"


def apply_box_rules(
    boxes: np.ndarray,
    image_sizes: np.ndarray,
    crowd: np.ndarray,
    describe: Callable[[int], str],
    problems: ProblemLog,
) -> tuple[np.ndarray, np.ndarray]:
    """Clips, drops and counts boxes (see the module docstring).

    Args:
        boxes: [A, 4] float64 (x1, y1, x2, y2) in pixels.
        image_sizes: [A, 2] float64 (width, height) of each box's image.
        crowd: [A] bool, crowd / difficult boxes.
        describe: index -> "annotation id 7 (image id 3)"-like text for the examples.
        problems: where the counts go.

    Returns:
        (clipped boxes [A, 4] float64, usable [A] bool: not crowd, not dropped).
    """
    widths, heights = image_sizes[:, 0:1], image_sizes[:, 1:2]
    degenerate = ((boxes[:, 2] - boxes[:, 0]) < 1) | ((boxes[:, 3] - boxes[:, 1]) < 1)
    limits = np.concatenate([widths, heights, widths, heights], axis=1)  # [A, 4]
    clipped = np.clip(boxes, 0.0, limits)
    outside = ~degenerate & (((clipped[:, 2] - clipped[:, 0]) < 1) | ((clipped[:, 3] - clipped[:, 1]) < 1))
    partly = ~degenerate & ~outside & (clipped != boxes).any(axis=1)
    for kind, mask in (
        ("box_degenerate", degenerate & ~crowd),
        ("box_outside", outside & ~crowd),
        ("box_partly_outside", partly & ~crowd),
        ("box_crowd", crowd),
    ):
        indices = np.flatnonzero(mask)
        examples = [
            f"{describe(int(i))}: {format_box(boxes[i])} in a {image_sizes[i, 0]:g}x{image_sizes[i, 1]:g} image"
            for i in indices[:3]
        ]
        problems.add(kind, examples, count=len(indices))
    usable = ~crowd & ~degenerate & ~outside
    return clipped, usable


def group_records(
    image_ids: list[int],
    file_names: list[str],
    sizes: list[tuple[int, int]],
    owner_positions: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    usable: np.ndarray,
    crowd: np.ndarray,
    train: bool,
    min_image_side: int,
    problems: ProblemLog,
) -> list[ImageRecord]:
    """Builds one record per image from per-box arrays (``owner_positions``: image position of each box).

    In training, images without a usable box and images with a side < ``min_image_side`` are
    dropped and counted.
    """
    count = len(image_ids)
    order = np.argsort(owner_positions, kind="stable")
    starts = np.searchsorted(owner_positions[order], np.arange(count + 1))
    boxes32 = boxes.astype(np.float32)
    records: list[ImageRecord] = []
    empty, small = [], []
    for position in range(count):
        members = order[starts[position] : starts[position + 1]]
        keep, ignore = members[usable[members]], members[crowd[members]]
        width, height = sizes[position]
        where = f"{file_names[position]} (image id {image_ids[position]})"
        if train and len(keep) == 0:
            empty.append(where)
            continue
        if train and min(width, height) < min_image_side:
            small.append(f"{where}: {width}x{height}")
            continue
        records.append(
            ImageRecord(
                image_id=image_ids[position],
                file_name=file_names[position],
                width=width,
                height=height,
                boxes=boxes32[keep].reshape(-1, 4),
                labels=labels[keep].astype(np.int64),
                ignore_boxes=boxes32[ignore].reshape(-1, 4),
                ignore_labels=labels[ignore].astype(np.int64),
            )
        )
    problems.add("image_without_boxes", empty)
    problems.add("image_too_small", small)
    return records
