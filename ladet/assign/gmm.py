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

__all__ = ["GaussianMixtureFit", "RowFit", "fit_rows", "fit_two_component_gmm"]

_FLOAT64_EPS = float(torch.finfo(torch.float64).eps)
_LOG_TWO_PI = math.log(2.0 * math.pi)
# The working set shrinks once at least this many of its rows have finished: rebuilding the
# workspace (~25 views and buffers) costs about as much as iterating ~16 rows for one check
# interval (8 iterations) on CPU.
_MIN_ROWS_TO_DROP = 16


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

    Every tensor the loop writes is a view made here once (and the workspace is reused while the
    working set does not change), so one iteration is only arithmetic: 8 ops on [R, 2, K] / [R, K]
    tensors and 9 on [R, 2, *] parameter tensors.

    Args:
        features: [R, 3, K] (1, x, x^2) * mask of every working row.
        state: [R, 8] per-row state: the E-step coefficients (a_0, b_0, c_0, a_1, b_1, c_1),
            updated in place, then the row's last bound sum and tolerance * count (read by the caller).
        num_steps: T.
    """

    def __init__(self, features: Tensor, state: Tensor, num_steps: int) -> None:
        num_rows, _, width = features.shape
        self.num_steps = num_steps
        self.samples = features[:, 1:2]  # [R, 1, K], 0 on masked entries
        self.samples_by_feature = features.transpose(1, 2)  # [R, K, 3]
        self.mask_column = features[:, 0, :, None]  # [R, K, 1]
        self.coefficients = state[:, 0:6].view(num_rows, 2, 3)  # [R, 2, 3]: (a, b, c) per component
        self.constant, self.linear, self.quadratic = self.coefficients.split(1, dim=2)
        self.linear_and_quadratic = self.coefficients[:, :, 1:3]
        self.log_probabilities = features.new_empty((num_rows, 2, width))  # [R, 2, K]
        self.first, self.second = self.log_probabilities.split(1, dim=1)  # [R, 1, K] each
        # Per-step records: the statistics of every M-step and the log mixture density of every E-step.
        self.statistics = features.new_empty((num_rows, num_steps, 2, 3))  # [R, T, 2, 3]
        # The E-step's log-sum-exp of every step, kept as (max_k l_k, sum_k exp(l_k - max)): the
        # log is taken for all steps at once by the convergence check.
        self.maxima = features.new_empty((num_rows, num_steps, 1, width))  # [R, T, 1, K]
        self.sums = features.new_empty((num_rows, num_steps, 1, width))  # [R, T, 1, K]
        # Views and buffers of the convergence check (see fit_rows).
        self.flat_statistics = self.statistics.view(num_rows * num_steps, 6)
        self.row_offsets = torch.arange(0, num_rows * num_steps, num_steps, device=features.device)  # [R]
        self.previous_bound = state[:, 6:7]  # [R, 1]
        self.tolerance_times_count = state[:, 7:8]  # [R, 1]
        self.stopped = torch.ones((num_rows, num_steps + 1), dtype=torch.uint8, device=features.device)
        self.stopped_steps = self.stopped[:, :num_steps]  # the last column stays 1 (sentinel)
        self.steps = list(
            zip(
                self.statistics.unbind(1),  # [R, 2, 3]
                self.statistics[:, :, :, 0:1].unbind(1),  # sum r
                self.statistics[:, :, :, 1:3].unbind(1),  # (sum r x, sum r x^2)
                self.maxima.unbind(1),  # [R, 1, K]
                self.sums.unbind(1),  # [R, 1, K]
                strict=True,
            )
        )
        # Parameter scratch, [R, 2, 8] per component: (n, v | log n, log v | mean, -1/2, E[x^2] | tmp).
        # (n, v) side by side: one log covers both. The M-step writes (mean, E[x^2]) through a
        # strided view, and (mean, -1/2) / v gives the next (b, c) in one division.
        scratch = features.new_full((num_rows, 2, 8), -0.5)
        (
            self.mass,
            self.variance,
            self.log_mass,
            self.log_variance,
            self.mean,
            _,
            self.mean_square,
            self.temporary,
        ) = scratch.split(1, dim=2)
        self.mass_and_variance, self.logs, self.mean_and_minus_half = scratch[:, :, 0:6].split(2, dim=2)
        self.mean_and_mean_square = scratch[:, :, 4:7:2]


def _em_iterations(work: _EMWorkspace, reg_covar: float) -> None:
    """Runs T EM iterations on all rows of ``work``, recording every step.

    No row is frozen here: iteration t reads ``work.coefficients`` (the parameters of step t), writes
    the E-step log mixture density (as maximum and sum) to ``work.maxima[:, t]`` and
    ``work.sums[:, t]`` and the M-step statistics to
    ``work.statistics[:, t]``, and leaves the coefficients of step t + 1. The caller finds each row's
    first converged step afterwards; a row's arithmetic never depends on the other rows, so
    iterating past convergence changes nothing.
    """
    log_probabilities, samples = work.log_probabilities, work.samples
    mass_offset = 10.0 * _FLOAT64_EPS
    for statistics, mass_sum, moment_sums, maximum, total in work.steps:
        # E-step: l_k = log w_k + log N(x; mu_k, v_k) (up to per-row constants) = a_k + (b_k + c_k x) x,
        # responsibilities r_k = exp(l_k - m) / sum_j exp(l_j - m) with m = max_k l_k (as
        # logsumexp; with two components this is cheaper than torch.logaddexp + exp).
        torch.addcmul(work.linear, work.quadratic, samples, out=log_probabilities)  # [R, 2, K]
        torch.addcmul(work.constant, log_probabilities, samples, out=log_probabilities)
        torch.maximum(work.first, work.second, out=maximum)  # [R, 1, K]
        log_probabilities.sub_(maximum).exp_()
        torch.add(work.first, work.second, out=total)  # [R, 1, K], in [1, 2]
        responsibilities = log_probabilities.div_(total)  # [R, 2, K]
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


@dataclass
class RowFit:
    """:func:`fit_rows`' result for the R rows that have at least one valid entry.

    Attributes:
        rows: [R] long, indices of the fitted rows in the input.
        component: [R, K] bool, True for component 1 (ties -> component 0); False on masked entries.
        log_density: [R, K] float64 mixture log-density; -inf on masked entries.
        means, variances, weights: [R, 2, 1] float64 each (means in the input's scale).
        num_iterations: [R] long; converged: [R] bool.
    """

    rows: Tensor
    component: Tensor
    log_density: Tensor
    means: Tensor
    variances: Tensor
    weights: Tensor
    num_iterations: Tensor
    converged: Tensor


def _initial_state(row_count: Tensor, row_range: Tensor, tolerance: float) -> Tensor:
    """[R] counts and ranges (max - min) -> [R, 8] initial per-row state (see :class:`_EMWorkspace`).

    Initial parameters on the shifted samples: means (0, max - min), variances 1, weights 0.5,
    i.e. n_k = count / 2, so a = log n - mu^2 / 2, b = mu, c = -1/2; the previous bound is -inf.
    """
    half_log_mass = (row_count * 0.5).log_()
    zeros = torch.zeros_like(row_count)
    minus_half = zeros - 0.5
    return torch.stack(
        [
            half_log_mass,
            zeros,
            minus_half,
            torch.addcmul(half_log_mass, row_range, row_range, value=-0.5),
            row_range,
            minus_half,
            zeros - float("inf"),
            row_count * tolerance,
        ],
        dim=1,
    )


def fit_rows(
    values: Tensor,
    mask: Tensor,
    max_iterations: int = 100,
    tolerance: float = 1e-3,
    reg_covar: float = 1e-6,
    check_every: int = 8,
    first_check: int = 3,
) -> RowFit:
    """The fit of :func:`fit_two_component_gmm`, returned for the rows with values only.

    Callers that only need the rows they asked for (``select_positives``) skip the scatter back
    to [G, ...]. Same arguments as :func:`fit_two_component_gmm`; run it under inference mode.
    """
    device = values.device
    values64 = values.to(torch.float64)
    mask = mask & torch.isfinite(values64)
    count = mask.sum(dim=1)  # [G]
    # Only the rows with values are fitted (R of them).
    rows = torch.nonzero(count).flatten()  # [R] (host sync)
    row_mask = mask.index_select(0, rows)  # [R, K]
    row_values = values64.index_select(0, rows)
    # Shift every row by its minimum (EM is shift-equivariant; see the module docstring).
    row_min = torch.where(row_mask, row_values, float("inf")).amin(dim=1, keepdim=True)  # [R, 1]
    shifted = torch.where(row_mask, row_values - row_min, 0.0)  # [R, K], >= 0, 0 on masked entries
    features = torch.stack([row_mask.to(torch.float64), shifted, shifted * shifted], dim=1)  # [R, 3, K]
    state = _initial_state(count.index_select(0, rows).to(torch.float64), shifted.amax(dim=1), tolerance)

    num_fitted = rows.shape[0]
    # Records of every fitted row, written when the row leaves the working set.
    kept_statistics = features.new_empty((num_fitted, 2, 3))  # [R, 2, 3] of each row's kept step
    row_iterations = torch.empty(num_fitted, dtype=torch.long, device=device)
    row_converged = torch.empty(num_fitted, dtype=torch.bool, device=device)
    # Working set: the rows still iterating, as indices into the R fitted rows, with their records
    # (kept statistics, iterations, finished). Every ``check_every`` iterations each row's first
    # converged step is found and recorded; finished rows keep iterating (harmlessly: rows are
    # independent) until enough of them have finished, then the working set shrinks to the
    # unfinished rows (see _MIN_ROWS_TO_DROP).
    active = torch.arange(num_fitted, device=device)
    active_kept = features.new_zeros((num_fitted, 2, 3))
    active_iterations = torch.zeros(num_fitted, dtype=torch.long, device=device)
    active_finished = torch.zeros(num_fitted, dtype=torch.bool, device=device)
    work: _EMWorkspace | None = None
    done = 0
    while num_fitted > 0 and done < max_iterations:
        steps = min(first_check if done == 0 else check_every, max_iterations - done)
        if work is None or work.num_steps != steps:
            work = _EMWorkspace(features, state, steps)
        _em_iterations(work, reg_covar)
        # Bound sums of every step (sum of the log mixture density over the valid entries, up to a
        # per-row constant): |change| < tolerance * count is sklearn's test on the mean. The
        # first converged step is the first 1 of ``stopped``, whose last column is a sentinel 1
        # for rows that did not converge in this chunk.
        log_sum_exp = work.sums.log_().add_(work.maxima).view(active.shape[0], steps, -1)  # [R', T, K]
        sums = torch.bmm(log_sum_exp, work.mask_column)  # [R', T, 1]
        changes = torch.diff(sums[:, :, 0], dim=1, prepend=work.previous_bound).abs_()  # [R', T]
        torch.lt(changes, work.tolerance_times_count, out=work.stopped_steps)
        first_stop = work.stopped.argmax(dim=1)  # [R'], T if the row did not converge
        kept_step = torch.clamp(first_stop, max=steps - 1)  # the parameters the row keeps
        kept = work.flat_statistics.index_select(0, work.row_offsets + kept_step).view(-1, 2, 3)
        # Record rows that had not finished before this check (their kept step is in this chunk).
        pending = active_finished.logical_not()
        active_kept = torch.where(pending.view(-1, 1, 1), kept, active_kept)
        active_iterations = torch.where(pending, kept_step + (done + 1), active_iterations)
        active_finished = active_finished | (first_stop < steps)
        done += steps
        remaining = int(active_finished.logical_not().sum())  # host sync, once per check
        if remaining == 0 or done >= max_iterations:
            break
        work.previous_bound.copy_(sums[:, -1])
        if active.shape[0] - remaining >= _MIN_ROWS_TO_DROP:  # shrink the working set
            kept_statistics.index_copy_(0, active, active_kept)
            row_iterations.index_copy_(0, active, active_iterations)
            row_converged.index_copy_(0, active, active_finished)
            keep = torch.nonzero(active_finished.logical_not()).flatten()
            active, state, features = active[keep], state[keep], features[keep]
            active_kept, active_iterations = active_kept[keep], active_iterations[keep]
            active_finished = torch.zeros_like(active_iterations, dtype=torch.bool)
            work = None
    kept_statistics.index_copy_(0, active, active_kept)
    row_iterations.index_copy_(0, active, active_iterations)
    row_converged.index_copy_(0, active, active_finished)

    # Final E-step with the kept parameters (centred form), as sklearn's predict / score_samples.
    means, variances, weights = _parameters(kept_statistics, reg_covar)  # [R, 2, 1] each, shifted
    weighted = _weighted_log_prob(shifted[:, None, :], means, variances, weights.log())  # [R, 2, K]
    first, second = weighted.unbind(1)
    log_density = torch.where(row_mask, torch.logaddexp(first, second), -float("inf"))  # [R, K]
    return RowFit(
        rows=rows,
        component=(second > first) & row_mask,
        log_density=log_density,
        means=means + row_min[:, :, None],
        variances=variances,
        weights=weights,
        num_iterations=row_iterations,
        converged=row_converged,
    )


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
        check_every: the loop looks for converged rows (records the statistics of each row's
            first converged iteration; drops finished rows from the working set once 16 or more
            have finished) only every this many iterations: one host synchronisation (two when the
            set shrinks), and no per-iteration bookkeeping ops. Rows are independent, so iterating
            a row past its convergence never changes the answer. Default 8.
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
    fit = fit_rows(
        values,
        mask,
        max_iterations,
        tolerance,
        reg_covar,
        8 if check_every is None else check_every,
        first_check,
    )
    # Scatter the fitted rows into the [G, ...] results.
    num_rows, width = values.shape
    component = fit.component.new_zeros((num_rows, width)).index_copy_(0, fit.rows, fit.component).long()
    log_density = fit.log_density.new_full((num_rows, width), -float("inf"))
    log_density.index_copy_(0, fit.rows, fit.log_density)
    parameters = fit.means.new_tensor([0.0, 1.0, 0.5]).expand(num_rows, 2, 3).clone()  # rows without values
    parameters.index_copy_(0, fit.rows, torch.cat([fit.means, fit.variances, fit.weights], dim=2))
    num_iterations = fit.num_iterations.new_zeros(num_rows).index_copy_(0, fit.rows, fit.num_iterations)
    converged = fit.converged.new_zeros(num_rows).index_copy_(0, fit.rows, fit.converged)
    return GaussianMixtureFit(
        component=component,
        log_density=log_density,
        means=parameters[:, :, 0],
        variances=parameters[:, :, 1],
        weights=parameters[:, :, 2],
        num_iterations=num_iterations,
        converged=converged,
    )
