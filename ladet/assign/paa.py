"""PAA label assignment for a whole batch (docs/algorithms.md §1.5 C-E, §9.2), without loops over GTs.

Pipeline: :func:`~ladet.assign.max_iou.pre_assign` -> :func:`~ladet.assign.costs.anchor_costs` ->
:func:`select_positives` (per-(GT, level) top-k, GMM, separation) -> :func:`build_result`.
LAD calls the same pieces with the teacher's outputs; CoLAD swaps in mixed costs between the
cost and the selection steps.

Policies fixed here (the reference is not deterministic on exact ties, §9.3):
* per-(GT, level) top-k takes the k lowest costs, equal costs ordered by anchor index;
* a GT with fewer than 2 candidates gets no positive ([M2]/[O]);
* a non-finite cost (NaN/inf from a diverged network) is never a candidate: it sorts after every
  finite cost and is excluded from the fit, so other GTs are unaffected;
* the density peak on exact ties is the lowest-cost candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ladet.assign.costs import BoxDecoder, anchor_costs, candidate_costs_and_indices
from ladet.assign.gmm import fit_rows
from ladet.assign.inference import inference_internals
from ladet.assign.max_iou import PreAssignment, pre_assign
from ladet.assign.result import AssignResult
from ladet.assign.segments import order_with_tiebreak, rank_in_segments, scalar_tensor, stable_order
from ladet.config.schema import AssignerConfig
from ladet.models.anchors import AnchorGrid
from ladet.models.outputs import HeadOutputs

__all__ = [
    "PAAAssigner",
    "CandidateRows",
    "build_candidate_rows",
    "separate_positives",
    "select_positives",
    "build_result",
]


@dataclass
class CandidateRows:
    """The candidates of every GT, one row per GT, sorted by ascending cost.

    Attributes:
        costs: [G_total, L*k] float64, +inf on empty slots.
        mask: [G_total, L*k] bool, True on candidates.
        pre_index: [G_total, L*k] long, index of the candidate in the pre-positive list, -1 on empty slots.
        count: [G_total] long, number of candidates.
    """

    costs: Tensor
    mask: Tensor
    pre_index: Tensor
    count: Tensor


def build_candidate_rows(costs: Tensor, pre: PreAssignment, topk: int = 9) -> CandidateRows:
    """Per-(GT, level) top-k lowest costs (§1.5 C), gathered into one ascending row per GT.

    Args:
        costs: [P] costs of the pre-positives (ordered by (image, anchor), as ``pre``).
        pre: the pre-assignment.
        topk: candidates kept per (GT, level).
    """
    # Non-finite costs are never candidates: drop them first (one host sync: data-dependent size).
    # (|cost| < inf is isfinite in two light passes; torch.isfinite costs ~3x more on CPU)
    is_finite = costs.abs() < scalar_tensor(float("inf"), costs.dtype)
    finite = torch.nonzero(is_finite).flatten()  # [F] pre-positive indices, ascending
    return _rows_of(costs.index_select(0, finite), finite, None, pre, topk)


def _candidate_rows_of(costs: Tensor, computed: Tensor, pre: PreAssignment, topk: int) -> CandidateRows:
    """:func:`build_candidate_rows` when every cost outside ``computed`` is +inf.

    ``candidate_costs`` knows which costs it computed ([F'] distinct indices, in any order): the
    rows then only look at those, not at all P costs (no [P] finiteness pass and compaction, and
    no host sync: the non-finite ones among them are set aside in the sort, not dropped).
    """
    computed_costs = costs.index_select(0, computed)  # [F']
    is_finite = computed_costs.abs() < scalar_tensor(float("inf"), costs.dtype)
    return _rows_of(computed_costs, computed, is_finite, pre, topk)


def _rows_of(
    values: Tensor, indices: Tensor, is_finite: Tensor | None, pre: PreAssignment, topk: int
) -> CandidateRows:
    """The rows of :func:`build_candidate_rows` from the costs that may be candidates.

    Args:
        values: [F] costs.
        indices: [F] their distinct pre-positive indices; ascending when ``is_finite`` is None.
        is_finite: [F] bool, or None when every value is finite.
    """
    device = values.device
    num_gts, num_levels = pre.num_gts, pre.num_levels
    num_segments, width = num_gts * num_levels, num_levels * topk
    segment = torch.add(
        pre.level.index_select(0, indices), pre.gt_global.index_select(0, indices), alpha=num_levels
    )  # [F] gt_global * L + level
    # Sort by (segment, cost, anchor order): pre-positives are in anchor order per image, so the
    # pre-positive index orders the anchors (the position in the list does the same when ascending).
    if is_finite is None:
        order = stable_order(segment, values)  # [F]
    else:
        # Non-finite costs go to an extra segment S: they take no rank in their own segment.
        segment = torch.where(is_finite, segment, num_segments)
        order = order_with_tiebreak(segment, values, indices, num_segments + 1, pre.level.shape[0])  # [F]
    sorted_segment = segment.index_select(0, order)
    rank = rank_in_segments(sorted_segment)  # [F]
    # Slot (GT, level * k + rank) of every kept candidate in the flattened [G, L*k] rows; the
    # others (rank >= k, segment S) land in an extra row G, dropped after the row sort. (Several
    # entries may share a slot there: whichever is written last does not matter.)
    slot = torch.add(rank, sorted_segment, alpha=topk)
    slot = torch.where(rank < topk, slot, num_segments * topk)  # [F]
    flat_costs = torch.full(((num_gts + 1) * width,), float("inf"), dtype=torch.float64, device=device)
    flat_costs.index_copy_(0, slot, values.index_select(0, order).to(torch.float64))
    flat_index = torch.full(((num_gts + 1) * width,), -1, dtype=torch.long, device=device)
    flat_index.index_copy_(0, slot, indices.index_select(0, order))
    # Ascending cost per GT; equal costs keep the slot order, i.e. (level, anchor). (Costs are
    # sums of non-negative terms, so -0.0 never occurs; it would tie with +0.0 here.)
    row_costs, permutation = flat_costs.view(num_gts + 1, width).sort(dim=1, stable=True)
    pre_index = flat_index.view(num_gts + 1, width).gather(1, permutation)[:num_gts]
    row_mask = pre_index >= 0
    return CandidateRows(
        costs=row_costs[:num_gts], mask=row_mask, pre_index=pre_index, count=row_mask.sum(dim=1)
    )


def separate_positives(component: Tensor, log_density: Tensor, mask: Tensor) -> Tensor:
    """Separation scheme (c) (§1.5 D.4) on ascending rows.

    Args:
        component: [G, K] long (or bool) GMM component of each entry (0 = the low-cost component).
        log_density: [G, K] mixture log-density of each entry.
        mask: [G, K] bool valid entries (rows sorted ascending, valid entries first).

    Returns:
        [G, K] bool: the component-0 entries up to (and including) the one with the highest
        log-density among component-0 entries (ties -> lowest cost); nothing for rows without
        component-0 entries.
    """
    foreground = mask & (component == 0)  # [G, K]
    scores = torch.where(foreground, log_density, torch.full_like(log_density, -float("inf")))
    peak = scores.argmax(dim=1, keepdim=True)  # [G, 1], first maximum = lowest cost
    columns = torch.arange(mask.shape[1], device=mask.device)[None, :]
    return foreground & (columns <= peak) & foreground.any(dim=1, keepdim=True)


@inference_internals
def select_positives(
    costs: Tensor,
    pre: PreAssignment,
    topk: int = 9,
    max_iterations: int = 100,
    tolerance: float = 1e-3,
    reg_covar: float = 1e-6,
) -> Tensor:
    """§1.5 C-D for all GTs of the batch at once: [P] costs -> [P] bool final positives."""
    return _select_positives(costs, None, pre, topk, max_iterations, tolerance, reg_covar)


@inference_internals
def _select_positives(
    costs: Tensor,
    computed: Tensor | None,
    pre: PreAssignment,
    topk: int,
    max_iterations: int,
    tolerance: float,
    reg_covar: float,
) -> Tensor:
    """:func:`select_positives`; ``computed`` ([F'] indices, any order), when given, holds every
    index whose cost is not +inf (``candidate_costs_and_indices``)."""
    if pre.num_gts == 0 or costs.shape[0] == 0:
        return torch.zeros(costs.shape[0], dtype=torch.bool, device=costs.device)
    if computed is None:
        rows = build_candidate_rows(costs, pre, topk)
    else:
        rows = _candidate_rows_of(costs, computed, pre, topk)
    fit_mask = rows.mask & (rows.count >= 2)[:, None]
    # (a GT with fewer than 2 candidates is an all-masked row: fitted, selects nothing)
    fit = fit_rows(rows.costs, fit_mask, max_iterations, tolerance, reg_covar)
    chosen = _separate_fitted(fit.component, fit.log_density, fit_mask)  # [G, L*k]
    # Scatter back to the pre-positives, shifted by one: empty slots (index -1) write into the
    # dummy entry 0; every pre-positive is in at most one slot, and the dummy only gets False.
    shifted = torch.zeros(costs.shape[0] + 1, dtype=torch.bool, device=costs.device)
    shifted.index_copy_(0, rows.pre_index.view(-1) + 1, chosen.view(-1))
    return shifted[1:]


def _separate_fitted(component: Tensor, log_density: Tensor, mask: Tensor) -> Tensor:
    """:func:`separate_positives` for a :class:`~ladet.assign.gmm.RowFit` (bool ``component``,
    ``log_density`` -inf on masked entries), in fewer ops: the same [R, K] bool result.

    Masked entries already score -inf, so only the component-1 entries need masking before the
    argmax; and a row without component-0 entries peaks at column 0, which is not foreground, so
    it selects nothing without a separate "any" test.
    """
    foreground = mask > component  # mask & ~component
    peak = log_density.masked_fill(component, -float("inf")).argmax(dim=1, keepdim=True)  # [R, 1]
    columns = torch.arange(mask.shape[1], device=mask.device)
    return foreground & (columns <= peak)


def build_result(pre: PreAssignment, positive: Tensor, valid_mask: Tensor, num_classes: int) -> AssignResult:
    """Re-labelling (§1.5 E): final positives keep class and GT box, every other anchor is background.

    Args:
        pre: the pre-assignment.
        positive: [P] bool final positives among the pre-positives.
        valid_mask: [B, N] bool.
        num_classes: C (background label).
    """
    batch_size, num_anchors = valid_mask.shape
    device = valid_mask.device
    flat = pre.image_index * num_anchors + pre.anchor_index  # [P]
    labels = torch.full((batch_size * num_anchors,), num_classes, dtype=torch.long, device=device)
    labels[flat] = torch.where(positive, pre.labels, torch.full_like(pre.labels, num_classes))
    positive_mask = torch.zeros(batch_size * num_anchors, dtype=torch.bool, device=device)
    positive_mask[flat] = positive
    positive_gt_index = torch.full((batch_size * num_anchors,), -1, dtype=torch.long, device=device)
    positive_gt_index[flat] = torch.where(positive, pre.gt_local, torch.full_like(pre.gt_local, -1))
    box_targets = torch.zeros((batch_size * num_anchors, 4), dtype=torch.float32, device=device)
    box_targets[flat] = torch.where(
        positive[:, None], pre.box_targets.float(), torch.zeros_like(pre.box_targets)
    )
    return AssignResult(
        labels=labels.view(batch_size, num_anchors),
        label_weights=valid_mask.float(),
        box_targets=box_targets.view(batch_size, num_anchors, 4),
        positive_mask=positive_mask.view(batch_size, num_anchors),
        positive_gt_index=positive_gt_index.view(batch_size, num_anchors),
        num_positives=positive.sum().float(),
        pre_positive_mask=pre.gt_index >= 0,
    )


class PAAAssigner:
    """Probabilistic anchor assignment (Kim & Lee, ECCV 2020) with a batched torch GMM.

    Args:
        config: thresholds and GMM settings (``AssignerConfig``).
        num_classes: C; background label = C.
        box_coder: decodes anchors + deltas (``DeltaBoxCoder``).
        focal_alpha, focal_gamma: focal parameters of the classification cost.

    Example::

        assigner = PAAAssigner(AssignerConfig(), num_classes=80, box_coder=DeltaBoxCoder())
        result = assigner.assign(teacher_outputs, grid, valid_mask, batch.gt_boxes, batch.gt_labels)
        result.labels  # [B, N], background = 80

    LAD passes the teacher's outputs; CoLAD calls :meth:`pre_assign`, :meth:`costs` for both
    networks, ``choose_costs_std_mean``, :meth:`select_positives` and :meth:`build_result`.
    """

    def __init__(
        self,
        config: AssignerConfig,
        num_classes: int,
        box_coder: BoxDecoder,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ) -> None:
        self.config = config
        self.num_classes = num_classes
        self.box_coder = box_coder
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    def pre_assign(
        self, grid: AnchorGrid, valid_mask: Tensor, gt_boxes: list[Tensor], gt_labels: list[Tensor]
    ) -> PreAssignment:
        """IoU pre-assignment (§1.5 A) on an ``AnchorGrid``."""
        return pre_assign(
            grid.anchors,
            valid_mask,
            gt_boxes,
            gt_labels,
            self.config.pre_assign_iou_threshold,
            grid.level_index,
            num_levels=len(grid.num_per_level),
            level_sizes=grid.level_sizes,
            strides=grid.strides,
        )

    def costs(self, outputs: HeadOutputs, grid: AnchorGrid, pre: PreAssignment) -> Tensor:
        """[P] fp32 anchor costs (§1.5 B) of the pre-positives from ``outputs``."""
        return anchor_costs(
            outputs,
            grid,
            self.box_coder,
            pre,
            self.focal_alpha,
            self.focal_gamma,
            self.config.cost_box_weight,
        )

    def candidate_costs(self, outputs: HeadOutputs, grid: AnchorGrid, pre: PreAssignment) -> Tensor:
        """[P] costs where they can reach the per-(GT, level) top-k, +inf elsewhere: the same
        selection as :meth:`costs` at a fraction of the [P, C] work (see ``candidate_costs``)."""
        return self._candidate_costs_and_indices(outputs, grid, pre)[0]

    def _candidate_costs_and_indices(
        self, outputs: HeadOutputs, grid: AnchorGrid, pre: PreAssignment
    ) -> tuple[Tensor, Tensor]:
        return candidate_costs_and_indices(
            outputs,
            grid,
            self.box_coder,
            pre,
            self.focal_alpha,
            self.focal_gamma,
            self.config.cost_box_weight,
            self.config.topk,
        )

    def select_positives(self, costs: Tensor, pre: PreAssignment) -> Tensor:
        """[P] costs -> [P] bool final positives (§1.5 C-D)."""
        return self._select_positives(costs, None, pre)

    def _select_positives(self, costs: Tensor, computed: Tensor | None, pre: PreAssignment) -> Tensor:
        return _select_positives(
            costs,
            computed,
            pre,
            self.config.topk,
            self.config.gmm_max_iterations,
            self.config.gmm_tolerance,
            self.config.gmm_reg_covar,
        )

    def build_result(self, pre: PreAssignment, positive: Tensor, valid_mask: Tensor) -> AssignResult:
        return build_result(pre, positive, valid_mask, self.num_classes)

    def positives(
        self,
        outputs: HeadOutputs,
        grid: AnchorGrid,
        valid_mask: Tensor,
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
    ) -> tuple[PreAssignment, Tensor]:
        """§1.5 A-D for a batch: (pre-assignment, [P] bool final positives).

        Call it under ``torch.inference_mode()`` (as :meth:`assign` does): the three steps then
        pass their tensors to each other directly; called outside, each step hands back ordinary
        (cloned) tensors.
        """
        pre = self.pre_assign(grid, valid_mask, gt_boxes, gt_labels)
        # The costs step hands over which costs it computed: the selection skips the others.
        costs, computed = self._candidate_costs_and_indices(outputs, grid, pre)
        positive = self._select_positives(costs, computed, pre)
        return pre, positive

    @torch.no_grad()
    def assign(
        self,
        outputs: HeadOutputs,
        grid: AnchorGrid,
        valid_mask: Tensor,
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
    ) -> AssignResult:
        """The whole §1.5 for a batch: outputs [B, N, ...] + GTs -> :class:`AssignResult`.

        The selection runs in one inference-mode region; the re-labelling runs outside it, so the
        result holds ordinary tensors (the inference tensors are only read, never kept).
        """
        with torch.inference_mode():
            pre, positive = self.positives(outputs, grid, valid_mask, gt_boxes, gt_labels)
        return self.build_result(pre, positive, valid_mask)
