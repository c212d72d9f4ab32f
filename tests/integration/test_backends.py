"""The training path on every Keras backend: the same NLL, compiled fit, masks, metrics.

Tests here run in-process on the active backend (CI runs them under TensorFlow and JAX);
the ``*_subprocess`` tests start fresh interpreters for what one process cannot show:
imports with TensorFlow unavailable, ``.keras`` files crossing backends, JAX data
parallelism over two host devices and the PyTorch backend (skipped where torch is absent).
"""

import importlib.util
import textwrap

import keras
import numpy as np
import pytest
import tensorflow_probability as tfp
from conftest import BACKEND, params_for, random_mixture, restrict_covariance, run_python

import mdn_layers
from mdn_layers import metrics

tfd = tfp.distributions
KINDS = ["full", "diag", "spherical"]
JIT = BACKEND in ("tensorflow", "jax")  # backends that compile with XLA
neutral = pytest.mark.backend_neutral


def mdn_model(event_size, num_components, covariance="full", inputs=(3,)):
    head = mdn_layers.MixtureDensity(event_size, num_components, covariance)
    model = keras.Sequential([keras.Input(inputs), keras.layers.Dense(16, activation="tanh"),
                              head])
    return model, head


def regression_data(rng, n=1000):
    x = rng.normal(size=(n, 3)).astype("float32")
    y = np.stack([x[:, 0] + 0.3 * x[:, 1], np.sin(x[:, 2]) + 0.5 * x[:, 0]], -1)
    return x, (y + rng.normal(0, 0.2, y.shape)).astype("float32")


@neutral
@pytest.mark.parametrize("covariance", KINDS)
def test_per_sample_nll_equals_tfp_log_prob(rng, covariance):
    num_components, event_size = 3, 3
    rows = []
    references = []
    for _ in range(8):
        weights, means, covs = random_mixture(rng, num_components, event_size)
        covs = restrict_covariance(covs, covariance)
        rows.append(params_for(weights, means, covs, covariance))
        references.append((weights, means, covs))
    params = np.stack(rows).astype("float32")
    y = rng.normal(0, 2, (8, event_size)).astype("float32")
    nll = mdn_layers.MixtureNLL(event_size, num_components, covariance).call(y, params)
    expected = [-tfd.MixtureSameFamily(
        tfd.Categorical(probs=w), tfd.MultivariateNormalFullCovariance(m, c)).log_prob(
            y[i].astype("float64")).numpy() for i, (w, m, c) in enumerate(references)]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(nll), expected, rtol=1e-5, atol=1e-5)
    if covariance == "full":  # TFP's own layer decodes the same params to the same density
        tfp_layer = tfp.layers.MixtureSameFamily.new(
            params, num_components, tfp.layers.MultivariateNormalTriL(event_size))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(nll), -tfp_layer.log_prob(y),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@neutral
