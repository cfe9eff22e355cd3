"""Tests of the strict YAML config loader: merging, overrides, errors, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ladet.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
)
from ladet.config.loader import merge_config_dicts, parse_overrides


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------- merging
def test_merge_deep_merges_mappings_and_replaces_lists() -> None:
    base = {"a": {"x": 1, "y": [1, 2, 3], "z": {"k": 1}}, "b": 2}
    override = {"a": {"y": [9], "z": {"m": 2}}, "c": 3}
    merged = merge_config_dicts(base, override)
    assert merged == {"a": {"x": 1, "y": [9], "z": {"k": 1, "m": 2}}, "b": 2, "c": 3}
    assert base == {"a": {"x": 1, "y": [1, 2, 3], "z": {"k": 1}}, "b": 2}  # inputs untouched


def test_merge_delete_replaces_subtree() -> None:
    base = {"a": {"x": 1, "y": 2}, "b": 1}
    merged = merge_config_dicts(base, {"a": {"_delete_": True, "y": 5}})
    assert merged == {"a": {"y": 5}, "b": 1}
    # _delete_: false merges as usual and the marker never leaks into the result
    merged = merge_config_dicts(base, {"a": {"_delete_": False, "y": 5}})
    assert merged == {"a": {"x": 1, "y": 5}, "b": 1}


def test_base_inheritance_order_and_relative_paths(tmp_path: Path) -> None:
    write(tmp_path / "bases" / "one.yaml", "train:\n  lr: 0.02\n  epochs: 20\n  lr_steps: [10]\n")
    write(tmp_path / "bases" / "two.yaml", "train:\n  lr: 0.03\nmodel:\n  num_classes: 3\n")
    # nested base: three.yaml inherits from one.yaml in its own folder
    write(tmp_path / "bases" / "three.yaml", "_base_: one.yaml\nseed: 7\n")
    child = write(
        tmp_path / "exp" / "child.yaml",
        "_base_: [../bases/three.yaml, ../bases/two.yaml]\ntrain:\n  epochs: 30\n",
    )
    config = load_config(child)
    assert config.train.lr == 0.03  # later base wins over earlier base
    assert config.train.epochs == 30  # the file wins over its bases
    assert config.train.lr_steps == [10]
    assert config.model.num_classes == 3
    assert config.seed == 7  # recursive base
    assert config.train.momentum == 0.9  # untouched schema default


def test_delete_in_file_resets_subtree_to_schema_defaults(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "data:\n  train:\n    ann_file: a.json\n    image_dir: a\n")
    child = write(
        tmp_path / "child.yaml",
        "_base_: base.yaml\ndata:\n  train:\n    _delete_: true\n    ann_file: b.json\n",
    )
    config = load_config(child)
    assert config.data.train.ann_file == "b.json"
    # image_dir from the base was deleted, so the schema default applies
    assert config.data.train.image_dir == Config().data.train.image_dir


def test_circular_base_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")


def test_missing_base_names_file(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yaml", "_base_: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"a\.yaml.*nowhere\.yaml"):
        load_config(path)


# -------------------------------------------------------------------------------- overrides
def test_parse_overrides_values() -> None:
    parsed = parse_overrides(
        [
            "train.lr=0.005",
            "train.epochs=24",
            "model.backbone.weights=null",
            "train.lr_steps=[16,22]",
            "data.train.ann_file=x.json",
            "train.weight_decay=1e-4",
            "model.backbone.norm_eval=false",
            "class_names=[a, b]",
        ]
    )
    assert parsed == [
        ("train.lr", 0.005),
        ("train.epochs", 24),
        ("model.backbone.weights", None),
        ("train.lr_steps", [16, 22]),
        ("data.train.ann_file", "x.json"),
        ("train.weight_decay", 1e-4),
        ("model.backbone.norm_eval", False),
        ("class_names", ["a", "b"]),
    ]
    for bad in ["train.lr", "=3", "train..lr=1"]:
        with pytest.raises(ConfigError, match="section.key=value"):
            parse_overrides([bad])


def test_overrides_applied_after_files(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "train:\n  lr: 0.02\n")
    config = load_config(
        path,
        [
            "train.lr=0.005",
            "train.lr_steps=[16,22]",
            "train.epochs=24",
            "model.backbone.weights=null",
            "data.train.ann_file=x.json",
            "model.head={type: cop, iou_branch: false}",
            "method.name=lad",
            "method.teacher.config=t.yaml",  # builds the optional NetworkReference from None
        ],
    )
    assert config.train.lr == 0.005
    assert config.train.lr_steps == [16, 22]
    assert config.model.backbone.weights is None
    assert config.data.train.ann_file == "x.json"
    assert config.data.train.image_dir == Config().data.train.image_dir
    assert (config.model.head.type, config.model.head.iou_branch, config.model.head.num_convs) == (
        "cop",
        False,
        4,
    )
    assert config.method.teacher is not None
    assert (config.method.teacher.config, config.method.teacher.checkpoint) == ("t.yaml", None)


def test_int_accepted_for_float_and_converted(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "train:\n  lr: 1\n  weight_decay: 1e-4\n")
    config = load_config(path)
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.train.weight_decay == 1e-4  # "1e-4" without a dot is a float here (YAML 1.2)


# ---------------------------------------------------------------------------------- errors
def test_unknown_key_names_key_file_and_suggestion(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "model:\n  backbone:\n    dept: 18\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\ntrain:\n  lr: 0.01\n")
    with pytest.raises(ConfigError) as info:
        load_config(child)
    message = str(info.value)
    assert "model.backbone.dept" in message
    assert "base.yaml" in message and "child.yaml" not in message  # the file that wrote the key
    assert "did you mean 'model.backbone.depth'" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "trian:\n  lr: 0.01\n")
    with pytest.raises(ConfigError, match=r"unknown key 'trian'.*did you mean 'train'"):
        load_config(path)


def test_unknown_override_key_names_override(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "seed: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["train.learning_rate=0.1"])
    message = str(info.value)
    assert "override 'train.learning_rate=0.1'" in message
    assert "unknown key 'train.learning_rate'" in message


@pytest.mark.parametrize(
    ("text", "key", "expected", "given"),
    [
        ("train:\n  epochs: twelve\n", "train.epochs", "expected int", "str 'twelve'"),
        ("train:\n  epochs: 12.5\n", "train.epochs", "expected int", "float 12.5"),
        ("train:\n  lr: '0.01'\n", "train.lr", "expected float", "str '0.01'"),
        ("train:\n  amp: 1\n", "train.amp", "expected bool", "int 1"),
        ("train:\n  epochs: true\n", "train.epochs", "expected int", "bool True"),
        ("model:\n  backbone: [18]\n", "model.backbone", "expected a mapping", "list"),
        ("train:\n  lr_steps: 8\n", "train.lr_steps", "expected list[int]", "int 8"),
        ("train:\n  lr_steps: [8, x]\n", "train.lr_steps[1]", "expected int", "str 'x'"),
        ("train:\n  lr: null\n", "train.lr", "expected float", "null"),
        ("method:\n  teacher: 3\n", "method.teacher", "mapping (NetworkReference)", "int 3"),
    ],
)
def test_wrong_types_are_errors(tmp_path: Path, text: str, key: str, expected: str, given: str) -> None:
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"'{key}'" in message and expected in message and given in message
    assert "c.yaml" in message


def test_null_allowed_where_optional(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        "model:\n  backbone:\n    weights: null\ntrain:\n  grad_clip_norm: null\n  load_from: null\n"
        "method:\n  teacher: null\ndata:\n  multiscale_short_range: null\n",
    )
    config = load_config(path)
    assert config.model.backbone.weights is None and config.method.teacher is None


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["method.name=distill"], "'method.name': 'distill' is not one of"),
        (["method.name=lad"], "needs 'method.teacher.config'"),
        (["method.name=kd", "method.teacher.checkpoint=x.pth"], "needs 'method.teacher.config'"),
        (["method.name=solad"], "needs 'method.teacher.config'"),
        (["method.name=colad"], "needs 'method.colad.second_network.config'"),
        (["model.head.type=fcos"], "'model.head.type': 'fcos' is not one of"),
        (["model.backbone.depth=152"], "'model.backbone.depth': 152 is not one of"),
        (["model.loss.box_loss_weighting=sum"], "'model.loss.box_loss_weighting'"),
        (["method.colad.evaluate_network=third"], "'method.colad.evaluate_network'"),
        (["train.lr_steps=[11,8]"], "'train.lr_steps': must be sorted"),
        (["train.lr_steps=[8,12]"], "'train.lr_steps': must be sorted epochs in [0, train.epochs=12)"),
        (["data.multiscale_short_range=[800,640]"], "'data.multiscale_short_range'"),
        (["data.multiscale_short_range=[640]"], "'data.multiscale_short_range'"),
        (["data.images_per_gpu=0"], "'data.images_per_gpu': must be >= 1"),
        (["model.anchors.strides=[8,16]"], "2 strides for 5 FPN levels"),
    ],
)
def test_semantic_errors(tmp_path: Path, overrides: list[str], fragment: str) -> None:
    path = write(tmp_path / "c.yaml", "seed: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    assert fragment in str(info.value)
    assert "c.yaml" in str(info.value)


def test_semantic_error_names_the_file_that_set_the_key(tmp_path: Path) -> None:
    write(tmp_path / "bases" / "schedule.yaml", "train:\n  lr_steps: [8, 11]\n")
    child = write(tmp_path / "exp" / "child.yaml", "_base_: ../bases/schedule.yaml\ntrain:\n  epochs: 6\n")
    with pytest.raises(ConfigError) as info:
        load_config(child)
    message = str(info.value)
    assert "'train.lr_steps'" in message
    assert f"(set in {tmp_path / 'bases' / 'schedule.yaml'})" in message


def test_semantic_checks_accept_valid_methods(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "seed: 0\n")
    lad = load_config(path, ["method.name=lad", "method.teacher.config=t.yaml"])
    assert lad.method.name == "lad"
    colad = load_config(path, ["method.name=colad", "method.colad.second_network.config=s.yaml"])
    assert colad.method.colad.second_network.config == "s.yaml"
    multiscale = load_config(path, ["data.multiscale_short_range=[640,640]"])
    assert multiscale.data.multiscale_short_range == [640, 640]
    no_decay = load_config(path, ["train.epochs=1", "train.lr_steps=[]"])
    assert no_decay.train.lr_steps == []
    with pytest.raises(ConfigError, match=r"use \[\] for no decay"):
        load_config(path, ["train.epochs=1", "train.lr_steps=[1]"])


def test_bad_yaml_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path / "bad.yaml", "train: [1, 2\n"))
    with pytest.raises(ConfigError, match="mapping at top level"):
        load_config(write(tmp_path / "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


# ----------------------------------------------------------------------------- round trip
def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "seed: 3\n")
    config = load_config(
        path,
        [
            "method.name=lad",
            "method.teacher.config=configs/paa/paa_r101_fpn_1x_coco.yaml",
            "model.backbone.weights=null",
            "train.weight_decay=0.0001",
            "data.multiscale_short_range=[640,800]",
            "class_names=[cat, 'yes', 'null', '1e3', '12']",
            "model.num_classes=5",
        ],
    )
    dumped = tmp_path / "out" / "config.yaml"
    dump_config(config, dumped)
    assert load_config(dumped) == config
    as_dict = config_to_dict(config)
    assert as_dict["method"]["teacher"] == {
        "config": "configs/paa/paa_r101_fpn_1x_coco.yaml",
        "checkpoint": None,
    }
    assert yaml.safe_load(dumped.read_text()) == as_dict  # plain YAML, no python tags
    assert "strides: [8, 16, 32, 64, 128]" in dumped.read_text()  # block mappings, flow lists
    assert config_from_dict(as_dict) == config


def test_config_from_dict_is_strict() -> None:
    assert config_from_dict({}) == Config()
    with pytest.raises(ConfigError, match=r"checkpoint: unknown key 'train.lrr'.*did you mean 'train.lr'"):
        config_from_dict({"train": {"lrr": 0.1}}, source="checkpoint")
    with pytest.raises(ConfigError, match="'seed': expected int"):
        config_from_dict({"seed": "0"})
