"""The Givens QR behind the missing-target whitening, against numpy's Cholesky factor."""

import numpy as np
import pytest
import tensorflow as tf

from mdn_layers.analysis import tf_ops
from mdn_layers.core import triangular


def _assert_givens_factor_is_the_gram_cholesky(matrix, structural_zero):
    """:func:`triangular.givens_factor` of ``matrix`` ``[B, n, m]`` (the entries where
    ``structural_zero`` ``[n, m]`` holds passed as None) equals numpy's Cholesky factor of
    ``M^T M``."""
    rows = [[None if structural_zero[i, j] else tf.constant(matrix[:, i, j])
             for j in range(matrix.shape[2])] for i in range(matrix.shape[1])]
    factor = triangular.dense_slabs(
        tf_ops, triangular.givens_factor(tf_ops, rows, matrix.shape[2])).numpy()
    gram = np.swapaxes(matrix, -1, -2) @ matrix
    np.testing.assert_allclose(factor, np.linalg.cholesky(gram), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_givens_factor_is_the_cholesky_factor_of_the_gram_matrix(seed):
    """``F F^T = M^T M`` with a positive diagonal, so ``F`` is the one Cholesky factor: random
    tall matrices with random structural zeros (pivots missing, rows to swap, columns empty
    in the pivot row but not below)."""
    rng = np.random.default_rng(seed)
    num_columns = int(rng.integers(1, 5))
    num_rows = num_columns + int(rng.integers(0, 3))
    structural_zero = rng.random((num_rows, num_columns)) < 0.45
    matrix = rng.normal(size=(3, num_rows, num_columns)) * ~structural_zero
    gram = np.swapaxes(matrix, -1, -2) @ matrix
    if np.linalg.matrix_rank(gram[0]) < num_columns:
        structural_zero[-num_columns:] &= ~np.eye(num_columns, dtype=bool)
        matrix = rng.normal(size=(3, num_rows, num_columns)) * ~structural_zero
    _assert_givens_factor_is_the_gram_cholesky(matrix, structural_zero)


@pytest.mark.parametrize("structural_zero", [
    # the first pivot missing, two rows below it to rotate in
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]],
    # the pivot row empty beyond its pivot, the row below not
    [[0, 1, 1], [0, 0, 0], [1, 0, 0]],
    # a column empty in both rows of a rotation, the next one not
    [[0, 1, 0], [0, 1, 0], [1, 0, 0]],
])
def test_givens_factor_handles_each_structural_zero_pattern(structural_zero):
    structural_zero = np.asarray(structural_zero, bool)
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(2,) + structural_zero.shape) * ~structural_zero
    _assert_givens_factor_is_the_gram_cholesky(matrix, structural_zero)


