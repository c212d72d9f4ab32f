"""condition, marginalize and rescale against closed forms, gmr, scipy and float64 references:
batches, dtypes, graphs and XLA, far-out and ill-conditioned values, every error."""
import re

import gmr
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import params_for, random_mixture, scipy_mixture_logpdf, tfp_mixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import special, stats

import mdn_layers

tfd = tfp.distributions


def numpy_condition(weights, means, covs, observed, values):
    """Textbook conditioning of one mixture (float64, solves, no Cholesky tricks)."""
    event_size = means.shape[-1]
    unobserved = [d for d in range(event_size) if d not in observed]
    o, u = np.array(observed), np.array(unobserved, dtype=int)
    log_w, locs, conds = [], [], []
    for w, m, c in zip(weights, means, covs):
        c_oo, c_uo, c_uu = c[np.ix_(o, o)], c[np.ix_(u, o)], c[np.ix_(u, u)]
        gain = np.linalg.solve(c_oo, c_uo.T).T
        log_w.append(np.log(w) + stats.multivariate_normal(m[o], c_oo).logpdf(values))
        locs.append(m[u] + gain @ (values - m[o]))
        conds.append(c_uu - gain @ c_uo.T)
    log_w = np.array(log_w)
    return np.exp(log_w - special.logsumexp(log_w)), np.array(locs), np.array(conds)


def weights_of(dist):
    return dist.mixture_distribution.probs_parameter().numpy()


def covariances_of(dist):
    return dist.components_distribution.covariance().numpy()


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


