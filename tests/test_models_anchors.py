"""Anchors with nominal strides and valid flags (docs/algorithms.md §1.3), hand-computed answers."""

from __future__ import annotations

import torch

from ladet.models.anchors import AnchorGenerator, AnchorGrid

# Feature-map sizes of an 800x1333 image padded to 800x1344: H/8.., then ceil for P6/P7.
LEVEL_SIZES_800x1344 = [(100, 168), (50, 84), (25, 42), (13, 21), (7, 11)]
STRIDES = [8, 16, 32, 64, 128]


def test_anchor_count_and_levels_for_800x1344() -> None:
    grid = AnchorGenerator(STRIDES, 8).grid(LEVEL_SIZES_800x1344, "cpu")
    assert grid.num_anchors == 22_400
    assert grid.anchors.shape == (22_400, 4)
    assert grid.num_per_level == [16_800, 4_200, 1_050, 273, 77]
    assert grid.strides == STRIDES
    assert torch.equal(torch.bincount(grid.level_index), torch.tensor([16_800, 4_200, 1_050, 273, 77]))
    # levels are contiguous and in P3..P7 order
    assert torch.all(grid.level_index[1:] >= grid.level_index[:-1])


def test_anchor_centres_and_sizes_on_every_level() -> None:
    grid = AnchorGenerator(STRIDES, 8).grid(LEVEL_SIZES_800x1344, "cpu")
    for level_slice, (height, width), stride in zip(
        grid.level_slices(), LEVEL_SIZES_800x1344, STRIDES, strict=True
    ):
        anchors = grid.anchors[level_slice].view(height, width, 4)
        side = 8 * stride
        assert torch.all(anchors[..., 2] - anchors[..., 0] == side)
        assert torch.all(anchors[..., 3] - anchors[..., 1] == side)
        centre_x = (anchors[..., 0] + anchors[..., 2]) / 2
        centre_y = (anchors[..., 1] + anchors[..., 3]) / 2
        # row-major: (i, j) centred at (j * s, i * s), the top-left corner of the cell
        assert torch.equal(centre_x, (torch.arange(width).float() * stride).expand(height, width))
        assert torch.equal(
            centre_y, (torch.arange(height).float() * stride).view(-1, 1).expand(height, width)
        )


def test_hand_computed_anchor_boxes() -> None:
    grid = AnchorGenerator(STRIDES, 8).grid(LEVEL_SIZES_800x1344, "cpu")
    slices = grid.level_slices()
    # P3 first anchor: centre (0, 0), side 64
    assert grid.anchors[0].tolist() == [-32.0, -32.0, 32.0, 32.0]
    # P3 (i=0, j=1): centre (8, 0)
    assert grid.anchors[1].tolist() == [-24.0, -32.0, 40.0, 32.0]
    # P3 (i=1, j=0) is flat index 168: centre (0, 8)
    assert grid.anchors[168].tolist() == [-32.0, -24.0, 32.0, 40.0]
    # P6 last anchor (i=12, j=20), stride 64: centre (1280, 768), half side 256 (not 61-px strides)
    assert grid.anchors[slices[3].stop - 1].tolist() == [1024.0, 512.0, 1536.0, 1024.0]
    # P7 last anchor (i=6, j=10), stride 128: centre (1280, 768), half side 512
    assert grid.anchors[-1].tolist() == [768.0, 256.0, 1792.0, 1280.0]
    # P7 (i=1, j=2): flat offset 1*11 + 2 = 13 -> centre (256, 128)
    assert grid.anchors[slices[4].start + 13].tolist() == [-256.0, -384.0, 768.0, 640.0]


def test_grid_is_cached_per_shape_and_device() -> None:
    generator = AnchorGenerator(STRIDES, 8)
    first = generator.grid(LEVEL_SIZES_800x1344, "cpu")
    assert generator.grid(LEVEL_SIZES_800x1344, torch.device("cpu")) is first
    other = generator.grid([(4, 5), (2, 3), (1, 2), (1, 1), (1, 1)], "cpu")
    assert other is not first and other.num_anchors == 20 + 6 + 2 + 1 + 1


def test_valid_mask_with_padding() -> None:
    generator = AnchorGenerator(STRIDES, 8)
    grid = generator.grid(LEVEL_SIZES_800x1344, "cpu")
    padded_sizes = torch.tensor([[800, 1344], [608, 800]])
    valid = generator.valid_mask(grid, padded_sizes)
    assert valid.shape == (2, 22_400) and valid.dtype == torch.bool
    assert bool(valid[0].all())
    # image 2: rows/cols per level = ceil(608/s) x ceil(800/s)
    expected_per_level = [76 * 100, 38 * 50, 19 * 25, 10 * 13, 5 * 7]
    for level_slice, expected in zip(grid.level_slices(), expected_per_level, strict=True):
        assert int(valid[1, level_slice].sum()) == expected
    # P6 of image 2: ceil(608/64)=10 rows, ceil(800/64)=13 columns (not floor: 9 and 12)
    p6 = valid[1, grid.level_slices()[3]].view(13, 21)
    assert bool(p6[9, 12]) and not bool(p6[10, 12]) and not bool(p6[9, 13])
    # P3: (75, 99) valid, (76, 0) and (0, 100) invalid
    p3 = valid[1, grid.level_slices()[0]].view(100, 168)
    assert bool(p3[75, 99]) and not bool(p3[76, 0]) and not bool(p3[0, 100])


def test_valid_mask_small_hand_case() -> None:
    generator = AnchorGenerator([8, 16], 8)
    grid = generator.grid([(2, 3), (1, 2)], "cpu")
    valid = generator.valid_mask(grid, torch.tensor([[9, 16]]))
    # level 0 (stride 8): rows < ceil(9/8)=2, cols < ceil(16/8)=2; level 1: rows < 1, cols < 1
    expected = torch.tensor([[True, True, False, True, True, False, True, False]])
    assert torch.equal(valid, expected)


def test_cache_is_bounded_lru() -> None:
    generator = AnchorGenerator([8], 8, cache_size=2)
    first = generator.grid([(1, 1)], "cpu")
    second = generator.grid([(1, 2)], "cpu")
    assert generator.grid([(1, 1)], "cpu") is first  # refreshes (1, 1)
    generator.grid([(1, 3)], "cpu")  # evicts (1, 2), the least recently used
    assert generator.grid([(1, 1)], "cpu") is first
    assert generator.grid([(1, 2)], "cpu") is not second


def test_valid_mask_on_a_grid_built_without_locations() -> None:
    grid = AnchorGenerator([8, 16], 8).grid([(2, 3), (1, 2)], "cpu")
    bare = AnchorGrid(grid.anchors, grid.level_index, grid.num_per_level, grid.level_sizes, grid.strides)
    padded_sizes = torch.tensor([[9, 16], [16, 17]])
    assert torch.equal(
        AnchorGenerator.valid_mask(bare, padded_sizes), AnchorGenerator.valid_mask(grid, padded_sizes)
    )
    assert bare.locations is not None and torch.equal(bare.locations, grid.locations)
