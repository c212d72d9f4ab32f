"""The array namespace of the analysis path: TensorFlow, behind the names of ``keras.ops``.

:mod:`mdn_layers.core.layout` and :mod:`mdn_layers.gaussian` call these names; this module and
:mod:`mdn_layers.training.keras_ops` give them the same meaning. Imports no Keras.
"""

import numpy as np
import tensorflow as tf

abs = tf.abs  # noqa: A001 - the keras.ops name
argmax = tf.argmax
erf = tf.math.erf
erfc = tf.math.erfc
exp = tf.exp
expm1 = tf.math.expm1
isnan = tf.math.is_nan
log = tf.math.log
logical_not = tf.logical_not
matmul = tf.matmul
matrix_diagonal = tf.linalg.diag_part
maximum = tf.maximum
ones_like = tf.ones_like
softplus = tf.math.softplus
sqrt = tf.sqrt
square = tf.square
zeros_like = tf.zeros_like


def cast(x, dtype):
    return tf.cast(x, dtype)


def concatenate(xs, axis=0):
    return tf.concat(xs, axis=axis)


def expand_dims(x, axis):
    return tf.expand_dims(x, axis)


def fori_loop(lower, upper, body, init_val):
    _, result = tf.while_loop(lambda i, _: True, lambda i, val: (i + 1, body(i, val)),
                              (tf.constant(lower), init_val),
                              maximum_iterations=upper - lower)
    return result


def log_softmax(x, axis=-1):
    return tf.nn.log_softmax(x, axis=axis)


def logsumexp(x, axis=None):
    return tf.reduce_logsumexp(x, axis=axis)


def max(x, axis=None):  # noqa: A001 - the keras.ops name
    return tf.reduce_max(x, axis=axis)


def min(x, axis=None):  # noqa: A001
    return tf.reduce_min(x, axis=axis)


def moveaxis(x, source, destination):
    return tf.experimental.numpy.moveaxis(x, source, destination)


def one_hot(indices, num_classes):
    return tf.one_hot(indices, num_classes)


def qr_upper(x):
    """``R`` ``[..., m, m]`` of the reduced QR decomposition of ``x`` ``[..., n, m]`` (n >= m)."""
    return tf.linalg.qr(x, full_matrices=False)[1]


def reshape(x, shape):
    return tf.reshape(x, shape)


def split_last_axis(x, shape):
    """``x`` ``[..., prod(shape)]`` reshaped to ``[..., *shape]``."""
    return tf.reshape(x, tf.concat([tf.shape(x)[:-1], shape], 0))


def split(x, indices_or_sections, axis=0):
    """NumPy's (and ``keras.ops``') ``split``: equal sections, or the indices to cut at."""
    if isinstance(indices_or_sections, int):
        return tf.split(x, indices_or_sections, axis=axis)
    cuts = [0, *indices_or_sections, x.shape[axis]]
    return tf.split(x, [end - start for start, end in zip(cuts[:-1], cuts[1:])], axis=axis)


def stack(xs, axis=0):
    return tf.stack(xs, axis=axis)


def sum(x, axis=None):  # noqa: A001
    return tf.reduce_sum(x, axis=axis)


def swapaxes(x, axis1, axis2):
    return tf.experimental.numpy.swapaxes(x, axis1, axis2)


def take(x, indices, axis=None):
    return tf.gather(x, np.asarray(indices, np.int32), axis=axis)


def where(condition, x, y):
    return tf.where(condition, x, y)


def solve_lower_triangular(tril, rhs):
    """``z`` ``[..., D]`` with ``tril @ z = rhs``; batch axes broadcast."""
    batch = tf.broadcast_dynamic_shape(tf.shape(tril)[:-2], tf.shape(rhs)[:-1])
    tril = tf.broadcast_to(tril, tf.concat([batch, tf.shape(tril)[-2:]], 0))
    rhs = tf.broadcast_to(rhs, tf.concat([batch, tf.shape(rhs)[-1:]], 0))
    return tf.linalg.triangular_solve(tril, rhs[..., tf.newaxis], lower=True)[..., 0]


def to_tensor(x, dtype=None):
    """A TensorFlow tensor from a TF, NumPy, JAX or PyTorch array (copied to host)."""
    if not tf.is_tensor(x):
        if hasattr(x, "detach"):  # a PyTorch tensor, possibly on a GPU
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
    x = tf.convert_to_tensor(x)
    return x if dtype is None else tf.cast(x, dtype)


def check_finite(tensor, message, eager_error=ValueError):
    """Returns ``tensor``, raising ``message`` if any entry is NaN or infinite.

    Eagerly it raises ``eager_error``; in a graph it adds an assertion that raises
    ``tf.errors.InvalidArgumentError`` when run. XLA drops such assertions, so inside
    ``jit_compile=True`` functions the check does nothing.
    """
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(tf.math.is_finite(tensor))):
            if eager_error is tf.errors.InvalidArgumentError:
                raise eager_error(None, None, message)
            raise eager_error(message)
        return tensor
    return tf.debugging.assert_all_finite(tensor, message)
