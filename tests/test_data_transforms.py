"""Transforms: resize / flip / normalise / pad arithmetic, multi-scale range, resumable randomness."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ladet.config.schema import DataConfig
from ladet.data.transforms import (
    IMAGE_MEAN,
    IMAGE_STD,
    DetectionTransform,
    compute_resize_size,
    flip_boxes_horizontally,
    image_to_tensor,
    prepare_image_for_inference,
    resize_image,
    sample_generator,
)


def test_resize_size_known_values() -> None:
    assert compute_resize_size(480, 640, 1333, 800) == (800, 1067)  # scale 5/3, 1066.67 -> 1067
    assert compute_resize_size(640, 480, 1333, 800) == (1067, 800)
    # Long side caps: scale = min(1333/2000, 800/500) = 0.6665 -> (333.75, 1333.5) -> (333, 1333).
    assert compute_resize_size(500, 2000, 1333, 800) == (333, 1333)
    assert compute_resize_size(800, 1333, 1333, 800) == (800, 1333)
    with pytest.raises(ValueError):
        compute_resize_size(0, 10, 1333, 800)


def test_full_transform_on_480x640() -> None:
    image = torch.full((3, 480, 640), 100.0)
    boxes = torch.tensor([[60.0, 48.0, 120.0, 96.0]])
    item = DetectionTransform(1333, 800)(image, boxes)
    assert item["image"].shape == (3, 800, 1088)
    assert item["image_size"] == (800, 1067)
    assert item["padded_size"] == (800, 1088)
    assert item["original_size"] == (480, 640)
    scale_x, scale_y = item["scale_factor"]
    assert scale_x == pytest.approx(1067 / 640) and scale_y == pytest.approx(800 / 480)
    expected = torch.tensor([[60 * 1067 / 640, 48 * 800 / 480, 120 * 1067 / 640, 96 * 800 / 480]])
    torch.testing.assert_close(item["boxes"], expected)
    # Normalised content, zero padding on the right.
    expected_value = (100.0 - IMAGE_MEAN[0]) / IMAGE_STD[0]
    assert item["image"][0, :800, :1067].allclose(torch.tensor(expected_value))
    assert item["image"][:, :, 1067:].abs().max() == 0


def test_normalisation_values() -> None:
    image = torch.tensor(IMAGE_MEAN).view(3, 1, 1).expand(3, 32, 32).clone()
    image[:, 0, 0] = 255.0
    item = DetectionTransform(32, 32)(image, torch.zeros((0, 4)))
    assert item["image"][:, 1:, 1:].abs().max() < 1e-5
    expected = torch.tensor([(255.0 - m) / s for m, s in zip(IMAGE_MEAN, IMAGE_STD, strict=True)])
    torch.testing.assert_close(item["image"][:, 0, 0], expected)


def test_bilinear_resize_matches_pil_when_upsampling() -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    ours = resize_image(torch.from_numpy(array).permute(2, 0, 1).float(), 13, 17)
    pil = np.asarray(Image.fromarray(array).resize((17, 13), Image.BILINEAR)).astype(np.float32)
    difference = (ours.permute(1, 2, 0).numpy() - pil).__abs__()
    assert difference.max() <= 1.0  # PIL rounds to uint8


def test_flip_boxes_known_answer() -> None:
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 100.0, 5.0]])
    flipped = flip_boxes_horizontally(boxes, 100)
    torch.testing.assert_close(flipped, torch.tensor([[70.0, 20.0, 90.0, 40.0], [0.0, 0.0, 100.0, 5.0]]))
    torch.testing.assert_close(flip_boxes_horizontally(flipped, 100), boxes)


def test_flipped_image_and_boxes_stay_consistent() -> None:
    image = torch.zeros((3, 64, 96))
    image[:, 10:20, 5:25] = 255.0  # object at x 5..25, y 10..20
    boxes = torch.tensor([[5.0, 10.0, 25.0, 20.0]])
    item = DetectionTransform(96, 64, flip_probability=1.0)(image, boxes, sample_generator(0, 0, 0))
    assert item["flipped"]
    torch.testing.assert_close(item["boxes"], torch.tensor([[71.0, 10.0, 91.0, 20.0]]))
    bright = item["image"][0] > 0
    columns = torch.nonzero(bright.any(dim=0)).flatten()
    assert (int(columns.min()), int(columns.max()) + 1) == (71, 91)


def test_multiscale_range_and_long_side_cap() -> None:
    transform = DetectionTransform(1333, 800, multiscale_short_range=(640, 800))
    draws = [transform.draw_short_size(sample_generator(1, 0, index)) for index in range(3000)]
    assert min(draws) == 640 and max(draws) == 800
    assert len(set(draws)) > 150  # all integers are reachable
    item = transform(torch.zeros((3, 100, 400)), torch.zeros((0, 4)), sample_generator(1, 0, 5))
    assert item["image_size"][1] <= 1333 and item["image_size"] == (333, 1333)


def test_training_transform_from_config() -> None:
    config = DataConfig(multiscale_short_range=[640, 800], flip_prob=0.5)
    transform = DetectionTransform.for_training(config)
    assert transform.multiscale_short_range == (640, 800) and transform.flip_probability == 0.5
    with pytest.raises(ValueError, match="multiscale_short_range"):
        DetectionTransform.for_training(DataConfig(multiscale_short_range=[800, 640]))
    evaluation = DetectionTransform.for_evaluation(config)
    assert evaluation.multiscale_short_range is None and evaluation.flip_probability == 0.0


def test_random_draws_depend_only_on_seed_epoch_index() -> None:
    transform = DetectionTransform(1333, 800, multiscale_short_range=(640, 800), flip_probability=0.5)
    image = torch.zeros((3, 48, 64))

    def draws(seed: int, epoch: int) -> list[tuple]:
        return [
            (item["image_size"], item["flipped"])
            for item in (
                transform(image, torch.zeros((0, 4)), sample_generator(seed, epoch, i)) for i in range(40)
            )
        ]

    assert draws(0, 1) == draws(0, 1)
    assert draws(0, 1) != draws(0, 2)
    assert draws(0, 1) != draws(1, 1)
    flips = [flipped for _, flipped in draws(0, 3)]
    assert 5 < sum(flips) < 35


def test_prepare_image_for_inference_accepts_every_input(tmp_path) -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    path = tmp_path / "image.png"
    Image.fromarray(array).save(path)
    config = DataConfig(max_size=120, short_size=80)
    from_array = prepare_image_for_inference(array, config)
    assert from_array["image"].shape == (3, 96, 128)
    assert from_array["image_size"] == (80, 120) and from_array["original_size"] == (40, 60)
    assert from_array["boxes"].shape == (0, 4) and from_array["image_id"] == -1
    for other in (Image.fromarray(array), path, str(path), torch.from_numpy(array).permute(2, 0, 1)):
        torch.testing.assert_close(prepare_image_for_inference(other, config)["image"], from_array["image"])
    with pytest.raises(ValueError, match="missing.png"):
        prepare_image_for_inference(tmp_path / "missing.png", config)


def test_image_to_tensor_accepts_a_read_only_array_without_warning() -> None:
    array = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    array.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = image_to_tensor(array)
    assert tensor.shape == (3, 4, 5) and tensor.dtype == torch.float32
    assert torch.equal(tensor, torch.from_numpy(array.copy()).permute(2, 0, 1).float())
