"""Drawing label assignments: which anchors each GT box receives as positives.

The picture of one image is a row of panels on the network-input (resized) frame:

* one panel per assignment (e.g. "teacher assignment" = the AssignResult the method trains
  with, and "student self-assignment"): every GT box in its own colour with a "GT k class" tag,
  every positive anchor of that GT as a thin anchor box plus a filled centre dot in the same
  colour, pre-positives (IoU candidates) that did not become positives as small grey dots, and a
  legend with the number of positives per GT and per level;
* for CoLAD a third panel: the pre-positive centres coloured by the network whose costs were
  used for their (GT, level) (blue: network 1, orange: network 2) and a per-GT table
  "P3: net2, P4: net1, ...".

Everything here works on plain tensors (no network), so it is tested on hand-made inputs; the
pipeline that runs a method on real images is ``ladet.vis.visualize_assign``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw
from torch import Tensor

from ladet.vis.canvas import (
    Font,
    draw_tag,
    draw_text_lines,
    font_size_for,
    load_font,
    measure_text_lines,
    text_size,
)
from ladet.vis.colors import (
    BACKGROUND_COLOR,
    CANDIDATE_COLOR,
    FIRST_NETWORK_COLOR,
    RGB,
    SECOND_NETWORK_COLOR,
    TEXT_COLOR,
    color_for_index,
)
from ladet.vis.detections import class_name

ANCHOR_BOX_ALPHA = 130  # opacity (0..255) of the positive anchors' box outlines
MAX_LEGEND_GTS = 16  # legend rows per panel; the rest are summarised in one line


@dataclass
class AssignmentPanel:
    """One assignment of one image.

    Attributes:
        title: e.g. "teacher assignment (used for training)".
        positive_mask: [N] bool, final positives.
        positive_gt_index: [N] long, GT index (0..G-1) of each positive, -1 elsewhere.
        pre_positive_mask: [N] bool, IoU pre-assignment candidates.
    """

    title: str
    positive_mask: Tensor
    positive_gt_index: Tensor
    pre_positive_mask: Tensor


@dataclass
class AssignmentPicture:
    """Everything needed to draw the assignments of one image.

    Attributes:
        image: the image resized to the network-input frame (the frame of boxes and anchors).
        gt_boxes: [G, 4] float (x1, y1, x2, y2), resized frame.
        gt_labels: [G] long, contiguous labels.
        anchors: [N, 4] float, all anchors of the image (levels concatenated).
        level_index: [N] long, FPN level (0 = first level) of each anchor.
        level_names: one name per level, e.g. ["P3", ..., "P7"].
        panels: the assignments to draw side by side.
        pre_positive_gt_index: [N] long, GT of each pre-positive (-1 elsewhere), or None when
            unknown; when given, the legend also counts candidates per GT.
        network_choice: [G, L] long for CoLAD, per (GT, level): -1 no candidate, 0 network 1's
            costs, 1 network 2's costs; None for the other methods.
        anchor_network_choice: [N] long for CoLAD, the same choice per pre-positive anchor (-1
            for the other anchors); None for the other methods.
        note: an extra line printed under the panels (e.g. "no annotation found").
    """

    image: Image.Image
    gt_boxes: Tensor
    gt_labels: Tensor
    anchors: Tensor
    level_index: Tensor
    level_names: list[str]
    panels: list[AssignmentPanel]
    pre_positive_gt_index: Tensor | None = None
    network_choice: Tensor | None = None
    anchor_network_choice: Tensor | None = None
    note: str | None = None


def network_choice_per_gt_level(
    uses_second: Tensor,
    image_index: Tensor,
    gt_local: Tensor,
    level: Tensor,
    image: int,
    num_gts: int,
    num_levels: int,
) -> Tensor:
    """Turns CoLAD's per-pre-positive choice into a [G, L] table for one image.

    All pre-positives of one (image, GT, level) share the same choice (§5.2 step 4), so any of
    them gives the table entry.

    Args:
        uses_second: [P] bool, True where network 2's cost was used.
        image_index, gt_local, level: [P] long, the pre-positives' image, GT inside the image and
            FPN level.
        image: which image of the batch.
        num_gts: G, GTs of that image.
        num_levels: L.

    Returns:
        [G, L] long: -1 no candidate on that level, 0 network 1, 1 network 2.
    """
    selected = image_index == image  # [P]
    flat_index = gt_local[selected] * num_levels + level[selected]  # [P_i]
    table = torch.full((num_gts * num_levels,), -1, dtype=torch.long, device=uses_second.device)
    table.scatter_reduce_(0, flat_index, uses_second[selected].long(), reduce="amax")
    return table.view(num_gts, num_levels)


def anchor_network_choice(
    uses_second: Tensor, image_index: Tensor, anchor_index: Tensor, image: int, num_anchors: int
) -> Tensor:
    """[N] long per anchor of one image: -1 not a pre-positive, 0 network 1, 1 network 2."""
    selected = image_index == image  # [P]
    choice = torch.full((num_anchors,), -1, dtype=torch.long, device=uses_second.device)
    choice[anchor_index[selected]] = uses_second[selected].long()
    return choice


def describe_network_choice(choice_row: Tensor, level_names: list[str]) -> str:
    """Formats one GT's row of the [G, L] choice table, e.g. "P3: net2, P4: net1".

    Levels without candidates are left out.
    """
    parts = [
        f"{level_names[level]}: net{int(value) + 1}"
        for level, value in enumerate(choice_row.tolist())
        if value >= 0
    ]
    return ", ".join(parts) if parts else "no candidates"


def panel_legend_lines(
    picture: AssignmentPicture, panel: AssignmentPanel, class_names: list[str]
) -> list[tuple[str, RGB | None]]:
    """The legend of an assignment panel: one line per GT (with its colour), then totals.

    A GT line reads "GT 0 car: 3 positives (P3 1, P4 2) of 12 candidates" ("- NONE" when the
    GT receives no positive; the candidate count only when ``pre_positive_gt_index`` is known).
    """
    num_gts = int(picture.gt_boxes.shape[0])
    num_levels = len(picture.level_names)
    positive = panel.positive_mask.bool()
    gt_of_positive = panel.positive_gt_index[positive].long()  # [Q]
    level_of_positive = picture.level_index[positive].long()  # [Q]
    # positives per (GT, level) in one bincount: [G, L]
    per_gt_level = torch.bincount(
        gt_of_positive * num_levels + level_of_positive, minlength=max(num_gts * num_levels, 1)
    )[: num_gts * num_levels].view(num_gts, num_levels)
    candidates_per_gt = None
    if picture.pre_positive_gt_index is not None:
        candidate_gts = picture.pre_positive_gt_index[picture.pre_positive_gt_index >= 0].long()
        candidates_per_gt = torch.bincount(candidate_gts, minlength=num_gts)
    lines: list[tuple[str, RGB | None]] = []
    for gt in range(min(num_gts, MAX_LEGEND_GTS)):
        name = class_name(int(picture.gt_labels[gt]), class_names)
        count = int(per_gt_level[gt].sum())
        levels = ", ".join(
            f"{picture.level_names[level]} {int(value)}"
            for level, value in enumerate(per_gt_level[gt].tolist())
            if value
        )
        text = f"GT {gt} {name}: {count} positive{'s' if count != 1 else ''}"
        text += f" ({levels})" if levels else " - NONE"
        if candidates_per_gt is not None:
            text += f" of {int(candidates_per_gt[gt])} candidates"
        lines.append((text, color_for_index(gt)))
    if num_gts > MAX_LEGEND_GTS:
        hidden = per_gt_level[MAX_LEGEND_GTS:].sum(dim=1)
        lines.append(
            (
                f"... {num_gts - MAX_LEGEND_GTS} more GTs, {int(hidden.sum())} positives, {int((hidden == 0).sum())} with none",
                None,
            )
        )
    if num_gts == 0:
        lines.append(("no GT boxes", None))
    num_pre_positives = int(panel.pre_positive_mask.sum())
    lines.append((f"total: {int(positive.sum())} positives, {num_pre_positives} pre-positives", None))
    lines.append(("grey dots: pre-positives that are not positives", CANDIDATE_COLOR))
    return lines


def network_choice_legend_lines(
    picture: AssignmentPicture, class_names: list[str]
) -> list[tuple[str, RGB | None]]:
    """The legend of CoLAD's panel: colour key, "GT 0 car: P3: net2, P4: net1" rows, a total."""
    if picture.network_choice is None:
        raise ValueError("picture.network_choice is None: not a CoLAD assignment")
    table = picture.network_choice
    lines: list[tuple[str, RGB | None]] = [
        ("net1 costs used (dots)", FIRST_NETWORK_COLOR),
        ("net2 costs used (dots)", SECOND_NETWORK_COLOR),
    ]
    for gt in range(min(int(table.shape[0]), MAX_LEGEND_GTS)):
        name = class_name(int(picture.gt_labels[gt]), class_names)
        lines.append(
            (
                f"GT {gt} {name}: {describe_network_choice(table[gt], picture.level_names)}",
                color_for_index(gt),
            )
        )
    if table.shape[0] > MAX_LEGEND_GTS:
        lines.append((f"... {int(table.shape[0]) - MAX_LEGEND_GTS} more GTs", None))
    pairs = int((table >= 0).sum())
    second = int((table == 1).sum())
    lines.append((f"net2 used for {second} of {pairs} (GT, level) pairs", None))
    return lines


