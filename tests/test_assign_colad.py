"""CoLAD Std/Mean switching (docs/algorithms.md §5.2 steps 4 and 7) on hand-built cost vectors."""

from __future__ import annotations

import math

import pytest
import torch

from ladet.assign.colad import choose_costs_std_mean
from ladet.assign.max_iou import PreAssignment


def _pre(image, gt_global, level, num_gts_per_image) -> PreAssignment:
    image = torch.tensor(image, dtype=torch.long)
    gt_global = torch.tensor(gt_global, dtype=torch.long)
    offsets = torch.tensor([0, *num_gts_per_image]).cumsum(0)[:-1]
    count = image.shape[0]
    return PreAssignment(
        gt_index=torch.full((len(num_gts_per_image), 32), -1),
        image_index=image,
        anchor_index=torch.arange(count),
        gt_local=gt_global - offsets[image] if count else gt_global,
        gt_global=gt_global,
        level=torch.tensor(level, dtype=torch.long),
        labels=torch.zeros(count, dtype=torch.long),
        box_targets=torch.zeros(count, 4),
        num_gts_per_image=list(num_gts_per_image),
        num_levels=5,
    )


def test_std_mean_switching_known_answer():
    # Image 0: no GT. Image 1: GTs 0, 1, 2 (global 0..2). Image 2: one GT (global 3).
    #  (g0, l0) n=3: first (1,2,3) mu 2 sd 1 -> cv .5; second (2,2,5) mu 3 sd sqrt3 -> cv .577 >= .5 -> second
    #  (g0, l1) n=1: first 4, second 3 -> mu2 < mu1 -> second
    #  (g1, l0) n=2: first (1,3) cv sqrt2/2 = .707; second (2,2.5) mu 2.25 sd .354 cv .157 -> first
    #  (g1, l2) n=1: first 1, second 2 -> first
    #  (g2, l0) n=2: first (1,3) cv .707; second (2,6) cv sqrt8/4 = .707 (equal) -> second (>=)
    #  (g3, l0) n=1 (image 2): first 1, second .5 -> second
    first = [1, 2, 3, 4, 1, 3, 1, 1, 3, 1]
    second = [2, 2, 5, 3, 2, 2.5, 2, 2, 6, 0.5]
    pre = _pre([1] * 9 + [2], [0, 0, 0, 0, 1, 1, 1, 2, 2, 3], [0, 0, 0, 1, 0, 0, 2, 0, 0, 0], [0, 3, 1])
    choice = choose_costs_std_mean(torch.tensor(first, dtype=torch.float32), torch.tensor(second), pre)
    expected_second = [True, True, True, True, False, False, False, True, True, True]
    assert choice.uses_second.tolist() == expected_second
    expected_costs = [s if use else f for f, s, use in zip(first, second, expected_second, strict=True)]
    torch.testing.assert_close(choice.costs, torch.tensor(expected_costs, dtype=torch.float32))
    # segment = gt_global * 5 + level
    assert choice.segment_count[[0, 1, 5, 7, 10, 15]].tolist() == [3, 1, 2, 1, 2, 1]
    assert choice.segment_count.sum() == 10
    torch.testing.assert_close(choice.std_second[0], torch.tensor(math.sqrt(3.0)))
    # Statistics: image 1 has 5 segments, image 2 one; image 0 none (excluded).
    image1_s_std = (1 + 2 * math.sqrt(2)) / 3
    image1_t_std = (math.sqrt(3) + math.sqrt(0.125) + math.sqrt(8)) / 3
    expected = {
        "s_mean": ((2 + 4 + 2 + 1 + 2) / 5 + 1) / 2,
        "t_mean": ((3 + 3 + 2.25 + 2 + 4) / 5 + 0.5) / 2,
        "s_std": image1_s_std,  # image 2 has no segment with n >= 2
        "t_std": image1_t_std,
        "t_ratio": (3 / 5 + 1) / 2,
    }
    for key, value in expected.items():
        assert choice.statistics[key].item() == pytest.approx(value, rel=1e-6), key


def test_single_candidate_levels_and_empty_batches():
    # All segments have one candidate: the lower cost wins, ties keep the first network.
    pre = _pre([0, 0, 0], [0, 0, 1], [0, 3, 4], [2])
    choice = choose_costs_std_mean(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 2.0, 4.0]), pre)
    assert choice.uses_second.tolist() == [True, False, False]
    assert choice.statistics["s_std"].item() == 0.0 and choice.statistics["t_std"].item() == 0.0
    assert choice.statistics["t_ratio"].item() == pytest.approx(1 / 3)
    # No pre-positive at all (images without GT): zeros, no crash.
    empty = _pre([], [], [], [0, 0])
    choice = choose_costs_std_mean(torch.zeros(0), torch.zeros(0), empty)
    assert choice.costs.shape == (0,) and choice.uses_second.shape == (0,)
    assert all(value.item() == 0.0 for value in choice.statistics.values())
    with pytest.raises(ValueError, match="shapes differ"):
        choose_costs_std_mean(torch.zeros(2), torch.zeros(3), empty)
