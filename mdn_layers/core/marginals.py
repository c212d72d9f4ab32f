"""One-dimensional marginals of a Gaussian mixture (standard deviations, CDF, quantiles,
CRPS) and the energy score, over tensors of an array namespace ``ops`` (see
:mod:`mdn_layers.core.densities` for the mixture's three tensors)."""

import math

import numpy as np

from mdn_layers.core.triangular import constant, dense


def marginal_stddev(ops, scale, diagonal):
    """``[..., K, D]`` standard deviation of each dim under each component."""
    return scale if diagonal else ops.sqrt(ops.sum(ops.square(dense(ops, scale)), axis=-1))


def marginal_cdf(ops, log_weights, loc, stddev, values):
    """``[..., D]`` mixture CDF of each dim at ``values`` ``[..., D]``."""
    z = (ops.expand_dims(values, -2) - loc) / stddev
    normal_cdf = 0.5 * ops.erfc(-z / math.sqrt(2.0))
    return ops.sum(ops.expand_dims(ops.exp(log_weights), -1) * normal_cdf, axis=-2)


def marginal_quantiles(ops, log_weights, loc, stddev, probs, num_iterations):
    """``[Q, ..., D]`` per-dim quantiles at ``probs`` (numpy ``[Q]`` in (0, 1)) by bisection.

    The bracket spans 12 standard deviations beyond the extreme component means; each
    step halves it, so 80 steps reach float64 resolution.
    """
    probs = np.asarray(probs, np.float64)
    target = constant(ops, probs.reshape((-1,) + (1,) * (len(loc.shape) - 1)), loc)
    low = ops.min(loc - 12.0 * stddev, axis=-2)
    high = ops.max(loc + 12.0 * stddev, axis=-2)
    low, high = low + 0.0 * target, high + 0.0 * target  # [Q, ..., D]

    def bisect(_, bounds):
        low, high = bounds
        middle = 0.5 * (low + high)
        below = marginal_cdf(ops, log_weights, loc, stddev, middle) < target
        return ops.where(below, middle, low), ops.where(below, high, middle)

    low, high = ops.fori_loop(0, num_iterations, bisect, (low, high))
    return 0.5 * (low + high)


def _expected_abs_normal(ops, mean, variance):
    """E|X| for X ~ N(mean, variance): ``2 s phi(m/s) + m (2 Phi(m/s) - 1)``."""
    stddev = ops.sqrt(variance)
    z = mean / stddev
    phi = ops.exp(-0.5 * ops.square(z)) / math.sqrt(2 * math.pi)
    return 2 * stddev * phi + mean * ops.erf(z / math.sqrt(2.0))


def marginal_crps(ops, log_weights, loc, stddev, values):
    """``[..., D]`` closed-form CRPS of each dim's marginal at ``values`` ``[..., D]``.

    For weights ``w``, means ``m`` and variances ``s2`` of one dim (Grimit et al., 2006):
    ``CRPS = sum_k w_k A(y - m_k, s2_k) - 1/2 sum_jk w_j w_k A(m_j - m_k, s2_j + s2_k)``
    with ``A(mu, s2) = E|X|`` for ``X ~ N(mu, s2)``.
    """
    weights = ops.expand_dims(ops.exp(log_weights), -1)  # [..., K, 1]
    variance = ops.square(stddev)
    to_value = ops.sum(
        weights * _expected_abs_normal(ops, ops.expand_dims(values, -2) - loc, variance),
        axis=-2)
    pair_mean = ops.expand_dims(loc, -2) - ops.expand_dims(loc, -3)  # [..., K, K, D]
    pair_variance = ops.expand_dims(variance, -2) + ops.expand_dims(variance, -3)
    pair_weights = ops.expand_dims(weights, -2) * ops.expand_dims(weights, -3)
    spread = ops.sum(pair_weights * _expected_abs_normal(ops, pair_mean, pair_variance),
                     axis=(-3, -2))
    return to_value - 0.5 * spread


def _norm(ops, x):
    """Euclidean norm over the last axis, with a finite gradient at 0."""
    return ops.sqrt(ops.sum(ops.square(x), axis=-1) + 1e-30)


def energy_score(ops, first, second, values, observed=None):
    """``[...]`` Monte Carlo energy score ``E||X - y|| - 1/2 E||X - X'||`` (Gneiting & Raftery,
    2007, eq. 22) from two independent sets of draws ``first``, ``second`` ``[S, ..., D]``
    (sample axis first) at ``values`` ``[..., D]``; with ``observed`` ``[..., D]`` (1.0 where
    present) the norms run over the observed dims only."""
    if observed is not None:
        first, second, values = first * observed, second * observed, values * observed
    to_value = ops.sum(_norm(ops, first - values), axis=0)
    spread = ops.sum(_norm(ops, first - second), axis=0)
    return (to_value - 0.5 * spread) / first.shape[0]
