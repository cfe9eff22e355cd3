"""Choice fields: the schema's ``Literal`` types are the one list of allowed values; the loader, the
validation and every builder table agree with them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from ladet.config import ConfigError, load_config
from ladet.config.schema import (
    BackboneDepth,
    BoxLossWeighting,
    CoLADCriterion,
    Config,
    EvaluateNetwork,
    HeadType,
    LossConfig,
    MethodName,
    OptimizerName,
    TrainConfig,
    choices,
)
from ladet.config.validation import validate_config
from ladet.engine.schedule import build_optimizer
from ladet.losses.detection import DetectionLoss
from ladet.methods import METHOD_BUILDERS
from ladet.methods.colad import CRITERIA, network_attribute
from ladet.models.backbone import RESNET_VARIANTS
from ladet.models.box_coder import DeltaBoxCoder
from ladet.models.heads import HEAD_CLASSES


def test_choices_lists_the_literal_values_in_order() -> None:
    assert choices(MethodName) == ("baseline", "lad", "kd", "solad", "colad")
    assert choices(HeadType) == ("paa", "iop", "cop")
    assert choices(BackboneDepth) == (18, 34, 50, 101)


def test_builder_tables_cover_exactly_the_schema_choices() -> None:
    assert set(METHOD_BUILDERS) == set(choices(MethodName))
    assert set(HEAD_CLASSES) == set(choices(HeadType))
    assert set(RESNET_VARIANTS) == set(choices(BackboneDepth))
    assert set(CRITERIA) == set(choices(CoLADCriterion))
    assert {network_attribute(name) for name in choices(EvaluateNetwork)} == {"detector", "second_detector"}
    for weighting in choices(BoxLossWeighting):
        DetectionLoss(LossConfig(box_loss_weighting=weighting), DeltaBoxCoder())
    parameter = torch.nn.Parameter(torch.zeros(1))
    for name in choices(OptimizerName):
        assert build_optimizer([parameter], TrainConfig(optimizer=name), 0.01).param_groups[0]["lr"] == 0.01


def test_every_choice_field_is_validated() -> None:
    """A wrong value in any Literal field of a Config built in code is reported with its dotted key."""
    config = Config()
    config.method.name = "distill"  # type: ignore[assignment]
    config.model.head.type = "fcos"  # type: ignore[assignment]
    config.model.backbone.depth = 50.0  # type: ignore[assignment]  # equal to 50, but not an int
    config.model.loss.box_loss_weighting = "sum"  # type: ignore[assignment]
    config.method.colad.criterion = "other"  # type: ignore[assignment]
    config.method.colad.evaluate_network = "third"  # type: ignore[assignment]
    config.train.optimizer = "adam"  # type: ignore[assignment]
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    message = str(info.value)
    for key in [
        "method.name",
        "model.head.type",
        "model.backbone.depth",
        "model.loss.box_loss_weighting",
        "method.colad.criterion",
        "method.colad.evaluate_network",
        "train.optimizer",
    ]:
        assert f"key '{key}'" in message
    validate_config(Config())  # the defaults are valid


def test_loader_checks_the_type_of_a_choice_field(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("seed: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'model.backbone.depth': expected int, got float 50.0"):
        load_config(path, ["model.backbone.depth=50.0"])
    with pytest.raises(ConfigError, match=r"'method.name': expected str, got int 1"):
        load_config(path, ["method.name=1"])
    config = load_config(
        path, ["model.backbone.depth=18", "model.head.type=cop", "method.colad.evaluate_network=first"]
    )
    assert (config.model.backbone.depth, config.model.head.type) == (18, "cop")


def test_no_other_module_keeps_its_own_list_of_names() -> None:
    """The names removed in favour of the schema's choice types stay removed."""
    import ladet.config.validation as validation
    import ladet.losses.detection as detection
    import ladet.methods as methods
    import ladet.methods.colad as colad
    import ladet.models.heads as heads

    for module, name in [
        (validation, "METHOD_NAMES"),
        (validation, "HEAD_TYPES"),
        (validation, "BOX_LOSS_WEIGHTINGS"),
        (validation, "EVALUATE_NETWORKS"),
        (validation, "COLAD_CRITERIA"),
        (methods, "METHODS_NEEDING_TEACHER"),
        (detection, "BOX_LOSS_WEIGHTINGS"),
        (colad, "EVALUATE_NETWORK_NAMES"),
        (heads, "_HEADS"),
    ]:
        assert not hasattr(module, name), f"{module.__name__}.{name}"
    assert all(dataclasses.is_dataclass(value) for value in RESNET_VARIANTS.values())
