"""Per-GT reference of the PAA assignment (docs/algorithms.md §1.5) with scikit-learn, written as the
reference implementations do it: for every image, for every GT, a masked per-level selection + ``topk``,
one ``GaussianMixture`` fit on the host, ``predict``, ``score_samples`` and separation (c).

Used as an oracle by the tests and as the baseline of ``benchmarks/assign.py``. Not part of the
package (scikit-learn is a test-only dependency).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.mixture import GaussianMixture
from torch import Tensor

from ladet.assign.max_iou import PreAssignment
from ladet.boxes import aligned_giou, box_iou
from ladet.losses.focal import focal_loss
from ladet.models.outputs import HeadOutputs

__all__ = [
    "fit_sklearn_gmm",
    "separate_sorted",
    "reference_pre_assign",
    "reference_costs",
    "reference_select_positives",
    "reference_positive_sets",
]


def fit_sklearn_gmm(sorted_costs: np.ndarray, max_iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Fits sklearn's 2-component diag GMM with the PAA inits to ascending costs [n].

    Returns:
        (component [n] int, log_density [n] float). Raises whatever sklearn raises.
    """
    samples = sorted_costs.reshape(-1, 1)
    mixture = GaussianMixture(
        n_components=2,
        covariance_type="diag",
        weights_init=np.array([0.5, 0.5]),
        means_init=np.array([[samples.min()], [samples.max()]]),
        precisions_init=np.array([[1.0], [1.0]]),
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=max_iterations,
    )
    mixture.fit(samples)
    return mixture.predict(samples), mixture.score_samples(samples)


def separate_sorted(component: np.ndarray, log_density: np.ndarray) -> np.ndarray:
    """Scheme (c) on ascending samples -> indices (into the sorted vector) of the positives."""
    foreground = np.flatnonzero(component == 0)
    if foreground.size == 0:
        return foreground
    peak = int(np.argmax(log_density[foreground]))
    return foreground[: peak + 1]


def reference_positive_sets(
    costs: Tensor, pre: PreAssignment, topk: int = 9, float32_input: bool = True
) -> list[set[int] | None]:
    """Per GT (global order): the set of pre-positive indices selected as positives.

    Entry is ``None`` where sklearn raised (the GT is then counted separately by callers), an empty
    set for GTs with < 2 candidates or an empty foreground.
    """
    results: list[set[int] | None] = []
    costs_device = costs.detach()
    for gt in range(pre.num_gts):
        of_gt = pre.gt_global == gt  # [P]
        candidates: list[Tensor] = []
        for level in range(pre.num_levels):
            members = torch.nonzero(of_gt & (pre.level == level)).flatten()
            if members.numel() == 0:
                continue
            level_costs = costs_device[members]
            count = min(topk, members.numel())
            _, best = level_costs.topk(count, largest=False)
            candidates.append(members[best])
        if not candidates:
            results.append(set())
            continue
        candidate_index = torch.cat(candidates)
        candidate_costs = costs_device[candidate_index]
        if candidate_index.numel() < 2:
            results.append(set())
            continue
        order = torch.sort(candidate_costs, stable=True).indices
        sorted_costs = candidate_costs[order].cpu().numpy()
        sorted_index = candidate_index[order].cpu().numpy()
        if not float32_input:
            sorted_costs = sorted_costs.astype(np.float64)
        try:
            component, log_density = fit_sklearn_gmm(sorted_costs)
        except ValueError:
            results.append(None)
            continue
        chosen = separate_sorted(component, log_density)
        results.append({int(index) for index in sorted_index[chosen]})
    return results


def reference_select_positives(costs: Tensor, pre: PreAssignment, topk: int = 9) -> Tensor:
    """[P] bool positives of the per-GT reference (a GT on which sklearn fails gets no positive)."""
    positive = torch.zeros(costs.shape[0], dtype=torch.bool)
    for selected in reference_positive_sets(costs, pre, topk):
        if selected:
            positive[list(selected)] = True
    return positive.to(costs.device)


def reference_pre_assign(
    anchors: Tensor,
    valid_mask: Tensor,
    gt_boxes: list[Tensor],
    gt_labels: list[Tensor],
    iou_threshold: float,
    level_index: Tensor,
    num_levels: int,
) -> PreAssignment:
    """MaxIoU the reference way: per image, a [G, N_valid] ``box_iou`` and a Python loop over GTs
    for the low-quality pass (later GTs overwrite earlier ones)."""
    device = anchors.device
    batch_size, num_anchors = valid_mask.shape
    gt_index = torch.full((batch_size, num_anchors), -1, dtype=torch.long, device=device)
    for image in range(batch_size):
        boxes = gt_boxes[image].float()
        if boxes.shape[0] == 0:
            continue
        valid_indices = torch.nonzero(valid_mask[image]).flatten()
        overlaps = box_iou(boxes, anchors[valid_indices].float())  # [G, N_valid]
        max_overlaps, argmax_overlaps = overlaps.max(dim=0)
        assigned = torch.full_like(argmax_overlaps, -1)
        positive = max_overlaps >= iou_threshold
        assigned[positive] = argmax_overlaps[positive]
        gt_max_overlaps = overlaps.max(dim=1).values
        for gt in range(boxes.shape[0]):
            if gt_max_overlaps[gt] >= 0:
                assigned[overlaps[gt] == gt_max_overlaps[gt]] = gt
        gt_index[image, valid_indices] = assigned
    image_index, anchor_index = torch.nonzero(gt_index >= 0, as_tuple=True)
    gt_local = gt_index[image_index, anchor_index]
    counts = [int(boxes.shape[0]) for boxes in gt_boxes]
    offsets = torch.tensor([0, *counts], device=device).cumsum(0)[:-1]
    all_boxes = torch.cat([boxes.float() for boxes in gt_boxes]) if sum(counts) else anchors.new_zeros((0, 4))
    all_labels = torch.cat(list(gt_labels)).long() if sum(counts) else torch.zeros(0, dtype=torch.long)
    gt_global = offsets[image_index] + gt_local
    return PreAssignment(
        gt_index=gt_index,
        image_index=image_index,
        anchor_index=anchor_index,
        gt_local=gt_local,
        gt_global=gt_global,
        level=level_index[anchor_index],
        labels=all_labels[gt_global],
        box_targets=all_boxes[gt_global],
        num_gts_per_image=counts,
        num_levels=num_levels,
    )


def reference_costs(
    outputs: HeadOutputs, anchors: Tensor, box_coder, pre: PreAssignment, box_weight: float = 1.3
) -> Tensor:
    """§1.5 B the reference way: element-wise focal loss against a one-hot target, summed, + GIoU."""
    scores = outputs.class_scores[pre.image_index, pre.anchor_index].float()
    targets = torch.nn.functional.one_hot(pre.labels, scores.shape[1] + 1)[:, :-1].float()
    classification = focal_loss(scores, targets, outputs.class_scores_are_probabilities).sum(dim=1)
    decoded = box_coder.decode(
        anchors[pre.anchor_index], outputs.box_deltas[pre.image_index, pre.anchor_index].float()
    )
    return classification + box_weight * (1.0 - aligned_giou(decoded, pre.box_targets))
