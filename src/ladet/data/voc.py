"""Pascal VOC layout: ``Annotations/*.xml`` + ``ImageSets/Main/{train,val}.txt`` + ``JPEGImages/``.

Config (``data.format: voc``)::

    data.train.ann_file:  VOC2007/ImageSets/Main/train.txt   # one image id per line
    data.train.image_dir: VOC2007/JPEGImages                 # <id>.jpg
    data.train.annotation_dir: ""                            # default: <ann_file>/../../../Annotations

Read with the standard library's ``xml.etree.ElementTree``: VOC files are the user's own local
files, Python's bundled expat (>= 2.4.1) refuses the entity-expansion ("billion laughs") attack and
never resolves external entities, so ``defusedxml`` would add a dependency for no gain here.

* Image id: ``int(id)`` when every id of the list is made of digits (VOC2007's ``000005``), else the
  1-based line number; the file is ``<id>.jpg`` (or the XML's ``<filename>`` when that file exists
  and ``<id>.jpg`` does not).
* Boxes: VOC stores 1-based pixel indices ``xmin..xmax``; as in detectron2 the box is
  (xmin - 1, ymin - 1, xmax, ymax). ``difficult=1`` objects are handled like COCO crowd boxes
  (not trained on, ignore regions in evaluation).
* Classes: ``class_names`` / ``data.class_names_file`` when given, else the 20 VOC classes. The
  category id of a class is its position in that list (0-based). An unknown name is an error
  naming the XML file.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from ladet.data.problems import ProblemLog
from ladet.data.records import DatasetAnnotations, apply_box_rules, group_records

VOC_CLASS_NAMES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip


def default_voc_annotation_dir(list_file: str | os.PathLike[str]) -> Path:
    """``<root>/Annotations`` for a list file ``<root>/ImageSets/Main/<split>.txt``."""
    return Path(list_file).resolve().parents[2] / "Annotations"


def read_image_id_list(list_file: str | os.PathLike[str]) -> list[str]:
    """The ids of a VOC ``ImageSets`` list (first column; blank lines skipped)."""
    try:
        lines = Path(list_file).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ValueError(f"VOC image list {list_file} cannot be read: {error}") from error
    return [line.split()[0] for line in lines if line.strip()]


def numeric_image_ids(names: list[str]) -> list[int]:
    """``int(name)`` when every name is digits and they are unique, else 1..N (shared with YOLO)."""
    if names and all(name.isdigit() for name in names) and len({int(name) for name in names}) == len(names):
        return [int(name) for name in names]
    return list(range(1, len(names) + 1))


def _number(element: ElementTree.Element | None, tag: str, where: str) -> float:
    child = element.find(tag) if element is not None else None
    if child is None or child.text is None:
        raise ValueError(f"{where}: missing <{tag}>")
    try:
        return float(child.text)
    except ValueError as error:
        raise ValueError(f"{where}: <{tag}> is not a number: {child.text!r}") from error


def read_voc(
    list_file: str | os.PathLike[str],
    image_dir: str | os.PathLike[str],
    class_names: list[str] | None,
    train: bool,
    min_image_side: int = 32,
    annotation_dir: str | os.PathLike[str] | None = None,
) -> DatasetAnnotations:
    """Parses a VOC split into records (see the module docstring)."""
    names = list(class_names or VOC_CLASS_NAMES)
    label_of = {name: label for label, name in enumerate(names)}
    xml_dir = Path(annotation_dir) if annotation_dir else default_voc_annotation_dir(list_file)
    ids = read_image_id_list(list_file)
    image_ids = numeric_image_ids(ids)
    problems = ProblemLog(f"voc {list_file}")
    file_names: list[str] = []
    sizes: list[tuple[int, int]] = []
    owner: list[int] = []
    labels: list[int] = []
    boxes: list[list[float]] = []
    crowd: list[bool] = []
    where_of: list[str] = []
    for position, name in enumerate(ids):
        xml_path = xml_dir / f"{name}.xml"
        try:
            root = ElementTree.parse(xml_path).getroot()
        except (OSError, ElementTree.ParseError) as error:
            raise ValueError(
                f"VOC annotation {xml_path} (listed in {list_file}) cannot be read: {error}"
            ) from error
        size = root.find("size")
        width, height = (
            int(_number(size, "width", str(xml_path))),
            int(_number(size, "height", str(xml_path))),
        )
        file_name = f"{name}.jpg"
        stored = root.findtext("filename")
        if stored and not (Path(image_dir) / file_name).exists() and (Path(image_dir) / stored).exists():
            file_name = stored
        file_names.append(file_name)
        sizes.append((width, height))
        for number, obj in enumerate(root.iter("object")):
            where = f"{xml_path} object #{number}"
            class_name = (obj.findtext("name") or "").strip()
            if class_name not in label_of:
                raise ValueError(
                    f"{where}: class {class_name!r} is not in the class list {names} "
                    "(set class_names or data.class_names_file)"
                )
            box = obj.find("bndbox")
            x1, y1 = _number(box, "xmin", where) - 1.0, _number(box, "ymin", where) - 1.0
            x2, y2 = _number(box, "xmax", where), _number(box, "ymax", where)
            if not all(np.isfinite([x1, y1, x2, y2])) or x2 < x1 or y2 < y1:
                raise ValueError(f"{where}: invalid box xmin..xmax / ymin..ymax {x1 + 1, y1 + 1, x2, y2}")
            owner.append(position)
            labels.append(label_of[class_name])
            boxes.append([x1, y1, x2, y2])
            crowd.append((obj.findtext("difficult") or "0").strip() == "1")
            where_of.append(where)
    box_array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    owner_array = np.asarray(owner, dtype=np.int64)
    image_sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)[owner_array]
    crowd_array = np.asarray(crowd, dtype=bool)
    clipped, usable = apply_box_rules(box_array, image_sizes, crowd_array, where_of.__getitem__, problems)
    records = group_records(
        image_ids, file_names, sizes, owner_array, clipped, np.asarray(labels, dtype=np.int64),
        usable, crowd_array, train, min_image_side, problems,
    )  # fmt: skip
    return DatasetAnnotations(
        source=os.fspath(list_file),
        data_format="voc",
        image_dir=Path(image_dir),
        train=train,
        records=records,
        category_ids=list(range(len(names))),
        class_names=names,
        problems=problems,
    )
