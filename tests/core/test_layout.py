
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import (
    DIAG_SHIFT,
    params_for,
    random_mixture,
    restrict_covariance,
    scipy_mixture_logpdf,
)

import mdn_layers
from mdn_layers.analysis import mixtures, tf_ops
from mdn_layers.core import layout

tfd = tfp.distributions


KINDS = ["full", "diag", "spherical"]


@pytest.mark.parametrize("event_size,num_components,covariance,expected", [
    (1, 1, "full", 3), (2, 3, "full", 3 + 3 * (2 + 3)), (4, 5, "full", 5 + 5 * (4 + 10)),
    (2, 3, "diag", 3 + 3 * 4), (4, 5, "diag", 5 + 5 * 8),
    (2, 3, "spherical", 3 + 3 * 3), (4, 5, "spherical", 5 + 5 * 5),
])
def test_params_size_closed_forms(event_size, num_components, covariance, expected):
    size = mdn_layers.params_size(event_size, num_components, covariance)
    assert size == expected and type(size) is int
    assert mdn_layers.MixtureDensity.params_size(event_size, num_components, covariance) == size


def test_full_params_size_matches_tfp_layer():
    for d in range(1, 6):
        for k in (1, 3):
            expected = tfp.layers.MixtureSameFamily.params_size(
                k, tfp.layers.MultivariateNormalTriL.params_size(d))
            assert mdn_layers.params_size(d, k) == int(expected)


@pytest.mark.parametrize("kwargs,message", [
    (dict(event_size=0, num_components=2), "event_size"),
    (dict(event_size=2, num_components=0), "num_components"),
    (dict(event_size=2, num_components=2, covariance="tied"), "covariance"),
])
def test_params_size_rejects_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mdn_layers.params_size(**kwargs)


def test_params_size_rejects_non_int():
    with pytest.raises(ValueError, match="event_size"):
        mdn_layers.params_size(2.5, 3)


@pytest.mark.parametrize("event_size", [1, 2, 3, 5])
def test_full_layout_equals_tfp_mixture_layer(rng, event_size):
    num_components = 3
    size = mdn_layers.params_size(event_size, num_components)
    params = rng.normal(size=(7, size)).astype(np.float32)
    y = rng.normal(size=(7, event_size)).astype(np.float32)
    theirs = tfp.layers.MixtureSameFamily.new(
        params, num_components, tfp.layers.MultivariateNormalTriL(event_size))
    ours = mdn_layers.mixture_from_params(params, event_size, num_components)
    np.testing.assert_allclose(ours.log_prob(y), theirs.log_prob(y), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.components_distribution.scale.to_dense(),
                               theirs.components_distribution.scale.to_dense(), atol=1e-6)
    assert isinstance(ours, tfd.MixtureSameFamily)
    assert isinstance(ours.components_distribution, tfd.MultivariateNormalTriL)


@pytest.mark.parametrize("covariance", KINDS)
@pytest.mark.parametrize("num_components,event_size", [(1, 1), (1, 3), (3, 1), (4, 3)])
def test_log_prob_matches_scipy(rng, covariance, num_components, event_size):
    weights, means, covs = random_mixture(rng, num_components, event_size)
    covs = restrict_covariance(covs, covariance)
    params = params_for(weights, means, covs, covariance)
    y = rng.normal(0, 2, size=(20, event_size))
    mixture = mdn_layers.mixture_from_params(params, event_size, num_components, covariance)
    expected = scipy_mixture_logpdf(y, weights, means, covs)
    np.testing.assert_allclose(mixture.log_prob(y.astype(np.float32)), expected,
                               rtol=1e-4, atol=1e-4)


def test_batch_shape_follows_leading_axes(rng):
    params = rng.normal(size=(2, 5, mdn_layers.params_size(2, 3, "diag"))).astype("float32")
    mixture = mdn_layers.mixture_from_params(params, 2, 3, "diag")
    assert mixture.batch_shape == (2, 5) and mixture.event_shape == (2,)


def test_wrong_params_width_names_sizes():
    with pytest.raises(ValueError, match="params_size=18"):
        mdn_layers.mixture_from_params(np.zeros((4, 17), "float32"), 2, 3)


