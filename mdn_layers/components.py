"""Gaussian mixtures as plain tensors: read them from, and build them as, TFP distributions.

Every core routine (conditioning, sampling, summaries, scores) works on
:class:`MixtureParts`, so it accepts any ``tfd.MixtureSameFamily`` of
multivariate normals (full, diagonal or spherical), a single multivariate
normal, or the tensor-coercible wrapper that ``tfp.layers`` layers return.
"""

import math
from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

# Up to this event size, triangular solves are unrolled into elementwise forward
# substitution: a few dozen fused elementwise ops beat a batched solve kernel (and its
# gradient) for the small matrices of MDN heads.
_UNROLL_MAX_EVENT_SIZE = 8


class MixtureParts(NamedTuple):
    """A batch of Gaussian mixtures with ``K`` components over ``D`` dims.

    Attributes:
      log_weights: ``[..., K]`` normalised log mixture weights.
      loc: ``[..., K, D]`` component means.
      scale: ``[..., K, D, D]`` lower-triangular Cholesky factors (non-negative
        diagonal) of the component covariances, or ``[..., K, D]`` standard
        deviations when ``diagonal`` is True.
      diagonal: whether ``scale`` holds per-dim standard deviations.
      single: whether the parts came from one multivariate normal (``K == 1``)
        rather than a mixture; :func:`build_distribution` then gives back a
        multivariate normal.
    """
    log_weights: tf.Tensor
    loc: tf.Tensor
    scale: tf.Tensor
    diagonal: bool
    single: bool = False

    @property
    def event_size(self):
        return self.loc.shape[-1]

    @property
    def num_components(self):
        return self.loc.shape[-2]

    @property
    def dtype(self):
        return self.loc.dtype

    def scale_tril(self):
        """``[..., K, D, D]`` Cholesky factors, whatever the covariance kind."""
        return tf.linalg.diag(self.scale) if self.diagonal else self.scale

    def covariance(self):
        """``[..., K, D, D]`` component covariance matrices."""
        tril = self.scale_tril()
        return tf.matmul(tril, tril, transpose_b=True)


def unwrap(dist):
    """Returns the distribution behind a ``tfp.layers`` tensor-coercible output."""
    while "tensor_distribution" in vars(dist):
        dist = vars(dist)["tensor_distribution"]
    return dist


def _normal_parts(dist):
    """(loc ``[..., D]``, scale, diagonal) of a multivariate normal."""
    if isinstance(dist, tfd.MultivariateNormalLinearOperator):
        loc = dist.mean()
        operator = dist.scale
        if isinstance(operator, tf.linalg.LinearOperatorDiag):
            scale = tf.broadcast_to(tf.abs(operator.diag_part()), tf.shape(loc))
            return loc, scale, True
        batch_and_matrix = tf.concat([tf.shape(loc), tf.shape(loc)[-1:]], axis=0)
        scale = tf.broadcast_to(operator.to_dense(), batch_and_matrix)
        if isinstance(operator, (tf.linalg.LinearOperatorLowerTriangular,
                                 tf.linalg.LinearOperatorIdentity,
                                 tf.linalg.LinearOperatorScaledIdentity)):
            # A triangular factor may have negative diagonal entries; flipping those
            # columns gives the same covariance with the positive diagonal used downstream.
            scale *= tf.sign(tf.linalg.diag_part(scale))[..., tf.newaxis, :]
        else:
            scale = tf.linalg.cholesky(tf.matmul(scale, scale, transpose_b=True))
        return loc, scale, False
    if (isinstance(dist, tfd.Independent) and isinstance(dist.distribution, tfd.Normal)
            and dist.reinterpreted_batch_ndims == 1):
        loc = dist.mean()
        return loc, tf.broadcast_to(dist.distribution.stddev(), tf.shape(loc)), True
    raise TypeError(
        "Expected a tfd.MixtureSameFamily of multivariate normals or a single "
        "multivariate normal (tfd.MultivariateNormalTriL / Diag / FullCovariance, or "
        f"tfd.Independent(tfd.Normal)); received {type(dist).__name__}.")


