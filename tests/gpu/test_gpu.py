"""Training through ``model.fit`` on a GPU, on JAX and PyTorch (marker ``gpu``).

Each test runs in a subprocess on one backend and skips, saying why, where that backend sees
no CUDA device (a CPU-only machine, or a CPU build of JAX or PyTorch). What it checks: full,
diagonal and spherical heads train on the GPU (JAX with XLA on and off); the variables live
there and a JAX training step after warm-up moves nothing to the host
(``jax.transfer_guard("disallow")``); the NLL of the same weights and data equals the CPU's
within float32 tolerance; ``mixed_float16`` and ``mixed_bfloat16`` train without NaN; a model
trained on the GPU saves, and a CPU-only process reloads it and gets the same params and NLL
(and, where TensorFlow is installed, a finite ``condition`` of its ``predict_mixture``).
``benchmarks/gpu_check.sh`` runs these and the GPU benchmark in one command.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.gpu

PROBES = {"jax": "import jax; print(any(d.platform == 'gpu' for d in jax.devices()))",
          "torch": "import torch; print(torch.cuda.is_available())"}


def sees_gpu(backend):
    if importlib.util.find_spec(backend) is None:
        return False
    result = subprocess.run([sys.executable, "-c", PROBES[backend]], capture_output=True,
                            text=True, timeout=300)
    return result.stdout.strip().endswith("True")


def run(backend, code, *arguments, env=None):
    """Runs ``code`` on ``backend`` in a subprocess; returns its last stdout line as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, arguments)],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
             **(env or {})})
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(params=["jax", "torch"])
def backend(request):
    if not sees_gpu(request.param):
        pytest.skip(f"no CUDA device visible to {request.param} (not installed, a CPU build, "
                    "or no GPU on this machine)")
    return request.param


TRAIN = """
    import json, sys
    import keras, numpy as np
    import mdn_layers

    kind, jit, policy, out = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4]
    if policy != "float32":
        keras.mixed_precision.set_global_policy(policy)
    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8192, 8)).astype("float32")
    y = (x[:, :1] * np.linspace(-1, 1, 4) + rng.normal(size=(8192, 4))).astype("float32")
    keras.utils.set_random_seed(0)
    head = mdn_layers.MixtureDensity(4, 8, kind)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(64, activation="relu"),
                              head])
    model.compile(keras.optimizers.Adam(1e-3), loss=mdn_layers.MixtureNLL.for_layer(head),
                  **({"jit_compile": jit} if backend == "jax" else {}))
    history = model.fit(x, y, batch_size=1024, epochs=3, verbose=0).history["loss"]
    if backend == "jax":
        import jax
        devices = sorted({d.platform for v in model.variables for d in v.value.devices()})
    else:
        devices = sorted({str(v.value.device.type) for v in model.variables})
    if backend == "jax" and jit:
        # A compiled training step after warm-up, on device-resident data, moves nothing
        # between host and device.
        model.make_train_function()
        # Copies: the compiled step donates its state buffers.
        state = tuple([jax.numpy.array(v.value, copy=True) for v in variables] for variables in (
            model.trainable_variables, model.non_trainable_variables,
            model.optimizer.variables, model.metrics_variables))
        batch = [(jax.device_put(x[:1024]), jax.device_put(y[:1024]))]
        logs, state = model.train_function(state, iter(batch))
        with jax.transfer_guard("disallow"):
            logs, state = model.train_function(state, iter(batch))
            jax.block_until_ready(logs)
    params = keras.ops.convert_to_numpy(model(x[:512])).astype("float64")
    model.save(out + ".keras")
    np.save(out + ".npy", params)
    print(json.dumps({"loss": history, "devices": devices}))
"""

CPU_NLL = """
    import importlib.util, json, sys
    import keras, numpy as np
    import mdn_layers

    path = sys.argv[1]
    model = keras.saving.load_model(path + ".keras")
    config = model.layers[-1].mixture_config()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8192, 8)).astype("float32")
    y = (x[:, :1] * np.linspace(-1, 1, 4) + rng.normal(size=(8192, 4))).astype("float32")
    params = keras.ops.convert_to_numpy(model(x[:512]))
    gpu_params = np.load(path + ".npy").astype("float32")
    nll = lambda p: float(np.mean(keras.ops.convert_to_numpy(
        mdn_layers.mixture_nll(y[:512], p, **config))))
    result = {"max_param_difference": float(np.max(np.abs(params - gpu_params))),
              "nll_cpu": nll(params), "nll_gpu_params": nll(gpu_params),
              "conditional_finite": None}
    if importlib.util.find_spec("tensorflow"):  # the analysis path, where TensorFlow is
        given = mdn_layers.condition(mdn_layers.predict_mixture(model, x[:512]), [0, 1],
                                     y[:512, :2])
        result["conditional_finite"] = bool(np.all(np.isfinite(given.mean().numpy())))
    print(json.dumps(result))
"""


@pytest.mark.parametrize("kind", ["full", "diag", "spherical"])
def test_heads_train_on_the_gpu_and_a_cpu_process_reloads_them(backend, kind, tmp_path):
    for jit in ([1, 0] if backend == "jax" else [0]):
        out = tmp_path / f"{kind}_{jit}"
        trained = run(backend, TRAIN, kind, jit, "float32", out)
        assert trained["devices"] == (["cuda"] if backend == "torch" else ["gpu"])
        assert all(map(lambda v: v == v, trained["loss"])) and \
            trained["loss"][-1] < trained["loss"][0]
        # A CPU-only process (no CUDA device) reloads the file: same params, NLL and a
        # finite conditional.
        cpu = run("jax", CPU_NLL, out, env={"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""})
        assert cpu["max_param_difference"] < 1e-3
        assert abs(cpu["nll_cpu"] - cpu["nll_gpu_params"]) < 1e-3
        assert cpu["conditional_finite"] in (True, None)   # None: no TensorFlow here


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_without_nan_on_the_gpu(backend, policy, tmp_path):
    trained = run(backend, TRAIN, "full", 1, policy, tmp_path / policy)
    assert all(v == v and abs(v) < 1e6 for v in trained["loss"])
