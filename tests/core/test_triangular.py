"""The Givens QR behind the missing-target whitening, against numpy's Cholesky factor."""

import numpy as np
import pytest
import tensorflow as tf

from mdn_layers.analysis import tf_ops
from mdn_layers.core import triangular


def _givens_factor_of(matrix, structural_zero):
    """Dense ``F`` of :func:`triangular.givens_factor` for ``matrix`` ``[B, n, m]``, the
    entries where ``structural_zero`` ``[n, m]`` holds passed as None."""
    rows = [[None if structural_zero[i, j] else tf.constant(matrix[:, i, j])
             for j in range(matrix.shape[2])] for i in range(matrix.shape[1])]
    factor = triangular.givens_factor(tf_ops, rows, matrix.shape[2])
    return triangular.dense_slabs(tf_ops, factor).numpy()


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
        gram = np.swapaxes(matrix, -1, -2) @ matrix
    factor = _givens_factor_of(matrix, structural_zero)
    np.testing.assert_allclose(factor, np.linalg.cholesky(gram), rtol=1e-9, atol=1e-12)


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
    gram = np.swapaxes(matrix, -1, -2) @ matrix
    factor = _givens_factor_of(matrix, structural_zero)
    np.testing.assert_allclose(factor, np.linalg.cholesky(gram), rtol=1e-9, atol=1e-12)
