"""CoLAD: shared per-(GT, level) switched assignment (docs/algorithms.md §5.2), keys, diagnostics, no-GT."""

from __future__ import annotations

import copy

import pytest
import torch
from methods_support import tiny_batch, tiny_detector

from ladet.methods.colad import CoLADMethod


def _segment_counts(pre) -> torch.Tensor:  # noqa: ANN001 - PreAssignment
    segment = pre.gt_global * pre.num_levels + pre.level  # [P]
    return torch.bincount(segment, minlength=pre.num_gts * pre.num_levels)[segment]  # [P]


def test_identical_networks_choose_as_specified_and_match_self_assignment() -> None:
    first = tiny_detector(seed=5)
    method = CoLADMethod(first, copy.deepcopy(first), evaluate_network="second")
    batch = tiny_batch()
    pictures = method.label_assignments(batch)
    counts = _segment_counts(pictures.pre_assignment)
    assert (counts >= 2).any() and pictures.uses_second.shape == counts.shape
    # equal coefficients of variation -> network 2 (">="); single candidate, equal means -> network 1
    assert torch.equal(pictures.uses_second, counts >= 2)
    shared, own = pictures.training_assignment, pictures.student_assignment
    assert torch.equal(shared.positive_mask, own.positive_mask) and torch.equal(shared.labels, own.labels)
    statistics = pictures.statistics
    torch.testing.assert_close(statistics["s_mean"], statistics["t_mean"])
    assert 0.0 < statistics["t_ratio"].item() <= 1.0

    losses = method(batch)
    for key in ("loss_cls", "loss_bbox", "loss_iou"):
        torch.testing.assert_close(losses[key], losses[key + "_second"])
    for key in ("s_mean", "t_mean", "s_std", "t_std", "t_ratio"):
        assert not losses[key].requires_grad


@pytest.mark.parametrize(
    ("transform", "expected"),
    [
        (lambda costs: 0.5 * costs, "all_second"),  # same CV, lower mean -> network 2 everywhere
        (lambda costs: costs + 1.0, "all_first"),  # lower CV and higher mean -> network 1 everywhere
    ],
)
def test_hand_built_cost_relations(monkeypatch: pytest.MonkeyPatch, transform, expected: str) -> None:  # noqa: ANN001
    first = tiny_detector(seed=5)
    method = CoLADMethod(first, copy.deepcopy(first))
    original_costs = method.assigner.costs
    calls: list[torch.Tensor] = []

    def fake_costs(outputs, grid, pre):  # noqa: ANN001, ANN202
        costs = original_costs(outputs, grid, pre)
        returned = costs if len(calls) % 2 == 0 else transform(costs)
        calls.append(returned)
        return returned

    monkeypatch.setattr(method.assigner, "costs", fake_costs)
    batch = tiny_batch()
    pictures = method.label_assignments(batch)
    uses_second = pictures.uses_second
    assert uses_second.all() if expected == "all_second" else not uses_second.any()
    chosen = calls[1] if expected == "all_second" else calls[0]
    pre = pictures.pre_assignment
    positive = method.assigner.select_positives(chosen, pre)
    grid, valid_mask = pictures.anchor_grid, pictures.valid_mask
    reference = method.assigner.build_result(pre, positive, valid_mask)
    assert torch.equal(pictures.training_assignment.positive_mask, reference.positive_mask)
    assert grid.anchors.shape[0] == valid_mask.shape[1]


def test_keys_evaluation_network_and_state_dict() -> None:
    first = tiny_detector(seed=5)
    second = tiny_detector(seed=6, head_type="cop")
    method = CoLADMethod(first, second, evaluate_network="second")
    assert method.evaluation_detector() is second
    assert CoLADMethod(first, second, evaluate_network="first").evaluation_detector() is first
    prefixes = {key.split(".", 1)[0] for key in method.state_dict()}
    assert prefixes == {"detector", "second_detector"}
    losses = method(tiny_batch())
    assert {key for key in losses if key.startswith("loss_")} == {
        "loss_cls",
        "loss_bbox",
        "loss_iou",
        "loss_cls_second",
        "loss_bbox_second",
        "loss_iou_second",
    }
    sum(value for key, value in losses.items() if key.startswith("loss_")).backward()
    assert any(parameter.grad is not None for parameter in second.head.parameters())
    with pytest.raises(ValueError, match="evaluate_network"):
        CoLADMethod(first, second, evaluate_network="teacher")


def test_no_ground_truth_in_batch_stays_finite() -> None:
    method = CoLADMethod(tiny_detector(seed=5), tiny_detector(seed=6, head_type="cop"))
    losses = method(tiny_batch(with_gt=False))
    assert all(torch.isfinite(value) for value in losses.values())
    assert losses["loss_bbox"].item() == 0.0 and losses["t_ratio"].item() == 0.0
    sum(value for key, value in losses.items() if key.startswith("loss_")).backward()
