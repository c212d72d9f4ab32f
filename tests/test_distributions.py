import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import random_mixture, scipy_mixture_logpdf, tfp_mixture

from mdn_layers import _keras_ops, _tf_ops, distributions, gaussian, layout

tfd = tfp.distributions


@pytest.mark.parametrize("ops", [_tf_ops, _keras_ops], ids=["tf", "keras"])
@pytest.mark.parametrize("event_size", [1, 3, 8, 9, 12])
def test_solve_lower_matches_numpy_on_both_paths(rng, event_size, ops):
    tril = np.tril(rng.normal(size=(4, 1, event_size, event_size)))
    tril[..., np.arange(event_size), np.arange(event_size)] = rng.uniform(0.5, 2, (4, 1,
                                                                                   event_size))
    rhs = rng.normal(size=(4, 5, event_size))  # batch axes broadcast: [4, 1] with [4, 5]
    expected = np.linalg.solve(np.broadcast_to(tril, (4, 5, event_size, event_size)),
                               rhs[..., None])[..., 0]
    if ops is _keras_ops:  # the training path solves equal batch shapes
        tril = np.broadcast_to(tril, (4, 5, event_size, event_size))
    z = gaussian.solve_lower(ops, ops.cast(tril, "float64"), ops.cast(rhs, "float64"))
    np.testing.assert_allclose(np.asarray(z), expected, rtol=1e-9, atol=1e-12)


def _spd(rng, batch, size):
    factor = rng.normal(size=batch + (size, size))
    return factor @ np.swapaxes(factor, -1, -2) + 0.5 * np.eye(size)


@pytest.mark.parametrize("ops", [_tf_ops, _keras_ops], ids=["tf", "keras"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 2), (6, 6), (17, 9)])
def test_gram_factor_is_the_cholesky_factor_of_the_gram_matrix(rng, shape, ops):
    matrix = rng.normal(size=(3, 4) + shape)
    factor = gaussian.gram_factor(ops, ops.cast(matrix, "float64"))
    expected = np.linalg.cholesky(np.swapaxes(matrix, -1, -2) @ matrix)
    np.testing.assert_allclose(np.asarray(factor), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("unrolled", [True, False], ids=["givens", "batched-qr"])
@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [4, 2, 0, 1, 3], [3, 1], [2]])
@pytest.mark.parametrize("event_size", [5, 10])
def test_permuted_cholesky_is_the_factor_of_the_reordered_covariance(rng, order, event_size,
                                                                     unrolled):
    order = order + list(range(5, event_size)) if len(order) == 5 else order
    covariance = _spd(rng, (2, 3), event_size)
    factor = gaussian.permuted_cholesky(_tf_ops, tf.constant(np.linalg.cholesky(covariance)),
                                        order, unrolled)
    expected = np.linalg.cholesky(covariance[..., order, :][..., :, order])
    np.testing.assert_allclose(np.asarray(gaussian.dense(_tf_ops, factor)), expected,
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("unrolled", [True, False], ids=["givens", "batched-qr"])
def test_permuted_factor_of_a_thin_component_keeps_float32_precision(unrolled):
    """L = [[1, 0], [2, 1e-4]]: re-forming S = L L^T in float32 rounds 4 + 1e-8 to 4 and the
    factor of the swapped covariance to 0; the QR route keeps L'_11 = 1e-4 / sqrt(5)."""
    tril = tf.constant([[[1.0, 0.0], [2.0, 1e-4]]], tf.float32)
    factor = np.asarray(gaussian.dense(
        _tf_ops, gaussian.permuted_cholesky(_tf_ops, tril, [1, 0], unrolled)), np.float64)
    exact = np.linalg.cholesky(np.array([[4 + 1e-8, 2.0], [2.0, 1.0]]))
    np.testing.assert_allclose(factor[0], exact, rtol=1e-4)


@pytest.mark.parametrize("event_size", [2, 10])
def test_log_prob_matches_scipy(rng, event_size):
    weights, means, covs = random_mixture(rng, 3, event_size)
    parts = distributions.mixture_parts(tfp_mixture(weights, means, covs))
    y = rng.normal(0, 2, (7, event_size))
    np.testing.assert_allclose(distributions.log_prob(parts, y),
                               scipy_mixture_logpdf(y, weights, means, covs), rtol=1e-9)


def test_mixture_parts_reads_every_normal_kind(rng):
    loc = rng.normal(size=(2, 3))
    cov = np.array([[1.0, 0.3, 0.0], [0.3, 2.0, 0.1], [0.0, 0.1, 0.5]])
    sds = np.array([0.5, 1.0, 2.0])
    cases = [
        (tfd.MultivariateNormalTriL(loc, np.linalg.cholesky(cov)), cov),
        (tfd.MultivariateNormalTriL(loc, -np.linalg.cholesky(cov)), cov),
        (tfd.MultivariateNormalFullCovariance(loc, cov), cov),
        (tfd.MultivariateNormalDiag(loc, sds), np.diag(sds**2)),
        (tfd.MultivariateNormalDiag(loc, -sds), np.diag(sds**2)),
        (tfd.Independent(tfd.Normal(loc, sds), 1), np.diag(sds**2)),
    ]
    for dist, expected in cases:
        parts = distributions.mixture_parts(dist)
        assert parts.single and parts.log_weights.shape == (2, 1)
        np.testing.assert_allclose(parts.covariance()[:, 0], np.broadcast_to(expected,
                                                                              (2, 3, 3)),
                                   rtol=1e-10, atol=1e-12)
        assert np.all(np.linalg.diagonal(parts.scale_tril().numpy()) >= 0)
        rebuilt = distributions.build_distribution(parts)
        y = rng.normal(size=(2, 3))
        np.testing.assert_allclose(rebuilt.log_prob(y), dist.log_prob(y), rtol=1e-10)


def test_mixture_parts_rejects_other_distributions():
    with pytest.raises(TypeError, match="MixtureSameFamily of multivariate normals"):
        distributions.mixture_parts(tfd.Gamma(1.0, 1.0))
    with pytest.raises(TypeError, match="Categorical"):
        distributions.mixture_parts(tfd.MixtureSameFamily(tfd.Categorical(logits=[0.0, 0.0]),
                                                       tfd.Categorical(logits=[[0.0]] * 2)))


def test_log_weights_are_normalised_from_probs_or_logits():
    mixture = tfd.MixtureSameFamily(tfd.Categorical(probs=tf.constant([0.2, 0.8])),
                                    tfd.MultivariateNormalDiag(tf.zeros([2, 1]),
                                                               tf.ones([2, 1])))
    np.testing.assert_allclose(np.exp(distributions.mixture_parts(mixture).log_weights),
                               [0.2, 0.8], rtol=1e-6)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_many_host_rows_are_split_in_chunks_with_the_same_result(rng, covariance, monkeypatch):
    import mdn_layers
    size = mdn_layers.params_size(3, 2, covariance)
    params = rng.normal(size=(23, 4, size)).astype("float32")  # [N, T, P]: chunks along N
    whole = distributions.params_to_parts(params, 3, 2, covariance)
    monkeypatch.setattr(layout, "CHUNK_BYTES", 5 * 4 * size * 4)  # 5 rows of [4, P] float32
    chunked = distributions.params_to_parts(params, 3, 2, covariance)
    for field in ("log_weights", "loc", "scale"):
        np.testing.assert_allclose(getattr(chunked, field), getattr(whole, field), rtol=1e-6,
                                   atol=1e-7)
    assert chunked.diagonal == whole.diagonal
