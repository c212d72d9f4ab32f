
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

import mdn_layers
from mdn_layers import datasets, summaries, tfp_layers

tfd = tfp.distributions


def tfp_layer_model(event_size, num_components, seed=0):
    """The model TFP's docs show: Dense -> tfp.layers.MixtureSameFamily(K, MVNTriL(D))."""
    tf_keras.utils.set_random_seed(seed)
    size = tfp.layers.MixtureSameFamily.params_size(
        num_components, tfp.layers.MultivariateNormalTriL.params_size(event_size))
    return tf_keras.Sequential([
        tf_keras.Input((1,)),
        tf_keras.layers.Dense(16, activation="tanh"),
        tf_keras.layers.Dense(int(size)),
        tfp.layers.MixtureSameFamily(num_components,
                                     tfp.layers.MultivariateNormalTriL(event_size)),
    ])


def our_model(event_size, num_components, covariance="full", **layer_kwargs):
    return tf_keras.Sequential([
        tf_keras.Input((1,)),
        tf_keras.layers.Dense(16, activation="tanh"),
        tf_keras.layers.Dense(tfp_layers.MixtureDistribution.params_size(
            event_size, num_components, covariance)),
        tfp_layers.MixtureDistribution(event_size, num_components, covariance, **layer_kwargs),
    ])


