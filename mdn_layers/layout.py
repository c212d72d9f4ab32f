"""The params layout: the one place that knows how a params vector maps to a mixture.

For ``K`` components over ``D`` target dims a params vector is::

    [K logits | component 1 | component 2 | ... | component K]

and each component block is ``D`` means followed by its scale entries:

* ``"full"``: ``D(D+1)/2`` entries filled into a lower-triangular matrix in
  ``tfp.math.fill_triangular`` order, diagonal mapped by ``softplus(x) + diag_shift``
  (exactly ``tfp.bijectors.FillScaleTriL(diag_shift=diag_shift)``, and so exactly what
  ``tfp.layers.MixtureSameFamily(K, tfp.layers.MultivariateNormalTriL(D))`` uses);
* ``"diag"``: ``D`` entries, standard deviations ``softplus(x) + diag_shift``;
* ``"spherical"``: one entry, a standard deviation shared by all ``D`` dims.

The filling is an elementwise map and a gather with a static index map, so its
gradient compiles under XLA with a dynamic batch size (the gradients of
``FillScaleTriL``'s ``matrix_set_diag`` build dynamically shaped zeros, which XLA rejects).
"""

import functools

import numpy as np
import tensorflow as tf

from mdn_layers import _validation
from mdn_layers.components import MixtureParts, build_distribution

DEFAULT_DIAG_SHIFT = 1e-5


def scale_params_size(event_size, covariance):
    """Number of scale entries per component."""
    return {"full": event_size * (event_size + 1) // 2,
            "diag": event_size,
            "spherical": 1}[covariance]


def params_size(event_size, num_components, covariance="full"):
    """Width ``P`` of the params vector, as a Python int.

    >>> params_size(2, 3, "full")   # 3 logits + 3 * (2 means + 3 tril entries)
    18
    """
    event_size, num_components, covariance = _validation.check_mixture_config(
        event_size, num_components, covariance)
    return num_components * (1 + event_size + scale_params_size(event_size, covariance))


@functools.lru_cache(maxsize=None)
def _tril_fill_indices(event_size):
    """``[D, D]`` int map from the ``D(D+1)/2`` tril entries (index ``m`` = zero) to a matrix.

    Reproduces ``tfp.math.fill_triangular(x, upper=False)``: the matrix is
    ``concat([x[D:], reverse(x)])`` reshaped to ``[D, D]``, upper triangle zeroed.
    """
    size = event_size * (event_size + 1) // 2
    order = np.concatenate([np.arange(event_size, size), np.arange(size)[::-1]])
    order = order.reshape(event_size, event_size)
    return np.where(np.tril(np.ones_like(order)) > 0, order, size)


def _positive_scale(raw, diag_shift):
    return tf.math.softplus(raw) + tf.cast(diag_shift, raw.dtype)


def _inverse_positive_scale(scale, diag_shift):
    """Raw entry that :func:`_positive_scale` maps to ``scale`` (numpy)."""
    target = np.asarray(scale, dtype=np.float64) - diag_shift
    return target + np.log(-np.expm1(-target))


def _check_params_width(params, event_size, num_components, covariance):
    expected = params_size(event_size, num_components, covariance)
    received = params.shape[-1]
    if params.shape.rank == 0 or received is None:
        raise ValueError(f"params must have a static last axis of size {expected}; "
                         f"received shape {params.shape}.")
    if received != expected:
        raise ValueError(
            f"params last axis has size {received}, but event_size={event_size}, "
            f"num_components={num_components}, covariance={covariance!r} need "
            f"params_size={expected}.")


