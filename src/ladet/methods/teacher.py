"""Building networks referenced by config file + checkpoint: LAD/KD/SoLAD teachers, CoLAD's second network.

Loading is strict (docs/algorithms.md §8.3): a missing checkpoint is an error before
step 0 (never a silently random teacher), every missing / unexpected / mis-shaped key is listed,
and a network whose classes or anchor layout differ from the student's is refused, because the
assignment is exchanged anchor by anchor.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ladet.checkpoint_io import (
    CheckpointError,
    extract_network_state,
    load_checkpoint,
    load_state_dict_strict,
)
from ladet.config.loader import find_config_file, load_config
from ladet.config.schema import ModelConfig, NetworkReference
from ladet.models.detector import PAADetector, build_detector

__all__ = [
    "NetworkMismatchError",
    "anchor_layout_differences",
    "check_anchor_layout",
    "load_network_model_config",
    "load_network_weights",
    "load_teacher",
    "build_second_network",
]


class NetworkMismatchError(ValueError):
    """Two networks that must share classes and anchors do not."""


def anchor_layout_differences(reference: ModelConfig, other: ModelConfig) -> list[str]:
    """Every difference in num_classes, anchor strides, octave_base_scale and number of levels.

    Returns:
        One "key: student X vs other Y" line per difference (empty when compatible).
    """
    pairs = (
        ("model.num_classes", reference.num_classes, other.num_classes),
        ("model.anchors.strides", list(reference.anchors.strides), list(other.anchors.strides)),
        (
            "model.anchors.octave_base_scale",
            reference.anchors.octave_base_scale,
            other.anchors.octave_base_scale,
        ),
        ("model.neck.num_outs (number of levels)", reference.neck.num_outs, other.neck.num_outs),
    )
    return [f"{key}: student {mine} vs {theirs}" for key, mine, theirs in pairs if mine != theirs]


def check_anchor_layout(student: ModelConfig, other: ModelConfig, description: str) -> None:
    """Raises :class:`NetworkMismatchError` listing each difference between the two layouts."""
    differences = anchor_layout_differences(student, other)
    if differences:
        raise NetworkMismatchError(
            f"{description} is incompatible with the student (classes and anchors must match, "
            "the assignment is exchanged anchor by anchor):\n  " + "\n  ".join(differences)
        )


def load_network_model_config(reference: NetworkReference, role: str) -> ModelConfig:
    """The ``model`` section of the config file a reference points at."""
    if reference is None or not reference.config:
        raise ValueError(f"{role}: no config file given (set '{role}.config')")
    return load_config(find_config_file(reference.config)).model


def load_network_weights(
    detector: PAADetector, checkpoint_path: str | Path, network: str = "detector"
) -> None:
    """Strictly loads one network's weights from a ladet / mmdetection / bare checkpoint."""
    checkpoint = load_checkpoint(checkpoint_path, map_location="cpu")
    state = extract_network_state(checkpoint, network, source=str(checkpoint_path))
    load_state_dict_strict(detector, state, source=f"checkpoint {checkpoint_path}")


def load_teacher(
    reference: NetworkReference | None, student_model_config: ModelConfig, device: torch.device | str
) -> PAADetector:
    """Builds the frozen teacher of LAD / KD / SoLAD.

    The teacher's config file is read with ``load_config``; its backbone weights are forced to
    None (the checkpoint supplies every weight, nothing is downloaded); the checkpoint is loaded
    strictly; the teacher is frozen (``requires_grad_(False)``), put in eval mode and moved to
    ``device``.

    Args:
        reference: ``method.teacher`` (config path + checkpoint path).
        student_model_config: the student's ``model`` section (for the compatibility check).
        device: where the teacher runs.

    Raises:
        ValueError: no teacher reference or no checkpoint.
        CheckpointError: missing / unreadable checkpoint or mismatching keys.
        NetworkMismatchError: different num_classes, strides, octave_base_scale or level count.
    """
    if reference is None or not reference.config:
        raise ValueError("method.teacher.config is not set: this method needs a teacher config file")
    if not reference.checkpoint:
        raise ValueError(
            f"method.teacher.checkpoint is not set for teacher {reference.config}: a trained teacher is "
            "required (training against a randomly initialised teacher is refused)"
        )
    if not Path(reference.checkpoint).is_file():
        raise CheckpointError(
            f"teacher checkpoint not found: {reference.checkpoint} (method.teacher.checkpoint)"
        )
    teacher_config = copy.deepcopy(load_network_model_config(reference, "method.teacher"))
    if teacher_config.num_classes is None:  # unset in the teacher's config: the student's (the data's)
        teacher_config.num_classes = student_model_config.num_classes
    check_anchor_layout(student_model_config, teacher_config, f"teacher {reference.config}")
    teacher_config.backbone.weights = None
    teacher = build_detector(teacher_config)
    load_network_weights(teacher, reference.checkpoint)
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher.to(device)


def build_second_network(
    reference: NetworkReference, first_model_config: ModelConfig, load_initial_backbone: bool = True
) -> PAADetector:
    """CoLAD's network 2, built from ``method.colad.second_network`` (trainable, not frozen).

    Args:
        reference: config file (+ optional initialisation checkpoint, loaded strictly).
        first_model_config: network 1's model section (layouts must match).
        load_initial_backbone: keep the config's backbone ``weights`` (ImageNet init for training);
            False builds without them (evaluation, where a checkpoint supplies every weight).
    """
    model_config = copy.deepcopy(load_network_model_config(reference, "method.colad.second_network"))
    if model_config.num_classes is None:
        model_config.num_classes = first_model_config.num_classes
    check_anchor_layout(first_model_config, model_config, f"CoLAD second network {reference.config}")
    if not load_initial_backbone or reference.checkpoint:
        model_config.backbone.weights = None
    detector = build_detector(model_config)
    if reference.checkpoint:
        load_network_weights(detector, reference.checkpoint)
    return detector
