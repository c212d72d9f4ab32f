"""The TFP distribution bridge: Gaussian mixtures as tensors (:class:`MixtureParts`), read
from and built as TFP distributions.

The analysis path (TensorFlow + TFP). Every analysis routine (conditioning, sampling,
summaries, scores) works on :class:`MixtureParts`, so it accepts any Gaussian mixture TFP
expresses: ``tfd.MixtureSameFamily`` of multivariate normals (full, diagonal, spherical,
``Independent(Normal)``) or of ``tfd.Normal``, ``tfd.Mixture`` of such components, a single
multivariate normal, and the private classes and tensor-coercible wrappers that
``tfp.layers`` layers return.
"""

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from mdn_layers.analysis import tf_ops
from mdn_layers.core import densities, layout, triangular, validation

if TYPE_CHECKING:  # names used in annotations only
    from numpy.typing import ArrayLike

tfd = tfp.distributions


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
      scalar: whether the distribution has a scalar event (mixtures of ``tfd.Normal``);
        the parts then hold ``D = 1`` and results drop the event axis again.
    """
    log_weights: tf.Tensor
    loc: tf.Tensor
    scale: tf.Tensor
    diagonal: bool
    single: bool = False
    scalar: bool = False

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
    while "tensor_distribution" in getattr(dist, "__dict__", {}):
        dist = vars(dist)["tensor_distribution"]
    return dist


def _is(dist, name):
    """Whether ``dist`` is a ``tfd.<name>``, or TFP's private base of it (``_<name>``), as
    ``tfp.layers`` builds them."""
    return any(cls.__name__.lstrip("_") == name for cls in type(dist).__mro__)


_EXPECTED = ("Expected a Gaussian mixture: tfd.MixtureSameFamily of multivariate normals "
             "(tfd.MultivariateNormalTriL / Diag / FullCovariance, tfd.Independent(tfd.Normal)) "
             "or of tfd.Normal, a tfd.Mixture of such components, a single multivariate "
             "normal, or a tfp.layers output")


def _normal_parts(dist):
    """(loc ``[..., D]``, scale, diagonal, scalar) of a (multivariate) normal."""
    dist = unwrap(dist)
    if _is(dist, "Normal"):
        loc = dist.mean()[..., tf.newaxis]
        return loc, tf.broadcast_to(dist.stddev()[..., tf.newaxis], tf.shape(loc)), True, True
    loc, scale, diagonal = _multivariate_normal_parts(dist)
    return loc, scale, diagonal, False


def _upper_is_zero(tril):
    """Whether the entries above the diagonal of ``tril`` ``[..., D, D]`` are all 0 (TFP's
    triangular operators ignore them), checked in row chunks so no full copy is made."""
    size = tril.shape[-1]
    upper = tf.constant(np.triu(np.ones([size, size]), 1), tril.dtype)
    flat = tf.reshape(tril, [-1, size, size])
    step = max(1, layout.CHUNK_BYTES // (size * size * tril.dtype.size))
    return not any(bool(tf.reduce_any(flat[start:start + step] * upper != 0))
                   for start in range(0, flat.shape[0], step))


def _multivariate_normal_parts(dist):
    """(loc ``[..., D]``, scale, diagonal) of a multivariate normal."""
    if _is(dist, "MultivariateNormalLinearOperator"):
        loc = dist.mean()
        operator = dist.scale
        if isinstance(operator, tf.linalg.LinearOperatorDiag):
            scale = tf.broadcast_to(tf.abs(operator.diag_part()), tf.shape(loc))
            return loc, scale, True
        batch_and_matrix = tf.concat([tf.shape(loc), tf.shape(loc)[-1:]], axis=0)
        if isinstance(operator, tf.linalg.LinearOperatorLowerTriangular):
            # A triangular factor may have negative diagonal entries; flipping those
            # columns gives the same covariance with the positive diagonal used downstream.
            # One masked multiply: `to_dense` is a band_part, several times slower on CPU.
            raw = tf.convert_to_tensor(operator.tril)
            signs = tf.sign(tf.linalg.diag_part(raw))
            if (tf.executing_eagerly() and raw.shape == loc.shape + loc.shape[-1:]
                    and bool(tf.reduce_all(signs >= 0)) and _upper_is_zero(raw)):
                return loc, raw, False  # the usual case (our layers' factors): no copy
            lower = tf.constant(np.tril(np.ones([raw.shape[-1]] * 2)), raw.dtype)
            flip = lower * signs[..., tf.newaxis, :]
            return loc, tf.broadcast_to(raw * flip, batch_and_matrix), False
        scale = tf.broadcast_to(operator.to_dense(), batch_and_matrix)
        if isinstance(operator, (tf.linalg.LinearOperatorIdentity,
                                 tf.linalg.LinearOperatorScaledIdentity)):
            scale *= tf.sign(tf.linalg.diag_part(scale))[..., tf.newaxis, :]
        else:
            scale = triangular.gram_factor(tf_ops, tf.linalg.matrix_transpose(scale))
        return loc, scale, False
    if (_is(dist, "Independent") and _is(unwrap(dist.distribution), "Normal")
            and dist.reinterpreted_batch_ndims == 1):
        loc = dist.mean()
        return loc, tf.broadcast_to(dist.distribution.stddev(), tf.shape(loc)), True
    raise TypeError(f"{_EXPECTED}; received {type(dist).__name__}.")


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
    single = False
    if _is(dist, "MixtureSameFamily"):
        loc, scale, diagonal, scalar = _normal_parts(dist.components_distribution)
        logits = unwrap(dist.mixture_distribution).logits_parameter()
    elif _is(dist, "Mixture"):
        read = [_normal_parts(component) for component in dist.components]
        if len({(r[2], r[3]) for r in read}) != 1:
            raise TypeError(f"{_EXPECTED}; received a tfd.Mixture whose components differ "
                            "in kind (mix diagonal and full, or scalar and vector, events).")
        loc = tf.stack([r[0] for r in read], axis=-2)
        scale = tf.stack([r[1] for r in read], axis=-2 if read[0][2] else -3)
        diagonal, scalar = read[0][2], read[0][3]
        logits = unwrap(dist.cat).logits_parameter()
    else:
        loc, scale, diagonal, scalar = _normal_parts(dist)
        loc = loc[..., tf.newaxis, :]
        scale = scale[..., tf.newaxis, :] if diagonal else scale[..., tf.newaxis, :, :]
        logits = tf.zeros(tf.shape(loc)[:-1], dtype=loc.dtype)
        single = True  # one normal (multivariate, or a lone tfd.Normal): a one-component mixture
    if loc.shape[-1] is None:
        raise ValueError("The distribution's event size must be known statically; "
                         f"received event shape {dist.event_shape}.")
    log_weights = tf.math.log_softmax(tf.cast(logits, loc.dtype), axis=-1)
    return MixtureParts(*broadcast_parts(log_weights, loc, scale, diagonal), diagonal, single,
                        scalar)


def broadcast_parts(log_weights, loc, scale, diagonal):
    """``(log_weights, loc, scale)`` broadcast to one batch shape ``[..., K]``: any of them
    may carry batch axes the others lack (TFP broadcasts a mixture's weights against its
    components)."""
    batch = tf.broadcast_dynamic_shape(tf.shape(log_weights), tf.shape(loc)[:-1])
    batch = tf.broadcast_dynamic_shape(batch, tf.shape(scale)[:-1 if diagonal else -2])
    loc = tf.broadcast_to(loc, tf.concat([batch, tf.shape(loc)[-1:]], 0))
    scale_event = tf.shape(scale)[-1:] if diagonal else tf.shape(scale)[-2:]
    scale = tf.broadcast_to(scale, tf.concat([batch, scale_event], 0))
    return tf.broadcast_to(log_weights, batch), loc, scale


def check_values(parts, values, name="values"):
    """``values`` as a ``[..., D]`` tensor of ``parts``' dtype, or a ``ValueError``.

    A scalar-event mixture takes ``[...]`` values (an event axis is added). Leading axes
    broadcast later, as in ``log_prob``; a last axis other than ``D`` is refused rather
    than broadcast.
    """
    values = tf.cast(tf_ops.to_tensor(values), parts.dtype)
    if parts.scalar:
        values = values[..., tf.newaxis]
    # (Scalar-event values always pass: their added event axis has the event size, 1.)
    if values.shape.rank == 0 or values.shape[-1] not in (None, parts.event_size):
        raise ValueError(f"`{name}` must have a last axis of size {parts.event_size} (the event "
                         f"size); received shape {values.shape}.")
    return values


def event_result(parts, result):
    """Drops the event axis of ``[..., D]`` results again for a scalar-event mixture."""
    return result[..., 0] if parts.scalar else result


def require_vector_event(parts, what):
    """Raises a ``ValueError`` for a scalar-event mixture, which ``what`` needs ``D >= 2`` for."""
    if parts.scalar:
        raise ValueError(f"{what} needs a multivariate event (D >= 2); received a mixture "
                         "with a scalar event (tfd.Normal components).")


def build_distribution(parts):
    """Turns :class:`MixtureParts` back into a TFP distribution.

    Returns a ``tfd.MixtureSameFamily`` of ``MultivariateNormalTriL`` (or
    ``MultivariateNormalDiag`` when ``parts.diagonal``); a single multivariate
    normal when ``parts.single``.
    """
    loc, scale = parts.loc, parts.scale
    if parts.scalar:
        components = tfd.Normal(loc[..., 0], scale[..., 0])
        return tfd.MixtureSameFamily(tfd.Categorical(logits=parts.log_weights), components)
    if parts.single:
        loc, scale = loc[..., 0, :], (scale[..., 0, :] if parts.diagonal else scale[..., 0, :, :])
    if parts.diagonal:
        normal = tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)
    else:
        normal = tfd.MultivariateNormalTriL(loc=loc, scale_tril=scale)
    if parts.single:
        return normal
    return tfd.MixtureSameFamily(tfd.Categorical(logits=parts.log_weights), normal)


def _check_params_width(params, event_size, num_components, covariance):
    expected = layout.params_width(event_size, num_components, covariance)
    received = params.shape[-1] if params.shape.rank else None
    if received is None:
        raise ValueError(f"params must have a static last axis of size {expected}; "
                         f"received shape {params.shape}.")
    if received != expected:
        raise ValueError(
            f"params last axis has size {received}, but event_size={event_size}, "
            f"num_components={num_components}, covariance={covariance!r} need "
            f"params_size={expected}.")


def params_to_parts(params, event_size, num_components, covariance,
                    diag_shift=layout.DEFAULT_DIAG_SHIFT):
    """Splits ``params`` ``[..., P]`` (any backend's array) into :class:`MixtureParts`
    (the config checked here, once)."""
    event_size, num_components, covariance = validation.check_mixture_config(
        event_size, num_components, covariance)
    diag_shift = validation.check_nonnegative_float(diag_shift, "diag_shift")
    return _split_params(params, event_size, num_components, covariance, diag_shift)


def _split_params(params, event_size, num_components, covariance, diag_shift):
    """:func:`params_to_parts` of a checked config."""
    rows = layout.chunk_rows(int(np.prod(np.shape(params)[1:])))
    if isinstance(params, np.ndarray) and params.ndim >= 2 and len(params) > rows:
        # Many rows of host params: split them chunk by chunk, so the split's
        # intermediates stay chunk-sized, then join the parts once.
        return joined_parts(
            [_split_params(params[start:start + rows], event_size, num_components,
                           covariance, diag_shift)
             for start in range(0, len(params), rows)])
    params = tf_ops.to_tensor(params)
    if not params.dtype.is_floating:
        params = tf.cast(params, tf.float32)
    _check_params_width(params, event_size, num_components, covariance)
    log_weights, loc, scale = layout.split_params(
        tf_ops, params, event_size, num_components, covariance, diag_shift)
    return MixtureParts(log_weights, loc, triangular.dense(tf_ops, scale),
                        diagonal=covariance != "full")


def joined_parts(pieces):
    """One :class:`MixtureParts` from pieces along the first batch axis."""
    if len(pieces) == 1:
        return pieces[0]
    return pieces[0]._replace(**{
        field: tf.concat([getattr(piece, field) for piece in pieces], axis=0)
        for field in ("log_weights", "loc", "scale")})


def row_chunks(parts, values=None, copies=1):
    """Yields ``(start, parts chunk, values chunk)`` over the first batch axis of ``parts``,
    about :data:`mdn_layers.core.layout.CHUNK_BYTES` of parts each, so that what a routine
    builds for every row (Cholesky copies, whitened residuals) exists for one chunk at a
    time. ``values`` ``[N, ...]`` are cut with the rows; values that broadcast (fewer axes
    than the batch and event, or None) go whole to every chunk. One chunk, the whole input,
    in graph mode, for a batch of unknown size or values with other leading axes.
    ``copies``: how many times a row's parts a routine builds per row (draws per row)."""
    batch = parts.log_weights.shape[:-1]
    row_bytes = parts.dtype.size * sum(int(np.prod(tensor.shape[1:])) for tensor in parts[:3])
    step = max(1, layout.CHUNK_BYTES // max(row_bytes * copies, 1))
    sliced = values is not None and values.shape.rank == batch.rank + 1
    cuttable = (tf.executing_eagerly() and batch.rank >= 1 and batch[0] is not None
                and batch[0] > step
                and all(tensor.shape[0] == batch[0] for tensor in (parts.loc, parts.scale))
                and (values is None or values.shape.rank <= batch.rank
                     or (sliced and values.shape[0] == batch[0])))
    if not cuttable:
        yield 0, parts, values
        return
    for start in range(0, batch[0], step):
        rows = slice(start, start + step)
        yield start, parts._replace(log_weights=parts.log_weights[rows], loc=parts.loc[rows],
                                    scale=parts.scale[rows]), (values[rows] if sliced
                                                               else values)


def mixture_from_param_chunks(chunks, event_size, num_components, covariance, diag_shift):
    """:func:`mixture_from_params` of params arriving in row chunks (an iterable of
    ``[n_i, ..., P]`` arrays), each split as it arrives; the mixture's batch is their rows
    in order. The config is a checked one (a head's ``mixture_config()``)."""
    return build_distribution(joined_parts(
        [_split_params(params, event_size, num_components, covariance, diag_shift)
         for params in chunks]))


def mixture_from_params(params: "ArrayLike", event_size: int, num_components: int,
                        covariance: str = "full",
                        diag_shift: float = layout.DEFAULT_DIAG_SHIFT) -> "tfd.MixtureSameFamily":
    """Builds the Gaussian mixture that a params tensor describes.

    Args:
      params: ``[..., P]`` float array (TensorFlow, NumPy, JAX or PyTorch),
        ``P = params_size(event_size, num_components, covariance)``.
      event_size: ``D``, the number of target dims.
      num_components: ``K``, the number of mixture components.
      covariance: ``"full"``, ``"diag"`` or ``"spherical"``.
      diag_shift: floor added to every standard deviation / Cholesky diagonal.

    Returns:
      ``tfd.MixtureSameFamily`` with batch shape ``params.shape[:-1]`` and event
      shape ``[D]``; components are ``tfd.MultivariateNormalTriL`` (``"full"``)
      or ``tfd.MultivariateNormalDiag`` (``"diag"``, ``"spherical"``).

    Example:

    >>> import numpy as np
    >>> from mdn_layers import params_size
    >>> p = np.zeros([4, params_size(2, 3)], np.float32)
    >>> mixture_from_params(p, event_size=2, num_components=3).batch_shape
    TensorShape([4])
    """
    return build_distribution(
        params_to_parts(params, event_size, num_components, covariance, diag_shift))


def component_log_prob(parts, values):
    """``[..., K]`` log density of ``values`` ``[..., D]`` under each component (no weights)."""
    return densities.component_log_prob(tf_ops, parts.loc, parts.scale, parts.diagonal,
                                       tf.cast(values, parts.dtype))


def in_row_chunks(function, parts, values):
    """``function(parts, values)`` (a tensor whose first axis is the rows) over
    :func:`row_chunks`, concatenated."""
    pieces = [function(chunk, chunk_values)
              for _, chunk, chunk_values in row_chunks(parts, values)]
    return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=0)


def log_prob(parts, values, allow_missing):
    """``[...]`` log density of ``values`` ``[..., D]`` under the mixture (log space
    throughout; eagerly, in row chunks); with ``allow_missing`` NaN entries are missing and
    each row scores the marginal of its observed dims."""
    density = densities.observed_log_prob if allow_missing else densities.mixture_log_prob
    return in_row_chunks(
        lambda chunk, chunk_values: density(
            tf_ops, chunk.log_weights, chunk.loc, chunk.scale, chunk.diagonal, chunk_values),
        parts, tf.cast(values, parts.dtype))
