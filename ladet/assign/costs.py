"""PAA anchor cost of every pre-positive (docs/algorithms.md §1.5 B).

    cost(a) = sum_c FL(score_{a,c}, onehot(k)_c) + box_weight * (1 - GIoU(decode(anchor_a, delta_a), box_g))

Computed without gradient, in fp32 (fp16 costs create ties in the top-k and the GMM, §8.4), and
only for the P pre-positives of the batch (a few hundred rows instead of B*N).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ladet.assign.inference import inference_internals
from ladet.assign.max_iou import PreAssignment
from ladet.assign.segments import scalar_tensor, segment_topk_candidates
from ladet.boxes import aligned_giou
from ladet.models.box_coder import DeltaBoxCoder
from ladet.models.outputs import HeadOutputs

__all__ = [
    "anchor_costs",
    "candidate_costs",
    "candidate_costs_and_indices",
    "background_focal_sum",
    "label_focal_term",
    "summed_focal_cost",
    "BoxDecoder",
]


class BoxDecoder(Protocol):
    """What the cost needs from a box coder (``ladet.models.box_coder.DeltaBoxCoder``)."""

    def decode(self, anchors: Tensor, deltas: Tensor, max_shape: Tensor | None = None) -> Tensor: ...


class _HasAnchors(Protocol):
    anchors: Tensor


def background_focal_sum(
    class_scores: Tensor, scores_are_probabilities: bool, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """[M, C] -> [M]: sum over ALL classes of the target-0 focal term (1 - alpha) p^gamma (-log(1 - p)).

    One fused pass (exp, log, power, product, sum) instead of the ~15 passes of the element-wise
    focal loss: -log(1 - sigmoid(z)) = softplus(z) = log(1 + e^z) for logits (exp clamped at z = 30,
    the excess added back linearly), log clamped at -100 for probabilities (as
    ``F.binary_cross_entropy``).
    """
    return _background_focal_sum(class_scores, scores_are_probabilities, alpha, gamma, reuse_input=False)


def _background_focal_sum(
    class_scores: Tensor, scores_are_probabilities: bool, alpha: float, gamma: float, reuse_input: bool
) -> Tensor:
    """:func:`background_focal_sum`; with ``reuse_input`` (logits only) the [M, C] input, a temporary
    of the caller, is overwritten with the overflow term instead of allocating a third [M, C] buffer
    (same operations, same values)."""
    negative_weight = (1.0 - alpha) if alpha >= 0 else 1.0
    if scores_are_probabilities:
        probability = class_scores.clamp(0.0, 1.0)
        negative_log = torch.log1p(-probability).clamp_(min=-100.0).neg_()  # [M, C]
        powered = probability.pow(gamma)
    else:
        dtype = class_scores.dtype
        exponential = class_scores.clamp(max=30.0).exp_()  # [M, C]
        denominator = exponential + scalar_tensor(1.0, dtype)
        powered = exponential.div_(denominator)  # sigmoid(z)
        thirty = scalar_tensor(30.0, dtype)
        excess = class_scores.sub_(thirty) if reuse_input else class_scores - thirty  # [M, C]
        # (z - 30)^+ + log(1 + e^min(z, 30)) (the sum in either order: IEEE addition commutes)
        negative_log = excess.clamp_(min=0.0).add_(denominator.log_())
        powered = powered.square_() if gamma == 2.0 else powered.pow_(gamma)
    summed = powered.mul_(negative_log).sum(dim=1)  # [M]
    return summed.mul_(scalar_tensor(negative_weight, summed.dtype))


def label_focal_term(
    label_scores: Tensor,
    target: float,
    scores_are_probabilities: bool,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> Tensor:
    """[M] scores of the GT class -> [M] focal term for target ``target`` (1.0 or 0.0).

    Bit for bit ``focal_loss(scores[:, None], full(target))[:, 0]`` (element-wise, so any subset
    gives the same values), in about half the element-wise passes: ``focal_loss`` with a constant
    target t in {0, 1} spends most of its passes on terms that are
    exact identities in IEEE arithmetic for scores p in [0, 1]: p_t = p * t + (1 - p) * (1 - t) is
    p (t = 1) or 1 - p (t = 0), and the alpha weight is float32(alpha) or float32(1 - alpha). The
    remaining operations (sigmoid, the library's cross-entropy, the power, the products) are the
    same calls in the same order, so the values are identical (tested against ``focal_loss``).
    """
    if scores_are_probabilities:
        with torch.autocast(device_type=label_scores.device.type, enabled=False):
            probability = label_scores.float()
            cross_entropy = F.binary_cross_entropy(
                probability, torch.full_like(probability, target), reduction="none"
            )
    else:
        probability = torch.sigmoid(label_scores)
        # F.binary_cross_entropy_with_logits(z, t) evaluates (1 - t) * z - log_sigmoid(z); for a
        # constant t in {0, 1} the factor 1 - t is exactly 0 or 1 (and 1 * z = z), so the same
        # value in two passes instead of five, without the target tensor (tested bit for bit,
        # sign of zero included, against the library call).
        # (z - log_sigmoid(z) as -log_sigmoid(z) + z: x - y = (-y) + x exactly)
        if target == 1.0:
            cross_entropy = (label_scores * scalar_tensor(0.0, label_scores.dtype)).sub_(
                F.logsigmoid(label_scores)
            )
        else:
            cross_entropy = F.logsigmoid(label_scores).neg_().add_(label_scores)
    # 1 - p_t, written as focal_loss evaluates it: (1 - p) for t = 1, 1 - (1 - p) for t = 0; as
    # (-p) + 1 in place where p is this function's own sigmoid (1 - p = (-p) + 1 exactly).
    one = scalar_tensor(1.0, probability.dtype)
    if scores_are_probabilities:  # (probability may be the caller's tensor: not overwritten)
        complement = one - probability if target == 1.0 else one - (one - probability)
    elif isinstance(one, Tensor):  # (float32 / float64: one - p straight into p's buffer)
        complement = torch.sub(one, probability, out=probability)
        if target != 1.0:
            complement = torch.sub(one, complement, out=complement)
    else:
        complement = probability.neg_().add_(one)
        if target != 1.0:
            complement = complement.neg_().add_(one)
    # The intermediates are this function's own: the products are taken in place.
    loss = cross_entropy.mul_(complement.pow_(gamma))
    if alpha >= 0:
        loss = loss.mul_(scalar_tensor(alpha if target == 1.0 else 1 - alpha, loss.dtype))
    return loss


def summed_focal_cost(
    class_scores: Tensor,
    labels: Tensor,
    scores_are_probabilities: bool,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> Tensor:
    """sum_c FL(score_c, onehot(label)_c) per row, without building the one-hot target.

    Written as (sum over all classes of the target-0 term) + (target-1 term - target-0 term) at the
    label. Matches ``focal_loss(scores, one_hot).sum(-1)`` to float rounding.

    Args:
        class_scores: [P, C] fp32 logits or probabilities.
        labels: [P] long class of each row (0..C-1).
        scores_are_probabilities: selects the probability form (IOP / COP heads).

    Returns:
        [P] fp32.
    """
    label_scores = class_scores.gather(1, labels[:, None])[:, 0]  # [P]
    positive = label_focal_term(label_scores, 1.0, scores_are_probabilities, alpha, gamma)
    negative = label_focal_term(label_scores, 0.0, scores_are_probabilities, alpha, gamma)
    return background_focal_sum(class_scores, scores_are_probabilities, alpha, gamma) + (positive - negative)


def _gather_coordinate_major(rows: Tensor, index: Tensor) -> Tensor:
    """[R, 4] rows, [P] index -> [4, P] contiguous: rows[index] transposed, in one gather.

    Element-wise ops on the columns of a [P, 4] tensor (or on [P, 2] halves) run with an inner
    loop of 1-2 elements and cost ~10x a contiguous row; a transposing gather costs about as much
    as the plain row gather, and every later op then works on contiguous [2, P] / [4, P] rows.
    """
    return torch.gather(rows.t(), 1, index.expand(rows.shape[1], -1))


def _gather_coordinate_major_into(out: Tensor, rows: Tensor, index: Tensor) -> Tensor:
    """:func:`_gather_coordinate_major` written into ``out`` ([4, P], contiguous), cast to its dtype."""
    if rows.dtype == out.dtype:
        return torch.gather(rows.t(), 1, index.expand(rows.shape[1], -1), out=out)
    return out.copy_(_gather_coordinate_major(rows, index))


def _box_term(
    outputs: HeadOutputs,
    grid: _HasAnchors,
    box_coder: BoxDecoder,
    pre: PreAssignment,
    flat: Tensor,
    box_weight: float,
) -> Tensor:
    """[P] box_weight * (1 - GIoU(decoded prediction, GT)), the box part of the cost.

    For a :class:`DeltaBoxCoder` the decode and the GIoU are evaluated in coordinate-major layout
    ([4, P] rows instead of [P, 4] columns), with the same element-wise operations in the same
    order as ``DeltaBoxCoder.decode`` and ``ladet.boxes.aligned_giou``: the values are identical
    (tested). Other box coders go through their own ``decode`` and ``aligned_giou``.

    Args:
        flat: [P] long image * N + anchor index of every pre-positive.
    """
    box_deltas = outputs.box_deltas.reshape(-1, 4)  # [B*N, 4]
    if getattr(type(box_coder), "decode", None) is not DeltaBoxCoder.decode:  # custom decode
        deltas = box_deltas.index_select(0, flat).float()  # [P, 4]
        anchors = grid.anchors.index_select(0, pre.anchor_index).float()  # [P, 4]
        decoded = box_coder.decode(anchors, deltas)  # [P, 4]
        return box_weight * (1.0 - aligned_giou(decoded, pre.box_targets.float()))
    assert isinstance(box_coder, DeltaBoxCoder)
    num_boxes = flat.shape[0]
    # corners[side, box, axis, P]: side 0 = top-left, 1 = bottom-right; box 0 = decoded prediction,
    # 1 = GT, 2 and 3 = intersection and enclosing box. One buffer, so that the widths / heights of
    # all four boxes come out of one subtraction and the four corner maxima / minima of the GIoU
    # out of two calls (see below).
    corners = torch.empty((2, 4, 2, num_boxes), dtype=torch.float32, device=flat.device)
    # The deltas and the anchors are gathered into the intersection / enclosing slots (a contiguous
    # [4, P] block per side), which the decode has consumed by the time the GIoU writes them.
    deltas = _gather_coordinate_major_into(
        corners[0, 2:].view(4, num_boxes), box_deltas, flat
    )  # (dx, dy, dw, dh)
    anchors = _gather_coordinate_major_into(
        corners[1, 2:].view(4, num_boxes), grid.anchors, pre.anchor_index
    )  # [4, P] (x1, y1, x2, y2)
    # GT corners: [P, 4] viewed as [side, axis, P] (a strided view) and copied into the buffer
    # (this 3-d copy runs ~4x faster than the 2-d transposing copy of ``.t().contiguous()``).
    corners[:, 1].copy_(pre.box_targets.reshape(-1, 2, 2).permute(1, 2, 0))
    # -- decode (DeltaBoxCoder.decode) --
    std_x, std_y, std_w, std_h = box_coder.stds
    if std_x == std_y and std_w == std_h:  # (the default) two scalar products, no [4] tensor to build
        scaled = deltas.view(2, 2, num_boxes)
        scaled[0].mul_(scalar_tensor(std_x, deltas.dtype))
        scaled[1].mul_(scalar_tensor(std_w, deltas.dtype))
        scaled = deltas
    else:
        scaled = deltas.mul_(deltas.new_tensor(box_coder.stds)[:, None])  # [4, P]
    scaled_size = scaled[2:].clamp_(min=-box_coder.max_log_ratio, max=box_coder.max_log_ratio)  # (dw, dh)
    # (in place in the gathered anchors: (x2, y2) become the size, (x1, y1) the centre)
    anchor_size = anchors[2:].sub_(anchors[:2])  # [2, P] (width, height)
    top_left, bottom_right = corners.unbind(0)  # [4, 2, P] each
    # (the half size lives in the prediction's bottom-right slot, which the last addition overwrites)
    anchor_half_size = torch.mul(scalar_tensor(0.5, anchor_size.dtype), anchor_size, out=bottom_right[0])
    centre = anchors[:2].add_(anchor_half_size).add_(anchor_size.mul_(scaled[:2]))  # [2, P]
    half_size = anchor_half_size.mul_(scaled_size.exp_())  # [2, P]
    torch.sub(centre, half_size, out=top_left[0])
    torch.add(centre, half_size, out=bottom_right[0])
    # -- GIoU (ladet.boxes.aligned_giou) --
    # max(prediction, GT) per side is the intersection's top-left (side 0) and the enclosing box's
    # bottom-right (side 1); min(...) the enclosing top-left and the intersection bottom-right. Each
    # is written, in one call, through a view whose side stride also steps from box 2 to box 3 (or
    # back): [side, axis, P] with strides (side + box, P, 1) resp. (side - box, P, 1).
    side_stride, box_stride = corners.stride(0), corners.stride(1)
    view_shape = (2, 2, num_boxes)
    maxima = corners.as_strided(
        view_shape, (side_stride + box_stride, num_boxes, 1), corners.storage_offset() + 2 * box_stride
    )
    minima = corners.as_strided(
        view_shape, (side_stride - box_stride, num_boxes, 1), corners.storage_offset() + 3 * box_stride
    )
    prediction, ground_truth = corners[:, 0], corners[:, 1]  # [side, axis, P]
    torch.maximum(prediction, ground_truth, out=maxima)
    torch.minimum(prediction, ground_truth, out=minima)
    # Widths / heights written over the top-left corners (no longer needed): no new [4, 2, P] buffer.
    sizes = torch.sub(bottom_right, top_left, out=top_left).clamp_(min=0)  # [4, 2, P]
    areas = torch.mul(
        sizes[:, 0], sizes[:, 1], out=bottom_right[:, 0]
    )  # [4, P] (prediction, GT, overlap, enclosing)
    prediction_area, gt_area, overlap, enclosing = areas.unbind(0)
    eps = 1e-6  # aligned_giou's default
    # (each [P] result over an area row that is no longer needed)
    union = torch.add(prediction_area, gt_area, out=prediction_area).sub_(overlap).clamp_(min=eps)
    iou = torch.div(overlap, union, out=gt_area)
    enclosing = enclosing.clamp_(min=eps)
    giou = iou.sub_(torch.sub(enclosing, union, out=overlap).div_(enclosing))
    # box_weight * (1 - GIoU), in place (the product commutes)
    return torch.sub(scalar_tensor(1.0, giou.dtype), giou, out=giou).mul_(
        scalar_tensor(box_weight, giou.dtype)
    )


@torch.no_grad()
def anchor_costs(
    outputs: HeadOutputs,
    grid: _HasAnchors,
    box_coder: BoxDecoder,
    pre: PreAssignment,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    box_weight: float = 1.3,
) -> Tensor:
    """Per-pre-positive PAA cost.

    Args:
        outputs: head outputs; ``class_scores`` [B, N, C] (logits, or probabilities when
            ``class_scores_are_probabilities``), ``box_deltas`` [B, N, 4]. Read under no_grad, cast
            to fp32.
        grid: anything with ``anchors`` [N, 4] (an ``AnchorGrid``).
        box_coder: decodes (anchors [P, 4], deltas [P, 4]) -> boxes [P, 4], without clipping.
        pre: the pre-assignment (image_index, anchor_index, labels, box_targets per pre-positive).
        focal_alpha, focal_gamma: focal-loss parameters (0.25, 2).
        box_weight: weight of the (1 - GIoU) term (1.3).

    Returns:
        [P] fp32 costs, ordered like the pre-positives.
    """
    num_anchors, num_classes = outputs.class_scores.shape[1:]
    flat = pre.image_index * num_anchors + pre.anchor_index  # [P]
    class_scores = outputs.class_scores.reshape(-1, num_classes).index_select(0, flat).float()  # [P, C]
    classification = summed_focal_cost(
        class_scores, pre.labels, outputs.class_scores_are_probabilities, focal_alpha, focal_gamma
    )  # [P]
    return classification + _box_term(outputs, grid, box_coder, pre, flat, box_weight)


@inference_internals
def candidate_costs(
    outputs: HeadOutputs,
    grid: _HasAnchors,
    box_coder: BoxDecoder,
    pre: PreAssignment,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    box_weight: float = 1.3,
    topk: int = 9,
) -> Tensor:
    """The costs :func:`anchor_costs` gives, but only where they can matter to PAA: +inf for every
    pre-positive that cannot be among the ``topk`` lowest costs of its (GT, level).

    The [P, C] focal sum dominates the cost. Dropping the non-negative sum over the other classes
    gives a cheap lower bound ``lower = FL(score_k, 1) + box term``. Per (GT, level): exact costs
    for a superset of the ``topk`` lowest bounds (at least min(topk, size) members, from the bucket
    pre-filter ``segment_topk_candidates``); T = the largest of those exact costs (>= the true k-th
    lowest cost); exact costs for every other member whose bound is <= T (plus a rounding margin). A
    member left out has cost >= bound > T, so it is not in the top k (ties included). The exact
    costs are computed with the same operations as :func:`anchor_costs`, so the PAA selection is
    unchanged. Not for CoLAD, which needs the costs of all candidates (means and stds).

    Returns:
        [P] fp32, +inf where the cost was not needed.
    """
    return candidate_costs_and_indices(
        outputs, grid, box_coder, pre, focal_alpha, focal_gamma, box_weight, topk
    )[0]


@inference_internals
def candidate_costs_and_indices(
    outputs: HeadOutputs,
    grid: _HasAnchors,
    box_coder: BoxDecoder,
    pre: PreAssignment,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    box_weight: float = 1.3,
    topk: int = 9,
) -> tuple[Tensor, Tensor]:
    """:func:`candidate_costs` and the [F'] distinct indices of the costs it computed (in no
    particular order): every other cost is +inf, so the selection needs only those
    (``ladet.assign.paa`` uses them to skip a pass over all P costs).

    Returns:
        ([P] fp32 costs, [F'] long indices).
    """
    num_anchors, num_classes = outputs.class_scores.shape[1:]
    probabilities = outputs.class_scores_are_probabilities
    # (integer index arithmetic as one fused multiply-add each: torch.add(x, y, alpha=a) = x + a * y)
    flat = torch.add(pre.anchor_index, pre.image_index, alpha=num_anchors)  # [P] image * N + anchor
    scores = outputs.class_scores.reshape(-1, num_classes)  # [B*N, C]
    label_index = torch.add(pre.labels, flat, alpha=num_classes)  # [P] into the flat [B*N*C] scores
    label_scores = scores.reshape(-1).index_select(0, label_index).float()  # [P]
    label_positive = label_focal_term(label_scores, 1.0, probabilities, focal_alpha, focal_gamma)  # [P]
    box_term = _box_term(outputs, grid, box_coder, pre, flat, box_weight)  # [P]
    # NaN bounds (NaN GT-class score or box) never prune: +inf sorts them last, they get exact costs
    # only through the second pass's "threshold +inf" rule below.
    lower = (label_positive + box_term).nan_to_num_(
        nan=float("inf"), posinf=float("inf"), neginf=-float("inf")
    )
    num_segments = pre.num_gts * pre.num_levels
    segment = torch.add(pre.level, pre.gt_global, alpha=pre.num_levels)  # [P] gt_global * L + level

    def exact(indices: Tensor) -> Tensor:
        """[M] pre-positive indices -> [M] costs, with anchor_costs' operations."""
        rows = scores.index_select(0, flat.index_select(0, indices)).float()  # [M, C], a temporary
        background = _background_focal_sum(rows, probabilities, focal_alpha, focal_gamma, reuse_input=True)
        positive = label_positive.index_select(0, indices)
        negative = label_focal_term(
            label_scores.index_select(0, indices), 0.0, probabilities, focal_alpha, focal_gamma
        )
        # (background + (positive - negative)) + box, in the fresh [M] buffers
        return background.add_(positive.sub_(negative)).add_(box_term.index_select(0, indices))

    costs = torch.full_like(lower, float("inf"))
    # The first set needs no order: any set holding min(topk, size) members of every segment gives
    # a valid threshold; the bucket pre-filter's superset (~6 % more rows than the exact top-k of
    # the bounds, ~15 % fewer second-pass rows) skips the segmented sort.
    first = segment_topk_candidates(segment, lower, topk, num_segments=num_segments)  # host sync (size)
    first_costs = exact(first)
    costs.index_copy_(0, first, first_costs)
    threshold = torch.full((num_segments,), -float("inf"), device=lower.device)
    # A NaN exact cost leaves its segment's k-th cost unknown: no pruning there (threshold +inf).
    threshold.scatter_reduce_(
        0, segment.index_select(0, first), first_costs.nan_to_num(nan=float("inf")), reduce="amax"
    )
    # rounding margin 1e-5 * (1 + |T|): a few extra rows at most
    margin = (
        threshold.abs().add_(scalar_tensor(1.0, threshold.dtype)).mul_(scalar_tensor(1e-5, threshold.dtype))
    )
    threshold = threshold.add_(margin)
    # "lower <= +inf" would also take the +inf bounds: the largest finite number takes every finite one.
    threshold = threshold.nan_to_num_(nan=float("inf"), posinf=torch.finfo(threshold.dtype).max)
    second_mask = lower <= threshold.index_select(0, segment)  # [P]
    second_mask.index_fill_(0, first, False)  # already exact
    second = torch.nonzero(second_mask).flatten()  # host sync (size)
    if second.numel() == 0:
        return costs, first
    costs.index_copy_(0, second, exact(second))
    return costs, torch.cat([first, second])
