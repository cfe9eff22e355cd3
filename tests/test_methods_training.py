"""Every method built by ``build_method`` trains a few steps on a tiny batch without NaN, with or without GT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from methods_support import method_config, tiny_batch, tiny_detector, tiny_model_config, write_network_files

from ladet.config.schema import Config, NetworkReference
from ladet.methods import LabelAssignments, build_evaluation_detector, build_method, evaluation_network_name
from ladet.models.heads import COPHead

EXPECTED_KEYS = {
    "baseline": {"loss_cls", "loss_bbox", "loss_iou"},
    "lad": {"loss_cls", "loss_bbox", "loss_iou"},
    "kd": {"loss_kd_cls", "loss_kd_iou", "loss_kd_bbox"},
    "solad": {"loss_cls", "loss_bbox", "loss_iou", "loss_kd_cls", "loss_kd_iou", "loss_kd_bbox"},
    "colad": {"loss_cls", "loss_bbox", "loss_iou", "loss_cls_second", "loss_bbox_second", "loss_iou_second"},
}


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NetworkReference]:
    directory = tmp_path_factory.mktemp("networks")
    return {
        "teacher": write_network_files(directory, "teacher", tiny_model_config(), tiny_detector(seed=1)),
        "second": write_network_files(directory, "second", tiny_model_config(head_type="cop")),
    }


def _config(name: str, references: dict[str, NetworkReference]) -> Config:
    return method_config(
        name,
        teacher=references["teacher"] if name in ("lad", "kd", "solad") else None,
        second=references["second"] if name == "colad" else None,
    )


@pytest.mark.parametrize("name", sorted(EXPECTED_KEYS))
def test_a_few_steps_stay_finite(name: str, references: dict[str, NetworkReference]) -> None:
    torch.manual_seed(0)
    method = build_method(_config(name, references), "cpu")
    optimizer = torch.optim.SGD(method.parameters(), lr=0.005, momentum=0.9)
    for step, batch in enumerate(
        [tiny_batch(seed=0), tiny_batch(with_gt=False), tiny_batch(seed=1, second_image_without_gt=True)]
    ):
        losses = method(batch)
        loss_keys = {key for key in losses if key.startswith("loss_")}
        assert loss_keys == EXPECTED_KEYS[name], step
        for key, value in losses.items():
            assert torch.isfinite(value).all(), f"{name} step {step}: {key} = {value}"
        total = sum(losses[key] for key in loss_keys)
        optimizer.zero_grad()
        total.backward()
        for parameter in method.parameters():
            if parameter.grad is not None:
                assert torch.isfinite(parameter.grad).all()
        optimizer.step()
    for parameter in method.parameters():
        assert torch.isfinite(parameter).all()


def test_no_ground_truth_zero_box_losses_keep_the_graph(references: dict[str, NetworkReference]) -> None:
    for name in ("baseline", "lad", "kd"):
        method = build_method(_config(name, references), "cpu")
        losses = method(tiny_batch(with_gt=False))
        box_key = "loss_kd_bbox" if name == "kd" else "loss_bbox"
        assert losses[box_key].item() == 0.0 and losses[box_key].requires_grad
        sum(value for key, value in losses.items() if key.startswith("loss_")).backward()


def test_evaluation_network_selection(references: dict[str, NetworkReference], tmp_path: Path) -> None:
    config = _config("colad", references)
    assert evaluation_network_name(config) == "second_detector"
    detector = build_evaluation_detector(config)
    assert isinstance(detector.head, COPHead)
    method = build_method(config, "cpu")
    assert method.evaluation_detector() is method.second_detector
    config.method.colad.evaluate_network = "first"
    assert evaluation_network_name(config) == "detector"
    assert not isinstance(build_evaluation_detector(config).head, COPHead)
    assert evaluation_network_name(_config("solad", references)) == "detector"
    # a CoLAD second network with another class count is refused
    bad = write_network_files(tmp_path, "bad", tiny_model_config(num_classes=7))
    config.method.colad.second_network = bad
    with pytest.raises(ValueError, match="num_classes: student 3 vs 7"):
        build_method(config, "cpu")


def test_label_assignments_for_pictures(references: dict[str, NetworkReference]) -> None:
    method = build_method(_config("solad", references), "cpu")
    pictures = method.label_assignments(tiny_batch())
    assert isinstance(pictures, LabelAssignments)
    assert pictures.pre_assignment is None and pictures.uses_second is None and pictures.statistics == {}
    assert pictures.training_assignment.labels.shape == pictures.valid_mask.shape
    assert not pictures.training_assignment.labels.requires_grad
