"""PAA label assignment for a whole batch (docs/algorithms.md §1.5, §9.2), without loops over GTs.

Stages: :func:`~ladet.assign.max_iou.pre_assign` -> :func:`~ladet.assign.costs.anchor_costs` ->
:func:`select_positives` (:func:`build_candidate_rows`, the GMM, :func:`separate_positives`) ->
:func:`build_result`. LAD runs the same stages on the teacher's outputs; CoLAD swaps in mixed costs
between the cost and the selection stages (``ladet.assign.colad``).

Tie rules (the reference is not deterministic on exact ties, §9.3):
* per-(GT, level) top-k takes the k lowest costs, equal costs by anchor index;
* a GT with fewer than 2 candidates gets no positive;
* a non-finite cost (NaN/inf from a diverged network) is never a candidate, so other GTs are
  unaffected;
* the density peak on exact ties is the lowest-cost candidate (equal costs: the lower anchor index).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ladet.assign.costs import anchor_costs
from ladet.assign.gmm import fit_two_component_gmm
from ladet.assign.max_iou import PreAssignment, pre_assign
from ladet.assign.result import AssignResult
from ladet.config.schema import AssignerConfig
from ladet.models.anchors import AnchorGrid
from ladet.models.outputs import HeadOutputs
from ladet.structures import BoxDecoder

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
    """The candidates of every GT, one row per GT, sorted by ascending cost (equal costs by anchor index).

    Attributes:
        costs: [G_total, L*k] float64, +inf on empty slots.
        mask: [G_total, L*k] bool, True on candidates (the first ``count`` slots).
        pre_index: [G_total, L*k] long, index of the candidate among the pre-positives, -1 on empty slots.
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
    num_gts, num_levels = pre.num_gts, pre.num_levels
    num_segments, width = num_gts * num_levels, num_levels * topk
    # Non-finite costs go to an extra segment S after all (GT, level) segments: never candidates.
    segment = torch.where(costs.isfinite(), pre.segment(), num_segments)  # [P]
    # One stable order by (GT, level, cost, anchor index), as stable sorts from the minor key to the
    # major one. Pre-positives are listed by (image, anchor) and all of a GT's lie in one image, so
    # the list position orders equal costs by anchor index.
    order = costs.sort(stable=True).indices
    order = order[segment[order].sort(stable=True).indices]  # [P]
    sorted_segment = segment[order]
    # Rank inside the segment = position - position of the segment's first entry.
    rank = torch.arange(order.shape[0], device=costs.device) - torch.searchsorted(
        sorted_segment, sorted_segment
    )
    # Slot (GT, level * k + rank) of the flattened [G, L*k] rows (segment * k + rank); entries of
    # rank >= k and of segment S land in a spare row G, dropped below.
    slot = torch.where(
        (rank < topk) & (sorted_segment < num_segments), sorted_segment * topk + rank, num_segments * topk
    )
    flat_costs = costs.new_full(((num_gts + 1) * width,), float("inf"), dtype=torch.float64)
    flat_costs[slot] = costs[order].double()
    flat_index = torch.full_like(flat_costs, -1, dtype=torch.long)
    flat_index[slot] = order
    # Ascending cost per GT; the stable sort keeps equal costs in slot order (level, then anchor),
    # i.e. in anchor order, as anchors are numbered level by level.
    row_costs, permutation = flat_costs.view(num_gts + 1, width)[:num_gts].sort(dim=1, stable=True)
    pre_index = flat_index.view(num_gts + 1, width)[:num_gts].gather(1, permutation)
    mask = pre_index >= 0
    return CandidateRows(costs=row_costs, mask=mask, pre_index=pre_index, count=mask.sum(dim=1))