@pytest.mark.parametrize("observed", [[0], [2], [3, 1], [1, 0, 3]])
def test_condition_matches_numpy_reference(rng, observed):
    weights, means, covs = random_mixture(rng, 4, 4)
    values = rng.normal(0, 2, len(observed))
    result = mdn_layers.condition(tfp_mixture(weights, means, covs), observed, values)
    w, locs, conds = numpy_condition(weights, means, covs, observed, values)
    np.testing.assert_allclose(weights_of(result), w, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(result.components_distribution.mean(), locs, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(covariances_of(result), conds, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("unroll_from", [0, 10**9], ids=["unrolled", "kernels"])
@pytest.mark.parametrize("event_size,observed", [(6, [4, 0, 2]), (10, [7, 1, 3, 8])])
def test_condition_and_marginalize_batched_match_numpy(rng, event_size, observed,
                                                       unroll_from, monkeypatch):
    """A batch of mixtures, on the unrolled (D <= 8, many components or in a graph) and the
    batched-kernel path."""
    monkeypatch.setattr(mdn_layers.analysis.conditioning, "EAGER_UNROLL_MIN_COMPONENTS",
                        unroll_from)
    weights, means, covs = random_mixture(rng, 3, event_size, batch=(4,))
    values = rng.normal(0, 2, (4, len(observed)))
    result = mdn_layers.condition(tfp_mixture(weights, means, covs), observed, values)
    for row in range(4):
        w, locs, conds = numpy_condition(weights[row], means[row], covs[row], observed,
                                         values[row])
        np.testing.assert_allclose(weights_of(result)[row], w, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(result.components_distribution.mean()[row], locs,
                                   rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(covariances_of(result)[row], conds, rtol=1e-8, atol=1e-10)
    marginal = mdn_layers.marginalize(tfp_mixture(weights, means, covs), observed)
    np.testing.assert_allclose(covariances_of(marginal),
                               covs[..., observed, :][..., :, observed], rtol=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_condition_matches_gmr_one_observation_at_a_time(seed):
    rng = np.random.default_rng(seed)
    weights, means, covs = random_mixture(rng, 3, 5, batch=())
    observed = sorted(rng.choice(5, size=2, replace=False).tolist())
    values = rng.normal(0, 2, (6, 2))
    ours = mdn_layers.condition(tfp_mixture(weights, means, covs), observed, values)
    reference = gmr.GMM(3, priors=weights, means=means, covariances=covs)
    for row, value in enumerate(values):
        theirs = reference.condition(observed, value)
        np.testing.assert_allclose(weights_of(ours)[row], theirs.priors, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(ours.components_distribution.mean()[row], theirs.means,
                                   rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(covariances_of(ours)[row], theirs.covariances,
                                   rtol=1e-7, atol=1e-9)


def test_condition_on_every_dim_gives_tfp_posterior_responsibilities(rng):
    weights, means, covs = random_mixture(rng, 5, 3)
    mixture = tfp_mixture(weights, means, covs)
    y = rng.normal(0, 2, (8, 3))
    result = mdn_layers.condition(mixture, [0, 1, 2], y)
    assert result.event_shape == (0,) and result.batch_shape == (8,)
    np.testing.assert_allclose(weights_of(result),
                               mixture.posterior_marginal(y).probs_parameter(), rtol=1e-8)


def test_condition_on_no_dim_returns_the_distribution(rng):
    mixture = tfp_mixture(*random_mixture(rng, 2, 3))
    assert mdn_layers.condition(mixture, [], np.zeros([0])) is mixture


def test_tail_observations_give_correct_finite_weights(rng):
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[0.0, 0.0], [1.0, -1.0], [-2.0, 3.0]])
    covs = np.broadcast_to(np.array([[1.0, 0.3], [0.3, 1.0]]) * 1e-2, (3, 2, 2)).copy()
    values = np.array([500.0])  # thousands of standard deviations from every mean
    for dtype in ("float32", "float64"):
        result = mdn_layers.condition(tfp_mixture(weights, means, covs, dtype), [1], values)
        w, locs, _ = numpy_condition(weights, means, covs, [1], values)
        assert np.all(np.isfinite(weights_of(result)))
        np.testing.assert_allclose(weights_of(result), w, atol=1e-6)
        np.testing.assert_allclose(result.components_distribution.mean(), locs, rtol=1e-4)


def test_observed_order_does_not_matter(rng):
    mixture = tfp_mixture(*random_mixture(rng, 3, 4, batch=(5,)))
    values = rng.normal(size=(5, 4))
    a = mdn_layers.condition(mixture, [0, 2], values[:, [0, 2]])
    b = mdn_layers.condition(mixture, [2, 0], values[:, [2, 0]])
    y_u = rng.normal(size=(5, 2))
    np.testing.assert_allclose(a.log_prob(y_u), b.log_prob(y_u), rtol=1e-10)


def test_negative_indices_count_from_the_end(rng):
    mixture = tfp_mixture(*random_mixture(rng, 3, 4))
    values = rng.normal(size=(2,))
    a = mdn_layers.condition(mixture, [-1, 1], values)
    b = mdn_layers.condition(mixture, [3, 1], values)
    np.testing.assert_allclose(a.mean(), b.mean())
    np.testing.assert_allclose(mdn_layers.marginalize(mixture, [-1]).mean(),
                               mdn_layers.marginalize(mixture, [3]).mean())


def test_values_broadcast_against_batch_like_log_prob(rng):
    mixture = tfp_mixture(*random_mixture(rng, 3, 3, batch=(4,)))
    one_value = mdn_layers.condition(mixture, [1], np.array([0.5]))
    assert one_value.batch_shape == (4,)
    many = mdn_layers.condition(mixture, [1], rng.normal(size=(6, 1, 1)))
    assert many.batch_shape == (6, 4) and many.event_shape == (2,)


def test_batched_equals_per_example(rng):
    weights, means, covs = random_mixture(rng, 3, 4, batch=(6,))
    values = rng.normal(size=(6, 2))
    batched = mdn_layers.condition(tfp_mixture(weights, means, covs), [3, 0], values)
    y_u = rng.normal(size=(6, 2))
    for row in range(6):
        single = mdn_layers.condition(
            tfp_mixture(weights[row], means[row], covs[row]), [3, 0], values[row])
        np.testing.assert_allclose(batched.log_prob(y_u)[row], single.log_prob(y_u[row]),
                                   rtol=1e-10)


def test_float32_close_to_float64_reference(rng):
    weights, means, covs = random_mixture(rng, 4, 5)
    values = rng.normal(0, 2, 2)
    result = mdn_layers.condition(tfp_mixture(weights, means, covs, "float32"), [4, 1],
                                  values.astype("float32"))
    w, locs, conds = numpy_condition(weights, means, covs, [4, 1], values)
    assert result.dtype == tf.float32
    np.testing.assert_allclose(weights_of(result), w, atol=2e-5)
    np.testing.assert_allclose(result.components_distribution.mean(), locs, atol=1e-4)
    np.testing.assert_allclose(covariances_of(result), conds, atol=1e-4)


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), num_components=st.integers(1, 4),
       event_size=st.integers(2, 5), data=st.data())
def test_chain_rule(seed, num_components, event_size, data):
    """log p(y) = log p(y_O) + log p(y_U | y_O) for random mixtures and observed sets."""
    rng = np.random.default_rng(seed)
    mixture = tfp_mixture(*random_mixture(rng, num_components, event_size, batch=(3,)))
    observed = data.draw(st.lists(st.integers(0, event_size - 1), min_size=1,
                                  max_size=event_size - 1, unique=True))
    unobserved = [d for d in range(event_size) if d not in observed]
    y = rng.normal(0, 2, (3, event_size))
    joint = mixture.log_prob(y)
    marginal = mdn_layers.marginalize(mixture, observed).log_prob(y[:, observed])
    conditional = mdn_layers.condition(mixture, observed, y[:, observed]).log_prob(y[:, unobserved])
    np.testing.assert_allclose(marginal + conditional, joint, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kept", [[0], [2, 0], [1, 2, 3], [3, 0, 1]])
def test_marginalize_matches_scipy(rng, kept):
    weights, means, covs = random_mixture(rng, 3, 4)
    result = mdn_layers.marginalize(tfp_mixture(weights, means, covs), kept)
    y = rng.normal(0, 2, (10, len(kept)))
    expected = scipy_mixture_logpdf(y, weights, means[:, kept], covs[:, kept][:, :, kept])
    np.testing.assert_allclose(result.log_prob(y), expected, rtol=1e-9)


def test_diagonal_and_single_normal_inputs(rng):
    weights, means, _ = random_mixture(rng, 3, 3)
    sds = rng.uniform(0.3, 1.5, (3, 3))
    diag = tfd.MixtureSameFamily(tfd.Categorical(probs=weights),
                                 tfd.MultivariateNormalDiag(means, sds))
    full = tfp_mixture(weights, means, sds[..., None] ** 2 * np.eye(3))
    values = np.array([0.4])
    a, b = mdn_layers.condition(diag, [1], values), mdn_layers.condition(full, [1], values)
    assert isinstance(a.components_distribution, tfd.MultivariateNormalDiag)
    y = rng.normal(size=(4, 2))
    np.testing.assert_allclose(a.log_prob(y), b.log_prob(y), rtol=1e-10)
    normal = tfd.MultivariateNormalTriL(means[0], np.linalg.cholesky(np.diag(sds[0] ** 2)))
    conditioned = mdn_layers.condition(normal, [0], values)
    assert isinstance(conditioned, tfd.MultivariateNormalTriL)
    np.testing.assert_allclose(conditioned.mean(), means[0, 1:])
    assert isinstance(mdn_layers.marginalize(normal, [2]), tfd.MultivariateNormalTriL)


@pytest.mark.parametrize("diagonal", [True, False])
@pytest.mark.parametrize("batched", ["scale", "weights"])
def test_a_batch_carried_by_one_part_alone_is_kept(rng, diagonal, batched):
    """Only the scales (or only the weights) carry the batch axis ``[3]``; K = 2 components,
    so a batch read from the wrong axes of either part fails or mixes rows. Each row's
    conditional matches the textbook numpy reference."""
    weights = rng.dirichlet(np.ones(2), size=3 if batched == "weights" else None)
    means = rng.normal(size=(2, 3))
    sds = rng.uniform(0.4, 1.5, (3, 2, 3) if batched == "scale" else (2, 3))
    trils = np.tril(rng.normal(size=sds.shape + (3,)), -1) * 0.5 + sds[..., None] * np.eye(3)
    components = (tfd.MultivariateNormalDiag(means, sds) if diagonal
                  else tfd.MultivariateNormalTriL(means, trils))
    mixture = tfd.MixtureSameFamily(tfd.Categorical(probs=weights), components)
    values = np.array([0.3])
    given = mdn_layers.condition(mixture, [1], values)
    assert given.batch_shape == [3]
    covs = sds[..., None] ** 2 * np.eye(3) if diagonal else trils @ np.swapaxes(trils, -1, -2)
    for row in range(3):
        row_weights = weights[row] if batched == "weights" else weights
        row_covs = covs[row] if batched == "scale" else covs
        expected = numpy_condition(row_weights, means, row_covs, [1], values)
        np.testing.assert_allclose(weights_of(given)[row], expected[0], rtol=1e-10)
        np.testing.assert_allclose(given.components_distribution.mean()[row], expected[1],
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(covariances_of(given)[row], expected[2], rtol=1e-10,
                                   atol=1e-12)


def test_mixture_from_layer_params_conditions_like_reference(rng):
    weights, means, covs = random_mixture(rng, 3, 3)
    params = params_for(weights, means, covs, "full")
    mixture = mdn_layers.mixture_from_params(params, 3, 3)
    result = mdn_layers.condition(mixture, [1], np.array([0.3]))
    w, locs, _ = numpy_condition(weights, means, covs + 0, [1], np.array([0.3]))
    np.testing.assert_allclose(weights_of(result), w, rtol=1e-6)
    np.testing.assert_allclose(result.components_distribution.mean(), locs, atol=1e-6)


@pytest.mark.parametrize("indices,values_width,error,message", [
    ([0, 0], 2, ValueError, "repeat"),
    ([0, -3], 2, ValueError, "repeat"),
    ([3], 1, ValueError, "out of range"),
    ([-4], 1, ValueError, "out of range"),
    ([0.5], 1, ValueError, "integers"),
    ([0, 1], 3, ValueError, "len\\(indices\\)=2"),
])
def test_condition_validation(rng, indices, values_width, error, message):
    mixture = tfp_mixture(*random_mixture(rng, 2, 3))
    with pytest.raises(error, match=message):
        mdn_layers.condition(mixture, indices, np.zeros(values_width))


def test_marginalize_validation(rng):
    mixture = tfp_mixture(*random_mixture(rng, 2, 3))
    with pytest.raises(ValueError, match="at least one"):
        mdn_layers.marginalize(mixture, [])
    with pytest.raises(ValueError, match="out of range"):
        mdn_layers.marginalize(mixture, [5])
    with pytest.raises(ValueError, match="D >= 2"):
        mdn_layers.marginalize(tfd.Normal(0.0, 1.0), [0])
    with pytest.raises(TypeError, match="MixtureSameFamily"):
        mdn_layers.marginalize(tfd.Gamma(1.0, 1.0), [0])


def test_singular_observed_block_raises_clear_error():
    # Dims 0 and 1 are identical copies: the covariance is singular.
    scale = tf.constant(np.array([[[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]]]))
    mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=tf.zeros([1], tf.float64)),
                                    tfd.MultivariateNormalTriL(tf.zeros([1, 3], tf.float64),
                                                               scale))
    with pytest.raises(tf.errors.InvalidArgumentError, match="singular"):
        mdn_layers.condition(mixture, [2, 1], np.array([0.0, 0.5]))


def test_gradients_flow_through_condition_and_marginalize(rng):
    params = tf.Variable(rng.normal(size=(4, mdn_layers.params_size(3, 2))).astype("float32"))
    values = rng.normal(size=(4, 1)).astype("float32")
    target = rng.normal(size=(4, 2)).astype("float32")
    with tf.GradientTape() as tape:
        mixture = mdn_layers.mixture_from_params(params, 3, 2)
        loss = -tf.reduce_sum(mdn_layers.condition(mixture, [2], values).log_prob(target))
        loss -= tf.reduce_sum(mdn_layers.marginalize(mixture, [2, 0]).log_prob(target))
    gradient = tape.gradient(loss, params)
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
def test_condition_inside_tf_function(rng, jit_compile):
    size = mdn_layers.params_size(3, 2)

    @tf.function(jit_compile=jit_compile,
                 input_signature=[tf.TensorSpec([None, size]), tf.TensorSpec([None, 1]),
                                  tf.TensorSpec([None, 2])])
    def conditional_log_prob(params, values, target):
        mixture = mdn_layers.mixture_from_params(params, 3, 2)
        return mdn_layers.condition(mixture, [1], values).log_prob(target)

    params = rng.normal(size=(5, size)).astype("float32")
    values, target = rng.normal(size=(5, 1)).astype("float32"), rng.normal(size=(5, 2))
    eager = mdn_layers.condition(mdn_layers.mixture_from_params(params, 3, 2), [1], values)
    # Graph rewrites (fused multiply-adds) round float32 differently from eager ops.
    np.testing.assert_allclose(conditional_log_prob(params, values, target.astype("float32")),
                               eager.log_prob(target.astype("float32")), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("covariance", ["full", "diag", "spherical"])
def test_missing_target_nll_equals_explicit_marginal_nll(rng, covariance):
    params = rng.normal(size=(6, mdn_layers.params_size(3, 2, covariance))).astype("float64")
    y = rng.normal(size=(6, 3))
    missing = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1], [0, 0, 1], [1, 0, 1]], bool)
    y_missing = np.where(missing, np.nan, y)
    loss = mdn_layers.MixtureNLL(3, 2, covariance, allow_missing=True)
    per_sample = loss.call(y_missing, params).numpy()
    mixture = mdn_layers.mixture_from_params(params, 3, 2, covariance)
    for row in range(6):
        kept = np.flatnonzero(~missing[row]).tolist()
        if not kept:
            assert per_sample[row] == 0
            continue
        explicit = -mdn_layers.marginalize(mixture[row], kept).log_prob(y[row, kept])
        np.testing.assert_allclose(per_sample[row], explicit, rtol=1e-9)
    complete = mdn_layers.MixtureNLL(3, 2, covariance)
    np.testing.assert_allclose(loss.call(y, params), complete.call(y, params), rtol=1e-9)


@pytest.mark.slow
def test_training_with_missing_targets_stays_finite(rng):
    x = rng.normal(size=(128, 2)).astype("float32")
    y = np.stack([x[:, 0], x[:, 0] - x[:, 1]], -1) + rng.normal(0, 0.1, (128, 2))
    y[rng.random((128, 2)) < 0.3] = np.nan
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(16, activation="tanh"),
                              mdn_layers.MixtureDensity(2, 3)])
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=True,
                  loss=mdn_layers.MixtureNLL(2, 3, allow_missing=True))
    history = model.fit(x, y.astype("float32"), epochs=5, batch_size=50, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_rescale_is_the_affine_map_of_the_mixture(rng):
    weights, means, covs = random_mixture(rng, 3, 2)
    shift, scale = np.array([10.0, -5.0]), np.array([100.0, 0.01])
    rescaled = mdn_layers.rescale(tfp_mixture(weights, means, covs), shift, scale)
    y = rng.normal(size=(6, 2)) * scale + shift
    expected = scipy_mixture_logpdf(y, weights, shift + scale * means,
                                    covs * scale[:, None] * scale[None, :])
    np.testing.assert_allclose(rescaled.log_prob(y), expected, rtol=1e-9)
    diag = tfd.MixtureSameFamily(tfd.Categorical(probs=weights),
                                 tfd.MultivariateNormalDiag(means, np.ones((3, 2))))
    np.testing.assert_allclose(mdn_layers.rescale(diag, shift, scale).stddev(),
                               scale * diag.stddev().numpy(), rtol=1e-9)


def test_negative_diagonal_factors_are_the_same_covariance(rng):
    weights, means, covs = random_mixture(rng, 3, 3)
    tril = np.linalg.cholesky(covs)
    flipped = tril * np.array([-1.0, 1.0, -1.0])  # flip columns: same L L^T
    mixture = tfp_mixture(weights, means, covs)
    flipped_mixture = tfd.MixtureSameFamily(tfd.Categorical(probs=weights),
                                            tfd.MultivariateNormalTriL(means, flipped))
    y = rng.normal(size=(4, 3))
    for observed in ([0], [2, 1]):
        a = mdn_layers.condition(mixture, observed, y[:, observed])
        b = mdn_layers.condition(flipped_mixture, observed, y[:, observed])
        np.testing.assert_allclose(b.mixture_distribution.probs_parameter(),
                                   a.mixture_distribution.probs_parameter(), rtol=1e-10)
        np.testing.assert_allclose(b.covariance(), a.covariance(), rtol=1e-10)
    np.testing.assert_allclose(mdn_layers.quantile(flipped_mixture, 0.3),
                               mdn_layers.quantile(mixture, 0.3), rtol=1e-10)


@pytest.mark.parametrize("observed", [[0], [1, 0]])
def test_zero_variance_observed_dim_raises_in_graph_mode_too(observed):
    scale = tf.constant([[[0.0, 0, 0], [0.5, 1.0, 0], [0, 0, 1.0]]], tf.float64)
    mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=tf.zeros([1], tf.float64)),
                                    tfd.MultivariateNormalTriL(tf.zeros([1, 3], tf.float64),
                                                               scale))
    values = np.zeros(len(observed))
    with pytest.raises(tf.errors.InvalidArgumentError, match="singular"):
        mdn_layers.condition(mixture, observed, values)

    @tf.function
    def conditional_mean():
        return mdn_layers.condition(mixture, observed, values).mean()

    with pytest.raises(tf.errors.InvalidArgumentError, match="singular"):
        conditional_mean()


