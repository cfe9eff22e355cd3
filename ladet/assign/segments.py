"""Segmented sorting helpers: rank of each element inside its (GT, level) or GT segment.

A segment is a run of equal integer keys after sorting; the composite sort replaces the
reference's per-GT Python loop of masked selections + ``topk``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "float32_order_key",
    "stable_order",
    "order_with_tiebreak",
    "rank_in_segments",
    "segment_topk_mask",
    "segment_topk_indices",
    "segment_topk_candidates",
    "scalar_tensor",
]

_SCALARS: dict[tuple[float, torch.dtype], Tensor] = {}


def scalar_tensor(value: float, dtype: torch.dtype) -> Tensor | float:
    """``value`` for tensor-scalar arithmetic on ``dtype`` tensors: a cached 0-dim CPU tensor for
    float32 / float64, the Python number itself for every other dtype.

    An operation with a Python number first converts the wrapped number (one more dispatched copy
    per call, ~3 us on CPU: more than the arithmetic on a few thousand elements); a 0-dim tensor
    of the tensor's dtype skips it. For float32 / float64 the values are the same (the number is
    rounded to that dtype either way; tested); reduced-precision dtypes compute with the number in
    float32, so they keep the number. A CPU 0-dim tensor combines with tensors on any device.
    """
    if dtype not in (torch.float32, torch.float64):
        return value
    key = (value, dtype)
    scalar = _SCALARS.get(key)
    if scalar is None:
        with torch.inference_mode(False):  # a normal tensor, usable in and out of inference mode
            scalar = _SCALARS[key] = torch.tensor(value, dtype=dtype)
    return scalar


def float32_order_key(values: Tensor) -> Tensor:
    """[M] float32 -> [M] int64 in [0, 2^32) ordered like the values (IEEE-754 bit trick).

    Non-negative floats keep their bit pattern order; negative ones have their magnitude bits
    inverted. -0.0 sorts just before +0.0; +inf after every finite value.
    """
    return _signed_order_key(values).long() + 2**31


def _signed_order_key(values: Tensor) -> Tensor:
    """[M] float32 -> [M] int32 in [-2^31, 2^31) ordered like the values (``float32_order_key`` - 2^31)."""
    bits = values.contiguous().view(torch.int32)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def stable_order(primary: Tensor, secondary: Tensor) -> Tensor:
    """Permutation sorting by (primary, secondary, original index).

    Args:
        primary: [M] non-negative long (segment ids).
        secondary: [M] values without NaN. float32 values are packed with ``primary`` into one int64
            key (one sort); other dtypes use two stable sorts.
    """
    if secondary.dtype == torch.float32:
        # primary * 2^32 + a signed 32-bit key: the ranges of two primaries never overlap, so this
        # orders like (primary, value) without the unsigned key's shift (int32 + int64 -> int64).
        key = torch.add(_signed_order_key(secondary), primary, alpha=2**32)
        return torch.sort(key, stable=True).indices
    by_secondary = torch.sort(secondary, stable=True).indices
    by_primary = torch.sort(primary[by_secondary], stable=True).indices
    return by_secondary[by_primary]


def order_with_tiebreak(
    primary: Tensor, secondary: Tensor, tiebreak: Tensor, num_primary: int, tiebreak_bound: int
) -> Tensor:
    """Permutation sorting by (primary, secondary, tiebreak), whatever the input order.

    :func:`stable_order` of the elements rearranged by ascending ``tiebreak``, without that
    rearrangement when it fits in one int64 key: for float32 values with
    ``num_primary * 2^32 * 2^bits(tiebreak_bound - 1) <= 2^63`` the three are packed into one
    unique key, primary * 2^(32 + b) + signed 32-bit value key * 2^b + tiebreak (one sort, as
    ``stable_order``'s packed key with the tiebreak as its last digit). Otherwise (other dtypes,
    larger sizes) the elements are sorted by ``tiebreak`` first.

    Args:
        primary: [M] long in [0, num_primary).
        secondary: [M] values (-0.0 before +0.0 for float32, as ``stable_order``); a NaN keeps
            its primary but takes an unspecified place inside it (callers give those a primary
            of their own, whose order does not matter).
        tiebreak: [M] distinct long in [0, tiebreak_bound).
        num_primary, tiebreak_bound: host-side bounds (no host sync).
    """
    bits = max(tiebreak_bound - 1, 0).bit_length()
    if secondary.dtype == torch.float32 and num_primary << (32 + bits) <= 1 << 63:
        key = torch.add(tiebreak, primary, alpha=1 << (32 + bits))
        key = torch.add(key, _signed_order_key(secondary), alpha=1 << bits)  # [M] unique
        return torch.sort(key).indices
    by_tiebreak = torch.sort(tiebreak).indices
    return by_tiebreak.index_select(
        0, stable_order(primary.index_select(0, by_tiebreak), secondary.index_select(0, by_tiebreak))
    )


def rank_in_segments(sorted_keys: Tensor) -> Tensor:
    """[M] keys sorted so that equal keys are contiguous -> [M] position of each element in its run.

    Example:
        >>> rank_in_segments(torch.tensor([3, 3, 5, 7, 7, 7])).tolist()
        [0, 1, 0, 0, 1, 2]
    """
    positions = torch.arange(sorted_keys.shape[0], device=sorted_keys.device)
    # Start of a run: a key unlike its predecessor. (The wrap-around comparison of element 0 with
    # the last one does not matter: position 0 times either flag is 0.)
    starts = sorted_keys != sorted_keys.roll(1)
    run_start = positions.mul(starts).cummax(dim=0).values  # position of the current run's start
    return positions - run_start


def segment_topk_mask(
    segment: Tensor, values: Tensor, topk: int, num_buckets: int = 64, num_segments: int | None = None
) -> Tensor:
    """[M] bool: the ``topk`` smallest values of every segment (ties -> lower original index).

    The mask form of :func:`segment_topk_indices` (same arguments).
    """
    chosen = torch.zeros_like(segment, dtype=torch.bool)
    chosen[segment_topk_indices(segment, values, topk, num_buckets, num_segments)] = True
    return chosen


def segment_topk_indices(
    segment: Tensor, values: Tensor, topk: int, num_buckets: int = 64, num_segments: int | None = None
) -> Tensor:
    """Indices of the ``topk`` smallest values of every segment (ties -> lower original index).

    Sorting all M values is the slow part (a comparison sort, ~40 ns per element on CPU), so a
    linear-time pass first drops the values that cannot be in their segment's top k: every
    segment's finite range [min, max] is cut into ``num_buckets`` equal buckets (+inf in one extra
    bucket), the buckets are counted, and only the values in buckets up to the one that reaches k
    members are kept. The bucket index is a monotone function of the value inside a segment, so a
    value that is kept has every smaller (or equal) value of its segment kept too, and a dropped
    value is larger than at least k kept ones: the ranks of the kept values are exact. Only the
    kept values are then sorted (by segment, value, original index).

    Args:
        segment: [M] non-negative long segment id.
        values: [M] float values without NaN (use +inf for "never").
        topk: values kept per segment.
        num_buckets: buckets per segment of the pre-filter.
        num_segments: an upper bound of ``segment.max() + 1`` when the caller knows one (saves a
            host sync); computed from ``segment`` when None.

    Returns:
        [K] long indices into ``segment``, sorted by (segment, value, index); K <= topk per segment.
    """
    candidates = segment_topk_candidates(segment, values, topk, num_buckets, num_segments)  # [M'] ascending
    if candidates.numel() == 0:
        return candidates
    kept_segment = segment.index_select(0, candidates)
    order = stable_order(kept_segment, values.index_select(0, candidates))  # [M']
    rank = rank_in_segments(kept_segment.index_select(0, order))
    return candidates.index_select(0, order.index_select(0, torch.nonzero(rank < topk).flatten()))


def segment_topk_candidates(
    segment: Tensor, values: Tensor, topk: int, num_buckets: int = 64, num_segments: int | None = None
) -> Tensor:
    """Ascending indices of a superset of every segment's ``topk`` smallest values, without a sort.

    The linear-time pre-filter of :func:`segment_topk_indices`: every segment keeps at least
    ``min(topk, segment size)`` values, and each kept value has every smaller (or equal) value of its
    segment kept too. One host sync (the result size). Arguments as :func:`segment_topk_indices`.

    Returns:
        [M'] long, ascending; M' >= sum over segments of min(topk, size).
    """
    if segment.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=segment.device)
    if num_segments is None:
        num_segments = int(segment.max()) + 1  # host sync
    return _bucket_prefilter(segment, values, topk, num_buckets, num_segments)


def _ones_like_index(index: Tensor) -> Tensor:
    """[M] long ones as a stride-0 view of one element (a source for ``index_add_``)."""
    return torch.ones(1, dtype=torch.long, device=index.device).expand(index.shape[0])


def _bucket_prefilter(
    segment: Tensor, values: Tensor, topk: int, num_buckets: int, num_segments: int
) -> Tensor:
    """Ascending indices of a superset of every segment's ``topk`` smallest values (one host sync).

    Only the monotonicity of the bucket index inside a segment matters for correctness (rounding
    can merge neighbouring values into one bucket, never swap them), so the arithmetic is done in
    the values' own dtype, with guards that keep every bucket index a number (never NaN).
    """
    info = torch.finfo(values.dtype)
    # Halved values: no difference of two finite values can overflow.
    halves = values * scalar_tensor(0.5, values.dtype)  # [M]
    # Range of the finite values of each segment: +-inf are moved out of the way of amin / amax.
    # (The [M] temporaries share two buffers: halves and workspace.)
    workspace = torch.nan_to_num(halves, posinf=float("inf"), neginf=float("inf"))  # [M]
    low = torch.full((num_segments,), float("inf"), dtype=values.dtype, device=values.device)
    low.scatter_reduce_(0, segment, workspace, reduce="amin")
    torch.nan_to_num(halves, posinf=-float("inf"), neginf=-float("inf"), out=workspace)
    high = torch.full_like(low, -float("inf")).scatter_reduce_(0, segment, workspace, reduce="amax")
    low = low.nan_to_num_(posinf=0.0)  # [S], 0 without finite values (low is finite or +inf)
    # [S]: at least the smallest normal number (-inf for segments without finite values), so that
    # the division below (a multiplication by the reciprocal) never sees 1 / subnormal = inf.
    spread = (high - low).clamp_(min=info.tiny)
    # (buckets - 1) / spread, kept in [tiny, max] so that (v - low) * scale is never 0 * inf:
    # finite values land in [0, buckets - 1] (+ rounding), +inf in +inf, -inf in -inf.
    scale = spread.reciprocal_().mul_(scalar_tensor(num_buckets - 1.0, values.dtype))
    scale = scale.clamp_(min=info.tiny, max=info.max)  # [S]
    position = torch.sub(halves, torch.index_select(low, 0, segment, out=workspace), out=workspace)
    position = position.mul_(torch.index_select(scale, 0, segment, out=halves))  # [M]
    width = num_buckets + 1
    # -inf goes to bucket 0, +inf to the extra last bucket; floor of a non-negative number.
    bucket = position.clamp_(0.0, num_buckets).long()  # [M]
    key = bucket.add_(segment, alpha=width)  # [M] segment * width + bucket
    # Counts per (segment, bucket): an index_add_ of ones (bincount would also find the maximum
    # key first, a host sync on CUDA).
    counts = torch.zeros(num_segments * width, dtype=torch.long, device=segment.device)
    counts.index_add_(0, key, _ones_like_index(segment))
    cumulative = counts.view(num_segments, width).cumsum(dim=1)  # [S, width], ascending rows
    # Last bucket needed per segment: the number of buckets whose cumulative count is still < k,
    # i.e. the first position where it reaches k (a binary search per row; width if never).
    target = torch.full((num_segments, 1), topk, dtype=torch.long, device=segment.device)
    last = torch.searchsorted(cumulative, target).view(num_segments)  # [S]
    # bucket <= last[segment], compared in key space: key <= segment * width + last[segment].
    limit = torch.arange(0, num_segments * width, width, device=segment.device).add_(last)  # [S]
    return torch.nonzero(key <= limit.index_select(0, segment)).flatten()  # host sync
