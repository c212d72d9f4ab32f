"""Tensors <-> TFP mixtures: mixture_from_params, and reading any Gaussian mixture TFP can
express (mixture_parts, log_prob, the checks on values)."""
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import random_mixture, scipy_mixture_logpdf, tfp_mixture
from scipy import special, stats

import mdn_layers
from mdn_layers import scores, summaries
from mdn_layers.analysis import mixtures, tf_ops
from mdn_layers.core import layout, triangular
from mdn_layers.training import keras_ops

WEIGHTS, MEANS, SCALES = [0.2, 0.3, 0.5], [10.0, 20.0, 30.0], [1.0, 2.0, 3.0]

tfd = tfp.distributions


@pytest.mark.parametrize("ops", [tf_ops, keras_ops], ids=["tf", "keras"])
@pytest.mark.parametrize("event_size", [1, 3, 8, 9, 12])
def test_solve_lower_matches_numpy_on_both_paths(rng, event_size, ops):
    tril = np.tril(rng.normal(size=(4, 1, event_size, event_size)))
    tril[..., np.arange(event_size), np.arange(event_size)] = rng.uniform(0.5, 2, (4, 1,
                                                                                   event_size))
    rhs = rng.normal(size=(4, 5, event_size))  # batch axes broadcast: [4, 1] with [4, 5]
    expected = np.linalg.solve(np.broadcast_to(tril, (4, 5, event_size, event_size)),
                               rhs[..., None])[..., 0]
    if ops is keras_ops:  # the training path solves equal batch shapes
        tril = np.broadcast_to(tril, (4, 5, event_size, event_size))
    z = triangular.solve_lower(ops, ops.cast(tril, "float64"), ops.cast(rhs, "float64"))
    np.testing.assert_allclose(np.asarray(z), expected, rtol=1e-9, atol=1e-12)


def _spd(rng, batch, size):
    factor = rng.normal(size=batch + (size, size))
    return factor @ np.swapaxes(factor, -1, -2) + 0.5 * np.eye(size)


def tfp_layer_mixture(rng, num_components=3, event_size=2, batch=4):
    params = rng.normal(size=(batch, tfp.layers.MixtureSameFamily.params_size(
        num_components, tfp.layers.MultivariateNormalTriL.params_size(event_size))))
    layer = tfp.layers.MixtureSameFamily(num_components,
                                         tfp.layers.MultivariateNormalTriL(event_size))
    return layer(params.astype("float32")), params.astype("float32")


