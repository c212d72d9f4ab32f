"""What adapt learns from the targets: NaN-aware statistics, a data-aware start, the grid a
target's values sit on."""
import numpy as np
import pytest
from scipy import stats

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


@pytest.mark.parametrize("values, step", [
    (np.arange(3, 9), 1.0),                     # integer scores (wine's quality)
    (np.arange(0, 20) * 0.5, 0.5),              # half-integers
    (np.arange(950, 1001) * 1e-3, 1e-3),        # three decimals on a narrow range (naval)
    (np.arange(0, 30), 1.0),                    # counts
])
def test_grid_steps_find_the_grid_of_repeated_values(values, step):
    rng = np.random.default_rng(0)
    y = rng.choice(values, size=(2000, 1))
    found = target_statistics.grid_steps(y)
    np.testing.assert_allclose(found, [step], rtol=1e-6)
    # NaN marks a missing value, not a grid point; several dims are judged one by one.
    two = np.concatenate([y, rng.normal(size=(2000, 1))], axis=1)
    two[::7, 0] = np.nan
    np.testing.assert_allclose(target_statistics.grid_steps(two), [step, 0.0], rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda rng: rng.normal(size=2000),                                    # continuous
    lambda rng: np.round(rng.lognormal(12, 0.4, size=2930)),              # prices in dollars
    lambda rng: np.round(rng.normal(20, 5, size=400), 2),                 # 2 decimals, few ties
    lambda rng: rng.permutation(np.arange(500.0)),                        # a grid without ties
])
def test_grid_steps_raise_no_false_alarm(make):
    y = make(np.random.default_rng(1))[:, None]
    assert target_statistics.grid_steps(y).tolist() == [0.0]


def test_the_grid_floor_is_the_grid_step_and_caps_the_density_below_a_cell_mass():
    step = np.array([0.5, 2.0])
    floor = target_statistics.grid_floor(step)
    np.testing.assert_array_equal(floor, step)
    # N(0, floor^2) at its mode stays below a point mass spread over its cell (1 / step).
    assert np.all(stats.norm(0, floor).pdf(0) < 1 / step)


def test_grid_steps_edge_cases_of_the_rules():
    # Two values (a binary target) are a grid; each value exactly twice is "ties common".
    assert target_statistics.grid_steps(np.repeat([0.0, 1.0], 20)[:, None]).tolist() == [1.0]
    assert target_statistics.grid_steps(np.repeat([2.0, 4.0, 6.0], 2)[:, None]).tolist() \
        == [2.0]
    # A lattice that does not pass through 0: 0.3 + 0.5 k.
    offset = np.repeat(0.3 + 0.5 * np.arange(6), 10)[:, None]
    np.testing.assert_allclose(target_statistics.grid_steps(offset), [0.5])
    # Ties but not a lattice: 0, 1, 2.5.
    assert target_statistics.grid_steps(np.repeat([0.0, 1.0, 2.5], 10)[:, None]).tolist() \
        == [0.0]
    # Each dim on its own: a continuous first dim does not stop the search.
    rng = np.random.default_rng(2)
    two = np.stack([rng.normal(size=60), np.repeat(np.arange(6.0), 10)], axis=-1)
    assert target_statistics.grid_steps(two).tolist() == [0.0, 1.0]
    # A first dim with ties on a grid too fine for its spread does not stop the search either.
    fine = np.repeat([0.0, 1.0, 5e4, 1e5, 2e5, 3e5], 10)        # step 1, spread ~1e5
    two = np.stack([fine, np.repeat(np.arange(6.0), 10)], axis=-1)
    assert target_statistics.grid_steps(two).tolist() == [0.0, 1.0]
