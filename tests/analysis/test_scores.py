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


def test_nll_without_allow_missing_scores_a_row_with_nan_as_nan(rng):
    weights, means, covs = random_mixture(rng, 2, 3, batch=(3,))
    y = rng.normal(size=(3, 3))
    y[1, 0] = np.nan
    found = scores.nll(tfp_mixture(weights, means, covs), y).numpy()
    assert np.isnan(found[1]) and np.isfinite(found[[0, 2]]).all()
    with pytest.raises(ValueError, match="`allow_missing`"):
        scores.nll(tfp_mixture(weights, means, covs), y, allow_missing="yes")


@pytest.mark.parametrize("covariance", ["diag", "scalar"])
def test_nll_with_missing_targets_of_diagonal_and_scalar_mixtures_against_scipy(rng,
                                                                              covariance):
    weights = rng.dirichlet(np.ones(3), size=4)
    means, sds = rng.normal(0, 2, (4, 3, 2)), rng.uniform(0.3, 2.0, (4, 3, 2))
    y = rng.normal(size=(4, 2))
    if covariance == "diag":
        mixture = tfd.MixtureSameFamily(tfd.Categorical(probs=weights.astype("float32")),
                                        tfd.MultivariateNormalDiag(means.astype("float32"),
                                                                   sds.astype("float32")))
        y[1, 0], y[2] = np.nan, np.nan
        values, observed = y, ~np.isnan(y)
    else:    # scalar events: values [4], each a whole row
        means, sds, y = means[..., 0], sds[..., 0], y[:, 0]
        mixture = tfd.MixtureSameFamily(tfd.Categorical(probs=weights.astype("float32")),
                                        tfd.Normal(means.astype("float32"),
                                                   sds.astype("float32")))
        y[2] = np.nan
        values, observed = y, ~np.isnan(y)[:, None]
        means, sds, y = means[..., None], sds[..., None], y[:, None]
    # A nested list of float64 values on a float32 mixture: scored in the mixture's dtype.
    found = scores.nll(mixture, values.tolist(), allow_missing=True)
    assert found.dtype == np.float32 and found.shape == (4,)
    for row in range(4):
        seen = observed[row]
        densities = stats.norm(means[row][:, seen], sds[row][:, seen]).logpdf(y[row, seen])
        expected = -np.log(np.sum(weights[row] * np.exp(densities.sum(-1)))) if seen.any() else 0
        np.testing.assert_allclose(found[row], expected, rtol=2e-5, atol=1e-6)


def test_nll_with_allow_missing_names_a_bad_last_axis(rng):
    mixture = tfp_mixture(*random_mixture(rng, 2, 3))
    for values in (np.zeros((2, 2)), 0.0):
        with pytest.raises(ValueError, match=r"a last axis of size 3 \(the event size\)"):
            scores.nll(mixture, values, allow_missing=True)


@pytest.mark.parametrize("levels", [(0.0,), (1.0,), (1.5,), (0.5, -0.1)])
def test_coverage_levels_lie_strictly_between_0_and_1(rng, levels):
    mixture = tfp_mixture(*random_mixture(rng, 2, 2))
    with pytest.raises(ValueError, match="`levels` must lie in"):
        scores.coverage(mixture, np.zeros((1, 2)), levels=levels)


def test_coverage_counts_values_on_the_interval_ends_as_inside(rng):
    mixture = tfp_mixture(*random_mixture(rng, 2, 2, batch=(3,)))
    lower, upper = mdn_layers.central_interval(mixture, 0.8)
    for ends in (lower, upper):
        np.testing.assert_array_equal(scores.coverage(mixture, ends, levels=[0.8]), 1.0)


def test_coverage_of_a_scalar_event_mixture_against_scipy(rng):
    means, sds = rng.normal(size=500), rng.uniform(0.5, 2.0, 500)
    y = means + sds * rng.standard_t(3, size=500)          # heavier tails than the model
    normal = tfd.MixtureSameFamily(tfd.Categorical(logits=np.zeros((500, 1))),
                                   tfd.Normal(means[:, None], sds[:, None]))
    found = scores.coverage(normal, y, levels=[0.5, 0.9]).numpy()
    assert found.shape == (2,)
    for level, fraction in zip([0.5, 0.9], found):
        half = stats.norm.ppf(0.5 + level / 2) * sds
        assert fraction == np.mean(np.abs(y - means) <= half)


def test_coverage_takes_one_level_as_a_number(rng):
    mixture = tfp_mixture(*random_mixture(rng, 2, 2, batch=(40,)))
    y = rng.normal(size=(40, 2))
    np.testing.assert_array_equal(scores.coverage(mixture, y, levels=0.8),
                                  scores.coverage(mixture, y, levels=[0.8]))
    assert scores.coverage(mixture, y, levels=0.8).shape == (1, 2)


def test_energy_score_defaults_repeat_and_name_a_bad_sample_count(rng):
    mixture = tfp_mixture(*random_mixture(rng, 2, 2, batch=(3,)))
    y = rng.normal(size=(3, 2))
    first = scores.energy_score(mixture, y).numpy()
    np.testing.assert_array_equal(scores.energy_score(mixture, y), first)   # seeded
    np.testing.assert_array_equal(
        scores.energy_score(mixture, y, num_samples=200, seed=0), first)
    with pytest.raises(ValueError, match="`num_samples`"):
        scores.energy_score(mixture, y, num_samples=0)


def test_energy_score_of_scalar_events_estimates_the_crps(rng):
    means, sds = rng.normal(size=(4, 2)), rng.uniform(0.5, 1.5, (4, 2))
    mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=np.zeros((4, 2))),
                                    tfd.Normal(means, sds))
    y = rng.normal(size=4)
    found = scores.energy_score(mixture, y, num_samples=20_000, seed=1).numpy()
    assert found.shape == (4,)
    np.testing.assert_allclose(found, scores.crps(mixture, y), rtol=0.05)
