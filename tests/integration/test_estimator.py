"""MixtureDensityRegressor: the scikit-learn contract on raw tables (DataFrames with categories
and missing values, several targets, NaN targets), its predictions against the mixture and
independent references, pipelines and grid search, saving without pickle."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import warned_here
from scipy import stats
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

import mdn_layers
from mdn_layers.estimator import MixtureDensityRegressor

pytestmark = pytest.mark.backend_neutral


def small(**kwargs):
    """An estimator that trains in a second or two."""
    return MixtureDensityRegressor(**{"num_components": 2, "noise_levels": [0.05],
                                      "max_epochs": 15, "units": 16, **kwargs})


def table(rng, n=240):
    frame = pd.DataFrame({
        "size": rng.normal(100, 20, n),
        "kind": rng.choice(["flat", "house", "barn"], n),
        "new": rng.random(n) > 0.5,
        "rooms": rng.integers(1, 6, n).astype(float),
    })
    frame.loc[::9, "size"] = np.nan
    frame.loc[::13, "kind"] = None
    signal = (np.nan_to_num(frame["size"].to_numpy(), nan=100.0) * 2
              + 50 * (frame["kind"] == "house").to_numpy() + 20 * frame["new"].to_numpy())
    y = np.stack([signal + rng.normal(0, 5, n), -signal + rng.normal(0, 5, n),
                  rng.normal(0, 1, n)], axis=-1)
    return frame, y


@pytest.mark.slow
@parametrize_with_checks(
    [MixtureDensityRegressor(num_components=1, noise_levels=[0.1], max_epochs=2, units=8)],
    expected_failed_checks=lambda estimator: {
        "check_sample_weight_equivalence_on_dense_data":
            "a weight of 2 is not the same fit as a duplicated row: the held-out rows are "
            "drawn by distinct row, and training is stochastic"})
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_a_dataframe_with_categories_missing_inputs_and_targets_trains_and_predicts(rng):
    frame, y = table(rng)
    y[::7, 1] = np.nan
    est = small().fit(frame, y)
    assert est.n_features_in_ == 4 and list(est.feature_names_in_) == list(frame.columns)
    assert est.categories_ == {"kind": ["barn", "flat", "house"], "new": ["False", "True"]}
    assert est.n_targets_ == 3 and est.fit_.model.loss.allow_missing
    unseen = frame.iloc[:4].copy()
    unseen["kind"] = ["castle", None, "flat", "house"]          # unseen and missing categories
    unseen.loc[unseen.index[0], "size"] = np.nan
    mean, std = est.predict(unseen, return_std=True)
    assert mean.shape == std.shape == (4, 3) and mean.dtype == np.float64
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    interval = est.predict_interval(unseen, coverage=0.8)
    assert interval.shape == (4, 3, 2) and np.all(interval[..., 0] < interval[..., 1])
    assert est.predict_quantiles(unseen, [0.1, 0.5, 0.9]).shape == (4, 3, 3)


def test_predictions_are_views_of_the_mixture_against_numpy(rng):
    frame, y = table(rng)
    est = small(covariance="full").fit(frame, y[:, :2])
    mixture = est.predict_mixture(frame.iloc[:6])
    weights = np.exp(mixture.mixture_distribution.logits.numpy())
    weights /= weights.sum(-1, keepdims=True)
    loc = mixture.components_distribution.mean().numpy()                  # [6, K, 2]
    cov = mixture.components_distribution.covariance().numpy()            # [6, K, 2, 2]
    mean = np.einsum("nk,nkd->nd", weights, loc)
    second = np.einsum("nk,nkde->nde", weights, cov + loc[..., :, None] * loc[..., None, :])
    std = np.sqrt(np.diagonal(second - mean[..., :, None] * mean[..., None, :], 0, -2, -1))
    predicted, predicted_std = est.predict(frame.iloc[:6], return_std=True)
    np.testing.assert_allclose(predicted, mean, rtol=1e-4)
    np.testing.assert_allclose(predicted_std, std, rtol=1e-3)
    # score: the mean log density, a missing target dim marginalised (scipy, per row).
    targets = y[:6, :2].copy()
    targets[1, 0] = np.nan
    expected = []
    for n, row in enumerate(targets):
        seen = ~np.isnan(row)
        expected.append(np.log(sum(
            w * stats.multivariate_normal(m[seen], c[np.ix_(seen, seen)]).pdf(row[seen])
            for w, m, c in zip(weights[n], loc[n], cov[n]))))
    assert est.score(frame.iloc[:6], targets) == pytest.approx(np.mean(expected), rel=1e-4)


@pytest.mark.slow
def test_one_target_predicts_flat_arrays_and_pipelines_and_grid_search_choose_by_likelihood(rng):
    x = rng.normal(size=(160, 2))
    y = 3 * x[:, 0] + rng.normal(0, 0.5, 160)
    est = small().fit(x, y)
    assert est.predict(x[:5]).shape == (5,)
    assert est.predict_interval(x[:5]).shape == (5, 2)
    assert est.predict_quantiles(x[:5], 0.5).shape == (5, 1)
    pipeline = make_pipeline(FunctionTransformer(lambda v: v * 10.0), small())
    assert np.isfinite(cross_val_score(pipeline, x, y, cv=2)).all()
    search = GridSearchCV(small(), {"num_components": [1, 3]}, cv=2).fit(x, y)
    assert search.best_params_["num_components"] in (1, 3)
    assert search.best_score_ == max(search.cv_results_["mean_test_score"])
    copy = clone(est)
    assert copy.get_params() == est.get_params() and not hasattr(copy, "models_")


@pytest.mark.slow
def test_an_ensemble_predicts_as_one_mixture(rng):
    frame, y = table(rng, 160)
    est = small(members=3).fit(frame, y[:, 0])
    assert len(est.models_) == 3
    mixture = est.predict_mixture(frame.iloc[:4])
    assert mixture.mixture_distribution.logits.shape[-1] == 3 * est.fit_.num_components


def test_a_warning_from_deep_inside_fit_names_the_callers_line(rng):
    frame, y = table(rng, 60)
    with pytest.warns(RuntimeWarning, match="large offset") as caught:
        small(members=2, max_epochs=1).fit(frame, 1e12 + 1e5 * y[:, 0])
    # Member 0 through fit_tabular, member 1 through the ensemble's own preparation.
    assert {warned_here(w, __file__) for w in caught if "large offset" in str(w.message)} == {
        True}


@pytest.mark.slow
def test_saved_estimator_loads_in_a_fresh_process_with_the_same_predictions(rng, tmp_path):
    frame, y = table(rng, 160)
    est = small().fit(frame, y[:, :2])
    path = str(tmp_path / "estimator.zip")
    est.save(path)
    frame.iloc[:5].to_pickle(tmp_path / "rows.pkl")
    np.save(tmp_path / "expected.npy", est.predict(frame.iloc[:5]))
    code = (f"import numpy as np, pandas as pd\n"
            f"from mdn_layers.estimator import MixtureDensityRegressor\n"
            f"est = MixtureDensityRegressor.load({path!r})\n"
            f"rows = pd.read_pickle({str(tmp_path / 'rows.pkl')!r})\n"
            f"np.testing.assert_allclose(est.predict(rows), np.load("
            f"{str(tmp_path / 'expected.npy')!r}), rtol=1e-5)\n"
            f"print('same')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert result.returncode == 0 and "same" in result.stdout, result.stderr[-2000:]


@pytest.mark.parametrize("make_bad, message", [
    (lambda frame, y: (frame.rename(columns={"size": "area"}), None), "feature names"),
    (lambda frame, y: (frame.iloc[:, :3], None), "missing:\n- rooms"),
    (lambda frame, y: (frame.to_numpy()[:, :3], None), "3 features|3 columns"),
])
def test_bad_inputs_at_predict_are_named(rng, make_bad, message):
    frame, y = table(rng, 120)
    est = small(max_epochs=2).fit(frame, y[:, 0])
    bad, _ = make_bad(frame, y)
    with pytest.raises(ValueError, match=message):
        est.predict(bad)


@pytest.mark.parametrize("y, message", [
    (np.array(["a", "b"] * 30), "`y` must hold numbers"),
    (np.zeros((60, 2, 2)), r"`y` must be \[N\] or \[N, D\]"),
    (np.zeros(59), r"`y` must be \[N\] or \[N, D\] with N = 60"),
])
def test_bad_targets_are_named(y, message):
    with pytest.raises(ValueError, match=message):
        small(max_epochs=1).fit(np.zeros((60, 2)), y)


def test_the_estimator_is_a_public_name():
    assert mdn_layers.MixtureDensityRegressor is MixtureDensityRegressor
