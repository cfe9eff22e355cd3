"""Reading images as 8-bit RGB, and the header-first check of one image file (Pillow).

* **High bit depth**: 16-bit images (Pillow modes ``I;16*``, and ``I`` holding 16-bit values) are
  scaled to 8 bits, ``v8 = round(v16 * 255 / 65535) = floor((v16 + 128) / 257)``, never
  saturated (Pillow's own ``convert("RGB")`` clips every value above 255 to white). 16-bit RGB
  PNGs are already reduced to 8 bits by Pillow when they are opened. Float images (mode ``F``) are
  refused (no fixed range to scale from).
* **EXIF orientation** is not applied: pixels are used as stored, so boxes must be in the stored
  frame (what COCO, labelme and most tools write; torchvision's ``read_image`` does the same by
  default). The check reports rotated images so that this is never silent.
* Modes with alpha (``RGBA``, ``LA``, ``PA``) lose the alpha channel; palette, grey, CMYK and
  YCbCr images are converted to RGB by Pillow.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
SUPPORTED_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", *HIGH_BIT_DEPTH_MODES)
EXIF_ORIENTATION_TAG = 0x0112


def to_rgb8(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of ``image``; 16-bit values are scaled (see the module docstring).

    Raises:
        ValueError: a mode that is not in :data:`SUPPORTED_MODES`.
    """
    if image.mode not in SUPPORTED_MODES:
        raise ValueError(f"unsupported image mode {image.mode!r} (supported: {', '.join(SUPPORTED_MODES)})")
    if image.mode in HIGH_BIT_DEPTH_MODES:
        values = np.asarray(image).astype(np.int64)  # [H, W]
        scaled = ((np.clip(values, 0, 65535) + 128) // 257).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    return image.convert("RGB")


def read_rgb_image(path: str | os.PathLike[str]) -> Image.Image:
    """Decodes an image file as 8-bit RGB (OSError / ValueError on a missing or bad file)."""
    with Image.open(path) as opened:
        return to_rgb8(opened)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) from the file's header only."""
    with Image.open(path) as opened:
        return opened.size


def inspect_image(path: Path, width: int, height: int) -> list[tuple[str, str]]:
    """Checks one image file: exists, not empty, decodable, (width, height) as annotated, mode.

    The header is read first; the pixel data is then decoded cheaply to catch truncated files
    (JPEG at 1/8 scale through ``draft``, PNG through ``verify``, which checks every chunk's CRC,
    other formats fully).

    Returns:
        (problem kind, detail) pairs (kinds of :data:`ladet.data.problems.PROBLEM_KINDS`); empty
        when the image is fine.
    """
    try:
        size = path.stat().st_size
    except OSError:
        return [("image_missing", f"{path} does not exist")]
    if size == 0:
        return [("image_empty", f"{path} has 0 bytes")]
    found: list[tuple[str, str]] = []
    try:
        with Image.open(path) as opened:
            actual = opened.size
            mode, image_format = opened.mode, opened.format
            orientation = opened.getexif().get(EXIF_ORIENTATION_TAG, 1) if image_format != "PNG" else 1
            if image_format == "PNG":
                opened.verify()
            else:
                if image_format == "JPEG":
                    opened.draft("RGB", (max(1, actual[0] // 8), max(1, actual[1] // 8)))
                opened.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        return [("image_undecodable", f"{path}: {error}")]
    if mode not in SUPPORTED_MODES:
        found.append(("image_mode_unsupported", f"{path}: mode {mode}"))
    elif mode in HIGH_BIT_DEPTH_MODES:
        found.append(("image_high_bit_depth", f"{path}: mode {mode}"))
    if orientation not in (1, None):
        found.append(("image_exif_rotated", f"{path}: EXIF orientation {orientation}"))
    if actual != (width, height):
        hint = ""
        if orientation in (5, 6, 7, 8) and actual == (height, width):
            hint = " (the annotation uses the EXIF-rotated size; ladet uses pixels as stored)"
        found.append(
            (
                "image_size_mismatch",
                f"{path} is {actual[0]}x{actual[1]}, the annotation says {width}x{height}{hint}",
            )
        )
    return found
