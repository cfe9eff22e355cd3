"""Batched two-component 1-D Gaussian mixture (EM), scikit-learn semantics (docs/algorithms.md §1.5 D, §9.2).

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
per iteration is what costs time; one iteration is 9 ops):

* Every row is shifted by its minimum first. EM is shift-equivariant (means move with the data;
  variances, responsibilities, bounds and log-densities do not change), and the shifted samples
  are small and non-negative, which keeps the sums below well conditioned.
* The weighted log-density of component k is l_k = log n - (log v + mu^2 / v) / 2 + b x + c x^2
  with b = mu / v, c = -1 / (2 v), up to constants shared by both components. Each M-step records
  the coefficients u_k = (e, b, c, log n, log v) of both components (10 numbers per row), where
  e = (E[x^2] + reg) / v = 1 + mu^2 / v: the 1 is again a shared constant (and e saves the op
  that would compute mu^2; if the variance was clamped, e differs from 1 + mu^2 / v by the
  cancellation error divided by ``reg_covar``).
* E-step: with two components the responsibilities are sigmoids, r_k = sigmoid(d_k) with
  d_k = l_k - l_{1-k}. One [R, 10] x [10, 10] product gives u_0 - u_1 and u_1 - u_0 (exactly:
  equal components give d = 0, so ties stay ties), one batched product with a per-row ``basis``
  fixed for the whole fit ((-1/2, x, x^2, 1, -1/2) per sample) gives both differences, and one
  sigmoid the responsibilities. r_0 comes from its own difference, not as 1 - r_1, so small
  responsibilities keep their precision.
* M-step: one batched product of the responsibilities with per-sample features gives the
  sufficient statistics (sum r, sum r x^2, sum r x) of both components; then (E[x^2] + reg, mu)
  in one op, v = max(E[x^2] + reg - mu^2, reg) in two (clamping keeps a fit from ever failing:
  "ill-defined empirical covariance" cannot happen; on the shifted samples in float64 the
  cancellation error is ~1e-16 * range^2, far below ``reg_covar`` for any cost scale PAA meets),
  (e, b, c) in one division and (log n, log v) in one log. The product also adds sklearn's
  10 * eps to n and writes the constant -1/2 used by that division: both come from an extra
  "phantom" sample whose differences are 0 (responsibility exactly 1/2) and whose features are
  (20 eps, 0, 0, 0, 0, -1); it takes no part in anything else.
* The bound is not computed in the loop. The differences and responsibilities of every E-step
  are kept, and all bounds of a chunk of iterations are evaluated at once when the loop checks for
  convergence: log(e^l_0 + e^l_1) = (l_0 + l_1) / 2 + |d_1| / 2 - log max_k r_k, summed over the
  valid samples (the first term from the coefficients and per-row sample sums; max_k r_k is in
  [1/2, 1], so its log is accurate however far apart the components are; masked and phantom
  samples add the same constant to every bound of a row).
* The constants log(sum_k n_k) = log(count), log(2 pi)/2 and the 1 in e are left out: they are
  the same for both components (responsibilities unchanged) and for every iteration of a row
  (bound differences unchanged up to rounding). The final E-step and the returned parameters are
  computed in the centred form from the statistics of the kept step (recomputed from its kept
  responsibilities by the same product).

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
# workspace (views and buffers) costs about as much as iterating ~16 rows for one check
# interval (8 iterations) on CPU.
_MIN_ROWS_TO_DROP = 16

# Per-component fields of the M-step's statistics buffer [R, 2, _NUM_FIELDS]. The batched product
# writes all of them (sum r, sum r x^2, sum r x, zeros, and -1/2 from the phantom sample); the
# zeros are then overwritten in place, and the variance overwrites sum r x^2 once it is used.
# Fields used together are adjacent, so that one op covers them: (E[x^2] + reg, mean) = 3:5 from
# (sum r x^2, sum r x) = 1:3, (E[x^2] + reg, mean, -1/2) = 3:6 and (mass, variance) = 0:2.
_MASS, _SQUARE_SUM, _SUM, _MEAN_SQUARE, _MEAN, _MINUS_HALF = range(6)
_VARIANCE = _SQUARE_SUM
_NUM_FIELDS = 6
# Per-component E-step coefficients u = (e, b, c, log n, log v) with e = (E[x^2] + reg) / v: the
# first three are one division of (E[x^2] + reg, mean, -1/2) by v, the last two one log of
# (mass, variance). e stands for 1 + mu^2 / v (exact unless the variance was clamped, where the
# difference is the cancellation error over reg_covar): the constant 1 is the same for both
# components and every iteration, so it changes neither the responsibilities nor the bound changes.
_NUM_COEFFICIENTS = 5


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


def _parameters(
    statistics: Tensor, constants: _EMConstants, reg_covar: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Statistics [R, 2, >= 3] (n = sum r + 10 eps, sum r x^2, sum r x) -> (means, variances,
    weights), each [R, 2, 1], by the EM loop's M-step ops (variance at least ``reg_covar``)."""
    mass = statistics.narrow(2, _MASS, 1)
    moments = torch.addcdiv(constants.moment_offsets, statistics.narrow(2, _SQUARE_SUM, 2), mass)
    mean_square, means = moments.unsqueeze(3).unbind(2)  # E[x^2] + reg, mean; [R, 2, 1] each
    variances = torch.addcmul(mean_square, means, means, value=-1.0).clamp_(min=reg_covar)
    return means, variances, mass / mass.sum(dim=1, keepdim=True)


