"""Dense heads shared across FPN levels: PAA (logits + IoU), IOP and COP (docs/algorithms.md §1.2, §6).

All heads have the same ATSS-style trunk: a classification tower and a regression tower of
``num_convs`` x [conv3x3 (no bias) -> GroupNorm(32) -> ReLU], a class predictor on the cls tower,
a box predictor times a learnable per-level scale on the reg tower and, with ``iou_branch``, an
IoU predictor on the reg tower. The variants only differ in how the class score is formed:

* ``PAAHead``: class logits z (``class_scores_are_probabilities=False``).
* ``IOPHead``: p = ReLU(σ(z) − σ(o_thr)) · σ(o_obj) with two extra 1-channel convs (§6.2).
* ``COPHead``: p_c(y, x) = mean_j σ(z_c(y+dy_j, x+dx_j)) · σ(w_j(y, x)) over the 3x3
  neighbourhood, with a 9-channel coefficient conv (§6.3), fused as 9 shifted multiply-adds.

Probabilities are computed in fp32 (docs/algorithms.md §8.4). Heads without the IoU branch build no
IoU conv at all (no dead parameters under DDP).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ladet.config.schema import HeadConfig, HeadType, choices
from ladet.models.outputs import HeadOutputs

__all__ = [
    "Scale",
    "ConvNormActivation",
    "DenseHead",
    "PAAHead",
    "IOPHead",
    "COPHead",
    "HEAD_CLASSES",
    "build_head",
]


class Scale(nn.Module):
    """Multiplies its input by one learnable scalar (init ``initial_value``)."""

    def __init__(self, initial_value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(initial_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class ConvNormActivation(nn.Module):
    """conv3x3 (no bias) -> GroupNorm -> ReLU, one layer of a head tower."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int = 32) -> None:
        super().__init__()
        if out_channels % num_groups != 0:
            raise ValueError(
                f"ConvNormActivation: {out_channels} channels not divisible by {num_groups} groups"
            )
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = nn.GroupNorm(num_groups, out_channels)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.norm(self.conv(x)))


def _bias_for_probability(probability: float) -> float:
    """The logit b with σ(b) = probability, i.e. −log((1 − π) / π)."""
    return -math.log((1.0 - probability) / probability)


def _fill_bias(conv: nn.Conv2d, value: float) -> None:
    if conv.bias is None:
        raise ValueError("a predictor conv without bias cannot take a prior-probability bias")
    nn.init.constant_(conv.bias, value)


def _flatten_level(x: Tensor) -> Tensor:
    """[B, K, H, W] -> [B, H*W, K] (row-major locations)."""
    batch_size, channels = x.shape[:2]
    return x.permute(0, 2, 3, 1).reshape(batch_size, -1, channels)


