"""ensemble and predict_mixture over several models, against numpy references."""

import keras
import numpy as np
import pytest
from scipy import special

import mdn_layers


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
