"""Gaussian-mixture maths shared by the training and the analysis path.

Imports neither keras nor tensorflow: every function takes an array namespace ``ops``
first (:mod:`mdn_layers._keras_ops` inside ``model.fit`` on any backend,
:mod:`mdn_layers._tf_ops` for TFP distributions). A mixture is three tensors, as
:func:`mdn_layers.layout.split_params` returns them:

* ``log_weights`` ``[..., K]`` normalised log weights;
* ``loc`` ``[..., K, D]`` component means;
* ``scale`` ``[..., K, D, D]`` lower-triangular Cholesky factors with a positive diagonal,
  dense or as a :class:`mdn_layers.layout.PackedTril` (``diagonal=False``), or ``[..., K, D]``
  standard deviations (``diagonal=True``).
"""

import math
from typing import NamedTuple

import numpy as np

from mdn_layers.layout import PackedTril, dense_tril

# Up to this event size, triangular solves are unrolled into elementwise forward
# substitution: a few dozen fused elementwise ops beat a batched solve kernel (and its
# gradient) for the small matrices of MDN heads.
UNROLL_MAX_EVENT_SIZE = 8
_HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def constant(ops, value, like):
    """``value`` (numpy) as a tensor of ``ops`` with the dtype of tensor ``like``."""
    return ops.cast(np.asarray(value), like.dtype)


def dense(ops, scale):
    """A Cholesky factor as a ``[..., D, D]`` matrix (dense input passes through)."""
    if isinstance(scale, PackedTril):
        return dense_tril(ops, scale)
    return dense_slabs(ops, scale) if isinstance(scale, TrilSlabs) else scale


class TrilSlabs(NamedTuple):
    """Lower-triangular matrices ``[..., D, D]`` as separate ``[...]`` tensors, one per entry.

    ``rows[i][j]`` is entry ``(i, j)``, ``j <= i``. Small factorisations and solves run as
    unrolled elementwise maths on these slabs, which fuses into a few loops, where batched
    kernels of ``D x D`` matrices spend their time on per-matrix overhead.
    """
    rows: tuple

    @property
    def event_size(self):
        return len(self.rows)

    def entry(self, i, j):
        """``[...]`` the entry ``(i, j)``, ``i >= j``."""
        return self.rows[i][j]

    def block(self, start, stop):
        """The diagonal block ``[start:stop, start:stop]`` (itself lower-triangular)."""
        return TrilSlabs(tuple(tuple(row[start:]) for row in self.rows[start:stop]))


def tril_slabs(ops, matrix):
    """:class:`TrilSlabs` of the lower triangle of ``matrix`` ``[..., D, D]`` (one transpose)."""
    moved = ops.moveaxis(matrix, (-2, -1), (0, 1))
    size = matrix.shape[-1]
    return TrilSlabs(tuple(tuple(moved[i, j] for j in range(i + 1)) for i in range(size)))


def dense_slabs(ops, slabs):
    """``[..., D, D]`` matrix of :class:`TrilSlabs` (zeros above the diagonal)."""
    zero = ops.zeros_like(slabs.entry(0, 0))
    size = slabs.event_size
    return ops.stack([ops.stack([row[j] if j < len(row) else zero for j in range(size)], -1)
                      for row in slabs.rows], axis=-2)


def _rotation(ops, a, b):
    """``(c, s, r)`` of the Givens rotation taking ``(a, b)`` to ``(r, 0)``, ``r = |(a, b)| >= 0``.

    Scaled by ``max(|a|, |b|)`` so squares cannot overflow; ``a = b = 0`` gives the identity.
    """
    big = ops.maximum(ops.abs(a), ops.abs(b))
    nonzero = big > 0
    one = ops.ones_like(big)
    safe = ops.where(nonzero, big, one)
    # Every branch stays finite with a finite gradient (where passes zero cotangents to
    # the unselected branch, and 0 * inf would still be NaN).
    r = safe * ops.sqrt(ops.where(nonzero, ops.square(a / safe) + ops.square(b / safe), one))
    return (ops.where(nonzero, a / r, one), ops.where(nonzero, b / r, ops.zeros_like(b)),
            ops.where(nonzero, r, big))