class DenseHead(nn.Module):
    """The shared trunk of every variant; subclasses override :meth:`class_scores`.

    Args:
        num_classes: C.
        in_channels: channels of every FPN level.
        num_levels: number of FPN levels (one Scale each).
        feat_channels: tower width.
        num_convs: layers per tower.
        prior_prob: π of the class-logit bias init.
        iou_branch: build the IoU predictor (PAA default); False for the *base heads.
    """

    class_scores_are_probabilities: bool = False

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        num_levels: int = 5,
        feat_channels: int = 256,
        num_convs: int = 4,
        prior_prob: float = 0.01,
        iou_branch: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_levels = num_levels
        self.iou_branch = iou_branch
        self.cls_convs = nn.ModuleList(
            ConvNormActivation(in_channels if index == 0 else feat_channels, feat_channels)
            for index in range(num_convs)
        )
        self.reg_convs = nn.ModuleList(
            ConvNormActivation(in_channels if index == 0 else feat_channels, feat_channels)
            for index in range(num_convs)
        )
        self.class_predictor = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.box_predictor = nn.Conv2d(feat_channels, 4, 3, padding=1)
        self.iou_predictor = nn.Conv2d(feat_channels, 1, 3, padding=1) if iou_branch else None
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels))
        self._build_extra_predictors(feat_channels)
        self.init_weights(prior_prob)

    def _build_extra_predictors(self, feat_channels: int) -> None:
        """Hook for variants that add convs on the regression tower."""

    def init_weights(self, prior_prob: float) -> None:
        """Convs N(0, 0.01) with zero bias, GN (1, 0), class bias −log((1−π)/π)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, mean=0.0, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        _fill_bias(self.class_predictor, _bias_for_probability(prior_prob))

    def class_scores(self, class_logits: Tensor, regression_features: Tensor) -> Tensor:
        """[B, C, H, W] logits (+ reg tower [B, F, H, W]) -> [B, C, H, W] class scores."""
        return class_logits

    def forward(self, features: list[Tensor]) -> HeadOutputs:
        """Runs the head on every level and flattens to [B, N, ...] (levels P3 first, row-major)."""
        if len(features) != self.num_levels:
            raise ValueError(
                f"{type(self).__name__}: expected {self.num_levels} feature maps, got {len(features)}"
            )
        class_scores: list[Tensor] = []
        box_deltas: list[Tensor] = []
        iou_logits: list[Tensor] = []
        level_sizes: list[tuple[int, int]] = []
        for level, feature in enumerate(features):
            classification = feature
            for layer in self.cls_convs:
                classification = layer(classification)
            regression = feature
            for layer in self.reg_convs:
                regression = layer(regression)
            class_logits = self.class_predictor(classification)  # [B, C, H, W]
            class_scores.append(_flatten_level(self.class_scores(class_logits, regression)))
            box_deltas.append(_flatten_level(self.scales[level](self.box_predictor(regression))))
            if self.iou_predictor is not None:
                iou_logits.append(_flatten_level(self.iou_predictor(regression)).squeeze(-1))
            level_sizes.append((int(feature.shape[-2]), int(feature.shape[-1])))
        return HeadOutputs(
            class_scores=torch.cat(class_scores, dim=1),  # [B, N, C]
            box_deltas=torch.cat(box_deltas, dim=1),  # [B, N, 4]
            iou_logits=torch.cat(iou_logits, dim=1) if iou_logits else None,  # [B, N]
            level_sizes=level_sizes,
            class_scores_are_probabilities=self.class_scores_are_probabilities,
        )


class PAAHead(DenseHead):
    """The PAA head of docs/algorithms.md §1.2: class logits, scaled box deltas, IoU logits."""


class IOPHead(DenseHead):
    """Implicit objectness (§6.2): p = ReLU(σ(z) − σ(o_thr)) · σ(o_obj), computed in fp32."""

    class_scores_are_probabilities = True
    threshold_prior_prob = 1e-4

    def _build_extra_predictors(self, feat_channels: int) -> None:
        self.objectness_predictor = nn.Conv2d(feat_channels, 1, 3, padding=1)
        self.threshold_predictor = nn.Conv2d(feat_channels, 1, 3, padding=1)

    def init_weights(self, prior_prob: float) -> None:
        super().init_weights(prior_prob)
        _fill_bias(self.threshold_predictor, _bias_for_probability(self.threshold_prior_prob))

    def class_scores(self, class_logits: Tensor, regression_features: Tensor) -> Tensor:
        objectness = self.objectness_predictor(regression_features).float().sigmoid()  # [B, 1, H, W]
        threshold = self.threshold_predictor(regression_features).float().sigmoid()  # [B, 1, H, W]
        return F.relu(class_logits.float().sigmoid() - threshold) * objectness  # [B, C, H, W]


class COPHead(DenseHead):
    """Conditional objectness (§6.3): a 3x3 neighbourhood of class evidence weighted per location.

    p_c(y, x) = (1/9) Σ_j σ(z_c(y + dy_j, x + dx_j)) · σ(w_j(y, x)), j row-major over the 3x3
    window; out-of-image logits are zero (σ = 0.5), exactly like ``nn.Unfold(3, padding=1)`` on
    the logits. Computed as 9 shifted multiply-adds, never materialising the 9x unfold.
    """

    class_scores_are_probabilities = True
    kernel_size = 3

    def _build_extra_predictors(self, feat_channels: int) -> None:
        self.coefficient_predictor = nn.Conv2d(feat_channels, self.kernel_size**2, 3, padding=1)

    def class_scores(self, class_logits: Tensor, regression_features: Tensor) -> Tensor:
        coefficients = self.coefficient_predictor(regression_features).float().sigmoid()  # [B, 9, H, W]
        return conditional_objectness(class_logits.float(), coefficients)


def conditional_objectness(class_logits: Tensor, coefficient_probabilities: Tensor) -> Tensor:
    """The fused COP probability.

    Args:
        class_logits: [B, C, H, W] logits z.
        coefficient_probabilities: [B, 9, H, W] σ(w), channel j = row-major 3x3 offset.

    Returns:
        [B, C, H, W] p = mean_j σ(z shifted by offset j, zero-padded logits) · σ(w_j).
    """
    height, width = class_logits.shape[-2:]
    padded = F.pad(class_logits, (1, 1, 1, 1)).sigmoid()  # [B, C, H+2, W+2]; border σ(0) = 0.5
    result = torch.zeros_like(class_logits)
    for offset in range(9):
        row, column = divmod(offset, 3)  # (dy + 1, dx + 1)
        neighbour = padded[:, :, row : row + height, column : column + width]  # [B, C, H, W]
        result = result + neighbour * coefficient_probabilities[:, offset : offset + 1]
    return result / 9.0


HEAD_CLASSES: dict[HeadType, type[DenseHead]] = {"paa": PAAHead, "iop": IOPHead, "cop": COPHead}


def build_head(head_config: HeadConfig, num_classes: int, in_channels: int, num_levels: int) -> DenseHead:
    """Builds the head named by ``head_config.type`` (one of ``choices(HeadType)``)."""
    if head_config.type not in HEAD_CLASSES:
        raise ValueError(
            f"model.head.type: unknown head {head_config.type!r}; choose from {list(choices(HeadType))}"
        )
    return HEAD_CLASSES[head_config.type](
        num_classes=num_classes,
        in_channels=in_channels,
        num_levels=num_levels,
        feat_channels=head_config.feat_channels,
        num_convs=head_config.num_convs,
        prior_prob=head_config.prior_prob,
        iou_branch=head_config.iou_branch,
    )