def test_conditioning_gradients_match_finite_differences_in_float64(rng):
    """d/d(values, loc, scale) of condition(...).log_prob(y_u) against central differences:
    the gradient flows through the observed values into the weights and the means."""
    tril = np.array([[[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.4, 0.5]],
                     [[0.7, 0.0, 0.0], [-0.2, 0.9, 0.0], [0.5, 0.1, 0.6]]])
    loc0 = rng.normal(size=(2, 3))
    target = tf.constant([[0.2, -0.4]], tf.float64)

    def log_prob(values, loc):
        mixture = tfd.MixtureSameFamily(
            tfd.Categorical(logits=tf.constant([0.3, -0.2], tf.float64)),
            tfd.MultivariateNormalTriL(loc, tf.constant(tril)))
        return tf.reduce_sum(mdn_layers.condition(mixture, [1], values).log_prob(target))

    values = tf.constant([[0.7]], tf.float64)
    loc = tf.constant(loc0)
    with tf.GradientTape() as tape:
        tape.watch([values, loc])
        value = log_prob(values, loc)
    grad_values, grad_loc = tape.gradient(value, [values, loc])
    step = 1e-6
    numeric = (log_prob(values + step, loc) - log_prob(values - step, loc)) / (2 * step)
    np.testing.assert_allclose(grad_values.numpy()[0, 0], numeric.numpy(), rtol=1e-6)
    assert abs(grad_values.numpy()[0, 0]) > 1e-3
    for k, d in [(0, 1), (1, 0), (1, 2)]:
        bump = np.zeros((2, 3))
        bump[k, d] = step
        numeric = (log_prob(values, loc + bump) - log_prob(values, loc - bump)) / (2 * step)
        np.testing.assert_allclose(grad_loc.numpy()[k, d], numeric.numpy(), rtol=1e-5,
                                   atol=1e-9)