def _random_tril(rng, batch, size, thin=1.0):
    """``[*batch, D, D]`` lower-triangular factors with positive diagonal; ``thin`` scales the
    last diagonal entry (an ill-conditioned direction)."""
    tril = np.tril(rng.normal(size=batch + (size, size)))
    diagonal = np.abs(rng.normal(size=batch + (size,))) + 0.5
    diagonal[..., -1] *= thin
    index = np.arange(size)
    tril[..., index, index] = diagonal
    return tril


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 5), (7, 2)])
def test_gram_factor_is_the_cholesky_factor_of_the_gram_matrix(shape):
    matrix = np.random.default_rng(1).normal(size=(3,) + shape)
    factor = triangular.gram_factor(tf_ops, tf.constant(matrix)).numpy()
    np.testing.assert_allclose(factor, np.linalg.cholesky(np.swapaxes(matrix, -1, -2) @ matrix),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("size,order", [(3, [2, 0, 1]), (3, [1]), (4, [3, 1]),
                                        (10, [9, 0, 4, 2]), (10, list(range(10))[::-1])])
@pytest.mark.parametrize("unrolled", [True, False])
def test_permuted_cholesky_factors_the_selected_covariance(size, order, unrolled):
    tril = _random_tril(np.random.default_rng(size), (2, 3), size)
    covariance = tril @ np.swapaxes(tril, -1, -2)
    factor = triangular.permuted_cholesky(tf_ops, tf.constant(tril), order, unrolled=unrolled)
    dense = triangular.dense(tf_ops, factor).numpy()
    expected = np.linalg.cholesky(covariance[..., order, :][..., :, order])
    np.testing.assert_allclose(dense, expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("unrolled", [True, False])
def test_permuted_cholesky_keeps_a_thin_direction_in_float32(unrolled):
    """Condition number of the factor 1e4 (of the covariance 1e8, beyond float32): the float32
    factor of the reversed order is within a few float32 steps of the float64 one, measured
    against the factor's own size."""
    tril = _random_tril(np.random.default_rng(5), (4,), 3, thin=1e-4)
    order = [2, 1, 0]
    expected = np.linalg.cholesky((tril @ np.swapaxes(tril, -1, -2))[..., order, :][..., order])
    factor = triangular.permuted_cholesky(tf_ops, tf.constant(tril, tf.float32), order,
                                          unrolled=unrolled)
    dense = triangular.dense(tf_ops, factor).numpy()
    assert dense.dtype == np.float32
    scale = np.abs(expected).max(axis=(-1, -2), keepdims=True)
    assert np.max(np.abs(dense - expected) / scale) < 1e-5


def _tril_forms(tril):
    """The three forms of one dense factor ``[..., D, D]``: dense, slabs and packed."""
    size = tril.shape[-1]
    slabs = triangular.tril_slabs(tf_ops, tf.constant(tril))
    fill = triangular.tril_fill_indices(size)
    entries = np.zeros(tril.shape[:-2] + (size * (size + 1) // 2,))
    for i in range(size):
        for j in range(i + 1):
            entries[..., fill[i, j]] = tril[..., i, j]
    index = np.arange(size)
    packed = triangular.PackedTril(
        tf.constant(tril[..., index, index]), tf.constant(entries),
        tuple(tf.constant(entries[..., p]) for p in range(entries.shape[-1])))
    return {"dense": tf.constant(tril), "slabs": slabs, "packed": packed}


@pytest.mark.parametrize("size", [1, 3, 10])
@pytest.mark.parametrize("form", ["dense", "slabs", "packed"])
def test_solve_lower_diagonal_and_dense_agree_with_numpy(size, form):
    rng = np.random.default_rng(size)
    tril = _random_tril(rng, (2, 3), size)
    factor = _tril_forms(tril)[form]
    rhs = rng.normal(size=(2, 3, size))
    solved = triangular.solve_lower(tf_ops, factor, tf.constant(rhs)).numpy()
    np.testing.assert_allclose(solved, np.linalg.solve(tril, rhs[..., None])[..., 0],
                               rtol=1e-9, atol=1e-12)
    index = np.arange(size)
    np.testing.assert_allclose(triangular.tril_diagonal(tf_ops, factor),
                               tril[..., index, index], rtol=0)
    np.testing.assert_allclose(triangular.dense(tf_ops, factor), tril, rtol=0)


def test_solve_lower_broadcasts_the_factor_over_leading_axes():
    rng = np.random.default_rng(3)
    tril = _random_tril(rng, (3,), 2)
    rhs = rng.normal(size=(5, 3, 2))   # a sample axis in front of the factor's batch
    for factor in _tril_forms(tril).values():
        solved = triangular.solve_lower(tf_ops, factor, tf.constant(rhs)).numpy()
        np.testing.assert_allclose(solved, np.linalg.solve(tril, rhs[..., None])[..., 0],
                                   rtol=1e-9)


@pytest.mark.parametrize("start,stop", [(0, 2), (1, 4), (2, 3), (0, 4)])
def test_slab_blocks_are_the_diagonal_blocks(start, stop):
    tril = _random_tril(np.random.default_rng(2), (3,), 4)
    block = triangular.tril_slabs(tf_ops, tf.constant(tril)).block(start, stop)
    assert block.event_size == stop - start
    np.testing.assert_array_equal(triangular.dense(tf_ops, block),
                                  tril[..., start:stop, start:stop])


def test_constant_takes_the_dtype_of_its_model_tensor():
    value = triangular.constant(tf_ops, np.array([1, 2]), tf.zeros(3, tf.float16))
    assert value.dtype == tf.float16
    np.testing.assert_array_equal(value, [1.0, 2.0])


def test_givens_factor_of_a_zero_column_is_finite_with_finite_gradients():
    """A rotation of two exact zeros is the identity: no 0/0 in values or gradients."""
    matrix = np.random.default_rng(4).normal(size=(2, 3, 2))
    matrix[0, :, 0] = 0.0                      # one batch row's first column is all zeros
    entries = [[tf.constant(matrix[:, i, j]) for j in range(2)] for i in range(3)]
    with tf.GradientTape() as tape:
        tape.watch([entry for row in entries for entry in row])
        factor = triangular.dense_slabs(tf_ops, triangular.givens_factor(tf_ops, entries, 2))
        total = tf.reduce_sum(factor)
    gradients = tape.gradient(total, [entry for row in entries for entry in row])
    factor = factor.numpy()
    assert np.all(np.isfinite(factor))
    assert all(np.all(np.isfinite(gradient)) for gradient in gradients)
    np.testing.assert_allclose(factor @ np.swapaxes(factor, -1, -2),
                               np.swapaxes(matrix, -1, -2) @ matrix, atol=1e-12)