@pytest.mark.parametrize("covariance", KINDS)
def test_compiled_fit_with_partial_last_batch_trains(rng, covariance):
    keras.utils.set_random_seed(1)
    x, y = regression_data(rng, n=1000)
    model, head = mdn_model(2, 3, covariance)
    model.compile(keras.optimizers.Adam(0.01), loss=mdn_layers.MixtureNLL.for_layer(head),
                  jit_compile=JIT or "auto")
    # 1000 rows in batches of 300: the last batch has 100.
    history = model.fit(x, y, batch_size=300, epochs=6, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < history[0] - 0.2, history
    evaluated = model.evaluate(x, y, batch_size=300, verbose=0)
    params = model.predict(x, batch_size=300, verbose=0)
    per_sample = keras.ops.convert_to_numpy(
        mdn_layers.MixtureNLL.for_layer(head).call(y, params))
    np.testing.assert_allclose(evaluated, per_sample.mean(), rtol=1e-4)


@neutral
def test_mixture_from_this_backend_conditions_like_the_loss(rng):
    x, y = regression_data(rng, n=200)
    model, head = mdn_model(2, 3)
    model.compile("adam", loss=mdn_layers.MixtureNLL.for_layer(head))
    model.fit(x, y, epochs=1, verbose=0)
    mixture = mdn_layers.predict_mixture(model, x)
    loss = keras.ops.convert_to_numpy(mdn_layers.MixtureNLL.for_layer(head).call(
        y, model.predict(x, verbose=0)))
    np.testing.assert_allclose(-mixture.log_prob(y), loss, rtol=1e-4, atol=1e-4)
    given = mdn_layers.condition(mixture, [1], y[:, 1:])
    chain = mdn_layers.marginalize(mixture, [1]).log_prob(y[:, 1:]) + given.log_prob(y[:, :1])
    np.testing.assert_allclose(chain, mixture.log_prob(y), rtol=1e-4, atol=1e-4)


def masked_sequence_model(num_components=2):
    inputs = keras.Input((3, 1))
    head = mdn_layers.MixtureDensity(1, num_components)
    outputs = head(keras.layers.Masking(0.0)(inputs))
    return keras.Model(inputs, outputs), head


@neutral
@pytest.mark.parametrize("padding", [1e3, np.nan])
def test_masked_steps_stay_out_of_loss_metrics_and_gradients(padding):
    keras.utils.set_random_seed(0)
    x = np.zeros((2, 3, 1), "float32")
    x[:, 0, 0] = [1.0, -1.0]
    x[1, 1, 0] = 0.5  # the second sequence has two real steps
    y = np.full((2, 3, 1), padding, "float32")
    y[:, 0, 0], y[1, 1, 0] = [0.2, -0.4], 0.1
    model, head = masked_sequence_model()
    model.compile(keras.optimizers.SGD(0.1), loss=mdn_layers.MixtureNLL.for_layer(head),
                  metrics=[metrics.NegativeLogLikelihood(1, 2), metrics.CRPS(1, 2),
                           metrics.IntervalCoverage(1, 2, level=0.5)])
    params = model.predict(x, verbose=0)
    real = np.array([[True, False, False], [True, True, False]])
    mixture = mdn_layers.mixture_from_params(params[real], 1, 2)
    expected_nll = -np.mean(mixture.log_prob(y[real]))
    expected_crps = np.mean(mdn_layers.scores.crps(mixture, y[real]))
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], expected_nll, rtol=1e-5)
    np.testing.assert_allclose(result["nll"], expected_nll, rtol=1e-5)
    np.testing.assert_allclose(result["crps"], expected_crps, rtol=1e-5)
    # One SGD step: the padded targets' values do not change the update.
    weights = model.get_weights()
    model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    after_padding = model.get_weights()
    model.set_weights(weights)
    model.fit(x, np.where(real[..., None], y, -7.0), epochs=1, batch_size=2, verbose=0)
    for a, b in zip(after_padding, model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        assert np.all(np.isfinite(a))


@neutral
def test_metrics_with_missing_targets_score_observed_dims(rng):
    params = rng.normal(size=(30, mdn_layers.params_size(2, 3))).astype("float32")
    y = rng.normal(size=(30, 2)).astype("float32")
    y[::3, 0] = np.nan
    y[1, :] = np.nan  # a fully missing row carries no weight
    mixture = mdn_layers.mixture_from_params(params, 2, 3)
    observed = ~np.isnan(y)
    nll = metrics.NegativeLogLikelihood(2, 3, allow_missing=True)
    nll.update_state(y, params)
    loss = mdn_layers.MixtureNLL(2, 3, allow_missing=True).call(y, params)
    rows = observed.any(-1)
    np.testing.assert_allclose(nll.result(), np.mean(keras.ops.convert_to_numpy(loss)[rows]),
                               rtol=1e-5)
    crps = metrics.CRPS(2, 3, allow_missing=True)
    crps.update_state(y, params)
    per_dim = mdn_layers.scores.crps(mixture, np.nan_to_num(y)).numpy()
    expected = [per_dim[i][observed[i]].mean() for i in range(30) if rows[i]]
    np.testing.assert_allclose(crps.result(), np.mean(expected), rtol=1e-5)
    coverage = metrics.IntervalCoverage(2, 3, level=0.9, allow_missing=True)
    coverage.update_state(y, params)
    assert 0.0 <= float(coverage.result()) <= 1.0
    energy = metrics.EnergyScore(2, 3, num_samples=20, allow_missing=True)
    energy.update_state(y, params)
    assert np.isfinite(float(energy.result()))
    for metric in (metrics.NegativeLogLikelihood(2, 3), metrics.CRPS(2, 3)):
        with pytest.raises(ValueError, match="NaN or inf.*allow_missing"):
            metric.update_state(y, params)


@neutral
def test_inf_target_is_not_missing(rng):
    params = rng.normal(size=(4, mdn_layers.params_size(2, 3))).astype("float32")
    y = np.array([[0.0, np.nan], [np.inf, 1.0], [0.0, 0.0], [1.0, 1.0]], "float32")
    with pytest.raises(ValueError, match="inf"):
        mdn_layers.MixtureNLL(2, 3, allow_missing=True)(y, params)
    with pytest.raises(ValueError, match="inf"):
        metrics.CRPS(2, 3, allow_missing=True).update_state(y, params)


@neutral
def test_loss_built_from_layer_and_mismatch_detected(rng):
    x, y = regression_data(rng, n=64)
    model, head = mdn_model(2, 4)  # 4 * (1 + 2 + 3) = 24 params
    mismatched = mdn_layers.MixtureNLL(2, 6, "spherical")  # 6 * (1 + 2 + 1) = 24 too
    assert mismatched.num_params == head.num_params
    model.compile("adam", loss=mismatched)
    with pytest.raises(ValueError, match="MixtureNLL.for_layer"):
        mdn_layers.predict_mixture(model, x)
    model.compile("adam", loss=mdn_layers.MixtureNLL.for_layer(head))
    assert mdn_layers.predict_mixture(model, x).batch_shape == (64,)
    with pytest.raises(TypeError, match="MixtureDensity"):
        mdn_layers.MixtureNLL.for_layer(keras.layers.Dense(3))


@neutral
def test_predict_mixture_requires_the_head_to_be_the_output(rng):
    x, _ = regression_data(rng, n=8)
    inputs = keras.Input((3,))
    params = mdn_layers.MixtureDensity(2, 3)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(params.shape[-1])(params))
    with pytest.raises(ValueError, match="not the output of a MixtureDensity"):
        mdn_layers.predict_mixture(model, x)
    nested = keras.Sequential([keras.Input((3,)), mdn_model(2, 3)[0]])
    assert mdn_layers.predict_mixture(nested, x).batch_shape == (8,)


