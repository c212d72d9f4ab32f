"""The tabular recipe's rules as pure functions: size rules, the held-out split, the
one-standard-error choice."""

import numpy as np
import pytest

from mdn_layers.training import schedule

pytestmark = pytest.mark.backend_neutral


def test_one_standard_error_rule_picks_the_largest_level_within_one_error():
    rng = np.random.default_rng(0)
    base = rng.normal(size=400)
    base = (base - base.mean()) / base.std()       # mean 0, standard error exactly 0.05
    held_out = {0.05: 1.00 + base, 0.1: 1.03 + base, 0.2: 1.04 + base, 0.3: 1.20 + base}
    assert schedule.one_standard_error_choice(held_out) == 0.2
    # A level better by more than one error wins, however small the others' noise.
    held_out = {0.05: 0.50 + base, 0.1: 1.00 + base, 0.2: 1.01 + base}
    assert schedule.one_standard_error_choice(held_out) == 0.05
    # The error is the best level's: a noisier best level admits more.
    held_out = {0.0: 1.0 + 10 * base, 0.5: 1.3 + base}
    assert schedule.one_standard_error_choice(held_out) == 0.5


def test_the_choice_of_components_prefers_the_fewest_within_one_error():
    base = np.random.default_rng(3).normal(size=400)
    base = (base - base.mean()) / base.std()       # standard error exactly 0.05
    assert schedule.one_standard_error_choice({1: 1.04 + base, 5: 1.0 + base}, min) == 1
    assert schedule.one_standard_error_choice({1: 1.10 + base, 5: 1.0 + base}, min) == 5


@pytest.mark.parametrize("rows, batch, epochs, patience, units", [
    (280, 32, 600, 40, 50),          # yacht: ~9 steps an epoch, the epoch cap
    (410, 32, 600, 40, 50),          # boston
    (1295, 32, 195, 15, 50),         # wine: 41 steps an epoch, 8000 steps in all
    (6636, 256, 308, 23, 50),        # kin8nm
    (37041, 1024, 216, 16, 100),     # protein: the wide trunk from 20,000 rows
    (10, 32, 600, 40, 50),           # fewer rows than a batch
    (10_000_000, 1024, 50, 10, 100),  # the floors of epochs and patience
    (19_999, 512, 200, 15, 50),      # the narrow trunk up to 20,000 rows ...
    (20_000, 512, 200, 15, 100),      # ... the wide one from there
])
def test_size_rules(rows, batch, epochs, patience, units):
    rules = schedule.training_schedule(rows)
    assert (rules.batch_size, rules.max_epochs, rules.patience, rules.units) == (
        batch, epochs, patience, units)
    steps = -(-rows // batch)
    # About 8000 steps and patience of about 600 steps, inside their clips.
    assert rules.max_epochs == min(600, max(50, round(8000 / steps)))
    assert rules.warmup_epochs == rules.patience


@pytest.mark.parametrize("rows, batch", [
    (1, 32), (1448, 32), (1449, 64), (2896, 64), (2897, 128), (5792, 128), (5793, 256),
    (32_768, 1024),
])
def test_the_batch_is_the_power_of_two_nearest_rows_over_32_on_a_log_scale(rows, batch):
    # About 32 batches an epoch: the boundaries sit at 32 * 2 ** (k + 1/2) rows (1448.2, ...).
    assert schedule.training_schedule(rows).batch_size == batch


def test_noise_levels_shrink_as_one_over_root_rows_beyond_a_thousand():
    assert schedule.training_schedule(500).noise_levels == (0.05, 0.1, 0.2)
    assert schedule.training_schedule(1000).noise_levels == (0.05, 0.1, 0.2)
    np.testing.assert_allclose(schedule.training_schedule(4000).noise_levels,
                               (0.025, 0.05, 0.1))
    np.testing.assert_allclose(schedule.training_schedule(100_000).noise_levels,
                               (0.005, 0.01, 0.02))
    # Four decimals, as the choices are reported: 0.05 / sqrt(3) = 0.028867...
    assert schedule.training_schedule(3000).noise_levels == (0.0289, 0.0577, 0.1155)


@pytest.mark.parametrize("rows", [0, -5, 2.5, "many"])
def test_size_rules_name_a_bad_row_count(rows):
    with pytest.raises((ValueError, TypeError), match="`num_rows`"):
        schedule.training_schedule(rows)


def test_held_out_rows_keep_duplicated_rows_on_one_side():
    rng = np.random.default_rng(0)
    x = np.repeat(rng.normal(size=(120, 3)), 5, axis=0)        # 120 rows, each 5 times
    y = np.repeat(rng.normal(size=(120, 1)), 5, axis=0)
    valid, train = schedule.held_out_rows(x, y, 0.1, seed=4)
    assert len(np.intersect1d(valid, train)) == 0 and len(valid) + len(train) == 600
    held = {tuple(row) for row in np.concatenate([x, y], 1)[valid]}
    trained = {tuple(row) for row in np.concatenate([x, y], 1)[train]}
    assert not held & trained                        # no row scores itself
    assert len(valid) == 60                          # 12 whole groups of 5
    # Distinct rows: exactly the fraction, a different draw for another seed.
    x, y = rng.normal(size=(200, 2)), rng.normal(size=(200, 1))
    first, _ = schedule.held_out_rows(x, y, 0.1, seed=0)
    second, _ = schedule.held_out_rows(x, y, 0.1, seed=1)
    assert len(first) == 20 and not np.array_equal(first, second)
    np.testing.assert_array_equal(schedule.held_out_rows(x, y, 0.1, seed=0)[0], first)


def test_held_out_rows_keep_two_rows_on_each_side_or_name_the_fraction():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(10, 2)), rng.normal(size=(10, 1))
    valid, train = schedule.held_out_rows(x, y, 0.1, seed=0)      # 1 row asked, 2 held out
    assert (len(valid), len(train)) == (2, 8)
    valid, train = schedule.held_out_rows(x[:4], y[:4], 0.5, seed=0)
    assert (len(valid), len(train)) == (2, 2)                      # the smallest allowed
    with pytest.raises(ValueError, match=r"validation_fraction=0\.75 of 4 rows leaves too "
                       r"few rows to train on or to validate with \(at least 2 each\)"):
        schedule.held_out_rows(x[:4], y[:4], 0.75, seed=0)
    # A duplicated row cannot be split: three copies of one row and one other row.
    x_dup, y_dup = np.repeat(x[:2], [3, 1], axis=0), np.repeat(y[:2], [3, 1], axis=0)
    with pytest.raises(ValueError, match="too few rows"):
        schedule.held_out_rows(x_dup, y_dup, 0.5, seed=0)