def separate_positives(component: Tensor, log_density: Tensor, mask: Tensor) -> Tensor:
    """Separation scheme (c) (§1.5 D.4) on ascending rows.

    Args:
        component: [G, K] long (or bool) GMM component of each entry (0 = the low-cost component).
        log_density: [G, K] mixture log-density of each entry.
        mask: [G, K] bool valid entries (rows sorted ascending, valid entries first).

    Returns:
        [G, K] bool: the component-0 entries up to (and including) the one with the highest
        log-density among component-0 entries (ties -> the first, i.e. lowest cost); nothing for
        rows without component-0 entries.
    """
    foreground = mask & (component == 0)  # [G, K]
    scores = torch.where(foreground, log_density, -float("inf"))
    peak = scores.argmax(dim=1, keepdim=True)  # [G, 1], first maximum
    columns = torch.arange(mask.shape[1], device=mask.device)
    return foreground & (columns <= peak) & foreground.any(dim=1, keepdim=True)


def select_positives(
    costs: Tensor,
    pre: PreAssignment,
    topk: int = 9,
    max_iterations: int = 100,
    tolerance: float = 1e-3,
    reg_covar: float = 1e-6,
) -> Tensor:
    """§1.5 C-D for all GTs of the batch at once: [P] costs -> [P] bool final positives."""
    if pre.num_gts == 0 or costs.shape[0] == 0:
        return torch.zeros(costs.shape[0], dtype=torch.bool, device=costs.device)
    rows = build_candidate_rows(costs, pre, topk)
    fitted = rows.mask & (rows.count >= 2)[:, None]  # a GT with < 2 candidates: empty row, no positive
    fit = fit_two_component_gmm(rows.costs, fitted, max_iterations, tolerance, reg_covar)
    chosen = separate_positives(fit.component, fit.log_density, fitted)  # [G, L*k]
    # Back to the pre-positives, shifted by one: empty slots (index -1) write False into entry 0.
    positive = torch.zeros(costs.shape[0] + 1, dtype=torch.bool, device=costs.device)
    positive[rows.pre_index.view(-1) + 1] = chosen.view(-1)
    return positive[1:]


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
    labels[flat] = torch.where(positive, pre.labels, num_classes)
    positive_mask = torch.zeros(batch_size * num_anchors, dtype=torch.bool, device=device)
    positive_mask[flat] = positive
    positive_gt_index = torch.full((batch_size * num_anchors,), -1, dtype=torch.long, device=device)
    positive_gt_index[flat] = torch.where(positive, pre.gt_local, -1)
    box_targets = torch.zeros((batch_size * num_anchors, 4), dtype=torch.float32, device=device)
    box_targets[flat] = torch.where(positive[:, None], pre.box_targets.float(), 0.0)
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

    def select_positives(self, costs: Tensor, pre: PreAssignment) -> Tensor:
        """[P] costs -> [P] bool final positives (§1.5 C-D)."""
        config = self.config
        return select_positives(
            costs, pre, config.topk, config.gmm_max_iterations, config.gmm_tolerance, config.gmm_reg_covar
        )

    def build_result(self, pre: PreAssignment, positive: Tensor, valid_mask: Tensor) -> AssignResult:
        """Re-labelling (§1.5 E), see :func:`build_result`."""
        return build_result(pre, positive, valid_mask, self.num_classes)

    @torch.no_grad()
    def positives(
        self,
        outputs: HeadOutputs,
        grid: AnchorGrid,
        valid_mask: Tensor,
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
    ) -> tuple[PreAssignment, Tensor]:
        """§1.5 A-D for a batch: (pre-assignment, [P] bool final positives)."""
        pre = self.pre_assign(grid, valid_mask, gt_boxes, gt_labels)
        return pre, self.select_positives(self.costs(outputs, grid, pre), pre)

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

        §1.5 A-D run in inference mode (no autograd bookkeeping for their many small ops); the
        re-labelling runs outside it, so that the result holds ordinary tensors.
        """
        with torch.inference_mode():
            pre, positive = self.positives(outputs, grid, valid_mask, gt_boxes, gt_labels)
        return self.build_result(pre, positive, valid_mask)
