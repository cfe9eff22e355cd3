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


@dataclass
class _EMState:
    """Parameters and bookkeeping of the rows being iterated ([R, 2, 1] / [R])."""

    means: Tensor
    variances: Tensor
    log_weights: Tensor
    previous_bound: Tensor
    active: Tensor
    num_iterations: Tensor
    converged: Tensor

    def select(self, keep: Tensor) -> _EMState:
        return _EMState(*(getattr(self, name)[keep] for name in self.__dataclass_fields__))

    def write_back(
        self,
        rows: Tensor,
        means: Tensor,
        variances: Tensor,
        log_weights: Tensor,
        num_iterations: Tensor,
        converged: Tensor,
    ) -> None:
        means.index_copy_(0, rows, self.means)
        variances.index_copy_(0, rows, self.variances)
        log_weights.index_copy_(0, rows, self.log_weights)
        num_iterations.index_copy_(0, rows, self.num_iterations)
        converged.index_copy_(0, rows, self.converged)


def _em_iteration(
    state: _EMState,
    samples: Tensor,
    weights_mask: Tensor,
    inverse_count: Tensor,
    tolerance: float,
    reg_covar: float,
) -> None:
    """One sklearn EM iteration on the working rows, in place; stopped rows keep their parameters.

    Args:
        samples: [R, 1, K] float64 (0 on masked entries); weights_mask: [R, 1, K] 1.0 / 0.0;
        inverse_count: [R] 1 / number of valid entries.
    """
    # E-step with the current parameters; its mean log-likelihood is the convergence bound.
    weighted = _weighted_log_prob(samples, state.means, state.variances, state.log_weights)  # [R, 2, K]
    normaliser = torch.logaddexp(weighted[:, 0], weighted[:, 1])  # [R, K]
    bound = (normaliser * weights_mask[:, 0]).sum(dim=1) * inverse_count  # [R]
    responsibilities = weighted.sub_(normaliser[:, None]).exp_().mul_(weights_mask)  # [R, 2, K]
    # M-step (centred variance).
    component_mass = responsibilities.sum(dim=2, keepdim=True) + 10.0 * _FLOAT64_EPS  # [R, 2, 1]
    new_means = (responsibilities * samples).sum(dim=2, keepdim=True) / component_mass
    spread = (samples - new_means).square_().mul_(responsibilities).sum(dim=2, keepdim=True)
    new_variances = spread / component_mass + reg_covar
    new_log_weights = (component_mass / component_mass.sum(dim=1, keepdim=True)).log_()
    update = state.active[:, None, None]
    state.means = torch.where(update, new_means, state.means)
    state.variances = torch.where(update, new_variances, state.variances)
    state.log_weights = torch.where(update, new_log_weights, state.log_weights)
    state.num_iterations += state.active
    just_converged = state.active & ((bound - state.previous_bound).abs() < tolerance)
    state.converged |= just_converged
    state.previous_bound = torch.where(state.active, bound, state.previous_bound)
    state.active &= ~just_converged


def fit_two_component_gmm(
    values: Tensor,
    mask: Tensor,
    max_iterations: int = 100,
    tolerance: float = 1e-3,
    reg_covar: float = 1e-6,
    check_every: int | None = None,
) -> GaussianMixtureFit:
    """Fits a two-component 1-D mixture to every row, all rows at once.

    Args:
        values: [G, K] samples (any float dtype; computed in float64). Masked entries may hold
            anything, including inf/NaN.
        mask: [G, K] bool, True for the entries that belong to the row's sample set.
        max_iterations: sklearn ``max_iter``.
        tolerance: sklearn ``tol`` on the change of the mean log-likelihood.
        reg_covar: added to every variance.
        check_every: the loop asks "are all rows converged?" (and drops finished rows from the
            working set) only every this many iterations: a host synchronisation on GPU. Default:
            every iteration on CPU (free there), every 4 on other devices. Rows that converged are
            frozen, so extra iterations never change the answer.

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
    num_iterations = torch.zeros(num_rows, dtype=torch.long, device=device)
    converged = torch.zeros(num_rows, dtype=torch.bool, device=device)
    samples_all = clean[:, None, :]  # [G, 1, K]
    mask_all = mask64[:, None, :]  # [G, 1, K]

    # Working set: the rows still iterating (compacted when at least half of them have stopped).
    rows = torch.arange(num_rows, device=device)  # [R] indices into the full batch
    state = _EMState(
        means=means.clone(),
        variances=variances.clone(),
        log_weights=log_weights.clone(),
        previous_bound=torch.full((num_rows,), -float("inf"), dtype=torch.float64, device=device),
        active=has_values.clone(),
        num_iterations=num_iterations.clone(),
        converged=converged.clone(),
    )
    samples, weights_mask, inverse_count = samples_all, mask_all, 1.0 / safe_count
    if check_every is None:
        check_every = 1 if device.type == "cpu" else 4
    for iteration in range(max_iterations):
        if iteration % check_every == 0:
            num_active = int(state.active.sum())  # host sync, once per check_every iterations
            if num_active == 0:
                break
            if num_active <= rows.shape[0] // 2:
                state.write_back(rows, means, variances, log_weights, num_iterations, converged)
                keep = torch.nonzero(state.active).flatten()
                rows, state = rows[keep], state.select(keep)
                samples, weights_mask, inverse_count = samples[keep], weights_mask[keep], inverse_count[keep]
        _em_iteration(state, samples, weights_mask, inverse_count, tolerance, reg_covar)
    state.write_back(rows, means, variances, log_weights, num_iterations, converged)

    samples = samples_all
    weighted = _weighted_log_prob(samples, means, variances, log_weights)  # [G, 2, K]
    log_density = torch.logaddexp(weighted[:, 0], weighted[:, 1])  # [G, K]
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
