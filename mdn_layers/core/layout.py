"""The params layout: the one place that knows how a params vector maps to a mixture.

Shared maths: imports neither keras nor tensorflow. Functions that build tensors take an
array namespace ``ops`` first (:mod:`mdn_layers.training.keras_ops` on the training path,
:mod:`mdn_layers.analysis.tf_ops` on the analysis path).

For ``K`` components over ``D`` target dims a params vector is::

    [K logits | component 1 | component 2 | ... | component K]

and each component block is ``D`` means followed by its scale entries:

* ``"full"``: ``D(D+1)/2`` entries filled into a lower-triangular matrix in
  ``tfp.math.fill_triangular`` order, diagonal mapped by ``softplus(x) + diag_shift``
  (exactly ``tfp.bijectors.FillScaleTriL(diag_shift=diag_shift)``, and so exactly what
  ``tfp.layers.MixtureSameFamily(K, tfp.layers.MultivariateNormalTriL(D))`` uses);
* ``"diag"``: ``D`` entries, standard deviations ``softplus(x) + diag_shift``;
* ``"spherical"``: one entry, a standard deviation shared by all ``D`` dims.

Splitting is slices, one reshape and elementwise maps with static index maps, so it
compiles under XLA with a dynamic batch size (the gradients of ``FillScaleTriL``'s
``matrix_set_diag`` build dynamically shaped zeros, which XLA rejects) and runs unchanged
on every Keras backend.
"""

import functools
from typing import NamedTuple

import numpy as np

from mdn_layers.core import validation
from mdn_layers.core.triangular import (
    PackedTril,
    dense_positions,
    tril_fill_indices,
    tril_positions,
)

DEFAULT_DIAG_SHIFT = 1e-5


def scale_params_size(event_size, covariance):
    """Number of scale entries per component."""
    return {"full": event_size * (event_size + 1) // 2,
            "diag": event_size,
            "spherical": 1}[covariance]


def params_size(event_size: int, num_components: int, covariance: str = "full") -> int:
    """Width ``P`` of the params vector, as a Python int (arguments checked).

    >>> params_size(2, 3, "full")   # 3 logits + 3 * (2 means + 3 tril entries)
    18
    """
    return params_width(*validation.check_mixture_config(event_size, num_components,
                                                         covariance))


def params_width(event_size, num_components, covariance):
    """:func:`params_size` of a config its caller has checked."""
    return num_components * (1 + event_size + scale_params_size(event_size, covariance))


class IndexMaps(NamedTuple):
    """Static positions inside a params vector of width ``P`` and inside one component block.

    Attributes:
      loc: ``[K, D]`` positions of the means in the params vector.
      positive: ``[P]`` bool, the entries mapped by ``softplus(x) + diag_shift``.
      diagonal: ``[D]`` positions of the scale diagonal among a component's scale entries
        (spherical: ``D`` times its one entry).
      dense: full only: ``[D, D]`` positions in ``concat([entries, diagonal, 0])`` (length
        ``S + D + 1``) that fill the Cholesky factor.
      dim: ``[P]`` for an affine map of the targets, the target dim whose scale multiplies
        each entry (a mean's dim, a Cholesky row, a standard deviation's dim; spherical: dim
        0), ``D`` for entries it leaves alone (logits).
      is_loc: ``[P]`` bool, the component means (shifted as well as scaled).
      component: ``[P]`` the component an entry belongs to (``-1`` for logits).
    """
    loc: np.ndarray
    positive: np.ndarray
    diagonal: np.ndarray
    dense: np.ndarray
    dim: np.ndarray
    is_loc: np.ndarray
    component: np.ndarray


