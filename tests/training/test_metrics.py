import keras
import numpy as np
import pytest
from conftest import params_for, requires_float64, thin_far_normal
from scipy import stats

import mdn_layers
from mdn_layers import metrics, scores

# The training path: these tests also run under KERAS_BACKEND=jax (see README).
pytestmark = pytest.mark.backend_neutral


def all_metrics():
    return [metrics.NegativeLogLikelihood(2, 3), metrics.CRPS(2, 3),
            metrics.EnergyScore(2, 3, num_samples=50), metrics.IntervalCoverage(2, 3, level=0.8)]


@pytest.mark.slow
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


@pytest.mark.parametrize("level, message", [
    (90, "`level` must be in (0, 1); received 90."),
    (1.0, "`level` must be in (0, 1); received 1.0."),
    (True, "`level` must be a float in (0, 1); received True of type bool."),
    (np.bool_(False), "`level` must be a float in (0, 1); received np.False_ of type bool."),
    ("0.9", "`level` must be a float in (0, 1); received '0.9' of type str."),
])
def test_coverage_metric_validates_level_with_the_whole_message(level, message):
    with pytest.raises(ValueError) as error:
        metrics.IntervalCoverage(2, 3, level=level)
    assert str(error.value) == message


def test_energy_score_metric_is_close_to_the_closed_form_for_one_dim(rng):
    """For D = 1 the energy score is the CRPS (closed form): the metric's Monte Carlo value
    matches it, so the spread term carries its 1/2 weight."""
    params = rng.normal(size=(400, mdn_layers.params_size(1, 3))).astype("float32")
    y = rng.normal(size=(400, 1)).astype("float32")
    energy = metrics.EnergyScore(1, 3, num_samples=400)
    energy.update_state(y, params)
    crps = np.mean(scores.crps(mdn_layers.mixture_from_params(params, 1, 3), y))
    np.testing.assert_allclose(float(energy.result()), crps, rtol=0.03)


def test_every_metric_weights_samples_by_sample_weight(rng):
    params = rng.normal(size=(12, mdn_layers.params_size(2, 3))).astype("float32")
    y = rng.normal(size=(12, 2)).astype("float32")
    weights = np.r_[np.ones(4), np.zeros(8)].astype("float32")
    for weighted, subset in zip(all_metrics(), all_metrics()):
        weighted.update_state(y, params, sample_weight=weights)
        subset.update_state(y[:4], params[:4])
        np.testing.assert_allclose(float(weighted.result()), float(subset.result()),
                                   rtol=1e-5, atol=1e-6, err_msg=weighted.name)


def test_missing_targets_count_only_observed_dims_in_coverage_and_energy(rng):
    """Coverage with a missing dim is the coverage of the observed dim alone (per sample),
    and the energy score with NaN targets uses norms over the observed dims only."""
    params = rng.normal(size=(30, mdn_layers.params_size(2, 3))).astype("float32")
    y = rng.normal(size=(30, 2)).astype("float32")
    y_missing = y.copy()
    y_missing[:, 1] = np.nan
    mixture = mdn_layers.mixture_from_params(params, 2, 3)
    coverage = metrics.IntervalCoverage(2, 3, level=0.5, allow_missing=True)
    coverage.update_state(y_missing, params)
    low, high = mdn_layers.central_interval(mixture, 0.5)
    inside = (y[:, 0] >= low.numpy()[:, 0]) & (y[:, 0] <= high.numpy()[:, 0])
    np.testing.assert_allclose(float(coverage.result()), inside.mean(), atol=1e-6)
    energy = metrics.EnergyScore(2, 3, num_samples=300, allow_missing=True)
    energy.update_state(y_missing, params)
    marginal = mdn_layers.marginalize(mixture, [0])
    expected = np.mean(scores.energy_score(marginal, y[:, :1], num_samples=300))
    np.testing.assert_allclose(float(energy.result()), expected, rtol=0.05)


@pytest.mark.parametrize("level", [0.0, 1.0, -0.1, True])
def test_interval_levels_exclude_zero_and_one(level):
    with pytest.raises(ValueError, match="level"):
        metrics.IntervalCoverage(2, 3, level=level)


def test_metric_configs_round_trip():
    made = [metrics.NegativeLogLikelihood(3, 2, "diag", allow_missing=True, name="n"),
            metrics.CRPS(3, 2, "spherical", diag_shift=0.01),
            metrics.EnergyScore(3, 2, num_samples=17, seed=5),
            metrics.IntervalCoverage(3, 2, level=0.8)]
    for metric in made:
        config = metric.get_config()
        assert (config["event_size"], config["num_components"]) == (3, 2)
        restored = type(metric).from_config(config)
        assert restored.get_config() == config
    assert made[0].get_config()["allow_missing"] and made[0].get_config()["name"] == "n"
    assert made[1].get_config()["covariance"] == "spherical"
    assert made[1].get_config()["diag_shift"] == 0.01
    assert (made[2].get_config()["num_samples"], made[2].get_config()["seed"]) == (17, 5)
    assert made[3].get_config()["level"] == 0.8


@pytest.mark.parametrize("covariance", ["full", "diag", "spherical"])
def test_energy_score_metric_of_an_isotropic_normal_at_its_mean_is_the_closed_form(covariance):
    """For y at the mean of N(mu, s^2 I) in two dims ||X - y|| is Rayleigh(s) and
    ||X - X'|| Rayleigh(s sqrt 2): ES = s sqrt(pi / 2) (1 - 1 / sqrt 2). Params with two
    batch axes [2, 3]; every covariance kind."""
    s, mu = 0.7, np.array([1.0, -2.0])
    params = params_for(np.ones(1), mu[None], s**2 * np.eye(2)[None], covariance)
    params = np.broadcast_to(params, (2, 3, params.size)).astype("float32")
    energy = metrics.EnergyScore(2, 1, covariance, num_samples=3000, seed=3)
    energy.update_state(np.broadcast_to(mu, (2, 3, 2)).astype("float32"), params)
    expected = s * np.sqrt(np.pi / 2) * (1 - 1 / np.sqrt(2))
    np.testing.assert_allclose(float(energy.result()), expected, rtol=0.03)