@pytest.mark.parametrize("covariance", ["full", "diag", "spherical"])
def test_rescale_with_scalar_scale_matches_per_dim(rng, covariance):
    mixture = mdn_layers.mixture_from_params(
        rng.normal(size=(3, mdn_layers.params_size(2, 2, covariance))), 2, 2, covariance)
    y = rng.normal(size=(3, 2))
    np.testing.assert_allclose(mdn_layers.rescale(mixture, 1.0, 2.0).log_prob(y),
                               mdn_layers.rescale(mixture, [1.0, 1.0], [2.0, 2.0]).log_prob(y))


@pytest.mark.parametrize("value", [1e3, 1e20, -1e25])
def test_float32_conditioning_far_out_gives_the_limit_not_nan(value):
    # The second component's marginal of dim 0 is wider: it decays slowest.
    mixture = tfd.MixtureSameFamily(
        tfd.Categorical(probs=[0.9, 0.1]),
        tfd.MultivariateNormalTriL(tf.zeros([2, 2]),
                                   tf.constant([[[1.0, 0.0], [0.5, 1.0]],
                                                [[3.0, 0.0], [0.5, 1.0]]])))
    given = mdn_layers.condition(mixture, [0], tf.constant([[value]], tf.float32))
    weights = tf.nn.softmax(given.mixture_distribution.logits_parameter()).numpy()
    np.testing.assert_allclose(weights, [[0.0, 1.0]], atol=1e-6)
    assert np.all(np.isfinite(given.mean().numpy()))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_condition_refuses_non_finite_observed_values(bad):
    mixture = mdn_layers.mixture_from_params(np.zeros((3, 18), "float32"), 2, 3)
    with pytest.raises(ValueError, match=re.escape(
            "condition: `values` contains NaN or inf; observed values must be finite "
            "(marginalize out a dim instead of observing NaN).") + "$"):
        mdn_layers.condition(mixture, [1], np.array([[0.0], [bad], [1.0]], "float32"))


