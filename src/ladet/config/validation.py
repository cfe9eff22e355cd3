"""Semantic checks of a built :class:`~ladet.config.schema.Config`.

Types are checked while the config is built (``ladet.config.loader``); this module checks what
the loader's type check leaves open: the value of every choice field against the one list the
schema declares for it (``Literal[...]``), value ranges, and the rules that tie fields together
(a LAD run needs a teacher config, lr steps lie inside the schedule, ...).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping
from typing import Any

from ladet.config.errors import ConfigError
from ladet.config.schema import Config, MethodName, choices

__all__ = ["METHODS_WITH_TEACHER", "validate_config"]

METHODS_WITH_TEACHER: tuple[MethodName, ...] = ("lad", "kd", "solad")


def _check_choices(section: Any, prefix: str, problems: list[str]) -> None:
    """Every choice field (``Literal[...]`` in the schema) of ``section`` and its sub-sections."""
    hints = typing.get_type_hints(type(section))
    for item in dataclasses.fields(section):
        value = getattr(section, item.name)
        key = f"{prefix}{item.name}"
        if typing.get_origin(hints[item.name]) is typing.Literal:
            allowed = choices(hints[item.name])
            # `type(...) is` so that 50.0 or True never pass for an int choice
            if not any(value == option and type(value) is type(option) for option in allowed):
                problems.append(f"key '{key}': {value!r} is not one of {list(allowed)}")
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            _check_choices(value, key + ".", problems)


def validate_config(
    config: Config, source: str = "<config>", provenance: Mapping[str, str] | None = None
) -> None:
    """Check the value ranges and the cross-field rules the types cannot express.

    Args:
        config: the built config.
        source: named at the start of the error message (the config file).
        provenance: dotted key -> the file or override that set it; when given, each problem
            about a key also names where that key was written.
    """
    problems: list[str] = []
    model, method, train, data = config.model, config.method, config.train, config.data
    _check_choices(config, "", problems)
    if not -1 <= model.backbone.frozen_stages <= 4:
        problems.append(f"key 'model.backbone.frozen_stages': {model.backbone.frozen_stages} not in [-1, 4]")
    if method.name in METHODS_WITH_TEACHER and (method.teacher is None or not method.teacher.config):
        problems.append(f"method '{method.name}' needs 'method.teacher.config' (the teacher's config file)")
    if method.name == "colad" and not method.colad.second_network.config:
        problems.append("method 'colad' needs 'method.colad.second_network.config'")
    if model.num_classes is not None and model.num_classes < 1:
        problems.append(
            f"key 'model.num_classes': must be >= 1 or null (from the dataset), got {model.num_classes}"
        )
    for key, value in (
        ("data.images_per_gpu", data.images_per_gpu),
        ("data.test_images_per_gpu", data.test_images_per_gpu),
        ("train.epochs", train.epochs),
        ("train.base_batch_size", train.base_batch_size),
        ("model.head.feat_channels", model.head.feat_channels),
        ("model.neck.out_channels", model.neck.out_channels),
    ):
        if value < 1:
            problems.append(f"key '{key}': must be >= 1, got {value}")
    if data.workers_per_gpu < 0:
        problems.append(f"key 'data.workers_per_gpu': must be >= 0, got {data.workers_per_gpu}")
    if train.lr <= 0:
        problems.append(f"key 'train.lr': must be > 0, got {train.lr}")
    if not 0.0 <= data.flip_prob <= 1.0:
        problems.append(f"key 'data.flip_prob': must be in [0, 1], got {data.flip_prob}")
    if list(train.lr_steps) != sorted(train.lr_steps) or any(
        not 0 <= step < train.epochs for step in train.lr_steps
    ):
        problems.append(
            f"key 'train.lr_steps': must be sorted epochs in [0, train.epochs={train.epochs}), got {train.lr_steps} (use [] for no decay)"
        )
    if data.multiscale_short_range is not None:
        short_range = data.multiscale_short_range
        if len(short_range) != 2 or short_range[0] > short_range[1] or short_range[0] < 1:
            problems.append(
                f"key 'data.multiscale_short_range': must be [low, high] with 1 <= low <= high, got {short_range}"
            )
    if len(model.anchors.strides) != model.neck.num_outs:
        problems.append(
            f"keys 'model.anchors.strides' / 'model.neck.num_outs': {len(model.anchors.strides)} strides "
            f"for {model.neck.num_outs} FPN levels"
        )
    if config.class_names and model.num_classes is not None and len(config.class_names) != model.num_classes:
        problems.append(
            f"key 'class_names': {len(config.class_names)} names for model.num_classes={model.num_classes}"
        )
    if problems:
        if provenance:
            problems = [_with_origin(problem, provenance) for problem in problems]
        raise ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(problems))


_KEY_IN_PROBLEM = re.compile(r"key '([^']+)'")


def _with_origin(problem: str, provenance: Mapping[str, str]) -> str:
    match = _KEY_IN_PROBLEM.search(problem)
    origin = provenance.get(match.group(1)) if match else None
    return f"{problem} (set in {origin})" if origin else problem
