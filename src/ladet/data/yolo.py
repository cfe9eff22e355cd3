"""YOLO txt layout: ``images/<split>/*.jpg`` + ``labels/<split>/*.txt`` + a class-name list.

Config (``data.format: yolo``)::

    data.train.image_dir: my_set/images/train
    data.train.ann_file:  my_set/labels/train   # default: image_dir with its last "images" -> "labels"
    data.class_names_file: my_set/data.yaml     # `names:` list/dict (ultralytics) or one name per line

Each label line is ``class cx cy w h`` with the box centre and size normalised by the image size
(the format of ultralytics, darknet and most labelling tools' YOLO export). An image without a
label file has no objects. A small reader (no library reads this format without pulling in a
training framework): every image header is read once with Pillow for its size.

* Image id: ``int(stem)`` when every file stem is digits, else the 1-based position in sorted
  file order; category id = class index (0-based), so predictions carry the indices of the file.
* Boxes are converted to pixels and go through the same rules as COCO boxes (clip / drop / count).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from ladet.data.images import image_size
from ladet.data.problems import ProblemLog
from ladet.data.records import DatasetAnnotations, apply_box_rules, group_records
from ladet.data.voc import numeric_image_ids

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def default_yolo_label_dir(image_dir: str | os.PathLike[str]) -> Path:
    """``labels/<split>`` beside ``images/<split>`` (the last ``images`` component replaced)."""
    parts = list(Path(image_dir).parts)
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            return Path(*parts)
    raise ValueError(
        f"YOLO image folder {image_dir} has no 'images' component: set data.<split>.ann_file to the label folder"
    )


def read_class_names_file(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a YAML file with ``names`` (a list, or a dict index -> name) or a text
    file with one name per line (``classes.txt``, ``obj.names``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"data.class_names_file {path} cannot be read: {error}") from error
    if path.suffix.lower() in (".yaml", ".yml"):
        document = yaml.safe_load(text)
        names = document.get("names") if isinstance(document, dict) else None
        if isinstance(names, dict):
            if sorted(int(key) for key in names) != list(range(len(names))):
                raise ValueError(f"{path}: 'names' keys must be 0..N-1, got {sorted(names)}")
            return [str(names[key]) for key in sorted(names, key=int)]
        if not isinstance(names, list):
            raise ValueError(f"{path}: expected a 'names' list or dict")
        return [str(name) for name in names]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _header_size(path: Path) -> tuple[int, int]:
    try:
        return image_size(path)
    except (OSError, ValueError, SyntaxError):
        return (0, 0)  # reported by the image pass of ladet.data.check


def read_yolo(
    image_dir: str | os.PathLike[str],
    label_dir: str | os.PathLike[str] | None,
    class_names: list[str],
    train: bool,
    min_image_side: int = 32,
    threads: int = 8,
) -> DatasetAnnotations:
    """Parses a YOLO split into records (see the module docstring)."""
    if not class_names:
        raise ValueError("data.format=yolo needs the class names: set data.class_names_file or class_names")
    image_dir = Path(image_dir)
    labels_root = Path(label_dir) if label_dir else default_yolo_label_dir(image_dir)
    if not image_dir.is_dir():
        raise ValueError(f"YOLO image folder {image_dir} does not exist")
    files = sorted(p.name for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        sizes = list(pool.map(_header_size, [image_dir / name for name in files]))
    problems = ProblemLog(f"yolo {labels_root}")
    owner: list[int] = []
    rows: list[list[float]] = []
    where_of: list[str] = []
    for position, name in enumerate(files):
        label_file = labels_root / f"{Path(name).stem}.txt"
        if not label_file.is_file():
            continue
        for line_number, line in enumerate(label_file.read_text(encoding="utf-8").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{label_file}:{line_number}"
            if len(fields) != 5:
                raise ValueError(f"{where}: expected 5 numbers 'class cx cy w h', got {len(fields)} fields")
            try:
                values = [float(field) for field in fields]
            except ValueError as error:
                raise ValueError(f"{where}: not numeric: {line!r}") from error
            if not all(math.isfinite(value) for value in values):
                raise ValueError(f"{where}: NaN or infinite value: {line!r}")
            if values[0] != int(values[0]) or not 0 <= values[0] < len(class_names):
                raise ValueError(
                    f"{where}: class {fields[0]} is not in 0..{len(class_names) - 1} ({len(class_names)} names)"
                )
            if values[3] < 0 or values[4] < 0:
                raise ValueError(f"{where}: negative width or height: {line!r}")
            owner.append(position)
            rows.append(values)
            where_of.append(where)
    table = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    owner_array = np.asarray(owner, dtype=np.int64)
    image_sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)[owner_array]  # [A, 2] (w, h)
    centre, extent = table[:, 1:3] * image_sizes, table[:, 3:5] * image_sizes
    boxes = np.concatenate([centre - extent / 2, centre + extent / 2], axis=1)
    readable = (image_sizes > 0).all(axis=1)
    crowd = np.zeros(len(table), dtype=bool)
    clipped, usable = apply_box_rules(
        boxes[readable],
        image_sizes[readable],
        crowd[readable],
        lambda i: where_of[int(np.flatnonzero(readable)[i])],
        problems,
    )
    all_clipped, all_usable = boxes.copy(), np.zeros(len(table), dtype=bool)
    all_clipped[readable], all_usable[readable] = clipped, usable
    records = group_records(
        numeric_image_ids([Path(name).stem for name in files]), files, sizes, owner_array, all_clipped,
        table[:, 0].astype(np.int64), all_usable, crowd, train, min_image_side, problems,
    )  # fmt: skip
    return DatasetAnnotations(
        source=os.fspath(labels_root),
        data_format="yolo",
        image_dir=image_dir,
        train=train,
        records=records,
        category_ids=list(range(len(class_names))),
        class_names=list(class_names),
        problems=problems,
    )
