"""The head's shared behaviour: adapt (target statistics as saved state, a data-aware start,
raw units) and the scale floor."""

import re
import warnings

import keras
import numpy as np
import pytest
import scipy.stats
from conftest import warned_here

import mdn_layers


def _fit_and_score(rng_seed, x, y, x_test, y_test, adapt):
    keras.utils.set_random_seed(rng_seed)
    head = mdn_layers.MixtureDensity(1, 2)
    if adapt:
        head.adapt(y)
        targets, test_targets = y, y_test
    else:
        mean, std = y.mean(0), y.std(0)
        targets, test_targets = (y - mean) / std, y_test
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(16, activation="tanh"),
                              head])
    model.compile(keras.optimizers.Adam(0.01), loss=mdn_layers.MixtureNLL.for_layer(head))
    history = model.fit(x, targets, epochs=30, batch_size=64, verbose=0)
    mixture = mdn_layers.predict_mixture(model, x_test)
    if not adapt:
        mixture = mdn_layers.rescale(mixture, mean, std)
    return float(-np.mean(mixture.log_prob(test_targets))), history.history["loss"][-1]


@pytest.mark.parametrize("bad, match", [
    (np.ones((5, 3)), r"shape \[\.\.\., 2\]"),
    (np.array([[1.0, np.inf]] * 3), "inf"),
    (np.array([[1.0, np.nan]] * 3), r"dims without one: \[1\]"),
    ("prices", "array of numbers"),
])
def test_adapt_refuses_bad_targets_by_name(bad, match):
    with pytest.raises(ValueError, match=match):
        mdn_layers.MixtureDensity(2, 3).adapt(bad)


@pytest.mark.parametrize("loc, scale, match", [
    ([0.0, 1.0], None, "both or neither"),
    ([0.0], [1.0, 1.0], "2 finite floats"),
    ([0.0, 1.0], [1.0, -1.0], "positive"),
    ([0.0, np.nan], [1.0, 1.0], "finite"),
])
def test_target_statistics_arguments_are_checked(loc, scale, match):
    with pytest.raises(ValueError, match=match):
        mdn_layers.MixtureDensity(2, 3, target_loc=loc, target_scale=scale)


@pytest.mark.backend_neutral
@pytest.mark.parametrize("diag_shift", [0.0, 0.05])
@pytest.mark.parametrize("covariance", ["full", "diag", "spherical"])
def test_adapted_params_are_the_standardised_mixture_in_target_units(rng, covariance,
                                                                     diag_shift):
    """log p_raw(y) = log p_std((y - loc) / scale) - sum(log scale), the change of variables,
    with the standardised density from TFP on the same kernel and bias, for target scales
    from 1e-3 to 1e5: ``diag_shift`` is a floor in standardised units (it scales too)."""
    loc = np.array([2e5, -7.0, 0.5])
    scale = np.array([3e4, 1e-3, 2.0]) if covariance != "spherical" else np.full(3, 40.0)
    features = rng.normal(size=(64, 5)).astype("float32")
    plain = mdn_layers.MixtureDensity(3, 4, covariance, diag_shift=diag_shift)
    adapted = mdn_layers.MixtureDensity(3, 4, covariance, diag_shift=diag_shift,
                                        target_loc=loc, target_scale=scale)
    plain.build((None, 5))
    adapted.build((None, 5))
    adapted.set_weights(plain.get_weights() + [loc, scale])
    z = rng.normal(size=(64, 3))
    y = loc + scale * z
    standard = mdn_layers.mixture_from_params(
        keras.ops.convert_to_numpy(plain(features)).astype("float64"), 3, 4, covariance,
        diag_shift)
    expected = standard.log_prob(z).numpy() - np.log(scale).sum()
    raw = mdn_layers.mixture_from_params(
        keras.ops.convert_to_numpy(adapted(features)).astype("float64"),
        **adapted.mixture_config())
    # float32 means near -7 carry ~5e-7 of round-off: up to a few 1e-3 nats for a component
    # 1e-4 wide in those units
    np.testing.assert_allclose(raw.log_prob(y).numpy(), expected, rtol=1e-5, atol=5e-3)


