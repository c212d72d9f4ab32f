"""float32 conditioning and missing-target densities on ill-conditioned components, against
float64 references (hypothesis over factors with condition numbers up to 1e10)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mdn_layers
from mdn_layers import layout

tfd = tfp.distributions
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _ill_conditioned_factor(seed, size, condition):
    """A Cholesky factor whose covariance has eigenvalues from 1 down to ``1 / condition``,
    in a random orientation (so thin directions mix every dim)."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(size, size)))
    covariance = (rotation * np.geomspace(1.0, 1.0 / condition, size)) @ rotation.T
    return np.linalg.cholesky(covariance), covariance, rng


def _mixture(tril, dtype):
    return tfd.MixtureSameFamily(
        tfd.Categorical(logits=tf.zeros([1, 1], dtype)),
        tfd.MultivariateNormalTriL(tf.zeros([1, 1, tril.shape[-1]], dtype),
                                   tf.constant(tril[None, None], dtype)))


def _conditional(mixture, observed, values, mode):
    def run(v):
        given = mdn_layers.condition(mixture, observed, v)
        return given.components_distribution.mean(), given.components_distribution.stddev()
    if mode != "eager":
        run = tf.function(run, jit_compile=mode == "xla")
    return [np.asarray(t, np.float64) for t in run(values)]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
@SETTINGS
@given(seed=st.integers(0, 2**31), size=st.integers(2, 10),
       log_condition=st.floats(2.0, 10.0))
def test_float32_conditioning_matches_float64(mode, seed, size, log_condition):
    tril, covariance, rng = _ill_conditioned_factor(seed, size, 10.0 ** log_condition)
    observed = sorted(rng.choice(size, rng.integers(1, size), replace=False).tolist(),
                      key=lambda _: rng.random())  # any positions, any order
    values = rng.multivariate_normal(np.zeros(size), covariance)[observed][None, None]
    mean64, std64 = _conditional(_mixture(tril, "float64"), observed,
                                 tf.constant(values, tf.float64), "eager")
    mean32, std32 = _conditional(_mixture(tril, "float32"), observed,
                                 tf.constant(values, tf.float32), mode)
    # Errors in units of the float64 conditional standard deviation.
    assert np.max(np.abs(mean32 - mean64) / std64) < 0.02
    assert np.max(np.abs(std32 - std64) / std64) < 0.02


def test_thin_correlated_component_conditions_on_either_dim():
    """L = [[1, 0], [2, 1e-4]]: y1 ~ 2 y0 with a thin direction; p(y0 | y1) has std 5e-5."""
    tril = np.array([[1.0, 0.0], [2.0, 1e-4]])
    for mode in ("eager", "graph", "xla"):
        _, std = _conditional(_mixture(tril, "float32"), [1], tf.constant([[[0.3]]]), mode)
        np.testing.assert_allclose(std.ravel(), [5e-5], rtol=1e-3)


def test_one_bad_row_never_aborts_a_batch_of_random_params(rng):
    params = rng.normal(size=(20_000, mdn_layers.params_size(4, 8))).astype("float32")
    params[123, 8 + 4 + 9] = -30.0  # a near-zero last Cholesky diagonal entry
    mixture = mdn_layers.mixture_from_params(params, 4, 8)
    given = mdn_layers.condition(mixture, [3, 1], rng.normal(size=(20_000, 2)).astype("float32"))
    assert np.all(np.isfinite(given.mixture_distribution.logits.numpy()))
    assert np.all(np.isfinite(given.components_distribution.mean().numpy()))


def test_singular_factor_error_names_the_row():
    tril = np.tile(np.eye(2), (3, 1, 1))
    tril[2] = [[1.0, 0.0], [1.0, 0.0]]  # row 2: y1 == y0 exactly
    mixture = tfd.MultivariateNormalTriL(tf.zeros([3, 2]), tf.constant(tril, tf.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"batch index \(2,\)"):
        mdn_layers.condition(mixture, [1], tf.zeros([3, 1]))


@pytest.mark.backend_neutral
@pytest.mark.parametrize("thin", [1e-3, 1e-4])
def test_missing_target_loss_on_thin_components_matches_float64(thin):
    """allow_missing on fully and partly observed targets of a thin correlated component, in
    float32, against the float64 marginal density from TFP."""
    size = 3
    tril = np.array([[1.0, 0.0, 0.0], [2.0, thin, 0.0], [-1.0, 0.3, 0.5]])
    covariance = tril @ tril.T
    fill = layout.tril_fill_indices(size)  # the documented fill_triangular order
    entries = np.zeros(size * (size + 1) // 2)
    for i, j in zip(*np.tril_indices(size)):
        value = tril[i, j]
        if i == j:  # the inverse of softplus(x) + 1e-5
            value = np.log(np.expm1(value - 1e-5))
        entries[fill[i, j]] = value
    params = np.concatenate([[0.0], np.zeros(size), entries])[None]
    # a typical draw (z ~ 1 in every direction), rounded to float32 for both computations
    y = (tril @ np.array([0.3, -0.5, 0.8]))[None].astype(np.float32).astype(np.float64)
    rows = [y[0], [y[0, 0], np.nan, y[0, 2]], [np.nan, y[0, 1], y[0, 2]]]
    loss = mdn_layers.MixtureNLL(size, 1, allow_missing=True)
    for row in rows:
        row = np.asarray(row)
        kept = np.flatnonzero(~np.isnan(row))
        marginal = tfd.MultivariateNormalTriL(
            np.zeros(len(kept)), np.linalg.cholesky(covariance[np.ix_(kept, kept)]))
        reference = -marginal.log_prob(row[kept]).numpy()
        ours = keras.ops.convert_to_numpy(loss.call(row[None].astype("float32"),
                                                    params.astype("float32")))
        np.testing.assert_allclose(ours[0], reference, rtol=0, atol=2e-3)
