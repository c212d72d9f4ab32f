"""Differential tests against keras-mdn-layer (Keras 3, diagonal MDN) on the same mixtures."""

import numpy as np
import pytest
from conftest import DIAG_SHIFT, softplus_inverse

import mdn_layers

# The training path: these tests also run under KERAS_BACKEND=jax (see README).
pytestmark = pytest.mark.backend_neutral

keras_mdn_layer = pytest.importorskip("keras_mdn_layer")  # needs Python >= 3.11
D, K = 2, 3


def peer_and_ours(rng, batch=1):
    """The same diagonal mixtures in keras-mdn-layer's layout and in ours."""
    logits = rng.normal(size=(batch, K))
    means = rng.normal(0, 3, (batch, K, D))
    sds = rng.uniform(0.2, 1.0, (batch, K, D))
    peer = np.concatenate([means.reshape(batch, -1), sds.reshape(batch, -1), logits], -1)
    blocks = np.concatenate([means, softplus_inverse(sds - DIAG_SHIFT)], -1)
    ours = np.concatenate([logits, blocks.reshape(batch, -1)], -1)
    return peer, ours, (logits, means, sds)


def test_same_nll_as_keras_mdn_layer(rng):
    peer, ours, _ = peer_and_ours(rng, batch=16)
    y = rng.normal(0, 3, (16, D))
    theirs = keras_mdn_layer._mdn_log_prob(y, *keras_mdn_layer._split_mdn_params(peer, D, K),
                                           D, K)
    loss = mdn_layers.MixtureNLL(D, K, "diag")
    np.testing.assert_allclose(loss.call(y, ours), -np.asarray(theirs), rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("temperature,sigma_temperature", [(1.0, 1.0), (0.5, 0.3)])
def test_same_sampling_distribution_as_keras_mdn_layer(rng, temperature, sigma_temperature):
    peer, ours, _ = peer_and_ours(rng)
    np.random.seed(0)
    theirs = np.array([keras_mdn_layer.sample_from_output(peer[0], D, K, temp=temperature,
                                                          sigma_temp=sigma_temperature)
                       for _ in range(20_000)])
    mixture = mdn_layers.mixture_from_params(ours[0], D, K, "diag")
    draws = mdn_layers.sample(mixture, 20_000, temperature=temperature,
                              sigma_temperature=sigma_temperature, seed=1).numpy()
    spread = np.sqrt(np.var(theirs, 0) / 20_000 * 2)
    np.testing.assert_array_less(np.abs(draws.mean(0) - theirs.mean(0)), 5 * spread)
    np.testing.assert_allclose(np.cov(draws.T), np.cov(theirs.T), rtol=0.06, atol=0.05)
