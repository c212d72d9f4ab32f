
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import random_mixture, tfp_mixture

import mdn_layers

tfd = tfp.distributions


def analytic_moments(weights, means, covs):
    mean = weights @ means
    centred = means - mean
    cov = np.einsum("k,kij->ij", weights, covs + centred[:, :, None] * centred[:, None, :])
    return mean, cov


def test_sample_moments_match_analytic_moments(rng):
    weights, means, covs = random_mixture(rng, 3, 3)
    draws = mdn_layers.sample(tfp_mixture(weights, means, covs), 200_000, seed=11).numpy()
    mean, cov = analytic_moments(weights, means, covs)
    standard_error = np.sqrt(np.diag(cov) / len(draws))
    np.testing.assert_array_less(np.abs(draws.mean(0) - mean), 5 * standard_error)
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.03, atol=0.03)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_divides_logits(rng, temperature):
    weights = np.array([0.6, 0.3, 0.1])
    means = np.array([[-10.0], [0.0], [10.0]])
    mixture = tfp_mixture(weights, means, np.ones((3, 1, 1)))
    draws = mdn_layers.sample(mixture, 100_000, temperature=temperature,
                              sigma_temperature=0.0, seed=3).numpy()[:, 0]
    frequencies = np.array([(draws == m).mean() for m in means[:, 0]])
    expected = weights ** (1 / temperature) / np.sum(weights ** (1 / temperature))
    np.testing.assert_allclose(frequencies, expected, atol=5 * np.sqrt(0.25 / 100_000))


@pytest.mark.parametrize("sigma_temperature", [0.25, 1.0, 3.0])
def test_sigma_temperature_multiplies_covariance(rng, sigma_temperature):
    _, means, covs = random_mixture(rng, 1, 2)
    draws = mdn_layers.sample(tfp_mixture(np.ones(1), means, covs), 100_000,
                              sigma_temperature=sigma_temperature, seed=5).numpy()
    np.testing.assert_allclose(np.cov(draws.T), sigma_temperature * covs[0], rtol=0.03,
                               atol=0.01)


def test_zero_temperatures_give_most_probable_component_mean(rng):
    weights, means, covs = random_mixture(rng, 4, 2, batch=(3,))
    draws = mdn_layers.sample(tfp_mixture(weights, means, covs), 7, temperature=0.0,
                              sigma_temperature=0.0).numpy()
    expected = means[np.arange(3), weights.argmax(-1)]
    np.testing.assert_array_equal(draws, np.broadcast_to(expected, (7, 3, 2)))
    noisy = mdn_layers.sample(tfp_mixture(weights, means, covs), 5000, temperature=0.0,
                              seed=1).numpy()
    np.testing.assert_allclose(noisy.mean(0), expected, atol=0.1)


def test_seeds_are_reproducible_and_distinct(rng):
    mixture = tfp_mixture(*random_mixture(rng, 3, 2, batch=(4,)))
    a = mdn_layers.sample(mixture, 10, seed=42)
    b = mdn_layers.sample(mixture, 10, seed=42)
    c = mdn_layers.sample(mixture, 10, seed=43)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == (10, 4, 2)


def test_sample_in_tf_function_and_on_diagonal_conditioned_mixtures(rng):
    params = rng.normal(size=(6, mdn_layers.params_size(3, 2, "diag"))).astype("float32")
    mixture = mdn_layers.mixture_from_params(params, 3, 2, "diag")
    conditioned = mdn_layers.condition(mixture, [0], np.zeros((6, 1), "float32"))

    @tf.function
    def draw(seed):
        return mdn_layers.sample(conditioned, (2, 3), temperature=0.7, seed=seed)

    assert draw(tf.constant([1, 2])).shape == (2, 3, 6, 2)
    assert mdn_layers.sample(mdn_layers.marginalize(mixture, [2]), seed=1).shape == (6, 1)


def test_sample_single_normal(rng):
    normal = tfd.MultivariateNormalDiag([1.0, -1.0], [0.1, 0.2])
    draws = mdn_layers.sample(normal, 20_000, seed=2).numpy()
    np.testing.assert_allclose(draws.mean(0), [1.0, -1.0], atol=0.01)
    np.testing.assert_allclose(draws.std(0), [0.1, 0.2], rtol=0.03)


