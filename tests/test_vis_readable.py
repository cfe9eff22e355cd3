"""Readable detection pictures: a per-image cap (best boxes), tags that never overlap, a caption
with the count, the threshold and the model."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from PIL import Image

from ladet.structures import Detections
from ladet.vis.detections import caption_text, draw_detections, model_name, place_tags, select_drawn


def _overlap(first, second) -> bool:
    return first[0] < second[2] and second[0] < first[2] and first[1] < second[3] and second[1] < first[3]


def test_tags_never_overlap_and_stay_inside() -> None:
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(40, 2, generator=generator) * 150
    boxes = [(x, y, x + 40.0, y + 30.0) for x, y in corners.tolist()]
    places = place_tags(boxes, [(50.0, 14.0)] * len(boxes), (200, 160))
    placed = [place for place in places if place is not None]
    assert len(placed) >= 10  # many fit, the rest are left out rather than stacked
    for first, second in itertools.combinations(placed, 2):
        assert not _overlap(first, second)
    assert all(0 <= x1 and 0 <= y1 and x2 <= 200 and y2 <= 160 for x1, y1, x2, y2 in placed)


def test_first_tag_sits_above_its_box_and_a_second_one_moves() -> None:
    places = place_tags([(50, 50, 90, 90), (52, 50, 92, 90)], [(30, 10), (30, 10)], (200, 200))
    assert places[0] == (50, 40, 80, 50)  # above the top-left corner
    assert places[1] is not None and not _overlap(places[0], places[1])


def test_select_drawn_keeps_the_best() -> None:
    scores = torch.tensor([0.2, 0.9, 0.5, 0.7])
    assert select_drawn(scores, 2).tolist() == [1, 3]
    assert select_drawn(scores, None).tolist() == [1, 3, 2, 0]


def test_caption_names_count_threshold_and_model() -> None:
    assert caption_text(0, 0, 0.3, "paa_r18 (baseline_seed0/latest.pth)") == (
        "0 detections >= 0.30\nmodel: paa_r18 (baseline_seed0/latest.pth)"
    )
    assert caption_text(25, 10, 0.05) == "25 detections >= 0.05, best 10 drawn"
    assert caption_text(1, 1, 0.5) == "1 detection >= 0.50"
    assert (
        model_name("configs/demo/x.yaml", "runs/demo/small/lad_seed0/latest.pth")
        == "x (lad_seed0/latest.pth)"
    )


def test_caption_strip_is_added_below_the_picture() -> None:
    image = Image.new("RGB", (200, 150), (90, 90, 90))
    detections = Detections(
        torch.tensor([[10.0, 10.0, 60.0, 60.0]] * 30),
        torch.linspace(0.9, 0.4, 30),
        torch.zeros(30, dtype=torch.long),
    )
    drawn = draw_detections(
        image, detections, ["a"], score_threshold=0.3, max_drawn=5, caption=True, model="m"
    )
    assert drawn.width == 200 and drawn.height > 150
    strip = np.asarray(drawn)[150:]
    assert (strip == 255).mean() > 0.5 and (strip < 100).any()  # white strip with dark text


def test_only_the_best_boxes_are_drawn() -> None:
    from ladet.vis.colors import color_for_index

    image = Image.new("RGB", (400, 100), (90, 90, 90))
    boxes = torch.tensor([[10.0 + 48 * i, 40.0, 50.0 + 48 * i, 90.0] for i in range(8)])
    scores = torch.tensor([0.31, 0.9, 0.35, 0.8, 0.4, 0.7, 0.32, 0.33])
    detections = Detections(boxes, scores, torch.arange(8))
    pixels = np.asarray(
        draw_detections(image, detections, list("abcdefgh"), score_threshold=0.3, max_drawn=3)
    )
    present = {label for label in range(8) if (pixels == np.array(color_for_index(label))).all(axis=2).any()}
    assert present == {1, 3, 5}  # the three best scores
