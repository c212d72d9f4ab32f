"""Summaries of predicted mixtures: moments, mode, quantiles, intervals, responsibilities.

All functions take a Gaussian mixture (or a single normal) with batch shape ``B`` and event
shape ``[D]``, work batched, and return tensors in its dtype. For a scalar-event mixture of
``tfd.Normal`` the ``D`` axis is absent from values and results alike.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # names used in annotations only
    from numpy.typing import ArrayLike
    from tensorflow_probability import distributions as tfd

import numpy as np
import tensorflow as tf

from mdn_layers.analysis import tf_ops
from mdn_layers.analysis.mixtures import (
    MixtureParts,
    check_values,
    component_log_prob,
    event_result,
    mixture_parts,
)
from mdn_layers.core import marginals, validation


def _mixture_mean(parts):
    """``[*B, D]`` mixture mean ``sum_k w_k mu_k`` of :class:`MixtureParts`."""
    return tf.einsum("...k,...kd->...d", tf.exp(parts.log_weights), parts.loc)


def mean(dist):
    """``[*B, D]`` mixture mean ``sum_k w_k mu_k``."""
    parts = mixture_parts(dist)
    return event_result(parts, _mixture_mean(parts))


def covariance(dist):
    """``[*B, D, D]`` covariance by the law of total covariance.

    ``Cov = sum_k w_k (S_k + (mu_k - m)(mu_k - m)^T)`` with ``m`` the mixture mean.
    """
    parts = mixture_parts(dist)
    weights = tf.exp(parts.log_weights)
    centred = parts.loc - _mixture_mean(parts)[..., tf.newaxis, :]
    spread = centred[..., :, tf.newaxis] * centred[..., tf.newaxis, :]
    return tf.einsum("...k,...kij->...ij", weights, parts.covariance() + spread)


def _component_log_density(parts, points):
    """``[*B, S, K]`` log w_k N(points_s | mu_k, S_k) for points ``[*B, S, D]``."""
    # A points axis before the components: every point meets every component.
    per_point = MixtureParts(parts.log_weights[..., tf.newaxis, :],
                             parts.loc[..., tf.newaxis, :, :],
                             tf.expand_dims(parts.scale, -3 if parts.diagonal else -4),
                             parts.diagonal)
    return per_point.log_weights + component_log_prob(per_point, points)


def mode(dist: "tfd.Distribution", max_iterations: int = 200,
         tolerance: float = 1e-7) -> "tf.Tensor":
    """``[*B, D]`` the highest mode found by fixed-point (mean-shift) search.

    From every component mean, iterate the Gaussian-mixture fixed point
    ``x <- (sum_k r_k(x) P_k)^-1 sum_k r_k(x) P_k mu_k`` with ``P_k = S_k^-1`` and
    ``r_k(x)`` the responsibilities (Carreira-Perpinan, 2000), which climbs the density to
    a stationary point; the best end point (highest density) is returned. TFP's
    ``MixtureSameFamily.mode`` raises ``NotImplementedError``.

    Args:
      max_iterations: iteration cap.
      tolerance: stop when no point moves more than this (max-norm, in target units).

    Example:

    >>> import tensorflow_probability as tfp
    >>> tfd = tfp.distributions
    >>> mixture = tfd.MixtureSameFamily(tfd.Categorical(probs=[0.3, 0.7]),
    ...                                 tfd.MultivariateNormalDiag([[0.0, 0.0], [4.0, 1.0]],
    ...                                                            [[1.0, 1.0], [1.0, 1.0]]))
    >>> mode(mixture).numpy().round(3)
    array([4., 1.], dtype=float32)
    """
    max_iterations = validation.check_positive_int(max_iterations, "max_iterations")
    tolerance = validation.check_nonnegative_float(tolerance, "tolerance")
    parts = mixture_parts(dist)
    identity = tf.eye(parts.event_size, dtype=parts.dtype)
    precision = tf.linalg.cholesky_solve(
        parts.scale_tril(), tf.broadcast_to(identity, tf.shape(parts.scale_tril())))
    precision_times_loc = tf.linalg.matvec(precision, parts.loc)

    def step(points):
        log_density = _component_log_density(parts, points)
        responsibility = tf.nn.softmax(log_density, axis=-1)  # [*B, S, K]
        a = tf.einsum("...sk,...kij->...sij", responsibility, precision)
        b = tf.einsum("...sk,...ki->...si", responsibility, precision_times_loc)
        return tf.linalg.cholesky_solve(tf.linalg.cholesky(a), b[..., tf.newaxis])[..., 0]

    def not_done(iteration, points, moved):
        return tf.logical_and(iteration < max_iterations, moved > tolerance)

    def body(iteration, points, moved):
        new_points = step(points)
        return iteration + 1, new_points, tf.reduce_max(tf.abs(new_points - points))

    start = parts.loc
    _, points, _ = tf.while_loop(
        not_done, body, (tf.constant(0), start, tf.constant(np.inf, parts.dtype)))
    log_density = tf.reduce_logsumexp(_component_log_density(parts, points), axis=-1)
    best = tf.argmax(log_density, axis=-1, output_type=tf.int32)
    return event_result(parts, tf.gather(points, best, batch_dims=len(best.shape)))


def marginal_parts(parts):
    """Log weights ``[*B, K]``, means and standard deviations ``[*B, K, D]`` of each dim."""
    return (parts.log_weights, parts.loc,
            marginals.marginal_stddev(tf_ops, parts.scale, parts.diagonal))


def cdf(dist, values):
    """``[*B', D]`` marginal CDF of each dim at ``values`` ``[..., D]`` (broadcast with ``B``)."""
    parts = mixture_parts(dist)
    return event_result(parts, marginals.marginal_cdf(tf_ops, *marginal_parts(parts),
                                                     check_values(parts, values)))


def quantile(dist: "tfd.Distribution", probs: "float | ArrayLike",
             num_iterations: int = 80) -> "tf.Tensor":
    """Per-dim marginal quantiles by batched bisection on the mixture CDF.

    Args:
      probs: float or ``[Q]`` probabilities in ``(0, 1)``.
      num_iterations: bisection steps (80 reach float64 resolution from a 24-sigma bracket).

    Returns:
      ``[*B, D]`` for a scalar ``probs``, else ``[Q, *B, D]``.

    Example:

    >>> import tensorflow_probability as tfp
    >>> tfd = tfp.distributions
    >>> mixture = tfd.MixtureSameFamily(tfd.Categorical(probs=[0.2, 0.3, 0.5]),
    ...                                 tfd.Normal([10.0, 20.0, 30.0], [1.0, 2.0, 3.0]))
    >>> round(float(quantile(mixture, 0.5)), 2)   # the median
    23.74
    >>> [round(float(bound), 2) for bound in central_interval(mixture, 0.9)]
    [9.33, 33.84]
    """
    try:
        probs_array = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError):
        probs_array = np.array(np.nan)
    if probs_array.ndim > 1 or np.any(~(probs_array > 0)) or np.any(~(probs_array < 1)):
        raise ValueError(f"`probs` must be a float or 1-D array in (0, 1); received {probs!r}.")
    num_iterations = validation.check_positive_int(num_iterations, "num_iterations")
    parts = mixture_parts(dist)
    result = marginals.marginal_quantiles(tf_ops, *marginal_parts(parts),
                                         probs_array.reshape(-1), num_iterations)
    result = event_result(parts, result)
    return result[0] if probs_array.ndim == 0 else result


def central_interval(dist: "tfd.Distribution",
                     level: float = 0.9) -> "tuple[tf.Tensor, tf.Tensor]":
    """``(lower, upper)``, each ``[*B, D]``: the per-dim central interval holding ``level``."""
    level = validation.check_probability(level, "level")
    bounds = quantile(dist, [(1 - level) / 2, (1 + level) / 2])
    return bounds[0], bounds[1]


def responsibilities(dist, values):
    """``[*B', K]`` posterior component probabilities ``p(k | y)`` for ``values`` ``[..., D]``."""
    parts = mixture_parts(dist)
    values = check_values(parts, values)
    return tf.nn.softmax(_component_log_density(parts, values[..., tf.newaxis, :])[..., 0, :],
                         axis=-1)


def most_probable_component(dist, values=None):
    """``(index, probability)``, each ``[*B]`` (``index`` int32): the likeliest component and
    its probability.

    Without ``values`` this is the component with the largest weight; with ``values``
    ``[..., D]``, the one with the largest responsibility for them.
    """
    probabilities = (tf.exp(mixture_parts(dist).log_weights) if values is None
                     else responsibilities(dist, values))
    index = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    return index, tf.reduce_max(probabilities, axis=-1)