def test_python_float_values_keep_a_float64_mixtures_precision():
    """Values given as Python floats are read at the mixture's float64, not through float32:
    the conditional mean of a bivariate normal, mu_1 + (s_10 / s_00) (v - mu_0), to 1e-14."""
    weights, means = np.ones(1), np.array([[0.0, 0.0]])
    covs = np.array([[[1.0, 0.5], [0.5, 2.0]]])
    given = mdn_layers.condition(tfp_mixture(weights, means, covs), [0], [[0.1]])
    assert given.dtype == tf.float64
    np.testing.assert_allclose(given.mean().numpy()[0], [0.5 * 0.1], rtol=1e-14)


def test_condition_of_a_scalar_event_names_condition():
    with pytest.raises(ValueError, match=re.escape(
            "condition needs a multivariate event (D >= 2); received a mixture with a scalar "
            "event (tfd.Normal components).") + "$"):
        mdn_layers.condition(_scalar_event_mixture(), [0], [[0.0]])


@pytest.mark.parametrize("loc, scale, match", [
    (0.0, [1.0, 2.0, 3.0], "2 floats"),
    ([0.0, 0.0, 0.0], 1.0, "2 floats"),
    ([np.nan, 0.0], 1.0, "finite"),
    (0.0, [1.0, 0.0], "positive"),
])
def test_rescale_checks_loc_and_scale_by_name(loc, scale, match):
    mixture = mdn_layers.mixture_from_params(np.zeros((3, 18), "float32"), 2, 3)
    with pytest.raises(ValueError, match=match):
        mdn_layers.rescale(mixture, loc, scale)