def _givens_factor(ops, rows, num_columns):
    """:class:`TrilSlabs` ``F`` with ``F F^T = M^T M`` for a tall matrix ``M`` given by ``rows``.

    ``rows[i][j]`` is entry ``(i, j)`` of ``M`` (``n x m``, ``n >= m = num_columns``), a
    ``[...]`` tensor or None for a structural zero. Givens rotations triangularise ``M = Q R``
    column by column (backward stable: ``M^T M`` is never formed, so the condition number is
    not squared; Golub & Van Loan, Matrix Computations, 5.2.5) and ``F = R^T`` with the
    signs of ``R``'s rows made positive. Structural zeros are skipped, so only the rotations
    a matrix needs are built.
    """
    rows = [list(row) for row in rows]
    rotated = set()  # pivots set by a rotation: r >= 0, no sign to fix
    for j in range(num_columns):
        for i in range(j + 1, len(rows)):
            b = rows[i][j]
            if b is None:
                continue
            if rows[j][j] is None:  # nothing to rotate against: swap the rows
                rows[j], rows[i] = rows[i], rows[j]
                continue
            rotated.add(j)
            c, s, r = _rotation(ops, rows[j][j], b)
            for k in range(j + 1, num_columns):
                p, q = rows[j][k], rows[i][k]
                if p is None and q is None:
                    continue
                rows[j][k] = _sum_of(c * p if p is not None else None,
                                     s * q if q is not None else None)
                rows[i][k] = _sum_of(c * q if q is not None else None,
                                     -s * p if p is not None else None)
            rows[j][j], rows[i][j] = r, None
    zero = ops.zeros_like(next(entry for row in rows for entry in row if entry is not None))
    one = ops.ones_like(zero)
    signs, factor = {}, []
    for i in range(num_columns):
        factor.append([])
        for j in range(i + 1):
            entry = rows[j][i] if rows[j][i] is not None else zero
            if j not in rotated and rows[j][j] is not None:  # an original entry: any sign
                entry = entry * signs.setdefault(j, ops.where(rows[j][j] < 0, -one, one))
            factor[i].append(entry)
    return TrilSlabs(tuple(tuple(row) for row in factor))


def _sum_of(first, second):
    """``first + second`` where None is a structural zero."""
    if first is None:
        return second
    return first if second is None else first + second


def gram_factor(ops, matrix):
    """``[..., m, m]`` lower-triangular ``F`` with ``F F^T = M^T M`` for tall ``M`` ``[..., n, m]``
    (batched reduced QR, ``F = R^T`` with a non-negative diagonal)."""
    upper = ops.qr_upper(matrix)
    diagonal = ops.matrix_diagonal(upper)
    signs = ops.where(diagonal < 0, -ops.ones_like(diagonal), ops.ones_like(diagonal))
    return ops.swapaxes(upper, -1, -2) * ops.expand_dims(signs, -2)


def permuted_cholesky(ops, tril, order, unrolled=True):
    """Cholesky factor of the covariance of dims ``order`` (in that order) of ``tril tril^T``.

    ``tril`` ``[..., D, D]`` dense lower-triangular; ``order`` distinct dims (a permutation
    of ``range(D)`` or fewer: the factor of a marginal). The factor is ``R^T`` of the QR
    decomposition of ``(P tril)^T``, ``P`` the selected rows: the covariance is never formed,
    so a factor with a thin direction keeps its precision (the error grows with the
    condition number of the factor, not with its square). Small ``D`` returns
    :class:`TrilSlabs` (Givens rotations on per-entry slabs), larger ``D`` (or
    ``unrolled=False``) a dense matrix from the batched QR kernel.
    """
    if not unrolled or tril.shape[-1] is None or tril.shape[-1] > UNROLL_MAX_EVENT_SIZE:
        rows = ops.take(tril, np.asarray(order), axis=-2)
        return gram_factor(ops, ops.swapaxes(rows, -1, -2))
    factor = tril_slabs(ops, tril)
    # M = (P tril)^T: M[i][j] = tril[order[j], i], structurally zero for i > order[j].
    rows = [[factor.entry(order[j], i) if i <= order[j] else None for j in range(len(order))]
            for i in range(factor.event_size)]
    return _givens_factor(ops, rows, len(order))


