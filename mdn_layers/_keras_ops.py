"""The array namespace of the training path: ``keras.ops``, on whichever backend Keras runs.

:mod:`mdn_layers.layout` and :mod:`mdn_layers.gaussian` call these names; this module and
:mod:`mdn_layers._tf_ops` give them the same meaning.
"""

from keras import ops as _ops
from keras.ops import (argmax, cast, cholesky, concatenate, erf, exp, expand_dims,  # noqa: F401
                       fori_loop, isnan, log, log_softmax, logical_not, logsumexp, matmul,
                       max, min, one_hot, reshape, softplus, sqrt, square, stack, sum,
                       swapaxes, take, where, zeros_like)


def erfc(x):
    """``1 - erf(x)`` (``keras.ops`` has no ``erfc``; absolute precision is what metrics need)."""
    return 1.0 - erf(x)


def matrix_diagonal(x):
    """``[..., D]`` diagonal of ``[..., D, D]``."""
    return _ops.diagonal(x, axis1=-2, axis2=-1)


def solve_lower_triangular(tril, rhs):
    """``z`` ``[..., D]`` with ``tril @ z = rhs`` (same batch shape)."""
    return _ops.solve_triangular(tril, expand_dims(rhs, -1), lower=True)[..., 0]


def split_last_axis(x, shape):
    """``x`` ``[..., prod(shape)]`` reshaped to ``[..., *shape]``."""
    return reshape(x, tuple(_ops.shape(x)[:-1]) + tuple(shape))