# --- Fresh interpreters ------------------------------------------------------------------

# `import tensorflow` (and TFP, tf_keras) raise ImportError, as if they were not installed.
BLOCK_TENSORFLOW = textwrap.dedent("""
    import sys
    for name in ("tensorflow", "tensorflow_probability", "tf_keras"):
        sys.modules[name] = None
""")

TRAIN_AND_SAVE = textwrap.dedent("""
    import json, os, sys
    import keras, numpy as np
    import mdn_layers
    from mdn_layers import metrics

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)).astype("float32")
    y = np.stack([x[:, 0], x[:, 1] * x[:, 2]], -1).astype("float32")
    jit = keras.backend.backend() in ("tensorflow", "jax")
    losses, predictions = {}, {}
    for kind in ["full", "diag", "spherical"]:
        keras.utils.set_random_seed(0)
        head = mdn_layers.MixtureDensity(2, 3, kind)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8), head])
        model.compile("adam", loss=mdn_layers.MixtureNLL.for_layer(head), jit_compile=jit,
                      metrics=[metrics.CRPS(2, 3, kind), metrics.EnergyScore(2, 3, kind, 10),
                               metrics.IntervalCoverage(2, 3, kind)])
        history = model.fit(x, y, batch_size=128, epochs=2, verbose=0).history
        model.evaluate(x, y, verbose=0)
        path = os.path.join(sys.argv[-1], kind + ".keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        predictions[kind] = loaded.predict(x[:16], verbose=0).tolist()
        np.testing.assert_allclose(predictions[kind], model.predict(x[:16], verbose=0),
                                   rtol=1e-6)
        losses[kind] = history["loss"]
    print(json.dumps({"backend": keras.backend.backend(), "losses": losses,
                      "predictions": predictions,
                      "tensorflow_loaded": sys.modules.get("tensorflow") is not None}))
""")

