"""Label assignment: IoU pre-assignment, PAA costs, batched GMM selection, CoLAD switching."""

from ladet.assign.colad import CoLADChoice, choose_costs_std_mean
from ladet.assign.costs import anchor_costs
from ladet.assign.gmm import GaussianMixtureFit, fit_two_component_gmm
from ladet.assign.max_iou import PreAssignment, pre_assign
from ladet.assign.paa import PAAAssigner, build_result, select_positives
from ladet.assign.result import AssignResult

__all__ = [
    "AssignResult",
    "CoLADChoice",
    "GaussianMixtureFit",
    "PAAAssigner",
    "PreAssignment",
    "anchor_costs",
    "build_result",
    "choose_costs_std_mean",
    "fit_two_component_gmm",
    "pre_assign",
    "select_positives",
]