@pytest.mark.parametrize("far", [1e20, 1e30, 3e38, -3e38])
def test_condition_far_out_finite_values_give_finite_weights(far):
    """float32 values far beyond every component: the weights are the limiting ones (all on
    the slowest-decaying marginal, here the widest component), never NaN."""
    tril = np.stack([0.5 * np.eye(2), 3.0 * np.eye(2)]).astype("float32")
    mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=[0.0, 0.0]),
                                    tfd.MultivariateNormalTriL(np.zeros((2, 2), "float32"), tril))
    given = mdn_layers.condition(mixture, [1], np.array([far], "float32"))
    np.testing.assert_allclose(given.mixture_distribution.probs_parameter(), [0.0, 1.0],
                               atol=1e-6)
    # Row by row: beside a far row, an ordinary one keeps its posterior (Bayes, scipy).
    given = mdn_layers.condition(mixture, [1], np.array([[far], [0.5]], "float32"))
    density = stats.norm.pdf(0.5, 0.0, [0.5, 3.0])
    np.testing.assert_allclose(given.mixture_distribution.probs_parameter(),
                               [[0.0, 1.0], density / density.sum()], atol=1e-6)


def test_far_out_rows_of_different_scales_each_get_their_own_limit():
    """Two mixtures in one float32 batch, their scales 25 orders of magnitude apart, each
    observed so far out that every density underflows: each row's limit is its own widest
    component, whatever the other row's scale (a batch-wide rescaling underflows or
    overflows one of them)."""
    sds = np.array([[1e-10, 3e-10], [1e15, 3e15]], "float32")
    tril = sds[..., None, None] * np.eye(2, dtype="float32")
    mixture = tfd.MixtureSameFamily(
        tfd.Categorical(logits=np.zeros((2, 2), "float32")),
        tfd.MultivariateNormalTriL(np.zeros((2, 2, 2), "float32"), tril))
    given = mdn_layers.condition(mixture, [1], np.array([[1e10], [1e35]], "float32"))
    np.testing.assert_allclose(given.mixture_distribution.probs_parameter(),
                               [[0.0, 1.0], [0.0, 1.0]], atol=1e-6)