@pytest.mark.parametrize("covariance", KINDS)
def test_initial_params_give_requested_means_and_scale(covariance):
    locs = np.arange(6.0).reshape(3, 2)
    params = layout.initial_params(tf_ops, 2, 3, covariance, tf.constant(locs), scale=0.7)
    assert params.shape == (mdn_layers.params_size(2, 3, covariance),)
    parts = mixtures.params_to_parts(params, 2, 3, covariance)
    np.testing.assert_allclose(parts.loc, locs, atol=1e-6)
    np.testing.assert_allclose(parts.covariance(), np.broadcast_to(0.49 * np.eye(2), (3, 2, 2)),
                               atol=1e-5)
    np.testing.assert_allclose(np.exp(parts.log_weights), np.full(3, 1 / 3), atol=1e-6)


def test_float64_params_give_float64_mixture(rng):
    params = rng.normal(size=(3, mdn_layers.params_size(2, 2)))
    mixture = mdn_layers.mixture_from_params(params, 2, 2)
    assert mixture.dtype == tf.float64


def test_rescaled_entries_far_below_zero_keep_finite_values_and_gradients():
    import tensorflow as tf

    from mdn_layers.analysis import tf_ops
    # K=1, D=2, full: [logit | 2 means | 3 tril entries], two of them far below zero
    params = tf.constant([[0.0, 1.0, -80.0, -40.0, -29.0, 3.0]])
    loc, scale = tf.constant([1.0, 2.0]), tf.constant([5.0, 1e-3])
    with tf.GradientTape() as tape:
        tape.watch(params)
        mapped = layout.rescale_params(tf_ops, params, 2, 1, "full", loc, scale)
    gradient = tape.gradient(mapped, params)
    assert np.all(np.isfinite(mapped.numpy())) and np.all(np.isfinite(gradient.numpy()))
    # softplus of the mapped diagonal entries is scale * softplus of the raw ones
    fill = layout.tril_fill_indices(2)
    for row in range(2):
        position = 1 + 2 + fill[row, row]
        np.testing.assert_allclose(
            np.logaddexp(0.0, np.float64(mapped[0, position])),
            scale.numpy()[row] * np.logaddexp(0.0, np.float64(params[0, position])), rtol=1e-4)


@pytest.mark.parametrize("covariance", KINDS)
@pytest.mark.parametrize("floor,relative_floor", [(None, 0.0), ([0.3, 0.02, 0.5], 0.0),
                                                  (None, 0.25), ([0.3, 0.02, 0.5], 0.25)])
