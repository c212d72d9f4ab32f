"""Property-based tests over random mixtures, shapes and configs (hypothesis)."""

import keras
import numpy as np
import pytest
import tensorflow_probability as tfp
from conftest import requires_float64, scipy_mixture_logpdf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import integrate, special

import mdn_layers

# The training path: these tests also run under KERAS_BACKEND=jax (see README).
pytestmark = pytest.mark.backend_neutral

FAST = settings(max_examples=20, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
configs = st.tuples(st.integers(1, 4), st.integers(1, 4),
                    st.sampled_from(["full", "diag", "spherical"]))


def numpy_mixture(params, event_size, num_components, covariance, diag_shift=1e-5):
    """Weights, means and covariances of one params vector, from the documented layout."""
    softplus = np.logaddexp(0.0, params)
    weights = special.softmax(params[:num_components])
    rest = params[num_components:].reshape(num_components, -1)
    means, raw = rest[:, :event_size], rest[:, event_size:]
    covs = []
    for entries, positive in zip(raw, softplus[num_components:].reshape(num_components, -1)
                                 [:, event_size:]):
        if covariance == "full":
            tril = tfp.math.fill_triangular(entries).numpy()
            diagonal = tfp.math.fill_triangular(positive).numpy().diagonal() + diag_shift
            np.fill_diagonal(tril, diagonal)
        else:
            tril = np.diag(np.broadcast_to(positive + diag_shift, (event_size,)))
        covs.append(tril @ tril.T)
    return weights, means, np.array(covs)


@requires_float64
@FAST
@given(config=configs, seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 4))
def test_loss_is_minus_log_density_and_batched_equals_per_example(config, seed, batch):
    event_size, num_components, covariance = config
    rng = np.random.default_rng(seed)
    size = mdn_layers.params_size(event_size, num_components, covariance)
    params = rng.normal(0, 1, (batch, size))
    y = rng.normal(0, 2, (batch, event_size))
    per_sample = mdn_layers.MixtureNLL(event_size, num_components, covariance).call(y, params)
    for row in range(batch):
        reference = -scipy_mixture_logpdf(
            y[row:row + 1], *numpy_mixture(params[row], event_size, num_components, covariance))
        np.testing.assert_allclose(per_sample[row], reference[0], rtol=1e-8)


@pytest.mark.slow
@FAST
@given(seed=st.integers(0, 2**31 - 1), data=st.data())
def test_condition_is_invariant_to_the_order_of_observed_indices(seed, data):
    rng = np.random.default_rng(seed)
    params = rng.normal(size=(3, mdn_layers.params_size(4, 3)))
    mixture = mdn_layers.mixture_from_params(params, 4, 3)
    observed = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True))
    shuffled = data.draw(st.permutations(observed))
    y = rng.normal(size=(3, 4))
    unobserved = [d for d in range(4) if d not in observed]
    a = mdn_layers.condition(mixture, observed, y[:, observed]).log_prob(y[:, unobserved])
    b = mdn_layers.condition(mixture, shuffled, y[:, shuffled]).log_prob(y[:, unobserved])
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.slow
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), covariance=st.sampled_from(["full", "diag"]),
       kept=st.integers(0, 1))
def test_marginal_density_equals_integrating_out_by_quadrature(seed, covariance, kept):
    rng = np.random.default_rng(seed)
    params = rng.normal(size=mdn_layers.params_size(2, 3, covariance))
    mixture = mdn_layers.mixture_from_params(params, 2, 3, covariance)
    value = rng.normal()
    dropped = 1 - kept

    others = np.linspace(-60, 60, 400_001)
    points = np.empty((len(others), 2))
    points[:, kept], points[:, dropped] = value, others
    integral = integrate.simpson(np.exp(mixture.log_prob(points).numpy()), x=others)
    marginal = float(np.exp(mdn_layers.marginalize(mixture, [kept]).log_prob([value])))
    np.testing.assert_allclose(marginal, integral, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs)
def test_save_load_round_trip_for_random_configs(tmp_path, config):
    event_size, num_components, covariance = config
    model = keras.Sequential([keras.Input((2,)),
                              mdn_layers.MixtureDensity(event_size, num_components, covariance,
                                                        initial_scale=0.3)])
    model.compile("adam", loss=mdn_layers.MixtureNLL(event_size, num_components, covariance))
    path = tmp_path / f"{event_size}-{num_components}-{covariance}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.linspace(-1, 1, 10, dtype="float32").reshape(5, 2)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.layers[-1].get_config() == model.layers[-1].get_config()
