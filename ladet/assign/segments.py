"""Segmented sorting helpers: rank of each element inside its (GT, level) or GT segment.

A segment is a run of equal integer keys after sorting; the composite sort replaces the
reference's per-GT Python loop of masked selections + ``topk``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["float32_order_key", "stable_order", "rank_in_segments", "segment_topk_mask"]


def float32_order_key(values: Tensor) -> Tensor:
    """[M] float32 -> [M] int64 in [0, 2^32) ordered like the values (IEEE-754 bit trick).

    Non-negative floats keep their bit pattern order; negative ones have their magnitude bits
    inverted. -0.0 sorts just before +0.0; +inf after every finite value.
    """
    bits = values.contiguous().view(torch.int32).long()
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits) + 2**31


def stable_order(primary: Tensor, secondary: Tensor) -> Tensor:
    """Permutation sorting by (primary, secondary, original index).

    Args:
        primary: [M] non-negative long (segment ids).
        secondary: [M] values without NaN. float32 values are packed with ``primary`` into one int64
            key (one sort); other dtypes use two stable sorts.
    """
    if secondary.dtype == torch.float32:
        key = primary * 2**32 + float32_order_key(secondary)
        return torch.sort(key, stable=True).indices
    by_secondary = torch.sort(secondary, stable=True).indices
    by_primary = torch.sort(primary[by_secondary], stable=True).indices
    return by_secondary[by_primary]


def rank_in_segments(sorted_keys: Tensor) -> Tensor:
    """[M] keys sorted so that equal keys are contiguous -> [M] position of each element in its run.

    Example:
        >>> rank_in_segments(torch.tensor([3, 3, 5, 7, 7, 7])).tolist()
        [0, 1, 0, 0, 1, 2]
    """
    positions = torch.arange(sorted_keys.shape[0], device=sorted_keys.device)
    starts = torch.ones_like(sorted_keys, dtype=torch.bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    run_start = torch.where(starts, positions, torch.zeros_like(positions)).cummax(dim=0).values
    return positions - run_start


def segment_topk_mask(segment: Tensor, values: Tensor, topk: int) -> Tensor:
    """[M] bool: the ``topk`` smallest values of every segment (ties -> lower original index).

    Args:
        segment: [M] non-negative long segment id.
        values: [M] values without NaN (use +inf for "never").
    """
    order = stable_order(segment, values)  # [M]
    rank = rank_in_segments(segment.index_select(0, order))
    chosen = torch.zeros_like(segment, dtype=torch.bool)
    chosen[order] = rank < topk
    return chosen
