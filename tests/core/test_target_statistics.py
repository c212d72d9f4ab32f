
import numpy as np

from mdn_layers.core import target_statistics


def test_statistics_are_the_nan_aware_mean_and_standard_deviation(rng):
    y = rng.normal([1e5, -3.0], [2e4, 0.01], size=(500, 2))
    y[rng.random(y.shape) < 0.2] = np.nan
    stats = target_statistics.target_statistics(y, 2, 4, "full")
    np.testing.assert_allclose(stats.loc, np.nanmean(y, 0), rtol=1e-12)
    np.testing.assert_allclose(stats.scale, np.nanstd(y, 0), rtol=1e-12)
    spherical = target_statistics.target_statistics(y, 2, 4, "spherical")
    np.testing.assert_allclose(spherical.scale, np.sqrt(np.mean(np.nanvar(y, 0))) * np.ones(2))


def test_start_centres_sit_on_the_clusters_of_the_standardised_targets(rng):
    centres = np.array([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])
    y = 100.0 + 10.0 * (centres[rng.integers(3, size=3000)] + 0.1 * rng.normal(size=(3000, 2)))
    stats = target_statistics.target_statistics(y, 2, 3, "full")
    found = stats.centres * stats.scale + stats.loc
    expected = 100.0 + 10.0 * centres
    distance = np.linalg.norm(found[:, None] - expected[None], axis=-1)
    assert np.all(distance.min(axis=0) < 1.0), found   # every cluster found
    assert np.all(stats.spreads < 0.2)                 # tight clusters: narrow components
    one_dim = target_statistics.target_statistics(np.arange(100.0), 1, 4, "full")
    np.testing.assert_allclose(one_dim.centres[:, 0] * one_dim.scale + one_dim.loc,
                               np.quantile(np.arange(100.0), [0.125, 0.375, 0.625, 0.875]))