@pytest.mark.slow
@pytest.mark.backend_neutral
def test_raw_targets_after_adapt_score_like_hand_standardisation(rng):
    """Prices around 3e5 with spread 5e4: adapt + raw targets reaches the held-out NLL (in
    dollars) of hand standardisation + rescale, and its training loss is in dollars too."""
    x = rng.uniform(-1, 1, size=(1200, 1)).astype("float32")
    y = (3e5 + 5e4 * (np.sin(3 * x) + 0.3 * rng.normal(size=x.shape))).astype("float32")
    x_test = rng.uniform(-1, 1, size=(2000, 1)).astype("float32")
    y_test = (3e5 + 5e4 * (np.sin(3 * x_test) + 0.3 * rng.normal(size=x_test.shape)))
    by_hand, _ = _fit_and_score(0, x, y, x_test, y_test, adapt=False)
    adapted, train_loss = _fit_and_score(0, x, y, x_test, y_test, adapt=True)
    oracle = -np.mean(scipy.stats.norm(3e5 + 5e4 * np.sin(3 * x_test), 1.5e4).logpdf(y_test))
    assert abs(adapted - by_hand) < 0.1, (adapted, by_hand)
    assert adapted - oracle < 0.15, (adapted, oracle)
    assert abs(train_loss - oracle) < 0.3  # the loss itself is in dollars (about 11 nats)


@pytest.mark.backend_neutral
def test_adapt_before_and_after_build_give_the_same_start_and_saved_state(rng, tmp_path):
    y = rng.gamma(2.0, 3e4, size=(300, 1))
    early = mdn_layers.MixtureDensity(1, 3).adapt(y)
    model = keras.Sequential([keras.Input((2,)), early])
    late = mdn_layers.MixtureDensity(1, 3)
    keras.Sequential([keras.Input((2,)), late])
    late.adapt(y)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(early.bias),
                               keras.ops.convert_to_numpy(late.bias), rtol=1e-6)
    path = tmp_path / "adapted.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = rng.normal(size=(7, 2)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    head = loaded.layers[-1]
    np.testing.assert_allclose(head.target_loc, [np.mean(y)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head.target_scale_weight), [np.std(y)],
                               rtol=1e-6)


def test_unadapted_heads_have_no_target_state():
    head = mdn_layers.MixtureDensity(2, 3)
    keras.Sequential([keras.Input((4,)), head])
    assert [weight.name for weight in head.weights] == ["kernel", "bias"]
    assert head.get_config()["target_loc"] is None


def test_tf_keras_head_adapts_the_same_way(rng):
    import tf_keras

    from mdn_layers import tfp_layers
    y = rng.normal(5e3, 2e2, size=(200, 2))
    ours = tfp_layers.MixtureDensity(2, 3).adapt(y)
    tf_keras.Sequential([tf_keras.Input((4,)), ours])
    twin = mdn_layers.MixtureDensity(2, 3).adapt(y)
    keras.Sequential([keras.Input((4,)), twin])
    np.testing.assert_allclose(ours.bias.numpy(), keras.ops.convert_to_numpy(twin.bias),
                               rtol=1e-5, atol=1e-6)
    features = rng.normal(size=(9, 4)).astype("float32")
    ours.kernel.assign(keras.ops.convert_to_numpy(twin.kernel))
    mixture = ours(features)
    np.testing.assert_allclose(
        mixture.log_prob(y[:9]),
        mdn_layers.mixture_from_params(keras.ops.convert_to_numpy(twin(features)), 2, 3)
        .log_prob(y[:9]), rtol=1e-5)


def _grid_data(rng, n=600):
    """Inputs and integer scores 3..8 that the inputs nearly determine (a collapse magnet)."""
    x = rng.normal(size=(n, 2)).astype("float32")
    y = np.clip(np.round(5.5 + 1.5 * x[:, :1]), 3, 8).astype("float32")
    return x, y


