import numpy as np
import pytest
import tensorflow_probability as tfp
from conftest import random_mixture, scipy_mixture_logpdf, tfp_mixture
from scipy import optimize, special, stats

import mdn_layers
from mdn_layers import summaries

tfd = tfp.distributions



def numpy_cdf(weights, means, sds, value):
    return float(np.sum(weights * stats.norm.cdf(value, means, sds)))


def test_mean_and_covariance_law_of_total_covariance(rng):
    weights, means, covs = random_mixture(rng, 4, 3, batch=(2,))
    mixture = tfp_mixture(weights, means, covs)
    for row in range(2):
        mean = weights[row] @ means[row]
        second = np.einsum("k,kij->ij", weights[row],
                           covs[row] + means[row][:, :, None] * means[row][:, None, :])
        np.testing.assert_allclose(summaries.mean(mixture)[row], mean, rtol=1e-10)
        np.testing.assert_allclose(summaries.covariance(mixture)[row],
                                   second - np.outer(mean, mean), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_mode_1d_against_grid_search(seed):
    rng = np.random.default_rng(seed)
    weights, means, covs = random_mixture(rng, 4, 1, min_sd=0.2)
    grid = np.linspace(-10, 10, 200_001)[:, None]
    density = scipy_mixture_logpdf(grid, weights, means, covs)
    found = summaries.mode(tfp_mixture(weights, means, covs)).numpy()
    assert abs(found[0] - grid[density.argmax(), 0]) < 1e-3
    assert scipy_mixture_logpdf(found[None], weights, means, covs)[0] >= density.max() - 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_mode_2d_against_grid_search(seed):
    rng = np.random.default_rng(seed)
    weights, means, covs = random_mixture(rng, 3, 2)
    axis = np.linspace(-8, 8, 801)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    density = scipy_mixture_logpdf(grid, weights, means, covs)
    best = grid[density.argmax()]
    # Refine the grid optimum locally with scipy to get the reference mode.
    reference = optimize.minimize(
        lambda p: -scipy_mixture_logpdf(p[None], weights, means, covs)[0], best,
        method="Nelder-Mead", options=dict(xatol=1e-9, fatol=1e-12)).x
    found = summaries.mode(tfp_mixture(weights, means, covs)).numpy()
    np.testing.assert_allclose(found, reference, atol=1e-4)


def test_mode_batched_matches_per_example(rng):
    weights, means, covs = random_mixture(rng, 3, 2, batch=(4,))
    batched = mdn_layers.mode(tfp_mixture(weights, means, covs)).numpy()
    for row in range(4):
        single = mdn_layers.mode(tfp_mixture(weights[row], means[row], covs[row])).numpy()
        np.testing.assert_allclose(batched[row], single, atol=1e-6)


@pytest.mark.parametrize("probs", [0.01, 0.3, 0.5, 0.9, 0.999])
def test_quantiles_against_scipy_root_finding(rng, probs):
    weights, means, covs = random_mixture(rng, 3, 2, batch=(3,))
    mixture = tfp_mixture(weights, means, covs)
    found = mdn_layers.quantile(mixture, probs).numpy()
    for row in range(3):
        for dim in range(2):
            sds = np.sqrt(covs[row, :, dim, dim])
            reference = optimize.brentq(
                lambda v: numpy_cdf(weights[row], means[row, :, dim], sds, v) - probs, -50, 50,
                xtol=1e-12)
            np.testing.assert_allclose(found[row, dim], reference, atol=1e-7)


def test_central_interval_holds_its_level(rng):
    weights, means, covs = random_mixture(rng, 3, 1)
    lower, upper = mdn_layers.central_interval(tfp_mixture(weights, means, covs), 0.8)
    sds = np.sqrt(covs[:, 0, 0])
    held = (numpy_cdf(weights, means[:, 0], sds, upper.numpy()[0])
            - numpy_cdf(weights, means[:, 0], sds, lower.numpy()[0]))
    assert abs(held - 0.8) < 1e-9
    assert mdn_layers.quantile(tfp_mixture(weights, means, covs), [0.1, 0.9]).shape == (2, 1)


def test_responsibilities_and_most_probable_component(rng):
    weights, means, covs = random_mixture(rng, 4, 3, batch=(5,))
    mixture = tfp_mixture(weights, means, covs)
    y = rng.normal(0, 2, (5, 3))
    expected = mixture.posterior_marginal(y).probs_parameter().numpy()
    np.testing.assert_allclose(mdn_layers.responsibilities(mixture, y), expected, rtol=1e-9)
    index, probability = mdn_layers.most_probable_component(mixture, y)
    np.testing.assert_array_equal(index, expected.argmax(-1))
    np.testing.assert_allclose(probability, expected.max(-1))
    index, probability = mdn_layers.most_probable_component(mixture)
    np.testing.assert_array_equal(index, weights.argmax(-1))
    np.testing.assert_allclose(probability, weights.max(-1))


def test_quantile_validation(rng):
    mixture = tfp_mixture(*random_mixture(rng, 2, 1))
    with pytest.raises(ValueError, match="probs"):
        mdn_layers.quantile(mixture, 1.0)
    with pytest.raises(ValueError, match="level"):
        mdn_layers.central_interval(mixture, 1.5)


@pytest.mark.parametrize("loc,scale", [(0.0, 1e-3), (1e3, 1e-3), (0.0, 50.0), (-3e4, 2e3)])
def test_quantiles_of_narrow_wide_and_far_mixtures_against_scipy(loc, scale):
    """The bisection's bracket follows the components' own scale and place."""
    weights = np.array([0.3, 0.7])
    means = loc + scale * np.array([[-1.0], [2.0]])
    covs = (scale * np.array([0.5, 1.5]))[:, None, None] ** 2
    probs = [0.05, 0.5, 0.95]
    found = mdn_layers.quantile(tfp_mixture(weights, means, covs), probs).numpy()[:, 0]
    sds = np.sqrt(covs[:, 0, 0])
    for prob, value in zip(probs, found):
        reference = optimize.brentq(
            lambda v, p=prob: numpy_cdf(weights, means[:, 0], sds, v) - p,
            loc - 20 * scale, loc + 20 * scale, xtol=1e-12 * scale)
        np.testing.assert_allclose(value, reference, rtol=0, atol=1e-7 * scale)


def test_responsibilities_and_most_probable_component_over_two_batch_axes(rng):
    weights, means, covs = random_mixture(rng, 4, 2, batch=(2, 3))
    mixture = tfp_mixture(weights, means, covs)
    y = rng.normal(0, 2, (2, 3, 2))
    expected = mixture.posterior_marginal(y).probs_parameter().numpy()
    np.testing.assert_allclose(mdn_layers.responsibilities(mixture, y), expected, rtol=1e-9)
    index, probability = mdn_layers.most_probable_component(mixture, y)
    assert index.dtype == "int32" and index.shape == (2, 3)
    np.testing.assert_array_equal(index, expected.argmax(-1))
    np.testing.assert_allclose(probability, expected.max(-1))


def test_central_interval_is_ninety_percent_by_default_and_names_a_bad_level(rng):
    normal = tfp_mixture(np.ones(1), np.array([[1.0]]), np.array([[[4.0]]]))
    lower, upper = mdn_layers.central_interval(normal)
    np.testing.assert_allclose([lower[0], upper[0]], stats.norm(1.0, 2.0).ppf([0.05, 0.95]),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="`level`"):
        mdn_layers.central_interval(normal, 1.5)


def _numpy_fixed_point_steps(weights, means, covs, steps, tolerance=0.0):
    """The documented mean-shift fixed point from every component mean, ``steps`` times or
    until a step moves no point by more than ``tolerance``, and the end point of highest
    density: numpy and scipy only."""
    precisions = np.linalg.inv(covs)
    points = means.copy()
    for _ in range(steps):
        previous = points
        log_density = np.stack([[np.log(w) + stats.multivariate_normal(m, c).logpdf(p)
                                 for w, m, c in zip(weights, means, covs)] for p in points])
        r = np.exp(log_density - special.logsumexp(log_density, axis=1, keepdims=True))
        a = np.einsum("sk,kij->sij", r, precisions)
        b = np.einsum("sk,kij,kj->si", r, precisions, means)
        points = np.linalg.solve(a, b[..., None])[..., 0]
        if np.max(np.abs(points - previous)) <= tolerance:
            break
    density = [scipy_mixture_logpdf(p[None], weights, means, covs)[0] for p in points]
    return points[int(np.argmax(density))]


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_mode_takes_exactly_max_iterations_steps_when_capped(rng, steps):
    weights, means, covs = random_mixture(rng, 3, 2, min_sd=0.8)
    found = mdn_layers.mode(tfp_mixture(weights, means, covs), max_iterations=steps,
                            tolerance=0.0)
    np.testing.assert_allclose(found, _numpy_fixed_point_steps(weights, means, covs, steps),
                               rtol=1e-9, atol=1e-12)


def test_mode_stops_at_the_first_step_that_moves_no_point_beyond_the_tolerance():
    """Two overlapping components far from the origin: the climb to the merged mode is slow,
    so stopping at a coarse tolerance ends visibly short of it."""
    weights = np.array([0.5, 0.5])
    means = np.array([[10.0, 20.0], [11.6, 20.5]])
    covs = np.array([[[1.0, 0.2], [0.2, 1.0]], [[1.0, -0.1], [-0.1, 0.8]]])
    mixture = tfp_mixture(weights, means, covs)
    expected = _numpy_fixed_point_steps(weights, means, covs, 200, tolerance=0.02)
    converged = _numpy_fixed_point_steps(weights, means, covs, 2000)
    assert np.max(np.abs(expected - converged)) > 1e-3          # the tolerance shows
    np.testing.assert_allclose(mdn_layers.mode(mixture, tolerance=0.02), expected, rtol=1e-9)
    np.testing.assert_allclose(mdn_layers.mode(mixture, max_iterations=2000, tolerance=0.0),
                               converged, rtol=1e-7)


def test_mode_and_responsibilities_of_a_diagonal_mixture_over_two_batch_axes(rng):
    weights = rng.dirichlet(np.ones(3), size=(2, 2))
    means, sds = rng.normal(0, 2, (2, 2, 3, 2)), rng.uniform(0.5, 1.5, (2, 2, 3, 2))
    mixture = tfd.MixtureSameFamily(tfd.Categorical(probs=weights),
                                    tfd.MultivariateNormalDiag(means, sds))
    found = mdn_layers.mode(mixture).numpy()
    assert found.shape == (2, 2, 2)
    covs = np.einsum("...i,ij->...ij", sds**2, np.eye(2))
    for i in range(2):
        for j in range(2):
            expected = _numpy_fixed_point_steps(weights[i, j], means[i, j], covs[i, j], 200)
            np.testing.assert_allclose(found[i, j], expected, rtol=1e-6, atol=1e-7)
    y = rng.normal(size=(2, 2, 2))
    np.testing.assert_allclose(mdn_layers.responsibilities(mixture, y),
                               mixture.posterior_marginal(y).probs_parameter(), rtol=1e-9)


@pytest.mark.parametrize("call, name", [
    (lambda m: mdn_layers.mode(m, max_iterations=0), "`max_iterations`"),
    (lambda m: mdn_layers.mode(m, tolerance=-1.0), "`tolerance`"),
    (lambda m: mdn_layers.quantile(m, 0.5, num_iterations=0), "`num_iterations`"),
    (lambda m: mdn_layers.quantile(m, 0.0), "`probs`"),
    (lambda m: mdn_layers.quantile(m, [[0.2, 0.5]]), "`probs`"),
    (lambda m: mdn_layers.quantile(m, [0.2, np.nan]), "`probs`"),
    (lambda m: mdn_layers.quantile(m, "half"), "`probs`"),
])
def test_summaries_name_their_bad_arguments(rng, call, name):
    with pytest.raises(ValueError, match=name):
        call(tfp_mixture(*random_mixture(rng, 2, 1)))
