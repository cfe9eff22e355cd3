"""Test-time pre-processing in numpy, equal to ``ladet.data.transforms`` + ``collate`` (no torch).

Resize keeps the aspect ratio to fit (max_size, short_size) with sides ``int(side * scale +
0.5)``, bilinear with half-pixel centres and no antialiasing on float32 0..255 RGB (the formula of
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``), then
``(x - mean) / std`` and zero padding right/bottom to the batch maximum rounded up to the size
divisor.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
from PIL import Image

from ladet.deploy.metadata import DeployMetadata

__all__ = [
    "ImageInput",
    "PreparedBatch",
    "load_rgb_image",
    "to_rgb8",
    "resize_size",
    "resize_bilinear",
    "prepare_batch",
]

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]  # noqa: UP007 - a runtime alias


HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb8(image: Image.Image) -> Image.Image:
    """8-bit RGB as ``ladet.data.images.to_rgb8`` (imported there with torch): 16-bit values scaled,
    ``floor((v + 128) / 257)``, never clipped; other modes through Pillow's ``convert("RGB")``."""
    if image.mode == "F":
        raise ValueError("float images (mode 'F') have no fixed range to scale from")
    if image.mode in HIGH_BIT_DEPTH_MODES:
        values = np.asarray(image).astype(np.int64)  # [H, W]
        return Image.fromarray(((np.clip(values, 0, 65535) + 128) // 257).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def load_rgb_image(image: ImageInput) -> np.ndarray:
    """[H, W, 3] float32 RGB on 0..255 from a path, a PIL image or an [H, W, 3] array.

    Raises:
        ValueError: a file that cannot be read as an image (naming it), or a wrong array shape.
        FileNotFoundError: a path that does not exist.
    """
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.exists(path):
            raise FileNotFoundError(f"input image not found: {path}")
        try:
            with Image.open(path) as opened:
                image = to_rgb8(opened)
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read image file {path}: {error}") from error
    if isinstance(image, Image.Image):
        return np.asarray(to_rgb8(image), dtype=np.float32)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an [H, W, 3] RGB array, got shape {tuple(image.shape)}")
        return image.astype(np.float32, copy=False)
    raise TypeError(f"unsupported image type {type(image).__name__}")


def resize_size(height: int, width: int, max_size: int, short_size: int) -> tuple[int, int]:
    """(new_height, new_width) of the keep-ratio resize (same rule as ``compute_resize_size``)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"cannot resize an image of size {height}x{width}")
    scale = min(max_size / max(height, width), short_size / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and weights (w0, w1) of each output position along one axis."""
    scale = np.float32(in_size) / np.float32(out_size)
    source = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    source = np.maximum(source, np.float32(0.0))
    first = np.minimum(source.astype(np.int64), in_size - 1)  # floor for source >= 0
    second = np.minimum(first + 1, in_size - 1)
    weight_second = (source - first.astype(np.float32)).astype(np.float32)
    return first, second, np.float32(1.0) - weight_second, weight_second


def resize_bilinear(image: np.ndarray, new_height: int, new_width: int) -> np.ndarray:
    """[H, W, 3] float32 -> [new_height, new_width, 3], half-pixel bilinear, no antialias."""
    height, width = image.shape[:2]
    if (height, width) == (new_height, new_width):
        return image
    row0, row1, row_w0, row_w1 = _axis_weights(height, new_height)
    col0, col1, col_w0, col_w1 = _axis_weights(width, new_width)
    top, bottom = image[row0], image[row1]  # [h', W, 3]
    col_w0, col_w1 = col_w0[None, :, None], col_w1[None, :, None]
    upper = col_w0 * top[:, col0] + col_w1 * top[:, col1]  # [h', w', 3]
    lower = col_w0 * bottom[:, col0] + col_w1 * bottom[:, col1]
    return (row_w0[:, None, None] * upper + row_w1[:, None, None] * lower).astype(np.float32)


@dataclass
class PreparedBatch:
    """The graph inputs of a batch and what is needed to map boxes back.

    Attributes:
        images: [B, 3, H, W] float32 normalised, padded.
        image_sizes: [B, 2] int64 (h, w) after resizing.
        scale_factors: [B, 2] float32 (scale_x, scale_y) = resized / original size.
        original_sizes: [B, 2] int64 (h, w) as given.
    """

    images: np.ndarray
    image_sizes: np.ndarray
    scale_factors: np.ndarray
    original_sizes: np.ndarray


def prepare_batch(images: Sequence[ImageInput], metadata: DeployMetadata) -> PreparedBatch:
    """Loads, resizes, normalises and pads ``images`` into one batch as the metadata prescribes."""
    if len(images) == 0:
        raise ValueError("prepare_batch() needs at least one image")
    mean = np.asarray(metadata.mean, dtype=np.float32)
    std = np.asarray(metadata.std, dtype=np.float32)
    prepared: list[np.ndarray] = []
    sizes, scales, originals = [], [], []
    for image in images:
        pixels = load_rgb_image(image)
        height, width = pixels.shape[:2]
        new_height, new_width = resize_size(height, width, metadata.max_size, metadata.short_size)
        resized = resize_bilinear(pixels, new_height, new_width)
        prepared.append(((resized - mean) / std).transpose(2, 0, 1))  # [3, h, w]
        sizes.append((new_height, new_width))
        scales.append((new_width / width, new_height / height))
        originals.append((height, width))
    divisor = metadata.size_divisor
    batch_height = -(-max(size[0] for size in sizes) // divisor) * divisor
    batch_width = -(-max(size[1] for size in sizes) // divisor) * divisor
    batch = np.full((len(images), 3, batch_height, batch_width), metadata.pad_value, dtype=np.float32)
    for position, array in enumerate(prepared):
        batch[position, :, : array.shape[1], : array.shape[2]] = array
    return PreparedBatch(
        images=batch,
        image_sizes=np.asarray(sizes, dtype=np.int64),
        scale_factors=np.asarray(scales, dtype=np.float32),
        original_sizes=np.asarray(originals, dtype=np.int64),
    )
