"""Built-in shapes dataset: determinism, valid COCO content, tight boxes, occlusion rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ladet.data.builtin import (
    MIN_VISIBLE_FRACTION,
    SHAPE_NAMES,
    _draw_shape_mask,
    make_builtin_dataset,
    render_image,
    tight_box,
)
from ladet.data.coco import CocoDetection


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("builtin_a")
    return make_builtin_dataset(folder, seed=0, num_train=8, num_val=4, image_size=(128, 128))


def test_same_seed_is_byte_identical_and_other_seed_differs(tiny: dict[str, Path], tmp_path: Path) -> None:
    again = make_builtin_dataset(tmp_path / "b", seed=0, num_train=8, num_val=4, image_size=(128, 128))
    other = make_builtin_dataset(tmp_path / "c", seed=1, num_train=8, num_val=4, image_size=(128, 128))
    for key in ("train_ann_file", "val_ann_file"):
        assert tiny[key].read_bytes() == again[key].read_bytes()
        assert tiny[key].read_bytes() != other[key].read_bytes()
    first_image = sorted(tiny["train_image_dir"].iterdir())[0]
    assert first_image.read_bytes() == (again["train_image_dir"] / first_image.name).read_bytes()
    assert first_image.read_bytes() != (other["train_image_dir"] / first_image.name).read_bytes()


def test_json_is_ordinary_coco_and_loads(tiny: dict[str, Path]) -> None:
    document = json.loads(tiny["train_ann_file"].read_text())
    assert [category["name"] for category in document["categories"]] == list(SHAPE_NAMES)
    assert len(document["images"]) == 8
    for annotation in document["annotations"]:
        assert annotation["iscrowd"] == 0 and annotation["area"] > 0
        x, y, w, h = annotation["bbox"]
        image = document["images"][annotation["image_id"] - 1]
        assert (
            0 <= x and 0 <= y and x + w <= image["width"] and y + h <= image["height"] and w >= 1 and h >= 1
        )
        assert annotation["area"] <= w * h
    per_image = np.bincount([a["image_id"] for a in document["annotations"]], minlength=9)[1:]
    assert per_image.min() >= 1 and per_image.max() <= 12
    dataset = CocoDetection(tiny["train_ann_file"], tiny["train_image_dir"], train=True)
    assert len(dataset) == 8 and dataset.num_classes == 12
    assert dataset.problems.count("box_degenerate") == 0 and dataset.problems.count("box_outside") == 0


def test_circle_mask_box_known_answer() -> None:
    # PIL fills the ellipse inscribed in [22, 22, 42, 42] inclusive -> pixels 22..42 -> box [22, 22, 43, 43].
    mask = _draw_shape_mask("circle", 64, 64, np.array([32.0, 32.0]), 20.0, np.random.default_rng(0))
    assert tight_box(mask) == [22, 22, 43, 43]
    assert not mask[32, 32 - 11] and mask[32, 32 - 10]


def test_tight_box_of_hand_made_mask() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[2, 3] = True
    mask[6, 9] = True
    assert tight_box(mask) == [3, 2, 10, 7]


def test_render_respects_sizes_and_occlusion_rule() -> None:
    for index in range(6):
        rng = np.random.default_rng([9, index])
        image, objects = render_image(rng, 300, 260, return_visibility=True)
        assert image.shape == (260, 300, 3) and image.dtype == np.uint8
        assert 1 <= len(objects) <= 12
        for drawn in objects:
            x1, y1, x2, y2 = drawn["box"]
            assert 0 <= x1 < x2 <= 300 and 0 <= y1 < y2 <= 260
            assert max(x2 - x1, y2 - y1) >= 8
            assert drawn["visible_pixels"] >= MIN_VISIBLE_FRACTION * drawn["area"]
        last = objects[-1]  # nothing is drawn over the last object
        assert last["visible_pixels"] == last["area"]


def test_default_scale_has_small_and_large_objects(tmp_path: Path) -> None:
    paths = make_builtin_dataset(tmp_path, seed=2, num_train=12, num_val=1)
    annotations = json.loads(paths["train_ann_file"].read_text())["annotations"]
    sides = np.array([max(a["bbox"][2], a["bbox"][3]) for a in annotations])
    assert sides.min() < 24 and sides.max() > 120
    assert len({a["category_id"] for a in annotations}) >= 8