@functools.lru_cache(maxsize=None)
def index_maps(event_size, num_components, covariance):
    """:class:`IndexMaps` of a validated config (cached: built once per config)."""
    num_scale = scale_params_size(event_size, covariance)
    block = event_size + num_scale
    starts = num_components + block * np.arange(num_components)  # [K]
    loc = starts[:, None] + np.arange(event_size)[None, :]
    if covariance == "full":
        fill = tril_fill_indices(event_size)
        diagonal = np.diag(fill)
        dense = dense_positions(event_size)
    else:
        diagonal = np.arange(event_size) if covariance == "diag" else np.zeros(event_size, int)
        dense = None
    positive = np.zeros(params_width(event_size, num_components, covariance), bool)
    positive[(starts[:, None] + event_size + diagonal[None, :]).ravel()] = True
    if covariance == "full":
        rows = np.zeros(num_scale, int)
        for i in range(event_size):
            rows[fill[i, :i + 1]] = i
    else:
        rows = np.arange(num_scale)
    dim = np.concatenate([np.full(num_components, event_size),
                          np.tile(np.concatenate([np.arange(event_size), rows]),
                                  num_components)])
    is_loc = np.concatenate([np.zeros(num_components, bool),
                             np.tile(np.arange(block) < event_size, num_components)])
    component = np.concatenate([np.full(num_components, -1),
                                np.repeat(np.arange(num_components), block)])
    return IndexMaps(loc, positive, diagonal, dense, dim, is_loc, component)


def split_params(ops, params, event_size, num_components, covariance,
                 diag_shift=DEFAULT_DIAG_SHIFT):
    """Params ``[..., P]`` -> ``(log_weights [..., K], loc [..., K, D], scale)``.

    ``scale`` is a :class:`PackedTril` of ``[..., K]`` Cholesky factors for ``"full"``, else
    ``[..., K, D]`` standard deviations. ``params`` must be a float tensor of ``ops`` whose
    last axis has size ``params_size(...)`` (callers check). Slices and one reshape: no
    gather, so the gradient is cheap on every backend.
    """
    maps = index_maps(event_size, num_components, covariance)
    # Splits rather than slices throughout: a split's gradient is one concatenation.
    logits, rest = ops.split(params, [num_components], axis=-1)
    blocks = ops.split_last_axis(
        rest, (num_components, event_size + scale_params_size(event_size, covariance)))
    loc, entries = ops.split(blocks, [event_size], axis=-1)
    log_weights = ops.log_softmax(logits, axis=-1)
    if covariance == "full":
        pieces = [piece[..., 0] for piece in
                  ops.split(entries, scale_params_size(event_size, covariance), axis=-1)]
        positions = tril_positions(event_size)
        diagonal_positions = [positions[i][i] for i in range(event_size)]
        for position in diagonal_positions:
            pieces[position] = ops.softplus(pieces[position]) + diag_shift
        diagonal = ops.stack([pieces[position] for position in diagonal_positions], axis=-1)
        return log_weights, loc, PackedTril(diagonal, entries, tuple(pieces))
    diagonal = entries if covariance == "diag" else ops.take(entries, maps.diagonal, axis=-1)
    return log_weights, loc, ops.softplus(diagonal) + diag_shift


def _inverse_positive_scale(scale, diag_shift):
    """Raw entry that ``softplus(x) + diag_shift`` maps to ``scale`` (numpy)."""
    target = np.asarray(scale, dtype=np.float64) - diag_shift
    return target + np.log(-np.expm1(-target))


def initial_params(ops, event_size, num_components, covariance, locs, scale,
                   diag_shift=DEFAULT_DIAG_SHIFT):
    """A params vector ``[P]`` for equal weights, the given means and scale.

    Graph-safe (``locs`` may be a symbolic tensor), so layers can use it in an initializer.

    Args:
      locs: ``[K, D]`` component means, a float tensor of ``ops``; the result has its dtype.
      scale: positive float, every component's standard deviation per dim, or ``[K]`` of
        them, one per component (off-diagonal Cholesky entries are zero).
    """
    maps = index_maps(event_size, num_components, covariance)
    size = maps.positive.size
    per_component = np.broadcast_to(np.asarray(scale, np.float64), (num_components,))
    component = np.maximum(maps.component, 0)
    base = np.where(maps.positive,
                    _inverse_positive_scale(per_component[component], diag_shift), 0.0)
    # Position p takes locs[j] where maps.loc holds p at flat index j, else a zero.
    source = np.full(size, num_components * event_size)
    source[maps.loc.ravel()] = np.arange(num_components * event_size)
    flat_locs = ops.reshape(locs, (-1,))
    padded = ops.concatenate([flat_locs, ops.zeros_like(flat_locs[:1])], axis=0)
    return ops.take(padded, source, axis=0) + ops.cast(base, locs.dtype)