@dataclass
class _RowData:
    """Per-row constants of the fit for R rows of K samples plus the phantom sample (S = K + 1).

    Attributes:
        features: [R, _NUM_FIELDS, S] per-sample features of the M-step product: (1, x^2, x, 0, 0, 0)
            on valid samples (0 on masked ones), and the phantom's (20 eps, 0, 0, 0, 0, -1).
        basis: [R, 5, S] sample functions (-1/2, x, x^2, 1, -1/2) multiplying u = (e, b, c,
            log n, log v) in l_k; zero columns for masked and phantom samples. (u_k - u_{1-k})
            ([R, 2, 5]) times this is d_k = l_k - l_{1-k} ([R, 2, S]).
        half_sample_sums: [R, 10]: u (as [R, 10]) times this is the sum over the valid samples of
            (l_0 + l_1) / 2.
        tolerance_times_count: [R]: sklearn's test on the mean bound, applied to the bound sum.
    """

    features: Tensor
    basis: Tensor
    half_sample_sums: Tensor
    tolerance_times_count: Tensor

    def select(self, rows: Tensor) -> _RowData:
        """The data of ``rows`` ([R'] long)."""
        return _RowData(
            self.features.index_select(0, rows),
            self.basis.index_select(0, rows),
            self.half_sample_sums.index_select(0, rows),
            self.tolerance_times_count.index_select(0, rows),
        )


def _row_data(row_mask: Tensor, shifted: Tensor, count: Tensor, tolerance: float) -> _RowData:
    """[R, K] mask and shifted samples (0 on masked entries), [R] float64 counts -> :class:`_RowData`."""
    num_rows, width = shifted.shape
    valid = row_mask.to(shifted.dtype)
    square = shifted * shifted
    # Both written into zeroed [R, *, S] buffers: the phantom sample (column K) is 0 but in the
    # features' mass and -1/2 fields (stacking into a view is much cheaper than padding after).
    features = shifted.new_zeros((num_rows, _NUM_FIELDS, width + 1))  # [R, 6, S]
    torch.stack([valid, square, shifted], dim=1, out=features.narrow(2, 0, width).narrow(1, _MASS, 3))
    features.select(2, width).copy_(_phantom_features(shifted))
    # Sample functions multiplying u = (e, b, c, log n, log v) in l_k: (-1/2, x, x^2, 1, -1/2).
    minus_half = valid * -0.5
    basis = shifted.new_zeros((num_rows, _NUM_COEFFICIENTS, width + 1))  # [R, 5, S]
    sample_basis = basis.narrow(2, 0, width)  # [R, 5, K]
    torch.stack([minus_half, shifted, square, valid, minus_half], dim=1, out=sample_basis)
    half_sums = sample_basis.sum(dim=2).mul_(0.5)  # [R, 5]
    return _RowData(features, basis, torch.cat([half_sums, half_sums], dim=1), count * tolerance)


