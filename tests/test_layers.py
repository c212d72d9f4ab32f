import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import stats
from conftest import (params_for, random_mixture, requires_float64, restrict_covariance,
                      scipy_mixture_logpdf)

import mdn_layers
from mdn_layers import datasets, layout

# The training path: these tests also run under KERAS_BACKEND=jax (see README).
pytestmark = pytest.mark.backend_neutral

tfd = tfp.distributions
KINDS = ["full", "diag", "spherical"]


def mdn_model(event_size, num_components, covariance="full", input_shape=(1,), hidden=32,
              dtype=None, jit_compile="auto", learning_rate=3e-3):
    model = keras.Sequential([
        keras.Input(input_shape, dtype=dtype),
        keras.layers.Dense(hidden, activation="tanh", dtype=dtype),
        mdn_layers.MixtureDensity(event_size, num_components, covariance, dtype=dtype),
    ])
    model.compile(keras.optimizers.Adam(learning_rate),
                  loss=mdn_layers.MixtureNLL(event_size, num_components, covariance),
                  jit_compile=jit_compile)
    return model


def test_layer_output_shape_for_2d_and_sequence_input():
    layer = mdn_layers.MixtureDensity(3, 4)
    size = mdn_layers.params_size(3, 4)
    assert layer(np.zeros((5, 7), "float32")).shape == (5, size)
    assert layer(np.zeros((5, 6, 7), "float32")).shape == (5, 6, size)
    assert layer.compute_output_shape((None, 6, 7)) == (None, 6, size)


@pytest.mark.parametrize("covariance", KINDS)
def test_initial_components_are_spread_with_reasonable_scales(covariance):
    keras.utils.set_random_seed(3)
    layer = mdn_layers.MixtureDensity(2, 6, covariance, initial_scale=0.5)
    mixture = layer.mixture(layer(np.zeros((1, 4), "float32")))
    locs = mixture.components_distribution.mean().numpy()[0]
    distances = np.linalg.norm(locs[:, None] - locs[None], axis=-1)[np.triu_indices(6, 1)]
    assert distances.min() > 0.05
    stddevs = mixture.components_distribution.stddev().numpy()
    np.testing.assert_allclose(stddevs, 0.5, rtol=1e-4)
    np.testing.assert_allclose(mixture.mixture_distribution.probs_parameter(), 1 / 6, atol=1e-6)