def test_observations_near_the_largest_float32_against_the_narrowest_components():
    """Values near float32's largest (3e38) over components of spread 1e-25: the residuals
    are divided by a power of two within a factor 2 of the values before whitening, so the
    whitened distance stays finite (about 1e25) and the limit is the wider component; a
    coarser power would overflow it to inf and the weights to NaN. (The first dim is
    observed: reordering dims would square the spreads, below float32's range.)"""
    tril = (np.array([1e-25, 3e-25])[:, None, None] * np.eye(2)).astype("float32")
    mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=np.zeros(2, "float32")),
                                    tfd.MultivariateNormalTriL(np.zeros((2, 2), "float32"), tril))
    given = mdn_layers.condition(mixture, [0], np.array([3e38], "float32"))
    np.testing.assert_allclose(given.mixture_distribution.probs_parameter(), [0.0, 1.0],
                               atol=1e-6)
    np.testing.assert_array_equal(given.components_distribution.mean(), [[0.0], [0.0]])


def test_far_out_ties_keep_the_limit_of_the_density_ratio():
    """Observed dims 0 and 1 far out along dim 0: two components with the same spread along
    that direction but different spreads across it tie in whitened distance. Their density
    ratio tends to the inverse ratio of their observed blocks' |L| (1 : 2), so the limiting
    weights are 2/3 and 1/3."""
    tril = np.stack([np.eye(3), np.diag([1.0, 2.0, 1.0])]).astype("float32")
    mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=np.zeros(2, "float32")),
                                    tfd.MultivariateNormalTriL(np.zeros((2, 3), "float32"), tril))
    given = mdn_layers.condition(mixture, [0, 1], np.array([1e20, 0.0], "float32"))
    np.testing.assert_allclose(given.mixture_distribution.probs_parameter(), [2 / 3, 1 / 3],
                               rtol=1e-6)


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