# The phantom sample's features (20 eps, 0, 0, 0, 0, -1) per (device, dtype): times its r = 1/2,
# sklearn's 10 eps on n and the -1/2 of c = -1/2 / v. Never written after construction.
_PHANTOM_CACHE: dict[tuple[torch.device, torch.dtype], Tensor] = {}


def _phantom_features(like: Tensor) -> Tensor:
    """[_NUM_FIELDS] features of the phantom sample on ``like``'s device and dtype (cached)."""
    key = (like.device, like.dtype)
    phantom = _PHANTOM_CACHE.get(key)
    if phantom is None:
        phantom = torch.zeros(_NUM_FIELDS, dtype=like.dtype, device=like.device)
        phantom[_MASS] = 20.0 * _FLOAT64_EPS
        phantom[_MINUS_HALF] = -1.0
        _PHANTOM_CACHE[key] = phantom
    return phantom


class _EMConstants:
    """Small constant tensors of the M-step and E-step (see :func:`_em_constants` for the cache).

    Attributes:
        moment_offsets: [2] (reg_covar, 0), added to (E[x^2], mean).
        difference_matrix: [10, 10]: u (as [R, 10]) times this is (u_0 - u_1, u_1 - u_0), exactly
            (every product but two is an exact 0): equal components give d = 0 (ties stay ties).
    """

    def __init__(self, like: Tensor, reg_covar: float) -> None:
        self.moment_offsets = like.new_zeros(2)
        self.moment_offsets.select(0, 0).fill_(reg_covar)
        # Identity minus the permutation that swaps the components' halves of u.
        identity = torch.eye(2 * _NUM_COEFFICIENTS, dtype=like.dtype, device=like.device)
        self.difference_matrix = identity - identity.roll(_NUM_COEFFICIENTS, dims=0)


# One _EMConstants per (device, dtype, reg_covar): they never change, and making them costs six
# tensor ops per fit. Never written after construction (the loop only reads them).
_CONSTANTS_CACHE: dict[tuple[torch.device, torch.dtype, float], _EMConstants] = {}


def _em_constants(like: Tensor, reg_covar: float) -> _EMConstants:
    """The cached :class:`_EMConstants` for ``like``'s device and dtype and ``reg_covar``."""
    key = (like.device, like.dtype, reg_covar)
    constants = _CONSTANTS_CACHE.get(key)
    if constants is None:
        constants = _CONSTANTS_CACHE[key] = _EMConstants(like, reg_covar)
    return constants