def test_one_standard_error_rule_with_no_spread_picks_the_best():
    # Per-row NLLs without spread (standard error 0): the best level alone is within reach.
    held_out = {0.05: [2.0] * 5, 0.1: [1.0] * 5, 0.2: [1.5] * 5}
    assert schedule.one_standard_error_choice(held_out) == 0.1


def test_a_level_beyond_the_edge_only_while_the_choice_sits_on_it():
    beyond = schedule.level_beyond_the_edge
    assert beyond({0.01: -3.0, 0.02: -2.0, 0.04: -1.0}, 0.01) == 0.0025
    assert beyond({0.002: -3.0, 0.004: -2.0}, 0.002) == 0.0        # below 0.001: none
    assert beyond({0.0: -3.0, 0.002: -2.0}, 0.0) is None           # nothing below 0
    assert beyond({0.1: 1.0, 0.2: 1.01}, 0.2) == 0.4               # chosen at the top
    assert beyond({0.5: 1.0, 0.8: 1.01}, 0.8) == 1.0               # capped at 1
    assert beyond({0.5: 1.0, 1.0: 1.01}, 1.0) is None
    # Best at the bottom but a larger level chosen within one error: no step down.
    assert beyond({0.05: 1.0, 0.1: 1.01, 0.2: 1.5}, 0.1) is None
    # Chosen at the bottom but the best is not there: no step down either.
    assert beyond({0.05: 1.3, 0.1: 1.0}, 0.05) is None
    # A quarter of the smallest level while it is at least 0.001 (0.004 / 4 is 0.001 exactly).
    assert beyond({0.004: -3.0, 0.008: -2.0}, 0.004) == 0.001
    assert beyond({0.0045: -3.0, 0.009: -2.0}, 0.0045) == 0.0045 / 4
    # Three levels: the largest is the one doubled, and the one compared with 1.
    assert beyond({0.1: 1.0, 0.2: 1.01, 0.4: 1.02}, 0.4) == 0.8
    assert beyond({0.5: 1.0, 0.8: 1.01, 1.0: 1.02}, 1.0) is None