def params_to_parts(params, event_size, num_components, covariance="full",
                    diag_shift=DEFAULT_DIAG_SHIFT):
    """Splits ``params`` ``[..., P]`` into :class:`MixtureParts` with batch shape ``[...]``."""
    event_size, num_components, covariance = _validation.check_mixture_config(
        event_size, num_components, covariance)
    params = tf.convert_to_tensor(params)
    if not params.dtype.is_floating:
        params = tf.cast(params, tf.float32)
    _check_params_width(params, event_size, num_components, covariance)
    logits = params[..., :num_components]
    block = event_size + scale_params_size(event_size, covariance)
    components = tf.reshape(params[..., num_components:],
                            tf.concat([tf.shape(params)[:-1], [num_components, block]], 0))
    loc, raw_scale = components[..., :event_size], components[..., event_size:]
    if covariance == "full":
        fill_indices = _tril_fill_indices(event_size)
        on_diagonal = np.isin(np.arange(raw_scale.shape[-1]), np.diag(fill_indices))
        entries = tf.where(on_diagonal, _positive_scale(raw_scale, diag_shift), raw_scale)
        padded = tf.concat([entries, tf.zeros_like(entries[..., :1])], axis=-1)
        scale = tf.gather(padded, fill_indices, axis=-1)
        diagonal = False
    else:
        scale = _positive_scale(raw_scale, diag_shift)
        if covariance == "spherical":
            scale = tf.broadcast_to(scale, tf.shape(loc))
        diagonal = True
    return MixtureParts(tf.math.log_softmax(logits, axis=-1), loc, scale, diagonal)


def mixture_from_params(params, event_size, num_components, covariance="full",
                        diag_shift=DEFAULT_DIAG_SHIFT):
    """Builds the Gaussian mixture that a params tensor describes.

    Args:
      params: ``[..., P]`` float tensor, ``P = params_size(event_size,
        num_components, covariance)``.
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
    >>> p = np.zeros([4, params_size(2, 3)], np.float32)
    >>> mixture_from_params(p, event_size=2, num_components=3).batch_shape
    TensorShape([4])
    """
    return build_distribution(
        params_to_parts(params, event_size, num_components, covariance, diag_shift))


def initial_params(event_size, num_components, covariance, locs, scale,
                   diag_shift=DEFAULT_DIAG_SHIFT, dtype=tf.float32):
    """A params vector ``[P]`` for equal weights, the given means and scale.

    Graph-safe (``locs`` may be a symbolic tensor), so layers can use it in an initializer.

    Args:
      locs: ``[K, D]`` component means (array or tensor).
      scale: positive float, every component's standard deviation per dim
        (off-diagonal Cholesky entries are zero).
    """
    size = params_size(event_size, num_components, covariance)
    block = event_size + scale_params_size(event_size, covariance)
    starts = num_components + block * np.arange(num_components)
    scale_entries = np.arange(scale_params_size(event_size, covariance))
    if covariance == "full":
        scale_entries = np.diag(_tril_fill_indices(event_size))
    base = np.zeros(size)
    base[(starts[:, None] + event_size + scale_entries[None, :]).ravel()] = (
        _inverse_positive_scale(scale, diag_shift))
    loc_positions = (starts[:, None] + np.arange(event_size)[None, :]).reshape(-1, 1)
    locs = tf.reshape(tf.cast(locs, dtype), [-1])
    return tf.constant(base, dtype) + tf.scatter_nd(loc_positions, locs, [size])


class MixtureConfig:
    """Mixin for layers, losses and metrics: the ``(event_size, num_components, covariance,
    diag_shift)`` quadruple, validated once, and what follows from it."""

    def _init_mixture_config(self, event_size, num_components, covariance, diag_shift):
        self.event_size, self.num_components, self.covariance = (
            _validation.check_mixture_config(event_size, num_components, covariance))
        self.diag_shift = _validation.check_nonnegative_float(diag_shift, "diag_shift")
        self.num_params = params_size(self.event_size, self.num_components, self.covariance)

    def _mixture_config(self):
        return {"event_size": self.event_size, "num_components": self.num_components,
                "covariance": self.covariance, "diag_shift": self.diag_shift}

    def mixture(self, params):
        """The ``tfd.MixtureSameFamily`` that ``params`` ``[..., P]`` describe."""
        return mixture_from_params(params, self.event_size, self.num_components,
                                   self.covariance, self.diag_shift)

    def _targets_like(self, y_true, y_pred):
        """``y_true`` as a tensor of ``y_pred``'s dtype; ``(batch,)`` becomes ``(batch, 1)``
        when ``event_size == 1``."""
        y_true = tf.convert_to_tensor(y_true)
        if self.event_size == 1 and y_true.shape.rank == y_pred.shape.rank - 1:
            y_true = y_true[..., tf.newaxis]
        return tf.cast(y_true, y_pred.dtype)

    def _parts(self, params):
        return params_to_parts(params, self.event_size, self.num_components,
                               self.covariance, self.diag_shift)
