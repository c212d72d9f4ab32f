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


def _nearest(points, centres):
    return np.argmin(np.linalg.norm(points[:, None] - centres[None], axis=-1), axis=1)


def test_kmeans_start_is_a_lloyd_fixed_point_with_the_clusters_own_means_and_spreads(rng):
    """Three unequal, well-separated clusters: the centres are each cluster's exact mean and
    the spreads its root mean square distance per dim (numpy on the true labels)."""
    truth = np.array([[-4.0, 0.0, 1.0], [0.0, 4.0, -1.0], [4.0, 0.0, 0.0]])
    labels = rng.choice(3, size=900, p=[0.2, 0.3, 0.5])
    width = np.array([0.05, 0.3, 0.2])[labels, None]
    y = truth[labels] + width * rng.normal(size=(900, 3))
    stats = target_statistics.target_statistics(y, 3, 3, "full")
    z = (y - y.mean(0)) / y.std(0)
    order = _nearest(stats.centres, np.stack([z[labels == k].mean(0) for k in range(3)]))
    assert sorted(order) == [0, 1, 2]
    for found, k in enumerate(order):
        members = z[labels == k]
        np.testing.assert_allclose(stats.centres[found], members.mean(0), atol=1e-12)
        rms = np.sqrt(((members - members.mean(0)) ** 2).mean())
        np.testing.assert_allclose(stats.spreads[found], np.clip(rms, 0.05, 1.0), rtol=1e-12)
    # Lloyd's fixed point: every centre is the mean of the points nearest to it.
    nearest = _nearest(z, stats.centres)
    for k in range(3):
        np.testing.assert_allclose(stats.centres[k], z[nearest == k].mean(0), atol=1e-12)


def test_overlapping_clusters_still_end_at_a_lloyd_fixed_point(rng):
    """k-means++ seeding then 25 Lloyd steps on one elongated blob: distinct centres, each
    the mean of its nearest points, spreads from those points, clipped to [0.05, 1]."""
    y = rng.normal(size=(2000, 2)) * [3.0, 0.5]
    stats = target_statistics.target_statistics(y, 2, 4, "diag")
    z = (y - y.mean(0)) / y.std(0)
    nearest = _nearest(z, stats.centres)
    assert len(np.unique(nearest)) == 4
    for k in range(4):
        members = z[nearest == k]
        np.testing.assert_allclose(stats.centres[k], members.mean(0), atol=1e-6)
        rms = np.sqrt(((members - stats.centres[k]) ** 2).mean())
        np.testing.assert_allclose(stats.spreads[k], np.clip(rms, 0.05, 1.0), rtol=1e-6)


def test_constant_targets_start_at_zero_with_one_narrow_component():
    """All rows equal: scale 1, the standardised targets all 0; k-means++ has no distance to
    weigh (its seeding falls back to uniform picks), every point is nearest the first centre,
    which gets the narrowest spread; the empty ones keep the widest."""
    stats = target_statistics.target_statistics(np.full((50, 2), 7.0), 2, 3, "full")
    np.testing.assert_array_equal(stats.loc, [7.0, 7.0])
    np.testing.assert_array_equal(stats.scale, [1.0, 1.0])
    np.testing.assert_array_equal(stats.centres, np.zeros((3, 2)))
    np.testing.assert_array_equal(stats.spreads, [0.05, 1.0, 1.0])


def test_kmeans_plus_plus_seeding_finds_a_small_far_cluster_and_a_lone_pair(rng):
    """k-means++ picks each next seed with probability proportional to its squared distance
    from the seeds so far: a cluster of 1% of the rows, far away, gets its own component,
    and so does a close pair of distinct points after the two big clusters, however small
    the remaining distances are (uniform seeding would put the seeds in the big clusters)."""
    y = np.concatenate([rng.normal(size=(990, 2)), 30.0 + rng.normal(size=(10, 2))])
    stats = target_statistics.target_statistics(y, 2, 2, "full")
    far = (y[990:] - y.mean(0)) / y.std(0)
    assert np.min(np.linalg.norm(stats.centres - far.mean(0), axis=-1)) < 1e-9
    # A big and a small tight cluster and a pair beside the small one; three components.
    y = np.concatenate([np.full((90, 2), -1.0), np.full((8, 2), 1.0),
                        [[1.0, 1.3], [1.0, 1.32]]])
    stats = target_statistics.target_statistics(y, 2, 3, "full")
    z = (y - y.mean(0)) / y.std(0)
    expected = np.stack([z[0], z[90], z[98:].mean(0)])
    order = _nearest(expected, stats.centres)
    np.testing.assert_allclose(stats.centres[order], expected, atol=1e-12)
    # Spreads: identical points give the narrowest (0.05), so does the close pair (two
    # members); a centre with fewer than two members would keep the widest (1).
    np.testing.assert_array_equal(stats.spreads, [0.05, 0.05, 0.05])


