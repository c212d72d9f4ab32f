"""The array namespace of the training path: ``keras.ops``, on whichever backend Keras runs.

:mod:`mdn_layers.core.layout` and :mod:`mdn_layers.gaussian` call these names; this module and
:mod:`mdn_layers.analysis.tf_ops` give them the same meaning.
"""

from keras import ops as _ops
from keras.backend import backend as _backend
from keras.ops import (  # noqa: F401,A004
    abs,
    argmax,
    cast,
    concatenate,
    erf,
    exp,
    expand_dims,
    expm1,
    fori_loop,
    isnan,
    log,
    log_softmax,
    logical_not,
    logsumexp,
    matmul,
    max,
    maximum,
    min,
    moveaxis,
    one_hot,
    ones_like,
    reshape,
    split,
    sqrt,
    square,
    stack,
    sum,
    swapaxes,
    take,
    where,
    zeros_like,
)


def erfc(x):
    """``1 - erf(x)`` (``keras.ops`` has no ``erfc``; absolute precision is what metrics need)."""
    return 1.0 - erf(x)


def _log1p_exp(x):
    """``log(1 + exp(x))`` as ``log1p(exp(x))`` up to 30 and ``x`` beyond (where the two agree
    to float64 precision); its gradient is ``sigmoid(x)`` everywhere."""
    large = x > 30.0
    # where, not minimum: a minimum's gradient splits in two at x == 30.
    return where(large, x, _ops.log1p(exp(where(large, zeros_like(x), x))))


# JAX's softplus is a logaddexp whose gradient costs about twice as much under XLA on CPU,
# and the mixture loss maps every scale entry through it; TensorFlow and PyTorch have
# fused softplus kernels, which beat four elementwise ops (PyTorch runs eagerly).
softplus = _log1p_exp if _backend() == "jax" else _ops.softplus


def matrix_diagonal(x):
    """``[..., D]`` diagonal of ``[..., D, D]``."""
    return _ops.diagonal(x, axis1=-2, axis2=-1)


def qr_upper(x):
    """``R`` ``[..., m, m]`` of the reduced QR decomposition of ``x`` ``[..., n, m]`` (n >= m)."""
    return _ops.qr(x, mode="reduced")[1]


def solve_lower_triangular(tril, rhs):
    """``z`` ``[..., D]`` with ``tril @ z = rhs`` (same batch shape)."""
    return _ops.solve_triangular(tril, expand_dims(rhs, -1), lower=True)[..., 0]


def split_last_axis(x, shape):
    """``x`` ``[..., prod(shape)]`` reshaped to ``[..., *shape]``."""
    return reshape(x, tuple(_ops.shape(x)[:-1]) + tuple(shape))