def test_rescaled_params_are_the_affine_map_of_the_mixture(rng, covariance, floor,
                                                           relative_floor):
    """Closed form of the documented map: means ``loc + scale * mean``, Cholesky rows times
    ``scale``, standard deviations ``scale * (softplus(x) + relative_floor) + floor +
    diag_shift``; weights untouched. Raw entries far below zero (the exp branch) included."""
    event_size, num_components, reader_shift = 3, 2, 1e-3
    size = mdn_layers.params_size(event_size, num_components, covariance)
    params = rng.normal(0.0, 2.0, size=(4, size))
    params[1, ::3] = -45.0           # some entries far below zero, positive or not
    params[2, 1::4] = -31.0
    loc = np.array([1.5, -2.0, 0.25])
    scale = np.full(3, 7.0) if covariance == "spherical" else np.array([7.0, 0.01, 300.0])
    mapped = layout.rescale_params(tf_ops, tf.constant(params), event_size, num_components,
                                   covariance, tf.constant(loc), tf.constant(scale),
                                   floor=floor, relative_floor=relative_floor)
    assert mapped.dtype == tf.float64 and mapped.shape == params.shape
    old = mixtures.params_to_parts(params, event_size, num_components, covariance,
                                   diag_shift=0.0)
    new = mixtures.params_to_parts(mapped, event_size, num_components, covariance,
                                   diag_shift=reader_shift)
    np.testing.assert_allclose(new.log_weights, old.log_weights, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(new.loc, loc + scale * old.loc.numpy(), rtol=1e-10, atol=1e-12)
    old_tril, new_tril = old.scale_tril().numpy(), new.scale_tril().numpy()
    floors = np.zeros(3) if floor is None else np.asarray(floor)
    if covariance == "spherical":
        floors = np.full(3, floors[0])
    expected = scale[:, None] * old_tril   # each Cholesky row scales with its target dim
    diagonal = np.arange(event_size)
    expected[..., diagonal, diagonal] = (scale * (old_tril[..., diagonal, diagonal]
                                                  + relative_floor) + floors + reader_shift)
    np.testing.assert_allclose(new_tril, expected, rtol=1e-7, atol=1e-300)


def test_rescaled_mixture_density_is_the_change_of_variables(rng):
    """``log p_new(loc + scale * y) = log p_old(y) - sum(log scale)``, against scipy: the
    old reader's ``diag_shift`` passed as the relative floor, the new one reading none."""
    weights, means, covs = random_mixture(rng, 3, 2)
    params = params_for(weights, means, covs, "full")[None]
    loc, scale = np.array([10.0, -3.0]), np.array([0.5, 40.0])
    mapped = layout.rescale_params(tf_ops, tf.constant(params), 2, 3, "full",
                                   tf.constant(loc), tf.constant(scale),
                                   relative_floor=DIAG_SHIFT).numpy()
    y = rng.normal(size=(5, 2))
    new = mixtures.params_to_parts(mapped, 2, 3, "full", diag_shift=0.0)
    new_covs = new.covariance().numpy()[0]
    np.testing.assert_allclose(
        scipy_mixture_logpdf(loc + scale * y, np.exp(new.log_weights.numpy()[0]),
                             new.loc.numpy()[0], new_covs),
        scipy_mixture_logpdf(y, weights, means, covs) - np.log(scale).sum(), rtol=1e-6)


@pytest.mark.parametrize("covariance", KINDS)
@pytest.mark.parametrize("num_components", [1, 3])
def test_initial_params_take_one_scale_per_component(covariance, num_components):
    scales = np.array([0.5, 2.0, 9.0])[:num_components]
    locs = np.arange(2.0 * num_components).reshape(num_components, 2)
    params = layout.initial_params(tf_ops, 2, num_components, covariance, tf.constant(locs),
                                   scale=scales, diag_shift=0.0)
    parts = mixtures.params_to_parts(params, 2, num_components, covariance, diag_shift=0.0)
    np.testing.assert_allclose(parts.loc, locs, rtol=1e-12)
    np.testing.assert_allclose(parts.covariance(),
                               scales[:, None, None] ** 2 * np.eye(2), rtol=1e-6)


@pytest.mark.parametrize("num_params,multiple", [(1, 1), (3, 1), (1000, 1), (77, 64),
                                                 (1000, 256)])
def test_chunk_rows_is_the_largest_multiple_that_fits(num_params, multiple):
    rows = layout.chunk_rows(num_params, multiple)
    assert isinstance(rows, int) and rows % multiple == 0 and rows >= multiple
    assert rows * 4 * num_params <= layout.CHUNK_BYTES
    assert (rows + multiple) * 4 * num_params > layout.CHUNK_BYTES


def test_chunk_rows_is_one_batch_when_a_batch_exceeds_the_budget():
    assert layout.chunk_rows(2**24, 16) == 16
    assert layout.chunk_rows(2**24) == 1


def test_rescaled_entries_below_float32_exp_range_shift_by_the_log_scale():
    """Raw standard-deviation entries whose softplus underflows float32 (``exp(-120)``): with
    no floor the map is exactly ``x + log(scale)``, finite, never ``log(0)``."""
    # K=1, D=2, full: [logit | 2 means | L11, L10, L00 in fill order]
    params = tf.constant([[0.0, 1.0, 0.5, -200.0, 0.3, -120.0]], tf.float32)
    mapped = layout.rescale_params(tf_ops, params, 2, 1, "full", tf.constant([0.0, 0.0]),
                                   tf.constant([5.0, 1e-3])).numpy()
    fill = layout.tril_fill_indices(2)
    assert np.all(np.isfinite(mapped))
    np.testing.assert_allclose(mapped[0, 3 + fill[0, 0]], -120.0 + np.log(5.0), rtol=1e-6)
    np.testing.assert_allclose(mapped[0, 3 + fill[1, 1]], -200.0 + np.log(1e-3), rtol=1e-6)