class _EMWorkspace:
    """Preallocated records and views of the EM loop for R rows and up to T iterations per chunk.

    Every tensor the loop writes is a view made here once, so one iteration is only arithmetic:
    a [R, 10] x [10, 10] product, a batched product to [R, 2, S] (S = K + 1 samples), a sigmoid,
    a batched product to [R, 2, 6] and 5 ops on [R, 2, *] fields. Chunks of fewer than T iterations
    use a prefix of the records.

    Args:
        data: the working rows' :class:`_RowData`.
        start: [R, 2, 5] E-step coefficients of the first iteration, or None: the caller writes
            them into ``slots[0]`` (as [R, 10]).
        previous_bound: [1, R] bound sum of the iteration before the first one (-inf at the start).
        num_steps: T.
        constants: the fit's :class:`_EMConstants`.
        row_offsets: [>= R] long, 0, 1, 2, ... (a prefix is used), or None: made here.
    """

    def __init__(
        self,
        data: _RowData,
        start: Tensor | None,
        previous_bound: Tensor,
        num_steps: int,
        constants: _EMConstants,
        row_offsets: Tensor | None = None,
    ) -> None:
        features = data.features
        num_rows, _, samples = features.shape
        self.data = data
        self.constants = constants
        self.num_rows = num_rows
        self.num_steps = num_steps
        self.previous_bound = previous_bound  # [1, R]
        self.features_by_sample = features.transpose(1, 2)  # [R, S, _NUM_FIELDS]
        # Records, step-major. coefficients[t] holds the u of iteration t's E-step (t = 0: ``start``;
        # t + 1: written by iteration t's M-step); differences[t] and responsibilities[t] are
        # iteration t's E-step. responsibilities[T] (``kept``) is no iteration's: it holds each
        # row's kept E-step once the row has converged (see fit_rows), so that a check gathers the
        # kept records of all rows with one index_select from the T + 1 slots.
        self.coefficients = features.new_empty((num_steps + 1, num_rows, 2, _NUM_COEFFICIENTS))
        if start is not None:
            self.coefficients.select(0, 0).copy_(start)
        self.differences = features.new_empty((num_steps, num_rows, 2, samples))
        self.responsibilities = features.new_empty((num_steps + 1, num_rows, 2, samples))
        # stopped[t]: the bound converged at step t; row t = T' of a T'-step chunk is a sentinel 1.
        # Stored row-major ([R, T + 1], viewed as [T + 1, R]): argmax over the steps then runs
        # along contiguous memory, several times faster on CPU than across rows.
        self.stopped = features.new_ones((num_rows, num_steps + 1), dtype=torch.uint8).t()
        if row_offsets is None:
            row_offsets = torch.arange(num_rows, device=features.device)
        elif row_offsets.shape[0] != num_rows:
            row_offsets = row_offsets.narrow(0, 0, num_rows)
        self.row_offsets = row_offsets  # [R]
        # M-step scratch [R, 2, _NUM_FIELDS] (see _MASS...) and its views, made by few ops (each
        # view op costs about as much as a small arithmetic op): all single-field columns by one
        # unbind, all windows of two adjacent fields by one unfold and unbind.
        statistics = features.new_empty((num_rows, 2, _NUM_FIELDS))
        self.statistics = statistics
        columns = statistics.unsqueeze(3).unbind(2)  # [R, 2, 1] each
        pairs = statistics.unfold(2, 2, 1).unbind(2)  # [R, 2, 2] each: fields (i, i + 1)
        self.moment_sums = pairs[_SQUARE_SUM]  # (sum r x^2, sum r x)
        self.mass = columns[_MASS]
        self.moments = pairs[_MEAN_SQUARE]  # (E[x^2] + reg, mean)
        self.mean, self.mean_square, self.variance = columns[_MEAN], columns[_MEAN_SQUARE], columns[_VARIANCE]
        self.variance_column = self.variance  # [R, 2, 1]
        self.numerators = statistics.narrow(2, _MEAN_SQUARE, 3)  # (E[x^2] + reg, mean, -1/2)
        self.mass_and_variance = pairs[_MASS]
        # (u_0 - u_1, u_1 - u_0), [R, 10] and [R, 2, 5].
        self.coefficient_differences = features.new_empty((num_rows, 2 * _NUM_COEFFICIENTS))
        self.difference_pairs = self.coefficient_differences.view(num_rows, 2, _NUM_COEFFICIENTS)
        # [(T + 1) * R, 2, S]: step t of row r is entry t * R + r; the kept records are t = T.
        self.flat_responsibilities = self.responsibilities.view((num_steps + 1) * num_rows, 2, samples)
        # [R, 10] u of every slot: slot t is read by iteration t, slot t + 1 written by it.
        flat_coefficients = self.coefficients.view(num_steps + 1, num_rows, 2 * _NUM_COEFFICIENTS)
        self.slots = flat_coefficients.unbind(0)
        # Views of the convergence check after a chunk of T iterations (shorter chunks narrow them).
        self.stopped_steps = self.stopped.narrow(0, 0, num_steps)
        self.step_coefficients = flat_coefficients.narrow(0, 0, num_steps)  # [T, R, 10]
        self.step_responsibilities = self.responsibilities.narrow(0, 0, num_steps).unbind(2)  # 2 x [T, R, S]
        self.step_differences = self.differences.select(2, 1)  # [T, R, S] d_1
        step_responsibilities = self.responsibilities.unbind(0)  # T + 1 x [R, 2, S]
        self.kept = step_responsibilities[num_steps]  # [R, 2, S]
        self.steps = list(
            zip(
                self.slots,  # [R, 10] u of the E-step (one more than the steps)
                self.differences.unbind(0),  # [R, 2, S]
                step_responsibilities,  # [R, 2, S] (one more than the steps: the kept records)
                self.coefficients.narrow(3, 0, 3).unbind(0)[1:],  # [R, 2, 3] next (e, b, c)
                self.coefficients.narrow(3, 3, 2).unbind(0)[1:],  # [R, 2, 2] next (log n, log v)
                strict=False,
            )
        )


