"""Square anchors at the top-left corner of each cell, with nominal strides (docs/algorithms.md §1.3).

Anchor (i, j) of level l is centred at (j * s_l, i * s_l) with side ``octave_base_scale * s_l``.
torchvision's ``AnchorGenerator`` is not used: it derives strides by integer division, which
shifts the ceil-sized P6/P7 grids (61 and 114 px instead of 64 and 128 for an 800-px input).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["AnchorGrid", "AnchorGenerator"]


@dataclass
class AnchorGrid:
    """All anchors of one padded batch shape, levels concatenated P3 first, each row-major.

    Attributes:
        anchors: [N, 4] float32 (x1, y1, x2, y2) in the padded-image frame.
        level_index: [N] long, the FPN level (0 = P3) of each anchor.
        num_per_level: anchors per level, H_l * W_l.
        level_sizes: (H_l, W_l) of each level.
        strides: the nominal stride of each level.
        locations: [N, 3] long (row i, column j, stride) of each anchor; filled by
            :class:`AnchorGenerator`, derived on demand when None.
    """

    anchors: Tensor
    level_index: Tensor
    num_per_level: list[int]
    level_sizes: list[tuple[int, int]]
    strides: list[int]
    locations: Tensor | None = None

    def anchor_locations(self) -> Tensor:
        """[N, 3] long (row, column, stride) of every anchor (computed once)."""
        if self.locations is None:
            self.locations = _anchor_locations(self.level_sizes, self.strides, self.anchors.device)
        return self.locations

    @property
    def num_anchors(self) -> int:
        return int(self.anchors.shape[0])

    def level_slices(self) -> list[slice]:
        """The slice of each level in the flattened anchor axis."""
        slices: list[slice] = []
        start = 0
        for count in self.num_per_level:
            slices.append(slice(start, start + count))
            start += count
        return slices


def _anchor_locations(level_sizes: list[tuple[int, int]], strides: list[int], device: torch.device) -> Tensor:
    """[N, 3] long (row, column, stride) of every anchor, levels concatenated, row-major."""
    locations: list[Tensor] = []
    for (height, width), stride in zip(level_sizes, strides, strict=True):
        row, column = torch.meshgrid(
            torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
        )
        stride_column = torch.full((height * width,), stride, dtype=torch.long, device=device)
        locations.append(torch.stack([row.reshape(-1), column.reshape(-1), stride_column], dim=1))
    return torch.cat(locations)


class AnchorGenerator:
    """One square anchor per feature-map location.

    Args:
        strides: nominal stride of each level (P3..P7: 8, 16, 32, 64, 128).
        octave_base_scale: anchor side = octave_base_scale * stride.
        cache_size: how many grids (one per padded batch shape and device) are kept, LRU.

    Example:
        >>> generator = AnchorGenerator([8], 8)
        >>> generator.grid([(1, 2)], torch.device("cpu")).anchors
        tensor([[-32., -32.,  32.,  32.],
                [-24., -32.,  40.,  32.]])
    """

    def __init__(
        self,
        strides: list[int] | tuple[int, ...] = (8, 16, 32, 64, 128),
        octave_base_scale: float = 8.0,
        cache_size: int = 64,
    ) -> None:
        self.strides = [int(stride) for stride in strides]
        self.octave_base_scale = float(octave_base_scale)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[tuple[tuple[int, int], ...], str], AnchorGrid] = OrderedDict()

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    def grid(self, level_sizes: list[tuple[int, int]], device: torch.device | str) -> AnchorGrid:
        """Anchors for feature maps of sizes ``level_sizes`` [(H_l, W_l)], cached per shape/device."""
        sizes = tuple((int(height), int(width)) for height, width in level_sizes)
        if len(sizes) != len(self.strides):
            raise ValueError(f"AnchorGenerator: got {len(sizes)} level sizes for {len(self.strides)} strides")
        device = torch.device(device)
        key = (sizes, str(device))
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        anchors_per_level: list[Tensor] = []
        levels: list[Tensor] = []
        for level, ((height, width), stride) in enumerate(zip(sizes, self.strides, strict=True)):
            half_side = 0.5 * self.octave_base_scale * stride
            shift_y = torch.arange(height, device=device, dtype=torch.float32) * stride  # [H]
            shift_x = torch.arange(width, device=device, dtype=torch.float32) * stride  # [W]
            centre_y, centre_x = torch.meshgrid(shift_y, shift_x, indexing="ij")  # [H, W]
            centres = torch.stack([centre_x, centre_y, centre_x, centre_y], dim=-1).reshape(-1, 4)
            offsets = torch.tensor([-half_side, -half_side, half_side, half_side], device=device)
            anchors_per_level.append(centres + offsets)  # [H*W, 4]
            levels.append(torch.full((height * width,), level, dtype=torch.long, device=device))
        grid = AnchorGrid(
            anchors=torch.cat(anchors_per_level),
            level_index=torch.cat(levels),
            num_per_level=[height * width for height, width in sizes],
            level_sizes=list(sizes),
            strides=list(self.strides),
            locations=_anchor_locations(list(sizes), self.strides, device),
        )
        self._cache[key] = grid
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return grid

    @staticmethod
    def valid_mask(grid: AnchorGrid, padded_sizes: Tensor) -> Tensor:
        """Which anchors lie on each image's own (pad-to-32) area.

        Args:
            grid: the batch's anchors.
            padded_sizes: [B, 2] (h_pad, w_pad) of each image before padding to the batch max.

        Returns:
            [B, N] bool: location (i, j) of level l is valid iff i < ceil(h_pad / s_l) and
            j < ceil(w_pad / s_l).
        """
        locations = grid.anchor_locations()  # [N, 3]
        padded_sizes = padded_sizes.to(device=locations.device, dtype=torch.long)
        row_index, column_index, stride_per_anchor = locations.unbind(dim=1)  # [N] each
        # ceil(h / s) for integers: (h + s - 1) // s
        valid_rows = (padded_sizes[:, :1] + stride_per_anchor - 1) // stride_per_anchor  # [B, N]
        valid_columns = (padded_sizes[:, 1:] + stride_per_anchor - 1) // stride_per_anchor  # [B, N]
        return (row_index < valid_rows) & (column_index < valid_columns)
