"""ensemble and predict_mixture over several models, against numpy references."""

import keras
import numpy as np
import pytest
import tensorflow_probability as tfp
from scipy import special

import mdn_layers

tfd = tfp.distributions


def _members(rng, num_members, event_size=2, num_components=3, covariance="full", rows=6):
    size = mdn_layers.params_size(event_size, num_components, covariance)
    return [mdn_layers.mixture_from_params(
        rng.normal(size=(rows, size)).astype("float64"), event_size, num_components, covariance)
        for _ in range(num_members)]


@pytest.mark.parametrize("weights", [None, [0.5, 0.3, 0.2]])
def test_ensemble_density_is_the_weighted_average_of_the_members(rng, weights):
    members = _members(rng, 3)
    y = rng.normal(size=(6, 2))
    member_log_probs = np.stack([member.log_prob(y).numpy() for member in members])  # [M, N]
    log_weights = np.log(np.full(3, 1 / 3) if weights is None else np.asarray(weights))
    expected = special.logsumexp(member_log_probs + log_weights[:, None], axis=0)
    combined = mdn_layers.ensemble(members, weights)
    np.testing.assert_allclose(combined.log_prob(y), expected, rtol=1e-10)
    assert combined.mixture_distribution.logits.shape == (6, 9)


def test_ensemble_moments_follow_the_law_of_total_covariance(rng):
    members = _members(rng, 4, event_size=3, num_components=2)
    means = np.stack([member.mean().numpy() for member in members])       # [M, N, D]
    covariances = np.stack([member.covariance().numpy() for member in members])
    mean = means.mean(0)
    centred = means - mean
    total = covariances.mean(0) + np.einsum("mni,mnj->nij", centred, centred) / 4
    combined = mdn_layers.ensemble(members)
    np.testing.assert_allclose(mdn_layers.summaries.mean(combined), mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mdn_layers.summaries.covariance(combined), total, rtol=1e-9,
                               atol=1e-12)


def test_ensemble_of_mixed_kinds_conditions_like_its_members(rng):
    """A diagonal and a full member: the ensemble is full, and conditioning it re-weights the
    members by their marginal densities of the observed value (Bayes, numpy)."""
    full, diag = _members(rng, 1)[0], _members(rng, 1, covariance="diag")[0]
    combined = mdn_layers.ensemble([full, diag])
    y1 = rng.normal(size=(6, 1))
    given = mdn_layers.condition(combined, [1], y1)
    marginal = [mdn_layers.marginalize(member, [1]).log_prob(y1).numpy() for member in (full, diag)]
    conditional = [mdn_layers.condition(member, [1], y1) for member in (full, diag)]
    y0 = rng.normal(size=(6, 1))
    log_member_weights = np.stack(marginal) - special.logsumexp(np.stack(marginal), axis=0)
    expected = special.logsumexp(
        np.stack([c.log_prob(y0).numpy() for c in conditional]) + log_member_weights, axis=0)
    np.testing.assert_allclose(given.log_prob(y0), expected, rtol=1e-8)


@pytest.mark.parametrize("mixtures, weights, match", [
    ([], None, "at least one"),
    ("mixture", None, "sequence"),
    (None, [1.0, -1.0], "positive"),
    (None, [1.0], "2 positive"),
])
def test_ensemble_refuses_bad_arguments(rng, mixtures, weights, match):
    if mixtures is None:
        mixtures = _members(rng, 2)
    with pytest.raises(ValueError, match=match):
        mdn_layers.ensemble(mixtures, weights)


def test_ensemble_refuses_members_of_other_shapes(rng):
    with pytest.raises(ValueError, match="batch shape"):
        mdn_layers.ensemble(_members(rng, 1, rows=6) + _members(rng, 1, rows=5))
    with pytest.raises(ValueError, match="event shape"):
        mdn_layers.ensemble(_members(rng, 1) + _members(rng, 1, event_size=3))


def test_predict_mixture_of_a_model_list_is_their_ensemble(rng):
    x = rng.normal(size=(11, 3)).astype("float32")
    models = [keras.Sequential([keras.Input((3,)), mdn_layers.MixtureDensity(2, k)])
              for k in (2, 3)]
    combined = mdn_layers.predict_mixture(models, x)
    y = rng.normal(size=(11, 2)).astype("float32")
    members = [mdn_layers.mixture_from_params(model(x), 2, model.layers[-1].num_components)
               for model in models]
    expected = special.logsumexp(np.stack([m.log_prob(y).numpy() for m in members]), axis=0)
    np.testing.assert_allclose(combined.log_prob(y), expected - np.log(2), rtol=1e-5)
    assert combined.mixture_distribution.logits.shape == (11, 5)
    with pytest.raises(ValueError, match="empty list"):
        mdn_layers.predict_mixture([], x)


