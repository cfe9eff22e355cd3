"""The built-in synthetic dataset: shapes on cluttered backgrounds, written as ordinary COCO JSON.

Design (so that a small detector does not saturate in minutes):

* 12 classes that differ by SHAPE only (see :data:`SHAPE_NAMES`); every instance gets a random
  colour, so colour carries no class information.
* Backgrounds: a two-colour gradient, sinusoidal stripes, pixel noise, and distractors that are
  not objects (random poly-line scribbles and soft blurred blobs).
* Object sizes log-uniform from ``min_object_size`` (12 px) to min(200, 0.7 * shorter image side);
  1..``max_objects`` objects per image, small rotations (±20°) and aspect jitter.
* Occlusion rule: objects are drawn in order, later ones over earlier ones. A new object is only
  accepted if every earlier object keeps at least 30 % of its own pixels visible (up to 20
  placement attempts, otherwise the object is left out). Every drawn object is labelled with the
  tight box of its FULL shape (amodal box, like COCO's boxes of occluded objects) and ``area`` =
  its full pixel count. Boxes use the pixel-edge convention: a shape covering pixel columns
  c0..c1 has x1 = c0, x2 = c1 + 1.
* Fully deterministic: image i of a split uses ``numpy.random.default_rng([seed, split, i])``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

SHAPE_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "hexagon",
    "ellipse",
    "arrow",
    "crescent",
    "diamond",
    "l_shape",
)

MIN_VISIBLE_FRACTION = 0.3
_PLACEMENT_ATTEMPTS = 20


def _star(points: int, inner: float) -> np.ndarray:
    angles = np.arange(2 * points) * math.pi / points - math.pi / 2
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _regular_polygon(sides: int, phase: float) -> np.ndarray:
    angles = np.arange(sides) * 2 * math.pi / sides + phase
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


# Unit polygons inside [-1, 1]^2 (x right, y down).
_POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64),
    "triangle": np.array([[0, -1], [1, 0.8], [-1, 0.8]], dtype=np.float64),
    "star": _star(5, 0.42),
    "cross": np.array(
        [
            [-0.3, -1],
            [0.3, -1],
            [0.3, -0.3],
            [1, -0.3],
            [1, 0.3],
            [0.3, 0.3],
            [0.3, 1],
            [-0.3, 1],
            [-0.3, 0.3],
            [-1, 0.3],
            [-1, -0.3],
            [-0.3, -0.3],
        ],
        dtype=np.float64,
    ),
    "hexagon": _regular_polygon(6, 0.0),
    "arrow": np.array(
        [[-1, -0.3], [0.2, -0.3], [0.2, -0.8], [1, 0], [0.2, 0.8], [0.2, 0.3], [-1, 0.3]],
        dtype=np.float64,
    ),
    "diamond": np.array([[0, -1], [0.6, 0], [0, 1], [-0.6, 0]], dtype=np.float64),
    "l_shape": np.array(
        [[-0.8, -1], [-0.2, -1], [-0.2, 0.4], [0.8, 0.4], [0.8, 1], [-0.8, 1]], dtype=np.float64
    ),
}


def _draw_shape_mask(
    name: str, width: int, height: int, center: np.ndarray, size: float, rng: np.random.Generator
) -> np.ndarray:
    """Boolean [H, W] mask of one shape of nominal extent ``size`` px centred at ``center``."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    half = size / 2.0
    cx, cy = float(center[0]), float(center[1])
    if name in ("circle", "ring", "crescent"):
        draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=255)
        if name == "ring":
            inner = half * rng.uniform(0.45, 0.65)
            draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
        elif name == "crescent":
            angle = rng.uniform(0, 2 * math.pi)
            shift = half * rng.uniform(0.35, 0.55)
            ox, oy = cx + shift * math.cos(angle), cy + shift * math.sin(angle)
            draw.ellipse([ox - half, oy - half, ox + half, oy + half], fill=0)
    elif name == "ellipse":
        ratio = rng.uniform(0.4, 0.65)
        if rng.random() < 0.5:
            draw.ellipse([cx - half, cy - half * ratio, cx + half, cy + half * ratio], fill=255)
        else:
            draw.ellipse([cx - half * ratio, cy - half, cx + half * ratio, cy + half], fill=255)
    else:
        polygon = _POLYGONS[name] * np.array([rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15)])
        if name == "arrow" and rng.random() < 0.5:
            polygon = polygon[:, ::-1]  # vertical arrow
        if rng.random() < 0.5 and name in ("arrow", "triangle", "l_shape"):
            polygon = -polygon  # pointing the other way
        angle = math.radians(rng.uniform(-20, 20))
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        points = polygon @ rotation.T * half + np.array([cx, cy])
        draw.polygon([tuple(point) for point in points.tolist()], fill=255)
    return np.asarray(canvas) > 0


