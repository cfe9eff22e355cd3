"""ladet.deploy without torch: import isolation, numpy pre-processing equal to the PyTorch pipeline,
metadata parsing and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ladet.config.schema import DataConfig
from ladet.data.collate import collate
from ladet.data.transforms import compute_resize_size, prepare_image_for_inference, resize_image
from ladet.deploy import DeployMetadata, MetadataError, prepare_batch
from ladet.deploy.metadata import METADATA_FORMAT, parse_metadata
from ladet.deploy.preprocess import resize_bilinear, resize_size

REPOSITORY = Path(__file__).resolve().parents[1]


def test_importing_the_runtime_never_imports_torch() -> None:
    # a fresh interpreter in which `import torch` fails outright: the runtime must not need it
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import ladet.deploy\n"
        "from ladet.deploy import OnnxPredictor, prepare_batch, read_metadata\n"
        "import onnxruntime\n"
        "assert not any(m.split('.')[0] in ('torch', 'torchvision') for m in sys.modules), 'torch imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize(
    ("height", "width", "new_height", "new_width"), [(37, 53, 96, 128), (300, 200, 111, 74), (5, 9, 5, 9)]
)
def test_numpy_bilinear_resize_matches_torch_interpolate(height, width, new_height, new_width) -> None:
    generator = torch.Generator().manual_seed(height)
    image = torch.randint(0, 256, (3, height, width), generator=generator).float()  # [3, H, W]
    expected = resize_image(image, new_height, new_width).permute(1, 2, 0).numpy()  # [h, w, 3]
    actual = resize_bilinear(image.permute(1, 2, 0).numpy(), new_height, new_width)
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    # 0..255 scale: float32 rounding of the weights only (< 2e-5 relative)
    assert np.abs(actual - expected).max() < 4e-3


@pytest.mark.parametrize(("height", "width"), [(480, 640), (113, 125), (1000, 20), (7, 7)])
def test_resize_size_rule_matches_the_training_pipeline(height, width) -> None:
    for max_size, short_size in [(1333, 800), (128, 96), (320, 256)]:
        assert resize_size(height, width, max_size, short_size) == compute_resize_size(
            height, width, max_size, short_size
        )


def _metadata(short_size: int = 96, max_size: int = 128) -> DeployMetadata:
    return DeployMetadata(
        max_size=max_size,
        short_size=short_size,
        mean=(123.675, 116.28, 103.53),
        std=(58.395, 57.12, 57.375),
        size_divisor=32,
        pad_value=0.0,
        max_detections=100,
        class_names=["a"],
        category_ids=[1],
        raw={},
    )


def test_prepare_batch_equals_transform_and_collate(tmp_path) -> None:
    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (113, 125, 3), dtype=np.uint8),
        rng.integers(0, 256, (70, 140, 3), dtype=np.uint8),
    ]
    path = tmp_path / "first.png"
    Image.fromarray(arrays[0]).save(path)
    inputs = [path, Image.fromarray(arrays[1])]
    data = DataConfig(max_size=128, short_size=96, size_divisor=32)
    expected = collate([prepare_image_for_inference(image, data) for image in inputs], size_divisor=32)
    batch = prepare_batch(inputs, _metadata())
    assert batch.images.shape == tuple(expected.images.shape)
    assert np.abs(batch.images - expected.images.numpy()).max() < 1e-4
    assert np.array_equal(batch.image_sizes, expected.image_sizes.numpy())
    assert np.array_equal(batch.scale_factors, expected.scale_factors.numpy())
    assert np.array_equal(batch.original_sizes, expected.original_sizes.numpy())


def test_metadata_parsing_and_errors() -> None:
    record = {
        "format": METADATA_FORMAT,
        "max_detections": 7,
        "preprocess": {
            "resize": {"max_size": 128, "short_size": 96},
            "normalize": {"mean": [1, 2, 3], "std": [4, 5, 6]},
            "pad": {"size_divisor": 32, "value": 0.0},
        },
        "class_names": ["x", "y"],
        "category_ids": [3, 9],
    }
    parsed = parse_metadata(json.dumps(record), "m.onnx")
    assert (parsed.short_size, parsed.max_size, parsed.size_divisor, parsed.max_detections) == (
        96,
        128,
        32,
        7,
    )
    assert parsed.mean == (1.0, 2.0, 3.0) and parsed.category_ids == [3, 9]
    with pytest.raises(MetadataError, match="m.onnx: no ladet metadata"):
        parse_metadata(None, "m.onnx")
    with pytest.raises(MetadataError, match="m.onnx: unreadable ladet metadata.*KeyError"):
        parse_metadata(json.dumps({**record, "preprocess": {}}), "m.onnx")
    with pytest.raises(MetadataError, match="format 'other/2'"):
        parse_metadata(json.dumps({**record, "format": "other/2"}), "m.onnx")
    with pytest.raises(MetadataError, match="unreadable"):
        parse_metadata("{not json", "m.onnx")


def test_unreadable_and_missing_images_are_named(tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="cannot read image file .*broken.png"):
        prepare_batch([broken], _metadata())
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        prepare_batch([tmp_path / "missing.jpg"], _metadata())
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        prepare_batch([np.zeros((4, 4))], _metadata())


def test_sixteen_bit_images_are_scaled_like_the_training_reader(tmp_path) -> None:
    from ladet.data.images import read_rgb_image
    from ladet.deploy import load_rgb_image

    values = np.array([[0, 127, 128, 385], [30000, 65535, 65407, 257]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)  # mode I;16
    expected = np.asarray(read_rgb_image(path), dtype=np.float32)
    assert np.array_equal(load_rgb_image(path), expected)
    assert expected[0, 3, 0] == 1 and expected[1, 1, 0] == 255  # scaled, not clipped to 255
