"""Classes from the data: ``model.num_classes``, ``class_names`` and ``data.category_ids``.

:func:`resolve_classes` fills whichever of the three the config leaves unset from the dataset's
categories and refuses a config whose explicit values disagree with them (naming both), so that a
model never trains with labels >= num_classes as background, and predictions always carry the
dataset's category ids and names. Category ids may be any integers (0 included): label ``i`` is
the ``i``-th id in sorted order (COCO) or the ``i``-th name of the class list (VOC, YOLO).
"""

from __future__ import annotations

import json
from pathlib import Path

from ladet.config.schema import Config
from ladet.data.coco import coco_categories
from ladet.data.loading import layout_class_names
from ladet.data.voc import VOC_CLASS_NAMES


def dataset_categories(config: Config) -> tuple[list[int], list[str], str] | None:
    """(category ids, names, where they came from) of the configured dataset, or None if unreadable.

    COCO: the ``categories`` of ``data.val.ann_file`` (else ``data.train.ann_file``); VOC / YOLO:
    the class list (``class_names`` / ``data.class_names_file``; VOC default: the 20 VOC classes).
    """
    data = config.data
    if data.format in ("voc", "yolo"):
        names = layout_class_names(config)
        if names is None and data.format == "voc":
            names = list(VOC_CLASS_NAMES)
        if names is None:
            return None
        if config.class_names:
            source = "class_names"
        else:
            source = data.class_names_file or "the 20 Pascal VOC classes"
        return list(range(len(names))), names, source
    for ann_file in (data.val.ann_file, data.train.ann_file):
        if ann_file and Path(ann_file).is_file():
            try:
                document = json.loads(Path(ann_file).read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise ValueError(f"annotation file {ann_file} cannot be read: {error}") from error
            if not isinstance(document, dict) or "categories" not in document:
                raise ValueError(f"annotation file {ann_file}: missing top-level key 'categories'")
            ids, names = coco_categories(document, ann_file)
            return ids, names, ann_file
    return None


def resolve_classes(config: Config) -> Config:
    """Fills ``model.num_classes``, ``class_names`` and ``data.category_ids`` from the dataset (in place).

    Raises:
        ValueError: an explicit value that disagrees with the dataset (both named), or
            ``model.num_classes`` unset while the dataset's categories cannot be read.
    """
    found = dataset_categories(config)
    model = config.model
    if found is None:
        if model.num_classes is None:
            raise ValueError(
                "model.num_classes is not set and the dataset's categories cannot be read "
                f"(data.format={config.data.format}, data.val.ann_file={config.data.val.ann_file!r}, "
                f"data.train.ann_file={config.data.train.ann_file!r}): set model.num_classes (and class_names), "
                "or point data.* at the dataset"
            )
        return config
    ids, names, source = found
    if model.num_classes is None:
        model.num_classes = len(ids)
    elif model.num_classes != len(ids):
        raise ValueError(
            f"model.num_classes={model.num_classes} but the dataset ({source}) has {len(ids)} categories "
            f"{_listing(ids, names)}: set model.num_classes={len(ids)} or leave it unset (null) to take it from the data"
        )
    if not config.class_names:
        config.class_names = list(names)
    elif list(config.class_names) != list(names):
        raise ValueError(
            f"class_names {list(config.class_names)} differ from the dataset's ({source}) {list(names)}"
        )
    if not config.data.category_ids:
        config.data.category_ids = list(ids)
    elif list(config.data.category_ids) != list(ids):
        raise ValueError(
            f"data.category_ids {list(config.data.category_ids)} differ from the dataset's ({source}) {list(ids)}"
        )
    return config


def _listing(ids: list[int], names: list[str], limit: int = 25) -> str:
    pairs = [f"{category_id}: {name}" for category_id, name in zip(ids, names, strict=True)]
    shown = ", ".join(pairs[:limit]) + (", ..." if len(pairs) > limit else "")
    return "{" + shown + "}"
