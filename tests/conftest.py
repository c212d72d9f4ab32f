"""Shared test helpers: independent numpy/scipy references for Gaussian mixtures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
from hypothesis import settings  # noqa: E402
from scipy import special, stats  # noqa: E402

import mdn_layers  # noqa: E402

# Property tests draw fresh examples on every local run; CI (HYPOTHESIS_PROFILE=ci, set by
# .ci/run) draws the same ones every time, so a red CI run is reproducible.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

tfd = tfp.distributions
DIAG_SHIFT = 1e-5
BACKEND = keras.backend.backend()


def _float64_available():
    if BACKEND == "torch":  # Keras's loss reduction (divide_no_nan) returns float32 there
        return False
    if BACKEND != "jax":
        return True
    import jax
    return bool(jax.config.jax_enable_x64)


# Tests of the training path run on every Keras backend (CI: TensorFlow and JAX); these
# marks skip what one backend cannot do.
tensorflow_backend_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="TensorFlow-backend behaviour (graph assertions, tf.function)")
requires_float64 = pytest.mark.skipif(
    not _float64_available(),
    reason="float64 end to end: JAX needs JAX_ENABLE_X64; Keras reduces torch losses in float32")


def warned_here(warning, path):
    """Whether a caught ``warning`` names a line of the file ``path`` (the test's own). Not
    checked under mutmut, whose trampolines add frames outside the package between a caller
    and the package's code; ``tests/mutation/README.md`` lists the frame walk's mutants,
    checked by hand."""
    return "mutmut" in sys.modules or warning.filename == path


def run_python(script, env=None, timeout=600):
    """Runs ``script`` in a fresh Python; returns the JSON its last stdout line holds."""
    import os
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=timeout, env=full_env)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def random_mixture(rng, num_components, event_size, batch=(), min_sd=0.3):
    """Random well-conditioned mixture: weights [*batch, K], means [*batch, K, D], covs."""
    shape = tuple(batch) + (num_components,)
    weights = rng.dirichlet(np.ones(num_components), size=tuple(batch) or None)
    means = rng.normal(0, 2, shape + (event_size,))
    factors = rng.normal(0, 0.5, shape + (event_size, event_size))
    covs = factors @ np.swapaxes(factors, -1, -2) + min_sd**2 * np.eye(event_size)
    return np.asarray(weights), means, covs


def scipy_mixture_logpdf(y, weights, means, covs):
    """log sum_k w_k N(y | m_k, C_k) for one mixture: y [N, D] -> [N]."""
    terms = [np.log(w) + np.atleast_1d(stats.multivariate_normal(m, c).logpdf(y))
             for w, m, c in zip(weights, means, covs)]
    return special.logsumexp(np.stack(terms, 0), axis=0)


def softplus_inverse(x):
    return x + np.log(-np.expm1(-x))


def params_for(weights, means, covs, covariance):
    """Params vector [P] (float64) that the documented layout maps to this mixture.

    Written from the layout description (logits, then per component D means and the
    inverse-softplus scale entries; full scales in tfp.math.fill_triangular order).
    """
    blocks = [np.log(weights)]
    for mean, cov in zip(means, covs):
        if covariance == "full":
            tril = np.linalg.cholesky(cov)
            raw = tril.copy()
            np.fill_diagonal(raw, softplus_inverse(np.diag(tril) - DIAG_SHIFT))
            entries = tfp.math.fill_triangular_inverse(raw).numpy()
        elif covariance == "diag":
            entries = softplus_inverse(np.sqrt(np.diag(cov)) - DIAG_SHIFT)
        else:
            entries = softplus_inverse(np.sqrt(cov[:1, 0]) - DIAG_SHIFT)
        blocks += [mean, entries]
    return np.concatenate(blocks)


def restrict_covariance(covs, covariance):
    """The covariances that a diag/spherical layout can represent."""
    if covariance == "full":
        return covs
    diag = np.diagonal(covs, axis1=-2, axis2=-1)
    if covariance == "spherical":
        diag = np.broadcast_to(diag[..., :1], diag.shape)
    return diag[..., :, None] * np.eye(covs.shape[-1])


def thin_far_normal(rng, dtype):
    """Params ``[8, P]`` of ``N(1e4, 1e-3^2)`` (full layout, K = 1) and float64 targets
    ``[8, 1]`` near it: float32 arithmetic would round the targets to 1e-3 and lose the
    NLL's digits."""
    loc, sd = 1e4, 1e-3
    params = params_for(np.ones(1), np.array([[loc]]), np.array([[[sd**2]]]), "full")
    return np.tile(params, (8, 1)).astype(dtype), loc + sd * rng.normal(size=(8, 1))


def tfp_mixture(weights, means, covs, dtype="float64"):
    """The same mixture as a TFP distribution (full covariance via numpy's Cholesky)."""
    return tfd.MixtureSameFamily(
        tfd.Categorical(probs=tf.constant(weights, dtype)),
        tfd.MultivariateNormalTriL(tf.constant(means, dtype),
                                   tf.constant(np.linalg.cholesky(covs), dtype)))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def hostile(name, rng, n=256):
    """``(x [n, 2], y [n, 2])`` float32 data of the named hostile kind (duplicated points, a
    constant target dim, heavy outliers, tiny or huge target scale)."""
    x = rng.normal(size=(n, 2)).astype("float32")
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * 0.5], -1) + rng.normal(0, 0.1, (n, 2))
    if name == "duplicated_points":
        x, y = np.repeat(x[:16], n // 16, 0), np.repeat(y[:16], n // 16, 0)
    elif name == "constant_dimension":
        y[:, 1] = 3.0
    elif name == "heavy_outliers":
        y[rng.choice(n, 8, replace=False)] = 1e3 * y.std(0)
    elif name == "tiny_scale":
        y = y * 1e-4
    elif name == "huge_scale":
        y = y * 1e4
    return x, y.astype("float32")


def mdn_model(event_size, num_components, covariance="full", input_shape=(1,), hidden=32,
              dtype=None, jit_compile="auto", learning_rate=3e-3):
    model = keras.Sequential([
        keras.Input(input_shape, dtype=dtype),
        keras.layers.Dense(hidden, activation="tanh", dtype=dtype),
        mdn_layers.MixtureDensity(event_size, num_components, covariance, dtype=dtype),
    ])
    model.compile(keras.optimizers.Adam(learning_rate),
                  loss=mdn_layers.MixtureNLL(event_size, num_components, covariance),
                  jit_compile=jit_compile)
    return model