@pytest.mark.parametrize("batch, singular, match", [
    # row 2's first component of three: the message names the component, not the dim
    ((3,), (2, 0), r"batch index \(2,\), component 0\."),
    ((2, 3), (1, 2, 1), r"batch index \(1, 2\), component 1\."),   # every batch index
])
def test_singular_factor_error_names_the_row_and_component(batch, singular, match):
    """One component is singular once dim 1 is observed first (its y1 == y0 exactly)."""
    num_components = 3 if len(batch) == 1 else 2
    tril = np.tile(np.eye(2), batch + (num_components, 1, 1))
    tril[singular] = [[1.0, 0.0], [1.0, 0.0]]
    mixture = tfd.MixtureSameFamily(
        tfd.Categorical(logits=tf.zeros(batch + (num_components,))),
        tfd.MultivariateNormalTriL(tf.zeros(batch + (num_components, 2)),
                                   tf.constant(tril, tf.float32)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        mdn_layers.condition(mixture, [1], tf.zeros(batch + (1,)))


def _scalar_event_mixture():
    """Equal weights on N(0, 1) and N(1, 2^2), a scalar event."""
    return tfd.MixtureSameFamily(tfd.Categorical(logits=[0.0, 0.0]),
                                 tfd.Normal([0.0, 1.0], [1.0, 2.0]))


def test_marginalize_of_a_scalar_event_names_marginalize():
    scalar = _scalar_event_mixture()
    with pytest.raises(ValueError, match=re.escape(
            "marginalize needs a multivariate event (D >= 2); received a mixture with a scalar "
            "event (tfd.Normal components).") + "$"):
        mdn_layers.marginalize(scalar, [0])


@pytest.mark.parametrize("loc, scale, name", [([0.0, 0.0, 0.0], 1.0, "`loc`"),
                                              (0.0, [1.0, 2.0, 3.0], "`scale`")])
def test_rescale_errors_name_the_argument(loc, scale, name):
    mixture = mdn_layers.mixture_from_params(np.zeros((3, 18), "float32"), 2, 3)
    with pytest.raises(ValueError, match=name):
        mdn_layers.rescale(mixture, loc, scale)


def test_rescale_keeps_float32_and_the_distribution_kind():
    """float32 stays float32 (loc and scale are cast to the mixture's dtype); a single normal
    stays a single normal, a mixture of scalar normals keeps its scalar event."""
    mixture = mdn_layers.mixture_from_params(np.zeros((3, 18), "float32"), 2, 3)
    rescaled = mdn_layers.rescale(mixture, [1.0, -1.0], [2.0, 3.0])
    assert rescaled.dtype == tf.float32
    np.testing.assert_allclose(rescaled.mean(), np.tile([1.0, -1.0], (3, 1)), atol=1e-6)
    single = tfd.MultivariateNormalTriL(tf.zeros([4, 2]), tf.eye(2, batch_shape=[4]))
    rescaled_single = mdn_layers.rescale(single, 1.0, [2.0, 3.0])
    assert isinstance(rescaled_single, tfd.MultivariateNormalTriL)
    np.testing.assert_allclose(rescaled_single.stddev(), np.tile([2.0, 3.0], (4, 1)),
                               rtol=1e-6)
    rescaled_scalar = mdn_layers.rescale(_scalar_event_mixture(), 5.0, 2.0)
    assert rescaled_scalar.event_shape == () and rescaled_scalar.batch_shape == ()
    y = np.array([3.0, 6.0, 9.0])
    np.testing.assert_allclose(
        rescaled_scalar.log_prob(y),
        np.log(0.5 * stats.norm.pdf(y, 5.0, 2.0) + 0.5 * stats.norm.pdf(y, 7.0, 4.0)),
        rtol=1e-5)


def test_singular_factor_raises_inside_a_tf_function():
    tril = np.tile(np.eye(2), (3, 1, 1))
    tril[2] = [[1.0, 0.0], [1.0, 0.0]]

    @tf.function
    def conditional_mean(tril):
        mixture = tfd.MultivariateNormalTriL(tf.zeros([3, 2]), tril)
        return mdn_layers.condition(mixture, [1], tf.zeros([3, 1])).mean()

    with pytest.raises(tf.errors.InvalidArgumentError, match="singular"):
        conditional_mean(tf.constant(tril, tf.float32))