def _em_iterations(work: _EMWorkspace, num_steps: int, reg_covar: float) -> None:
    """Runs ``num_steps`` (<= T) EM iterations on all rows of ``work``, recording every step.

    No row is frozen here: iteration t reads ``work.coefficients[t]``, writes its E-step to
    ``work.differences[t]`` and ``work.responsibilities[t]`` and the next coefficients to
    ``work.coefficients[t + 1]``. The caller finds each row's first converged step afterwards; a
    row's arithmetic never depends on the other rows, so iterating past convergence changes nothing.
    """
    basis, features_by_sample = work.data.basis, work.features_by_sample
    coefficient_differences, difference_pairs = work.coefficient_differences, work.difference_pairs
    difference_matrix, moment_offsets = work.constants.difference_matrix, work.constants.moment_offsets
    statistics, moment_sums, mass, moments = work.statistics, work.moment_sums, work.mass, work.moments
    mean, mean_square = work.mean, work.mean_square
    variance, variance_column, numerators = work.variance, work.variance_column, work.numerators
    mass_and_variance = work.mass_and_variance
    for coefficients, differences, responsibilities, ratios, logs in work.steps[:num_steps]:
        # E-step: d_k = l_k - l_{1-k} for both components, r_k = sigmoid(d_k). The coefficients are
        # subtracted first, so that equal components give d = 0 exactly (ties stay ties).
        torch.mm(coefficients, difference_matrix, out=coefficient_differences)  # [R, 10]
        torch.bmm(difference_pairs, basis, out=differences)  # [R, 2, S]
        torch.sigmoid(differences, out=responsibilities)
        # M-step: (sum r, sum r x^2, sum r x, 0, 0, -1/2) per component (phantom: n += 10 eps).
        torch.bmm(responsibilities, features_by_sample, out=statistics)  # [R, 2, 6]
        torch.addcdiv(moment_offsets, moment_sums, mass, out=moments)  # E[x^2] + reg, mu
        torch.addcmul(mean_square, mean, mean, value=-1.0, out=variance)
        variance.clamp_(min=reg_covar)  # v = max(E[x^2] + reg - mu^2, reg)
        # Next E-step's coefficients: (e, b, c) = (E[x^2] + reg, mu, -1/2) / v, then (log n, log v).
        torch.div(numerators, variance_column, out=ratios)
        torch.log(mass_and_variance, out=logs)


