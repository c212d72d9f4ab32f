"""The training loss: MixtureNLL and mixture_nll against independent references; its checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import (
    hostile,
    params_for,
    random_mixture,
    requires_float64,
    restrict_covariance,
    scipy_mixture_logpdf,
    tensorflow_backend_only,
    thin_far_normal,
)
from scipy import stats

import mdn_layers
from mdn_layers.core import layout
from mdn_layers.training import targets

KINDS = ["full", "diag", "spherical"]



def model_for(covariance, num_components=3, **compile_kwargs):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(16, activation="tanh"),
                              mdn_layers.MixtureDensity(2, num_components, covariance)])
    model.compile("adam", loss=mdn_layers.MixtureNLL(2, num_components, covariance),
                  **compile_kwargs)
    return model


tfd = tfp.distributions


@pytest.mark.backend_neutral
@pytest.mark.parametrize("covariance", KINDS)
@pytest.mark.parametrize("num_components,event_size", [(1, 1), (1, 2), (3, 2)])
def test_loss_is_per_sample_nll_against_scipy(rng, covariance, num_components, event_size):
    weights, means, covs = random_mixture(rng, num_components, event_size)
    covs = restrict_covariance(covs, covariance)
    params = np.tile(params_for(weights, means, covs, covariance), (6, 1)).astype("float32")
    y = rng.normal(0, 2, (6, event_size)).astype("float32")
    loss = mdn_layers.MixtureNLL(event_size, num_components, covariance)
    expected = -scipy_mixture_logpdf(y, weights, means, covs)
    np.testing.assert_allclose(loss.call(y, params), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(loss(y, params), expected.mean(), rtol=1e-4)
    weight = np.array([1, 0, 0, 2, 0, 0], "float32")
    np.testing.assert_allclose(loss(y, params, sample_weight=weight),
                               (expected * weight).sum() / 6, rtol=1e-4)


@pytest.mark.backend_neutral
def test_loss_accepts_flat_targets_for_one_dim(rng):
    loss = mdn_layers.MixtureNLL(1, 2)
    params = rng.normal(size=(5, mdn_layers.params_size(1, 2))).astype("float32")
    y = rng.normal(size=5).astype("float32")
    np.testing.assert_allclose(loss.call(y, params), loss.call(y[:, None], params))


@pytest.mark.backend_neutral
def test_loss_rejects_wrong_target_width_naming_both_sizes():
    loss = mdn_layers.MixtureNLL(event_size=2, num_components=3)
    params = np.zeros((4, mdn_layers.params_size(2, 3)), "float32")
    with pytest.raises(ValueError, match=r"size 3.*event_size=2"):
        loss(np.zeros((4, 3), "float32"), params)


@pytest.mark.backend_neutral
def test_loss_rejects_wrong_params_width():
    loss = mdn_layers.MixtureNLL(event_size=2, num_components=3)
    with pytest.raises(ValueError, match="params_size=18"):
        loss(np.zeros((4, 2), "float32"), np.zeros((4, 12), "float32"))


@pytest.mark.backend_neutral
def test_non_finite_targets_and_params_are_named():
    loss = mdn_layers.MixtureNLL(2, 3)
    params = np.zeros((4, mdn_layers.params_size(2, 3)), "float32")
    y = np.zeros((4, 2), "float32")
    with pytest.raises(ValueError, match="y_true contains NaN or inf.*allow_missing"):
        loss(np.where([[True, False]] * 4, np.nan, y), params)
    with pytest.raises(ValueError, match=r"^MixtureNLL: the params \(model output\) contain "
                       r"NaN or inf: the inputs are not finite or training diverged\.$"):
        loss(y, np.full_like(params, np.inf))


@pytest.mark.backend_neutral
@tensorflow_backend_only
def test_non_finite_targets_stop_graph_training(rng):
    x, y = hostile("constant_dimension", rng, n=64)
    y[3, 0] = np.nan
    model = model_for("diag", jit_compile=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="y_true contains NaN"):
        model.fit(x, y, epochs=1, verbose=0)


@pytest.mark.backend_neutral
@pytest.mark.parametrize("params_shape, targets_shape", [
    ((6, 18), (6, 1, 2)),          # an extra axis would broadcast to a 6 x 6 loss
    ((5, 5, 18), (5, 2)),          # a sequence head: (N, D) targets broadcast when N == T
    ((4, 3, 18), (4, 2, 2)),       # the time axes disagree
])
def test_loss_refuses_targets_whose_leading_axes_are_not_the_params(params_shape, targets_shape):
    loss = mdn_layers.MixtureNLL(2, 3)
    with pytest.raises(ValueError, match="does not match the params shape"):
        loss(np.zeros(targets_shape, "float32"), np.zeros(params_shape, "float32"))


@pytest.mark.backend_neutral
@pytest.mark.parametrize("flag", ["false", 0, 1, None])
def test_boolean_flags_refuse_non_bools(flag):
    with pytest.raises(ValueError, match="`allow_missing`"):
        mdn_layers.MixtureNLL(2, 3, allow_missing=flag)
    with pytest.raises(ValueError, match="`allow_missing`"):
        mdn_layers.metrics.CRPS(2, 3, allow_missing=flag)


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


@pytest.mark.backend_neutral
@pytest.mark.parametrize("event_size", [3, 10])   # unrolled, and beyond the unrolled sizes
def test_missing_target_loss_is_the_observed_marginal_against_scipy(rng, event_size):
    rows = 5
    mixtures = [random_mixture(rng, 2, event_size) for _ in range(rows)]
    params = np.stack([params_for(*mixture, "full") for mixture in mixtures])
    y = rng.normal(size=(rows, event_size))
    missing = rng.random((rows, event_size)) < 0.4
    missing[0] = False
    missing[1] = np.arange(event_size) > 0     # one dim observed
    loss = mdn_layers.MixtureNLL(event_size, 2, allow_missing=True, dtype="float64")
    found = keras.ops.convert_to_numpy(loss.call(np.where(missing, np.nan, y), params))
    for row, (weights, means, covs) in enumerate(mixtures):
        seen = ~missing[row]
        expected = -scipy_mixture_logpdf(y[row:row + 1, seen], weights, means[:, seen],
                                         covs[:, seen][:, :, seen])
        np.testing.assert_allclose(found[row], expected[0], rtol=1e-6)


@pytest.mark.backend_neutral
@pytest.mark.parametrize("allow_missing", [False, True])
def test_mixture_nll_function_and_for_layer_score_like_scipy(rng, allow_missing):
    weights, means, covs = random_mixture(rng, 2, 3)
    covs = restrict_covariance(covs, "diag")
    params = np.tile(params_for(weights, means, covs, "diag"), (4, 1)).astype("float32")
    y = rng.normal(0, 2, (4, 3)).astype("float32")
    expected = -scipy_mixture_logpdf(y, weights, means, covs)
    if allow_missing:
        y[1, 2] = np.nan
        expected[1] = -scipy_mixture_logpdf(y[1:2, :2], weights, means[:, :2],
                                            covs[:, :2, :2])[0]
    found = mdn_layers.mixture_nll(y, params, 3, 2, "diag", allow_missing=allow_missing)
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-4)
    head = mdn_layers.MixtureDensity(3, 2, "diag")
    loss = mdn_layers.MixtureNLL.for_layer(head, allow_missing=allow_missing, reduction=None)
    np.testing.assert_allclose(loss(y, params), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.backend_neutral
def test_for_layer_copies_every_setting_and_refuses_other_layers():
    head = mdn_layers.MixtureDensity(3, 4, "spherical", diag_shift=0.01)
    loss = mdn_layers.MixtureNLL.for_layer(head, name="nll")
    assert (loss.event_size, loss.num_components, loss.covariance, loss.diag_shift,
            loss.name) == (3, 4, "spherical", 0.01, "nll")
    with pytest.raises(TypeError, match=r"^MixtureNLL.for_layer expects an "
                                        r"mdn_layers.MixtureDensity layer; received Dense\.$"):
        mdn_layers.MixtureNLL.for_layer(keras.layers.Dense(3))


@pytest.mark.backend_neutral
@pytest.mark.parametrize("dtype", [None, "float64"])
def test_loss_config_round_trips(dtype):
    loss = mdn_layers.MixtureNLL(3, 4, "diag", diag_shift=0.01, allow_missing=True, dtype=dtype,
                                 name="own")
    config = loss.get_config()
    assert {key: config[key] for key in ("event_size", "num_components", "covariance",
                                         "diag_shift", "allow_missing", "name")} == {
        "event_size": 3, "num_components": 4, "covariance": "diag", "diag_shift": 0.01,
        "allow_missing": True, "name": "own"}
    restored = mdn_layers.MixtureNLL.from_config(config)
    assert restored.get_config() == config
    assert mdn_layers.MixtureNLL(3, 4).name == "mixture_nll"
    # A float64 loss stays float64; with no dtype it still follows the params' dtype.
    assert config["dtype"] == dtype and restored.dtype == loss.dtype


@pytest.mark.backend_neutral
def test_loss_names_a_distribution_given_as_params():
    normal = tfd.MultivariateNormalDiag(tf.zeros((2, 1)), tf.ones((2, 1)))
    with pytest.raises(TypeError, match=r"^MixtureNLL expects params from mdn_layers\."
                       r"MixtureDensity, but the model output is a distribution "
                       r"\(MultivariateNormalDiag\)\. For tf_keras models whose output is a "
                       r"distribution use mdn_layers\.tfp_layers\.negative_log_likelihood\.$"):
        mdn_layers.MixtureNLL(1, 1)(np.zeros((2, 1), "float32"), normal)


@requires_float64
@pytest.mark.backend_neutral
def test_loss_follows_float64_params_or_its_own_float64_dtype(rng):
    params, y = thin_far_normal(rng, "float64")
    follows = mdn_layers.MixtureNLL(1, 1, reduction=None)
    expected = -stats.norm(1e4, 1e-3).logpdf(y[:, 0])
    np.testing.assert_allclose(follows(y, params), expected, rtol=1e-9)
    # A float64 loss on float32 params: the params as they are, the targets in float64.
    single, y = thin_far_normal(rng, "float32")
    own = mdn_layers.MixtureNLL(1, 1, dtype="float64", reduction=None)
    np.testing.assert_allclose(own(y, single), follows(y, single.astype("float64")), rtol=1e-9)


@pytest.mark.backend_neutral
def test_loss_scores_half_precision_params_in_float32(rng):
    half = rng.normal(size=(6, mdn_layers.params_size(2, 2))).astype("float16")
    y = rng.normal(size=(6, 2)).astype("float32")
    loss = mdn_layers.MixtureNLL(2, 2, reduction=None)
    found = loss(y, half)
    assert keras.backend.standardize_dtype(found.dtype) == "float32"
    np.testing.assert_allclose(found, loss(y, half.astype("float32")), rtol=1e-6)
    weight = np.array([1, 0, 0, 2, 0, 0], "float32")
    np.testing.assert_allclose(mdn_layers.MixtureNLL(2, 2)(y, half, sample_weight=weight),
                               np.sum(keras.ops.convert_to_numpy(found) * weight) / 6, rtol=1e-5)
    # A float64 call in between leaves the loss its own dtype: half precision still in float32.
    loss(y.astype("float64"), half.astype("float64"))
    assert loss.dtype == "float32"
    again = loss(y, half)
    assert keras.backend.standardize_dtype(again.dtype) == "float32"
    np.testing.assert_allclose(again, found, rtol=1e-6)


@pytest.mark.backend_neutral
def test_finite_check_inside_a_jax_trace_lets_the_tensor_through():
    """A traced JAX value cannot be tested eagerly: under `jit` the check is dropped (the
    docstring sends users to TerminateOnNaN)."""
    if keras.backend.backend() != "jax":
        pytest.skip("JAX tracing")
    import jax
    checked = jax.jit(lambda t: targets.check_finite(t, "message"))(np.full(2, np.nan, "f4"))
    assert np.isnan(np.asarray(checked)).all()


@pytest.mark.backend_neutral
@pytest.mark.parametrize("make, name", [
    (lambda: mdn_layers.MixtureNLL(2, 3), "MixtureNLL"),
    (lambda: mdn_layers.metrics.CRPS(2, 3), "CRPS"),
])
def test_target_and_params_errors_are_whole_sentences_naming_the_class(make, name):
    def refused(y_true, y_pred, message):
        with pytest.raises(ValueError, match="^" + message + "$"):
            target = make()
            (target.update_state if hasattr(target, "update_state") else target)(y_true,
                                                                                   y_pred)

    params = np.zeros((4, mdn_layers.params_size(2, 3)), "float32")
    refused(np.zeros((4, 3), "float32"), params,
            rf"{name}: y_true last axis has size 3, but event_size=2; y_true shape \(4, 3\)\.")
    refused(np.zeros(4, "float32"), params,       # one target per row: not for two dims
            rf"{name}: y_true last axis has size 4, but event_size=2; y_true shape \(4,\)\.")
    refused(np.float32(1.0), params, rf"{name}: y_true last axis has size none \(scalar\), "
                                     r"but event_size=2; y_true shape \(\)\.")
    refused(np.zeros((4, 2), "float32"), np.zeros((4, 17), "float32"),
            rf"{name}: y_pred last axis has size 17, but event_size=2, num_components=3, "
            r"covariance='full' need params_size=18\.")
    refused(np.zeros((4, 5, 2), "float32"), np.zeros((4, 5, 17), "float32"),   # sequences
            rf"{name}: y_pred last axis has size 17, but event_size=2, num_components=3, "
            r"covariance='full' need params_size=18\.")
    refused(np.full((4, 2), np.nan, "float32"), params,
            rf"{name}: y_true contains NaN or inf\. Pass allow_missing=True to treat NaN "
            r"targets as missing values\.")


@pytest.mark.backend_neutral
def test_inf_targets_are_refused_with_allow_missing_too():
    loss = mdn_layers.MixtureNLL(2, 3, allow_missing=True)
    y = np.zeros((4, 2), "float32")
    y[1, 0], y[2, 1] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"^MixtureNLL: y_true contains inf \(NaN marks a "
                       r"missing value with allow_missing=True; inf is not a value\)\.$"):
        loss(y, np.zeros((4, mdn_layers.params_size(2, 3)), "float32"))


@pytest.mark.backend_neutral
def test_one_dim_sequence_targets_may_drop_their_event_axis(rng):
    params = rng.normal(size=(2, 3, mdn_layers.params_size(1, 2))).astype("float32")
    y = rng.normal(size=(2, 3)).astype("float32")
    loss = mdn_layers.MixtureNLL(1, 2, reduction=None)
    np.testing.assert_allclose(loss(y, params), loss(y[..., None], params), rtol=1e-6)
    mixture = mdn_layers.mixture_from_params(params, 1, 2)
    np.testing.assert_allclose(loss(y, params), -mixture.log_prob(y[..., None]), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.backend_neutral
def test_mixture_nll_defaults_to_full_covariance_without_missing_targets(rng):
    weights, means, covs = random_mixture(rng, 2, 2)
    params = np.tile(params_for(weights, means, covs, "full"), (3, 1)).astype("float32")
    y = rng.normal(size=(3, 2)).astype("float32")
    np.testing.assert_allclose(mdn_layers.mixture_nll(y, params, 2, 2),
                               -scipy_mixture_logpdf(y, weights, means, covs), rtol=1e-4)
    y[0, 0] = np.nan
    with pytest.raises(ValueError, match="allow_missing=True"):
        mdn_layers.mixture_nll(y, params, 2, 2)
