import numpy as np
import pytest
import tensorflow_probability as tfp
from conftest import random_mixture, scipy_mixture_logpdf, tfp_mixture
from scipy import integrate, stats

import mdn_layers
from mdn_layers import scores

tfd = tfp.distributions



@pytest.mark.parametrize("mu,sigma,y", [(0.0, 1.0, 0.0), (1.0, 2.0, -3.0), (-2.0, 0.1, -1.9)])
def test_crps_single_gaussian_closed_form(mu, sigma, y):
    z = (y - mu) / sigma
    expected = sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z)
                        - 1 / np.sqrt(np.pi))
    mixture = tfp_mixture(np.ones(1), np.array([[mu]]), np.array([[[sigma**2]]]))
    np.testing.assert_allclose(scores.crps(mixture, np.array([y])), [expected], rtol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_crps_mixture_against_numerical_integration(seed):
    rng = np.random.default_rng(seed)
    weights, means, covs = random_mixture(rng, 3, 2)
    y = rng.normal(0, 2, 2)
    found = scores.crps(tfp_mixture(weights, means, covs), y).numpy()
    for dim in range(2):
        sds = np.sqrt(covs[:, dim, dim])

        def cdf(v):
            return np.sum(weights * stats.norm.cdf(v, means[:, dim], sds))

        below = integrate.quad(lambda v: cdf(v) ** 2, -60, y[dim], limit=200)[0]
        above = integrate.quad(lambda v: (1 - cdf(v)) ** 2, y[dim], 60, limit=200)[0]
        np.testing.assert_allclose(found[dim], below + above, rtol=1e-6)


def test_energy_score_in_one_dim_estimates_crps(rng):
    weights, means, covs = random_mixture(rng, 3, 1)
    mixture = tfp_mixture(weights, means, covs)
    y = np.array([0.7])
    estimate = scores.energy_score(mixture, y, num_samples=100_000, seed=1).numpy()
    np.testing.assert_allclose(estimate, scores.crps(mixture, y).numpy()[0], rtol=0.02)


def test_energy_score_prefers_the_true_model(rng):
    weights, means, covs = random_mixture(rng, 2, 3)
    truth = tfp_mixture(weights, means, covs)
    y = mdn_layers.sample(truth, 400, seed=3)
    wrong = tfp_mixture(weights, means + 1.0, covs)
    assert (np.mean(scores.energy_score(truth, y, seed=4))
            < np.mean(scores.energy_score(wrong, y, seed=4)))


def test_coverage_and_pit_of_true_model_are_calibrated(rng):
    weights, means, covs = random_mixture(rng, 3, 2, batch=(4000,))
    truth = tfp_mixture(weights, means, covs)
    y = mdn_layers.sample(truth, seed=9).numpy()
    fractions = scores.coverage(truth, y, levels=(0.5, 0.9)).numpy()
    np.testing.assert_allclose(fractions, [[0.5, 0.5], [0.9, 0.9]], atol=0.03)
    pit = scores.pit(truth, y).numpy()
    for dim in range(2):
        assert stats.kstest(pit[:, dim], "uniform").pvalue > 0.001
    overconfident = tfp_mixture(weights, means, covs * 0.25)
    assert np.all(scores.coverage(overconfident, y, levels=(0.9,)).numpy() < 0.85)


def test_nll_is_negative_log_prob(rng):
    mixture = tfp_mixture(*random_mixture(rng, 2, 2))
    y = rng.normal(size=(3, 2))
    np.testing.assert_allclose(scores.nll(mixture, y), -mixture.log_prob(y))


def test_coverage_validates_levels(rng):
    mixture = tfp_mixture(*random_mixture(rng, 2, 2))
    with pytest.raises(ValueError, match="`levels` must lie in"):
        scores.coverage(mixture, np.zeros((1, 2)), levels=(0.5, 90))


def test_batched_energy_score_matches_scoringrules_row_by_row(rng):
    """Each row of a batch of mixtures against scoringrules' energy score of a large sample
    from that row's mixture (drawn by scipy)."""
    import scoringrules
    rows = 4
    weights, means, covs = random_mixture(rng, 2, 2, batch=(rows,))
    mixture = tfp_mixture(weights, means, covs)
    y = rng.normal(size=(rows, 2))
    found = scores.energy_score(mixture, y, num_samples=20_000, seed=5).numpy()
    assert found.shape == (rows,)
    for row in range(rows):
        component = rng.choice(2, size=3000, p=weights[row])
        draws = np.stack([rng.multivariate_normal(means[row, k], covs[row, k])
                          for k in component])
        expected = scoringrules.es_ensemble(y[row], draws, estimator="fair")
        np.testing.assert_allclose(found[row], expected, rtol=0.05)   # Monte Carlo error


def test_energy_score_is_finite_where_a_draw_hits_the_value():
    import tensorflow as tf

    from mdn_layers.analysis import tf_ops
    from mdn_layers.core import marginals
    draws = tf.constant([[[1.0, 2.0]], [[0.0, 0.0]]], tf.float64)      # [S=2, N=1, D=2]
    values = tf.constant([[1.0, 2.0]], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(values)
        score = marginals.energy_score(tf_ops, draws, draws, values)
    # E||X - y|| = (0 + sqrt(5)) / 2; the draws paired with themselves are 0 apart
    np.testing.assert_allclose(score.numpy(), [np.sqrt(5.0) / 2], rtol=1e-12)
    assert np.all(np.isfinite(tape.gradient(score, values).numpy()))


def test_energy_score_over_the_observed_dims_only(rng):
    import tensorflow as tf

    from mdn_layers.analysis import tf_ops
    from mdn_layers.core import marginals
    first, second = rng.normal(size=(2, 50, 3, 3))                    # [S, N, D] each
    values = rng.normal(size=(3, 3))
    observed = np.array([[1, 1, 1], [1, 0, 1], [0, 1, 0]], dtype=np.float64)
    found = marginals.energy_score(tf_ops, *(tf.constant(a) for a in
                                             (first, second, values)), tf.constant(observed))
    for row in range(3):
        dims = observed[row] > 0
        to_value = np.linalg.norm(first[:, row, dims] - values[row, dims], axis=-1).mean()
        spread = np.linalg.norm(first[:, row, dims] - second[:, row, dims], axis=-1).mean()
        np.testing.assert_allclose(found.numpy()[row], to_value - 0.5 * spread, rtol=1e-10)


@pytest.mark.parametrize("batch", [(4,), (2, 2)])
def test_batched_crps_matches_scoringrules_per_row_and_dim(rng, batch):
    import scoringrules
    weights, means, covs = random_mixture(rng, 3, 2, batch=batch)
    y = rng.normal(0, 2, size=batch + (2,))
    found = scores.crps(tfp_mixture(weights, means, covs), y).numpy().reshape(-1, 2)
    flat = [a.reshape((-1,) + a.shape[len(batch):]) for a in (weights, means, covs, y)]
    for row, (w, m, c, value) in enumerate(zip(*flat)):
        for dim in range(2):
            expected = scoringrules.crps_mixnorm(value[dim], m[:, dim], np.sqrt(c[:, dim, dim]),
                                                 w)
            np.testing.assert_allclose(found[row, dim], expected, rtol=1e-8)


@pytest.mark.parametrize("batch", [(6,), (2, 3)])
@pytest.mark.parametrize("event_size", [3, 10])   # unrolled, and beyond the unrolled sizes
def test_nll_with_missing_targets_is_the_observed_marginal_against_scipy(rng, event_size,
                                                                        batch):
    weights, means, covs = random_mixture(rng, 2, event_size, batch=batch)
    y = rng.normal(size=batch + (event_size,))
    missing = rng.random(batch + (event_size,)) < 0.4
    missing.reshape(-1, event_size)[0] = False       # every dim observed
    missing.reshape(-1, event_size)[1] = True        # none observed: 0
    found = scores.nll(tfp_mixture(weights, means, covs), np.where(missing, np.nan, y),
                       allow_missing=True).numpy()
    assert found.shape == batch
    flat = [a.reshape((-1,) + a.shape[len(batch):]) for a in (weights, means, covs, y, missing)]
    for row, (w, m, c, value, gone) in enumerate(zip(*flat)):
        seen = ~gone
        if not seen.any():
            assert found.reshape(-1)[row] == 0
            continue
        expected = -scipy_mixture_logpdf(value[None, seen], w, m[:, seen], c[:, seen][:, :, seen])
        np.testing.assert_allclose(found.reshape(-1)[row], expected[0], rtol=1e-9)
