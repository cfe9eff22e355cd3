"""Images: 16-bit values scaled (not saturated) to 8 bits, header-first checks of broken files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ladet.config.schema import DataConfig
from ladet.data.coco import CocoDetection
from ladet.data.images import inspect_image, read_rgb_image
from ladet.data.transforms import DetectionTransform, prepare_image_for_inference

# 16-bit values and their 8-bit values computed by hand: v8 = round(v16 * 255 / 65535) = round(v16 / 257)
#   0 -> 0;  128 / 257 = 0.498 -> 0;  129 / 257 = 0.502 -> 1;  1000 / 257 = 3.89 -> 4;
#   32896 / 257 = 128.0 -> 128;  65535 / 257 = 255.0 -> 255
SIXTEEN_BIT = [0, 128, 129, 1000, 32896, 65535]
EIGHT_BIT = [0, 0, 1, 4, 128, 255]


def _write_16_bit_png(path: Path) -> None:
    array = np.array([SIXTEEN_BIT] * 2, dtype=np.uint16)  # [2, 6]
    Image.fromarray(array).save(path)
    with Image.open(path) as check:
        assert check.mode == "I;16"  # a real 16-bit greyscale PNG


def test_sixteen_bit_png_is_scaled_not_saturated(tmp_path: Path) -> None:
    _write_16_bit_png(tmp_path / "deep.png")
    image = np.asarray(read_rgb_image(tmp_path / "deep.png"))
    assert image.dtype == np.uint8 and image.shape == (2, 6, 3)
    assert image[0, :, 0].tolist() == EIGHT_BIT and (image[..., 0] == image[..., 2]).all()


def test_sixteen_bit_png_reaches_the_model_scaled(tmp_path: Path) -> None:
    """Through the dataset (training) and the predictor's preprocessing alike (on main: 255 everywhere but 0)."""
    _write_16_bit_png(tmp_path / "deep.png")
    document = {
        "images": [{"id": 1, "file_name": "deep.png", "width": 6, "height": 2}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 0, 3, 2], "area": 6}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "a.json").write_text(json.dumps(document))
    identity = DetectionTransform(max_size=6, short_size=2, size_divisor=1)
    dataset = CocoDetection(tmp_path / "a.json", tmp_path, train=True, transform=identity, min_image_side=1)
    assert np.asarray(dataset.read_image(0))[0, :, 1].tolist() == EIGHT_BIT
    item = prepare_image_for_inference(
        tmp_path / "deep.png", DataConfig(max_size=6, short_size=2, size_divisor=1)
    )
    mean, std = 116.28, 57.12  # green channel normalisation
    recovered = (item["image"][1, 0] * std + mean).round().tolist()
    assert recovered == [float(value) for value in EIGHT_BIT]


def test_inspect_image_finds_each_defect(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(good)
    assert inspect_image(good, 80, 64) == []
    assert [kind for kind, _ in inspect_image(tmp_path / "missing.jpg", 80, 64)] == ["image_missing"]
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert [kind for kind, _ in inspect_image(tmp_path / "empty.jpg", 80, 64)] == ["image_empty"]
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert [kind for kind, _ in inspect_image(tmp_path / "cut.jpg", 80, 64)] == ["image_undecodable"]
    png = tmp_path / "good.png"
    Image.open(good).save(png)
    png_data = png.read_bytes()
    (tmp_path / "cut.png").write_bytes(png_data[: len(png_data) // 2])
    assert [kind for kind, _ in inspect_image(tmp_path / "cut.png", 80, 64)] == ["image_undecodable"]
    (tmp_path / "text.jpg").write_text("not an image")
    assert [kind for kind, _ in inspect_image(tmp_path / "text.jpg", 80, 64)] == ["image_undecodable"]
    found = inspect_image(good, 64, 64)
    assert [kind for kind, _ in found] == ["image_size_mismatch"] and "80x64" in found[0][1]
    Image.fromarray(np.zeros((4, 4), dtype=np.float32)).save(tmp_path / "float.tif")
    assert [kind for kind, _ in inspect_image(tmp_path / "float.tif", 4, 4)] == ["image_mode_unsupported"]
    with pytest.raises(ValueError, match="unsupported image mode 'F'"):
        read_rgb_image(tmp_path / "float.tif")
    _write_16_bit_png(tmp_path / "deep.png")
    assert [kind for kind, _ in inspect_image(tmp_path / "deep.png", 6, 2)] == ["image_high_bit_depth"]


def test_exif_rotation_is_reported_and_pixels_are_used_as_stored(tmp_path: Path) -> None:
    image = Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert [kind for kind, _ in inspect_image(tmp_path / "rotated.jpg", 60, 40)] == ["image_exif_rotated"]
    found = dict(inspect_image(tmp_path / "rotated.jpg", 40, 60))  # annotation in the displayed frame
    assert "EXIF-rotated size" in found["image_size_mismatch"]
    assert read_rgb_image(tmp_path / "rotated.jpg").size == (60, 40)
