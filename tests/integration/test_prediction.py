"""predict_mixture, the bridge from a Keras model to one batched TFP mixture."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import mdn_model

import mdn_layers

tfd = tfp.distributions



@pytest.mark.backend_neutral
def test_predict_mixture_returns_one_batched_mixture(rng):
    model = mdn_model(2, 3)
    x = rng.normal(size=(70, 1)).astype("float32")
    mixture = mdn_layers.predict_mixture(model, x, batch_size=16)
    assert isinstance(mixture, tfd.MixtureSameFamily)
    assert mixture.batch_shape == (70,) and mixture.event_shape == (2,)
    direct = mdn_layers.mixture_from_params(model(x), 2, 3)
    y = rng.normal(size=(70, 2)).astype("float32")
    np.testing.assert_allclose(mixture.log_prob(y), direct.log_prob(y), rtol=1e-5, atol=1e-5)


@pytest.mark.backend_neutral
def test_predict_mixture_streams_chunks_of_arrays_and_takes_other_inputs(rng, monkeypatch):
    """Rows spread over several chunks (the last one partial), a two-input model fed a dict,
    and a tf.data pipeline all give the params of calling the model directly."""
    # 2 batches of 10 rows per chunk: 18 params per row, 4 bytes each.
    monkeypatch.setattr(mdn_layers.core.layout, "CHUNK_BYTES", 2 * 10 * 18 * 4)
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


@pytest.mark.backend_neutral
def test_predict_mixture_needs_a_mixture_layer():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="MixtureDensity"):
        mdn_layers.predict_mixture(model, np.zeros((2, 2), "float32"))


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