def _component_stddevs(model, x):
    mixture = mdn_layers.predict_mixture(model, x)
    return mixture.components_distribution.stddev().numpy()


def _trained(head, x, y, epochs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(32, activation="relu"),
                              head])
    model.compile(keras.optimizers.Adam(0.02), loss=mdn_layers.MixtureNLL.for_layer(head))
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.mark.backend_neutral
def test_adapt_warns_on_a_grid_target_and_the_grid_floor_holds_in_training(rng):
    x, y = _grid_data(rng)
    with pytest.warns(mdn_layers.GridTargetWarning, match=r"grid \(steps \[1\.0\]\).*"
                      r"scale_floor='grid'") as caught:
        collapsing = mdn_layers.MixtureDensity(1, 5).adapt(y)
    assert warned_here(caught[0], __file__)        # the warning names the caller's line
    floored = mdn_layers.MixtureDensity(1, 5, scale_floor="grid").adapt(y)
    floor = 1.0                                         # the grid step
    np.testing.assert_allclose(floored.target_floor, [floor])
    free = _trained(collapsing, x, y, 60)
    held = _trained(floored, x, y, 60)
    # Unfloored, components shrink onto the integers; floored, none goes below the floor
    # (diag_shift adds its 1e-5 above it): no density at a grid value above 1/(step sqrt(2pi)).
    assert _component_stddevs(free, x).min() < 0.5 * floor
    assert _component_stddevs(held, x).min() >= floor
    density = np.exp(mdn_layers.predict_mixture(held, x).log_prob(y).numpy())
    assert density.max() <= 1.0 / np.sqrt(2 * np.pi) + 1e-5


def test_a_numeric_scale_floor_holds_where_the_raw_scale_is_far_below_zero():
    # Raw scale entries of -80 would be standard deviations of e^-80 without the floor.
    head = mdn_layers.MixtureDensity(2, 2, covariance="diag", scale_floor=[0.5, 2.0])
    model = keras.Sequential([keras.Input((3,)), head])
    head.kernel.assign(np.zeros(head.kernel.shape, "float32"))
    head.bias.assign(np.where(np.arange(head.num_params) >= 2, -80.0, 0.0).astype("float32"))
    stddevs = _component_stddevs(model, np.ones((4, 3), "float32"))
    np.testing.assert_allclose(stddevs, np.broadcast_to([0.5, 2.0], stddevs.shape), rtol=1e-4)


def test_the_floor_is_in_target_units_after_adapt_and_saved_with_the_model(tmp_path, rng):
    x, y = _grid_data(rng, 200)
    y = np.concatenate([y * 1000.0, rng.normal(size=(200, 1)).astype("float32")], axis=1)
    head = mdn_layers.MixtureDensity(2, 3, scale_floor="grid").adapt(y)
    np.testing.assert_allclose(head.target_floor, [1000.0, 0.0])
    model = _trained(head, x, y, 3)
    path = str(tmp_path / "floored.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.layers[-1].scale_floor == "grid"
    np.testing.assert_allclose(loaded.layers[-1].target_floor, head.target_floor)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-3)
    # Spherical heads share one standard deviation: the largest floor.
    spherical = mdn_layers.MixtureDensity(2, 3, "spherical", scale_floor=[0.1, 0.3])
    assert spherical.target_floor == (0.3, 0.3)


@pytest.mark.parametrize("bad", ["auto", -1.0, [1.0, 2.0, 3.0], [np.nan, 1.0], {"a": 1}])
def test_a_bad_scale_floor_is_named(bad):
    with pytest.raises(ValueError, match="`scale_floor`"):
        mdn_layers.MixtureDensity(2, 3, scale_floor=bad)


def test_tf_keras_head_takes_the_same_floor(rng):
    from mdn_layers import tfp_layers
    x, y = _grid_data(rng, 200)
    head = tfp_layers.MixtureDensity(1, 3, scale_floor="grid").adapt(y)
    np.testing.assert_allclose(head.target_floor, [1.0])
    assert head.get_config()["scale_floor"] == "grid"
    assert head.get_config()["target_floor"] == list(head.target_floor)