@pytest.mark.parametrize("covariance", KINDS)
@pytest.mark.parametrize("num_components,event_size", [(1, 1), (1, 2), (3, 2)])
def test_loss_is_per_sample_nll_against_scipy(rng, covariance, num_components, event_size):
    weights, means, covs = random_mixture(rng, num_components, event_size)
    covs = restrict_covariance(covs, covariance)
    params = np.tile(params_for(weights, means, covs, covariance), (6, 1)).astype("float32")
    y = rng.normal(0, 2, (6, event_size)).astype("float32")
    loss = mdn_layers.MixtureNLL(event_size, num_components, covariance)
    expected = -scipy_mixture_logpdf(y, weights, means, covs)
    np.testing.assert_allclose(loss.call(y, params), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(loss(y, params), expected.mean(), rtol=1e-4)
    weight = np.array([1, 0, 0, 2, 0, 0], "float32")
    np.testing.assert_allclose(loss(y, params, sample_weight=weight),
                               (expected * weight).sum() / 6, rtol=1e-4)


def test_loss_accepts_flat_targets_for_one_dim(rng):
    loss = mdn_layers.MixtureNLL(1, 2)
    params = rng.normal(size=(5, mdn_layers.params_size(1, 2))).astype("float32")
    y = rng.normal(size=5).astype("float32")
    np.testing.assert_allclose(loss.call(y, params), loss.call(y[:, None], params))


def test_loss_rejects_wrong_target_width_naming_both_sizes():
    loss = mdn_layers.MixtureNLL(event_size=2, num_components=3)
    params = np.zeros((4, mdn_layers.params_size(2, 3)), "float32")
    with pytest.raises(ValueError, match=r"size 3.*event_size=2"):
        loss(np.zeros((4, 3), "float32"), params)


def test_loss_rejects_wrong_params_width():
    loss = mdn_layers.MixtureNLL(event_size=2, num_components=3)
    with pytest.raises(ValueError, match="params_size=18"):
        loss(np.zeros((4, 2), "float32"), np.zeros((4, 12), "float32"))


@pytest.mark.parametrize("bad", [dict(event_size=0), dict(num_components=-1),
                                 dict(covariance="banded")])
def test_layer_rejects_bad_config(bad):
    kwargs = dict(event_size=2, num_components=3) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        mdn_layers.MixtureDensity(**kwargs)


@pytest.mark.slow
def test_training_reduces_held_out_nll_on_bimodal_problem():
    keras.utils.set_random_seed(0)
    train, test = datasets.bimodal_sine(3000, seed=0), datasets.bimodal_sine(1000, seed=1)
    model = mdn_model(1, 3, hidden=32, learning_rate=1e-2)

    def held_out_nll():
        return -float(np.mean(mdn_layers.predict_mixture(model, test.x).log_prob(test.y)))

    before = held_out_nll()
    model.fit(train.x, train.y, epochs=25, batch_size=128, verbose=0)
    after = held_out_nll()
    oracle = test.oracle_nll()
    assert after < before - 0.5
    # A unimodal Gaussian fit cannot get within 0.25 nats of the bimodal oracle.
    assert after < oracle + 0.25, (before, after, oracle)


def test_predict_mixture_returns_one_batched_mixture(rng):
    model = mdn_model(2, 3)
    x = rng.normal(size=(70, 1)).astype("float32")
    mixture = mdn_layers.predict_mixture(model, x, batch_size=16)
    assert isinstance(mixture, tfd.MixtureSameFamily)
    assert mixture.batch_shape == (70,) and mixture.event_shape == (2,)
    direct = mdn_layers.mixture_from_params(model(x), 2, 3)
    y = rng.normal(size=(70, 2)).astype("float32")
    np.testing.assert_allclose(mixture.log_prob(y), direct.log_prob(y), rtol=1e-5, atol=1e-5)


def test_predict_mixture_streams_chunks_of_arrays_and_takes_other_inputs(rng, monkeypatch):
    """Rows spread over several chunks (the last one partial), a two-input model fed a dict,
    and a tf.data pipeline all give the params of calling the model directly."""
    # 2 batches of 10 rows per chunk: 18 params per row, 4 bytes each.
    monkeypatch.setattr(mdn_layers.layout, "CHUNK_BYTES", 2 * 10 * 18 * 4)
    first, second = keras.Input((1,), name="first"), keras.Input((2,), name="second")
    hidden = keras.layers.Dense(8, activation="tanh")(
        keras.layers.Concatenate()([first, second]))
    model = keras.Model({"first": first, "second": second},
                        mdn_layers.MixtureDensity(2, 3)(hidden))
    x = {"first": rng.normal(size=(77, 1)).astype("float32"),
         "second": rng.normal(size=(77, 2)).astype("float32")}
    y = rng.normal(size=(77, 2)).astype("float32")
    expected = mdn_layers.mixture_from_params(model(x), 2, 3).log_prob(y)
    streamed = mdn_layers.predict_mixture(model, x, batch_size=10)  # 4 chunks of <= 20 rows
    np.testing.assert_allclose(streamed.log_prob(y), expected, rtol=1e-5, atol=1e-5)
    if keras.backend.backend() == "tensorflow":
        dataset = tf.data.Dataset.from_tensor_slices(x).batch(10)
        from_dataset = mdn_layers.predict_mixture(model, dataset)
        np.testing.assert_allclose(from_dataset.log_prob(y), expected, rtol=1e-5, atol=1e-5)


def test_predict_mixture_needs_a_mixture_layer():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="MixtureDensity"):
        mdn_layers.predict_mixture(model, np.zeros((2, 2), "float32"))