def tight_box(mask: np.ndarray) -> list[int]:
    """Tight box [x1, y1, x2, y2] of a non-empty boolean [H, W] mask, pixel-edge convention."""
    rows = np.nonzero(mask.any(axis=1))[0]
    columns = np.nonzero(mask.any(axis=0))[0]
    return [int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1]


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """[H, W, 3] float32 cluttered background on 0..255."""
    xs = np.arange(width, dtype=np.float32)[None, :]  # [1, W]
    ys = np.arange(height, dtype=np.float32)[:, None]  # [H, 1]
    direction = rng.uniform(0, 2 * math.pi)
    ramp = xs * math.cos(direction) + ys * math.sin(direction)  # [H, W]
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    first, second = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    image = first + ramp[..., None] * (second - first)  # [H, W, 3]
    stripe_angle = rng.uniform(0, math.pi)
    period = rng.uniform(6, 40)
    stripes = np.sin((xs * math.cos(stripe_angle) + ys * math.sin(stripe_angle)) * (2 * math.pi / period))
    image += stripes[..., None] * (rng.uniform(0, 35) * rng.uniform(-1, 1, 3)).astype(np.float32)
    for _ in range(int(rng.integers(1, 5))):  # soft blobs (no sharp edges: not shapes)
        bx, by = rng.uniform(0, width), rng.uniform(0, height)
        sigma = rng.uniform(5, 40)
        bump = np.exp(-((xs - bx) ** 2) / (2 * sigma**2)) * np.exp(-((ys - by) ** 2) / (2 * sigma**2))
        image += bump[..., None] * rng.uniform(-90, 90, 3).astype(np.float32)
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 9))):  # scribbles
        count = int(rng.integers(3, 7))
        points = np.stack([rng.uniform(0, width, count), rng.uniform(0, height, count)], axis=1)
        colour = tuple(int(value) for value in rng.integers(0, 256, 3))
        draw.line([tuple(point) for point in points.tolist()], fill=colour, width=int(rng.integers(1, 4)))
    return np.asarray(canvas).astype(np.float32)


def render_image(
    rng: np.random.Generator,
    width: int,
    height: int,
    max_objects: int = 12,
    min_object_size: float = 12.0,
    max_object_size: float = 200.0,
    return_visibility: bool = False,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Renders one image.

    Returns:
        (image [H, W, 3] uint8, objects) with each object a dict ``label`` (0..11), ``box``
        [x1, y1, x2, y2] ints (tight, amodal) and ``area`` (full pixel count); with
        ``return_visibility`` also ``visible_pixels`` (pixels not covered by later objects).
    """
    image = _background(width, height, rng)
    largest = max(min(max_object_size, 0.7 * min(width, height)), min_object_size)
    owner = np.full((height, width), -1, dtype=np.int64)  # index of the visible object per pixel
    full_areas: list[int] = []
    objects: list[dict[str, Any]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(0, len(SHAPE_NAMES)))
        colour = rng.uniform(0, 255, 3)
        for _attempt in range(_PLACEMENT_ATTEMPTS):
            size = float(np.exp(rng.uniform(math.log(min_object_size), math.log(largest))))
            center = np.array(
                [rng.uniform(size / 2, width - size / 2), rng.uniform(size / 2, height - size / 2)]
            )
            mask = _draw_shape_mask(SHAPE_NAMES[label], width, height, center, size, rng)
            pixels = int(mask.sum())
            if pixels < 16:
                continue
            if objects:
                remaining = np.bincount(owner[~mask & (owner >= 0)], minlength=len(objects))
                if np.any(remaining < MIN_VISIBLE_FRACTION * np.asarray(full_areas)):
                    continue
            box = tight_box(mask)
            owner[mask] = len(objects)
            shading = rng.uniform(-25, 25, 3)
            image[mask] = np.clip(colour + shading, 0, 255)
            objects.append({"label": label, "box": box, "area": pixels})
            full_areas.append(pixels)
            break
    image += rng.normal(0.0, rng.uniform(2, 12), image.shape).astype(np.float32)
    if return_visibility:
        visible = np.bincount(owner[owner >= 0], minlength=len(objects))
        for drawn, count in zip(objects, visible.tolist(), strict=True):
            drawn["visible_pixels"] = count
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), objects


def make_builtin_dataset(
    out_dir: str | Path,
    seed: int = 0,
    num_train: int = 400,
    num_val: int = 100,
    image_size: tuple[int, int] = (256, 320),
    max_objects: int = 12,
    min_object_size: float = 12.0,
) -> dict[str, Path]:
    """Writes the built-in dataset (COCO JSON + JPEG images, quality 95), deterministic in ``seed``.

    Layout: ``out_dir/annotations/{train,val}.json`` and ``out_dir/{train,val}/NNNNNN.jpg``.
    Each image side is drawn uniformly from the integers ``image_size[0]..image_size[1]``.
    Tiny variant for tests: ``num_train=8, num_val=4, image_size=(128, 128)``.

    Returns:
        {"train_ann_file", "train_image_dir", "val_ann_file", "val_image_dir"}.
    """
    out = Path(out_dir)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [
        {"id": label + 1, "name": name, "supercategory": "shape"} for label, name in enumerate(SHAPE_NAMES)
    ]
    paths: dict[str, Path] = {}
    for split_index, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        image_dir = out / split
        image_dir.mkdir(parents=True, exist_ok=True)
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for image_index in range(count):
            rng = np.random.default_rng([seed, split_index, image_index])
            width = int(rng.integers(image_size[0], image_size[1] + 1))
            height = int(rng.integers(image_size[0], image_size[1] + 1))
            pixels, objects = render_image(rng, width, height, max_objects, min_object_size)
            image_id = image_index + 1
            file_name = f"{image_id:06d}.jpg"
            Image.fromarray(pixels).save(image_dir / file_name, quality=95)
            images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
            for drawn in objects:
                x1, y1, x2, y2 = drawn["box"]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": drawn["label"] + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": drawn["area"],
                        "iscrowd": 0,
                    }
                )
        ann_file = out / "annotations" / f"{split}.json"
        document = {
            "info": {"description": f"ladet built-in shapes dataset, seed {seed}"},
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        ann_file.write_text(json.dumps(document), encoding="utf-8")
        paths[f"{split}_ann_file"] = ann_file
        paths[f"{split}_image_dir"] = image_dir
    return paths
