"""Gaussian and Gaussian-mixture log densities, all dims observed or some missing.

Imports neither keras nor tensorflow: every function takes an array namespace ``ops`` first
(:mod:`mdn_layers.training.keras_ops` inside ``model.fit`` on any backend,
:mod:`mdn_layers.analysis.tf_ops` for TFP distributions). A mixture is three tensors, as
:func:`mdn_layers.core.layout.split_params` returns them:

* ``log_weights`` ``[..., K]`` normalised log weights;
* ``loc`` ``[..., K, D]`` component means;
* ``scale`` ``[..., K, D, D]`` lower-triangular Cholesky factors with a positive diagonal,
  dense or as a :class:`mdn_layers.core.triangular.PackedTril` (``diagonal=False``), or
  ``[..., K, D]`` standard deviations (``diagonal=True``).
"""

import math

import numpy as np

from mdn_layers.core.triangular import (
    UNROLL_MAX_EVENT_SIZE,
    PackedTril,
    constant,
    dense,
    givens_factor,
    gram_factor,
    solve_lower,
    tril_diagonal,
)

HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def gaussian_log_density(ops, z, log_det, num_dims):
    """``log N``: ``-|z|^2 / 2 - log|L| - num_dims log(2 pi) / 2`` for whitened ``z`` ``[..., D]``.

    ``log_det`` is ``log|L|`` of the scale factor; ``num_dims`` (int or tensor) the number
    of dims the density is over.
    """
    return -0.5 * ops.sum(ops.square(z), axis=-1) - log_det - num_dims * HALF_LOG_TWO_PI


def whiten(ops, scale, diagonal, residual):
    """``(z, log|L|)``: whitened residuals ``[..., K, D]`` and log-determinants ``[..., K]``."""
    if diagonal:
        return residual / scale, ops.sum(ops.log(scale), axis=-1)
    return (solve_lower(ops, scale, residual),
            ops.sum(ops.log(tril_diagonal(ops, scale)), axis=-1))


def component_log_prob(ops, loc, scale, diagonal, values):
    """``[..., K]`` log density of ``values`` ``[..., D]`` under each component (no weights)."""
    residual = ops.expand_dims(values, -2) - loc
    z, log_det = whiten(ops, scale, diagonal, residual)
    return gaussian_log_density(ops, z, log_det, loc.shape[-1])


def mixture_log_prob(ops, log_weights, loc, scale, diagonal, values):
    """``[...]`` log density of ``values`` ``[..., D]`` under the mixture (log space)."""
    return ops.logsumexp(
        log_weights + component_log_prob(ops, loc, scale, diagonal, values), axis=-1)


def _whiten_observed(ops, scale, mask, residual):
    """``(z, log|F|)`` for the factor ``F`` of the covariance with missing dims made
    independent and of unit variance: ``F F^T = A A^T``, ``A = [mask * L | diag(1 - mask)]``.

    ``F`` comes from a QR decomposition of ``A^T`` (:func:`givens_factor`), never from the
    covariance, which would square the condition number. ``scale`` the Cholesky factors
    ``L`` (dense or packed) ``[..., K, D, D]``, ``mask`` ``[..., 1, D]`` (1.0 observed, 0.0
    missing), ``residual`` ``[..., K, D]`` (0 at missing dims).
    """
    size = residual.shape[-1]
    if size is not None and size <= UNROLL_MAX_EVENT_SIZE:
        entry = scale.entry if isinstance(scale, PackedTril) else (
            lambda i, j: scale[..., i, j])
        observed = [mask[..., d] for d in range(size)]
        rows = ([[observed[e] * entry(e, d) if e >= d else None for e in range(size)]
                 for d in range(size)]
                + [[(1.0 - observed[d]) + 0.0 * entry(d, d) if e == d else None
                    for e in range(size)] for d in range(size)])
        factor = givens_factor(ops, rows, size)
    else:
        tril = dense(ops, scale)
        identity = constant(ops, np.eye(size), residual)
        stacked = ops.concatenate(
            [ops.swapaxes(tril * ops.expand_dims(mask, -1), -1, -2),
             identity * ops.expand_dims(1.0 - mask, -1) + 0.0 * tril], axis=-2)
        factor = gram_factor(ops, stacked)
    z = solve_lower(ops, factor, residual)
    return z, ops.sum(ops.log(tril_diagonal(ops, factor)), axis=-1)


def observed_log_prob(ops, log_weights, loc, scale, diagonal, targets):
    """``[...]`` log density of each target's observed (non-NaN) dims under the mixture.

    ``targets`` ``[..., D]``: NaN marks a missing entry. A row with no observed dim has
    log density 0.
    """
    observed = ops.expand_dims(ops.logical_not(ops.isnan(targets)), -2)  # [..., 1, D]
    zeros = ops.zeros_like(loc)
    residual = ops.where(observed, ops.expand_dims(targets, -2) - loc, zeros)
    mask = ops.cast(observed, loc.dtype)
    num_observed = ops.sum(mask, axis=-1)
    if diagonal:
        z = residual / scale
        log_det = ops.sum(ops.where(observed, ops.log(scale), zeros), axis=-1)
    else:
        # A missing dim is replaced by an independent unit-variance dim with zero
        # residual: the joint density then factorises into the observed marginal
        # times N(0 | 0, 1) per missing dim, and the latter's log(1) = 0 determinant
        # and zero residual drop out, leaving only its 2*pi constant (not counted).
        z, log_det = _whiten_observed(ops, scale, mask, residual)
    return ops.logsumexp(log_weights + gaussian_log_density(ops, z, log_det, num_observed),
                         axis=-1)