def solve_lower(ops, tril, rhs):
    """Solves ``tril @ z = rhs``: ``tril`` ``[..., D, D]`` lower-triangular (dense,
    :class:`PackedTril` or :class:`TrilSlabs`), ``z`` ``[..., D]``.

    Small ``D`` runs as unrolled forward substitution,
    ``z_i = (rhs_i - sum_{j<i} L_ij z_j) / L_ii`` (batch axes broadcast); larger ``D`` as
    the namespace's batched triangular solve.
    """
    by_entry = isinstance(tril, (PackedTril, TrilSlabs))
    event_size = tril.event_size if by_entry else tril.shape[-1]
    if isinstance(tril, TrilSlabs) or (
            event_size is not None and event_size <= UNROLL_MAX_EVENT_SIZE):
        entry = tril.entry if by_entry else (lambda i, j: tril[..., i, j])
        z = []
        for i in range(event_size):
            total = rhs[..., i]
            for j in range(i):
                total = total - entry(i, j) * z[j]
            z.append(total / entry(i, i))
        return ops.stack(z, axis=-1) if z else rhs
    return ops.solve_lower_triangular(dense(ops, tril), rhs)


def tril_diagonal(ops, tril):
    """``[..., D]`` diagonal of a Cholesky factor (dense, packed or slabs)."""
    if isinstance(tril, PackedTril):
        return tril.diagonal
    if isinstance(tril, TrilSlabs):
        return ops.stack([tril.entry(i, i) for i in range(tril.event_size)], axis=-1)
    return ops.matrix_diagonal(tril)


def gaussian_log_density(ops, z, log_det, num_dims):
    """``log N``: ``-|z|^2 / 2 - log|L| - num_dims log(2 pi) / 2`` for whitened ``z`` ``[..., D]``.

    ``log_det`` is ``log|L|`` of the scale factor; ``num_dims`` (int or tensor) the number
    of dims the density is over.
    """
    return -0.5 * ops.sum(ops.square(z), axis=-1) - log_det - num_dims * _HALF_LOG_TWO_PI


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

    ``F`` comes from a QR decomposition of ``A^T`` (:func:`_givens_factor`), never from the
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
        factor = _givens_factor(ops, rows, size)
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


# --- One-dimensional marginals: CDF, quantiles, CRPS ---------------------------------

def marginal_stddev(ops, scale, diagonal):
    """``[..., K, D]`` standard deviation of each dim under each component."""
    return scale if diagonal else ops.sqrt(ops.sum(ops.square(dense(ops, scale)), axis=-1))


def marginal_cdf(ops, log_weights, loc, stddev, values):
    """``[..., D]`` mixture CDF of each dim at ``values`` ``[..., D]``."""
    z = (ops.expand_dims(values, -2) - loc) / stddev
    normal_cdf = 0.5 * ops.erfc(-z / math.sqrt(2.0))
    return ops.sum(ops.expand_dims(ops.exp(log_weights), -1) * normal_cdf, axis=-2)


def marginal_quantiles(ops, log_weights, loc, stddev, probs, num_iterations):
    """``[Q, ..., D]`` per-dim quantiles at ``probs`` (numpy ``[Q]`` in (0, 1)) by bisection.

    The bracket spans 12 standard deviations beyond the extreme component means; each
    step halves it, so 80 steps reach float64 resolution.
    """
    probs = np.asarray(probs, np.float64)
    target = constant(ops, probs.reshape((-1,) + (1,) * (len(loc.shape) - 1)), loc)
    low = ops.min(loc - 12.0 * stddev, axis=-2)
    high = ops.max(loc + 12.0 * stddev, axis=-2)
    low, high = low + 0.0 * target, high + 0.0 * target  # [Q, ..., D]

    def bisect(_, bounds):
        low, high = bounds
        middle = 0.5 * (low + high)
        below = marginal_cdf(ops, log_weights, loc, stddev, middle) < target
        return ops.where(below, middle, low), ops.where(below, high, middle)

    low, high = ops.fori_loop(0, num_iterations, bisect, (low, high))
    return 0.5 * (low + high)


def _expected_abs_normal(ops, mean, variance):
    """E|X| for X ~ N(mean, variance): ``2 s phi(m/s) + m (2 Phi(m/s) - 1)``."""
    stddev = ops.sqrt(variance)
    z = mean / stddev
    phi = ops.exp(-0.5 * ops.square(z)) / math.sqrt(2 * math.pi)
    return 2 * stddev * phi + mean * ops.erf(z / math.sqrt(2.0))


