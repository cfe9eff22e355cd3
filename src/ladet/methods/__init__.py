"""Training methods: baseline PAA, LAD, soft-label KD, SoLAD, CoLAD.

``build_method(config, device)`` is what the engine calls; ``build_evaluation_detector(config)``
builds only the network that is evaluated (testing a LAD student never needs the teacher).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from ladet.config.schema import Config, MethodName, choices
from ladet.methods.base import LabelAssignments, TrainingMethod
from ladet.methods.baseline import BaselineMethod
from ladet.methods.colad import CoLADMethod, network_attribute
from ladet.methods.lad import LADMethod
from ladet.methods.soft_label import SoftLabelMethod
from ladet.methods.solad import SoLADMethod
from ladet.methods.teacher import build_second_network, load_network_model_config, load_teacher
from ladet.models.detector import PAADetector, build_detector

__all__ = [
    "TrainingMethod",
    "LabelAssignments",
    "BaselineMethod",
    "LADMethod",
    "SoftLabelMethod",
    "SoLADMethod",
    "CoLADMethod",
    "build_method",
    "build_evaluation_detector",
    "evaluation_network_name",
    "load_teacher",
]


def _teacher(config: Config, device: torch.device | str) -> PAADetector:
    if config.method.teacher is None or not config.method.teacher.config:
        raise ValueError(
            f"method '{config.method.name}' needs a teacher: set method.teacher.config and method.teacher.checkpoint"
        )
    return load_teacher(config.method.teacher, config.model, device)


def _baseline(config: Config, device: torch.device | str) -> TrainingMethod:
    return BaselineMethod(build_detector(config.model))


def _lad(config: Config, device: torch.device | str) -> TrainingMethod:
    return LADMethod(build_detector(config.model), _teacher(config, device))


def _soft_label(config: Config, device: torch.device | str) -> TrainingMethod:
    return SoftLabelMethod(build_detector(config.model), _teacher(config, device), config.method.kd)


def _solad(config: Config, device: torch.device | str) -> TrainingMethod:
    return SoLADMethod(build_detector(config.model), _teacher(config, device), config.method.kd)


def _colad(config: Config, device: torch.device | str) -> TrainingMethod:
    colad = config.method.colad
    second = build_second_network(colad.second_network, config.model)
    return CoLADMethod(build_detector(config.model), second, colad.evaluate_network, colad.criterion)


METHOD_BUILDERS: dict[MethodName, Callable[[Config, torch.device | str], TrainingMethod]] = {
    "baseline": _baseline,
    "lad": _lad,
    "kd": _soft_label,
    "solad": _solad,
    "colad": _colad,
}


def build_method(config: Config, device: torch.device | str) -> TrainingMethod:
    """The training method named by ``config.method.name``, its networks on ``device``.

    Raises:
        ValueError: unknown method name (valid ones listed) or a teacher method without
            ``method.teacher``.
    """
    builder = METHOD_BUILDERS.get(config.method.name)
    if builder is None:
        raise ValueError(f"unknown method.name {config.method.name!r}; valid: {sorted(choices(MethodName))}")
    return builder(config, device).to(device)


def evaluation_network_name(config: Config) -> str:
    """``"detector"`` or, for CoLAD evaluating network 2, ``"second_detector"`` (checkpoint prefix)."""
    if config.method.name == "colad":
        return network_attribute(config.method.colad.evaluate_network)
    return "detector"


def build_evaluation_detector(config: Config) -> PAADetector:
    """Builds ONLY the evaluated network, without initial backbone weights (a checkpoint follows).

    No teacher is loaded; for CoLAD with ``evaluate_network="second"`` the second network's own
    model config is used.
    """
    if evaluation_network_name(config) == "second_detector":
        model_config = copy.deepcopy(
            load_network_model_config(config.method.colad.second_network, "method.colad.second_network")
        )
        if model_config.num_classes is None:  # left to the data, like network 1's
            model_config.num_classes = config.model.num_classes
    else:
        model_config = copy.deepcopy(config.model)
    model_config.backbone.weights = None
    return build_detector(model_config)
