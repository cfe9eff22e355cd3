"""draw_detections on a synthetic image: PNG written, size kept, pixels changed only at boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ladet.structures import Detections
from ladet.vis.colors import color_for_index, text_color_on
from ladet.vis.detections import class_name, draw_detections

CLASS_NAMES = ["person", "car", "dog"]


def _gray_image(width: int = 200, height: int = 150) -> Image.Image:
    return Image.new("RGB", (width, height), (128, 128, 128))


def test_no_detection_keeps_image_and_writes_png(tmp_path: Path) -> None:
    image = _gray_image()
    drawn = draw_detections(image, Detections.empty(), CLASS_NAMES)
    assert drawn is not image and drawn.size == image.size
    assert np.array_equal(np.asarray(drawn), np.asarray(image))
    path = tmp_path / "empty.png"
    drawn.save(path)
    assert Image.open(path).size == (200, 150)


def test_boxes_drawn_in_class_colour_with_threshold(tmp_path: Path) -> None:
    image = _gray_image()
    before = np.asarray(image).copy()
    detections = Detections(
        boxes=torch.tensor([[20.0, 40.0, 90.0, 120.0], [110.0, 50.0, 180.0, 140.0], [60.0, 5.0, 70.0, 15.0]]),
        scores=torch.tensor([0.9, 0.5, 0.1]),  # the third is below the threshold
        labels=torch.tensor([1, 2, 0]),
    )
    drawn = draw_detections(image, detections, CLASS_NAMES, score_threshold=0.3)
    path = tmp_path / "detections.png"
    drawn.save(path)
    pixels = np.asarray(Image.open(path).convert("RGB"))
    assert pixels.shape == (150, 200, 3)
    # input untouched
    assert np.array_equal(np.asarray(image), before)
    # left and bottom edges of each drawn box carry the colour of its class
    assert tuple(pixels[100, 20]) == color_for_index(1)
    assert tuple(pixels[120, 50]) == color_for_index(1)
    assert tuple(pixels[100, 110]) == color_for_index(2)
    # inside the boxes (away from tags) and the below-threshold box stay grey
    assert tuple(pixels[100, 55]) == (128, 128, 128)
    assert tuple(pixels[10, 65]) == (128, 128, 128)
    # the tag of the first box sits above its top-left corner: a filled class-colour background
    # with text in the contrasting colour
    tag = pixels[25:40, 20:60].reshape(-1, 3)
    tag_colours = {tuple(value) for value in tag.tolist()}
    assert color_for_index(1) in tag_colours
    assert text_color_on(color_for_index(1)) in tag_colours


def test_tag_moves_inside_the_image_for_a_box_at_the_top() -> None:
    detections = Detections(torch.tensor([[0.0, 0.0, 50.0, 50.0]]), torch.tensor([0.8]), torch.tensor([0]))
    pixels = np.asarray(draw_detections(_gray_image(), detections, CLASS_NAMES))
    # no room above: the tag is drawn just inside the box, at its top-left corner
    tag_area = pixels[2:14, 2:40].reshape(-1, 3)
    in_class_colour = (tag_area == np.array(color_for_index(0))).all(axis=1).mean()
    assert in_class_colour > 0.5
    # and nothing was drawn above the image (the background just under the box stays grey)
    assert tuple(pixels[100, 100]) == (128, 128, 128)


def test_unknown_label_and_bad_shapes() -> None:
    assert class_name(7, CLASS_NAMES) == "class 7"
    detections = Detections(torch.tensor([[10.0, 10.0, 50.0, 50.0]]), torch.tensor([0.8]), torch.tensor([7]))
    draw_detections(_gray_image(), detections, CLASS_NAMES)  # drawn with the fallback name
    with pytest.raises(ValueError, match="boxes"):
        draw_detections(
            _gray_image(), Detections(torch.zeros(2, 3), torch.zeros(2), torch.zeros(2)), CLASS_NAMES
        )
    with pytest.raises(ValueError, match="scores"):
        draw_detections(
            _gray_image(), Detections(torch.zeros(2, 4), torch.zeros(3), torch.zeros(2)), CLASS_NAMES
        )


def test_small_images_are_enlarged_for_display_with_their_boxes() -> None:
    import torch
    from PIL import Image

    from ladet.structures import Detections
    from ladet.vis.detections import draw_detections

    image = Image.new("RGB", (160, 120), (0, 0, 0))
    detections = Detections(torch.tensor([[10.0, 20.0, 50.0, 60.0]]), torch.tensor([0.9]), torch.tensor([0]))
    drawn = draw_detections(image, detections, ["a"], min_display_side=512)
    assert drawn.size == (640, 480)  # factor ceil(512 / 160) = 4
    assert drawn.getpixel((40 * 4 + 20, 60 * 4 - 1)) != (0, 0, 0)  # bottom edge of the enlarged box
