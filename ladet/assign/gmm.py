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

How the loop is organised (it runs ~30 iterations of a few small tensor ops, so the number of ops
per iteration is what costs time):

* Every row is shifted by its minimum first. EM is shift-equivariant (means move with the data;
  variances, responsibilities, bounds and log-densities do not change), and the shifted samples
  are small and non-negative, which keeps the sums below well conditioned.
* The E-step evaluates log w_k + log N(x; mu_k, v_k) as the quadratic a_k + (b_k + c_k x) x
  (two fused multiply-adds) instead of from (mu, v, w).
* The M-step is one batched matrix product: responsibilities times ``features`` = (1, x, x^2)
  per sample (zeros for masked entries) gives the
  sufficient statistics (sum r, sum r x, sum r x^2) of both components; the variance is
  sum r x^2 / n - mu^2 (what sklearn's 'diag' computes), clamped at 0 before ``reg_covar`` is
  added, so a fit never fails ("ill-defined empirical covariance" cannot happen; on the shifted
  samples in float64 the cancellation error is ~1e-16 * range^2, far below ``reg_covar`` for
  any cost scale PAA meets).
* The constants log(sum_k n_k) = log(count) and log(2 pi)/2 are left out of a_k: they are the same
  for both components (responsibilities unchanged) and for every iteration of a row (bound
  differences unchanged up to rounding). The final E-step and the returned parameters are computed
  exactly, in the centred form, from the kept statistics.

Masked entries (padding, non-finite values) take no part in the fit. Rows with fewer than 2 valid
entries still give finite parameters (the caller ignores them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ladet.assign.inference import inference_internals

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
    """[G, 1, K] values, [G, 2, 1] parameters -> [G, 2, K] log w_k + log N(x; mu_k, v_k) (centred form)."""
    squared = (values - means).square_() / variances
    return (squared + (_LOG_TWO_PI + variances.log())).mul_(-0.5).add_(log_weights)


def _parameters(statistics: Tensor, reg_covar: float) -> tuple[Tensor, Tensor, Tensor]:
    """Sufficient statistics [R, 2, 3] (sum r, sum r x, sum r x^2) -> (means, variances, weights),
    each [R, 2, 1], by sklearn's M-step formulas (variance clamped at 0 before ``reg_covar``)."""
    mass = statistics[:, :, 0:1] + 10.0 * _FLOAT64_EPS
    moments = statistics[:, :, 1:3] / mass  # [R, 2, 2]: (mean, mean of x^2)
    means = moments[:, :, 0:1]
    variances = torch.addcmul(moments[:, :, 1:2], means, means, value=-1.0).clamp_(min=0.0).add_(reg_covar)
    return means, variances, mass / mass.sum(dim=1, keepdim=True)


class _EMWorkspace:
    """Preallocated buffers and views of the EM loop for R rows, K entries and T iterations.

    Every tensor the loop writes is a view made here once, so one iteration is only arithmetic:
    6 ops on [R, 2, K] / [R, K] tensors and 9 on [R, 2, *] parameter tensors.

    Args:
        features: [R, 3, K] (1, x, x^2) * mask of every working row.
        state: [R, 8] per-row state: the E-step coefficients (a_0, b_0, c_0, a_1, b_1, c_1),
            updated in place, then the row's last bound sum and tolerance * count (read by the caller).
        num_steps: T.
    """

    def __init__(self, features: Tensor, state: Tensor, num_steps: int) -> None:
        num_rows, _, width = features.shape
        self.samples = features[:, 1:2]  # [R, 1, K], 0 on masked entries
        self.samples_by_feature = features.transpose(1, 2)  # [R, K, 3]
        self.coefficients = state[:, 0:6].view(num_rows, 2, 3)  # [R, 2, 3]: (a, b, c) per component
        self.constant, self.linear_and_quadratic = self.coefficients.split([1, 2], dim=2)
        self.linear, self.quadratic = self.linear_and_quadratic.split(1, dim=2)
        self.log_probabilities = features.new_empty((num_rows, 2, width))  # [R, 2, K]
        # Per-step records: the statistics of every M-step and the log mixture density of every E-step.
        self.statistics = features.new_empty((num_rows, num_steps, 2, 3))  # [R, T, 2, 3]
        self.normalisers = features.new_empty((num_rows, num_steps, 1, width))  # [R, T, 1, K]
        # Parameter scratch, [R, 2, 8] per component: (n, v | log n, log v | mean, -1/2, E[x^2] | tmp).
        # (n, v) side by side: one log covers both. The M-step writes (mean, E[x^2]) through a
        # strided view, and (mean, -1/2) / v gives the next (b, c) in one division.
        scratch = features.new_full((num_rows, 2, 8), -0.5)
        self.mass_and_variance, self.logs, self.mean_and_minus_half, self.mean_square, self.temporary = (
            scratch.split([2, 2, 2, 1, 1], dim=2)
        )
        self.mass, self.variance = self.mass_and_variance.split(1, dim=2)
        self.log_mass, self.log_variance = self.logs.split(1, dim=2)
        self.mean = self.mean_and_minus_half[:, :, 0:1]
        self.mean_and_mean_square = scratch[:, :, 4:7:2]


def _em_iterations(work: _EMWorkspace, reg_covar: float) -> None:
    """Runs T EM iterations on all rows of ``work``, recording every step.

    No row is frozen here: iteration t reads ``work.coefficients`` (the parameters of step t), writes
    the E-step log mixture density to ``work.normalisers[:, t]`` and the M-step statistics to
    ``work.statistics[:, t]``, and leaves the coefficients of step t + 1. The caller finds each row's
    first converged step afterwards; a row's arithmetic never depends on the other rows, so
    iterating past convergence changes nothing.
    """
    log_probabilities, samples = work.log_probabilities, work.samples
    first, second = log_probabilities.split(1, dim=1)  # [R, 1, K] each
    mass_offset = 10.0 * _FLOAT64_EPS
    # Views of every step's records, made once (slicing inside the loop would cost ops too).
    per_step = zip(
        work.statistics.unbind(1),  # [R, 2, 3]
        work.statistics[:, :, :, 0:1].unbind(1),  # sum r
        work.statistics[:, :, :, 1:3].unbind(1),  # (sum r x, sum r x^2)
        work.normalisers.unbind(1),  # [R, 1, K]
        strict=True,
    )
    for statistics, mass_sum, moment_sums, normaliser in per_step:
        # E-step: log w_k + log N(x; mu_k, v_k) (up to per-row constants) = a_k + (b_k + c_k x) x.
        torch.addcmul(work.linear, work.quadratic, samples, out=log_probabilities)  # [R, 2, K]
        torch.addcmul(work.constant, log_probabilities, samples, out=log_probabilities)
        torch.logaddexp(first, second, out=normaliser)  # [R, 1, K]
        responsibilities = log_probabilities.sub_(normaliser).exp_()  # [R, 2, K]
        # M-step: (sum r, sum r x, sum r x^2) per component; masked entries have zero features.
        torch.bmm(responsibilities, work.samples_by_feature, out=statistics)  # [R, 2, 3]
        torch.add(mass_sum, mass_offset, out=work.mass)  # n_k
        torch.div(moment_sums, work.mass, out=work.mean_and_mean_square)  # mu_k, E[x^2]_k
        torch.addcmul(work.mean_square, work.mean, work.mean, value=-1.0, out=work.variance)
        work.variance.clamp_(min=0.0).add_(reg_covar)  # v_k
        # Next E-step's coefficients: c = -1/(2v), b = mu/v, a = log n - (log v + mu b) / 2.
        torch.div(work.mean_and_minus_half, work.variance, out=work.linear_and_quadratic)
        torch.log(work.mass_and_variance, out=work.logs)
        torch.addcmul(work.log_variance, work.mean, work.linear, out=work.temporary)
        torch.add(work.log_mass, work.temporary, alpha=-0.5, out=work.constant)


@inference_internals
def fit_two_component_gmm(
    values: Tensor,
    mask: Tensor,
    max_iterations: int = 100,
    tolerance: float = 1e-3,
    reg_covar: float = 1e-6,
    check_every: int | None = None,
    first_check: int = 3,
) -> GaussianMixtureFit:
    """Fits a two-component 1-D mixture to every row, all rows at once.

    Args:
        values: [G, K] samples (any float dtype; computed in float64). Masked entries may hold
            anything, including inf/NaN.
        mask: [G, K] bool, True for the entries that belong to the row's sample set.
        max_iterations: sklearn ``max_iter``.
        tolerance: sklearn ``tol`` on the change of the mean log-likelihood.
        reg_covar: added to every variance.
        check_every: the loop looks for converged rows (writes back the statistics of each row's
            first converged iteration and drops finished rows from the working set) only every this
            many iterations: one host synchronisation, and no per-iteration bookkeeping ops. Rows
            are independent, so iterating a row past its convergence never changes the answer.
            Default 8.
        first_check: iterations before the first check. Default 3: most well-separated rows
            converge after exactly 3 sklearn iterations (e.g. 75% of the rows of the benchmark),
            so the working set shrinks before the other rows iterate on.

    Returns:
        :class:`GaussianMixtureFit`. Rows without valid entries get means 0, variances 1,
        weights 0.5, no iteration.

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
    num_rows, width = values.shape
    device = values.device
    values64 = values.to(torch.float64)
    mask = mask & torch.isfinite(values64)
    count = mask.sum(dim=1)  # [G]
    if check_every is None:
        check_every = 8

    # Only the rows with values are fitted (R of them); the others keep the initial parameters.
    rows = torch.nonzero(count > 0).flatten()  # [R] (host sync)
    row_mask = mask.index_select(0, rows)  # [R, K]
    row_values = values64.index_select(0, rows)
    row_count = count.index_select(0, rows).to(torch.float64)  # [R]
    # Shift every row by its minimum (EM is shift-equivariant; see the module docstring).
    row_min = torch.where(row_mask, row_values, float("inf")).amin(dim=1, keepdim=True)  # [R, 1]
    shifted = torch.where(row_mask, row_values - row_min, 0.0)  # [R, K], >= 0, 0 on masked entries
    features = torch.stack([row_mask.to(torch.float64), shifted, shifted * shifted], dim=1)  # [R, 3, K]

    # Per-row state (see _EMWorkspace): coefficients of the initial parameters - means (0, max - min)
    # on the shifted samples, variances 1, weights 0.5, i.e. n_k = count / 2: a = log n - mu^2 / 2,
    # b = mu, c = -1/2 - then the previous bound sum (-inf) and tolerance * count.
    state = features.new_empty((rows.shape[0], 8))
    half_log_mass = (row_count * 0.5).log_()
    row_range = shifted.amax(dim=1)
    state[:, 0] = half_log_mass
    state[:, 1] = 0.0
    state[:, 2] = -0.5
    torch.addcmul(half_log_mass, row_range, row_range, value=-0.5, out=state[:, 3])
    state[:, 4] = row_range
    state[:, 5] = -0.5
    state[:, 6] = -float("inf")
    torch.mul(row_count, tolerance, out=state[:, 7])

    kept_statistics = features.new_zeros((rows.shape[0], 2, 3))  # [R, 2, 3] of each row's kept step
    row_iterations = torch.zeros(rows.shape[0], dtype=torch.long, device=device)
    row_converged = torch.zeros(rows.shape[0], dtype=torch.bool, device=device)
    # Working set: the rows still iterating, as indices into the R fitted rows. Every
    # ``check_every`` iterations the first converged step of every row is found, its statistics
    # are written back, and finished rows are dropped.
    active = torch.arange(rows.shape[0], device=device)
    done = 0
    while active.shape[0] > 0 and done < max_iterations:
        steps = min(first_check if done == 0 else check_every, max_iterations - done)
        work = _EMWorkspace(features, state, steps)
        _em_iterations(work, reg_covar)
        # Bound sums of every step (sum of the log mixture density over the valid entries, up to a
        # per-row constant): |change| < tolerance * count is sklearn's test on the mean.
        sums = torch.bmm(work.normalisers[:, :, 0], features[:, 0, :, None])[:, :, 0]  # [R', T]
        changes = torch.diff(sums, dim=1, prepend=state[:, 6:7]).abs_()  # [R', T]
        # First converged step; a sentinel "converged" column T marks rows that did not converge.
        stopped = torch.ones((active.shape[0], steps + 1), dtype=torch.uint8, device=device)
        torch.lt(changes, state[:, 7:8], out=stopped[:, :steps])
        first_stop = stopped.argmax(dim=1)  # [R'], T if the row did not converge
        has_converged = first_stop < steps
        kept_step = first_stop.clamp_(max=steps - 1)  # the parameters the row keeps
        kept = work.statistics.gather(1, kept_step[:, None, None, None].expand(-1, 1, 2, 3))[:, 0]
        kept_statistics.index_copy_(0, active, kept)
        row_iterations.index_copy_(0, active, kept_step + (done + 1))
        row_converged.index_copy_(0, active, has_converged)
        done += steps
        keep = torch.nonzero(~has_converged).flatten()  # host sync, once per check_every iterations
        if keep.shape[0] == 0:
            break
        state[:, 6] = sums[:, -1]
        active, state, features = active[keep], state[keep], features[keep]

    # Final E-step with the kept parameters (centred form), as sklearn's predict / score_samples.
    means, variances, weights = _parameters(kept_statistics, reg_covar)  # [R, 2, 1] each, shifted
    weighted = _weighted_log_prob(shifted[:, None, :], means, variances, weights.log())  # [R, 2, K]
    row_log_density = torch.logaddexp(weighted[:, 0], weighted[:, 1])  # [R, K]
    row_component = (weighted[:, 1] > weighted[:, 0]) & row_mask  # [R, K], ties -> 0
    row_log_density = torch.where(row_mask, row_log_density, -float("inf"))

    # Scatter the fitted rows into the [G, ...] results.
    component = torch.zeros((num_rows, width), dtype=torch.long, device=device)
    component.index_copy_(0, rows, row_component.long())
    log_density = torch.full((num_rows, width), -float("inf"), dtype=torch.float64, device=device)
    log_density.index_copy_(0, rows, row_log_density)
    parameters = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64, device=device).repeat(num_rows, 2, 1)
    parameters.index_copy_(0, rows, torch.cat([means + row_min[:, :, None], variances, weights], dim=2))
    num_iterations = torch.zeros(num_rows, dtype=torch.long, device=device).index_copy_(0, rows, row_iterations)
    converged = torch.zeros(num_rows, dtype=torch.bool, device=device).index_copy_(0, rows, row_converged)
    return GaussianMixtureFit(
        component=component,
        log_density=log_density,
        means=parameters[:, :, 0],
        variances=parameters[:, :, 1],
        weights=parameters[:, :, 2],
        num_iterations=num_iterations,
        converged=converged,
    )
