"""Focal-KL (docs/algorithms.md §3.2): hand-computed values, 0·log0 convention, stability, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from ladet.losses.focal_kl import focal_kl_loss, focal_kl_loss_from_probabilities


def _reference(logit: float, target: float, gamma: float) -> float:
    """Scalar Focal-KL written directly from the formula with ``math``."""
    p = 1.0 / (1.0 + math.exp(-logit))
    entropy = (target * math.log(target) if target > 0 else 0.0) + (
        (1 - target) * math.log(1 - target) if target < 1 else 0.0
    )
    cross = -target * math.log(p) - (1 - target) * math.log(1 - p)
    return ((target - p) ** 2 + 1e-6) ** (gamma / 2) * (entropy + cross)


def test_hand_computed_values() -> None:
    # z = 0 (p = 0.5), t = 1, gamma = 0: KL = log 2 exactly
    assert focal_kl_loss(torch.tensor([0.0]), torch.tensor([1.0]), 0.0).item() == pytest.approx(
        math.log(2), abs=1e-6
    )
    # gamma = 2: ((0.5)^2 + 1e-6) * log 2
    assert focal_kl_loss(torch.tensor([0.0]), torch.tensor([1.0]), 2.0).item() == pytest.approx(
        0.250001 * math.log(2), rel=1e-6
    )
    # p = 0.6, t = 0.2, gamma = 0.5: 0.2 ln(0.2/0.6) + 0.8 ln(0.8/0.4) = 0.334795..., times 0.160001^0.25
    logit = math.log(0.6 / 0.4)
    expected = (0.2 * math.log(0.2 / 0.6) + 0.8 * math.log(0.8 / 0.4)) * 0.160001**0.25
    assert expected == pytest.approx(0.3347952 * 0.6324571, rel=1e-5)
    assert focal_kl_loss(torch.tensor([logit]), torch.tensor([0.2]), 0.5).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_matches_scalar_reference_on_a_grid() -> None:
    logits = torch.tensor([-6.0, -1.5, 0.0, 0.7, 3.0, 9.0])
    targets = torch.tensor([0.0, 0.3, 1.0, 0.5, 0.99, 0.0])
    values = focal_kl_loss(logits, targets, 0.5)
    for value, logit, target in zip(values.tolist(), logits.tolist(), targets.tolist(), strict=True):
        assert value == pytest.approx(_reference(logit, target, 0.5), rel=1e-4, abs=1e-7)


def test_zero_times_log_zero_convention_and_large_logits() -> None:
    # t = 0 and t = 1 must not produce NaN (0 * log 0 = 0)
    values = focal_kl_loss(torch.tensor([0.0, 0.0]), torch.tensor([0.0, 1.0]), 0.5)
    assert torch.isfinite(values).all()
    assert values[0].item() == pytest.approx(math.log(2) * (0.25 + 1e-6) ** 0.25, rel=1e-5)
    # z = 100, t = 0: -log(1 - p) = 100 computed stably (logsigmoid), not inf
    big = focal_kl_loss(torch.tensor([100.0]), torch.tensor([0.0]), 0.5)
    assert big.item() == pytest.approx(100.0, rel=1e-4)
    # equal distributions: (near) zero loss
    same = focal_kl_loss(torch.tensor([1.3]), torch.sigmoid(torch.tensor([1.3])), 0.5)
    assert abs(same.item()) < 1e-6


def test_gradient_finite_at_t_equals_p() -> None:
    logits = torch.tensor([-2.0, 0.0, 0.3, 4.0], requires_grad=True)
    targets = torch.sigmoid(logits.detach())
    focal_kl_loss(logits, targets, 0.5).sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().max().item() < 1e-5
    # away from t = p the gradient points towards the teacher
    logits = torch.tensor([0.0], requires_grad=True)
    focal_kl_loss(logits, torch.tensor([0.9]), 0.5).sum().backward()
    assert logits.grad.item() < 0


def test_probability_variant_clamps() -> None:
    probabilities = torch.tensor([0.0, 0.5, 1.0], requires_grad=True)
    targets = torch.tensor([1.0, 0.5, 0.0])
    values = focal_kl_loss_from_probabilities(probabilities, targets, 0.5)
    assert torch.isfinite(values).all()
    # p = 0 -> 1e-4, t = 1 -> 0.9999
    t, p = 0.9999, 1e-4
    expected = (t * math.log(t / p) + (1 - t) * math.log((1 - t) / (1 - p))) * ((t - p) ** 2 + 1e-6) ** 0.25
    assert values[0].item() == pytest.approx(expected, rel=1e-4)
    assert abs(values[1].item()) < 1e-7
    values.sum().backward()
    assert torch.isfinite(probabilities.grad).all()
    # equals the logit form for in-range probabilities
    logits = torch.tensor([-1.0, 0.5, 2.0])
    teacher = torch.tensor([0.2, 0.6, 0.7])
    torch.testing.assert_close(
        focal_kl_loss_from_probabilities(torch.sigmoid(logits), teacher, 0.5),
        focal_kl_loss(logits, teacher, 0.5),
    )


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        focal_kl_loss(torch.zeros(2, 3), torch.zeros(3, 2), 0.5)
