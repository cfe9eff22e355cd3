"""Tiny networks, batches and config/checkpoint files shared by the ``test_methods_*`` tests."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ladet.checkpoint_io import save_checkpoint_atomic
from ladet.config.loader import dump_config
from ladet.config.schema import Config, ModelConfig, NetworkReference
from ladet.models.detector import PAADetector, build_detector
from ladet.structures import Batch

NUM_CLASSES = 3


def tiny_model_config(
    num_classes: int = NUM_CLASSES, head_type: str = "paa", iou_branch: bool = True
) -> ModelConfig:
    """ResNet-18, no pretrained weights, 32-channel FPN and head with 2 convs per tower."""
    config = ModelConfig(num_classes=num_classes)
    config.backbone.depth = 18
    config.backbone.weights = None
    config.neck.out_channels = 32
    config.head.feat_channels = 32
    config.head.num_convs = 2
    config.head.type = head_type
    config.head.iou_branch = iou_branch
    return config


def tiny_detector(seed: int = 0, **kwargs: object) -> PAADetector:
    torch.manual_seed(seed)
    return build_detector(tiny_model_config(**kwargs))  # type: ignore[arg-type]


def tiny_batch(with_gt: bool = True, seed: int = 0, second_image_without_gt: bool = False) -> Batch:
    """Two images padded to 128x160; the second one is only 96x128 (padding area invalid).

    ``with_gt=False``: no GT at all; ``second_image_without_gt``: only the first image has GT.
    """
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, 128, 160, generator=generator)
    images[1, :, 96:, :] = 0
    images[1, :, :, 128:] = 0
    if with_gt:
        gt_boxes = [
            torch.tensor([[10.0, 12.0, 70.0, 90.0], [60.0, 20.0, 150.0, 110.0], [5.0, 60.0, 45.0, 120.0]]),
            torch.tensor([[20.0, 10.0, 100.0, 80.0]]),
        ]
        gt_labels = [torch.tensor([0, 2, 1]), torch.tensor([1])]
        if second_image_without_gt:
            gt_boxes[1], gt_labels[1] = torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
    else:
        gt_boxes = [torch.zeros(0, 4), torch.zeros(0, 4)]
        gt_labels = [torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)]
    return Batch(
        images=images,
        image_sizes=torch.tensor([[128, 160], [96, 128]]),
        padded_sizes=torch.tensor([[128, 160], [96, 128]]),
        scale_factors=torch.ones(2, 2),
        original_sizes=torch.tensor([[128, 160], [96, 128]]),
        gt_boxes=gt_boxes,
        gt_labels=gt_labels,
        image_ids=[1, 2],
    )


def write_network_files(
    directory: Path, name: str, model_config: ModelConfig, detector: PAADetector | None = None
) -> NetworkReference:
    """Writes ``name.yaml`` (a config whose model section is ``model_config``) and, given a
    detector, ``name.pth`` (a ladet checkpoint of it); returns the reference to both."""
    config = Config(model=copy.deepcopy(model_config))
    config_path = directory / f"{name}.yaml"
    dump_config(config, config_path)
    checkpoint_path = None
    if detector is not None:
        checkpoint_path = directory / f"{name}.pth"
        state = {f"detector.{key}": value for key, value in detector.state_dict().items()}
        save_checkpoint_atomic({"model": state, "format": "ladet-1"}, checkpoint_path)
    return NetworkReference(
        config=str(config_path), checkpoint=None if checkpoint_path is None else str(checkpoint_path)
    )


def method_config(
    name: str, teacher: NetworkReference | None = None, second: NetworkReference | None = None
) -> Config:
    config = Config(model=tiny_model_config())
    config.method.name = name
    config.method.teacher = teacher
    if second is not None:
        config.method.colad.second_network = second
    return config
