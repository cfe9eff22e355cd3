"""Image/box transforms of the COCO pipeline (docs/algorithms.md §1.8).

Training: keep-ratio resize (single or multi-scale), horizontal flip, normalise, pad to 32.
Test: the same resize at the single test scale, no flip.

Randomness is resumable: every random draw for dataset item ``index`` in epoch ``epoch`` comes from
a ``torch.Generator`` seeded by :func:`sample_generator` (seed, epoch, index), never from a global or
per-worker RNG. Any number of workers, and a run resumed in the middle of an epoch, therefore see
exactly the same flips and scales.

An *item* (what the dataset returns and :func:`ladet.data.collate.collate` consumes) is a dict:

* ``image``: [3, H_pad, W_pad] float32, normalised, padded right/bottom with zeros to a multiple of
  ``size_divisor``;
* ``boxes``: [G, 4] float32 (x1, y1, x2, y2) in the resized frame; ``labels``: [G] long;
* ``image_id``: int; ``image_size``: (h, w) after resize; ``padded_size``: (h_pad, w_pad);
  ``scale_factor``: (new_w / old_w, new_h / old_h); ``original_size``: (h, w) as stored on disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional
from PIL import Image
from torch import Tensor

from ladet.config.schema import DataConfig
from ladet.data.images import read_rgb_image, to_rgb8

# ImageNet statistics on the 0..255 RGB scale (mmdet / torchvision convention).
IMAGE_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
IMAGE_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)

_SEED_MULTIPLIER_EPOCH = 1_000_003
_SEED_MULTIPLIER_INDEX = 2_000_029
_SEED_MODULUS = 2**63 - 1


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator whose state depends only on (seed, epoch, dataset index).

    The mixing is a fixed polynomial, so the same triple always gives the same stream on every
    machine and in every worker process.
    """
    mixed = ((seed * _SEED_MULTIPLIER_EPOCH + epoch) * _SEED_MULTIPLIER_INDEX + index) % _SEED_MODULUS
    generator = torch.Generator()
    generator.manual_seed(mixed)
    return generator


