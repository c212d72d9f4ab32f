"""Proper scores and calibration checks for predicted mixtures (lower scores are better).

Every function is batched: ``dist`` has batch shape ``B`` and event shape ``[D]``; ``values``
``[..., D]`` broadcast against ``B`` as in ``log_prob``.
"""

import numpy as np
import tensorflow as tf

from mdn_layers.analysis import tf_ops
from mdn_layers.analysis.mixtures import (
    check_values,
    event_result,
    log_prob,
    mixture_parts,
)
from mdn_layers.analysis.sampling import sample
from mdn_layers.analysis.summaries import cdf, marginal_parts, quantile
from mdn_layers.core import marginals, validation


def nll(dist, values, allow_missing=False):
    """``[*B']`` negative log-likelihood in nats.

    With ``allow_missing=True`` a NaN entry of ``values`` is a missing value: each row
    scores the marginal of its observed dims (0 for a row with none), as
    :class:`mdn_layers.MixtureNLL` does with ``allow_missing``. Without it, a row holding a
    NaN scores NaN, as ``log_prob`` does.
    """
    allow_missing = validation.check_bool(allow_missing, "allow_missing")
    parts = mixture_parts(dist)
    return -log_prob(parts, check_values(parts, values), allow_missing)


def crps(dist, values):
    """``[*B', D]`` continuous ranked probability score of each 1-D marginal, closed form.

    For weights ``w``, means ``m`` and variances ``s2`` of one dim (Grimit et al., 2006):
    ``CRPS = sum_k w_k A(y - m_k, s2_k) - 1/2 sum_jk w_j w_k A(m_j - m_k, s2_j + s2_k)``
    with ``A(mu, s2) = E|X|`` for ``X ~ N(mu, s2)``.

    Example (a standard normal at 0: ``CRPS = (sqrt(2) - 1) / sqrt(pi)``):

    >>> import tensorflow_probability as tfp
    >>> normal = tfp.distributions.MultivariateNormalDiag([0.0], [1.0])
    >>> round(float(crps(normal, [0.0])[0]), 4)
    0.2337
    """
    parts = mixture_parts(dist)
    return event_result(parts, marginals.marginal_crps(tf_ops, *marginal_parts(parts),
                                                      check_values(parts, values)))


def energy_score(dist, values, num_samples=200, seed=0):
    """``[*B']`` Monte Carlo energy score ``E||X - y|| - 1/2 E||X - X'||``.

    Uses two independent sets of ``num_samples`` draws (seeded, so repeated calls agree).
    For ``D = 1`` it estimates the CRPS.
    """
    num_samples = validation.check_positive_int(num_samples, "num_samples")
    parts = mixture_parts(dist)
    values = check_values(parts, values)
    draws = sample(dist, 2 * num_samples, seed=seed)  # [2N, *B, D]
    if parts.scalar:
        draws = draws[..., tf.newaxis]
    extra_batch_rank = values.shape.rank - draws.shape.rank + 1
    if extra_batch_rank > 0:  # values carry more batch axes than dist: broadcast draws
        draws = tf.reshape(draws, tf.concat(
            [tf.shape(draws)[:1], tf.ones([extra_batch_rank], tf.int32), tf.shape(draws)[1:]], 0))
    return marginals.energy_score(tf_ops, draws[:num_samples], draws[num_samples:], values)


def pit(dist, values):
    """``[*B', D]`` probability integral transform: each marginal CDF at the observed value.

    For a calibrated model these are uniform on ``[0, 1]``.
    """
    return cdf(dist, values)


def coverage(dist, values, levels=(0.5, 0.9)):
    """``[len(levels), D]`` fraction of ``values`` inside each central interval, per dim.

    ``values`` must have the full batch shape ``[*B, D]``. For a calibrated model the
    fractions approach the levels.
    """
    levels = np.asarray(levels, dtype=np.float64).reshape(-1)
    if np.any(~((levels > 0) & (levels < 1))):
        raise ValueError(f"`levels` must lie in (0, 1); received {levels.tolist()}.")
    # All interval bounds in one bisection: [2L, *B, D], lower bounds first.
    bounds = quantile(dist, np.concatenate([(1 - levels) / 2, (1 + levels) / 2]))
    parts = mixture_parts(dist)
    values = event_result(parts, check_values(parts, values))
    lower, upper = bounds[:len(levels)], bounds[len(levels):]
    inside = tf.cast(tf.logical_and(values >= lower, values <= upper), bounds.dtype)
    event_axes = 0 if parts.scalar else 1
    return tf.reduce_mean(inside, axis=list(range(1, inside.shape.rank - event_axes)))