def test_a_centre_with_one_member_keeps_the_widest_spread():
    """Two clusters and a lone point, three components: the lone point is a centre of its
    own with one member, whose spread cannot be measured, so it starts at 1."""
    y = np.concatenate([np.full((50, 2), -1.0), np.full((49, 2), 1.0), [[1.0, 1.3]]])
    stats = target_statistics.target_statistics(y, 2, 3, "full")
    z = (y - y.mean(0)) / y.std(0)
    lone = np.argmin(np.linalg.norm(stats.centres - z[-1], axis=-1))
    np.testing.assert_allclose(stats.centres[lone], z[-1], atol=1e-12)
    np.testing.assert_array_equal(np.delete(stats.spreads, lone), [0.05, 0.05])
    assert stats.spreads[lone] == 1.0


def test_no_component_starts_wider_than_the_standardised_targets(rng):
    """One dim, 90% of the rows near 0 and a long tail: the quantile centres sit near 0 and
    the top one takes the tail, whose root mean square distance is several standard
    deviations; the start is clipped to 1 (the spread of the standardised targets)."""
    y = np.concatenate([0.01 * rng.normal(size=900), rng.uniform(5.0, 30.0, size=100)])
    stats = target_statistics.target_statistics(y, 1, 3, "full")
    z = (y - y.mean()) / y.std()
    nearest = _nearest(z[:, None], stats.centres)
    rms = [np.sqrt(((z[nearest == k] - stats.centres[k, 0]) ** 2).mean()) for k in range(3)]
    assert max(rms) > 1.5
    np.testing.assert_allclose(stats.spreads, np.clip(rms, 0.05, 1.0), rtol=1e-12)


def test_a_dim_constant_up_to_rounding_gets_unit_scale():
    """A spread below 1e-12 of the dim's magnitude is rounding: scale 1 there, as for a
    constant dim; a small but real spread keeps its own scale."""
    y = np.stack([1e6 + np.array([0.0, 1e-7, 0.0, 1e-7]),      # 5e-8 spread on 1e6
                  1.5e-12 * np.array([1.0, -1.0, 1.0, -1.0])], -1)  # 1.5e-12 on 0
    stats = target_statistics.target_statistics(y, 2, 1, "full")
    np.testing.assert_allclose(stats.scale, [1.0, 1.5e-12], rtol=1e-9)
    np.testing.assert_array_equal(stats.centres, np.zeros((1, 2)))
    np.testing.assert_array_equal(stats.spreads, [1.0])


def test_too_few_complete_rows_start_at_per_dim_quantiles():
    """Fewer complete rows than components: the centres are each dim's quantiles at
    (k + 1/2) / K of its observed values (numpy), and every spread is 1."""
    y = np.array([[0.0, np.nan], [1.0, 10.0], [np.nan, 20.0], [3.0, np.nan], [4.0, 30.0]])
    stats = target_statistics.target_statistics(y, 2, 3, "full")
    probs = [1 / 6, 1 / 2, 5 / 6]
    expected = np.stack([np.nanquantile((y[:, d] - np.nanmean(y[:, d])) / np.nanstd(y[:, d]),
                                        probs) for d in range(2)], -1)
    np.testing.assert_allclose(stats.centres, expected, rtol=1e-12)
    np.testing.assert_array_equal(stats.spreads, [1.0, 1.0, 1.0])
    # One complete row and one component: the start is the origin.
    one = target_statistics.target_statistics(y, 2, 1, "full")
    np.testing.assert_array_equal(one.centres, [[0.0, 0.0]])
    np.testing.assert_array_equal(one.spreads, [1.0])