def test_zero_floors_are_no_floor_and_numeric_floors_are_listed_in_the_config():
    assert mdn_layers.MixtureDensity(2, 3, scale_floor=0.0).target_floor is None
    assert mdn_layers.MixtureDensity(2, 3, scale_floor=[0.0, 1e-300]).target_floor == (0.0, 1e-300)
    config = mdn_layers.MixtureDensity(2, 3, scale_floor=[0.5, 2.0]).get_config()
    assert config["scale_floor"] == [0.5, 2.0] and type(config["scale_floor"]) is list
    assert config["target_floor"] == [0.5, 2.0]
    assert mdn_layers.MixtureDensity(2, 3).get_config()["scale_floor"] is None


def test_adapt_keeps_a_numeric_floor_and_shares_one_scale_for_spherical_heads(rng):
    y = rng.normal([0.0, 5.0], [1.0, 3.0], size=(500, 2))
    head = mdn_layers.MixtureDensity(2, 3, scale_floor=[0.5, 2.0]).adapt(y)
    assert head.target_floor == (0.5, 2.0)
    spherical = mdn_layers.MixtureDensity(2, 3, "spherical").adapt(y)
    # One standard deviation for every dim: the root mean of the per-dim variances.
    np.testing.assert_allclose(spherical.target_scale,
                               [np.sqrt(np.mean(y.var(axis=0)))] * 2, rtol=1e-9)


def test_adapt_errors_name_the_layer_and_adapt():
    with pytest.raises(ValueError, match=r"^MixtureDensity\.adapt: "):
        mdn_layers.MixtureDensity(2, 3).adapt(np.ones((5, 3)))


@pytest.mark.backend_neutral
def test_target_statistics_are_read_from_the_weights_once_built(rng):
    head = mdn_layers.MixtureDensity(1, 2).adapt(rng.normal(3.0, 2.0, size=200))
    keras.Sequential([keras.Input((2,)), head])
    head.target_loc_weight.assign(np.array([7.25], "float32"))
    head.target_scale_weight.assign(np.array([0.5], "float32"))
    assert head.target_loc == (7.25,) and head.target_scale == (0.5,)
    assert head.get_config()["target_loc"] == [7.25]


def _ran(head, x):
    """``head`` after a model ending in it has predicted once (its compiled functions cached)."""
    model = keras.Sequential([keras.Input((x.shape[1],)), head])
    mdn_layers.predict_mixture(model, x)
    return head


def test_adapt_after_a_run_names_what_changed_and_a_same_floor_readapt_is_allowed(rng):
    x, y = rng.normal(size=(8, 2)).astype("float32"), rng.normal(5.0, 2.0, size=(300, 1))
    advice = ("; the model's compiled functions would not see the change. Call adapt before "
              "the first fit, predict or call, or adapt a new head (e.g. in a clone of the "
              "model).")
    with pytest.raises(RuntimeError, match=re.escape(
            "MixtureDensity.adapt: this head has already run in a model unadapted" + advice)):
        _ran(mdn_layers.MixtureDensity(1, 2), x).adapt(y)
    _, grid = _grid_data(rng, 300)
    floored = _ran(mdn_layers.MixtureDensity(1, 2, scale_floor="grid").adapt(grid), x)
    with pytest.raises(RuntimeError, match=re.escape(
            "MixtureDensity.adapt: this head has already run in a model with another scale "
            "floor" + advice)):
        floored.adapt(grid * 3.0)                       # a grid step of 3: another floor
    floored.adapt(grid + 1.0)                           # the same step: allowed
    assert floored.target_loc == (float(np.mean(grid + 1.0)),)
    unfloored = _ran(mdn_layers.MixtureDensity(1, 2, scale_floor="grid").adapt(y), x)
    with pytest.raises(RuntimeError, match="already run in a model with another scale floor"):
        unfloored.adapt(grid)                           # no floor before, the step's now


