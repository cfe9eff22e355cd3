"""Feature pyramid P3..P7 on C3..C5 (docs/algorithms.md §1.1, mmdet ``add_extra_convs='on_output'``).

Differences from torchvision's FPN that matter for parity: Xavier-uniform init with zero bias,
nearest upsampling to the exact size of the lower level, and P6 = conv(P5 output),
P7 = conv(P6) with NO ReLU in between (torchvision's ``LastLevelP6P7`` applies one).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FPN"]


class FPN(nn.Module):
    """Top-down feature pyramid with extra stride-2 levels computed from the P5 output.

    Args:
        in_channels: channels of C3, C4, C5 (e.g. [512, 1024, 2048] for R50).
        out_channels: channels of every output level.
        num_outs: number of outputs; levels beyond len(in_channels) are extra stride-2 convs
            (5 gives P3..P7).

    Attributes (mmdet names in ``mmdet_compat``): ``lateral_convs`` (1x1), ``output_convs``
    (3x3 on P3..P5), ``extra_convs`` (3x3 stride 2: P6, P7).
    """

    def __init__(self, in_channels: list[int], out_channels: int = 256, num_outs: int = 5) -> None:
        super().__init__()
        if num_outs < len(in_channels):
            raise ValueError(f"FPN: num_outs={num_outs} is smaller than the {len(in_channels)} inputs")
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels
        )
        self.extra_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
            for _ in range(num_outs - len(in_channels))
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """[C3, C4, C5] -> [P3 [B, D, H/8, W/8], ..., P7 [B, D, ceil(H/128), ceil(W/128)]]."""
        if len(features) != len(self.lateral_convs):
            raise ValueError(f"FPN: expected {len(self.lateral_convs)} inputs, got {len(features)}")
        laterals = [conv(feature) for conv, feature in zip(self.lateral_convs, features, strict=True)]
        for index in range(len(laterals) - 1, 0, -1):
            lower = laterals[index - 1]
            laterals[index - 1] = lower + F.interpolate(
                laterals[index], size=lower.shape[-2:], mode="nearest"
            )
        outputs = [conv(lateral) for conv, lateral in zip(self.output_convs, laterals, strict=True)]
        for conv in self.extra_convs:
            outputs.append(conv(outputs[-1]))
        return outputs
