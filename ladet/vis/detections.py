"""Drawing detections (boxes, class names, scores) onto an image, for ``ladet predict``."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw

from ladet.structures import Detections
from ladet.vis.canvas import draw_tag, font_size_for, line_width_for, load_font
from ladet.vis.colors import color_for_index


def class_name(label: int, class_names: list[str]) -> str:
    """The name of a contiguous label, or ``class <label>`` when the list does not cover it."""
    return class_names[label] if 0 <= label < len(class_names) else f"class {label}"


def draw_detections(
    image: Image.Image,
    detections: Detections,
    class_names: list[str],
    score_threshold: float = 0.3,
    min_display_side: int = 0,
) -> Image.Image:
    """Returns a copy of ``image`` with every detection scoring at least ``score_threshold`` drawn.

    Each class has its own colour; every box carries a tag "name 0.87" (text on a filled
    background) above its top-left corner. Low scores are drawn first so that the most
    confident boxes end on top. The input image is not modified.

    Args:
        image: the picture in the frame of ``detections`` (the original image for
            ``PAADetector.predict`` outputs).
        detections: boxes [D, 4] (x1, y1, x2, y2), scores [D], labels [D] (0..C-1).
        class_names: names in contiguous-label order.
        score_threshold: detections below it are not drawn.
        min_display_side: when the longer side of ``image`` is shorter than this, the picture (and
            the boxes) are enlarged by an integer factor first so that tags stay readable on
            small images; 0 keeps the size.

    Returns:
        A new RGB image (the same size unless ``min_display_side`` enlarged it).

    Raises:
        ValueError: when the detection tensors do not have matching shapes.
    """
    boxes = detections.boxes.detach().to("cpu", torch.float32)  # [D, 4]
    scores = detections.scores.detach().to("cpu", torch.float32)  # [D]
    labels = detections.labels.detach().to("cpu", torch.long)  # [D]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"detections.boxes must have shape [D, 4], got {tuple(boxes.shape)}")
    if scores.shape != (boxes.shape[0],) or labels.shape != (boxes.shape[0],):
        raise ValueError(
            f"detections have {boxes.shape[0]} boxes but scores {tuple(scores.shape)} "
            f"and labels {tuple(labels.shape)}"
        )
    canvas = image.convert("RGB")  # always a copy
    if min_display_side > 0 and max(canvas.size) < min_display_side:
        factor = -(-min_display_side // max(canvas.size))  # ceil
        canvas = canvas.resize((canvas.width * factor, canvas.height * factor), Image.Resampling.BILINEAR)
        boxes = boxes * factor
    width, height = canvas.size
    keep = scores >= score_threshold
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    order = torch.argsort(scores)  # ascending: the best detection is drawn last, on top
    draw = ImageDraw.Draw(canvas)
    font = load_font(font_size_for(width, height, fraction=0.03))
    line_width = line_width_for(width, height)
    for box, score, label in zip(
        boxes[order].tolist(), scores[order].tolist(), labels[order].tolist(), strict=True
    ):
        color = color_for_index(label)
        x1, y1, x2, y2 = box
        draw.rectangle((x1, y1, max(x2, x1), max(y2, y1)), outline=color, width=line_width)
        draw_tag(
            draw, (x1, y1), f"{class_name(label, class_names)} {score:.2f}", color, font, (width, height)
        )
    return canvas