LOAD_AND_PREDICT = textwrap.dedent("""
    import json, os, sys
    import keras, numpy as np
    import mdn_layers

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)).astype("float32")
    predictions = {}
    for kind in ["full", "diag", "spherical"]:
        model = keras.models.load_model(os.path.join(sys.argv[-1], kind + ".keras"))
        predictions[kind] = model.predict(x[:16], verbose=0).tolist()
    print(json.dumps({"backend": keras.backend.backend(), "predictions": predictions}))
""")


def run_script(script, backend, folder, env=None):
    return run_python(script.replace('sys.argv[-1]', repr(str(folder))),
                      env={"KERAS_BACKEND": backend, **(env or {})})


@pytest.mark.slow
def test_training_path_imports_no_tensorflow_and_files_cross_backends_subprocess(tmp_path):
    """JAX trains, evaluates and saves every head and metric with ``import tensorflow``
    failing; those files load and predict the same on TensorFlow, and TensorFlow's files the
    same on JAX."""
    for source, target, script in [("jax", "tensorflow", BLOCK_TENSORFLOW + TRAIN_AND_SAVE),
                                   ("tensorflow", "jax", TRAIN_AND_SAVE)]:
        folder = tmp_path / source
        folder.mkdir()
        saved = run_script(script, source, folder)
        if source == "jax":
            assert not saved["tensorflow_loaded"]
        for kind, losses in saved["losses"].items():
            assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], (source, kind)
        loaded = run_script(LOAD_AND_PREDICT, target, folder)
        assert (saved["backend"], loaded["backend"]) == (source, target)
        for kind in KINDS:
            np.testing.assert_allclose(loaded["predictions"][kind], saved["predictions"][kind],
                                       rtol=1e-5, atol=1e-6)


DATA_PARALLEL = textwrap.dedent("""
    import json
    import jax, keras, numpy as np
    import mdn_layers

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 3)).astype("float32")
    y = np.stack([x[:, 0] - x[:, 1], x[:, 2] ** 2], -1).astype("float32")

    def train(distribution):
        keras.distribution.set_distribution(distribution)
        keras.utils.set_random_seed(0)
        head = mdn_layers.MixtureDensity(2, 3)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(16, activation="tanh"),
                                  head])
        model.compile(keras.optimizers.SGD(0.02), loss=mdn_layers.MixtureNLL.for_layer(head))
        return model.fit(x, y, epochs=3, batch_size=64, shuffle=False, verbose=0).history["loss"]

    one = train(None)
    two = train(keras.distribution.DataParallel(devices=jax.devices()))
    print(json.dumps({"devices": len(jax.devices()), "one": one, "two": two}))
""")


