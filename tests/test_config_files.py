"""Every YAML file under configs/ loads, validates, and references existing config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladet.config import load_config
from ladet.data.builtin import SHAPE_NAMES

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPOSITORY_ROOT / "configs"
ALL_CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))
EXPERIMENT_CONFIGS = [path for path in ALL_CONFIGS if "_base_" not in path.parts]


def relative(path: Path) -> str:
    return str(path.relative_to(REPOSITORY_ROOT))


def test_config_directory_is_populated() -> None:
    assert len(EXPERIMENT_CONFIGS) >= 25


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=relative)
def test_every_config_loads_and_validates(path: Path) -> None:
    config = load_config(path)
    assert config.model.num_classes is None or config.model.num_classes >= 1  # None: from the dataset


@pytest.mark.parametrize("path", EXPERIMENT_CONFIGS, ids=relative)
def test_referenced_configs_exist_and_load(path: Path) -> None:
    config = load_config(path)
    references = []
    if config.method.teacher is not None:
        references.append(config.method.teacher.config)
    if config.method.name == "colad":
        references.append(config.method.colad.second_network.config)
    for reference in references:
        referenced = REPOSITORY_ROOT / reference
        assert referenced.is_file(), f"{relative(path)} references missing {reference}"
        other = load_config(referenced)
        # LAD/KD/CoLAD exchange per-anchor outputs: the anchor grid and classes must agree
        assert other.model.anchors == config.model.anchors
        assert other.model.num_classes == config.model.num_classes
        assert other.model.neck.num_outs == config.model.neck.num_outs


@pytest.mark.parametrize("path", EXPERIMENT_CONFIGS, ids=relative)
def test_every_experiment_file_starts_with_a_comment(path: Path) -> None:
    assert path.read_text(encoding="utf-8").startswith("#"), relative(path)


def test_readme_command_config_exists() -> None:
    assert (CONFIG_DIR / "paa" / "paa_r50_fpn_1x_coco.yaml").is_file()


def test_paper_rows_have_the_released_settings() -> None:
    """Spot-check the hyper-parameters of docs/algorithms.md §3.3, §4, §5 and §7."""
    kd = load_config(CONFIG_DIR / "kd" / "kd_r50-paa-r101_fpn_2x8_coco_1x.yaml")
    assert (kd.method.name, kd.model.backbone.depth) == ("kd", 50)
    assert (kd.method.kd.gamma, kd.method.kd.cls_weight, kd.method.kd.iou_weight) == (0.5, 10.0, 10.0)
    assert (kd.method.kd.box_weight, kd.method.kd.min_iou) == (1.3, 0.1)
    assert kd.method.teacher is not None
    assert kd.method.teacher.config == "configs/paa/paa_r101_fpn_1x_coco.yaml"

    solad = load_config(CONFIG_DIR / "solad" / "solad_r50-paa-r101_fpn_2x8_coco_1x.yaml")
    assert (solad.method.kd.cls_weight, solad.method.kd.iou_weight, solad.method.kd.min_iou) == (
        2.0,
        10.0,
        0.5,
    )
    assert solad.model.loss.box_loss_weighting == "mean"

    lad = load_config(CONFIG_DIR / "lad" / "lad_r101-paa-r50_fpn_2x8_coco_1x.yaml")
    assert (lad.model.backbone.depth, lad.model.loss.box_loss_weighting) == (101, "mean")
    assert lad.method.teacher is not None
    assert lad.method.teacher.config == "configs/paa/paa_r50_fpn_1x_coco.yaml"
    assert lad.data.images_per_gpu == 8

    colad = load_config(CONFIG_DIR / "colad" / "colad_r101cop-paa-r50_fpn_4x4_coco_mstrain-2x.yaml")
    assert (colad.train.epochs, colad.train.lr_steps) == (24, [16, 22])
    assert colad.data.multiscale_short_range == [640, 800] and colad.data.images_per_gpu == 4
    assert colad.method.colad.evaluate_network == "second"
    second = load_config(REPOSITORY_ROOT / colad.method.colad.second_network.config)
    assert (second.model.backbone.depth, second.model.head.type) == (101, "cop")

    multiscale = load_config(CONFIG_DIR / "paa" / "paa_r50_fpn_mstrain_3x_coco.yaml")
    assert (multiscale.train.epochs, multiscale.train.lr_steps) == (36, [28, 34])
    assert multiscale.data.multiscale_short_range == [640, 800] and multiscale.data.images_per_gpu == 2

    base_head = load_config(CONFIG_DIR / "cop" / "paa-copbase_r50_fpn_2x8_coco_1x.yaml")
    assert (base_head.model.head.iou_branch, base_head.model.loss.box_loss_weighting) == (False, "mean")
    iou_head = load_config(CONFIG_DIR / "iop" / "paa-iop_r18_fpn_2x8_coco_1x.yaml")
    assert (iou_head.model.head.type, iou_head.model.loss.box_loss_weighting) == ("iop", "iou")


def test_builtin_dataset_base_matches_the_generated_classes() -> None:
    config = load_config(CONFIG_DIR / "_base_" / "datasets" / "builtin.yaml")
    assert config.model.num_classes == len(SHAPE_NAMES)
    for path in sorted((CONFIG_DIR / "demo").glob("*.yaml")):
        demo = load_config(path)
        assert demo.model.num_classes == len(SHAPE_NAMES), relative(path)
        assert demo.data.train.ann_file == "data/builtin_small/annotations/train.json"  # the main job's data
        assert demo.model.backbone.weights is None, relative(path)  # no download in the demo
