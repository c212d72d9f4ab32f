"""Files saved by earlier versions keep loading: the fixtures in ``tests/fixtures/`` were
written by ``make_saved_models.py`` with the code of the time (modules then at the top level:
``mdn_layers.layers``, ``mdn_layers.losses``, ``mdn_layers.metrics``); the registered names
find today's classes, and the models give the same mixtures."""

import os

import keras
import numpy as np

import mdn_layers

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "fixtures")


def test_a_keras_file_of_an_adapted_model_loads_safely_and_predicts_the_same():
    model = keras.saving.load_model(os.path.join(FIXTURES, "adapted_full.keras"),
                                    safe_mode=True)
    expected = np.load(os.path.join(FIXTURES, "expected.npz"))
    x = np.load(os.path.join(FIXTURES, "inputs.npy"))
    head = model.layers[-1]
    assert isinstance(head, mdn_layers.MixtureDensity) and head.target_loc is not None
    assert head.scale_floor is None and head.target_floor is None
    assert isinstance(model.loss, mdn_layers.MixtureNLL)
    mixture = mdn_layers.predict_mixture(model, x)
    np.testing.assert_allclose(mixture.log_prob(expected["targets"]).numpy(),
                               expected["keras_log_prob"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mixture.mean().numpy(), expected["keras_mean"], rtol=1e-5,
                               atol=1e-4)
    # It trains on after loading, with its compiled loss and metrics.
    history = model.fit(x, expected["targets"], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_a_tf_keras_file_loads_with_no_custom_objects_and_gives_the_same_mixture():
    import tf_keras

    from mdn_layers import tfp_layers  # noqa: F401 - registers the tf_keras classes
    model = tf_keras.models.load_model(os.path.join(FIXTURES, "tf_keras_mixture.keras"),
                                       safe_mode=True)
    expected = np.load(os.path.join(FIXTURES, "expected.npz"))
    x = np.load(os.path.join(FIXTURES, "inputs.npy"))
    mixture = model(x)
    np.testing.assert_allclose(mixture.log_prob(expected["targets"]).numpy(),
                               expected["tf_keras_log_prob"], rtol=1e-4, atol=1e-4)