@pytest.mark.parametrize("ops", [tf_ops, keras_ops], ids=["tf", "keras"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 2), (6, 6), (17, 9)])
def test_gram_factor_is_the_cholesky_factor_of_the_gram_matrix(rng, shape, ops):
    matrix = rng.normal(size=(3, 4) + shape)
    factor = triangular.gram_factor(ops, ops.cast(matrix, "float64"))
    expected = np.linalg.cholesky(np.swapaxes(matrix, -1, -2) @ matrix)
    np.testing.assert_allclose(np.asarray(factor), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("unrolled", [True, False], ids=["givens", "batched-qr"])
@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [4, 2, 0, 1, 3], [3, 1], [2]])
@pytest.mark.parametrize("event_size", [5, 10])
def test_permuted_cholesky_is_the_factor_of_the_reordered_covariance(rng, order, event_size,
                                                                     unrolled):
    order = order + list(range(5, event_size)) if len(order) == 5 else order
    covariance = _spd(rng, (2, 3), event_size)
    factor = triangular.permuted_cholesky(tf_ops, tf.constant(np.linalg.cholesky(covariance)),
                                        order, unrolled)
    expected = np.linalg.cholesky(covariance[..., order, :][..., :, order])
    np.testing.assert_allclose(np.asarray(triangular.dense(tf_ops, factor)), expected,
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("unrolled", [True, False], ids=["givens", "batched-qr"])
def test_permuted_factor_of_a_thin_component_keeps_float32_precision(unrolled):
    """L = [[1, 0], [2, 1e-4]]: re-forming S = L L^T in float32 rounds 4 + 1e-8 to 4 and the
    factor of the swapped covariance to 0; the QR route keeps L'_11 = 1e-4 / sqrt(5)."""
    tril = tf.constant([[[1.0, 0.0], [2.0, 1e-4]]], tf.float32)
    factor = np.asarray(triangular.dense(
        tf_ops, triangular.permuted_cholesky(tf_ops, tril, [1, 0], unrolled)), np.float64)
    exact = np.linalg.cholesky(np.array([[4 + 1e-8, 2.0], [2.0, 1.0]]))
    np.testing.assert_allclose(factor[0], exact, rtol=1e-4)


@pytest.mark.parametrize("event_size", [2, 10])
def test_log_prob_matches_scipy(rng, event_size):
    weights, means, covs = random_mixture(rng, 3, event_size)
    parts = mixtures.mixture_parts(tfp_mixture(weights, means, covs))
    y = rng.normal(0, 2, (7, event_size))
    np.testing.assert_allclose(mixtures.log_prob(parts, y, allow_missing=False),
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
        parts = mixtures.mixture_parts(dist)
        assert parts.single and parts.log_weights.shape == (2, 1)
        np.testing.assert_allclose(parts.covariance()[:, 0], np.broadcast_to(expected,
                                                                              (2, 3, 3)),
                                   rtol=1e-10, atol=1e-12)
        assert np.all(np.linalg.diagonal(parts.scale_tril().numpy()) >= 0)
        rebuilt = mixtures.build_distribution(parts)
        y = rng.normal(size=(2, 3))
        np.testing.assert_allclose(rebuilt.log_prob(y), dist.log_prob(y), rtol=1e-10)


def test_mixture_parts_rejects_other_distributions():
    with pytest.raises(TypeError, match="MixtureSameFamily of multivariate normals"):
        mixtures.mixture_parts(tfd.Gamma(1.0, 1.0))
    with pytest.raises(TypeError, match="Categorical"):
        mixtures.mixture_parts(tfd.MixtureSameFamily(tfd.Categorical(logits=[0.0, 0.0]),
                                                       tfd.Categorical(logits=[[0.0]] * 2)))


def test_log_weights_are_normalised_from_probs_or_logits():
    mixture = tfd.MixtureSameFamily(tfd.Categorical(probs=tf.constant([0.2, 0.8])),
                                    tfd.MultivariateNormalDiag(tf.zeros([2, 1]),
                                                               tf.ones([2, 1])))
    np.testing.assert_allclose(np.exp(mixtures.mixture_parts(mixture).log_weights),
                               [0.2, 0.8], rtol=1e-6)


@pytest.mark.parametrize("rows", [5, 12])                # 5 chunks of the 23 rows, or 2
@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_many_host_rows_are_split_in_chunks_with_the_same_result(rng, covariance, rows,
                                                                 monkeypatch):
    import mdn_layers
    size = mdn_layers.params_size(3, 2, covariance)
    params = rng.normal(size=(23, 4, size)).astype("float32")  # [N, T, P]: chunks along N
    whole = mixtures.params_to_parts(params, 3, 2, covariance)
    monkeypatch.setattr(layout, "CHUNK_BYTES", rows * 4 * size * 4)  # rows of [4, P] float32
    chunked = mixtures.params_to_parts(params, 3, 2, covariance)
    for field in ("log_weights", "loc", "scale"):
        np.testing.assert_allclose(getattr(chunked, field), getattr(whole, field), rtol=1e-6,
                                   atol=1e-7)
    assert chunked.diagonal == whole.diagonal


@pytest.mark.slow
def test_tfp_layer_outputs_are_accepted_everywhere(rng):
    mixture, params = tfp_layer_mixture(rng)
    ours = mdn_layers.mixture_from_params(params, 2, 3)
    y = rng.normal(size=(4, 2)).astype("float32")
    given = mdn_layers.condition(mixture, [0], y[:, :1])
    np.testing.assert_allclose(given.log_prob(y[:, 1:]),
                               mdn_layers.condition(ours, [0], y[:, :1]).log_prob(y[:, 1:]),
                               rtol=1e-5)
    np.testing.assert_allclose(mdn_layers.marginalize(mixture, [1]).log_prob(y[:, 1:]),
                               mdn_layers.marginalize(ours, [1]).log_prob(y[:, 1:]), rtol=1e-5)
    assert mdn_layers.sample(mixture, 3, seed=0).shape == (3, 4, 2)
    np.testing.assert_allclose(mdn_layers.mode(mixture), mdn_layers.mode(ours), rtol=1e-4)
    np.testing.assert_allclose(summaries.mean(mixture), mixture.mean(), rtol=1e-5)
    normal_mixture = tfp.layers.MixtureNormal(3, event_shape=[2])(
        rng.normal(size=(4, tfp.layers.MixtureNormal.params_size(3, [2]))).astype("float32"))
    np.testing.assert_allclose(summaries.mean(normal_mixture), normal_mixture.mean(), rtol=1e-5)


@pytest.mark.parametrize("build", ["same_family", "mixture"])
def test_scalar_event_normal_mixtures(build):
    if build == "same_family":
        dist = tfd.MixtureSameFamily(tfd.Categorical(probs=WEIGHTS),
                                     tfd.Normal(MEANS, SCALES))
    else:
        dist = tfd.Mixture(tfd.Categorical(probs=WEIGHTS),
                           [tfd.Normal(m, s) for m, s in zip(MEANS, SCALES)])
    assert float(summaries.mean(dist)) == pytest.approx(23.0)
    draws = mdn_layers.sample(dist, 20000, seed=1)
    assert draws.shape == (20000,)
    assert float(np.mean(draws)) == pytest.approx(23.0, abs=0.1)
    cold = mdn_layers.sample(dist, 2000, temperature=0.0, seed=1)
    assert float(np.mean(cold)) == pytest.approx(30.0, abs=0.2)

    def cdf(y):
        return sum(w * stats.norm(m, s).cdf(y) for w, m, s in zip(WEIGHTS, MEANS, SCALES))

    median = float(mdn_layers.quantile(dist, 0.5))
    assert cdf(median) == pytest.approx(0.5, abs=1e-6)
    lower, upper = mdn_layers.central_interval(dist, 0.9)
    assert lower.shape == () and cdf(float(upper)) - cdf(float(lower)) == pytest.approx(0.9)
    assert float(scores.pit(dist, 25.0)) == pytest.approx(cdf(25.0), abs=1e-6)
    assert scores.crps(dist, [25.0, 11.0]).shape == (2,)
    grid = np.linspace(0, 40, 400001)
    density = sum(w * stats.norm(m, s).pdf(grid) for w, m, s in zip(WEIGHTS, MEANS, SCALES))
    assert float(mdn_layers.mode(dist)) == pytest.approx(grid[np.argmax(density)], abs=1e-3)
    with pytest.raises(ValueError, match="D >= 2"):
        mdn_layers.condition(dist, [0], [1.0])


def test_wrong_width_values_raise_instead_of_broadcasting(rng):
    mixture = mdn_layers.mixture_from_params(rng.normal(size=(5, 18)).astype("float32"), 2, 3)
    for width in (1, 3):
        y = np.zeros((5, width), "float32")
        for function in (scores.crps, scores.pit, scores.nll, summaries.cdf,
                         mdn_layers.responsibilities, scores.energy_score, scores.coverage,
                         mdn_layers.most_probable_component):
            with pytest.raises(ValueError, match=re.escape(
                    f"`values` must have a last axis of size 2 (the event size); received "
                    f"shape (5, {width}).") + "$"):
                function(mixture, y)
    for metric in (mdn_layers.metrics.CRPS(2, 3), mdn_layers.metrics.EnergyScore(2, 3)):
        with pytest.raises(ValueError, match="y_true last axis has size 1"):
            metric.update_state(np.zeros((5, 1), "float32"), np.zeros((5, 18), "float32"))


@pytest.mark.parametrize("call,name", [
    (lambda m: mdn_layers.mixture_from_params(np.zeros(18), 2, 3, diag_shift=-0.693),
     "diag_shift"),
    (lambda m: mdn_layers.mixture_from_params(np.zeros(18), 2, 3, diag_shift=np.nan),
     "diag_shift"),
    (lambda m: mdn_layers.quantile(m, 0.5, num_iterations=None), "num_iterations"),
    (lambda m: mdn_layers.quantile(m, 0.5, num_iterations=0), "num_iterations"),
    (lambda m: mdn_layers.mode(m, tolerance=None), "tolerance"),
    (lambda m: mdn_layers.central_interval(m, level="0.9"), "level"),
    (lambda m: mdn_layers.rescale(m, 0.0, 0.0), "scale"),
    (lambda m: mdn_layers.sample(m, None), "sample_shape"),
    (lambda m: mdn_layers.sample(m, 2.5), "sample_shape"),
    (lambda m: mdn_layers.mixture_from_params(1.0, 2, 3), "params"),
])
def test_unvalidated_arguments_now_raise(call, name):
    mixture = mdn_layers.mixture_from_params(np.zeros((2, 18), "float32"), 2, 3)
    with pytest.raises(ValueError, match=name):
        call(mixture)


def test_non_distributions_get_a_type_error():
    with pytest.raises(TypeError, match="Gaussian mixture"):
        mdn_layers.condition(np.zeros(3), [0], [1.0])


def test_log_prob_of_draws_with_a_sample_axis_matches_tfp(rng):
    """Values ``[S, N, D]`` against a batch of ``N`` mixtures: the components' axis is the
    last of the joint ``[S, N, K]``, not its second."""
    from conftest import random_mixture, tfp_mixture

    from mdn_layers.analysis import mixtures
    weights, means, covs = random_mixture(rng, 3, 2, batch=(4,))
    dist = tfp_mixture(weights, means, covs)
    values = rng.normal(size=(5, 4, 2))
    found = mixtures.log_prob(mixtures.mixture_parts(dist), values, allow_missing=False)
    np.testing.assert_allclose(found.numpy(), dist.log_prob(values).numpy(), rtol=1e-10)


def test_weights_that_alone_carry_the_batch_broadcast_like_tfp(rng):
    """TFP broadcasts a mixture's weights against its components: weights ``[3, 2]`` over
    two shared components have batch shape ``[3]``. Every reader sees that batch: the
    density, mean and covariance match TFP's own, samples have its shape."""
    probs = rng.dirichlet(np.ones(2), size=3)
    means = rng.normal(size=(2, 2))
    trils = np.tril(rng.normal(size=(2, 2, 2)), -1) * 0.5 + np.eye(2)
    dist = tfd.MixtureSameFamily(tfd.Categorical(probs=probs),
                                 tfd.MultivariateNormalTriL(means, trils))
    parts = mixtures.mixture_parts(dist)
    assert parts.log_weights.shape == (3, 2) and parts.loc.shape == (3, 2, 2)
    y = rng.normal(size=(3, 2))
    expected = [special.logsumexp(np.log(probs[row]) + [
        stats.multivariate_normal(means[k], trils[k] @ trils[k].T).logpdf(y[row])
        for k in range(2)]) for row in range(3)]
    np.testing.assert_allclose(-scores.nll(dist, y), expected, rtol=1e-10)
    np.testing.assert_allclose(summaries.mean(dist), probs @ means, rtol=1e-10)
    np.testing.assert_allclose(summaries.covariance(dist), dist.covariance(), rtol=1e-10)
    assert mdn_layers.sample(dist, 5, seed=1).shape == (5, 3, 2)


def test_params_width_integer_params_and_diag_shift_against_closed_forms():
    import mdn_layers
    with pytest.raises(ValueError, match=re.escape(
            "params last axis has size 5, but event_size=2, num_components=3, "
            "covariance='full' need params_size=18.") + "$"):
        mdn_layers.mixture_from_params(np.zeros((2, 5), "float32"), 2, 3)
    with pytest.raises(ValueError, match=re.escape(
            "`diag_shift` must be a finite float >= 0; received -1.0.") + "$"):
        mdn_layers.mixture_from_params(np.zeros((2, 18), "float32"), 2, 3, diag_shift=-1.0)
    # Integer params are read as float32: zeros are equal weights, means 0, scales
    # softplus(0) + diag_shift.
    mixture = mdn_layers.mixture_from_params(np.zeros((4, 10), int), 2, 2, "diag")
    assert mixture.dtype == tf.float32 and mixture.batch_shape == (4,)
    np.testing.assert_allclose(mixture.components_distribution.stddev().numpy(),
                               np.log(2.0) + 1e-5, rtol=1e-6)
    # Raw scale entries far below zero: every standard deviation is the diag_shift.
    params = np.full((3, 10), -60.0, "float32")
    for shift in (0.0, 0.25):
        mixture = mdn_layers.mixture_from_params(params, 2, 2, "diag", diag_shift=shift)
        np.testing.assert_allclose(mixture.components_distribution.stddev().numpy(),
                                   max(shift, np.exp(-60.0)), rtol=1e-5)


def test_a_batch_of_single_diagonal_normals_keeps_its_rows():
    import mdn_layers
    loc, sd = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]), np.array([[1.0, 2.0]] * 3)
    single = tfd.MultivariateNormalDiag(loc, sd * np.array([[1.0], [2.0], [3.0]]))
    kept = mdn_layers.marginalize(single, [1])
    assert kept.batch_shape == (3,)
    np.testing.assert_allclose(kept.mean().numpy()[:, 0], [1.0, 3.0, 5.0])
    np.testing.assert_allclose(kept.stddev().numpy()[:, 0], [2.0, 4.0, 6.0])
