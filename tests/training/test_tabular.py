"""fit_tabular and fit_tabular_ensemble: the tables recipe (raw inputs and targets, choices on
held-out rows, grid targets, refit) and its argument checks."""
import random

import numpy as np
import pytest

import mdn_layers


@pytest.mark.backend_neutral
@pytest.mark.slow
def test_fit_tabular_rejects_destructive_noise_and_predicts_in_raw_units():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 2)).astype("float32")
    y = (250.0 + 40.0 * x[:, :1] + 2.0 * rng.normal(size=(300, 1))).astype("float32")
    fit = mdn_layers.fit_tabular(x, y, num_components=2, noise_levels=[0.0, 1.0],
                                 max_epochs=60, patience=8, seed=0)
    assert isinstance(fit, mdn_layers.TabularFit)
    assert set(fit.validation_nll) == {0.0, 1.0}
    # Noise of one standard deviation blurs the signal: far worse held out, not chosen.
    assert fit.validation_nll[1.0] > fit.validation_nll[0.0] + 0.5
    assert fit.input_noise == 0.0 and 1 <= fit.epochs <= 60
    mixture = mdn_layers.predict_mixture(fit.model, x[:50])
    error = np.abs(mixture.mean().numpy() - (250.0 + 40.0 * x[:50, :1]))
    assert np.median(error) < 4.0                  # in the targets' units (truth sd 2)
    assert fit.validation_nll[0.0] < 3.5           # a density in raw units: log(2 sd) ~ 2.1


@pytest.mark.backend_neutral
@pytest.mark.parametrize("arguments, message", [
    ({"noise_levels": []}, "noise_levels"),
    ({"noise_levels": [-0.1]}, "noise_levels"),
    ({"noise_levels": [1.5]}, "noise_levels"),
    ({"validation_fraction": 0.0}, "validation_fraction"),
    ({"validation_fraction": 1.2}, "validation_fraction"),
    ({"validation_fraction": 0.99}, "too few rows"),
    ({"units": 0}, "units"),
    ({"max_epochs": 2.5}, "max_epochs"),
    ({"batch_size": -1}, "batch_size"),
    ({"patience": 0}, "patience"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": "fast"}, "learning_rate"),
    ({"grid_targets": "round"}, "grid_targets"),
    ({"num_components": []}, "num_components"),
    ({"num_components": [2, 0]}, "num_components"),
    ({"refit": "yes"}, "refit"),
])
def test_fit_tabular_names_the_bad_argument(arguments, message):
    x = np.zeros((40, 2), "float32")
    y = np.zeros((40, 1), "float32")
    with pytest.raises((ValueError, TypeError), match=message):
        mdn_layers.fit_tabular(x, y, max_epochs=1, **arguments)


@pytest.mark.backend_neutral
def test_fit_tabular_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="same N"):
        mdn_layers.fit_tabular(np.zeros((40, 2)), np.zeros((39, 1)), max_epochs=1)


@pytest.mark.backend_neutral
@pytest.mark.slow
def test_fit_tabular_ensemble_members_share_the_chosen_noise_and_form_one_mixture():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 2)).astype("float32")
    y = (50.0 + 10.0 * x[:, :1] + rng.normal(size=(200, 1))).astype("float32")
    fits = mdn_layers.fit_tabular_ensemble(x, y, members=3, num_components=2,
                                           noise_levels=[0.0, 1.0], max_epochs=40,
                                           patience=6, seed=5, refit=False)
    assert len(fits) == 3
    first, *others = fits
    assert set(first.validation_nll) == {0.0, 1.0} and first.input_noise == 0.0
    # Members after the first train one network each, at member 0's noise, not the last level.
    assert all(set(fit.validation_nll) == {0.0} and fit.input_noise == 0.0 for fit in others)
    weights = [np.concatenate([w.ravel() for w in fit.model.get_weights()]) for fit in fits]
    assert not np.allclose(weights[0], weights[1]) and not np.allclose(weights[1], weights[2])
    mixture = mdn_layers.predict_mixture([fit.model for fit in fits], x[:10])
    assert mixture.mixture_distribution.logits.shape == (10, 6)   # 3 members x K=2
    expected = np.log(np.mean([np.exp(mdn_layers.predict_mixture(fit.model, x[:10]).log_prob(
        y[:10]).numpy()) for fit in fits], axis=0))
    np.testing.assert_allclose(mixture.log_prob(y[:10]).numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.backend_neutral
@pytest.mark.parametrize("members", [0, -1, 2.5])
def test_fit_tabular_ensemble_names_a_bad_member_count(members):
    with pytest.raises((ValueError, TypeError), match="members"):
        mdn_layers.fit_tabular_ensemble(np.zeros((40, 2)), np.zeros((40, 1)), members=members,
                                        max_epochs=1)


@pytest.mark.backend_neutral
def test_fit_tabular_ensemble_checks_noise_levels_before_training():
    with pytest.raises(ValueError, match="noise_levels"):
        mdn_layers.fit_tabular_ensemble(np.zeros((40, 2)), np.zeros((40, 1)),
                                        noise_levels=[], max_epochs=1)


@pytest.mark.backend_neutral
@pytest.mark.parametrize("name, bad, message", [
    ("x", np.nan, r"`x` has 2 NaN or infinite entries \(in 2 rows\)"),
    ("x", np.inf, r"`x` has 2 NaN or infinite entries \(in 2 rows\)"),
    ("y", np.inf, r"`y` has 2 infinite entries \(in 2 rows\).*NaN marks a missing value"),
])
def test_fit_tabular_refuses_non_finite_rows_before_training(name, bad, message):
    x, y = np.zeros((40, 2), "float32"), np.zeros((40, 1), "float32")
    (x if name == "x" else y)[[3, 7], 0] = bad
    with pytest.raises(ValueError, match=message):
        mdn_layers.fit_tabular(x, y, max_epochs=1)
    x = np.zeros((40, 2))
    with pytest.raises(ValueError, match=r"target dims \[0\] of `y` have no observed value"):
        mdn_layers.fit_tabular(x, np.full((40, 1), np.nan), max_epochs=1)
    with pytest.raises(ValueError, match=r"`sample_weight` must have shape \[40\]"):
        mdn_layers.fit_tabular(x, np.zeros((40, 1)), sample_weight=np.ones(39), max_epochs=1)


@pytest.mark.backend_neutral
def test_missing_targets_and_sample_weights_train_with_the_missing_target_loss():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(200, 2))
    y = np.stack([x[:, 0], 2 * x[:, 0] + 0.1 * rng.normal(size=200)], -1)
    y[rng.random(y.shape) < 0.2] = np.nan                       # a fifth of the targets
    weight = rng.uniform(0.5, 2.0, size=200)
    fit = mdn_layers.fit_tabular(x, y, num_components=2, noise_levels=[0.05], max_epochs=20,
                                 sample_weight=weight)
    assert fit.model.loss.allow_missing
    mixture = mdn_layers.predict_mixture(fit.model, x[:20])
    assert np.all(np.isfinite(mixture.mean().numpy()))
    assert np.isfinite(fit.validation_nll[0.05])