def _bound_sums(work: _EMWorkspace, num_steps: int) -> Tensor:
    """[T', R] bound sums of the first T' recorded steps: sum over the valid samples of
    log(e^l_0 + e^l_1), up to a per-row constant (the left-out constants, and log 2 per masked or
    phantom sample, whose responsibilities are 1/2)."""
    coefficients, differences = work.step_coefficients, work.step_differences  # [T, R, *]
    first, second = work.step_responsibilities
    if num_steps < work.num_steps:
        coefficients, differences = coefficients.narrow(0, 0, num_steps), differences.narrow(0, 0, num_steps)
        first, second = first.narrow(0, 0, num_steps), second.narrow(0, 0, num_steps)
    average = torch.linalg.vecdot(coefficients, work.data.half_sample_sums)  # sum (l_0 + l_1) / 2
    # max_k r_k = sigmoid(|d|) is in [1/2, 1]: its log is accurate (log(1 + e^-|d|) = -log of it).
    per_sample = torch.maximum(first, second).log_()
    # sum of 1/2 |l_1 - l_0| - log max_k r_k over the samples
    spread = differences.abs()
    return average.sub_(per_sample.sub_(spread, alpha=0.5).sum(dim=2))


@dataclass
class RowFit:
    """:func:`fit_rows`' result for all G rows (R = G).

    A row without a valid entry gets component False and log-density -inf everywhere; its other
    fields mean nothing (:func:`fit_two_component_gmm` replaces them with its defaults).

    Attributes:
        component: [R, K] bool, True for component 1 (ties -> component 0); False on masked entries.
        log_density: [R, K] float64 mixture log-density; -inf on masked entries.
        means, variances, weights: [R, 2, 1] float64 each (means in the input's scale).
        num_iterations: [R] long; converged: [R] bool.
    """

    component: Tensor
    log_density: Tensor
    means: Tensor
    variances: Tensor
    weights: Tensor
    num_iterations: Tensor
    converged: Tensor


def _initial_coefficients(row_count: Tensor, row_range: Tensor, out: Tensor) -> None:
    """[R] counts and ranges (max - min) -> ``out`` [R, 10]: the initial E-step coefficients u.

    Initial parameters on the shifted samples: means (0, max - min), variances 1, weights 0.5,
    i.e. n_k = count / 2, so e = 1 + mu^2, b = mu, c = -1/2, log n = log(count / 2), log v = 0.
    """
    half_log_mass = (row_count * 0.5).log_()
    zeros = torch.zeros_like(row_count)
    ones, minus_half = zeros + 1.0, zeros - 0.5
    first = [ones, zeros, minus_half, half_log_mass, zeros]
    second = [torch.addcmul(ones, row_range, row_range), row_range, minus_half, half_log_mass, zeros]
    torch.stack(first + second, dim=1, out=out)


