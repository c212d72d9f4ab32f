"""What a mixture head learns from its training targets before training (``adapt``).

Shared by both front-ends; numpy only (no keras, no tensorflow). From targets ``y`` it finds
each dim's location and scale (NaN-aware: NaN marks a missing value) and a data-aware start:
component means at k-means centres of the standardised targets (quantiles for one dim) and
component spreads from the points around each centre, so no component starts far from the
data. It also detects targets whose values sit on a grid (integer scores, counts), on which a
mixture can shrink its components onto the grid values and report a likelihood without bound.
"""

from typing import NamedTuple

import numpy as np

# The start is fit to at most this many complete rows (a fixed random subset beyond).
START_MAX_ROWS = 20_000
_KMEANS_ITERATIONS = 25
_MIN_SPREAD, _MAX_SPREAD = 0.05, 1.0
# A grid finer than this fraction of a dim's standard deviation is "fine at its scale"
# (whole dollars on prices, the third decimal of a measurement) and is not reported.
GRID_MIN_RELATIVE_STEP = 1e-3
# A grid needs ties: on average at least this many rows per distinct value.
GRID_MIN_ROWS_PER_VALUE = 2.0


class TargetStatistics(NamedTuple):
    """Per-dim target statistics and a start for the components, in standardised units.

    Attributes:
      loc: ``[D]`` location of each target dim (the mean of its observed values).
      scale: ``[D]`` positive scale of each dim (its standard deviation; 1 where constant;
        for ``"spherical"`` one shared value, the root mean variance).
      centres: ``[K, D]`` starting component means of ``(y - loc) / scale``.
      spreads: ``[K]`` starting standard deviations of the components (standardised units).
      grid_step: ``[D]`` the step of the grid each dim's values sit on (target units), 0 for
        a dim that is not on a grid (:func:`grid_steps`).
    """
    loc: np.ndarray
    scale: np.ndarray
    centres: np.ndarray
    spreads: np.ndarray
    grid_step: np.ndarray


def grid_steps(y):
    """``[D]`` the grid step of each dim of ``y`` ``[N, D]`` (NaN = missing), 0 if none.

    A dim is on a grid when its distinct values are ``v0 + step * integer`` (to 0.1% of the
    step), ties are common (at least :data:`GRID_MIN_ROWS_PER_VALUE` rows per distinct
    value) and the step is coarse for the dim's spread (at least
    :data:`GRID_MIN_RELATIVE_STEP` standard deviations). Integer scores and counts are on a
    grid; continuous measurements and prices in whole dollars are not.

    >>> grid_steps(np.array([[3.0], [5.0], [6.0], [5.0], [6.0], [3.0], [4.0], [5.0]])).tolist()
    [1.0]
    >>> grid_steps(np.random.default_rng(0).normal(size=(100, 1))).tolist()
    [0.0]
    """
    rows = np.asarray(y, dtype=np.float64)
    rows = rows.reshape(len(rows), -1)
    steps = np.zeros(rows.shape[1])
    for dim in range(rows.shape[1]):
        observed = rows[:, dim][np.isfinite(rows[:, dim])]
        values = np.unique(observed)
        if len(values) < 2 or len(observed) < GRID_MIN_ROWS_PER_VALUE * len(values):
            continue
        step = float(np.min(np.diff(values)))
        if step < GRID_MIN_RELATIVE_STEP * float(np.std(observed)):
            continue
        multiples = (values - values[0]) / step
        if np.max(np.abs(multiples - np.round(multiples))) <= 1e-3:
            steps[dim] = step
    return steps


def grid_floor(grid_step):
    """``[D]`` the scale floor for targets on a grid of step ``grid_step`` ``[D]``.

    The grid's resolution, ``step`` itself: a component narrower than the grid claims detail
    the data cannot show, and a Gaussian of standard deviation ``step`` has density at most
    ``1 / (step sqrt(2 pi))`` at a grid value, less than a point mass spread uniformly over
    its grid cell (``1 / step``, the most a dequantised target allows).
    """
    return np.asarray(grid_step, dtype=np.float64).copy()


