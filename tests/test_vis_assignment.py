"""Assignment pictures from hand-made AssignResult-like masks, anchors and GT boxes (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ladet.vis.assignment import (
    AssignmentPanel,
    AssignmentPicture,
    anchor_network_choice,
    describe_network_choice,
    draw_assignment_figure,
    draw_panel_image,
    network_choice_legend_lines,
    network_choice_per_gt_level,
    panel_legend_lines,
)
from ladet.vis.colors import CANDIDATE_COLOR, FIRST_NETWORK_COLOR, SECOND_NETWORK_COLOR, color_for_index

CLASS_NAMES = ["person", "car", "dog"]
LEVEL_NAMES = ["P3", "P4"]
BACKGROUND = (100, 100, 100)

# Six anchors of a 128 x 96 image; centres (16, 16), (48, 16), (80, 48), (112, 80), (32, 64), (64, 64).
ANCHORS = torch.tensor(
    [
        [8.0, 8.0, 24.0, 24.0],
        [40.0, 8.0, 56.0, 24.0],
        [72.0, 40.0, 88.0, 56.0],
        [104.0, 72.0, 120.0, 88.0],
        [16.0, 48.0, 48.0, 80.0],
        [48.0, 48.0, 80.0, 80.0],
    ]
)
LEVELS = torch.tensor([0, 0, 0, 0, 1, 1])
GT_BOXES = torch.tensor([[4.0, 4.0, 60.0, 30.0], [60.0, 36.0, 124.0, 92.0]])
GT_LABELS = torch.tensor([1, 2])


def _picture(**changes: object) -> AssignmentPicture:
    teacher = AssignmentPanel(
        title="teacher assignment",
        positive_mask=torch.tensor([True, True, False, True, False, False]),
        positive_gt_index=torch.tensor([0, 0, -1, 1, -1, -1]),
        pre_positive_mask=torch.tensor([True, True, True, True, False, True]),
    )
    student = AssignmentPanel(
        title="student self-assignment",
        positive_mask=torch.tensor([False, False, True, False, False, True]),
        positive_gt_index=torch.tensor([-1, -1, 1, -1, -1, 0]),
        pre_positive_mask=teacher.pre_positive_mask.clone(),
    )
    values: dict[str, object] = dict(
        image=Image.new("RGB", (128, 96), BACKGROUND),
        gt_boxes=GT_BOXES,
        gt_labels=GT_LABELS,
        anchors=ANCHORS,
        level_index=LEVELS,
        level_names=LEVEL_NAMES,
        panels=[teacher, student],
        pre_positive_gt_index=torch.tensor([0, 0, 1, 1, -1, 0]),
    )
    values.update(changes)
    return AssignmentPicture(**values)  # type: ignore[arg-type]


def test_network_choice_table_from_pre_positives() -> None:
    # 6 pre-positives over 2 images; image 1 has GT 0 on levels 0 and 2, GT 2 on level 1
    uses_second = torch.tensor([True, False, False, True, True, False])
    image_index = torch.tensor([0, 1, 1, 1, 1, 1])
    gt_local = torch.tensor([0, 0, 0, 0, 2, 2])
    level = torch.tensor([0, 0, 0, 2, 1, 1])
    table = network_choice_per_gt_level(
        uses_second, image_index, gt_local, level, image=1, num_gts=3, num_levels=3
    )
    expected = torch.tensor([[0, -1, 1], [-1, -1, -1], [-1, 1, -1]])
    assert torch.equal(table, expected)
    assert describe_network_choice(table[0], ["P3", "P4", "P5"]) == "P3: net1, P5: net2"
    assert describe_network_choice(table[1], ["P3", "P4", "P5"]) == "no candidates"
    per_anchor = anchor_network_choice(
        uses_second, image_index, torch.tensor([9, 1, 2, 5, 7, 8]), image=1, num_anchors=9
    )
    assert torch.equal(per_anchor, torch.tensor([-1, 0, 0, -1, -1, 1, -1, 1, 0]))


def test_legend_counts_positives_per_gt_and_level() -> None:
    picture = _picture()
    teacher_lines = [text for text, _ in panel_legend_lines(picture, picture.panels[0], CLASS_NAMES)]
    assert teacher_lines[0] == "GT 0 car: 2 positives (P3 2) of 3 candidates"
    assert teacher_lines[1] == "GT 1 dog: 1 positive (P3 1) of 2 candidates"
    assert teacher_lines[2] == "total: 3 positives, 5 pre-positives"
    student_lines = [text for text, _ in panel_legend_lines(picture, picture.panels[1], CLASS_NAMES)]
    assert student_lines[0] == "GT 0 car: 1 positive (P4 1) of 3 candidates"
    # a GT that receives nothing is flagged
    nothing = AssignmentPanel(
        "empty", torch.zeros(6, dtype=torch.bool), torch.full((6,), -1), torch.zeros(6, dtype=torch.bool)
    )
    lines = [
        text for text, _ in panel_legend_lines(_picture(pre_positive_gt_index=None), nothing, CLASS_NAMES)
    ]
    assert lines[:3] == [
        "GT 0 car: 0 positives - NONE",
        "GT 1 dog: 0 positives - NONE",
        "total: 0 positives, 0 pre-positives",
    ]


def test_panel_pixels_mark_positives_in_gt_colour_and_candidates_in_grey() -> None:
    picture = _picture()
    panel = draw_panel_image(picture, picture.panels[0], CLASS_NAMES, display_size=256)  # scale 2
    assert panel.size == (256, 192)
    pixels = np.asarray(panel)
    # positive anchors: filled dot of their GT's colour at the (scaled) anchor centre
    assert tuple(pixels[32, 96]) == color_for_index(0)  # anchor 1, centre (48, 16)
    assert tuple(pixels[160, 224]) == color_for_index(1)  # anchor 3, centre (112, 80)
    # pre-positive that is not a positive: grey dot
    assert tuple(pixels[96, 160]) == CANDIDATE_COLOR  # anchor 2, centre (80, 48)
    # neither: untouched background at the centre of anchor 4 (64, 128)
    assert tuple(pixels[128, 64]) == BACKGROUND
    # GT 1's box outline (left edge at x = 120 after scaling)
    assert tuple(pixels[150, 121]) == color_for_index(1)
    # in the student's panel anchor 1 is only a candidate
    student = np.asarray(draw_panel_image(picture, picture.panels[1], CLASS_NAMES, display_size=256))
    assert tuple(student[32, 96]) == CANDIDATE_COLOR
    assert tuple(student[128, 128]) == color_for_index(0)  # anchor 5, centre (64, 64), GT 0


def test_colad_figure_has_a_third_panel_with_network_colours(tmp_path: Path) -> None:
    uses_second = torch.tensor([False, False, True, True, False])  # pre-positives: anchors 0, 1, 2, 3, 5
    image_index = torch.zeros(5, dtype=torch.long)
    anchor_index = torch.tensor([0, 1, 2, 3, 5])
    gt_local = torch.tensor([0, 0, 1, 1, 0])
    level = LEVELS[anchor_index]
    colad = _picture(
        network_choice=network_choice_per_gt_level(uses_second, image_index, gt_local, level, 0, 2, 2),
        anchor_network_choice=anchor_network_choice(uses_second, image_index, anchor_index, 0, 6),
    )
    lines = [text for text, _ in network_choice_legend_lines(colad, CLASS_NAMES)]
    assert "GT 0 car: P3: net1, P4: net1" in lines
    assert "GT 1 dog: P3: net2" in lines
    assert lines[-1] == "net2 used for 1 of 3 (GT, level) pairs"
    choice_panel = np.asarray(draw_panel_image(colad, None, CLASS_NAMES, display_size=256))
    assert tuple(choice_panel[96, 160]) == SECOND_NETWORK_COLOR  # anchor 2
    assert tuple(choice_panel[128, 128]) == FIRST_NETWORK_COLOR  # anchor 5

    two_panels = draw_assignment_figure(_picture(), CLASS_NAMES, display_size=256)
    three_panels = draw_assignment_figure(colad, CLASS_NAMES, display_size=256)
    assert three_panels.height >= two_panels.height
    column = (two_panels.width - 10) // 2  # margin is 10 for a 256-pixel panel
    assert three_panels.width == two_panels.width + column
    path = tmp_path / "colad.png"
    three_panels.save(path)
    assert Image.open(path).size == three_panels.size


def test_image_without_gt_is_drawn_with_a_note(tmp_path: Path) -> None:
    empty = AssignmentPanel(
        "student self-assignment",
        torch.zeros(6, dtype=torch.bool),
        torch.full((6,), -1),
        torch.zeros(6, dtype=torch.bool),
    )
    picture = _picture(
        gt_boxes=torch.zeros(0, 4),
        gt_labels=torch.zeros(0, dtype=torch.long),
        panels=[empty],
        pre_positive_gt_index=None,
        note="no annotation for this image: no GT drawn",
    )
    figure = draw_assignment_figure(picture, CLASS_NAMES, display_size=256)
    lines = [text for text, _ in panel_legend_lines(picture, empty, CLASS_NAMES)]
    assert lines[0] == "no GT boxes"
    pixels = np.asarray(figure)
    note_rows = pixels[-40:]
    assert ((note_rows[..., 0] > 120) & (note_rows[..., 1] < 60)).any()  # red note text at the bottom
    figure.save(tmp_path / "no_gt.png")


def test_mask_of_wrong_length_is_refused() -> None:
    bad = AssignmentPanel(
        "broken", torch.zeros(5, dtype=torch.bool), torch.full((6,), -1), torch.zeros(6, dtype=torch.bool)
    )
    with pytest.raises(ValueError, match="broken.*positive_mask"):
        draw_assignment_figure(_picture(panels=[bad]), CLASS_NAMES)
    with pytest.raises(ValueError, match="anchor_network_choice"):
        draw_panel_image(_picture(), None, CLASS_NAMES)
