"""Batched two-component 1-D Gaussian mixture, fitted by EM with scikit-learn's rules
(docs/algorithms.md §1.5 D, §8.1, §9.2).

Every row of a [R, K] matrix is one sample set (in PAA: one GT's candidate costs); all rows are
fitted at once, in float64. Per row this is ``sklearn.mixture.GaussianMixture(n_components=2,
covariance_type='diag', weights_init=[.5, .5], means_init=[[min], [max]], precisions_init=[[1], [1]],
tol=1e-3, reg_covar=1e-6, max_iter=100)``:

* start: means (row min, row max), variances (1, 1), weights (1/2, 1/2), previous bound -inf;
* iteration t: the E-step with the current parameters gives the responsibilities r_ik and the bound
  l_t = mean_i log sum_k w_k N(x_i; mu_k, v_k); the M-step gives n_k = sum_i r_ik + 10 eps,
  mu_k = sum_i r_ik x_i / n_k, v_k = sum_i r_ik x_i^2 / n_k - mu_k^2 + reg_covar, w_k = n_k / sum_k n_k;
  the row stops when |l_t - l_{t-1}| < tol and keeps the parameters of this M-step;
* one more E-step with the final parameters gives ``predict`` (the component with the larger
  weighted log-density, ties -> component 0) and ``score_samples`` (the mixture log-density).

Batched loop:

* ``active`` [R] is the per-row convergence mask. Every iteration runs on all rows; a row that has
  stopped keeps the statistics (sum r, sum r x, sum r x^2) of its last M-step (``torch.where``), so
  further iterations give it the same parameters again. Rows never influence each other.
* The E-step at the end of iteration t uses that iteration's parameters: it is the E-step of
  iteration t + 1 and, once the loop has ended, the final E-step.
* Every ``check_every`` iterations the host asks whether any row is still active: one host sync per
  check, so the number of syncs follows the slowest row's iteration count (at most
  max_iterations / check_every), never the number of rows.

Numerics (§8.1): every row is shifted by its minimum first (EM is shift-equivariant: the means move
with the samples, nothing else changes), which keeps E[x^2] - mu^2 well conditioned in float64; the
variance is floored at ``reg_covar``, so a fit never fails (sklearn's 'diag' raises "ill-defined
empirical covariance" when float32 cancellation makes a variance non-positive). Masked entries
(padding, non-finite values) take no part in anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["GaussianMixtureFit", "fit_two_component_gmm"]

_TEN_EPS = 10.0 * torch.finfo(torch.float64).eps  # sklearn adds it to every component's mass
_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


@dataclass
class GaussianMixtureFit:
    """Result of :func:`fit_two_component_gmm` for R rows of K entries.

    Attributes:
        component: [R, K] long, 0 or 1 (``predict``; ties -> 0); 0 on masked entries.
        log_density: [R, K] float64 mixture log-density (``score_samples``); -inf on masked entries.
        means, variances, weights: [R, 2] float64 each.
        num_iterations: [R] long, EM iterations run for the row (sklearn's ``n_iter_``).
        converged: [R] bool.

    A row without any valid entry gets means 0, variances 1, weights 0.5 and no iteration.
    """

    component: Tensor
    log_density: Tensor
    means: Tensor
    variances: Tensor
    weights: Tensor
    num_iterations: Tensor
    converged: Tensor


def _e_step(samples: Tensor, mass: Tensor, means: Tensor, variances: Tensor) -> tuple[Tensor, Tensor]:
    """Samples [R, 1, K], parameters [R, 2, 1] -> (log n_k - log v_k / 2 - (x - mu_k)^2 / (2 v_k)
    [R, 2, K], its log-sum over the two components [R, 1, K]).

    That is log w_k + log N(x; mu_k, v_k) up to log(n_0 + n_1) + log(2 pi) / 2, a per-row constant:
    n_0 + n_1 = (number of samples) + 20 eps at every iteration, as the responsibilities of a sample
    sum to 1. Responsibilities and bound changes do not depend on it; the final density adds it.
    """
    inverse_std = variances.rsqrt()
    standardised = (samples - means).mul_(inverse_std)
    log_prob = torch.addcmul((mass * inverse_std).log_(), standardised, standardised, value=-0.5)
    return log_prob, torch.logaddexp(*log_prob.split(1, dim=1))


def _m_step(statistics: Tensor, moment_offsets: Tensor, reg_covar: float) -> tuple[Tensor, Tensor, Tensor]:
    """Statistics [R, 2, 3] (sum r, sum r x, sum r x^2 of each component) -> (masses n, means,
    variances), each [R, 2, 1]; ``moment_offsets`` = (0, reg_covar) turns (sum r x, sum r x^2) / n
    into (mu, E[x^2] + reg_covar) in one op."""
    mass, sums = statistics.split([1, 2], dim=2)
    mass = mass + _TEN_EPS
    means, mean_squares = torch.addcdiv(moment_offsets, sums, mass).split(1, dim=2)
    return mass, means, torch.addcmul(mean_squares, means, means, value=-1.0).clamp_(min=reg_covar)


def fit_two_component_gmm(
    values: Tensor,
    mask: Tensor,
    max_iterations: int = 100,
    tolerance: float = 1e-3,
    reg_covar: float = 1e-6,
    check_every: int = 4,
) -> GaussianMixtureFit:
    """Fits a two-component 1-D mixture to every row, all rows at once (see the module docstring).

    Args:
        values: [R, K] samples (any float dtype; computed in float64). Masked entries may hold
            anything, including inf/NaN.
        mask: [R, K] bool, True for the entries that belong to the row's sample set (non-finite
            values are left out whatever the mask says).
        max_iterations: sklearn ``max_iter``.
        tolerance: sklearn ``tol`` on the change of the mean log-likelihood.
        reg_covar: added to every variance (and its floor).
        check_every: iterations between two looks at the convergence mask (host syncs); it never
            changes the answer.

    Example:
        >>> x = torch.tensor([[1.0, 1.1, 1.2, 5.0, 5.2]])
        >>> fit_two_component_gmm(x, torch.ones_like(x, dtype=torch.bool)).component.tolist()
        [[0, 0, 0, 1, 1]]
    """
    if values.shape != mask.shape or values.dim() != 2:
        raise ValueError(
            f"fit_two_component_gmm: values {tuple(values.shape)} and mask {tuple(mask.shape)} must be equal [R, K]"
        )
    values = values.to(torch.float64)
    mask = mask & values.isfinite()
    valid = mask.to(torch.float64)  # [R, K]
    count = valid.sum(dim=1)  # [R]
    has_values = count > 0
    lowest = torch.where(mask, values, math.inf).amin(dim=1, keepdim=True)  # [R, 1]
    shifted = torch.where(mask, values - lowest, 0.0)  # [R, K], >= 0, 0 on masked entries
    features = torch.stack([valid, shifted, shifted * shifted], dim=2)  # [R, K, 3]: (1, x, x^2), 0 if masked
    samples = shifted[:, None, :]  # [R, 1, K]

    # sklearn's start on the shifted samples: means (0, max - min), variances 1, weights 1/2.
    means = torch.stack([torch.zeros_like(count), shifted.amax(dim=1)], dim=1)[:, :, None]  # [R, 2, 1]
    variances = torch.ones_like(means)
    mass = (count.clamp(min=1.0) * 0.5)[:, None, None].expand_as(means)  # n_k with w_k = 1/2
    log_prob, log_norm = _e_step(samples, mass, means, variances)
    statistics = means.new_zeros((values.shape[0], 2, 3))  # rows without values never update it
    moment_offsets = torch.tensor([0.0, reg_covar], dtype=torch.float64, device=values.device)
    active = has_values[:, None, None]  # [R, 1, 1], rows still iterating
    iterations = torch.zeros_like(active, dtype=torch.long)
    valid_column = valid[:, :, None]  # [R, K, 1]
    # sklearn stops on |change of the mean bound| < tol: on the bound sums that is < tol * count.
    tolerance_sum = (count * tolerance)[:, None, None]
    previous = torch.full_like(tolerance_sum, -math.inf)
    for iteration in range(1, max_iterations + 1):
        bound = torch.bmm(log_norm, valid_column)  # [R, 1, 1] sum over the valid samples
        responsibilities = log_prob.softmax(dim=1)  # [R, 2, K]
        statistics = torch.where(active, torch.bmm(responsibilities, features), statistics)
        mass, means, variances = _m_step(statistics, moment_offsets, reg_covar)
        iterations += active
        active = active & ((bound - previous).abs_() >= tolerance_sum)
        previous = bound
        log_prob, log_norm = _e_step(samples, mass, means, variances)
        if iteration % check_every == 0 and not bool(active.any()):  # host sync
            break

    # The last E-step is the final one: predict and score_samples (with the constants put back).
    total_mass = mass.sum(dim=1)  # [R, 1]
    log_density = log_norm[:, 0] - (total_mass.log() + _HALF_LOG_TWO_PI)
    first, second = log_prob.unbind(1)  # [R, K] each
    has_values = has_values[:, None]
    return GaussianMixtureFit(
        component=((second > first) & mask).long(),
        log_density=torch.where(mask, log_density, -math.inf),
        means=torch.where(has_values, means[:, :, 0] + lowest, 0.0),
        variances=torch.where(has_values, variances[:, :, 0], 1.0),
        weights=torch.where(has_values, mass[:, :, 0] / total_mass, 0.5),
        num_iterations=iterations.view(-1),
        converged=has_values[:, 0] & ~active.view(-1),
    )