def _as_target_rows(y, event_size, name):
    """``y`` as float64 rows ``[N, D]`` (``[N]`` allowed for ``D == 1``; extra leading axes,
    as of sequence targets, are flattened), checked."""
    try:
        rows = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: `y` must be an array of numbers; received "
                         f"{type(y).__name__}.") from None
    if event_size == 1 and rows.ndim == 1:
        rows = rows[:, None]
    if rows.ndim < 2 or rows.shape[-1] != event_size:
        raise ValueError(f"{name}: `y` must have shape [..., {event_size}] (event_size="
                         f"{event_size}); received shape {rows.shape}.")
    rows = rows.reshape(-1, event_size)
    if np.isinf(rows).any():
        raise ValueError(f"{name}: `y` contains inf; use NaN for a missing value.")
    empty = np.flatnonzero(~np.any(np.isfinite(rows), axis=0))   # every dim when no rows
    if empty.size:
        raise ValueError(f"{name}: `y` needs at least one observed (non-NaN) value per dim; "
                         f"dims without one: {empty.tolist()}.")
    return rows


def _kmeans(points, num_components, rng):
    """``[K, D]`` centres of ``points`` ``[N, D]`` (N >= K): k-means++ seeding, then Lloyd."""
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, num_components):
        distance = np.min(((points[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), 1)
        total = distance.sum()
        probs = distance / total if total > 0 else None
        centres.append(points[rng.choice(len(points), p=probs)])
    centres = np.asarray(centres)
    for _ in range(_KMEANS_ITERATIONS):
        nearest = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        for k in range(num_components):
            members = points[nearest == k]
            if len(members):
                centres[k] = members.mean(axis=0)
    return centres


def _spreads(points, centres):
    """``[K]`` root mean square distance per dim of the points nearest each centre."""
    nearest = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    spreads = np.full(len(centres), _MAX_SPREAD)
    for k in range(len(centres)):
        members = points[nearest == k]
        if len(members) > 1:
            spreads[k] = np.sqrt(((members - centres[k]) ** 2).mean())
    return np.clip(spreads, _MIN_SPREAD, _MAX_SPREAD)


def target_statistics(y, event_size, num_components, covariance, name="adapt"):
    """:class:`TargetStatistics` of targets ``y`` ``[..., D]`` (NaN = missing).

    Deterministic (a fixed seed for the subset and the k-means seeding). Linear in the rows
    for the statistics; the start uses at most :data:`START_MAX_ROWS` rows.

    Example:

    >>> stats = target_statistics([[1.0, 10.0], [3.0, 30.0], [5.0, float("nan")]], 2, 1, "full")
    >>> stats.loc.tolist(), stats.scale.round(3).tolist()
    ([3.0, 20.0], [1.633, 10.0])
    """
    rows = _as_target_rows(y, event_size, name)
    loc = np.nanmean(rows, axis=0)
    variance = np.nanvar(rows, axis=0)
    if covariance == "spherical":
        variance = np.full(event_size, variance.mean())
    scale = np.sqrt(variance)
    scale = np.where(np.isfinite(scale) & (scale > 1e-12 * np.maximum(np.abs(loc), 1.0)),
                     scale, 1.0)
    standardised = (rows - loc) / scale
    rng = np.random.default_rng(0)
    complete = standardised[np.all(np.isfinite(standardised), axis=1)]
    if len(complete) > START_MAX_ROWS:
        complete = complete[rng.choice(len(complete), START_MAX_ROWS, replace=False)]
    if len(complete) >= num_components and num_components > 1:
        if event_size == 1:
            probs = (np.arange(num_components) + 0.5) / num_components
            centres = np.quantile(complete[:, 0], probs)[:, None]
        else:
            centres = _kmeans(complete, num_components, rng)
        spreads = _spreads(complete, centres)
    else:  # one component, or too few complete rows: per-dim quantiles, unit spreads
        probs = (np.arange(num_components) + 0.5) / num_components
        centres = np.stack([np.nanquantile(standardised[:, d], probs)
                            for d in range(event_size)], axis=-1)
        if num_components == 1:
            centres = np.zeros((1, event_size))
        spreads = np.full(num_components, _MAX_SPREAD)
    return TargetStatistics(loc, scale, centres, spreads, grid_steps(rows))