def _centres(boxes: Tensor) -> Tensor:
    return (boxes[:, :2] + boxes[:, 2:]) / 2  # [K, 2]


def _draw_dot(draw: ImageDraw.ImageDraw, centre: list[float], radius: float, fill: RGB) -> None:
    x, y = centre
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill, outline=(0, 0, 0))


def _draw_gt_boxes(
    draw: ImageDraw.ImageDraw,
    picture: AssignmentPicture,
    scale: float,
    class_names: list[str],
    font: Font,
    size: tuple[int, int],
    line_width: int,
) -> None:
    boxes = (picture.gt_boxes * scale).tolist()
    for gt, box in enumerate(boxes):
        draw.rectangle(box, outline=color_for_index(gt), width=line_width)
    for gt, box in enumerate(boxes):  # tags after all outlines, so that no outline crosses a tag
        color = color_for_index(gt)
        draw_tag(
            draw,
            (box[0], box[1]),
            f"GT {gt} {class_name(int(picture.gt_labels[gt]), class_names)}",
            color,
            font,
            size,
        )


def _draw_assignment_image(
    picture: AssignmentPicture,
    panel: AssignmentPanel | None,
    scale: float,
    class_names: list[str],
    font: Font,
) -> Image.Image:
    width, height = picture.image.size
    size = (round(width * scale), round(height * scale))
    canvas = picture.image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    line_width = max(2, round(max(size) / 250))
    radius = max(2.5, max(size) / 180)
    anchors = picture.anchors.float() * scale  # [N, 4]
    if panel is not None:
        candidates = panel.pre_positive_mask.bool() & ~panel.positive_mask.bool()
        for centre in _centres(anchors[candidates]).tolist():
            _draw_dot(draw, centre, radius * 0.55, CANDIDATE_COLOR)
        positive = panel.positive_mask.bool()
        positive_boxes = anchors[positive]
        positive_gts = panel.positive_gt_index[positive].tolist()
        # thin, half-transparent anchor boxes: anchors are large and overlap a lot
        overlay = Image.new("RGBA", size, (0, 0, 0, 0))
        overlay_draw = ImageDraw.Draw(overlay)
        for box, gt in zip(positive_boxes.tolist(), positive_gts, strict=True):
            overlay_draw.rectangle(box, outline=(*color_for_index(gt), ANCHOR_BOX_ALPHA), width=1)
        canvas = Image.alpha_composite(canvas.convert("RGBA"), overlay).convert("RGB")
        draw = ImageDraw.Draw(canvas)
        for centre, gt in zip(_centres(positive_boxes).tolist(), positive_gts, strict=True):
            _draw_dot(draw, centre, radius, color_for_index(gt))
    else:
        assert picture.anchor_network_choice is not None
        choice = picture.anchor_network_choice
        for value, color in ((0, FIRST_NETWORK_COLOR), (1, SECOND_NETWORK_COLOR)):
            for centre in _centres(anchors[choice == value]).tolist():
                _draw_dot(draw, centre, radius * 0.8, color)
    # GT boxes and their tags last, so that no dot hides a tag
    _draw_gt_boxes(draw, picture, scale, class_names, font, size, line_width)
    return canvas


