"""Sampling predicted mixtures with temperature.

Conventions (also in the README):

* ``temperature`` divides the mixture logits: ``w_k ∝ w_k ** (1 / temperature)``. Below 1 it
  favours the likelier components; ``0`` always picks the most probable one.
* ``sigma_temperature`` multiplies each component's covariance (standard deviations scale by
  its square root); ``0`` returns the chosen component's mean.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # names used in annotations only
    from numpy.typing import ArrayLike
    from tensorflow_probability import distributions as tfd

import numbers

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from mdn_layers.analysis import tf_ops
from mdn_layers.analysis.mixtures import event_result, mixture_parts, row_chunks
from mdn_layers.core import validation
from mdn_layers.core.draws import draw


def _sample_shape(sample_shape):
    """``sample_shape`` as a tuple of non-negative Python ints, or a ``ValueError``."""
    sizes = tuple(np.ravel(sample_shape))
    if sample_shape is None or not all(
            isinstance(size, numbers.Integral) and not isinstance(size, (bool, np.bool_))
            and size >= 0 for size in sizes):
        raise ValueError("`sample_shape` must be a non-negative int or a sequence of them; "
                         f"received {sample_shape!r}.")
    return tuple(int(size) for size in sizes)


def _stateless_seed(seed):
    """A ``[2]`` int32 stateless seed: fresh for ``None``, a fixed hash of an int."""
    if seed is None:
        return tf.random.uniform([2], maxval=np.iinfo(np.int32).max, dtype=tf.int32)
    if isinstance(seed, numbers.Integral):
        state = np.random.SeedSequence(int(seed) % 2**63).generate_state(2, dtype=np.uint32)
        return tf.constant((state >> 1).astype(np.int32))
    seed = tf.convert_to_tensor(seed)
    if seed.shape == () and seed.dtype.is_integer and tf.executing_eagerly():
        return _stateless_seed(int(seed))  # an int in a tensor: the same draws as the int
    if seed.shape != (2,):
        raise ValueError(f"`seed` must be an int, None or a shape-[2] stateless seed; "
                         f"received shape {seed.shape}.")
    return tf.cast(seed, tf.int32)


def sample(dist: "tfd.Distribution", sample_shape: "int | Sequence[int]" = (),
           temperature: float = 1.0, sigma_temperature: float = 1.0,
           seed: "int | ArrayLike | None" = None) -> "tf.Tensor":
    """Draws from a Gaussian mixture with temperature-adjusted weights and covariances.

    Args:
      dist: a mixture of multivariate normals (any covariance kind, from either front-end,
        conditioned or marginalised) or a single multivariate normal; batch shape ``B``,
        event shape ``[D]``.
      sample_shape: int or tuple ``S``.
      temperature: float >= 0 dividing the mixture logits (``0``: most probable component).
      sigma_temperature: float >= 0 multiplying every component covariance (``0``: means).
      seed: an int or a stateless seed (shape ``[2]`` tensor) for reproducible draws;
        ``None`` draws a fresh seed.

    Returns:
      ``[*S, *B, D]`` samples in the distribution's dtype (``[*S, *B]`` for a scalar-event
      mixture of ``tfd.Normal``). Works in ``tf.function``.

    Example:

    >>> import numpy as np
    >>> from mdn_layers import mixture_from_params, params_size
    >>> mixture = mixture_from_params(np.zeros([4, params_size(2, 3)], "float32"), 2, 3)
    >>> sharp = sample(mixture, 100, temperature=0.5, sigma_temperature=0.25, seed=7)
    >>> sharp.shape
    TensorShape([100, 4, 2])
    """
    temperature = validation.check_nonnegative_float(temperature, "temperature")
    sigma_temperature = validation.check_nonnegative_float(sigma_temperature,
                                                            "sigma_temperature")
    sample_shape = _sample_shape(sample_shape)
    parts = mixture_parts(dist)
    component_seed, noise_seed = tfp.random.split_seed(_stateless_seed(seed), n=2)
    batch_shape = tf.shape(parts.log_weights)[:-1]
    num_components, event_size = parts.num_components, parts.event_size
    num_samples = int(np.prod(sample_shape, dtype=np.int64))
    # Flatten the batch to one axis: [Bf, K, ...], draws as [Bf, N, D].
    log_weights = tf.reshape(parts.log_weights, [-1, num_components])
    loc = tf.reshape(parts.loc, [-1, num_components, event_size])
    scale = tf.reshape(parts.scale, [-1, num_components, event_size]
                       + ([] if parts.diagonal else [event_size]))
    flat = parts._replace(log_weights=log_weights, loc=loc, scale=scale)
    pieces = []
    for start, chunk, _ in row_chunks(flat, copies=max(1, num_samples)):
        # Rows after the first chunk draw from seeds folded with their first row.
        seeds = [base if start == 0 else tf.random.experimental.stateless_fold_in(base, start)
                 for base in (component_seed, noise_seed)]
        num_batch = tf.shape(chunk.log_weights)[0]
        uniform = tf.random.stateless_uniform(
            [num_batch, num_samples, num_components], seed=seeds[0],
            minval=np.finfo(np.float32).tiny, maxval=1.0, dtype=parts.dtype)
        noise = tf.random.stateless_normal([num_batch, num_samples, event_size],
                                           seed=seeds[1], dtype=parts.dtype)
        pieces.append(draw(tf_ops, chunk.log_weights, chunk.loc, chunk.scale,
                           parts.diagonal, uniform, noise, temperature, sigma_temperature))
    draws = pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=0)
    # [Bf, N, D] -> [N, Bf, D] -> [*S, *B, D]
    draws = tf.transpose(draws, [1, 0, 2])
    return event_result(parts, tf.reshape(draws, tf.concat(
        [np.asarray(sample_shape, np.int32), batch_shape, [event_size]], 0)))
