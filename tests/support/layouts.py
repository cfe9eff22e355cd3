"""Writers of small Pascal VOC and YOLO datasets from a COCO document (test fixtures only).

VOC boxes are written as 1-based pixel indices (xmin = x + 1, xmax = x + w), the convention
``ladet.data.voc`` reads back; YOLO boxes as normalised centre and size with 10 decimals.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from xml.etree import ElementTree


def _by_image(document: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    owned: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in document["images"]}
    for annotation in document["annotations"]:
        owned[annotation["image_id"]].append(annotation)
    return owned


def _stem(image: dict[str, Any]) -> str:
    return str(image["id"]).zfill(6)


def write_voc(
    document: dict[str, Any], image_dir: Path, root: Path, split: str, class_names: list[str]
) -> Path:
    """``root/{Annotations,ImageSets/Main,JPEGImages}`` for one split; returns the list file.

    Category ids of ``document`` must be the positions of ``class_names`` (0-based). Crowd
    annotations are written as ``difficult`` objects. Images are copied as ``<id:06d>.jpg``.
    """
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    owned = _by_image(document)
    for image in document["images"]:
        stem = _stem(image)
        shutil.copy(image_dir / image["file_name"], root / "JPEGImages" / f"{stem}.jpg")
        annotation = ElementTree.Element("annotation")
        ElementTree.SubElement(annotation, "filename").text = f"{stem}.jpg"
        size = ElementTree.SubElement(annotation, "size")
        ElementTree.SubElement(size, "width").text = str(image["width"])
        ElementTree.SubElement(size, "height").text = str(image["height"])
        ElementTree.SubElement(size, "depth").text = "3"
        for record in owned[image["id"]]:
            x, y, w, h = record["bbox"]
            obj = ElementTree.SubElement(annotation, "object")
            ElementTree.SubElement(obj, "name").text = class_names[record["category_id"]]
            ElementTree.SubElement(obj, "difficult").text = str(int(record.get("iscrowd", 0)))
            box = ElementTree.SubElement(obj, "bndbox")
            for tag, value in (("xmin", x + 1), ("ymin", y + 1), ("xmax", x + w), ("ymax", y + h)):
                ElementTree.SubElement(box, tag).text = f"{value:g}"
        ElementTree.ElementTree(annotation).write(root / "Annotations" / f"{stem}.xml")
    list_file = root / "ImageSets" / "Main" / f"{split}.txt"
    list_file.write_text("".join(f"{_stem(image)}\n" for image in document["images"]), encoding="utf-8")
    return list_file


def write_yolo(
    document: dict[str, Any], image_dir: Path, root: Path, split: str, class_names: list[str]
) -> Path:
    """``root/images/<split>/*.jpg`` + ``root/labels/<split>/*.txt`` + ``root/data.yaml``; returns data.yaml.

    Category ids of ``document`` must be the class indices. Crowd annotations are skipped (YOLO
    has no ignore flag).
    """
    images, labels = root / "images" / split, root / "labels" / split
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    owned = _by_image(document)
    for image in document["images"]:
        stem = _stem(image)
        shutil.copy(image_dir / image["file_name"], images / f"{stem}.jpg")
        width, height = image["width"], image["height"]
        lines = []
        for record in owned[image["id"]]:
            if record.get("iscrowd", 0):
                continue
            x, y, w, h = record["bbox"]
            lines.append(
                f"{record['category_id']} {(x + w / 2) / width:.10f} {(y + h / 2) / height:.10f} "
                f"{w / width:.10f} {h / height:.10f}\n"
            )
        (labels / f"{stem}.txt").write_text("".join(lines), encoding="utf-8")
    data_yaml = root / "data.yaml"
    data_yaml.write_text("names:\n" + "".join(f"  {i}: {name}\n" for i, name in enumerate(class_names)))
    return data_yaml


def zero_based_document(document: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy whose category ids are 0..C-1 in sorted-id order (the VOC / YOLO ids), and the names."""
    categories = sorted(document["categories"], key=lambda category: category["id"])
    new_id = {category["id"]: index for index, category in enumerate(categories)}
    copied = {
        "images": [dict(image) for image in document["images"]],
        "annotations": [dict(a, category_id=new_id[a["category_id"]]) for a in document["annotations"]],
        "categories": [{"id": new_id[c["id"]], "name": c["name"]} for c in categories],
    }
    return copied, [category["name"] for category in categories]
