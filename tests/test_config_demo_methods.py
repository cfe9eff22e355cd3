"""The demo configs build their real training method and give finite losses on a tiny batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ladet.config import load_config
from ladet.methods import build_method
from ladet.methods.teacher import load_network_weights
from ladet.models.detector import build_detector
from ladet.structures import Batch

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = REPOSITORY_ROOT / "configs" / "demo"
TEACHER_CONFIG = DEMO_DIR / "paa_r34_fpn_1x8_builtin_teacher.yaml"
STUDENT_CONFIGS = [
    "paa_r18_fpn_1x8_builtin_demo.yaml",
    "paa-iop_r18_fpn_1x8_builtin_demo.yaml",
    "paa-cop_r18_fpn_1x8_builtin_demo.yaml",
    "lad_r18-paa-r34_fpn_1x8_builtin_demo.yaml",
    "kd_r18-paa-r34_fpn_1x8_builtin_demo.yaml",
    "solad_r18-paa-r34_fpn_1x8_builtin_demo.yaml",
    "colad_r18cop-paa-r34_fpn_1x8_builtin_demo.yaml",
]


def tiny_batch(num_classes: int) -> Batch:
    """Two 64 x 64 images with two and one ground-truth boxes."""
    generator = torch.Generator().manual_seed(0)
    sizes = torch.tensor([[64, 64], [64, 64]])
    return Batch(
        images=torch.randn(2, 3, 64, 64, generator=generator),
        image_sizes=sizes,
        padded_sizes=sizes.clone(),
        scale_factors=torch.ones(2, 2),
        original_sizes=sizes.clone(),
        gt_boxes=[
            torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 20.0, 60.0, 44.0]]),
            torch.tensor([[10.0, 10.0, 30.0, 28.0]]),
        ],
        gt_labels=[torch.tensor([0, num_classes - 1]), torch.tensor([3])],
        image_ids=[1, 2],
    )


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo teacher's architecture with random weights, saved as a ladet-style checkpoint."""
    torch.manual_seed(0)
    teacher = build_detector(load_config(TEACHER_CONFIG).model)
    path = tmp_path_factory.mktemp("teacher") / "latest.pth"
    state = {f"detector.{key}": value for key, value in teacher.state_dict().items()}
    torch.save({"model": state}, path)
    return path


@pytest.mark.parametrize("name", STUDENT_CONFIGS)
def test_demo_config_builds_its_method(name: str, teacher_checkpoint: Path) -> None:
    overrides = []
    config = load_config(DEMO_DIR / name)
    if config.method.teacher is not None:
        overrides.append(f"method.teacher.checkpoint={teacher_checkpoint}")
    config = load_config(DEMO_DIR / name, overrides)
    torch.manual_seed(0)
    method = build_method(config, "cpu")
    if config.method.name == "colad":
        # network 1 has the teacher's architecture, so the demo teacher checkpoint fits it
        load_network_weights(method.detector, teacher_checkpoint)
    method.train()
    losses = method(tiny_batch(config.model.num_classes))
    loss_terms = {key: value for key, value in losses.items() if key.startswith("loss_")}
    assert loss_terms, name
    for key, value in loss_terms.items():
        assert torch.isfinite(value).all(), f"{name}: {key} = {value}"
