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


@pytest.mark.slow
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


# --- Contract holes: wrong ranks, empty inputs, dict outputs, flags, values ---------------

@pytest.mark.backend_neutral
@pytest.mark.parametrize("params_shape, targets_shape", [
    ((6, 18), (6, 1, 2)),          # an extra axis would broadcast to a 6 x 6 loss
    ((5, 5, 18), (5, 2)),          # a sequence head: (N, D) targets broadcast when N == T
    ((4, 3, 18), (4, 2, 2)),       # the time axes disagree
])
def test_loss_refuses_targets_whose_leading_axes_are_not_the_params(params_shape, targets_shape):
    loss = mdn_layers.MixtureNLL(2, 3)
    with pytest.raises(ValueError, match="does not match the params shape"):
        loss(np.zeros(targets_shape, "float32"), np.zeros(params_shape, "float32"))


@pytest.mark.backend_neutral
@pytest.mark.parametrize("flag", ["false", 0, 1, None])
def test_boolean_flags_refuse_non_bools(flag):
    with pytest.raises(ValueError, match="allow_missing"):
        mdn_layers.MixtureNLL(2, 3, allow_missing=flag)
    with pytest.raises(ValueError, match="allow_missing"):
        mdn_layers.metrics.CRPS(2, 3, allow_missing=flag)


def test_predict_mixture_on_zero_rows_gives_an_empty_batch():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4),
                              mdn_layers.MixtureDensity(2, 3)])
    mixture = mdn_layers.predict_mixture(model, np.zeros((0, 3), "float32"))
    assert mixture.batch_shape == (0,) and mixture.event_shape == (2,)
    sequence = keras.Sequential([keras.Input((7, 3)), mdn_layers.MixtureDensity(2, 3)])
    assert mdn_layers.predict_mixture(sequence, np.zeros((0, 7, 3), "float32")).batch_shape \
        == (0, 7)


def test_predict_mixture_unwraps_a_single_dict_output(rng):
    inputs = keras.Input((3,))
    head = mdn_layers.MixtureDensity(2, 3)
    model = keras.Model(inputs, {"mixture": head(inputs)})
    x = rng.normal(size=(5, 3)).astype("float32")
    mixture = mdn_layers.predict_mixture(model, x)
    expected = mdn_layers.mixture_from_params(keras.ops.convert_to_numpy(head(x)), 2, 3)
    y = rng.normal(size=(5, 2)).astype("float32")
    np.testing.assert_allclose(mixture.log_prob(y), expected.log_prob(y), rtol=1e-5)


@pytest.mark.parametrize("wrap", [lambda loss: [loss], lambda loss: {"out": loss}])
def test_mismatched_loss_in_a_list_or_dict_is_detected(wrap):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, mdn_layers.MixtureDensity(2, 3, covariance="full",
                                                          name="out")(inputs))
    model.compile("adam", loss=wrap(mdn_layers.MixtureNLL(2, 3, diag_shift=1e-3)))
    with pytest.raises(ValueError, match="differs from its MixtureDensity layer"):
        mdn_layers.predict_mixture(model, np.zeros((2, 3), "float32"))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_condition_refuses_non_finite_observed_values(bad):
    mixture = mdn_layers.mixture_from_params(np.zeros((3, 18), "float32"), 2, 3)
    with pytest.raises(ValueError, match="NaN or inf"):
        mdn_layers.condition(mixture, [1], np.array([[0.0], [bad], [1.0]], "float32"))


@pytest.mark.parametrize("loc, scale, match", [
    (0.0, [1.0, 2.0, 3.0], "2 floats"),
    ([0.0, 0.0, 0.0], 1.0, "2 floats"),
    ([np.nan, 0.0], 1.0, "finite"),
    (0.0, [1.0, 0.0], "positive"),
])
def test_rescale_checks_loc_and_scale_by_name(loc, scale, match):
    mixture = mdn_layers.mixture_from_params(np.zeros((3, 18), "float32"), 2, 3)
    with pytest.raises(ValueError, match=match):
        mdn_layers.rescale(mixture, loc, scale)


def test_sample_refuses_string_temperatures_and_takes_a_tensor_int_seed():
    mixture = mdn_layers.mixture_from_params(np.zeros((3, 18), "float32"), 2, 3)
    with pytest.raises(ValueError, match="temperature"):
        mdn_layers.sample(mixture, 4, temperature="1")
    np.testing.assert_array_equal(mdn_layers.sample(mixture, 4, seed=tf.constant(3)),
                                  mdn_layers.sample(mixture, 4, seed=3))


@pytest.mark.parametrize("far", [1e20, 1e30, 3e38, -3e38])
def test_condition_far_out_finite_values_give_finite_weights(far):
    """float32 values far beyond every component: the weights are the limiting ones (all on
    the slowest-decaying marginal, here the widest component), never NaN."""
    tril = np.stack([0.5 * np.eye(2), 3.0 * np.eye(2)]).astype("float32")
    mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=[0.0, 0.0]),
                                    tfd.MultivariateNormalTriL(np.zeros((2, 2), "float32"), tril))
    given = mdn_layers.condition(mixture, [1], np.array([far], "float32"))
    np.testing.assert_allclose(given.mixture_distribution.probs_parameter(), [0.0, 1.0],
                               atol=1e-6)
