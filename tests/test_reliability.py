"""Hostile data, mixed precision, determinism and validation messages."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tensorflow_backend_only

import mdn_layers

# The training path: these tests also run under KERAS_BACKEND=jax (see README).
pytestmark = pytest.mark.backend_neutral

KINDS = ["full", "diag", "spherical"]


def hostile(name, rng, n=256):
    x = rng.normal(size=(n, 2)).astype("float32")
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * 0.5], -1) + rng.normal(0, 0.1, (n, 2))
    if name == "duplicated_points":
        x, y = np.repeat(x[:16], n // 16, 0), np.repeat(y[:16], n // 16, 0)
    elif name == "constant_dimension":
        y[:, 1] = 3.0
    elif name == "heavy_outliers":
        y[rng.choice(n, 8, replace=False)] = 1e3 * y.std(0)
    elif name == "tiny_scale":
        y = y * 1e-4
    elif name == "huge_scale":
        y = y * 1e4
    return x, y.astype("float32")


HOSTILE = ["duplicated_points", "constant_dimension", "heavy_outliers", "tiny_scale",
           "huge_scale", "single_mode_many_components"]


def model_for(covariance, num_components=3, **compile_kwargs):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(16, activation="tanh"),
                              mdn_layers.MixtureDensity(2, num_components, covariance)])
    model.compile("adam", loss=mdn_layers.MixtureNLL(2, num_components, covariance),
                  **compile_kwargs)
    return model


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


@pytest.mark.slow
def test_fit_is_reproducible_with_a_seed(rng):
    x, y = hostile("constant_dimension", rng)
    runs = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        runs.append(model_for("full").fit(x, y, epochs=2, batch_size=64,
                                          verbose=0).history["loss"])
    assert runs[0] == runs[1]


def test_non_finite_targets_and_params_are_named():
    loss = mdn_layers.MixtureNLL(2, 3)
    params = np.zeros((4, mdn_layers.params_size(2, 3)), "float32")
    y = np.zeros((4, 2), "float32")
    with pytest.raises(ValueError, match="y_true contains NaN or inf.*allow_missing"):
        loss(np.where([[True, False]] * 4, np.nan, y), params)
    with pytest.raises(ValueError, match="params .* contain NaN or inf"):
        loss(y, np.full_like(params, np.inf))


@tensorflow_backend_only
def test_non_finite_targets_stop_graph_training(rng):
    x, y = hostile("constant_dimension", rng, n=64)
    y[3, 0] = np.nan
    model = model_for("diag", jit_compile=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="y_true contains NaN"):
        model.fit(x, y, epochs=1, verbose=0)


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


def test_layer_errors_at_build_not_deep_in_tfp():
    model = keras.Sequential([keras.Input((3,)), mdn_layers.MixtureDensity(2, 3)])
    with pytest.raises(ValueError, match="incompatible|expected axis|shape"):
        model(np.zeros((2, 4), "float32"))