@pytest.mark.slow
@pytest.mark.parametrize("covariance", KINDS)
def test_save_load_round_trip_and_continue_training(tmp_path, rng, covariance):
    model = mdn_model(2, 3, covariance)
    x = rng.normal(size=(64, 1)).astype("float32")
    y = rng.normal(size=(64, 2)).astype("float32")
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "mdn.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert isinstance(loaded.loss, mdn_layers.MixtureNLL)
    assert loaded.loss.covariance == covariance
    history = loaded.fit(x, y, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.slow
def test_sequence_model_without_time_distributed(rng):
    model = keras.Sequential([
        keras.Input((5, 3)),
        keras.layers.LSTM(8, return_sequences=True),
        mdn_layers.MixtureDensity(2, 3),
    ])
    model.compile("adam", loss=mdn_layers.MixtureNLL(2, 3))
    x = rng.normal(size=(16, 5, 3)).astype("float32")
    y = rng.normal(size=(16, 5, 2)).astype("float32")
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    mixture = mdn_layers.predict_mixture(model, x)
    assert mixture.batch_shape == (16, 5)


@pytest.mark.slow
@pytest.mark.parametrize("covariance", KINDS)
def test_xla_training_with_partial_final_batch(rng, covariance):
    model = mdn_model(3, 4, covariance, jit_compile=True)
    x = rng.normal(size=(130, 1)).astype("float32")  # 130 = 4 * 32 + 2
    y = rng.normal(size=(130, 3)).astype("float32")
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert np.isfinite(model.evaluate(x, y, batch_size=32, verbose=0))


@requires_float64
def test_float64_end_to_end(rng):
    model = mdn_model(2, 3, dtype="float64")
    x = rng.normal(size=(64, 1))
    y = rng.normal(size=(64, 2))
    history = model.fit(x, y, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert model.layers[-1].kernel.dtype == "float64"
    mixture = mdn_layers.predict_mixture(model, x)
    assert mixture.dtype == tf.float64
    assert mixture.log_prob(y).dtype == tf.float64
    assert model.predict(x, verbose=0).dtype == np.float64
    # The loss computes in float64 too: it resolves a 1e-10 relative change in the NLL.
    params = model(x)
    loss = model.loss
    assert loss(y, params).dtype == tf.float64
    assert loss(y, params * (1 + 1e-10)) != loss(y, params)


def test_subclassed_model_builds_the_layer_inside_fit(rng):
    class Network(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(8, activation="tanh")
            self.head = mdn_layers.MixtureDensity(2, 3)

        def call(self, inputs):
            return self.head(self.hidden(inputs))

    model = Network()
    model.compile("adam", loss=mdn_layers.MixtureNLL(2, 3))
    x, y = rng.normal(size=(20, 1)).astype("float32"), rng.normal(size=(20, 2)).astype("float32")
    assert np.isfinite(model.fit(x, y, verbose=0).history["loss"][0])
    assert mdn_layers.predict_mixture(model, x).batch_shape == (20,)


def _value_and_gradient(function, x):
    """``function(x)`` and ``d sum(function(x)) / dx`` on the running Keras backend."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        return function(x), jax.grad(lambda x: keras.ops.sum(function(x)))(x)
    if backend == "torch":
        import torch
        x = torch.tensor(x, requires_grad=True)
        value = function(x)
        value.sum().backward()
        return value.detach(), x.grad
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = function(x)
    return value, tape.gradient(value, x)


@pytest.mark.parametrize("dtype", ["float32", pytest.param("float64", marks=requires_float64)])
def test_training_softplus_and_its_gradient_against_closed_forms(dtype):
    from mdn_layers import _keras_ops
    x = np.array([-200.0, -40.0, -1.0, 0.0, 0.3, 29.99, 30.0, 30.01, 80.0, 1e4], dtype)
    value, gradient = _value_and_gradient(_keras_ops.softplus, x)
    rtol, atol = (1e-6, 1e-37) if dtype == "float32" else (1e-13, 1e-300)  # below: underflow
    np.testing.assert_allclose(np.asarray(value), np.logaddexp(0.0, x.astype("float64")),
                               rtol=rtol, atol=atol)
    np.testing.assert_allclose(np.asarray(gradient), 1.0 / (1.0 + np.exp(-x.astype("float64"))),
                               rtol=rtol, atol=atol)


@pytest.mark.backend_neutral
@pytest.mark.parametrize("covariance", KINDS)
def test_a_non_default_diag_shift_reaches_layer_loss_and_predict_mixture(rng, covariance):
    """Params whose raw scale entries are very negative: every standard deviation is then the
    diag_shift floor, so the density is that of N(loc, diag_shift^2 I) (scipy)."""
    shift = 0.3
    head = mdn_layers.MixtureDensity(2, 1, covariance, diag_shift=shift)
    model = keras.Sequential([keras.Input((3,)), head])
    maps = layout.index_maps(2, 1, covariance)
    bias = np.zeros(head.num_params, "float32")
    bias[maps.positive] = -40.0                       # softplus(-40) = 0: std = diag_shift
    bias[maps.loc[0]] = [1.0, -2.0]
    head.set_weights([np.zeros_like(keras.ops.convert_to_numpy(head.kernel)), bias])
    x = rng.normal(size=(4, 3)).astype("float32")
    y = rng.normal(size=(4, 2)).astype("float32")
    expected = -stats.multivariate_normal([1.0, -2.0], shift**2 * np.eye(2)).logpdf(y)
    loss = mdn_layers.MixtureNLL.for_layer(head)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss.call(y, model(x))), expected,
                               rtol=1e-5)
    assert loss.diag_shift == shift
    model.compile("adam", loss=loss)
    mixture = mdn_layers.predict_mixture(model, x)
    np.testing.assert_allclose(-mixture.log_prob(y).numpy(), expected, rtol=1e-5)
    mismatched = mdn_layers.MixtureNLL(2, 1, covariance)  # default diag_shift: 1e-5
    assert not np.allclose(keras.ops.convert_to_numpy(mismatched.call(y, model(x))), expected)
    model.compile("adam", loss=mismatched)
    with pytest.raises(ValueError, match="differs"):
        mdn_layers.predict_mixture(model, x)


@pytest.mark.backend_neutral
def test_loc_spread_and_initial_scale_set_the_initial_mixture():
    """The starting means are N(0, loc_spread^2) draws (their spread over many components
    tracks loc_spread) and every starting standard deviation is initial_scale."""
    keras.utils.set_random_seed(0)
    for spread, scale in ((0.1, 0.4), (3.0, 2.0)):
        head = mdn_layers.MixtureDensity(2, 400, "diag", loc_spread=spread, initial_scale=scale)
        mixture = head.mixture(keras.ops.convert_to_numpy(head(np.zeros((1, 2), "float32"))))
        means = mixture.components_distribution.mean().numpy()[0]
        np.testing.assert_allclose(means.std(), spread, rtol=0.1)
        np.testing.assert_allclose(mixture.components_distribution.stddev().numpy(), scale,
                                   rtol=1e-4)