def rescale_params(ops, params, event_size, num_components, covariance, loc, scale,
                   floor=None, relative_floor=0.0):
    """Params ``[..., P]`` of the mixture of ``loc + scale * Y``, ``Y`` the mixture of ``params``.

    ``loc``, ``scale`` ``[D]`` tensors of ``ops`` (``scale`` positive; for ``"spherical"`` all
    entries equal). Means become ``loc + scale * mean``, Cholesky rows (off-diagonal
    entries) and standard deviations scale by ``scale``; a positive entry ``x`` (a standard
    deviation ``softplus(x) + diag_shift``) maps to ``softplus^-1(scale * (softplus(x) +
    relative_floor) + floor)``, so the new standard deviation is ``scale * (softplus(x) +
    relative_floor) + floor + diag_shift``: ``relative_floor`` (a float) is a floor in the
    old units that scales with the targets, ``floor`` (``[D]`` non-negative numbers in the
    new units, a numpy constant; spherical: its first entry) one in the new units, and the
    ``diag_shift`` of whoever reads the result stays a floor in the new units. Elementwise,
    so it compiles anywhere.
    """
    maps = index_maps(event_size, num_components, covariance)
    one = ops.cast(np.ones(1), params.dtype)
    scale = ops.cast(scale, params.dtype)
    multiplier = ops.take(ops.concatenate([scale, one], axis=0), maps.dim, axis=0)  # [P]
    shift = ops.take(ops.concatenate([ops.cast(loc, params.dtype), 0.0 * one], axis=0),
                     np.where(maps.is_loc, maps.dim, event_size), axis=0)
    linear = params * multiplier + shift
    extra = np.zeros(maps.positive.size)
    if floor is not None:
        floor = np.append(np.asarray(floor, np.float64), 0.0)
        extra = np.where(maps.positive, floor[np.minimum(maps.dim, event_size)], 0.0)
    relative = np.where(maps.positive, float(relative_floor), 0.0)
    # Far below zero softplus(x) = exp(x) to float64 precision; with no floor the map is then
    # x + log(scale), and the other branch never sees such x, so its gradient stays finite.
    far_below = params < -30.0
    unfloored = (extra == 0) & (relative == 0)
    shifted_log = far_below & ops.cast(unfloored, "bool")  # entries mapped to x + log(scale)
    safe = ops.where(far_below, ops.zeros_like(params), params)
    soft = ops.where(far_below, ops.exp(ops.where(far_below, params, ops.zeros_like(params))),
                     ops.softplus(safe))
    stretched = (multiplier * (soft + ops.cast(relative, params.dtype))
                 + ops.cast(extra, params.dtype))
    stretched = ops.where(shifted_log, ops.ones_like(stretched), stretched)
    inverse = stretched + ops.log(-ops.expm1(-stretched))
    positive = ops.where(shifted_log, params + ops.log(multiplier), inverse)
    return ops.where(ops.cast(maps.positive, "bool"), positive, linear)


# Rows of params are processed in chunks of about this many bytes (predicting, splitting),
# so the intermediates of a large batch never exist for every row at once.
CHUNK_BYTES = 2**25


def chunk_rows(num_params, multiple=1):
    """Rows per chunk of ``[rows, num_params]`` float32 params: about :data:`CHUNK_BYTES`,
    a positive multiple of ``multiple`` (a batch size)."""
    rows = CHUNK_BYTES // (4 * max(int(num_params), 1))
    return multiple * max(1, rows // multiple)