@pytest.mark.parametrize("covariance", ["full", "diag", "spherical"])
@pytest.mark.parametrize("weights", [None, [2.0, 1.0, 1.0]])
def test_ensemble_over_two_batch_axes_keeps_the_kind_and_normalised_weights(rng, covariance,
                                                                           weights):
    size = mdn_layers.params_size(2, 2, covariance)
    members = [mdn_layers.mixture_from_params(rng.normal(size=(2, 3, size)).astype("float32"),
                                              2, 2, covariance) for _ in range(3)]
    combined = mdn_layers.ensemble(members, weights)
    y = rng.normal(size=(2, 3, 2)).astype("float32")
    member_weights = np.full(3, 1 / 3) if weights is None else np.array(weights) / 4
    expected = special.logsumexp(
        np.stack([m.log_prob(y).numpy().astype("float64") for m in members])
        + np.log(member_weights)[:, None, None], axis=0)
    assert combined.dtype == "float32" and combined.batch_shape == (2, 3)
    np.testing.assert_allclose(combined.log_prob(y), expected, rtol=2e-6)
    # Its logits are the log weights themselves (they sum to one), member by member.
    logits = combined.mixture_distribution.logits.numpy().astype("float64")
    np.testing.assert_allclose(special.logsumexp(logits, axis=-1), 0.0, atol=1e-6)
    np.testing.assert_allclose(special.logsumexp(logits.reshape(2, 3, 3, 2), axis=-1),
                               np.broadcast_to(np.log(member_weights), (2, 3, 3)), atol=1e-6)
    # Diagonal and spherical members stay diagonal.
    kind = "MultivariateNormalTriL" if covariance == "full" else "MultivariateNormalDiag"
    assert type(combined.components_distribution).__name__ == kind


def test_ensemble_of_scalar_event_mixtures_is_one_of_normals(rng):
    members = [tfd.MixtureSameFamily(tfd.Categorical(logits=rng.normal(size=(4, 2))),
                                     tfd.Normal(rng.normal(size=(4, 2)),
                                                rng.uniform(0.5, 1.5, (4, 2))))
               for _ in range(2)]
    combined = mdn_layers.ensemble(members)
    assert combined.event_shape == () and combined.batch_shape == (4,)
    y = rng.normal(size=4)
    expected = special.logsumexp([m.log_prob(y).numpy() for m in members], axis=0) - np.log(2)
    np.testing.assert_allclose(combined.log_prob(y), expected, rtol=1e-10)


def test_ensemble_errors_name_the_member_and_both_shapes(rng):
    def refused(mixtures, message):
        with pytest.raises(ValueError, match="^" + message):
            mdn_layers.ensemble(mixtures)

    refused(mdn_layers.ensemble, r"`mixtures` must be a sequence of mixtures; received "
                                 r"function\.$")
    refused([], r"`mixtures` must hold at least one mixture; received none\.$")
    wide = _members(rng, 1, rows=6)
    refused(wide + _members(rng, 1, rows=6) + _members(rng, 1, event_size=3),
            r"`mixtures` must share one event shape; member 0 has event size 2, member 2 has 3\.$")
    scalar = tfd.MixtureSameFamily(tfd.Categorical(logits=np.zeros((6, 2))),
                                   tfd.Normal(np.zeros((6, 2)), np.ones((6, 2))))
    refused([scalar] + wide, r"`mixtures` must share one event shape; member 0 has event size "
                             r"\(\) \(scalar\), member 1 has 2\.$")
    refused(wide + [scalar], r"`mixtures` must share one event shape; member 0 has event size "
                             r"2, member 1 has \(\) \(scalar\)\.$")
    size = mdn_layers.params_size(2, 3)
    grid = [mdn_layers.mixture_from_params(rng.normal(size=shape + (size,)), 2, 3)
            for shape in [(2, 3), (2, 4)]]
    refused(grid, r"`mixtures` must share one batch shape; member 0 has \(2, 3\), member 1 has "
                  r"\(2, 4\)\.$")
    refused(wide + [mdn_layers.mixture_from_params(rng.normal(size=(6, size)).astype("float32"),
                                                   2, 3)],
            r"`mixtures` must share one dtype; member 0 is float64, member 1 is float32\.$")
    with pytest.raises(ValueError, match="`weights`"):
        mdn_layers.ensemble(wide * 2, weights=[1.0, 0.0])


@pytest.mark.parametrize("scale", [1e308, 1e-300])     # their sum overflows; tiny ones
def test_ensemble_weights_far_from_one_keep_their_ratios(rng, scale):
    members = _members(rng, 3)
    combined = mdn_layers.ensemble(members, weights=[1.5 * scale, scale, scale])
    y = rng.normal(size=(6, 2))
    expected = special.logsumexp(np.stack([m.log_prob(y).numpy() for m in members])
                                 + np.log([3 / 7, 2 / 7, 2 / 7])[:, None], axis=0)
    np.testing.assert_allclose(combined.log_prob(y), expected, rtol=1e-10)
