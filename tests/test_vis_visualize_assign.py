"""``visualize_assignments``: a real (tiny) LAD method on generated images, and the adapter from a
method's ``label_assignments`` to the picture (hand-made CoLAD assignments, no network)."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ladet.assign.max_iou import PreAssignment
from ladet.assign.paa import PAAAssigner
from ladet.assign.result import AssignResult
from ladet.checkpoint_io import CheckpointError, save_checkpoint_atomic
from ladet.config.loader import dump_config
from ladet.config.schema import Config, ModelConfig, NetworkReference
from ladet.methods.base import LabelAssignments
from ladet.models.anchors import AnchorGrid
from ladet.models.detector import build_detector
from ladet.vis.colors import color_for_index
from ladet.vis.visualize_assign import (
    load_method_weights,
    picture_from_label_assignments,
    visualize_assignments,
)


def _tiny_model_config() -> ModelConfig:
    config = ModelConfig(num_classes=3)
    config.backbone.depth = 18
    config.backbone.weights = None
    config.neck.out_channels = 32
    config.head.feat_channels = 32
    config.head.num_convs = 1
    config.anchors.octave_base_scale = 4.0
    return config


def _write_dataset(directory: Path) -> tuple[Path, list[Path]]:
    """Two 96x80 images with squares; only the first is listed in the annotation file."""
    paths = []
    for index in range(2):
        pixels = np.full((80, 96, 3), 40, dtype=np.uint8)
        pixels[10:50, 8:48] = (200, 60, 60)
        path = directory / f"image_{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    document = {
        "images": [{"id": 7, "file_name": "image_0.png", "width": 96, "height": 80}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 2, "bbox": [8, 10, 40, 40], "area": 1600, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [56, 30, 30, 40], "area": 1200, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "star"}],
    }
    ann_file = directory / "val.json"
    ann_file.write_text(json.dumps(document), encoding="utf-8")
    return ann_file, paths


def test_lad_pipeline_draws_teacher_and_student_panels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ladet.methods import build_method

    # the pictures' pre-assignment comes from the method's own assigner (outside the assignment
    # itself, which runs its pre-assignment in inference mode)
    picture_pre_assignments: list[PAAAssigner] = []
    original_pre_assign = PAAAssigner.pre_assign

    def recording_pre_assign(self: PAAAssigner, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if not torch.is_inference_mode_enabled():
            picture_pre_assignments.append(self)
        return original_pre_assign(self, *args, **kwargs)

    monkeypatch.setattr(PAAAssigner, "pre_assign", recording_pre_assign)
    torch.manual_seed(0)
    model_config = _tiny_model_config()
    teacher_config_path = tmp_path / "teacher.yaml"
    dump_config(Config(model=copy.deepcopy(model_config)), teacher_config_path)
    teacher_state = {
        f"detector.{key}": value for key, value in build_detector(model_config).state_dict().items()
    }
    save_checkpoint_atomic({"model": teacher_state}, tmp_path / "teacher.pth")
    ann_file, images = _write_dataset(tmp_path)

    config = Config(model=model_config)
    config.method.name = "lad"
    config.method.teacher = NetworkReference(str(teacher_config_path), str(tmp_path / "teacher.pth"))
    config.data.val.ann_file = str(ann_file)
    config.data.max_size, config.data.short_size = 192, 160  # images are enlarged 2x
    student = build_method(config, "cpu")
    save_checkpoint_atomic({"model": student.state_dict()}, tmp_path / "lad.pth")

    written = visualize_assignments(
        config,
        str(tmp_path / "lad.pth"),
        [str(path) for path in images],
        str(tmp_path / "out"),
        device="cpu",
        display_size=192,
    )
    assert [path.name for path in written] == ["image_0_assign.png", "image_1_assign.png"]
    assert len(picture_pre_assignments) == 2  # one per image
    annotated = np.asarray(Image.open(written[0]).convert("RGB"))
    unannotated = np.asarray(Image.open(written[1]).convert("RGB"))
    # two panels of 192 px each plus margins
    assert annotated.shape[1] >= 2 * 192
    # GT 0 (the square, drawn 2x at x 16..96 in the resized frame = the same on a 192 panel)
    # gets its colour in both panels; the unannotated picture has no GT colour at all
    for pixels, expected in ((annotated, True), (unannotated, False)):
        has_gt_colour = (pixels.reshape(-1, 3) == np.array(color_for_index(0))).all(axis=1).sum() > 100
        assert has_gt_colour == expected
    # the note about the missing annotation is written in red under the unannotated panels
    bottom = unannotated[-30:]
    assert ((bottom[..., 0] > 120) & (bottom[..., 1] < 60) & (bottom[..., 2] < 60)).any()


def _hand_made_colad_outputs() -> LabelAssignments:
    # 4 anchors on 2 levels of one image; GT 0 has candidates on both levels, GT 1 on level 0
    grid = AnchorGrid(
        anchors=torch.tensor(
            [[0.0, 0.0, 16.0, 16.0], [16.0, 0.0, 32.0, 16.0], [0.0, 16.0, 16.0, 32.0], [0.0, 0.0, 32.0, 32.0]]
        ),
        level_index=torch.tensor([0, 0, 0, 1]),
        num_per_level=[3, 1],
        level_sizes=[(1, 3), (1, 1)],
        strides=[8, 16],
    )
    positive = torch.tensor([[True, False, True, False]])
    result = AssignResult(
        labels=torch.tensor([[1, 3, 0, 3]]),
        label_weights=torch.ones(1, 4),
        box_targets=torch.zeros(1, 4, 4),
        positive_mask=positive,
        positive_gt_index=torch.tensor([[0, -1, 1, -1]]),
        num_positives=torch.tensor(2.0),
        pre_positive_mask=torch.tensor([[True, True, True, True]]),
    )
    pre = PreAssignment(
        gt_index=torch.tensor([[0, 0, 1, 0]]),
        image_index=torch.zeros(4, dtype=torch.long),
        anchor_index=torch.arange(4),
        gt_local=torch.tensor([0, 0, 1, 0]),
        gt_global=torch.tensor([0, 0, 1, 0]),
        level=torch.tensor([0, 0, 0, 1]),
        labels=torch.tensor([1, 1, 0, 1]),
        box_targets=torch.zeros(4, 4),
        num_gts_per_image=[2],
        num_levels=2,
    )
    return LabelAssignments(
        training_assignment=result,
        student_assignment=result,
        anchor_grid=grid,
        valid_mask=torch.ones(1, 4, dtype=torch.bool),
        pre_assignment=pre,
        uses_second=torch.tensor([True, True, False, False]),
    )


def test_colad_adapter_builds_three_panels_and_choice_table() -> None:
    outputs = _hand_made_colad_outputs()
    image = Image.new("RGB", (32, 32))
    gt_boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0], [0.0, 12.0, 16.0, 32.0]])
    picture = picture_from_label_assignments(outputs, image, gt_boxes, torch.tensor([1, 0]), "colad")
    assert [panel.title for panel in picture.panels] == [
        "shared CoLAD assignment (trains both)",
        "network 1 self-assignment",
    ]
    assert picture.level_names == ["P3", "P4"]
    assert picture.network_choice is not None and picture.anchor_network_choice is not None
    assert picture.network_choice.tolist() == [[1, 0], [0, -1]]
    assert picture.anchor_network_choice.tolist() == [1, 1, 0, 0]
    assert picture.pre_positive_gt_index is not None and picture.pre_positive_gt_index.tolist() == [
        0,
        0,
        1,
        0,
    ]
    baseline = picture_from_label_assignments(outputs, image, gt_boxes, torch.tensor([1, 0]), "baseline")
    assert [panel.title for panel in baseline.panels] == ["self-assignment (used for training)"]


class _TwoNetworks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.detector = nn.Linear(2, 2)
        self.second_detector = nn.Linear(2, 3)


def test_load_method_weights(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = _TwoNetworks()
    path = tmp_path / "only_first.pth"
    save_checkpoint_atomic(
        {"model": {f"detector.{key}": value for key, value in source.detector.state_dict().items()}}, path
    )
    target = _TwoNetworks()
    with caplog.at_level(logging.WARNING):
        assert load_method_weights(target, path) == ["detector"]
    assert torch.equal(target.detector.weight, source.detector.weight)
    assert "second_detector" in caplog.text
    save_checkpoint_atomic(
        {
            "model": {
                f"second_detector.{key}": value for key, value in source.second_detector.state_dict().items()
            }
        },
        path,
    )
    with pytest.raises(CheckpointError, match="detector"):
        load_method_weights(_TwoNetworks(), path)
