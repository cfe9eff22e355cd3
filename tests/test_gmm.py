"""Batched two-component GMM (docs/algorithms.md §1.5 D, §9.2): hand-computed answers, robustness, and
scikit-learn's ``GaussianMixture`` as an oracle on 2,000 random cost vectors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from ladet.assign.gmm import fit_two_component_gmm
from ladet.assign.paa import separate_positives
from tests.support.reference_paa import fit_sklearn_gmm, separate_sorted


def _rows(vectors: list[np.ndarray], width: int = 45) -> tuple[torch.Tensor, torch.Tensor]:
    values = torch.full((len(vectors), width), float("inf"), dtype=torch.float64)
    mask = torch.zeros(len(vectors), width, dtype=torch.bool)
    for row, vector in enumerate(vectors):
        values[row, : len(vector)] = torch.from_numpy(np.asarray(vector, dtype=np.float64))
        mask[row, : len(vector)] = True
    return values, mask


def test_two_far_samples_known_answer():
    # x = (0, 10). Iteration 1: each sample is (to exp(-50)) fully in its own component, so the
    # M-step gives means (0, 10), variances 0 + reg = 1e-6, weights (.5, .5); bound = log .5 - .5 log 2pi.
    # Iteration 2: bound = log .5 - .5 log(2 pi 1e-6) = 5.2958 (change 6.9 > tol). Iteration 3: the
    # parameters do not move -> change 0 < tol -> converged after 3 iterations.
    fit = fit_two_component_gmm(torch.tensor([[0.0, 10.0]]), torch.ones(1, 2, dtype=torch.bool))
    assert fit.num_iterations.tolist() == [3] and fit.converged.tolist() == [True]
    assert fit.component.tolist() == [[0, 1]]
    torch.testing.assert_close(fit.means, torch.tensor([[0.0, 10.0]], dtype=torch.float64))
    torch.testing.assert_close(fit.variances, torch.full((1, 2), 1e-6, dtype=torch.float64))
    torch.testing.assert_close(fit.weights, torch.full((1, 2), 0.5, dtype=torch.float64))
    expected_density = math.log(0.5) - 0.5 * math.log(2 * math.pi * 1e-6)
    torch.testing.assert_close(fit.log_density, torch.full((1, 2), expected_density, dtype=torch.float64))


def test_separation_scheme_c_known_answer():
    # Component 0 = entries 0, 1, 2, 4 (entry 3 is component 1): F in ascending order = (0, 1, 2, 4).
    # Highest density within F is entry 2 -> positives = 0, 1, 2. Entry 3 is never positive.
    component = torch.tensor([[0, 0, 0, 1, 0, 1]])
    density = torch.tensor([[0.1, 0.5, 0.9, 5.0, 0.2, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, True, True, False]])
    assert separate_positives(component, density, mask).tolist() == [[True, True, True, False, False, False]]
    # Tie of the peak between entries 1 and 2 -> the lower cost (entry 1) wins.
    density = torch.tensor([[0.1, 0.9, 0.9, 5.0, 0.2, 0.0]], dtype=torch.float64)
    assert separate_positives(component, density, mask).tolist() == [[True, True, False, False, False, False]]
    # Empty foreground -> no positive.
    component = torch.tensor([[1, 1, 1, 1, 1, 1]])
    assert not separate_positives(component, density, mask).any()


def test_degenerate_rows_are_finite_and_rows_are_independent():
    rows = [
        np.full(7, 2.5),  # all equal
        np.array([1.0, 1.0]),  # two equal values
        np.array([3.0, 3.0 + 1e-7, 3.0 + 2e-7]),  # near duplicates
        np.linspace(1e6, 3e6, 20),  # huge scale
        np.linspace(1e-7, 3e-7, 20),  # tiny scale
        np.array([0.5, 0.6, 4.0, 4.1, 4.2]),  # ordinary
        np.array([4.0]),  # one value
        np.array([]),  # empty row
    ]
    values, mask = _rows(rows)
    fit = fit_two_component_gmm(values, mask)
    for tensor in (fit.means, fit.variances, fit.weights):
        assert torch.isfinite(tensor).all()
    assert torch.isfinite(fit.log_density[mask]).all()
    # All equal: both components coincide, every weighted density ties -> component 0 everywhere.
    assert fit.component[0, :7].tolist() == [0] * 7
    positive = separate_positives(fit.component, fit.log_density, mask)
    assert positive[0].tolist() == [True] + [False] * 44  # peak tie -> the lowest cost only
    assert not positive[7].any()
    # The empty row: the defaults, no iteration.
    assert fit.means[7].tolist() == [0.0, 0.0] and fit.variances[7].tolist() == [1.0, 1.0]
    assert fit.weights[7].tolist() == [0.5, 0.5]
    assert int(fit.num_iterations[7]) == 0 and not bool(fit.converged[7])
    # Fitting each row alone gives the same answer as fitting them together (frozen rows).
    for row in range(len(rows)):
        alone = fit_two_component_gmm(values[row : row + 1], mask[row : row + 1])
        assert torch.equal(alone.component, fit.component[row : row + 1])
        assert torch.equal(alone.num_iterations, fit.num_iterations[row : row + 1])
        torch.testing.assert_close(alone.means, fit.means[row : row + 1], rtol=0, atol=0)


def test_non_finite_values_do_not_poison_other_rows():
    clean = [np.array([0.5, 0.6, 0.7, 3.0, 3.2]), np.array([1.0, 1.2, 5.0])]
    values, mask = _rows(clean)
    reference = fit_two_component_gmm(values, mask)
    dirty = values.clone()
    dirty_mask = mask.clone()
    dirty = torch.cat([dirty, torch.tensor([[float("nan"), 1.0, float("inf")] + [0.0] * 42])], dim=0)
    dirty_mask = torch.cat([dirty_mask, torch.tensor([[True, True, True] + [False] * 42])], dim=0)
    fit = fit_two_component_gmm(dirty, dirty_mask)
    assert torch.equal(fit.component[:2], reference.component)
    torch.testing.assert_close(fit.log_density[:2], reference.log_density, rtol=0, atol=0)
    # The NaN/inf entries are treated as absent: only the finite entry remains, finite answers.
    assert torch.isfinite(fit.means[2]).all() and fit.log_density[2, 0] == -float("inf")


def _random_vector(rng: np.random.Generator, kind: int) -> np.ndarray:
    size = int(rng.integers(2, 46))
    if kind == 0:  # foreground / background clusters
        foreground = int(rng.integers(1, size)) if size > 1 else 1
        vector = np.concatenate([rng.normal(0.8, 0.25, foreground), rng.normal(2.5, 0.7, size - foreground)])
    elif kind == 1:  # one cluster
        vector = rng.gamma(4.0, 0.5, size)
    elif kind == 2:  # exact duplicates (values rounded to 0.1)
        vector = np.round(rng.normal(1.5, 0.6, size), 1)
    elif kind == 3:  # near duplicates: copies of other entries, moved by 0 or 1 float32 ulp
        vector = np.concatenate([rng.normal(0.8, 0.25, size // 2), rng.normal(2.5, 0.7, size - size // 2)])
        vector = vector.astype(np.float32)
        copies = int(rng.integers(1, size)) if size > 1 else 1
        sources = rng.integers(0, size, copies)
        vector[:copies] = vector[sources] + rng.choice([-1, 0, 1], copies) * np.spacing(vector[sources])
    elif kind == 4:  # all values equal
        vector = np.full(size, rng.uniform(0.2, 4.0))
    else:  # tight cluster at the scale of reg_covar (std 1e-3 .. 1e-2) plus outliers
        vector = rng.normal(1.2, 10 ** rng.uniform(-3, -2), size)
        vector[: size // 4] += rng.uniform(1.0, 3.0, size // 4)
    return np.sort(np.clip(vector, 0.01, None).astype(np.float32))


def test_matches_sklearn_on_random_cost_vectors():
    """Identical positive sets to sklearn's GaussianMixture (float64 input, same inits) for every
    vector, except (a) the two-foreground-sample tie of §9.3 and (b) rows whose whole range is below
    sqrt(reg_covar) = 1e-3 (both components collapse onto one point; labels are decided by rounding);
    those must still give a sane answer."""
    rng = np.random.default_rng(20240521)
    vectors = [_random_vector(rng, index % 6) for index in range(2000)]
    values, mask = _rows(vectors)
    fit = fit_two_component_gmm(values, mask)
    positive = separate_positives(fit.component, fit.log_density, mask)
    assert torch.isfinite(fit.means).all() and torch.isfinite(fit.log_density[mask]).all()

    counts = {"identical": 0, "two_foreground": 0, "collapsed": 0, "sklearn_failed": 0}
    unexpected = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row, vector in enumerate(vectors):
            ours = set(torch.nonzero(positive[row]).flatten().tolist())
            ours_foreground = int(((fit.component[row] == 0) & mask[row]).sum())
            assert ours <= set(range(len(vector)))
            try:
                component, density = fit_sklearn_gmm(vector.astype(np.float64))
            except ValueError:
                counts["sklearn_failed"] += 1
                continue
            expected = set(separate_sorted(component, density).tolist())
            if expected == ours:
                counts["identical"] += 1
            elif ours_foreground == 2 or int((component == 0).sum()) == 2:
                counts["two_foreground"] += 1
                # the tie only moves the cut between the two foreground samples
                assert len(expected ^ ours) == 1 and min(expected | ours) == 0
            elif float(vector.max() - vector.min()) < 1e-3:
                counts["collapsed"] += 1
            else:
                unexpected.append((row, vector.tolist(), sorted(expected), sorted(ours)))
    assert not unexpected, unexpected[:3]
    assert counts["identical"] >= 0.95 * len(vectors), counts
    assert counts["two_foreground"] + counts["collapsed"] <= 0.05 * len(vectors), counts


@pytest.mark.parametrize("check_every", [1, 3, 7])
def test_check_interval_does_not_change_the_answer(check_every):
    rng = np.random.default_rng(5)
    values, mask = _rows([_random_vector(rng, index % 6) for index in range(60)])
    reference = fit_two_component_gmm(values, mask, check_every=1)
    fit = fit_two_component_gmm(values, mask, check_every=check_every)
    assert torch.equal(fit.component, reference.component)
    assert torch.equal(fit.num_iterations, reference.num_iterations)
    torch.testing.assert_close(fit.log_density, reference.log_density, rtol=0, atol=0)


def test_fit_returns_ordinary_tensors_not_inference_tensors():
    # The fit runs under torch.inference_mode; callers must get tensors they can use with autograd.
    values = torch.tensor([[1.0, 1.1, 1.2, 5.0, 5.2]])
    fit = fit_two_component_gmm(values, torch.ones_like(values, dtype=torch.bool))
    for tensor in (fit.component, fit.log_density, fit.means, fit.variances, fit.weights, fit.num_iterations):
        assert not tensor.is_inference()
    fit.means.add_(1.0)  # in-place use is allowed on ordinary tensors


def _assert_identical_fits(fit, reference) -> None:
    """Every field of two ``GaussianMixtureFit`` results equal, bit for bit."""
    for name in ("num_iterations", "converged", "component", "means", "variances", "weights", "log_density"):
        assert torch.equal(getattr(fit, name), getattr(reference, name)), name


@pytest.mark.parametrize("check_every", [1, 3, 8, 100])
@pytest.mark.parametrize("max_iterations", [2, 5, 100])
def test_check_schedule_and_iteration_cap_do_not_change_the_answer(check_every, max_iterations):
    # Rows are iterated past their convergence between checks; the parameters kept must be those of
    # the first converged iteration, and the iteration cap must cut every row at the same point.
    rng = np.random.default_rng(11)
    values, mask = _rows([_random_vector(rng, index % 6) for index in range(60)])
    reference = fit_two_component_gmm(values, mask, max_iterations, check_every=1)
    fit = fit_two_component_gmm(values, mask, max_iterations, check_every=check_every)
    _assert_identical_fits(fit, reference)
    if max_iterations == 2:
        assert int(fit.num_iterations.max()) <= 2


def _plain_em(
    vector: np.ndarray, max_iterations: int = 100, tolerance: float = 1e-3, reg_covar: float = 1e-6
):
    """One row's EM written out the textbook way (float64, explicit log-sum-exp bound), with the
    batched loop's variance rule max(E[x^2] + reg - mu^2, reg): the oracle for the batched E-step,
    M-step, bound and per-row stopping rule."""
    # On the samples shifted by their minimum, as the batched fit (EM is shift-equivariant; unshifted,
    # E[x^2] - mu^2 loses digits that matter next to reg_covar).
    offset = float(np.min(vector))
    x = np.asarray(vector, dtype=np.float64) - offset
    eps10 = 10.0 * np.finfo(np.float64).eps
    means, variances, weights = np.array([x.min(), x.max()]), np.ones(2), np.full(2, 0.5)

    def weighted_log_prob(means, variances, weights):
        return np.log(weights) - 0.5 * (np.log(2 * np.pi * variances) + (x[:, None] - means) ** 2 / variances)

    previous, converged, iterations = -np.inf, False, 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 (n_iter_ after the loop)
        log_prob = weighted_log_prob(means, variances, weights)
        log_norm = np.logaddexp(log_prob[:, 0], log_prob[:, 1])
        bound = log_norm.mean()
        resp = np.exp(log_prob - log_norm[:, None])
        mass = resp.sum(axis=0) + eps10
        means = (resp * x[:, None]).sum(axis=0) / mass
        variances = np.maximum((resp * x[:, None] ** 2).sum(axis=0) / mass + reg_covar - means**2, reg_covar)
        weights = mass / mass.sum()
        if abs(bound - previous) < tolerance:
            converged = True
            break
        previous = bound
    log_prob = weighted_log_prob(means, variances, weights)
    component = (log_prob[:, 1] > log_prob[:, 0]).astype(np.int64)
    density = np.logaddexp(log_prob[:, 0], log_prob[:, 1])
    return iterations, converged, component, density, means + offset, variances, weights


def _edge_rows(rng: np.random.Generator) -> list[np.ndarray]:
    return [
        np.array([4.0]),  # one value
        np.array([1.0, 1.0]),  # two equal values
        np.array([0.3, 2.0]),  # two values
        np.full(9, 1.7),  # all equal
        np.array([0.0, 0.0, 100.0, 100.0 + 1e-3]),  # far apart, variances near reg_covar: r underflows to 0
        np.concatenate([rng.normal(0.5, 1e-4, 6), rng.normal(50.0, 1e-4, 6)]),  # far, tight clusters
        np.linspace(1e-7, 3e-7, 20),  # tiny scale
        np.array([0.5, 0.5, 0.5, 3.0, 3.0, 3.0]),  # ties within both components
    ]


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_plain_em_iteration_by_iteration(seed):
    rng = np.random.default_rng(seed)
    vectors = [_random_vector(rng, index % 6).astype(np.float64) for index in range(120)] + _edge_rows(rng)
    values, mask = _rows(vectors, width=48)
    # Masked entries may hold anything (NaN, inf, huge values) and take no part.
    garbage = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e30], dtype=values.dtype)
    values[~mask] = garbage.repeat(values.numel())[: int((~mask).sum())]
    fit = fit_two_component_gmm(values, mask)
    for row, vector in enumerate(vectors):
        iterations, converged, component, density, means, variances, weights = _plain_em(vector)
        width = len(vector)
        assert int(fit.num_iterations[row]) == iterations, (row, vector)
        assert bool(fit.converged[row]) == converged, row
        if float(vector.max() - vector.min()) >= 1e-3:  # collapsed rows: labels decided by rounding
            assert fit.component[row, :width].tolist() == component.tolist(), (row, vector)
        # Variances near reg_covar carry the cancellation error of E[x^2] - mu^2 (~1e-16 * x^2 / reg).
        torch.testing.assert_close(fit.means[row], torch.from_numpy(means), rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(fit.weights[row], torch.from_numpy(weights), rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(fit.variances[row], torch.from_numpy(variances), rtol=1e-5, atol=0)
        torch.testing.assert_close(
            fit.log_density[row, :width], torch.from_numpy(density), rtol=1e-5, atol=1e-5
        )
        assert torch.isinf(fit.log_density[row, width:]).all()
    # All-equal rows: both components coincide exactly (exact coefficient differences): ties -> 0.
    assert fit.component[123, :9].tolist() == [0] * 9


def test_no_fitted_rows_and_iteration_cap_zero():
    # Every row empty (nothing to fit) and max_iterations = 0: defaults, no iteration, no failure.
    values = torch.full((3, 5), float("nan"), dtype=torch.float64)
    fit = fit_two_component_gmm(values, torch.zeros(3, 5, dtype=torch.bool))
    assert fit.num_iterations.tolist() == [0, 0, 0] and not fit.converged.any()
    assert torch.isinf(fit.log_density).all() and (fit.component == 0).all()
    rows = [np.array([0.5, 0.6, 4.0, 4.1])]
    values, mask = _rows(rows)
    fit = fit_two_component_gmm(values, mask, max_iterations=0)
    assert fit.num_iterations.tolist() == [0] and not fit.converged.any()
    assert torch.isfinite(fit.means).all() and torch.isfinite(fit.log_density[mask]).all()


def test_non_finite_entries_of_every_kind_are_masked_out():
    # NaN, +inf and -inf entries under a True mask are left out (|x| < inf is the finiteness test);
    # a large finite value stays in.
    vectors = [np.array([0.5, 0.6, 0.7, 3.0, 3.2, 3.1])]
    values, mask = _rows(vectors, width=10)
    reference = fit_two_component_gmm(values, mask)
    dirty, dirty_mask = values.clone(), mask.clone()
    dirty[0, 6:9] = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=torch.float64)
    dirty_mask[0, 6:9] = True
    fit = fit_two_component_gmm(dirty, dirty_mask)
    for name in ("component", "log_density", "means", "variances", "weights", "num_iterations", "converged"):
        assert torch.equal(getattr(fit, name), getattr(reference, name)), name
    huge = values.clone()
    huge[0, 6] = 1e6
    huge_mask = mask.clone()
    huge_mask[0, 6] = True
    assert torch.isfinite(fit_two_component_gmm(huge, huge_mask).log_density[0, 6])
