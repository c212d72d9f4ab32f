import keras
import numpy as np
import pytest

import mdn_layers
from mdn_layers import metrics, scores

# The training path: these tests also run under KERAS_BACKEND=jax (see README).
pytestmark = pytest.mark.backend_neutral


def all_metrics():
    return [metrics.NegativeLogLikelihood(2, 3), metrics.CRPS(2, 3),
            metrics.EnergyScore(2, 3, num_samples=50), metrics.IntervalCoverage(2, 3, level=0.8)]


def test_metrics_in_compile_with_xla_and_save_load(tmp_path, rng):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(16, activation="tanh"),
                              mdn_layers.MixtureDensity(2, 3)])
    model.compile("adam", loss=mdn_layers.MixtureNLL(2, 3), metrics=all_metrics(),
                  jit_compile=True)
    x = rng.normal(size=(100, 1)).astype("float32")
    y = rng.normal(size=(100, 2)).astype("float32")
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    for name in ("loss", "nll", "crps", "energy_score", "coverage"):
        assert np.all(np.isfinite(history.history[name])), name
    np.testing.assert_allclose(history.history["loss"], history.history["nll"], rtol=1e-4)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert np.isfinite(loaded.evaluate(x, y, verbose=0)).all()


def test_metric_values_equal_mean_scores(rng):
    params = rng.normal(size=(20, mdn_layers.params_size(2, 3))).astype("float32")
    y = rng.normal(size=(20, 2)).astype("float32")
    mixture = mdn_layers.mixture_from_params(params, 2, 3)
    crps = metrics.CRPS(2, 3)
    crps.update_state(y, params)
    np.testing.assert_allclose(crps.result(), np.mean(scores.crps(mixture, y)), rtol=1e-5)
    coverage = metrics.IntervalCoverage(2, 3, level=0.5)
    coverage.update_state(y, params)
    np.testing.assert_allclose(coverage.result(),
                               np.mean(scores.coverage(mixture, y, levels=(0.5,))), rtol=1e-5)


def test_coverage_metric_validates_level():
    with pytest.raises(ValueError, match="level"):
        metrics.IntervalCoverage(2, 3, level=90)
