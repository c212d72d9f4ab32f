"""Conditioning and marginalising Gaussian mixtures, batched and differentiable.

For one component with mean ``mu`` and covariance ``S``, permute the dims so the
observed ones ``O`` come first. The Cholesky factor of the permuted covariance is

    L = [[L_OO,   0  ],
         [L_UO, L_UU ]]

where ``L_OO`` is the factor of the marginal covariance ``S_OO``, ``L_UU`` is the factor
of the conditional covariance ``S_UU - S_UO S_OO^-1 S_OU``, and with the whitened residual
``z = L_OO^-1 (y_O - mu_O)`` the conditional mean is ``mu_U + L_UO z`` (Bishop, PRML
eq. 2.81-2.82 written with Cholesky factors). The mixture weights become the posterior
responsibilities ``w_k N(y_O | mu_kO, S_kOO) / sum_j (...)``, computed in log space.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # names used in annotations only
    from numpy.typing import ArrayLike
    from tensorflow_probability import distributions as tfd

import numpy as np
import tensorflow as tf

from mdn_layers.analysis import tf_ops
from mdn_layers.analysis.mixtures import (
    MixtureParts,
    broadcast_parts,
    build_distribution,
    joined_parts,
    mixture_parts,
    require_vector_event,
    row_chunks,
)
from mdn_layers.core import densities, triangular, validation

_SINGULAR_MESSAGE = (
    "condition: the Cholesky factor of a component covariance is not finite; the "
    "covariance is singular or not positive definite. Add a small diagonal jitter to "
    "the components (layers of this library keep a `diag_shift` floor for this).")


def _check_values(values, num_observed, dtype):
    values = tf.convert_to_tensor(values, dtype_hint=dtype)
    values = tf.cast(values, dtype)
    if values.shape.rank == 0 or values.shape[-1] != num_observed:
        raise ValueError(
            f"`values` must have a last axis of size len(indices)={num_observed}; "
            f"received shape {values.shape}.")
    return tf_ops.check_finite(values, "condition: `values` contains NaN or inf; observed "
                                "values must be finite (marginalize out a dim instead of "
                                "observing NaN).")


def _gather_dims(tensor, dims, axis=-1):
    return tf.gather(tensor, np.asarray(dims, dtype=np.int32), axis=axis)


# Eager TensorFlow pays a fixed cost per op: the unrolled factorisation (hundreds of small
# ops) beats the batched kernels from about this many components (mixtures x K) on; in
# graphs and under XLA, where the ops fuse, it is used at any size.
EAGER_UNROLL_MIN_COMPONENTS = 32_768


def _unroll(parts):
    return (not tf.executing_eagerly()
            or int(tf.size(parts.log_weights)) >= EAGER_UNROLL_MIN_COMPONENTS)


def _permuted_cholesky(parts, order):
    """Cholesky factors of the covariances with dims in ``order``: :class:`TrilSlabs` for
    small ``D``, else ``[..., K, D, D]``.

    Raises (outside XLA) if a factor is not finite or has a zero diagonal entry.
    """
    if list(order) == list(range(parts.event_size)):
        chol = parts.scale
    else:
        chol = triangular.permuted_cholesky(tf_ops, parts.scale, order, _unroll(parts))
    diagonal = triangular.tril_diagonal(tf_ops, chol)
    log_diagonal = tf.math.log(diagonal)
    if tf.executing_eagerly():
        finite = tf.reduce_all(tf.math.is_finite(log_diagonal), -1)
        if not bool(tf.reduce_all(finite)):  # name the first singular component
            bad = tf.where(tf.logical_not(finite))[0]
            raise tf.errors.InvalidArgumentError(
                None, None, f"{_SINGULAR_MESSAGE} First at batch index "
                f"{tuple(int(i) for i in bad[:-1])}, component {int(bad[-1])}.")
        return chol
    checked = tf_ops.check_finite(log_diagonal, _SINGULAR_MESSAGE,
                                   tf.errors.InvalidArgumentError)
    with tf.control_dependencies([checked]):
        return tf.nest.map_structure(tf.identity, chol)


def _values_scale(values):
    """``[..., 1, 1]`` a power of two >= 1 within a factor 2 of ``max |values|`` per batch row
    (rounded down, so it cannot overflow): residuals divided by it (exactly) whiten without
    overflow however far out the values are."""
    largest = tf.maximum(tf.reduce_max(tf.abs(values), axis=-1), tf.ones([], values.dtype))
    return tf.pow(tf.constant(2.0, values.dtype),
                  tf.math.floor(tf.math.log(largest) / np.log(2.0)))[..., tf.newaxis, tf.newaxis]


def _posterior_log_weights(log_weights, z_scaled, values_scale, log_det, num_observed):
    """``[..., K]`` log responsibilities ``log w_k N(y_O | k) - log sum_j (...)``.

    ``z_scaled * values_scale`` are the whitened residuals. Far enough out (about 1e19
    standard deviations in float32) ``|z|^2`` overflows and every component's density is 0.
    The limit of the responsibilities is then the component(s) with the smallest whitened
    distance (the slowest-decaying marginal), found from the scaled residuals rescaled by their
    largest entry; ties keep weight times ``1 / |L|``.
    """
    z = z_scaled * values_scale
    posterior = log_weights + densities.gaussian_log_density(tf_ops, z, log_det, num_observed)
    all_lost = tf.reduce_all(tf.math.is_inf(posterior), axis=-1, keepdims=True)
    largest = tf.reduce_max(tf.abs(z_scaled), axis=[-2, -1], keepdims=True)
    rescaled = tf.reduce_sum(
        tf.square(z_scaled / tf.maximum(largest, tf.cast(1e-30, z.dtype))), axis=-1)
    nearest = rescaled <= tf.reduce_min(rescaled, axis=-1, keepdims=True)
    limit = tf.where(nearest, log_weights - log_det, tf.constant(-np.inf, z.dtype))
    return tf.math.log_softmax(tf.where(all_lost, limit, posterior), axis=-1)


def condition(dist: "tfd.Distribution", indices: "Sequence[int]",
              values: "ArrayLike") -> "tfd.MixtureSameFamily":
    """Distribution of the unobserved dims given the observed ones.

    Args:
      dist: a ``tfd.MixtureSameFamily`` of multivariate normals (full, diagonal or
        spherical) with event shape ``[D]``, or a single multivariate normal.
      indices: the observed dims, ints in any order; negative ints count from the
        end as in numpy. Validated eagerly in Python.
      values: ``[..., len(indices)]`` observed values, ``values[..., j]`` is the
        value of dim ``indices[j]``. Leading axes broadcast against
        ``dist.batch_shape`` as in ``dist.log_prob``.

    Returns:
      A mixture (or a multivariate normal, for a normal ``dist``) over the
      unobserved dims in ascending order, with batch shape
      ``broadcast(dist.batch_shape, values.shape[:-1])``. Components are
      ``MultivariateNormalTriL``, or ``MultivariateNormalDiag`` for diagonal input.
      Its weights are the posterior responsibilities of the components. With every
      dim observed the event size is 0 and only the weights remain; with no dim
      observed ``dist`` is returned unchanged.

    Raises:
      ValueError: repeated, out-of-range or non-integer ``indices``, or ``values``
        whose last axis is not ``len(indices)``.
      tf.errors.InvalidArgumentError: a component covariance is singular (eager
        and graph mode; under XLA the result is NaN instead).

    Observations so far out that every component's density underflows (float32, about
    1e19 standard deviations) get the limiting weights: all on the component(s) whose
    observed marginal decays slowest.

    Example:

    >>> import numpy as np
    >>> from mdn_layers import mixture_from_params, params_size
    >>> params = np.zeros([4, params_size(3, 5)], "float32")
    >>> mixture = mixture_from_params(params, event_size=3, num_components=5)
    >>> given = condition(mixture, indices=[2], values=np.ones([4, 1]))  # p(y0, y1 | y2)
    >>> given.batch_shape, given.event_shape
    (TensorShape([4]), TensorShape([2]))
    """
    parts = mixture_parts(dist)
    require_vector_event(parts, "condition")
    observed = validation.check_dimension_indices(indices, parts.event_size)
    if not observed:
        return dist
    values = _check_values(values, len(observed), parts.dtype)
    return build_distribution(joined_parts(
        [_conditioned_parts(chunk, observed, chunk_values)
         for _, chunk, chunk_values in row_chunks(parts, values)]))


def _conditioned_parts(parts, observed, values):
    """:class:`MixtureParts` of :func:`condition` (checked ``observed``, ``values``)."""
    unobserved = [d for d in range(parts.event_size) if d not in observed]
    values_scale = _values_scale(values)
    residual = (values[..., tf.newaxis, :] / values_scale
                - _gather_dims(parts.loc, observed) / values_scale)
    num_observed = len(observed)
    if parts.diagonal:
        z, log_det = densities.whiten(tf_ops, _gather_dims(parts.scale, observed), True,
                                     residual)
        loc = _gather_dims(parts.loc, unobserved)
        scale = _gather_dims(parts.scale, unobserved)
    else:
        chol = _permuted_cholesky(parts, list(observed) + unobserved)
        if isinstance(chol, triangular.TrilSlabs):
            z, log_det = densities.whiten(tf_ops, chol.block(0, num_observed), False, residual)
            shift = tf.stack([tf.add_n([chol.entry(u, o) * z[..., o]
                                        for o in range(num_observed)])
                              for u in range(num_observed, parts.event_size)], axis=-1)
            scale = triangular.dense(tf_ops, chol.block(num_observed, parts.event_size))
        else:
            z, log_det = densities.whiten(
                tf_ops, chol[..., :num_observed, :num_observed], False, residual)
            shift = tf.linalg.matvec(chol[..., num_observed:, :num_observed], z)
            scale = chol[..., num_observed:, num_observed:]
        loc = _gather_dims(parts.loc, unobserved) + shift * values_scale
    log_weights = _posterior_log_weights(parts.log_weights, z, values_scale, log_det,
                                         num_observed)
    return MixtureParts(*broadcast_parts(log_weights, loc, scale, parts.diagonal),
                        parts.diagonal, parts.single)


def marginalize(dist: "tfd.Distribution", indices: "Sequence[int]") -> "tfd.Distribution":
    """Distribution of the dims ``indices`` alone, in the given order.

    Args:
      dist: a ``tfd.MixtureSameFamily`` of multivariate normals or a single
        multivariate normal, event shape ``[D]``.
      indices: non-empty ints in any order (negative ints count from the end).

    Returns:
      A distribution of the same kind with event shape ``[len(indices)]`` and the
      same batch shape and weights; its dim ``j`` is ``dist``'s dim ``indices[j]``.

    Example:

    >>> import numpy as np
    >>> from mdn_layers import mixture_from_params, params_size
    >>> mixture = mixture_from_params(np.zeros([4, params_size(3, 5)], "float32"), 3, 5)
    >>> marginalize(mixture, [2, 0]).event_shape
    TensorShape([2])
    """
    parts = mixture_parts(dist)
    require_vector_event(parts, "marginalize")
    kept = validation.check_dimension_indices(indices, parts.event_size, allow_empty=False)
    loc = _gather_dims(parts.loc, kept)
    if parts.diagonal:
        scale = _gather_dims(parts.scale, kept)
    elif list(kept) == list(range(len(kept))):
        # The leading block of a Cholesky factor is the factor of the leading block.
        scale = parts.scale[..., :len(kept), :len(kept)]
    else:
        scale = triangular.dense(
            tf_ops, triangular.permuted_cholesky(tf_ops, parts.scale, kept, _unroll(parts)))
    return build_distribution(
        MixtureParts(parts.log_weights, loc, scale, parts.diagonal, parts.single))


def rescale(dist: "tfd.Distribution", loc: "ArrayLike",
            scale: "ArrayLike") -> "tfd.Distribution":
    """The distribution of ``loc + scale * Y`` for ``Y ~ dist`` (per-dim affine map).

    Use it to train on standardised targets and report in original units: if the model
    was fit to ``(y - mean) / std``, ``rescale(predict_mixture(model, x), mean, std)`` is
    the predicted mixture of ``y``, and its ``log_prob`` is the NLL in original units
    (the standardised one minus ``sum(log(std))``).

    Args:
      dist: a mixture of multivariate normals or a single one, event shape ``[D]``.
      loc: ``[D]`` shift, or a float for every dim.
      scale: ``[D]`` positive per-dim scale, or a positive float for every dim.
    """
    parts = mixture_parts(dist)
    loc = tf.constant(validation.check_affine(loc, parts.event_size, "loc", False), parts.dtype)
    scale = tf.constant(validation.check_affine(scale, parts.event_size, "scale", True),
                        parts.dtype)
    if parts.diagonal:
        new_scale = parts.scale * scale
    else:
        new_scale = parts.scale * scale[..., :, tf.newaxis]  # diag(scale) @ L stays lower
    return build_distribution(MixtureParts(parts.log_weights, loc + scale * parts.loc,
                                           new_scale, parts.diagonal, parts.single,
                                           parts.scalar))