def test_the_grid_warning_names_only_the_grid_dims_and_a_numeric_floor_silences_it(rng):
    _, grid = _grid_data(rng, 300)
    y = np.concatenate([rng.normal(size=(300, 1)), grid], axis=1)
    with pytest.warns(mdn_layers.GridTargetWarning) as caught:
        mdn_layers.MixtureDensity(2, 2).adapt(y)
    assert [str(w.message) for w in caught] == [
        "MixtureDensity.adapt: target dims [1] take values on a grid (steps [1.0]); a mixture "
        "can shrink its components onto the grid values and report a log-likelihood without "
        "bound. Pass scale_floor='grid' to the layer (a floor at the grid step), or add uniform "
        "noise of one step to the training targets (dequantisation)."]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mdn_layers.MixtureDensity(2, 2, scale_floor=[0.1, 0.5]).adapt(y)
        mdn_layers.MixtureDensity(1, 2).adapt(y[:, :1])


def test_a_float64_head_adapted_after_build_keeps_float64_statistics_and_start(rng):
    y = rng.normal(1e3, 1.0, size=(300, 1)) + rng.normal(size=(300, 1)) * 1e-6
    early = mdn_layers.MixtureDensity(1, 3, dtype="float64").adapt(y)
    keras.Sequential([keras.Input((2,)), early])
    late = mdn_layers.MixtureDensity(1, 3, dtype="float64")
    keras.Sequential([keras.Input((2,)), late])
    late.adapt(y)
    for head in (early, late):
        assert keras.ops.convert_to_numpy(head.target_loc_weight).dtype == np.float64
        np.testing.assert_allclose(head.target_loc, [np.mean(y)], rtol=1e-15)
        np.testing.assert_allclose(head.target_scale, [np.std(y)], rtol=1e-12)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(late.bias),
                               keras.ops.convert_to_numpy(early.bias), rtol=1e-12)


@pytest.mark.backend_neutral
def test_adapted_state_is_two_named_non_trainable_weights_made_once(rng):
    head = mdn_layers.MixtureDensity(2, 3)
    keras.Sequential([keras.Input((4,)), head])
    for shift in (0.0, 10.0):                          # adapt twice after build
        head.adapt(rng.normal(size=(50, 2)) + shift)
    assert len(head.weights) == 4 and len(head.trainable_weights) == 2
    assert [w.name for w in head.non_trainable_weights] == ["target_loc", "target_scale"]
    assert head.target_loc_weight is head.non_trainable_weights[0]
    assert min(head.target_loc) > 5.0                  # the second adapt's statistics


def test_config_errors_name_diag_shift_target_floor_and_a_spherical_scale():
    with pytest.raises(ValueError, match=re.escape(
            "`diag_shift` must be a finite float >= 0; received -1.0.") + "$"):
        mdn_layers.MixtureDensity(2, 3, diag_shift=-1.0)
    with pytest.raises(ValueError, match=re.escape(
            "`target_floor` must be None, 'grid' or 2 non-negative finite floats (one per target "
            "dim, in target units); received [-1.0, 0.0].") + "$"):
        mdn_layers.MixtureDensity(2, 3, target_floor=[-1.0, 0.0])
    with pytest.raises(ValueError, match="one value repeated for covariance='spherical'"):
        mdn_layers.MixtureDensity(2, 3, "spherical", target_loc=[0.0, 0.0],
                                  target_scale=[1.0, 2.0])


def test_the_starting_standard_deviation_is_initial_scale_whatever_the_diag_shift():
    for shift in (0.0, 0.3):
        head = mdn_layers.MixtureDensity(2, 3, "diag", initial_scale=1.5, diag_shift=shift)
        mixture = head.mixture(keras.ops.convert_to_numpy(head(np.zeros((1, 2), "float32"))))
        np.testing.assert_allclose(mixture.components_distribution.stddev().numpy(), 1.5,
                                   rtol=1e-5)