def _panel_scale_and_font(picture: AssignmentPicture, display_size: int) -> tuple[float, Font]:
    width, height = picture.image.size
    scale = display_size / max(width, height)
    font_size = font_size_for(
        round(width * scale), round(height * scale), fraction=0.026, minimum=13, maximum=22
    )
    return scale, load_font(font_size)


def draw_panel_image(
    picture: AssignmentPicture,
    panel: AssignmentPanel | None,
    class_names: list[str],
    display_size: int = 640,
) -> Image.Image:
    """The image part of one panel, without title and legend, scaled to ``display_size``.

    Args:
        picture: the image, its GT boxes and anchors.
        panel: the assignment to draw; None draws CoLAD's network-choice panel (needs
            ``picture.anchor_network_choice``).
        class_names: names in contiguous-label order.
        display_size: longer side of the returned image; coordinates scale by
            ``display_size / max(image width, image height)``.
    """
    if panel is None and picture.anchor_network_choice is None:
        raise ValueError("the network-choice panel needs picture.anchor_network_choice")
    scale, font = _panel_scale_and_font(picture, display_size)
    return _draw_assignment_image(picture, panel, scale, class_names, font)


def draw_assignment_figure(
    picture: AssignmentPicture, class_names: list[str], display_size: int = 640
) -> Image.Image:
    """Draws all panels of ``picture`` side by side, each with a title and a legend.

    Args:
        picture: the image, its GT boxes, anchors and assignments.
        class_names: names in contiguous-label order.
        display_size: the longer side of each panel's image in pixels (small inputs are enlarged
            so that anchor dots and tags stay readable).

    Returns:
        One RGB image: a title row, the panels, the legends, and the note if any.
    """
    num_anchors = int(picture.anchors.shape[0])
    for panel in picture.panels:
        for name in ("positive_mask", "positive_gt_index", "pre_positive_mask"):
            value = getattr(panel, name)
            if value.shape != (num_anchors,):
                raise ValueError(
                    f"panel '{panel.title}': {name} has shape {tuple(value.shape)}, expected [{num_anchors}]"
                )
    width, height = picture.image.size
    scale, font = _panel_scale_and_font(picture, display_size)
    image_width, image_height = round(width * scale), round(height * scale)
    title_font = load_font(font_size_for(image_width, image_height, fraction=0.034, minimum=15, maximum=28))

    columns: list[tuple[str, Image.Image, list[tuple[str, RGB | None]]]] = []
    for panel in picture.panels:
        columns.append(
            (
                panel.title,
                _draw_assignment_image(picture, panel, scale, class_names, font),
                panel_legend_lines(picture, panel, class_names),
            )
        )
    if picture.network_choice is not None and picture.anchor_network_choice is not None:
        columns.append(
            (
                "CoLAD: whose costs per (GT, level)",
                _draw_assignment_image(picture, None, scale, class_names, font),
                network_choice_legend_lines(picture, class_names),
            )
        )

    margin = max(10, image_width // 40)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_height = text_size(scratch, "Ag", title_font)[1] + margin
    legend_sizes = [measure_text_lines(legend, font) for _, _, legend in columns]
    column_width = max([image_width] + [size[0] for size in legend_sizes])
    legend_height = max(size[1] for size in legend_sizes)
    note_lines: list[tuple[str, RGB | None]] = [(picture.note, None)] if picture.note else []
    note_height = measure_text_lines(note_lines, title_font)[1] if note_lines else 0
    note_width = measure_text_lines(note_lines, title_font)[0] if note_lines else 0
    figure = Image.new(
        "RGB",
        (
            max(len(columns) * (column_width + margin) + margin, note_width + 2 * margin),
            margin + title_height + image_height + margin + legend_height + note_height + margin,
        ),
        BACKGROUND_COLOR,
    )
    draw = ImageDraw.Draw(figure)
    for column, (title, canvas, legend) in enumerate(columns):
        x = margin + column * (column_width + margin)
        draw.text((x, margin), title, fill=TEXT_COLOR, font=title_font)
        figure.paste(canvas, (x, margin + title_height))
        draw_text_lines(draw, (x, margin + title_height + image_height + margin), legend, font, TEXT_COLOR)
    if note_lines:
        draw_text_lines(
            draw, (margin, figure.height - margin - note_height), note_lines, title_font, (180, 0, 0)
        )
    return figure
