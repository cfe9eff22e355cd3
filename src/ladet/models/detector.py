"""The PAA detector: ResNet + FPN (P3..P7) + a dense head, plus anchors, box coder and inference.

The detector is a plain ``nn.Module`` that can be saved, exported and used alone: ``forward``
returns raw :class:`HeadOutputs` (assignment and losses live elsewhere), ``predict`` runs the
test-time pipeline of docs/algorithms.md §1.7.

Example:
    >>> from ladet.config.schema import ModelConfig
    >>> config = ModelConfig(num_classes=3)
    >>> config.backbone.depth, config.backbone.weights = 18, None
    >>> detector = build_detector(config)
    >>> outputs = detector(torch.zeros(1, 3, 128, 160))
    >>> outputs.class_scores.shape  # 16*20 + 8*10 + 4*5 + 2*3 + 1*2 anchors
    torch.Size([1, 428, 3])
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ladet.config.schema import ModelConfig
from ladet.models.anchors import AnchorGenerator, AnchorGrid
from ladet.models.backbone import ResNetBackbone
from ladet.models.box_coder import DeltaBoxCoder
from ladet.models.fpn import FPN
from ladet.models.heads import DenseHead, build_head
from ladet.models.outputs import HeadOutputs
from ladet.models.postprocess import postprocess_detections
from ladet.structures import Batch, Detections

__all__ = ["PAADetector", "build_detector"]


class PAADetector(nn.Module):
    """ResNet + FPN + PAA/IOP/COP head.

    Attributes:
        backbone: :class:`ResNetBackbone` (C3, C4, C5).
        neck: :class:`FPN` (P3..P7).
        head: a :class:`DenseHead` variant.
        anchor_generator: nominal-stride square anchors.
        box_coder: :class:`DeltaBoxCoder`.
        config: the :class:`ModelConfig` the detector was built from.
        num_classes: C.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if len(config.anchors.strides) != config.neck.num_outs:
            raise ValueError(
                f"model.anchors.strides has {len(config.anchors.strides)} entries but model.neck.num_outs "
                f"is {config.neck.num_outs}"
            )
        if config.num_classes is None:
            raise ValueError(
                "model.num_classes is not set: it is taken from the dataset by ladet.data.classes.resolve_classes "
                "(set it, or point data.* at a readable dataset)"
            )
        self.config = copy.deepcopy(config)
        self.num_classes: int = config.num_classes
        self.backbone = ResNetBackbone(
            depth=config.backbone.depth,
            weights=config.backbone.weights,
            frozen_stages=config.backbone.frozen_stages,
            norm_eval=config.backbone.norm_eval,
        )
        self.neck = FPN(self.backbone.out_channels, config.neck.out_channels, config.neck.num_outs)
        self.head: DenseHead = build_head(
            config.head, self.num_classes, config.neck.out_channels, config.neck.num_outs
        )
        self.anchor_generator = AnchorGenerator(config.anchors.strides, config.anchors.octave_base_scale)
        self.box_coder = DeltaBoxCoder()

    @property
    def has_iou_branch(self) -> bool:
        return self.head.iou_predictor is not None

    def features(self, images: Tensor) -> list[Tensor]:
        """[B, 3, H, W] -> FPN levels [P3, ..., P7]."""
        return self.neck(self.backbone(images))

    def forward(self, images: Tensor) -> HeadOutputs:
        """Raw head outputs for a padded batch [B, 3, H, W] (H, W multiples of 32)."""
        return self.head(self.features(images))

    def anchor_grid(self, level_sizes: list[tuple[int, int]], device: torch.device | str) -> AnchorGrid:
        """The anchors matching head outputs of the given level sizes."""
        return self.anchor_generator.grid(level_sizes, device)

    @torch.no_grad()
    def predict(self, batch: Batch) -> list[Detections]:
        """Detections per image in the ORIGINAL image frame (eval mode, no gradients).

        The module is switched to eval mode for the call and restored afterwards.
        """
        was_training = self.training
        self.eval()
        try:
            outputs = self(batch.images)
            grid = self.anchor_grid(outputs.level_sizes, batch.images.device)
            return postprocess_detections(
                outputs, grid, self.box_coder, batch.image_sizes, batch.scale_factors, self.config.test
            )
        finally:
            self.train(was_training)


def build_detector(model_config: ModelConfig) -> PAADetector:
    """Builds a :class:`PAADetector` from the ``model`` section of the config."""
    return PAADetector(model_config)