def marginal_crps(ops, log_weights, loc, stddev, values):
    """``[..., D]`` closed-form CRPS of each dim's marginal at ``values`` ``[..., D]``.

    For weights ``w``, means ``m`` and variances ``s2`` of one dim (Grimit et al., 2006):
    ``CRPS = sum_k w_k A(y - m_k, s2_k) - 1/2 sum_jk w_j w_k A(m_j - m_k, s2_j + s2_k)``
    with ``A(mu, s2) = E|X|`` for ``X ~ N(mu, s2)``.
    """
    weights = ops.expand_dims(ops.exp(log_weights), -1)  # [..., K, 1]
    variance = ops.square(stddev)
    to_value = ops.sum(
        weights * _expected_abs_normal(ops, ops.expand_dims(values, -2) - loc, variance),
        axis=-2)
    pair_mean = ops.expand_dims(loc, -2) - ops.expand_dims(loc, -3)  # [..., K, K, D]
    pair_variance = ops.expand_dims(variance, -2) + ops.expand_dims(variance, -3)
    pair_weights = ops.expand_dims(weights, -2) * ops.expand_dims(weights, -3)
    spread = ops.sum(pair_weights * _expected_abs_normal(ops, pair_mean, pair_variance),
                     axis=(-3, -2))
    return to_value - 0.5 * spread


def _norm(ops, x):
    """Euclidean norm over the last axis, with a finite gradient at 0."""
    return ops.sqrt(ops.sum(ops.square(x), axis=-1) + 1e-30)


def energy_score(ops, first, second, values, observed=None):
    """``[...]`` Monte Carlo energy score ``E||X - y|| - 1/2 E||X - X'||`` (Gneiting & Raftery,
    2007, eq. 22) from two independent sets of draws ``first``, ``second`` ``[S, ..., D]``
    (sample axis first) at ``values`` ``[..., D]``; with ``observed`` ``[..., D]`` (1.0 where
    present) the norms run over the observed dims only."""
    if observed is not None:
        first, second, values = first * observed, second * observed, values * observed
    to_value = ops.sum(_norm(ops, first - values), axis=0)
    spread = ops.sum(_norm(ops, first - second), axis=0)
    return (to_value - 0.5 * spread) / first.shape[0]


# --- Sampling --------------------------------------------------------------------------

def draw(ops, log_weights, loc, scale, diagonal, uniform, noise, temperature,
         sigma_temperature):
    """Draws ``[N, S, D]`` from ``N`` mixtures (``log_weights`` ``[N, K]``, ``loc`` ``[N, K, D]``).

    ``uniform`` ``[N, S, K]`` in ``(0, 1)`` picks the components by Gumbel-max,
    ``argmax(log_weights / temperature + Gumbel)`` ~ ``Categorical(logits / temperature)``
    (``temperature == 0``: the most probable component); ``noise`` ``[N, S, D]`` standard
    normal draws are scaled by the component's factor times ``sqrt(sigma_temperature)``
    (``sigma_temperature == 0``: the component mean).
    """
    num_components, event_size = loc.shape[-2], loc.shape[-1]
    if temperature == 0.0:
        scores = ops.expand_dims(log_weights, -2) + 0.0 * uniform
    else:
        scores = ops.expand_dims(log_weights, -2) / temperature - ops.log(-ops.log(uniform))
    chosen = ops.cast(ops.one_hot(ops.argmax(scores, axis=-1), num_components), loc.dtype)
    draws = ops.matmul(chosen, loc)  # one-hot selection: [N, S, K] @ [N, K, D]
    if sigma_temperature == 0.0:
        return draws
    noise = noise * math.sqrt(sigma_temperature)
    if diagonal:
        return draws + ops.matmul(chosen, scale) * noise
    flat_scale = ops.reshape(dense(ops, scale), (-1, num_components, event_size * event_size))
    chosen_scale = ops.reshape(ops.matmul(chosen, flat_scale),
                               (-1, uniform.shape[1], event_size, event_size))
    return draws + ops.sum(chosen_scale * ops.expand_dims(noise, -2), axis=-1)