def test_the_start_uses_a_fixed_subset_beyond_its_row_limit(monkeypatch, rng):
    """Beyond START_MAX_ROWS complete rows the start is fit to a fixed random subset of that
    many rows (the statistics still use every row); the result repeats exactly."""
    monkeypatch.setattr(target_statistics, "START_MAX_ROWS", 40)
    y = rng.normal(size=(300, 1))
    y[:150] += 10.0
    first = target_statistics.target_statistics(y, 1, 2, "full")
    np.testing.assert_allclose(first.loc, y.mean(0), rtol=1e-12)
    z = (y[:, 0] - y.mean()) / y.std()
    # The one-dim start is at the (k + 1/2) / K quantiles of 40 of the rows, not of all.
    assert not np.allclose(first.centres[:, 0], np.quantile(z, [0.25, 0.75]))
    subset = np.random.default_rng(0).choice(300, 40, replace=False)
    np.testing.assert_allclose(first.centres[:, 0], np.quantile(z[subset], [0.25, 0.75]),
                               rtol=1e-12)
    again = target_statistics.target_statistics(y, 1, 2, "full")
    np.testing.assert_array_equal(first.centres, again.centres)
    # At the limit itself every row is used, in its order: the same start as without one.
    blob = rng.normal(size=(40, 2)) * [3.0, 0.5]
    at_limit = target_statistics.target_statistics(blob, 2, 4, "full")
    monkeypatch.setattr(target_statistics, "START_MAX_ROWS", 1000)
    unlimited = target_statistics.target_statistics(blob, 2, 4, "full")
    np.testing.assert_array_equal(at_limit.centres, unlimited.centres)


def test_as_many_complete_rows_as_components_start_at_those_rows():
    """K complete rows (the rest incomplete) are enough for the k-means start: each row is a
    centre of its own, with one member and so the widest spread."""
    y = np.array([[0.0, 1.0], [2.0, 5.0], [4.0, 0.0], [np.nan, 3.0], [1.0, np.nan]])
    stats = target_statistics.target_statistics(y, 2, 3, "full")
    z = (y[:3] - np.nanmean(y, 0)) / np.nanstd(y, 0)
    np.testing.assert_allclose(stats.centres[_nearest(z, stats.centres)], z, atol=1e-12)
    assert sorted(_nearest(z, stats.centres)) == [0, 1, 2]
    np.testing.assert_array_equal(stats.spreads, [1.0, 1.0, 1.0])


def test_the_statistics_carry_each_dims_grid_step():
    y = np.stack([np.repeat(np.arange(5.0), 8), np.linspace(0.0, 1.0, 40) ** 2], -1)
    stats = target_statistics.target_statistics(y, 2, 2, "full")
    np.testing.assert_array_equal(stats.grid_step, [1.0, 0.0])


def test_targets_of_any_leading_shape_are_rows():
    """``[N]`` for one dim, ``[B, T, D]`` for sequences: the rows are flattened."""
    one_row = target_statistics.target_statistics([[4.0, -2.0]], 2, 3, "full")
    np.testing.assert_array_equal(one_row.loc, [4.0, -2.0])
    np.testing.assert_array_equal(one_row.scale, [1.0, 1.0])
    flat = target_statistics.target_statistics([1.0, 2.0, 6.0], 1, 1, "full")
    np.testing.assert_allclose(flat.loc, [3.0])
    np.testing.assert_allclose(flat.scale, [np.std([1.0, 2.0, 6.0])])
    y = np.arange(24.0).reshape(2, 4, 3) ** 1.5
    sequence = target_statistics.target_statistics(y, 3, 2, "full")
    np.testing.assert_allclose(sequence.loc, y.reshape(-1, 3).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sequence.scale, y.reshape(-1, 3).std(0), rtol=1e-12)


@pytest.mark.parametrize("y, message", [
    ("prices", "adapt: `y` must be an array of numbers; received str."),
    ([[1.0], [2.0, 3.0]], "adapt: `y` must be an array of numbers; received list."),
    (np.ones(4), "adapt: `y` must have shape [..., 2] (event_size=2); received shape (4,)."),
    (np.ones((4, 3)), "adapt: `y` must have shape [..., 2] (event_size=2); received shape "
                      "(4, 3)."),
    (np.array([[1.0, np.inf]]), "adapt: `y` contains inf; use NaN for a missing value."),
    (np.array([[1.0, np.nan], [np.nan, np.nan]]), "adapt: `y` needs at least one observed "
     "(non-NaN) value per dim; dims without one: [1]."),
    (np.ones((0, 2)), "adapt: `y` needs at least one observed (non-NaN) value per dim; dims "
                      "without one: [0, 1]."),
])
def test_bad_targets_are_refused_with_the_whole_message(y, message):
    with pytest.raises(ValueError) as error:
        target_statistics.target_statistics(y, 2, 2, "full")
    assert str(error.value) == message
    with pytest.raises(ValueError, match="^fit: "):
        target_statistics.target_statistics(y, 2, 2, "full", name="fit")
