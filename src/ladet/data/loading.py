"""One entry point for every layout: ``load_annotations(config, split)`` -> :class:`DatasetAnnotations`.

Parsed splits are cached per process (keyed by the files, their modification times and the
options), so that the check before step 0, the per-epoch training loaders and the evaluation
share one parse, and the images the check excluded stay excluded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ladet.config.schema import Config, DatasetConfig
from ladet.data.coco import read_coco
from ladet.data.problems import SKIPPABLE_IMAGE_PROBLEMS
from ladet.data.records import DatasetAnnotations
from ladet.data.voc import read_voc
from ladet.data.yolo import read_class_names_file, read_yolo

_CACHE: dict[tuple[Any, ...], DatasetAnnotations] = {}


def split_config(config: Config, split: str) -> DatasetConfig:
    """``data.train`` for "train", ``data.val`` for "val" / "test"."""
    if split == "train":
        return config.data.train
    if split in ("val", "test"):
        return config.data.val
    raise ValueError(f"unknown split '{split}' (expected 'train' or 'val')")


def layout_class_names(config: Config) -> list[str] | None:
    """VOC / YOLO class list: top-level ``class_names``, else ``data.class_names_file``, else None."""
    if config.class_names:
        return list(config.class_names)
    if config.data.class_names_file:
        return read_class_names_file(config.data.class_names_file)
    return None


def _modified(path: str) -> float:
    try:
        return os.stat(path).st_mtime_ns if path else 0.0
    except OSError:
        return -1.0


def _key(config: Config, split: str) -> tuple[Any, ...]:
    dataset, data = split_config(config, split), config.data
    return (
        data.format, split == "train", dataset.ann_file, dataset.image_dir, dataset.annotation_dir,
        _modified(dataset.ann_file), _modified(dataset.image_dir), data.min_image_side,
        tuple(config.class_names), data.class_names_file, _modified(data.class_names_file),
        data.skip_unreadable_images,
    )  # fmt: skip


def read_split(config: Config, split: str) -> DatasetAnnotations:
    """Parses a split with the reader of ``data.format`` (no cache)."""
    dataset, data = split_config(config, split), config.data
    train = split == "train"
    if data.format == "coco":
        annotations = read_coco(dataset.ann_file, dataset.image_dir, train, data.min_image_side)
    elif data.format == "voc":
        annotations = read_voc(
            dataset.ann_file,
            dataset.image_dir,
            layout_class_names(config),
            train,
            data.min_image_side,
            dataset.annotation_dir or None,
        )
    elif data.format == "yolo":
        annotations = read_yolo(
            dataset.image_dir,
            dataset.ann_file or None,
            layout_class_names(config) or [],
            train,
            data.min_image_side,
            max(1, data.check_threads),
        )
    else:
        raise ValueError(f"data.format {data.format!r}: expected coco, voc or yolo")
    name = "data.train" if train else "data.val"
    annotations.problems.title = f"{name} ({annotations.problems.title})"
    if data.skip_unreadable_images:
        annotations.problems.actions.update({kind: "drop" for kind in SKIPPABLE_IMAGE_PROBLEMS})
    return annotations


def load_annotations(config: Config, split: str) -> DatasetAnnotations:
    """The parsed split, from the per-process cache when the files have not changed."""
    key = _key(config, split)
    if key not in _CACHE:
        _CACHE[key] = read_split(config, split)
    return _CACHE[key]


def clear_cache() -> None:
    _CACHE.clear()


def evaluation_ground_truth(config: Config, annotations: DatasetAnnotations) -> str | dict[str, Any]:
    """What the COCO evaluator compares against: the JSON file itself for COCO (its ``area``
    values drive the size split), the records as a COCO document for VOC / YOLO."""
    if annotations.data_format == "coco":
        return os.fspath(Path(annotations.source))
    return annotations.coco_document()