@pytest.mark.parametrize("event_size", [1, 3])
def test_same_params_give_same_log_prob_as_tfp_layer(rng, event_size):
    size = tfp_layers.MixtureDistribution.params_size(event_size, 4)
    params = rng.normal(size=(9, size)).astype("float32")
    y = rng.normal(size=(9, event_size)).astype("float32")
    theirs = tfp.layers.MixtureSameFamily(4, tfp.layers.MultivariateNormalTriL(event_size))
    ours = tfp_layers.MixtureDistribution(event_size, 4)
    np.testing.assert_allclose(ours(params).log_prob(y), theirs(params).log_prob(y),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_weights_trained_with_tfp_layer_load_into_our_model(tmp_path, rng):
    theirs = tfp_layer_model(2, 3)
    x = rng.normal(size=(64, 1)).astype("float32")
    y = rng.normal(size=(64, 2)).astype("float32")
    theirs.compile("adam", loss=lambda y_true, dist: -dist.log_prob(y_true))
    theirs.fit(x, y, epochs=1, verbose=0)
    ours = our_model(2, 3)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours(x).log_prob(y), theirs(x).log_prob(y), rtol=1e-6, atol=1e-6)
    theirs.save_weights(str(tmp_path / "tfp.weights.h5"))
    from_file = our_model(2, 3)
    from_file.load_weights(str(tmp_path / "tfp.weights.h5"))
    np.testing.assert_allclose(from_file(x).log_prob(y), theirs(x).log_prob(y), rtol=1e-6,
                               atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("make", ["distribution", "density"])
def test_whole_model_round_trip_and_continue_training(tmp_path, rng, fmt, make):
    if make == "distribution":
        model = our_model(2, 3, "diag", convert_to_tensor_fn="sample")
    else:
        model = tf_keras.Sequential([tf_keras.Input((1,)),
                                     tfp_layers.MixtureDensity(2, 3, initial_scale=0.5)])
    model.compile("adam", loss=tfp_layers.negative_log_likelihood)
    x = rng.normal(size=(64, 1)).astype("float32")
    y = rng.normal(size=(64, 2)).astype("float32")
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / f"model.{fmt}")
    model.save(path)
    if fmt == "keras":
        loaded = tf_keras.models.load_model(path, safe_mode=True)
    else:
        loaded = tf_keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x).log_prob(y), model(x).log_prob(y))
    assert loaded.layers[-1].get_config() == model.layers[-1].get_config()
    history = loaded.fit(x, y, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.parametrize("safe_mode", [True, False])
def test_tfp_layer_itself_cannot_be_loaded_back(tmp_path, safe_mode):
    """Why this front-end exists: a saved tfp.layers.MixtureSameFamily model does not load,
    not even with safe_mode=False (its config holds a lambda that does not deserialise), while
    the same network with our head loads with safe_mode=True and predicts the same mixture."""
    model = tfp_layer_model(2, 2)
    model.compile("adam", loss=tfp_layers.negative_log_likelihood)
    path = str(tmp_path / "tfp.keras")
    model.save(path)
    with pytest.raises(TypeError, match="MixtureSameFamily"):
        tf_keras.models.load_model(path, safe_mode=safe_mode)
    ours = tf_keras.Sequential([tf_keras.Input((1,)), tf_keras.layers.Dense(16, activation="tanh"),
                                tfp_layers.MixtureDensity(2, 2)])
    ours.compile("adam", loss=tfp_layers.negative_log_likelihood)
    ours.save(str(tmp_path / "ours.keras"))
    loaded = tf_keras.models.load_model(str(tmp_path / "ours.keras"), safe_mode=safe_mode)
    x = np.linspace(-1, 1, 8, dtype="float32")[:, None]
    y = np.zeros((8, 2), "float32")
    np.testing.assert_allclose(loaded(x).log_prob(y), ours(x).log_prob(y), rtol=1e-6)


@pytest.mark.slow
def test_fit_reduces_held_out_nll_and_predict_mixture():
    tf_keras.utils.set_random_seed(0)
    train, test = datasets.bimodal_sine(3000, seed=0), datasets.bimodal_sine(1000, seed=1)
    model = tf_keras.Sequential([tf_keras.Input((1,)),
                                 tf_keras.layers.Dense(32, activation="tanh"),
                                 tfp_layers.MixtureDensity(1, 3)])
    model.compile(tf_keras.optimizers.Adam(1e-2), loss=tfp_layers.negative_log_likelihood)

    def held_out_nll():
        mixture = mdn_layers.predict_mixture(model, test.x, batch_size=256)
        assert isinstance(mixture, tfd.MixtureSameFamily) and mixture.batch_shape == (1000,)
        return -float(np.mean(mixture.log_prob(test.y)))

    before = held_out_nll()
    model.fit(train.x, train.y, epochs=25, batch_size=128, verbose=0)
    after = held_out_nll()
    assert after < before - 0.5 and after < test.oracle_nll() + 0.25, (before, after)
    np.testing.assert_allclose(model.predict(test.x[:5], verbose=0),
                               mdn_layers.predict_mixture(model, test.x[:5]).mean(), rtol=1e-5)


def test_core_functions_accept_layer_output(rng):
    layer = tfp_layers.MixtureDistribution(3, 2)
    output = layer(rng.normal(size=(4, layer.params_size(3, 2))).astype("float32"))
    assert not isinstance(output, tfd.MixtureSameFamily)  # TFP's tensor-coercible wrapper
    conditioned = mdn_layers.condition(output, [1], np.zeros((4, 1), "float32"))
    assert conditioned.event_shape == (2,) and conditioned.batch_shape == (4,)
    assert mdn_layers.marginalize(output, [2]).event_shape == (1,)
    assert mdn_layers.sample(output, 5, seed=0).shape == (5, 4, 3)


def test_mixing_up_front_ends_gives_clear_errors():
    with pytest.raises(TypeError, match="tf_keras tensor.*Keras 3 layer"):
        mdn_layers.MixtureDensity(2, 3)(tf_keras.Input((4,)))
    with pytest.raises(TypeError, match="keras tensor.*tf_keras layer"):
        tfp_layers.MixtureDistribution(2, 3)(keras.Input((18,)))
    model = tf_keras.Sequential([tf_keras.Input((1,)), tfp_layers.MixtureDensity(2, 3)])
    model.compile("adam", loss=mdn_layers.MixtureNLL(2, 3))
    with pytest.raises(TypeError, match="negative_log_likelihood"):
        model.fit(np.zeros((4, 1)), np.zeros((4, 2)), verbose=0)
    with pytest.raises(TypeError, match="MixtureNLL"):
        tfp_layers.negative_log_likelihood(np.zeros((2, 2)), np.zeros((2, 18)))


def test_validation_and_params_width():
    with pytest.raises(ValueError, match="convert_to_tensor_fn"):
        tfp_layers.MixtureDistribution(2, 3, convert_to_tensor_fn=lambda d: d.mean())
    with pytest.raises(ValueError, match="covariance"):
        tfp_layers.MixtureDistribution(2, 3, covariance="tied")
    with pytest.raises(ValueError, match="params_size=18"):
        tfp_layers.MixtureDistribution(2, 3)(np.zeros((2, 10), "float32"))


@pytest.mark.slow
def test_fresh_process_loads_with_only_the_import(tmp_path, rng):
    import subprocess
    import sys

    model = tf_keras.Sequential([tf_keras.Input((1,)), tfp_layers.MixtureDensity(2, 3)])
    model.compile("adam", loss=tfp_layers.negative_log_likelihood)
    path = str(tmp_path / "m.keras")
    model.save(path)
    x = np.array([[0.5]], "float32")
    expected = float(model(x).log_prob(np.zeros((1, 2), "float32"))[0])
    script = (
        "import numpy as np, tf_keras\n"
        "import mdn_layers.tfp_layers  # registers the classes; nothing else is needed\n"
        f"m = tf_keras.models.load_model({path!r}, safe_mode=True)\n"
        "print(float(m(np.array([[0.5]], 'float32')).log_prob(np.zeros((1, 2), 'float32'))[0]))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(expected, rel=1e-6)


def test_subclassed_tf_keras_model_builds_the_layer_inside_fit(rng):
    class Network(tf_keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = tf_keras.layers.Dense(8, activation="tanh")
            self.head = tfp_layers.MixtureDensity(2, 3)

        def call(self, inputs):
            return self.head(self.hidden(inputs))

    model = Network()
    model.compile("adam", loss=tfp_layers.negative_log_likelihood)
    x, y = rng.normal(size=(20, 1)).astype("float32"), rng.normal(size=(20, 2)).astype("float32")
    assert np.isfinite(model.fit(x, y, verbose=0).history["loss"][0])


def test_predict_mixture_streams_row_chunks(monkeypatch):
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((1,)),
                                 tf_keras.layers.Dense(8, activation="tanh"),
                                 tfp_layers.MixtureDensity(2, 3)])
    x = np.linspace(-1, 1, 53, dtype="float32")[:, None]
    y = np.stack([x[:, 0], -x[:, 0]], -1)
    expected = model(x).log_prob(y)
    # 2 batches of 10 rows per chunk (18 params per row, 4 bytes each): 3 chunks.
    monkeypatch.setattr(mdn_layers.core.layout, "CHUNK_BYTES", 2 * 10 * 18 * 4)
    mixture = mdn_layers.predict_mixture(model, x, batch_size=10)
    assert mixture.batch_shape == (53,)
    np.testing.assert_allclose(mixture.log_prob(y), expected, rtol=1e-5, atol=1e-5)


def test_convert_to_tensor_fn_mode_is_the_mixture_mode(rng):
    """A bimodal mixture whose mean lies between its modes: the layer's tensor value with
    "mode" is summaries.mode, not the mean."""
    params = np.zeros((3, tfp_layers.MixtureDistribution.params_size(1, 2)), "float32")
    params[:, :2] = [[0.5, 0.0]]          # weights 0.62 / 0.38
    params[:, 2], params[:, 4] = -3.0, 3.0  # means -3 and 3, standard deviations softplus(0)
    layer = tfp_layers.MixtureDistribution(1, 2, convert_to_tensor_fn="mode")
    value = tf.convert_to_tensor(layer(params))
    expected = summaries.mode(mdn_layers.mixture_from_params(params, 1, 2))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    mean = mdn_layers.mixture_from_params(params, 1, 2).mean()
    assert np.all(np.abs(value.numpy() - mean.numpy()) > 1.0)


def test_tf_keras_loss_refuses_targets_whose_leading_axes_are_not_the_batch():
    mixture = mdn_layers.mixture_from_params(np.zeros((6, 18), "float32"), 2, 3)
    with pytest.raises(ValueError, match="does not match"):
        tfp_layers.negative_log_likelihood(np.zeros((6, 1, 2), "float32"), mixture)
    with pytest.raises(ValueError, match="does not match"):
        tfp_layers.negative_log_likelihood(np.zeros((5, 2), "float32"), mixture)
    assert tfp_layers.negative_log_likelihood(np.zeros((6, 2), "float32"), mixture).shape == (6,)


def test_tf_keras_loss_checks_width_and_finiteness(rng):
    mixture = tfp_layers.MixtureDistribution(2, 3)(
        tf.constant(rng.normal(size=(4, 18)).astype("float32")))
    with pytest.raises(ValueError, match="event size is 2"):
        tfp_layers.negative_log_likelihood(np.zeros((4, 1), "float32"), mixture)
    with pytest.raises(ValueError, match="NaN or inf"):
        tfp_layers.negative_log_likelihood(np.full((4, 2), np.nan, "float32"), mixture)


def test_adapt_after_the_tf_keras_model_ran_raises_and_adapt_before_takes_effect(rng):
    x = rng.normal(size=(64, 3)).astype("float32")
    y = rng.normal(1000, 100, size=(64, 2))

    def model(head):
        tf_keras.utils.set_random_seed(0)
        return tf_keras.Sequential([tf_keras.Input((3,)),
                                    tf_keras.layers.Dense(8, activation="tanh"), head])

    ran = model(tfp_layers.MixtureDensity(2, 3))
    ran.predict(x, verbose=0)                     # a traced run, cached by tf_keras
    with pytest.raises(RuntimeError, match="already run in a model unadapted"):
        ran.layers[-1].adapt(y)
    assert ran.layers[-1].target_loc is None
    # Putting the model together is not a run: adapt afterwards shows in predict.
    head = tfp_layers.MixtureDensity(2, 3)
    built = model(head)
    head.adapt(y)
    assert np.all(np.abs(built.predict(x, verbose=0).mean(0) - 1000) < 300)  # unadapted: ~0