def compute_resize_size(height: int, width: int, max_size: int, short_size: int) -> tuple[int, int]:
    """Keep-ratio "fit into (max_size, short_size)" resize of mmdet ``Resize(keep_ratio=True)``.

    scale = min(max_size / long side, short_size / short side); each side becomes
    int(side * scale + 0.5). Example: (480, 640) with (1333, 800) -> scale 5/3 -> (800, 1067).

    Returns:
        (new_height, new_width).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"cannot resize an image of size {height}x{width}")
    scale = min(max_size / max(height, width), short_size / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_image(image: Tensor, new_height: int, new_width: int) -> Tensor:
    """Bilinear resize (half-pixel centres, no antialiasing, like OpenCV ``INTER_LINEAR``).

    Args:
        image: [3, H, W] float32.

    Returns:
        [3, new_height, new_width] float32.
    """
    if image.shape[-2:] == (new_height, new_width):
        return image
    resized = functional.interpolate(
        image[None], size=(new_height, new_width), mode="bilinear", align_corners=False, antialias=False
    )
    return resized[0]


def flip_boxes_horizontally(boxes: Tensor, width: int) -> Tensor:
    """Mirror boxes in an image of the given width: x1' = W - x2, x2' = W - x1.

    Args:
        boxes: [G, 4] (x1, y1, x2, y2).

    Returns:
        [G, 4] flipped boxes.
    """
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


def normalize_image(image: Tensor) -> Tensor:
    """(image - mean) / std per channel on the 0..255 RGB scale. image: [3, H, W] float32."""
    mean = torch.tensor(IMAGE_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGE_STD, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image - mean) / std


def pad_to_multiple(image: Tensor, divisor: int) -> Tensor:
    """Pads right/bottom with zeros so both sides are multiples of ``divisor``. [3,H,W] -> [3,H',W']."""
    height, width = image.shape[-2:]
    padded_height = (height + divisor - 1) // divisor * divisor
    padded_width = (width + divisor - 1) // divisor * divisor
    if (padded_height, padded_width) == (height, width):
        return image
    return functional.pad(image, (0, padded_width - width, 0, padded_height - height), value=0.0)


def image_to_tensor(image: Image.Image | np.ndarray | Tensor) -> Tensor:
    """Converts an RGB image to a [3, H, W] float32 tensor on the 0..255 scale.

    Accepts a PIL image (converted to 8-bit RGB, 16-bit values scaled: ``ladet.data.images``), an [H, W, 3] uint8/float numpy array (RGB), or a
    [3, H, W] tensor (RGB, 0..255).
    """
    if isinstance(image, Image.Image):
        array = np.asarray(to_rgb8(image), dtype=np.uint8)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float()
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an [H, W, 3] RGB array, got shape {tuple(image.shape)}")
        # A read-only array (e.g. np.asarray of a PIL image, a memory map) is copied first:
        # torch.from_numpy warns on arrays it cannot write to.
        writable = image if image.flags.writeable else image.copy()
        return torch.from_numpy(np.ascontiguousarray(writable)).permute(2, 0, 1).float()
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a [3, H, W] RGB tensor, got shape {tuple(image.shape)}")
        return image.float()
    raise TypeError(f"unsupported image type {type(image).__name__}")


@dataclass
class DetectionTransform:
    """Resize (+ optional multi-scale and flip), normalise and pad one image with its boxes.

    Attributes:
        max_size: long-side cap of the keep-ratio resize.
        short_size: short side of the single-scale resize.
        multiscale_short_range: (low, high) inclusive integer range of the short side, or None.
        flip_probability: probability of a horizontal flip (0 for evaluation).
        size_divisor: pad both sides to a multiple of this.
    """

    max_size: int = 1333
    short_size: int = 800
    multiscale_short_range: tuple[int, int] | None = None
    flip_probability: float = 0.0
    size_divisor: int = 32

    @staticmethod
    def for_training(config: DataConfig) -> DetectionTransform:
        """The training transform of ``config.data`` (multi-scale if a range is set, flip)."""
        short_range = None
        if config.multiscale_short_range is not None:
            if len(config.multiscale_short_range) != 2:
                raise ValueError(
                    f"data.multiscale_short_range must be [low, high], got {config.multiscale_short_range}"
                )
            low, high = (int(value) for value in config.multiscale_short_range)
            if low > high:
                raise ValueError(f"data.multiscale_short_range has low {low} > high {high}")
            short_range = (low, high)
        return DetectionTransform(
            max_size=config.max_size,
            short_size=config.short_size,
            multiscale_short_range=short_range,
            flip_probability=config.flip_prob,
            size_divisor=config.size_divisor,
        )

    @staticmethod
    def for_evaluation(config: DataConfig) -> DetectionTransform:
        """The test transform: single scale (max_size, short_size), no flip."""
        return DetectionTransform(
            max_size=config.max_size,
            short_size=config.short_size,
            multiscale_short_range=None,
            flip_probability=0.0,
            size_divisor=config.size_divisor,
        )

    def draw_short_size(self, generator: torch.Generator | None) -> int:
        """The short side for this sample: uniform integer in the multi-scale range, else fixed."""
        if self.multiscale_short_range is None:
            return self.short_size
        low, high = self.multiscale_short_range
        return int(torch.randint(low, high + 1, (1,), generator=generator).item())

    def __call__(
        self, image: Tensor, boxes: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Any]:
        """Applies the transform.

        Args:
            image: [3, H, W] float32 RGB on 0..255.
            boxes: [G, 4] float32 (x1, y1, x2, y2) in the original frame.
            generator: source of the random draws (scale first, then flip).

        Returns:
            dict with ``image`` [3, H_pad, W_pad], ``boxes`` [G, 4] (resized frame), ``image_size``,
            ``padded_size``, ``scale_factor``, ``original_size`` (see module docstring).
        """
        original_height, original_width = int(image.shape[1]), int(image.shape[2])
        short_size = self.draw_short_size(generator)
        new_height, new_width = compute_resize_size(
            original_height, original_width, self.max_size, short_size
        )
        scale_x = new_width / original_width
        scale_y = new_height / original_height
        resized = resize_image(image, new_height, new_width)
        scale = torch.tensor([scale_x, scale_y, scale_x, scale_y], dtype=torch.float32)
        resized_boxes = boxes.to(torch.float32) * scale
        flip = False
        if self.flip_probability > 0:
            flip = bool(torch.rand((1,), generator=generator).item() < self.flip_probability)
        if flip:
            resized = resized.flip(-1)
            resized_boxes = flip_boxes_horizontally(resized_boxes, new_width)
        normalized = pad_to_multiple(normalize_image(resized), self.size_divisor)
        return {
            "image": normalized,
            "boxes": resized_boxes,
            "image_size": (new_height, new_width),
            "padded_size": (int(normalized.shape[1]), int(normalized.shape[2])),
            "scale_factor": (scale_x, scale_y),
            "original_size": (original_height, original_width),
            "flipped": flip,
        }


def prepare_image_for_inference(
    image: Image.Image | np.ndarray | Tensor | str | os.PathLike[str], data_config: DataConfig
) -> dict[str, Any]:
    """Test-time preprocessing of one image for the predictor (test resize, no flip, pad 32).

    Args:
        image: a PIL image, an [H, W, 3] RGB numpy array, a [3, H, W] RGB tensor on 0..255, or a
            path to an image file.
        data_config: ``config.data`` (max_size, short_size, size_divisor).

    Returns:
        An item dict (see module docstring) with empty ``boxes``/``labels`` and ``image_id`` -1,
        ready for :func:`ladet.data.collate.collate`.
    """
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        try:
            image = read_rgb_image(path)
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read image file {path}: {error}") from error
    tensor = image_to_tensor(image)
    item = DetectionTransform.for_evaluation(data_config)(tensor, torch.zeros((0, 4)))
    item["labels"] = torch.zeros((0,), dtype=torch.long)
    item["image_id"] = -1
    return item