@pytest.mark.parametrize("kwargs,message", [
    (dict(temperature=-1.0), "`temperature` must be a finite float >= 0; received -1.0."),
    (dict(sigma_temperature=np.nan),
     "`sigma_temperature` must be a finite float >= 0; received nan."),
    (dict(sample_shape=(-2,)),
     "`sample_shape` must be a non-negative int or a sequence of them; received (-2,)."),
    (dict(sample_shape=2.5),
     "`sample_shape` must be a non-negative int or a sequence of them; received 2.5.")])
def test_sample_validation(rng, kwargs, message):
    mixture = tfp_mixture(*random_mixture(rng, 2, 2))
    with pytest.raises(ValueError) as error:
        mdn_layers.sample(mixture, **kwargs)
    assert str(error.value) == message


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_samples_over_two_batch_axes_have_each_mixtures_moments(rng, covariance):
    """Batch ``[2, 3]``: each of the six mixtures' sample mean and covariance match its
    analytic ones (TFP), so no row draws from another row's components."""
    params = rng.normal(size=(2, 3, mdn_layers.params_size(2, 3, covariance)))
    mixture = mdn_layers.mixture_from_params(params, 2, 3, covariance)
    draws = mdn_layers.sample(mixture, 40000, seed=5).numpy()
    assert draws.shape == (40000, 2, 3, 2)
    mean, covariance_matrix = mixture.mean().numpy(), mixture.covariance().numpy()
    for i in range(2):
        for j in range(3):
            scale = np.sqrt(np.diag(covariance_matrix[i, j]))
            np.testing.assert_allclose(draws[:, i, j].mean(0), mean[i, j],
                                       atol=0.03 * scale.max())
            np.testing.assert_allclose(np.cov(draws[:, i, j].T), covariance_matrix[i, j],
                                       atol=0.06 * scale.max() ** 2)


def test_sample_refuses_string_temperatures_and_takes_a_tensor_int_seed():
    mixture = mdn_layers.mixture_from_params(np.zeros((3, 18), "float32"), 2, 3)
    with pytest.raises(ValueError, match="temperature"):
        mdn_layers.sample(mixture, 4, temperature="1")
    np.testing.assert_array_equal(mdn_layers.sample(mixture, 4, seed=tf.constant(3)),
                                  mdn_layers.sample(mixture, 4, seed=3))


def test_sample_shapes_may_hold_zeros(rng):
    mixture = tfp_mixture(*random_mixture(rng, 2, 2, batch=(3,)))
    assert mdn_layers.sample(mixture, 0, seed=1).shape == (0, 3, 2)
    assert mdn_layers.sample(mixture, (4, 0), seed=1).shape == (4, 0, 3, 2)
    assert mdn_layers.sample(mixture, np.int64(2), seed=1).shape == (2, 3, 2)


def test_every_int_seed_has_its_own_repeatable_stream(rng):
    mixture = tfp_mixture(*random_mixture(rng, 2, 2))
    seeds = [0, 1, 2, 3, 63, 2**40, -1, -2]
    draws = [mdn_layers.sample(mixture, 3, seed=seed).numpy() for seed in seeds]
    for i, first in enumerate(draws):
        np.testing.assert_array_equal(mdn_layers.sample(mixture, 3, seed=seeds[i]), first)
        assert all(not np.allclose(first, other) for other in draws[i + 1:])


def test_stateless_seed_tensors_eagerly_and_bad_seeds_named(rng):
    mixture = tfp_mixture(*random_mixture(rng, 2, 2, batch=(3,)))
    pair = mdn_layers.sample(mixture, 4, seed=tf.constant([5, 6]))
    np.testing.assert_array_equal(pair, mdn_layers.sample(mixture, 4, seed=np.array([5, 6])))
    assert not np.allclose(pair, mdn_layers.sample(mixture, 4, seed=tf.constant([5, 7])))
    for seed in (tf.constant(1.5), np.zeros(3, "int32")):
        with pytest.raises(ValueError, match=r"^`seed` must be an int, None or a shape-\[2\] "
                                             r"stateless seed; received shape \(\d*,?\)"):
            mdn_layers.sample(mixture, 4, seed=seed)