def mixture_parts(dist):
    """Reads the weights, means and scales of a Gaussian mixture distribution.

    Args:
      dist: a ``tfd.MixtureSameFamily`` whose components are multivariate
        normals, a single multivariate normal, or a ``tfp.layers`` output.

    Returns:
      :class:`MixtureParts` with batch shape ``dist.batch_shape``.

    Raises:
      TypeError: ``dist`` is not a Gaussian mixture or multivariate normal.
      ValueError: the event size is not statically known.
    """
    dist = unwrap(dist)
    if isinstance(dist, tfd.MixtureSameFamily):
        loc, scale, diagonal = _normal_parts(dist.components_distribution)
        logits = dist.mixture_distribution.logits_parameter()
        logits = tf.broadcast_to(logits, tf.shape(loc)[:-1])
        single = False
    else:
        loc, scale, diagonal = _normal_parts(dist)
        loc = loc[..., tf.newaxis, :]
        scale = scale[..., tf.newaxis, :] if diagonal else scale[..., tf.newaxis, :, :]
        logits = tf.zeros(tf.shape(loc)[:-1], dtype=loc.dtype)
        single = True
    if loc.shape[-1] is None:
        raise ValueError("The distribution's event size must be known statically; "
                         f"received event shape {dist.event_shape}.")
    log_weights = tf.math.log_softmax(tf.cast(logits, loc.dtype), axis=-1)
    return MixtureParts(log_weights, loc, scale, diagonal, single)


def build_distribution(parts):
    """Turns :class:`MixtureParts` back into a TFP distribution.

    Returns a ``tfd.MixtureSameFamily`` of ``MultivariateNormalTriL`` (or
    ``MultivariateNormalDiag`` when ``parts.diagonal``); a single multivariate
    normal when ``parts.single``.
    """
    loc, scale = parts.loc, parts.scale
    if parts.single:
        loc, scale = loc[..., 0, :], (scale[..., 0, :] if parts.diagonal else scale[..., 0, :, :])
    if parts.diagonal:
        normal = tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)
    else:
        normal = tfd.MultivariateNormalTriL(loc=loc, scale_tril=scale)
    if parts.single:
        return normal
    return tfd.MixtureSameFamily(tfd.Categorical(logits=parts.log_weights), normal)


def solve_lower(tril, rhs):
    """Solves ``tril @ z = rhs``: ``tril`` ``[..., D, D]`` lower-triangular, ``z`` ``[..., D]``.

    Batch axes broadcast. Small ``D`` runs as unrolled forward substitution,
    ``z_i = (rhs_i - sum_{j<i} L_ij z_j) / L_ii``; larger ``D`` as a batched triangular solve.
    """
    event_size = tril.shape[-1]
    if event_size is not None and event_size <= _UNROLL_MAX_EVENT_SIZE:
        z = []
        for i in range(event_size):
            total = rhs[..., i]
            for j in range(i):
                total -= tril[..., i, j] * z[j]
            z.append(total / tril[..., i, i])
        return tf.stack(z, axis=-1) if z else rhs
    batch = tf.broadcast_dynamic_shape(tf.shape(tril)[:-2], tf.shape(rhs)[:-1])
    tril = tf.broadcast_to(tril, tf.concat([batch, tf.shape(tril)[-2:]], 0))
    rhs = tf.broadcast_to(rhs, tf.concat([batch, tf.shape(rhs)[-1:]], 0))
    return tf.linalg.triangular_solve(tril, rhs[..., tf.newaxis], lower=True)[..., 0]


def gaussian_log_density(z, log_det, num_dims):
    """``log N``: ``-|z|^2 / 2 - log|L| - num_dims log(2 pi) / 2`` for whitened ``z`` ``[..., D]``.

    ``log_det`` is ``log|L|`` of the scale factor; ``num_dims`` (int or tensor) the number
    of dims the density is over.
    """
    return (-0.5 * tf.reduce_sum(tf.square(z), axis=-1) - log_det
            - num_dims * (0.5 * math.log(2 * math.pi)))


def component_log_prob(parts, values):
    """``[..., K]`` log density of ``values`` ``[..., D]`` under each component (no weights)."""
    residual = tf.cast(values, parts.dtype)[..., tf.newaxis, :] - parts.loc
    if parts.diagonal:
        z = residual / parts.scale
        log_det = tf.reduce_sum(tf.math.log(parts.scale), axis=-1)
    else:
        z = solve_lower(parts.scale, residual)
        log_det = tf.reduce_sum(tf.math.log(tf.linalg.diag_part(parts.scale)), axis=-1)
    return gaussian_log_density(z, log_det, parts.event_size)


def log_prob(parts, values):
    """``[...]`` log density of ``values`` ``[..., D]`` under the mixture (log space throughout)."""
    return tf.reduce_logsumexp(parts.log_weights + component_log_prob(parts, values), axis=-1)
