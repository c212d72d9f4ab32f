"""Lower-triangular (Cholesky) factors: their packed forms, factorisation and solves.

The one home of the triangular maths both paths share. Imports neither keras nor tensorflow:
every function takes an array namespace ``ops`` first. A factor ``[..., D, D]`` (lower
triangular, positive diagonal) comes in three forms, each where measurements justify it:

* dense: a ``[..., D, D]`` tensor (what TFP holds; large ``D``);
* :class:`PackedTril`: as the params layout stores it, every entry also split into its own
  tensor (the training loss reads these: a split's gradient is one concatenation);
* :class:`TrilSlabs`: separate per-entry tensors built by factorisations here (unrolled
  elementwise maths on slabs fuses into a few loops for the small ``D`` of MDN heads).

:func:`dense` turns any of them into the matrix.
"""

import functools
from typing import NamedTuple

import numpy as np

# Up to this event size, triangular solves are unrolled into elementwise forward
# substitution: a few dozen fused elementwise ops beat a batched solve kernel (and its
# gradient) for the small matrices of MDN heads.
UNROLL_MAX_EVENT_SIZE = 8


@functools.lru_cache(maxsize=None)
def tril_fill_indices(event_size):
    """``[D, D]`` map from the ``D(D+1)/2`` tril entries (index ``D(D+1)/2`` = zero) to a matrix.

    Cached: the unrolled solve reads it once per entry on every (eager) step.

    Reproduces ``tfp.math.fill_triangular(x, upper=False)``: the matrix is
    ``concat([x[D:], reverse(x)])`` reshaped to ``[D, D]``, upper triangle zeroed.
    """
    size = event_size * (event_size + 1) // 2
    order = np.concatenate([np.arange(event_size, size), np.arange(size)[::-1]])
    order = order.reshape(event_size, event_size)
    fill = np.where(np.tril(np.ones_like(order)) > 0, order, size)
    fill.flags.writeable = False  # cached and shared: read-only
    return fill


@functools.lru_cache(maxsize=None)
def tril_positions(event_size):
    """:func:`tril_fill_indices` as nested tuples of Python ints (``[i][j]``, ``j <= i``),
    for code that ``torch.compile`` traces (it cannot iterate over numpy arrays)."""
    fill = tril_fill_indices(event_size)
    return tuple(tuple(int(fill[i, j]) for j in range(i + 1)) for i in range(event_size))


class PackedTril(NamedTuple):
    """Lower-triangular Cholesky factors ``[..., D, D]`` kept as the layout stores them.

    ``L_ii = diagonal[..., i]`` (positive) and ``L_ij = entries[..., fill[i, j]]`` below the
    diagonal (``fill`` = :func:`tril_fill_indices`; the diagonal positions of ``entries``
    hold the raw, unmapped values). ``pieces`` holds every entry ``L_ij = pieces[fill[i, j]]``
    (diagonal ones mapped) as a separate ``[...]`` tensor, split from ``entries``: the
    training loss reads those, because the gradient of a split is one concatenation, where
    the gradients of per-entry slices are as many full-size pads (at D=8, K=16 that made a
    JAX loss step 1.5x faster). :func:`dense_tril` gives the matrix.
    """
    diagonal: object
    entries: object
    pieces: tuple

    @property
    def event_size(self):
        return self.diagonal.shape[-1]

    def entry(self, i, j):
        """``[...]`` the factor's entry ``(i, j)``, ``i >= j``."""
        return self.pieces[tril_positions(self.event_size)[i][j]]


@functools.lru_cache(maxsize=None)
def dense_positions(event_size):
    """``[D, D]`` positions in ``concat([entries, diagonal, 0])`` (length ``S + D + 1``, ``S =
    D(D+1)/2``) that fill a Cholesky factor from its packed entries and mapped diagonal."""
    size = event_size * (event_size + 1) // 2
    fill = tril_fill_indices(event_size)
    rows, columns = np.indices((event_size, event_size))
    positions = np.where(rows > columns, fill,
                         np.where(rows == columns, size + rows, size + event_size))
    positions.flags.writeable = False
    return positions


def dense_tril(ops, packed):
    """``[..., D, D]`` matrix of a :class:`PackedTril` (one gather)."""
    maps_dense = dense_positions(packed.event_size)
    stacked = ops.concatenate([packed.entries, packed.diagonal,
                               ops.zeros_like(packed.diagonal[..., :1])], axis=-1)
    return ops.take(stacked, maps_dense, axis=-1)


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


def givens_factor(ops, rows, num_columns):
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
    return givens_factor(ops, rows, len(order))


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
