"""MixtureDensity, the Keras 3 layer: shapes, start, training on every backend (hostile data,
mixed precision, XLA, float64, subclassed models), saving, config checks."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import hostile, mdn_model, requires_float64
from scipy import stats

import mdn_layers
from mdn_layers import datasets
from mdn_layers.core import layout

KINDS = ["full", "diag", "spherical"]



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



HOSTILE = ["duplicated_points", "constant_dimension", "heavy_outliers", "tiny_scale",
           "huge_scale", "single_mode_many_components"]


def model_for(covariance, num_components=3, **compile_kwargs):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(16, activation="tanh"),
                              mdn_layers.MixtureDensity(2, num_components, covariance)])
    model.compile("adam", loss=mdn_layers.MixtureNLL(2, num_components, covariance),
                  **compile_kwargs)
    return model


@pytest.mark.backend_neutral
def test_layer_output_shape_for_2d_and_sequence_input():
    layer = mdn_layers.MixtureDensity(3, 4)
    size = mdn_layers.params_size(3, 4)
    assert layer(np.zeros((5, 7), "float32")).shape == (5, size)
    assert layer(np.zeros((5, 6, 7), "float32")).shape == (5, 6, size)
    assert layer.compute_output_shape((None, 6, 7)) == (None, 6, size)


@pytest.mark.backend_neutral
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


@pytest.mark.backend_neutral
@pytest.mark.parametrize("bad", [dict(event_size=0), dict(num_components=-1),
                                 dict(covariance="banded")])
def test_layer_rejects_bad_config(bad):
    kwargs = dict(event_size=2, num_components=3) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        mdn_layers.MixtureDensity(**kwargs)


@pytest.mark.backend_neutral
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


@pytest.mark.backend_neutral
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


@pytest.mark.backend_neutral
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


@pytest.mark.backend_neutral
@pytest.mark.slow
@pytest.mark.parametrize("covariance", KINDS)
def test_xla_training_with_partial_final_batch(rng, covariance):
    model = mdn_model(3, 4, covariance, jit_compile=True)
    x = rng.normal(size=(130, 1)).astype("float32")  # 130 = 4 * 32 + 2
    y = rng.normal(size=(130, 3)).astype("float32")
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert np.isfinite(model.evaluate(x, y, batch_size=32, verbose=0))


@pytest.mark.backend_neutral
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


@pytest.mark.backend_neutral
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


@pytest.mark.backend_neutral
@pytest.mark.parametrize("dtype", ["float32", pytest.param("float64", marks=requires_float64)])
def test_training_softplus_and_its_gradient_against_closed_forms(dtype):
    from mdn_layers.training import keras_ops
    x = np.array([-200.0, -40.0, -1.0, 0.0, 0.3, 29.99, 30.0, 30.01, 80.0, 1e4], dtype)
    value, gradient = _value_and_gradient(keras_ops.softplus, x)
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


@pytest.mark.backend_neutral
@pytest.mark.slow
@pytest.mark.parametrize("covariance", KINDS)
@pytest.mark.parametrize("dataset", HOSTILE)
def test_training_on_hostile_data_stays_finite_and_improves(rng, dataset, covariance):
    keras.utils.set_random_seed(0)
    x, y = hostile(dataset, rng)
    if dataset == "single_mode_many_components":
        y = (x[:, :1] + rng.normal(0, 0.1, (len(x), 2))).astype("float32")
    model = model_for(covariance, num_components=12 if dataset.startswith("single") else 3)
    losses = model.fit(x, y, epochs=6, batch_size=64, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0], losses
    for weight in model.weights:
        assert np.all(np.isfinite(weight.numpy())), weight.path
    assert np.all(np.isfinite(model.predict(x, verbose=0)))


@pytest.mark.backend_neutral
@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_matches_float32_training(rng, policy):
    x = rng.uniform(-1, 1, (1024, 2)).astype("float32")
    y = np.stack([x[:, 0] ** 2, x[:, 1]], -1).astype("float32")
    y += rng.normal(0, 0.1, y.shape).astype("float32")

    def train():
        keras.utils.set_random_seed(1)
        model = model_for("full")
        history = model.fit(x, y, epochs=8, batch_size=128, verbose=0).history["loss"]
        mixture = mdn_layers.predict_mixture(model, x)
        return model, history, -float(np.mean(mixture.log_prob(y)))

    _, _, reference = train()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model, history, reduced = train()
        head = model.layers[-1]
        assert head.compute_dtype == policy.split("_")[1]
        # The projection runs in 16 bits, the params (and the mixture maths) in float32.
        assert model.predict(x[:4], verbose=0).dtype == np.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.all(np.isfinite(history))
    assert abs(reduced - reference) < 0.1, (reduced, reference)


@pytest.mark.backend_neutral
@pytest.mark.slow
def test_fit_is_reproducible_with_a_seed(rng):
    x, y = hostile("constant_dimension", rng)
    runs = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        runs.append(model_for("full").fit(x, y, epochs=2, batch_size=64,
                                          verbose=0).history["loss"])
    assert runs[0] == runs[1]


@pytest.mark.backend_neutral
@pytest.mark.parametrize("make,message", [
    (lambda: mdn_layers.MixtureDensity(0, 3), "`event_size` must be a positive int"),
    (lambda: mdn_layers.MixtureDensity(2, 0), "`num_components` must be a positive int"),
    (lambda: mdn_layers.MixtureDensity(2, 3, "tied"), "`covariance` must be one of"),
    (lambda: mdn_layers.MixtureNLL(2, 3, covariance="Full"), "received 'Full'"),
    (lambda: mdn_layers.MixtureDensity(2, 3, diag_shift=-1.0), "`diag_shift`"),
    (lambda: mdn_layers.MixtureDensity(2, 3, initial_scale=0.0), "`initial_scale`"),
    (lambda: mdn_layers.mixture_from_params(np.zeros((2, 7), "float32"), 2, 3),
     "params last axis has size 7.*params_size=18"),
    (lambda: mdn_layers.MixtureNLL(2, 3)(np.zeros((2, 3)), np.zeros((2, 18))),
     "y_true last axis has size 3.*event_size=2"),
    (lambda: mdn_layers.condition(mdn_layers.mixture_from_params(np.zeros(18), 2, 3), [2],
                                  np.zeros(1)), "out of range"),
    (lambda: mdn_layers.sample(mdn_layers.mixture_from_params(np.zeros(18), 2, 3),
                               temperature=-0.5), "`temperature`"),
])
def test_validation_messages_name_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.backend_neutral
def test_layer_errors_at_build_not_deep_in_tfp():
    model = keras.Sequential([keras.Input((3,)), mdn_layers.MixtureDensity(2, 3)])
    with pytest.raises(ValueError, match="incompatible|expected axis|shape"):
        model(np.zeros((2, 4), "float32"))