@pytest.mark.backend_neutral
def test_raw_inputs_give_the_model_of_standardised_inputs():
    rng = np.random.default_rng(3)
    raw = rng.normal([500.0, -0.02, 7e4], [80.0, 0.001, 1e4], size=(160, 3))
    y = 100 + 0.05 * raw[:, :1] + rng.normal(size=(160, 1))
    standardised = (raw - raw.mean(0)) / raw.std(0)
    fits = [mdn_layers.fit_tabular(x, y, num_components=2, noise_levels=[0.1], max_epochs=4,
                                   seed=2) for x in (raw, standardised)]
    mixtures = [mdn_layers.predict_mixture(fit.model, x)
                for fit, x in zip(fits, (raw, standardised))]
    np.testing.assert_allclose(mixtures[0].log_prob(y).numpy(), mixtures[1].log_prob(y).numpy(),
                               rtol=1e-4, atol=1e-4)
    assert fits[0].epochs == fits[1].epochs


@pytest.mark.backend_neutral
def test_grid_targets_are_floored_or_dequantised_and_the_callers_generators_untouched():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 2))
    y = np.clip(np.round(5.5 + 1.5 * x[:, :1]), 3, 8)        # integer scores 3..8
    random.seed(11)
    np.random.seed(11)
    before = (random.random(), np.random.random())
    random.seed(11)
    np.random.seed(11)
    floored = mdn_layers.fit_tabular(x, y, num_components=3, noise_levels=[0.05],
                                     max_epochs=30, seed=0)
    assert (random.random(), np.random.random()) == before
    assert floored.grid_step.tolist() == [1.0]
    stddevs = mdn_layers.predict_mixture(floored.model, x).components_distribution.stddev()
    assert stddevs.numpy().min() >= 1.0                       # the grid step
    dequantised = mdn_layers.fit_tabular(x, y, num_components=3, noise_levels=[0.05],
                                         max_epochs=3, grid_targets="dequantize", seed=0)
    assert dequantised.grid_step.tolist() == [1.0]
    assert dequantised.model.layers[-1].target_floor is None


@pytest.mark.backend_neutral
def test_an_ensemble_reuses_member_zero_and_refits_members_on_every_row():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 2))
    y = 3 * x[:, :1] + rng.normal(size=(120, 1))
    first = mdn_layers.fit_tabular(x, y, num_components=[1, 2], noise_levels=[0.1],
                                   max_epochs=4, seed=7)
    assert first.num_components in (1, 2) and set(first.components_nll) == {1, 2}
    assert len(first.learning_rates) == first.epochs
    fits = mdn_layers.fit_tabular_ensemble(x, y, members=3, seed=7, first=first,
                                           num_components=[1, 2], noise_levels=[0.1],
                                           max_epochs=4)
    assert fits[0] is first
    assert all(fit.num_components == first.num_components and fit.validation_nll == {}
               for fit in fits[1:])
    with pytest.raises(TypeError, match="`first`"):
        mdn_layers.fit_tabular_ensemble(x, y, members=2, first=first.model)


@pytest.mark.backend_neutral
def test_the_tabular_network_is_the_documented_forward_pass():
    """``Input -> Normalization -> GaussianNoise -> Dense(units, relu) -> head``: at prediction
    the noise is off, and the params are the numpy forward pass of the model's own weights
    (inputs standardised by the training columns' mean and variance, a constant column to 0)."""
    import keras

    from mdn_layers.training import networks
    rng = np.random.default_rng(4)
    x = rng.normal([3.0, -1.0, 5.0], [2.0, 0.5, 1.0], size=(40, 3)).astype("float32")
    x[:, 2] = 5.0
    head = mdn_layers.MixtureDensity(1, 2)
    model = networks.tabular_model(3, head, 0.3, 8, networks.input_normalization(x))
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert len(dense) == 1 and dense[0].units == 8
    kernel, bias = dense[0].get_weights()
    std = x.astype("float64").std(0)
    z = (x - x.astype("float64").mean(0)) / np.where(std > 0, std, 1.0)
    hidden = np.maximum(z @ kernel + bias, 0.0)
    expected = hidden @ keras.ops.convert_to_numpy(head.kernel) + keras.ops.convert_to_numpy(
        head.bias)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