@pytest.mark.slow
def test_jax_data_parallel_on_two_host_devices_matches_one_subprocess():
    result = run_python(DATA_PARALLEL, env={
        "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert result["devices"] == 2
    np.testing.assert_allclose(result["two"], result["one"], rtol=1e-4)
    assert result["two"][-1] < result["two"][0]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch is not installed (kept out of CI: its wheel is several GB)")
def test_torch_backend_trains_saves_and_crosses_to_tensorflow_subprocess(tmp_path):
    saved = run_script(BLOCK_TENSORFLOW + TRAIN_AND_SAVE, "torch", tmp_path)
    assert saved["backend"] == "torch" and not saved["tensorflow_loaded"]
    for kind, losses in saved["losses"].items():
        assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], kind
    loaded = run_script(LOAD_AND_PREDICT, "tensorflow", tmp_path)
    for kind in KINDS:
        np.testing.assert_allclose(loaded["predictions"][kind], saved["predictions"][kind],
                                   rtol=1e-5, atol=1e-6)


FLOAT64_ON_JAX = textwrap.dedent("""
    import json
    import keras, numpy as np
    import mdn_layers

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 1)), rng.normal(size=(64, 2))
    head = mdn_layers.MixtureDensity(2, 3, dtype="float64")
    model = keras.Sequential([keras.Input((1,), dtype="float64"), head])
    model.compile("adam", loss=mdn_layers.MixtureNLL.for_layer(head), jit_compile=True)
    history = model.fit(x, y, epochs=2, verbose=0).history["loss"]
    params = model(x)
    loss = model.loss
    print(json.dumps({"params": str(params.dtype), "loss": str(loss(y, params).dtype),
                      "resolves": bool(loss(y, params * (1 + 1e-10)) != loss(y, params)),
                      "finite": bool(np.all(np.isfinite(history)))}))
""")


@pytest.mark.slow
def test_jax_float64_with_x64_enabled_subprocess():
    result = run_python(FLOAT64_ON_JAX, env={"KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "1"})
    assert result == {"params": "float64", "loss": "float64", "resolves": True, "finite": True}


@pytest.mark.slow
def test_float64_tests_run_on_jax_with_x64_subprocess():
    """The float64 tests skip on JAX without x64 (Keras cannot switch it on per test): run
    them in a JAX process with ``JAX_ENABLE_X64=1``, where none may skip."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         os.path.join(tests, "training", "test_layer.py"), "-k", "float64"],
        capture_output=True, text=True, timeout=600, env=env, cwd=os.path.dirname(tests))
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0, result.stdout[-4000:]
    assert "passed" in summary and "skipped" not in summary, summary


@neutral
@pytest.mark.skipif(BACKEND != "jax", reason="jax.transfer_guard is JAX's")
def test_a_jax_training_step_moves_nothing_between_host_and_device(rng):
    """After warm-up, a step on device-resident data runs under transfer_guard('disallow'):
    the loss stays on the device (on a GPU this is tests/gpu's check; here the CPU device)."""
    import jax
    x = rng.normal(size=(2048, 8)).astype("float32")
    y = rng.normal(size=(2048, 4)).astype("float32")
    head = mdn_layers.MixtureDensity(4, 8)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                              head])
    model.compile(keras.optimizers.Adam(1e-3), loss=mdn_layers.MixtureNLL.for_layer(head))
    model.fit(x, y, batch_size=1024, epochs=1, verbose=0)
    model.make_train_function()
    # Copies: the compiled step donates its state buffers, and the model keeps its own.
    state = tuple([jax.numpy.array(v.value, copy=True) for v in variables] for variables in (
        model.trainable_variables, model.non_trainable_variables,
        model.optimizer.variables, model.metrics_variables))
    batch = [(jax.device_put(x[:1024]), jax.device_put(y[:1024]))]
    logs, state = model.train_function(state, iter(batch))
    with jax.transfer_guard("disallow"):
        logs, state = model.train_function(state, iter(batch))
        jax.block_until_ready(logs)
        with pytest.raises(Exception, match="(?i)transfer"):     # the guard is really on
            model.train_function(state, iter([(x[:1024], y[:1024])]))
    assert np.isfinite(float(logs["loss"]))
