"""torchvision ResNet backbone returning C3, C4, C5 (docs/algorithms.md §1.1).

mmdet-style training behaviour: the stem and the first ``frozen_stages`` residual stages get
``requires_grad=False``; with ``norm_eval`` every BatchNorm stays in eval mode for the whole
training (running statistics are never updated) while the affine parameters of the unfrozen
stages remain trainable (ordinary ``BatchNorm2d``, not ``FrozenBatchNorm2d``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import Tensor, nn

from ladet.config.schema import BackboneDepth, choices

__all__ = ["ResNetBackbone", "ResNetVariant", "RESNET_VARIANTS"]


@dataclass(frozen=True)
class ResNetVariant:
    """What differs between the ResNet depths of ``BackboneDepth``.

    Attributes:
        builder: the torchvision constructor.
        weights_enum: the name of its torchvision weights enum.
        stage_channels: output channels of layer1..layer4.
    """

    builder: Callable[..., torchvision.models.ResNet]
    weights_enum: str
    stage_channels: tuple[int, int, int, int]


RESNET_VARIANTS: dict[BackboneDepth, ResNetVariant] = {
    18: ResNetVariant(torchvision.models.resnet18, "ResNet18_Weights", (64, 128, 256, 512)),
    34: ResNetVariant(torchvision.models.resnet34, "ResNet34_Weights", (64, 128, 256, 512)),
    50: ResNetVariant(torchvision.models.resnet50, "ResNet50_Weights", (256, 512, 1024, 2048)),
    101: ResNetVariant(torchvision.models.resnet101, "ResNet101_Weights", (256, 512, 1024, 2048)),
}


def _looks_like_path(weights: str) -> bool:
    return os.sep in weights or weights.endswith((".pth", ".pt", ".bin")) or os.path.exists(weights)


class ResNetBackbone(nn.Module):
    """A torchvision ResNet that returns the outputs of layer2, layer3 and layer4.

    Args:
        depth: 18, 34, 50 or 101.
        weights: a torchvision weights enum member of that depth (``"IMAGENET1K_V1"`` or
            ``"ResNet50_Weights.IMAGENET1K_V1"``; downloads through torchvision on first use), a local path to a torchvision-layout
            ResNet state dict (``fc.*`` keys are ignored), or None for random init.
        frozen_stages: -1 freezes nothing, 0 freezes the stem (conv1 + bn1), k >= 1 also layer1..k.
        norm_eval: keep every BatchNorm in eval mode even in ``train()``.

    Example:
        >>> backbone = ResNetBackbone(18, weights=None)
        >>> [f.shape[1] for f in backbone(torch.zeros(1, 3, 64, 64))]
        [128, 256, 512]
    """

    def __init__(
        self,
        depth: BackboneDepth = 50,
        weights: str | None = None,
        frozen_stages: int = 1,
        norm_eval: bool = True,
    ) -> None:
        super().__init__()
        if depth not in RESNET_VARIANTS:
            raise ValueError(
                f"ResNetBackbone: unsupported depth {depth}; choose from {list(choices(BackboneDepth))}"
            )
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"ResNetBackbone: frozen_stages must be in [-1, 4], got {frozen_stages}")
        network = RESNET_VARIANTS[depth].builder(weights=None)
        if weights is not None:
            _load_resnet_weights(network, depth, weights)
        self.depth = depth
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.conv1 = network.conv1
        self.bn1 = network.bn1
        self.relu = network.relu
        self.maxpool = network.maxpool
        self.layer1 = network.layer1
        self.layer2 = network.layer2
        self.layer3 = network.layer3
        self.layer4 = network.layer4
        self.out_channels: list[int] = list(RESNET_VARIANTS[depth].stage_channels[1:])
        self._freeze_stages()
        # A freshly built module is in train mode without train() having run: apply norm_eval
        # now so that no forward before the first train()/eval() call updates BN statistics.
        self.train(True)

    def _frozen_modules(self) -> list[nn.Module]:
        modules: list[nn.Module] = []
        if self.frozen_stages >= 0:
            modules += [self.conv1, self.bn1]
        for stage_index in range(1, self.frozen_stages + 1):
            modules.append(getattr(self, f"layer{stage_index}"))
        return modules

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNetBackbone:
        """Sets train mode, then re-applies frozen stages and (with ``norm_eval``) BN eval mode."""
        super().train(mode)
        if mode:
            for module in self._frozen_modules():
                module.eval()
            if self.norm_eval:
                for module in self.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
        return self

    def forward(self, images: Tensor) -> list[Tensor]:
        """[B, 3, H, W] -> [C3 [B, c3, H/8, W/8], C4 [B, c4, H/16, W/16], C5 [B, c5, H/32, W/32]]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        x = self.layer1(x)
        c3 = self.layer2(x)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]


def _load_resnet_weights(network: torchvision.models.ResNet, depth: BackboneDepth, weights: str) -> None:
    """Loads ImageNet weights given as an enum member name or a local state-dict path."""
    if _looks_like_path(weights):
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"ResNetBackbone: backbone weights file not found: {weights}")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"ResNetBackbone: {weights} does not hold a state dict")
        source = weights
    else:
        enum_prefix = f"{RESNET_VARIANTS[depth].weights_enum}."
        if "_Weights." in weights and not weights.startswith(enum_prefix):
            raise ValueError(
                f"ResNetBackbone: weights {weights!r} are not ResNet-{depth} weights ({enum_prefix}*)"
            )
        enum_name = weights if weights.startswith(enum_prefix) else enum_prefix + weights
        try:
            weight_entry = torchvision.models.get_weight(enum_name)
        except (ValueError, AttributeError, KeyError) as error:
            raise ValueError(
                f"ResNetBackbone: unknown weights {weights!r} for ResNet-{depth} "
                f"(expected a member of {RESNET_VARIANTS[depth].weights_enum} or an existing file path)"
            ) from error
        state = weight_entry.get_state_dict(progress=False)
        source = enum_name
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    expected = {key for key in network.state_dict() if not key.startswith("fc.")}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"ResNetBackbone: weights {source} do not match ResNet-{depth}: "
            f"missing keys {missing[:20]}{'...' if len(missing) > 20 else ''}, "
            f"unexpected keys {unexpected[:20]}{'...' if len(unexpected) > 20 else ''}"
        )
    reference = network.state_dict()
    mismatched = [key for key, value in state.items() if tuple(value.shape) != tuple(reference[key].shape)]
    if mismatched:
        raise ValueError(f"ResNetBackbone: weights {source} have wrong shapes for keys {mismatched[:20]}")
    network.load_state_dict(state, strict=False)
