"""Input contracts: every Gaussian mixture TFP can express, and no silent wrong answer."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import stats

import mdn_layers
from mdn_layers import scores, summaries, tfp_layers

tfd = tfp.distributions
WEIGHTS, MEANS, SCALES = [0.2, 0.3, 0.5], [10.0, 20.0, 30.0], [1.0, 2.0, 3.0]


def tfp_layer_mixture(rng, num_components=3, event_size=2, batch=4):
    params = rng.normal(size=(batch, tfp.layers.MixtureSameFamily.params_size(
        num_components, tfp.layers.MultivariateNormalTriL.params_size(event_size))))
    layer = tfp.layers.MixtureSameFamily(num_components,
                                         tfp.layers.MultivariateNormalTriL(event_size))
    return layer(params.astype("float32")), params.astype("float32")


def test_tfp_layer_outputs_are_accepted_everywhere(rng):
    mixture, params = tfp_layer_mixture(rng)
    ours = mdn_layers.mixture_from_params(params, 2, 3)
    y = rng.normal(size=(4, 2)).astype("float32")
    given = mdn_layers.condition(mixture, [0], y[:, :1])
    np.testing.assert_allclose(given.log_prob(y[:, 1:]),
                               mdn_layers.condition(ours, [0], y[:, :1]).log_prob(y[:, 1:]),
                               rtol=1e-5)
    np.testing.assert_allclose(mdn_layers.marginalize(mixture, [1]).log_prob(y[:, 1:]),
                               mdn_layers.marginalize(ours, [1]).log_prob(y[:, 1:]), rtol=1e-5)
    assert mdn_layers.sample(mixture, 3, seed=0).shape == (3, 4, 2)
    np.testing.assert_allclose(mdn_layers.mode(mixture), mdn_layers.mode(ours), rtol=1e-4)
    np.testing.assert_allclose(summaries.mean(mixture), mixture.mean(), rtol=1e-5)
    normal_mixture = tfp.layers.MixtureNormal(3, event_shape=[2])(
        rng.normal(size=(4, tfp.layers.MixtureNormal.params_size(3, [2]))).astype("float32"))
    np.testing.assert_allclose(summaries.mean(normal_mixture), normal_mixture.mean(), rtol=1e-5)


@pytest.mark.parametrize("build", ["same_family", "mixture"])
def test_scalar_event_normal_mixtures(build):
    if build == "same_family":
        dist = tfd.MixtureSameFamily(tfd.Categorical(probs=WEIGHTS),
                                     tfd.Normal(MEANS, SCALES))
    else:
        dist = tfd.Mixture(tfd.Categorical(probs=WEIGHTS),
                           [tfd.Normal(m, s) for m, s in zip(MEANS, SCALES)])
    assert float(summaries.mean(dist)) == pytest.approx(23.0)
    draws = mdn_layers.sample(dist, 20000, seed=1)
    assert draws.shape == (20000,)
    assert float(np.mean(draws)) == pytest.approx(23.0, abs=0.1)
    cold = mdn_layers.sample(dist, 2000, temperature=0.0, seed=1)
    assert float(np.mean(cold)) == pytest.approx(30.0, abs=0.2)

    def cdf(y):
        return sum(w * stats.norm(m, s).cdf(y) for w, m, s in zip(WEIGHTS, MEANS, SCALES))

    median = float(mdn_layers.quantile(dist, 0.5))
    assert cdf(median) == pytest.approx(0.5, abs=1e-6)
    lower, upper = mdn_layers.central_interval(dist, 0.9)
    assert lower.shape == () and cdf(float(upper)) - cdf(float(lower)) == pytest.approx(0.9)
    assert float(scores.pit(dist, 25.0)) == pytest.approx(cdf(25.0), abs=1e-6)
    assert scores.crps(dist, [25.0, 11.0]).shape == (2,)
    grid = np.linspace(0, 40, 400001)
    density = sum(w * stats.norm(m, s).pdf(grid) for w, m, s in zip(WEIGHTS, MEANS, SCALES))
    assert float(mdn_layers.mode(dist)) == pytest.approx(grid[np.argmax(density)], abs=1e-3)
    with pytest.raises(ValueError, match="D >= 2"):
        mdn_layers.condition(dist, [0], [1.0])


def test_wrong_width_values_raise_instead_of_broadcasting(rng):
    mixture = mdn_layers.mixture_from_params(rng.normal(size=(5, 18)).astype("float32"), 2, 3)
    for width in (1, 3):
        y = np.zeros((5, width), "float32")
        for function in (scores.crps, scores.pit, scores.nll, summaries.cdf,
                         mdn_layers.responsibilities, scores.energy_score, scores.coverage,
                         mdn_layers.most_probable_component):
            with pytest.raises(ValueError, match="last axis of size 2"):
                function(mixture, y)
    for metric in (mdn_layers.metrics.CRPS(2, 3), mdn_layers.metrics.EnergyScore(2, 3)):
        with pytest.raises(ValueError, match="y_true last axis has size 1"):
            metric.update_state(np.zeros((5, 1), "float32"), np.zeros((5, 18), "float32"))


def test_tf_keras_loss_checks_width_and_finiteness(rng):
    mixture = tfp_layers.MixtureDistribution(2, 3)(
        tf.constant(rng.normal(size=(4, 18)).astype("float32")))
    with pytest.raises(ValueError, match="event size is 2"):
        tfp_layers.negative_log_likelihood(np.zeros((4, 1), "float32"), mixture)
    with pytest.raises(ValueError, match="NaN or inf"):
        tfp_layers.negative_log_likelihood(np.full((4, 2), np.nan, "float32"), mixture)


@pytest.mark.parametrize("call,name", [
    (lambda m: mdn_layers.mixture_from_params(np.zeros(18), 2, 3, diag_shift=-0.693),
     "diag_shift"),
    (lambda m: mdn_layers.mixture_from_params(np.zeros(18), 2, 3, diag_shift=np.nan),
     "diag_shift"),
    (lambda m: mdn_layers.quantile(m, 0.5, num_iterations=None), "num_iterations"),
    (lambda m: mdn_layers.quantile(m, 0.5, num_iterations=0), "num_iterations"),
    (lambda m: mdn_layers.mode(m, tolerance=None), "tolerance"),
    (lambda m: mdn_layers.central_interval(m, level="0.9"), "level"),
    (lambda m: mdn_layers.rescale(m, 0.0, 0.0), "scale"),
    (lambda m: mdn_layers.sample(m, None), "sample_shape"),
    (lambda m: mdn_layers.sample(m, 2.5), "sample_shape"),
    (lambda m: mdn_layers.mixture_from_params(1.0, 2, 3), "params"),
])
def test_unvalidated_arguments_now_raise(call, name):
    mixture = mdn_layers.mixture_from_params(np.zeros((2, 18), "float32"), 2, 3)
    with pytest.raises(ValueError, match=name):
        call(mixture)


def test_non_distributions_get_a_type_error():
    with pytest.raises(TypeError, match="Gaussian mixture"):
        mdn_layers.condition(np.zeros(3), [0], [1.0])


@pytest.mark.parametrize("covariance", ["full", "diag", "spherical"])
def test_rescale_with_scalar_scale_matches_per_dim(rng, covariance):
    mixture = mdn_layers.mixture_from_params(
        rng.normal(size=(3, mdn_layers.params_size(2, 2, covariance))), 2, 2, covariance)
    y = rng.normal(size=(3, 2))
    np.testing.assert_allclose(mdn_layers.rescale(mixture, 1.0, 2.0).log_prob(y),
                               mdn_layers.rescale(mixture, [1.0, 1.0], [2.0, 2.0]).log_prob(y))


def test_predict_mixture_default_batch_is_large(rng):
    model = keras.Sequential([keras.Input((3,)), mdn_layers.MixtureDensity(2, 3)])
    seen = []
    original = model.predict

    def spy(x, batch_size=None, **kwargs):
        seen.append(batch_size)
        return original(x, batch_size=batch_size, **kwargs)

    model.predict = spy
    mdn_layers.predict_mixture(model, rng.normal(size=(10, 3)).astype("float32"))
    assert seen == [1024]


@pytest.mark.parametrize("value", [1e3, 1e20, -1e25])
def test_float32_conditioning_far_out_gives_the_limit_not_nan(value):
    # The second component's marginal of dim 0 is wider: it decays slowest.
    mixture = tfd.MixtureSameFamily(
        tfd.Categorical(probs=[0.9, 0.1]),
        tfd.MultivariateNormalTriL(tf.zeros([2, 2]),
                                   tf.constant([[[1.0, 0.0], [0.5, 1.0]],
                                                [[3.0, 0.0], [0.5, 1.0]]])))
    given = mdn_layers.condition(mixture, [0], tf.constant([[value]], tf.float32))
    weights = tf.nn.softmax(given.mixture_distribution.logits_parameter()).numpy()
    np.testing.assert_allclose(weights, [[0.0, 1.0]], atol=1e-6)
    assert np.all(np.isfinite(given.mean().numpy()))


def test_plots_refuse_batched_mixtures_and_read_1d_samples(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from mdn_layers import plotting
    batched = mdn_layers.mixture_from_params(np.zeros((5, 18), "float32"), 2, 3)
    with pytest.raises(ValueError, match="one mixture"):
        plotting.plot_mixture_2d(batched)
    with pytest.raises(ValueError, match="one mixture"):
        plotting.plot_density_1d(batched, np.linspace(-1, 1, 5))
    with pytest.raises(ValueError, match="one mixture per x_grid point"):
        plotting.plot_conditional_density(batched, np.linspace(0, 1, 4), np.linspace(-1, 1, 5))
    ax = plotting.plot_samples(np.arange(10.0), np.arange(10.0) + 0.5)
    assert len(ax.patches) > 2  # histograms of ten 1-D points, not one 10-D point
    import matplotlib.pyplot as plt
    before = len(plt.get_fignums())
    plotting.plot_mixture_2d(batched[0])
    assert len(plt.get_fignums()) == before  # not left open in pyplot's registry
