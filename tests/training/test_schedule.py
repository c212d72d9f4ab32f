"""The tabular recipe's rules as pure functions: size rules, the held-out split, the
one-standard-error choice."""

import numpy as np
import pytest

from mdn_layers.training import tabular


@pytest.mark.backend_neutral
def test_one_standard_error_rule_picks_the_largest_level_within_one_error():
    rng = np.random.default_rng(0)
    base = rng.normal(size=400)
    base = (base - base.mean()) / base.std()       # mean 0, standard error exactly 0.05
    held_out = {0.05: 1.00 + base, 0.1: 1.03 + base, 0.2: 1.04 + base, 0.3: 1.20 + base}
    assert tabular.one_standard_error_choice(held_out) == 0.2
    # A level better by more than one error wins, however small the others' noise.
    held_out = {0.05: 0.50 + base, 0.1: 1.00 + base, 0.2: 1.01 + base}
    assert tabular.one_standard_error_choice(held_out) == 0.05
    # The error is the best level's: a noisier best level admits more.
    held_out = {0.0: 1.0 + 10 * base, 0.5: 1.3 + base}
    assert tabular.one_standard_error_choice(held_out) == 0.5