def test_energy_score_metric_defaults_and_named_errors():
    config = metrics.EnergyScore(2, 3).get_config()
    assert (config["num_samples"], config["seed"]) == (100, 0)
    with pytest.raises(ValueError, match="`num_samples`"):
        metrics.EnergyScore(2, 3, num_samples=0)
    with pytest.raises(ValueError, match="`seed`"):
        metrics.EnergyScore(2, 3, seed=-1)


@pytest.mark.parametrize("covariance", ["diag", "spherical"])
def test_crps_and_coverage_metrics_of_every_kind_over_two_batch_axes(rng, covariance):
    params = rng.normal(size=(2, 3, mdn_layers.params_size(2, 3, covariance))).astype("float32")
    y = rng.normal(size=(2, 3, 2)).astype("float32")
    mixture = mdn_layers.mixture_from_params(params, 2, 3, covariance)
    crps = metrics.CRPS(2, 3, covariance)
    crps.update_state(y, params)
    np.testing.assert_allclose(crps.result(), np.mean(scores.crps(mixture, y)), rtol=1e-5)
    coverage = metrics.IntervalCoverage(2, 3, covariance, level=0.5)
    coverage.update_state(y, params)
    np.testing.assert_allclose(coverage.result(),
                               np.mean(scores.coverage(mixture, y, levels=(0.5,))), rtol=1e-5)


@requires_float64
def test_metrics_compute_float64_params_in_float64(rng):
    """A thin component far from 0: float32 arithmetic would lose the NLL's digits."""
    params, y = thin_far_normal(rng, "float64")
    expected = -np.mean(stats.norm(1e4, 1e-3).logpdf(y[:, 0]))
    nll = metrics.NegativeLogLikelihood(1, 1, dtype="float64")
    nll.update_state(y, params)
    np.testing.assert_allclose(float(nll.result()), expected, rtol=1e-6)


def test_metrics_compute_half_precision_params_in_float32(rng):
    half = rng.normal(size=(6, mdn_layers.params_size(2, 2))).astype("float16")
    targets = rng.normal(size=(6, 2)).astype("float32")
    as_half, as_single = metrics.NegativeLogLikelihood(2, 2), metrics.NegativeLogLikelihood(2, 2)
    as_half.update_state(targets, half)
    as_single.update_state(targets, half.astype("float32"))
    np.testing.assert_allclose(float(as_half.result()), float(as_single.result()), rtol=1e-6)


def test_coverage_metric_level_is_ninety_percent_by_default_and_named():
    assert metrics.IntervalCoverage(2, 3).get_config()["level"] == 0.9
    with pytest.raises(ValueError, match="`level`"):
        metrics.IntervalCoverage(2, 3, level=1.0)


def test_metric_defaults_names_and_dtype():
    crps = metrics.CRPS(2, 3)
    assert crps.name == "crps" and not crps.allow_missing
    named = metrics.NegativeLogLikelihood(2, 3, name="held_out", dtype="float64")
    assert named.name == "held_out" and named.dtype == "float64"
    with pytest.raises(ValueError, match="`allow_missing`"):
        metrics.CRPS(2, 3, allow_missing="yes")


def test_metrics_give_rows_without_targets_no_weight_and_take_column_weights(rng):
    """Two batch axes; with allow_missing a step whose dims are all missing carries no
    weight, and ``[N, 1]`` sample weights act like ``[N]`` ones."""
    params = rng.normal(size=(2, 3, mdn_layers.params_size(2, 3))).astype("float32")
    y = rng.normal(size=(2, 3, 2)).astype("float32")
    y[0, 1] = np.nan                                  # no target at all
    y[1, 2, 0] = np.nan                               # one of two
    mixture = mdn_layers.mixture_from_params(params, 2, 3)
    per_step = scores.nll(mixture, y, allow_missing=True).numpy()
    nll = metrics.NegativeLogLikelihood(2, 3, allow_missing=True)
    nll.update_state(y, params)
    keep = np.ones((2, 3), bool)
    keep[0, 1] = False
    np.testing.assert_allclose(float(nll.result()), per_step[keep].mean(), rtol=1e-5)
    flat_params, flat_y = params.reshape(6, -1), y.reshape(6, 2)
    weight = rng.uniform(0.5, 2.0, 6).astype("float32")
    weight[1] = 1.0                                   # the empty row: no weight anyway
    column = metrics.NegativeLogLikelihood(2, 3, allow_missing=True)
    column.update_state(flat_y, flat_params, sample_weight=weight[:, None])
    kept = keep.reshape(-1)
    np.testing.assert_allclose(float(column.result()),
                               np.sum(per_step.reshape(-1)[kept] * weight[kept])
                               / np.sum(weight[kept]), rtol=1e-5)
    # Per-step weights of sequences, as [B, T, 1] too (the trailing axis, not the steps').
    steps = metrics.NegativeLogLikelihood(2, 3, allow_missing=True)
    steps.update_state(y, params, sample_weight=weight.reshape(2, 3, 1))
    np.testing.assert_allclose(float(steps.result()), float(column.result()), rtol=1e-6)
