"""CoLAD "Std/Mean" cost switching (docs/algorithms.md §5.2 steps 4 and 7, §9.2 step 8).

For every (image, GT, level) segment with n >= 1 pre-positives, the candidate costs of one of the
two networks are used:
* n >= 2: the second network's costs if sigma2 / mu2 >= sigma1 / mu1 (unbiased std), else the first's;
* n == 1: the second network's cost if mu2 < mu1, else the first's.
The chosen cost vector then goes through the unchanged PAA selection (per-level top-k, GMM, ...).
All statistics are segment reductions (``index_add``); there is no loop over GTs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ladet.assign.max_iou import PreAssignment

__all__ = ["CoLADChoice", "choose_costs_std_mean"]


@dataclass
class CoLADChoice:
    """Outcome of the CoLAD switching for a batch (S = G_total * L segments, empty ones included).

    Attributes:
        costs: [P] the chosen cost of every pre-positive.
        uses_second: [P] bool, True where the second network's cost was taken.
        segment_count: [S] long, pre-positives of each (GT, level) segment (segment = gt_global * L + level).
        segment_image: [S] long, image of the segment's GT.
        mean_first, mean_second: [S] mean cost of each network per segment (0 when empty).
        std_first, std_second: [S] unbiased std per segment (0 when n < 2).
        segment_uses_second: [S] bool (False for empty segments).
        statistics: logged scalars (0-dim tensors): ``s_mean``, ``t_mean`` (means over segments with
            n >= 1 of mean_first / mean_second), ``s_std``, ``t_std`` (over segments with n >= 2),
            ``t_ratio`` (fraction of segments using the second network), each averaged within an
            image then over the images that have such segments; 0 when no image has any.
    """

    costs: Tensor
    uses_second: Tensor
    segment_count: Tensor
    segment_image: Tensor
    mean_first: Tensor
    mean_second: Tensor
    std_first: Tensor
    std_second: Tensor
    segment_uses_second: Tensor
    statistics: dict[str, Tensor]


def _per_image_then_batch_mean(values: Tensor, include: Tensor, image: Tensor, num_images: int) -> Tensor:
    """Mean of ``values`` over included segments within each image, then over images having any."""
    weights = include.to(values.dtype)
    sums = values.new_zeros(num_images).index_add_(0, image, values * weights)
    counts = values.new_zeros(num_images).index_add_(0, image, weights)
    has_any = counts > 0
    per_image = sums / counts.clamp(min=1)
    num_images_with_any = has_any.to(values.dtype).sum()
    return (per_image * has_any.to(values.dtype)).sum() / num_images_with_any.clamp(min=1)


def choose_costs_std_mean(costs_first: Tensor, costs_second: Tensor, pre: PreAssignment) -> CoLADChoice:
    """Chooses, per (image, GT, level), the network whose candidate costs vary more relative to their mean.

    Args:
        costs_first: [P] costs from network 1 ("student" slot), ordered like the pre-positives.
        costs_second: [P] costs from network 2 ("teacher" slot).
        pre: the shared pre-assignment.

    Returns:
        :class:`CoLADChoice`.

    Example (one segment, n = 3): first = (1, 2, 3) -> mu 2, sigma 1, ratio 0.5; second = (2, 2, 5)
    -> mu 3, sigma sqrt(3) = 1.73, ratio 0.577 >= 0.5 -> the second network's costs are used.
    """
    if costs_first.shape != costs_second.shape:
        raise ValueError(
            f"choose_costs_std_mean: costs shapes differ {tuple(costs_first.shape)} vs {tuple(costs_second.shape)}"
        )
    device = costs_first.device
    num_segments = pre.num_gts * pre.num_levels
    num_images = len(pre.num_gts_per_image)
    first = costs_first.float()
    second = costs_second.float()
    segment = pre.segment()  # [P]

    count = torch.zeros(num_segments, dtype=torch.long, device=device).index_add_(
        0, segment, torch.ones_like(segment)
    )  # [S]
    count_float = count.to(first.dtype)
    safe_count = count_float.clamp(min=1)
    mean_first = first.new_zeros(num_segments).index_add_(0, segment, first) / safe_count  # [S]
    mean_second = second.new_zeros(num_segments).index_add_(0, segment, second) / safe_count
    squares_first = first.new_zeros(num_segments).index_add_(
        0, segment, (first - mean_first[segment]).square()
    )
    squares_second = second.new_zeros(num_segments).index_add_(
        0, segment, (second - mean_second[segment]).square()
    )
    unbiased = (count_float - 1).clamp(min=1)
    several = count >= 2
    std_first = torch.where(several, (squares_first / unbiased).sqrt(), torch.zeros_like(squares_first))
    std_second = torch.where(several, (squares_second / unbiased).sqrt(), torch.zeros_like(squares_second))

    # Coefficient of variation; a zero mean gives 0/0 = NaN, which (like the reference's
    # comparison) never selects the second network.
    ratio_first = std_first / mean_first
    ratio_second = std_second / mean_second
    by_spread = several & (ratio_second >= ratio_first)
    by_mean = (count == 1) & (mean_second < mean_first)
    segment_uses_second = by_spread | by_mean  # [S]
    uses_second = segment_uses_second[segment]  # [P]
    chosen = torch.where(uses_second, second, first)

    gt_image = pre.gt_image_index()  # [G_total]
    segment_image = gt_image.repeat_interleave(pre.num_levels)  # [S]
    present = count >= 1
    statistics = {
        "s_mean": _per_image_then_batch_mean(mean_first, present, segment_image, num_images),
        "t_mean": _per_image_then_batch_mean(mean_second, present, segment_image, num_images),
        "s_std": _per_image_then_batch_mean(std_first, several, segment_image, num_images),
        "t_std": _per_image_then_batch_mean(std_second, several, segment_image, num_images),
        "t_ratio": _per_image_then_batch_mean(
            segment_uses_second.to(first.dtype), present, segment_image, num_images
        ),
    }
    return CoLADChoice(
        costs=chosen,
        uses_second=uses_second,
        segment_count=count,
        segment_image=segment_image,
        mean_first=mean_first,
        mean_second=mean_second,
        std_first=std_first,
        std_second=std_second,
        segment_uses_second=segment_uses_second,
        statistics=statistics,
    )
