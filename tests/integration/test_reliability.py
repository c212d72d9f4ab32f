"""What hostile use cannot do: adapt after a model ran, stale target statistics, two threads on
one model, a NaN input row, huge ensemble weights, targets that float32 rounds."""

import threading
import warnings

import keras
import numpy as np
import pytest
from conftest import warned_here

import mdn_layers

pytestmark = pytest.mark.backend_neutral


def _model(head):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="tanh"),
                             head])


def test_adapt_after_the_model_ran_unadapted_raises_and_adapt_before_takes_effect(rng):
    x = rng.normal(size=(64, 3)).astype("float32")
    y = rng.normal(1000, 100, size=(64, 2))
    model = _model(mdn_layers.MixtureDensity(2, 3))
    mdn_layers.predict_mixture(model, x)                    # runs (and caches) unadapted
    with pytest.raises(RuntimeError, match="already run in a model unadapted"):
        model.layers[-1].adapt(y)
    assert model.layers[-1].target_loc is None              # nothing changed
    # Adapted before the first run, re-adapting later is a change of weights: it shows.
    head = mdn_layers.MixtureDensity(2, 3).adapt(y)
    model = _model(head)
    before = mdn_layers.predict_mixture(model, x).mean().numpy()
    assert np.all(np.abs(before.mean(0) - 1000) < 300)
    head.adapt(y - 5000.0)
    after = mdn_layers.predict_mixture(model, x).mean().numpy()
    np.testing.assert_allclose(after.mean(0), before.mean(0) - 5000.0, atol=300)


def test_target_statistics_follow_set_weights_and_the_config_saves_them(rng):
    y = rng.normal(size=(50, 2))
    head = mdn_layers.MixtureDensity(2, 2).adapt(y)
    model = _model(head)
    weights = model.get_weights()
    weights[-2] = np.array([99.0, 100.0], "float32")        # target_loc
    model.set_weights(weights)
    assert head.target_loc == (99.0, 100.0)
    assert head.get_config()["target_loc"] == [99.0, 100.0]


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="one process-wide torch "
                    "thread pool; the race is JAX's")
def test_two_threads_on_one_model_get_the_sequential_answer_and_keep_the_model(rng):
    x = rng.normal(size=(256, 3)).astype("float32")
    model = _model(mdn_layers.MixtureDensity(2, 3))
    expected = mdn_layers.predict_mixture(model, x).mean().numpy()
    results, errors = [None] * 4, []

    def work(index):
        try:
            results[index] = mdn_layers.predict_mixture(model, x).mean().numpy()
        except Exception as error:  # noqa: BLE001 - collected and reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for result in results:
        np.testing.assert_allclose(result, expected, rtol=1e-6)
    assert len(model.get_weights()) == 4                   # the model is intact


def test_a_nan_input_row_is_named_in_a_warning(rng):
    x = rng.normal(size=(40, 3)).astype("float32")
    x[[5, 17]] = np.nan
    model = _model(mdn_layers.MixtureDensity(2, 3))
    with pytest.warns(RuntimeWarning, match=r"2 rows have NaN or infinite params.*\[5, 17\]"
                      ) as caught:
        mixture = mdn_layers.predict_mixture(model, x)
    assert [warned_here(w, __file__) for w in caught if "NaN" in str(w.message)] == [True]
    assert np.isfinite(mixture.mean().numpy()[0]).all()


def test_huge_ensemble_weights_are_ratios_not_an_overflow(rng):
    x = rng.normal(size=(6, 3)).astype("float32")
    members = [mdn_layers.predict_mixture(_model(mdn_layers.MixtureDensity(2, 2)), x)
               for _ in range(2)]
    y = rng.normal(size=(6, 2))
    huge = mdn_layers.ensemble(members, weights=[1e308, 1e308]).log_prob(y).numpy()
    equal = mdn_layers.ensemble(members).log_prob(y).numpy()
    np.testing.assert_allclose(huge, equal, rtol=1e-6)


def test_targets_that_float32_rounds_are_warned_about_and_ordinary_ones_are_not(rng):
    x = rng.normal(size=(60, 2))
    with pytest.warns(RuntimeWarning, match=r"target dims \[0\] have a large offset") as caught:
        mdn_layers.fit_tabular(x, 1e12 + 1e5 * rng.normal(size=60), num_components=1,
                               noise_levels=[0.1], max_epochs=1)
    # The warning names this line, not one inside the package (filters keyed on it work).
    assert [warned_here(w, __file__) for w in caught if "large offset" in str(w.message)] == [
        True]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        mdn_layers.fit_tabular(x, 2e5 + 8e4 * rng.normal(size=60), num_components=1,
                               noise_levels=[0.1], max_epochs=1)


@pytest.mark.parametrize("scale", [1e-9, 1e3])
def test_the_default_floor_scales_with_the_targets(rng, scale):
    """The recipe is equivariant under a change of target units: the NLL of targets times
    ``scale`` is the NLL at scale 1 plus ``log(scale)`` (a fixed floor in target units
    would cap the density of small targets)."""
    x = rng.uniform(-1, 1, size=(300, 1))
    y = np.sin(3 * x) + 0.05 * rng.normal(size=x.shape)
    kwargs = dict(num_components=1, noise_levels=[0.0], max_epochs=40, refit=False)
    unit = mdn_layers.fit_tabular(x, y, **kwargs)
    scaled = mdn_layers.fit_tabular(x, scale * y, **kwargs)
    nll_unit = -np.mean(mdn_layers.predict_mixture(unit.model, x).log_prob(y))
    nll_scaled = -np.mean(mdn_layers.predict_mixture(scaled.model, x).log_prob(scale * y))
    assert nll_unit < -1.0                                   # it learnt the noise level
    np.testing.assert_allclose(nll_scaled, nll_unit + np.log(scale), atol=0.05)


def test_an_adapted_heads_floor_is_diag_shift_times_the_target_scale(rng):
    y = 1e-9 * rng.normal(size=(500, 2))
    head = mdn_layers.MixtureDensity(2, 1, "diag", diag_shift=1e-3).adapt(y)
    model = _model(head)
    params = np.array(model.layers[-1].bias)
    params[:] = -60.0                                        # every scale at its floor
    model.layers[-1].bias.assign(params)
    model.layers[-1].kernel.assign(np.zeros(model.layers[-1].kernel.shape))
    mixture = mdn_layers.predict_mixture(model, np.zeros((1, 3), "float32"))
    std = mixture.components_distribution.stddev().numpy()[0, 0]
    np.testing.assert_allclose(std, 1e-3 * np.asarray(head.target_scale), rtol=1e-4)
    assert head.mixture_config()["diag_shift"] == 0.0      # folded into the params
    assert head.get_config()["diag_shift"] == 1e-3          # the argument as given
