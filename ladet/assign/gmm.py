"""Batched two-component 1-D Gaussian mixture (EM), scikit-learn semantics (ALGORITHMS.md §1.5 D, §9.2).

Every row of a [G, K] matrix is an independent sample set (the sorted candidate costs of one GT);
all rows are fitted at once in float64. The loop reproduces ``sklearn.mixture.GaussianMixture(
n_components=2, covariance_type='diag', weights_init=[.5, .5], means_init=[[min], [max]],
precisions_init=[[1], [1]], tol=1e-3, reg_covar=1e-6, max_iter=100)``:

* initial means (row min, row max), variances (1, 1), weights (0.5, 0.5), previous bound -inf;
* each iteration: E-step with the current parameters (its mean log-likelihood is the bound), then
  the M-step (n_k = sum r + 10 * eps_f64, weighted mean, weighted variance + reg, w = n_k / sum n_k);
  the row stops when |bound - previous bound| < tol, keeping the parameters of that M-step;
* a final E-step gives the component (argmax, ties -> component 0) and the mixture log-density
  (``score_samples``).

Difference to sklearn (documented policy, §8.1): the variance is the *centred* weighted sum
sum r (x - mu)^2 / n_k, which is never negative, so a fit never fails ("ill-defined empirical
covariance" cannot happen). Masked entries (padding, non-finite values) take no part in the fit.
Rows with fewer than 2 valid entries still give finite parameters (the caller ignores them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["GaussianMixtureFit", "fit_two_component_gmm"]

_FLOAT64_EPS = float(torch.finfo(torch.float64).eps)
_LOG_TWO_PI = math.log(2.0 * math.pi)


@dataclass
class GaussianMixtureFit:
    """Result of :func:`fit_two_component_gmm` for G rows of K entries.

    Attributes:
        component: [G, K] long, 0 or 1 (argmax of the weighted log-density, ties -> 0); 0 on masked entries.
        log_density: [G, K] float64 mixture log-density log sum_k w_k N(x; mu_k, v_k); -inf on masked entries.
        means: [G, 2] float64.
        variances: [G, 2] float64.
        weights: [G, 2] float64.
        num_iterations: [G] long, EM iterations run for the row (as sklearn's ``n_iter_``).
        converged: [G] bool.
    """

    component: Tensor
    log_density: Tensor
    means: Tensor
    variances: Tensor
    weights: Tensor
    num_iterations: Tensor
    converged: Tensor


def _weighted_log_prob(values: Tensor, means: Tensor, variances: Tensor, log_weights: Tensor) -> Tensor:
    """[G, 1, K] values, [G, 2, 1] parameters -> [G, 2, K] log w_k + log N(x; mu_k, v_k)."""
    squared = (values - means).square_() / variances
    return (squared + (_LOG_TWO_PI + variances.log())).mul_(-0.5).add_(log_weights)


def fit_two_component_gmm(
    values: Tensor,
    mask: Tensor,
    max_iterations: int = 100,
    tolerance: float = 1e-3,
    reg_covar: float = 1e-6,
    check_every: int = 4,
) -> GaussianMixtureFit:
    """Fits a two-component 1-D mixture to every row, all rows at once.

    Args:
        values: [G, K] samples (any float dtype; computed in float64). Masked entries may hold
            anything, including inf/NaN.
        mask: [G, K] bool, True for the entries that belong to the row's sample set.
        max_iterations: sklearn ``max_iter``.
        tolerance: sklearn ``tol`` on the change of the mean log-likelihood.
        reg_covar: added to every variance.
        check_every: the loop asks the device "are all rows converged?" only every this many
            iterations (a host synchronisation on GPU). Rows that converged are frozen, so extra
            iterations never change the answer.

    Returns:
        :class:`GaussianMixtureFit`.

    Example:
        >>> x = torch.tensor([[1.0, 1.1, 1.2, 5.0, 5.2]])
        >>> fit = fit_two_component_gmm(x, torch.ones_like(x, dtype=torch.bool))
        >>> fit.component.tolist()
        [[0, 0, 0, 1, 1]]
    """
    if values.shape != mask.shape or values.dim() != 2:
        raise ValueError(
            f"fit_two_component_gmm: values {tuple(values.shape)} and mask {tuple(mask.shape)} must be equal [G, K]"
        )
    num_rows = values.shape[0]
    device = values.device
    values64 = values.to(torch.float64)
    mask = mask & torch.isfinite(values64)
    mask64 = mask.to(torch.float64)  # [G, K]
    clean = torch.where(mask, values64, torch.zeros_like(values64))  # [G, K]
    count = mask64.sum(dim=1)  # [G]
    safe_count = count.clamp(min=1.0)

    # Initial parameters: means (min, max) of the valid entries, variances (1, 1), weights (.5, .5).
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=device)
    row_min = torch.where(mask, values64, inf).amin(dim=1)
    row_max = torch.where(mask, values64, -inf).amax(dim=1)
    has_values = count > 0
    row_min = torch.where(has_values, row_min, torch.zeros_like(row_min))
    row_max = torch.where(has_values, row_max, torch.zeros_like(row_max))
    means = torch.stack([row_min, row_max], dim=1)[:, :, None]  # [G, 2, 1]
    variances = torch.ones_like(means)  # [G, 2, 1]
    log_weights = torch.full_like(means, math.log(0.5))  # [G, 2, 1]
    previous_bound = torch.full((num_rows,), -float("inf"), dtype=torch.float64, device=device)
    active = has_values.clone()  # [G]
    num_iterations = torch.zeros(num_rows, dtype=torch.long, device=device)
    converged = torch.zeros(num_rows, dtype=torch.bool, device=device)

    samples = clean[:, None, :]  # [G, 1, K]
    weights_mask = mask64[:, None, :]  # [G, 1, K]
    for iteration in range(max_iterations):
        if iteration % check_every == 0 and not bool(active.any()):
            break
        # E-step with the current parameters.
        weighted = _weighted_log_prob(samples, means, variances, log_weights)  # [G, 2, K]
        normaliser = torch.logsumexp(weighted, dim=1, keepdim=True)  # [G, 1, K]
        bound = (normaliser[:, 0] * mask64).sum(dim=1) / safe_count  # [G]
        responsibilities = (weighted - normaliser).exp_().mul_(weights_mask)  # [G, 2, K]
        # M-step.
        component_mass = responsibilities.sum(dim=2, keepdim=True) + 10.0 * _FLOAT64_EPS  # [G, 2, 1]
        new_means = (responsibilities * samples).sum(dim=2, keepdim=True) / component_mass
        new_variances = (responsibilities * (samples - new_means).square()).sum(
            dim=2, keepdim=True
        ) / component_mass + reg_covar
        new_log_weights = (component_mass / component_mass.sum(dim=1, keepdim=True)).log()
        # Only active rows move; a row that converges keeps this M-step (sklearn semantics).
        update = active[:, None, None]
        means = torch.where(update, new_means, means)
        variances = torch.where(update, new_variances, variances)
        log_weights = torch.where(update, new_log_weights, log_weights)
        num_iterations += active.long()
        just_converged = active & ((bound - previous_bound).abs() < tolerance)
        converged |= just_converged
        previous_bound = torch.where(active, bound, previous_bound)
        active = active & ~just_converged

    weighted = _weighted_log_prob(samples, means, variances, log_weights)  # [G, 2, K]
    log_density = torch.logsumexp(weighted, dim=1)  # [G, K]
    component = (weighted[:, 1] > weighted[:, 0]).long()  # [G, K], ties -> 0
    component = torch.where(mask, component, torch.zeros_like(component))
    log_density = torch.where(mask, log_density, torch.full_like(log_density, -float("inf")))
    return GaussianMixtureFit(
        component=component,
        log_density=log_density,
        means=means[:, :, 0],
        variances=variances[:, :, 0],
        weights=log_weights[:, :, 0].exp(),
        num_iterations=num_iterations,
        converged=converged,
    )