def fit_rows(
    values: Tensor,
    mask: Tensor,
    max_iterations: int = 100,
    tolerance: float = 1e-3,
    reg_covar: float = 1e-6,
    check_every: int = 8,
    first_check: int = 3,
) -> RowFit:
    """The fit of :func:`fit_two_component_gmm` in the loop's own layout (parameters [R, 2, 1],
    component bool), without the defaults for rows without values (``select_positives`` masks
    those rows anyway). Same arguments as :func:`fit_two_component_gmm`; run it under inference
    mode.
    """
    device = values.device
    values64 = values.to(torch.float64)
    # |x| < inf is isfinite (NaN compares false) in two kernels instead of isfinite's four.
    mask = mask & (values64.abs() < math.inf)
    # Every row is fitted, also one without values (no host sync to find the others): its samples
    # are all masked, so with a count of 1 in the initial weights and the tolerance its two
    # components stay equal and finite and its bound constant; it converges at the second
    # iteration. Counts are exact (integers far below 2^53).
    row_count = mask.sum(dim=1, dtype=torch.float64).clamp_(min=1.0)  # [R] (R = G)
    # Shift every row by its minimum (EM is shift-equivariant; see the module docstring).
    row_min = torch.where(mask, values64, float("inf")).amin(dim=1, keepdim=True)  # [R, 1]
    shifted = torch.where(mask, values64 - row_min, 0.0)  # [R, K], >= 0, 0 on masked entries
    all_rows = _row_data(mask, shifted, row_count, tolerance)

    num_fitted = values.shape[0]
    # Working set: the rows still iterating, as indices into the R fitted rows, with their stops.
    # Every ``check_every`` iterations each row's first converged step is found and its
    # responsibilities kept (in the workspace's ``kept`` slot); finished rows keep iterating
    # (harmlessly: rows are independent) until enough of them have finished, then the working set
    # shrinks to the unfinished rows (see _MIN_ROWS_TO_DROP). A workspace serves chunks of any
    # length up to its T (a prefix of its records); the first one is made for ``first_check``
    # iterations only (most rows finish there, then the set shrinks) unless the set has too few
    # rows to ever shrink.
    active = torch.arange(num_fitted, device=device)
    row_offsets = active  # 0, 1, 2, ...: every workspace's row offsets are a prefix
    # [R'] stop of every working row: the 0-based iteration at which it converged (== the
    # iterations done if it did not); set by the first check.
    active_stop = row_offsets
    max_steps = min(max(first_check, check_every), max_iterations)
    constants = _em_constants(shifted, reg_covar)
    first_steps = max(min(first_check, max_iterations), 1)
    if num_fitted < _MIN_ROWS_TO_DROP:  # never shrinks: one workspace for every chunk
        first_steps = max(first_steps, max_steps)
    work = _EMWorkspace(
        all_rows, None, shifted.new_full((1, num_fitted), -math.inf), first_steps, constants, row_offsets
    )
    # True while no row of the working set has converged at a check (a new workspace): the
    # check then needs no merge with earlier stops.
    fresh = True
    _initial_coefficients(row_count, shifted.amax(dim=1), out=work.slots[0])
    # Kept statistics (sum r, ...) and stops of the rows that left the working set, [R, 2, 6] and
    # [R], made at the first shrink: 12 numbers a row to scatter instead of the 2 S responsibilities.
    # If the set never shrinks, the last check's records are every row's.
    kept_statistics: Tensor | None = None
    row_stop = active_stop  # replaced by the [R] buffer at the first shrink
    done = 0
    while num_fitted > 0 and done < max_iterations:
        steps = min(first_check if done == 0 else check_every, max_iterations - done)
        if steps > work.num_steps:  # the same rows, longer chunks
            longer = _EMWorkspace(
                work.data,
                work.coefficients.select(0, 0),
                work.previous_bound,
                max_steps,
                constants,
                row_offsets,
            )
            longer.kept.copy_(work.kept)
            work = longer
        _em_iterations(work, steps, reg_covar)
        # |change of the bound sum| < tolerance * count is sklearn's test on the mean. The first
        # converged step is the first 1 of ``stopped``, whose row ``steps`` is a sentinel 1 for rows
        # that did not converge in this chunk (the last row is never written; shorter chunks set theirs).
        sums = _bound_sums(work, steps)  # [T', R']
        changes = torch.diff(sums, dim=0, prepend=work.previous_bound).abs_()  # [T', R']
        if steps == work.num_steps:
            stopped, stopped_steps = work.stopped, work.stopped_steps
        else:  # a shorter chunk: its own sentinel row
            stopped = work.stopped.narrow(0, 0, steps + 1)
            stopped_steps = stopped.narrow(0, 0, steps)
            stopped.select(0, steps).fill_(1)
        torch.lt(changes, work.data.tolerance_times_count, out=stopped_steps)
        first_stop = stopped.argmax(dim=0)  # [R'], steps if the row did not converge
        # Kept E-step: this chunk's step of the row's first stop, or slot T (``kept``: unchanged) if
        # it converged in an earlier chunk. A row that has not converged yet reads slot ``steps``
        # (anything: replaced at a later check), except at the iteration cap, where it keeps its
        # last step. Rows that converged in an earlier chunk keep their stop (a stop == done +
        # steps means "not yet"); in a fresh working set no row has.
        last_chunk = done + steps >= max_iterations
        kept_step = torch.clamp(first_stop, max=steps - 1) if last_chunk else first_stop
        if fresh:
            active_stop = first_stop + done if done > 0 else first_stop
        else:
            earlier = active_stop < done
            kept_step = torch.where(earlier, work.num_steps, kept_step)
            active_stop = torch.where(earlier, active_stop, first_stop + done)
        kept_index = torch.add(work.row_offsets, kept_step, alpha=work.num_rows)  # into [(T + 1) * R']
        kept = work.flat_responsibilities.index_select(0, kept_index)  # [R', 2, S]
        fresh = False
        done += steps
        unfinished = active_stop >= done
        remaining = int(unfinished.sum())  # host sync, once per check
        if remaining == 0 or last_chunk:
            break
        previous_bound = sums.narrow(0, steps - 1, 1)
        if active.shape[0] - remaining >= _MIN_ROWS_TO_DROP:  # shrink the working set
            if kept_statistics is None:
                kept_statistics = shifted.new_empty((num_fitted, 2, _NUM_FIELDS))
                row_stop = torch.empty_like(active_stop)
            kept_statistics.index_copy_(0, active, torch.bmm(kept, work.features_by_sample))
            row_stop.index_copy_(0, active, active_stop)
            keep = torch.nonzero(unfinished).flatten()
            active = active.index_select(0, keep)
            active_stop = active_stop.index_select(0, keep)
            # Unfinished rows have no kept record yet (the next check writes it).
            shrunk = _EMWorkspace(
                work.data.select(keep),
                None,
                previous_bound.index_select(1, keep),
                max_steps,
                constants,
                row_offsets,
            )
            torch.index_select(work.slots[steps], 0, keep, out=shrunk.slots[0])
            work = shrunk
            fresh = True
        else:  # the same rows go on: the next chunk starts from this chunk's end
            work.previous_bound = previous_bound
            work.slots[0].copy_(work.slots[steps])
            work.kept.copy_(kept)
    if done == 0:  # no iteration (max_iterations < 1): finite parameters all the same
        kept = work.kept.fill_(0.5)
        active_stop = torch.zeros_like(active_stop)
    # Statistics of the kept E-steps ([R, 2, 6]): the product of the M-step, row by row the same.
    statistics = torch.bmm(kept, work.features_by_sample)
    if kept_statistics is not None:  # the working set shrank
        statistics = kept_statistics.index_copy_(0, active, statistics)
        row_stop.index_copy_(0, active, active_stop)
    else:
        row_stop = active_stop
    row_converged = row_stop < done
    row_iterations = torch.clamp(row_stop + 1, max=done)  # sklearn's n_iter_: max_iter if not converged

    # Final E-step with the kept parameters (centred form), as sklearn's predict / score_samples.
    means, variances, weights = _parameters(statistics, constants, reg_covar)  # [R, 2, 1] each, shifted
    weighted = _weighted_log_prob(shifted[:, None, :], means, variances, weights.log())  # [R, 2, K]
    first, second = weighted.unbind(1)
    log_density = torch.where(mask, torch.logaddexp(first, second), -float("inf"))  # [R, K]
    return RowFit(
        component=(second > first) & mask,
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
    # Rows without values: means 0, variances 1, weights 0.5, no iteration.
    has_values = (mask & torch.isfinite(values)).any(dim=1)  # [G]
    fitted = torch.cat([fit.means, fit.variances, fit.weights], dim=2)  # [G, 2, 3]
    defaults = fit.means.new_tensor([0.0, 1.0, 0.5]).expand_as(fitted)
    parameters = torch.where(has_values[:, None, None], fitted, defaults)
    num_iterations = torch.where(has_values, fit.num_iterations, 0)
    converged = fit.converged & has_values
    return GaussianMixtureFit(
        component=fit.component.long(),
        log_density=fit.log_density,
        means=parameters[:, :, 0],
        variances=parameters[:, :, 1],
        weights=parameters[:, :, 2],
        num_iterations=num_iterations,
        converged=converged,
    )
