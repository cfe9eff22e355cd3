"""CocoDetection: parsing, filtering, precise errors, unreadable images, deterministic items."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ladet.data.coco import CocoDetection
from ladet.data.transforms import DetectionTransform

IDENTITY = DetectionTransform(max_size=64, short_size=64)  # 64x64 images keep their size


def _document() -> dict:
    images = [
        {"id": 11, "file_name": "a.png", "width": 64, "height": 64},
        {"id": 12, "file_name": "b.png", "width": 64, "height": 64},  # only crowd/degenerate boxes
        {"id": 13, "file_name": "c.png", "width": 64, "height": 64},  # no annotation at all
        {"id": 14, "file_name": "d.png", "width": 64, "height": 16},  # too small for training
    ]
    annotations = [
        {"id": 101, "image_id": 11, "category_id": 7, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0},
        {"id": 102, "image_id": 11, "category_id": 3, "bbox": [0, 0, 5, 6], "area": 30, "iscrowd": 0},
        {"id": 103, "image_id": 11, "category_id": 3, "bbox": [70, 10, 5, 5], "area": 25, "iscrowd": 0},
        {"id": 104, "image_id": 12, "category_id": 3, "bbox": [1, 1, 20, 20], "area": 400, "iscrowd": 1},
        {"id": 105, "image_id": 12, "category_id": 7, "bbox": [1, 1, 0.5, 20], "area": 10, "iscrowd": 0},
        {"id": 106, "image_id": 12, "category_id": 7, "bbox": [1, 1, 10, 10], "area": 0, "iscrowd": 0},
        {"id": 107, "image_id": 14, "category_id": 7, "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0},
    ]
    categories = [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def _write(folder: Path, document: dict, make_images: bool = True) -> Path:
    ann_file = folder / "annotations.json"
    ann_file.write_text(json.dumps(document))
    if make_images:
        rng = np.random.default_rng(0)
        for image in document["images"]:
            array = rng.integers(0, 256, (image["height"], image["width"], 3), dtype=np.uint8)
            Image.fromarray(array).save(folder / image["file_name"])
    return ann_file


@pytest.fixture()
def dataset_folder(tmp_path: Path) -> Path:
    _write(tmp_path, _document())
    return tmp_path


def test_categories_boxes_and_filters_in_training(dataset_folder: Path) -> None:
    dataset = CocoDetection(
        dataset_folder / "annotations.json", dataset_folder, train=True, transform=IDENTITY
    )
    assert dataset.label_to_category_id == [3, 7] and dataset.class_names == ["three", "seven"]
    # 12 keeps its area-0 box (area only matters for the size split), 13: no box, 14: small
    assert [record.image_id for record in dataset.records] == [11, 12]
    item = dataset[0]
    torch.testing.assert_close(item["boxes"], torch.tensor([[10.0, 20.0, 40.0, 60.0], [0.0, 0.0, 5.0, 6.0]]))
    assert item["labels"].tolist() == [1, 0]
    assert item["image_id"] == 11 and item["image_size"] == (64, 64) and item["scale_factor"] == (1.0, 1.0)
    problems = dataset.problems
    counts = {kind: problems.count(kind) for kind in problems.entries}
    assert counts == {
        "box_crowd": 1,
        "box_degenerate": 1,
        "box_outside": 1,
        "area_not_positive": 1,
        "image_without_boxes": 1,
        "image_too_small": 1,
    }


def test_evaluation_keeps_every_image(dataset_folder: Path) -> None:
    dataset = CocoDetection(
        dataset_folder / "annotations.json", dataset_folder, train=False, transform=IDENTITY
    )
    assert [record.image_id for record in dataset.records] == [11, 12, 13, 14]
    # the crowd box never reaches the model (it stays an ignore region); the area-0 box does
    torch.testing.assert_close(dataset[1]["boxes"], torch.tensor([[1.0, 1.0, 11.0, 11.0]]))
    assert dataset.records[1].ignore_boxes.tolist() == [[1.0, 1.0, 21.0, 21.0]]
    assert dataset[3]["original_size"] == (16, 64)
    assert dataset.aspect_ratio_groups() == [0, 0, 0, 1]


def _expect_error(folder: Path, document: dict, pattern: str) -> None:
    ann_file = _write(folder, document, make_images=False)
    with pytest.raises(ValueError) as error:
        CocoDetection(ann_file, folder, train=True)
    message = str(error.value)
    assert str(ann_file) in message
    assert re.search(pattern, message), message


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("bbox", None, r"annotation id 102 \(image id 11\).*missing key 'bbox'"),
        ("category_id", 99, r"annotation id 102 \(image id 11\).*unknown category id 99"),
        ("bbox", [0, 0, float("nan"), 5], r"annotation id 102 \(image id 11\).*NaN"),
        ("bbox", [0, 0, -3, 5], r"annotation id 102 \(image id 11\).*negative"),
        ("bbox", [0, 0, 5], r"annotation id 102 \(image id 11\).*4 numbers"),
        ("image_id", 55, r"annotation id 102 \(image id 55\).*not listed"),
    ],
)
def test_malformed_annotations_name_file_image_and_annotation(
    tmp_path: Path, field: str, value: object, pattern: str
) -> None:
    document = _document()
    annotation = document["annotations"][1]
    if value is None:
        del annotation[field]
    else:
        annotation[field] = value
    _expect_error(tmp_path, document, pattern)


def test_malformed_images_and_top_level(tmp_path: Path) -> None:
    document = _document()
    del document["images"][2]["width"]
    _expect_error(tmp_path, document, r"image #2 \(id 13\).*missing key 'width'")
    document = _document()
    del document["categories"]
    _expect_error(tmp_path, document, "missing top-level key 'categories'")
    document = _document()
    document["images"].append(copy.deepcopy(document["images"][0]))
    _expect_error(tmp_path, document, "duplicate image id 11")


def test_missing_image_is_an_error_naming_the_file(dataset_folder: Path) -> None:
    (dataset_folder / "a.png").unlink()
    dataset = CocoDetection(
        dataset_folder / "annotations.json", dataset_folder, train=False, transform=IDENTITY
    )
    with pytest.raises(ValueError, match=r"a\.png.*image id 11"):
        dataset[0]


def test_skip_unreadable_returns_next_readable_in_training_only(dataset_folder: Path) -> None:
    (dataset_folder / "a.png").unlink()
    (dataset_folder / "b.png").write_bytes(b"not an image")
    arguments = dict(transform=IDENTITY, skip_unreadable=True, min_image_side=8)
    dataset = CocoDetection(dataset_folder / "annotations.json", dataset_folder, train=True, **arguments)
    assert [record.image_id for record in dataset.records] == [11, 12, 14]
    assert dataset[0]["image_id"] == 14 and dataset[1]["image_id"] == 14
    assert dataset.unreadable_images == {0, 1}
    # evaluation never substitutes another image (it would be counted twice): the data check
    # drops unreadable images up front instead
    evaluation = CocoDetection(dataset_folder / "annotations.json", dataset_folder, train=False, **arguments)
    with pytest.raises(ValueError, match=r"a\.png.*image id 11.*check-data"):
        evaluation[0]


def test_image_size_mismatch_is_an_error(dataset_folder: Path) -> None:
    Image.new("RGB", (32, 64)).save(dataset_folder / "a.png")
    dataset = CocoDetection(
        dataset_folder / "annotations.json", dataset_folder, train=False, transform=IDENTITY
    )
    with pytest.raises(ValueError, match=r"a\.png.*32x64.*64x64"):
        dataset[0]


def test_items_are_deterministic_per_seed_epoch_index(dataset_folder: Path) -> None:
    transform = DetectionTransform(96, 40, multiscale_short_range=(32, 64), flip_probability=0.5)
    dataset = CocoDetection(
        dataset_folder / "annotations.json", dataset_folder, train=False, transform=transform, seed=5
    )
    dataset.set_epoch(3)
    by_epoch = [dataset[index] for index in range(4)]
    dataset.set_epoch(0)
    by_key = [dataset[(index, 3)] for index in range(4)]
    for first, second in zip(by_epoch, by_key, strict=True):
        torch.testing.assert_close(first["image"], second["image"])
        torch.testing.assert_close(first["boxes"], second["boxes"])
    sizes = {tuple(dataset[(0, epoch)]["image_size"]) for epoch in range(12)}
    assert len(sizes) > 1
