"""The tabular recipe's rules, as pure functions of the training rows: the size rules
(batch, epochs, patience, width, noise levels), the held-out split and the
one-standard-error choice. numpy only; :mod:`mdn_layers.training.tabular` trains with them."""

import math
from typing import NamedTuple

import numpy as np

from mdn_layers.core import validation

# Input-noise levels (standard deviations on standardised inputs) tried on up to
# NOISE_SHRINK_ROWS training rows; beyond, they shrink as 1/sqrt(rows) (more rows need
# less smoothing).
BASE_NOISE_LEVELS = (0.05, 0.1, 0.2)
NOISE_SHRINK_ROWS = 1000
DEFAULT_NUM_COMPONENTS = (1, 5)
# While the chosen noise level sits on an edge of the levels tried, one more level beyond it
# (a quarter of the smallest, or twice the largest), at most this many times.
EDGE_STEPS = 2
# About this many gradient steps at most, and this many without progress before stopping.
STEP_BUDGET, PATIENCE_STEPS = 8000, 600
WIDE_TRUNK_ROWS = 20_000

class TrainingSchedule(NamedTuple):
    """What :func:`training_schedule` chooses from the number of training rows.

    Attributes:
      batch_size: about ``rows / 32`` as a power of two, in ``[32, 1024]``.
      max_epochs: about :data:`STEP_BUDGET` steps, in ``[50, 600]`` epochs.
      patience: about :data:`PATIENCE_STEPS` steps, in ``[10, 40]`` epochs; the learning
        rate halves after ``patience // 4`` epochs without progress.
      warmup_epochs: epochs before early stopping may pick a best epoch (``patience``), so
        a small held-out set cannot stop training at its first lucky epoch.
      units: width of the hidden layer (50; 100 from :data:`WIDE_TRUNK_ROWS` rows).
      noise_levels: input-noise standard deviations to try.
    """
    batch_size: int
    max_epochs: int
    patience: int
    warmup_epochs: int
    units: int
    noise_levels: tuple


def training_schedule(num_rows):
    """The recipe's size rules: a :class:`TrainingSchedule` for ``num_rows`` training rows.

    >>> schedule = training_schedule(410)
    >>> schedule.batch_size, schedule.max_epochs, schedule.patience, schedule.noise_levels
    (32, 600, 40, (0.05, 0.1, 0.2))
    >>> training_schedule(37_000).batch_size, training_schedule(37_000).units
    (1024, 100)
    """
    num_rows = validation.check_positive_int(num_rows, "num_rows")
    batch_size = int(np.clip(2 ** round(math.log2(num_rows / 32)), 32, 1024))
    steps = math.ceil(num_rows / batch_size)
    max_epochs = int(np.clip(round(STEP_BUDGET / steps), 50, 600))
    patience = int(np.clip(round(PATIENCE_STEPS / steps), 10, 40))
    units = 100 if num_rows >= WIDE_TRUNK_ROWS else 50
    shrink = min(1.0, math.sqrt(NOISE_SHRINK_ROWS / num_rows))
    levels = tuple(round(level * shrink, 4) for level in BASE_NOISE_LEVELS)
    return TrainingSchedule(batch_size, max_epochs, patience, patience, units, levels)


def held_out_rows(x, y, fraction, seed):
    """``(valid, train)`` sorted row indices of ``x`` ``[N, F]``, ``y`` ``[N, D]``: about
    ``fraction`` of the rows (at least 2) held out at random (``seed``), whole groups of
    identical rows on one side, so a duplicated row never scores itself."""
    _, group = np.unique(np.concatenate([x, y], axis=1), axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.random.default_rng(seed).permutation(group.max() + 1)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    ranks = rank[group]
    rows = np.argsort(ranks)   # grouped rows, groups in random order
    held_out = min(max(2, int(round(fraction * len(x)))), len(x))   # at least 2 rows
    # Extend the held-out part to the end of the group it cuts.
    held_out = int(np.searchsorted(ranks[rows], ranks[rows[held_out - 1]], side="right"))
    if held_out > len(x) - 2:
        raise validation.ArgumentError(
            f"fit_tabular: validation_fraction={fraction} of {len(x)} rows leaves too few "
            "rows to train on or to validate with (at least 2 each).")
    return np.sort(rows[:held_out]), np.sort(rows[held_out:])


def one_standard_error_choice(held_out_nll, simplest=max):
    """The simplest candidate whose mean held-out NLL is within one standard error (of the
    best candidate's mean) of the best: ``{candidate: [M] per-row NLL}`` -> candidate.

    ``simplest`` picks among the candidates within reach: ``max`` for noise levels (more
    noise is smoother), ``min`` for numbers of components.
    """
    means = {level: float(np.mean(rows)) for level, rows in held_out_nll.items()}
    best = min(means, key=means.get)
    rows = np.asarray(held_out_nll[best], dtype="float64")
    standard_error = float(np.std(rows) / np.sqrt(rows.size))
    return simplest(level for level in means if means[level] <= means[best] + standard_error)


def level_beyond_the_edge(mean_nll, chosen):
    """The next noise level to try, or None: ``mean_nll`` ``{level: mean held-out NLL}`` and
    the ``chosen`` level.

    When the best level is the smallest tried and above 0, a quarter of it (0 where a
    quarter is below 0.001); when the chosen level is the largest tried and below 1, twice it
    (at most 1).
    A grid of levels cannot tell how far beyond its edge the best level lies: a table whose
    target the inputs nearly determine wants almost no noise, a small noisy one more.

    >>> level_beyond_the_edge({0.05: 1.0, 0.1: 1.2, 0.2: 1.3}, chosen=0.05)
    0.0125
    >>> level_beyond_the_edge({0.05: 1.3, 0.1: 1.2, 0.2: 1.0}, chosen=0.2)
    0.4
    >>> level_beyond_the_edge({0.05: 1.3, 0.1: 1.0, 0.2: 1.2}, chosen=0.1) is None
    True
    """
    levels = sorted(mean_nll)
    best = min(mean_nll, key=mean_nll.get)
    if best == levels[0] and chosen == levels[0] and levels[0] > 0:
        return levels[0] / 4 if levels[0] / 4 >= 1e-3 else 0.0
    if chosen == levels[-1] and levels[-1] < 1:
        return min(1.0, 2 * levels[-1])
    return None
