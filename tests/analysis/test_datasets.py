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
