
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
    ({"validation_fraction": 0.001}, "too few rows"),
    ({"units": 0}, "units"),
    ({"max_epochs": 2.5}, "max_epochs"),
    ({"batch_size": -1}, "batch_size"),
    ({"patience": 0}, "patience"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": "fast"}, "learning_rate"),
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
                                           patience=6, seed=5)
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
@pytest.mark.parametrize("name", ["x", "y"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_fit_tabular_refuses_non_finite_rows_before_training(name, bad):
    x, y = np.zeros((40, 2), "float32"), np.zeros((40, 1), "float32")
    (x if name == "x" else y)[[3, 7], 0] = bad
    with pytest.raises(ValueError, match=rf"`{name}` has 2 NaN or infinite entries \(in 2 rows\)"):
        mdn_layers.fit_tabular(x, y, max_epochs=1)
