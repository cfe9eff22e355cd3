"""Drawing detections (boxes, class names, scores) onto an image, for ``ladet predict``.

Readability rules (the defaults were chosen by measurement, see ``DEFAULT_SCORE_THRESHOLD``):
at most ``max_drawn`` boxes per picture (the best ones), tags that never overlap each other
(a tag that finds no free place is left out, its box is still drawn) and, on request, a caption
strip under the picture: "7 detections >= 0.40" and "model: NAME".
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from ladet.structures import Detections
from ladet.vis.canvas import Font, draw_tag_at, font_size_for, line_width_for, load_font, text_size
from ladet.vis.colors import color_for_index

# Chosen by measurement (benchmarks/picture_threshold.py) on a PAA-R18 student trained like the
# demo's baseline (6 epochs on data/builtin_small, seed 0, AP 4.3 %), over the 200 val images
# (6.7 objects per image): at 0.3 it drew 77.5 boxes per image (48 % of the images at the old cap
# of 100); at 0.4 with a cap of 10 it draws 8.0 per image (12 % of them right), 0.45 draws 4.2.
DEFAULT_SCORE_THRESHOLD = 0.4
DEFAULT_MAX_DRAWN = 10

Rectangle = tuple[float, float, float, float]  # x1, y1, x2, y2


def class_name(label: int, class_names: list[str]) -> str:
    """The name of a contiguous label, or ``class <label>`` when the list does not cover it."""
    return class_names[label] if 0 <= label < len(class_names) else f"class {label}"


def model_name(config: str | os.PathLike[str], checkpoint: str | os.PathLike[str]) -> str:
    """A short model name for captions: ``<config stem> (<checkpoint parent>/<checkpoint name>)``."""
    checkpoint = Path(checkpoint)
    where = f"{checkpoint.parent.name}/{checkpoint.name}" if checkpoint.parent.name else checkpoint.name
    return f"{Path(config).stem} ({where})"


def _intersects(first: Rectangle, second: Rectangle) -> bool:
    return first[0] < second[2] and second[0] < first[2] and first[1] < second[3] and second[1] < first[3]


def place_tags(
    boxes: list[Rectangle], tag_sizes: list[tuple[float, float]], canvas_size: tuple[int, int]
) -> list[Rectangle | None]:
    """Positions for one tag per box, in the given order (put the best box first), never overlapping.

    Candidates per box, in order: above its top-left corner, inside below it, above its top-right
    corner, inside its bottom-left corner, below its bottom-left corner; each clamped inside the
    canvas. The first candidate that overlaps no tag placed so far is taken; None when none fits.

    Args:
        boxes: (x1, y1, x2, y2) per box.
        tag_sizes: (width, height) per tag.
        canvas_size: (width, height) of the picture.
    """
    width, height = canvas_size
    placed: list[Rectangle] = []
    result: list[Rectangle | None] = []
    for (x1, y1, x2, y2), (tag_width, tag_height) in zip(boxes, tag_sizes, strict=True):
        corners = [
            (x1, y1 - tag_height),
            (x1, y1),
            (x2 - tag_width, y1 - tag_height),
            (x1, y2 - tag_height),
            (x1, y2),
        ]
        chosen: Rectangle | None = None
        for x, y in corners:
            x = min(max(x, 0.0), max(width - tag_width, 0.0))
            y = min(max(y, 0.0), max(height - tag_height, 0.0))
            candidate = (x, y, x + tag_width, y + tag_height)
            if not any(_intersects(candidate, other) for other in placed):
                chosen = candidate
                break
        if chosen is not None:
            placed.append(chosen)
        result.append(chosen)
    return result


def draw_detections(
    image: Image.Image,
    detections: Detections,
    class_names: list[str],
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    min_display_side: int = 0,
    max_drawn: int | None = None,
    caption: bool = False,
    model: str = "",
) -> Image.Image:
    """Returns a copy of ``image`` with the detections scoring at least ``score_threshold`` drawn.

    Each class has its own colour; boxes carry a tag "name 0.87" (text on a filled background)
    placed where it overlaps no other tag (:func:`place_tags`, best boxes first; a tag with no
    free place is left out). Low scores are drawn first so that the most confident boxes end on
    top. The input image is not modified.

    Args:
        image: the picture in the frame of ``detections`` (the original image for
            ``PAADetector.predict`` outputs).
        detections: boxes [D, 4] (x1, y1, x2, y2), scores [D], labels [D] (0..C-1).
        class_names: names in contiguous-label order.
        score_threshold: detections below it are not drawn.
        min_display_side: when the longer side of ``image`` is shorter than this, the picture (and
            the boxes) are enlarged by an integer factor first so that tags stay readable on
            small images; 0 keeps the size.
        max_drawn: at most this many boxes (the highest scores); None: all.
        caption: add a strip under the picture with the detection count, threshold and ``model``.
        model: the model name for the caption.

    Returns:
        A new RGB image (the same size unless ``min_display_side`` enlarged it or ``caption``
        added a strip).

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
    num_kept = int(boxes.shape[0])
    best_first = select_drawn(scores, max_drawn)
    draw = ImageDraw.Draw(canvas)
    font = load_font(font_size_for(width, height, fraction=0.03))
    line_width = line_width_for(width, height)
    texts = [
        f"{class_name(label, class_names)} {score:.2f}"
        for label, score in zip(labels[best_first].tolist(), scores[best_first].tolist(), strict=True)
    ]
    paddings = [max(2, text_size(draw, text, font)[1] // 5) for text in texts]
    sizes = [
        (text_size(draw, text, font)[0] + 2 * pad, text_size(draw, text, font)[1] + 2 * pad)
        for text, pad in zip(texts, paddings, strict=True)
    ]
    box_list = [tuple(box) for box in boxes[best_first].tolist()]
    places = place_tags(box_list, sizes, (width, height))  # type: ignore[arg-type]
    colors = [color_for_index(label) for label in labels[best_first].tolist()]
    for index in reversed(range(len(box_list))):  # the best detection is drawn last, on top
        x1, y1, x2, y2 = box_list[index]
        draw.rectangle((x1, y1, max(x2, x1), max(y2, y1)), outline=colors[index], width=line_width)
    for index, place in enumerate(places):
        if place is not None:
            draw_tag_at(draw, place, texts[index], colors[index], font, paddings[index])
    if caption:
        text = caption_text(num_kept, len(box_list), score_threshold, model)
        canvas = add_caption(canvas, text, load_font(font_size_for(width, height, fraction=0.028)))
    return canvas


def select_drawn(scores: torch.Tensor, max_drawn: int | None) -> torch.Tensor:
    """Indices of the boxes to draw, best first: all of ``scores`` [D], or the ``max_drawn`` best."""
    best_first = torch.argsort(scores, descending=True, stable=True)
    return best_first if max_drawn is None else best_first[: max(0, max_drawn)]


def caption_text(num_kept: int, num_drawn: int, score_threshold: float, model: str = "") -> str:
    """``12 detections >= 0.30, best 10 drawn`` and ``model: NAME`` on a second line.

    The "best N drawn" part only when capped. ASCII only: PIL's built-in font has no "≥" glyph.
    """
    text = f"{num_kept} detection{'s' if num_kept != 1 else ''} >= {score_threshold:.2f}"
    if num_drawn < num_kept:
        text += f", best {num_drawn} drawn"
    return text + (f"\nmodel: {model}" if model else "")


def add_caption(picture: Image.Image, text: str, font: Font) -> Image.Image:
    """``picture`` with a white strip below it holding the lines of ``text`` (each shortened
    with "..." to fit the width)."""
    scratch = ImageDraw.Draw(picture)
    _, line_height = text_size(scratch, "Ag", font)
    margin = max(4, line_height // 2)
    lines = text.splitlines()
    for index, line in enumerate(lines):
        while len(line) > 8 and text_size(scratch, line, font)[0] > picture.width - 2 * margin:
            line = line[:-4] + "..."
        lines[index] = line
    step = round(line_height * 1.3)
    result = Image.new(
        "RGB", (picture.width, picture.height + step * len(lines) + 2 * margin), (255, 255, 255)
    )
    result.paste(picture, (0, 0))
    draw = ImageDraw.Draw(result)
    for index, line in enumerate(lines):
        draw.text((margin, picture.height + margin + index * step), line, fill=(0, 0, 0), font=font)
    return result
