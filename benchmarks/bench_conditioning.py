"""Conditioning many predicted mixtures: mdn_layers vs gmr and a vectorised numpy reference.

Task (issue spec): N mixtures with K=8 full-covariance components over D=6 dims, observe
3 dims, get the conditional mixtures over the other 3. Every method is checked against
the numpy float64 reference before it is timed.

    python benchmarks/bench_conditioning.py [--num-mixtures 100000] [--gmr-rows 2000]

gmr conditions one observation at a time, so its loop runs on ``--gmr-rows`` rows and
its time is scaled to N (reported as such).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gmr  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
from _common import machine, write_json  # noqa: E402

import mdn_layers  # noqa: E402

tfd = tfp.distributions
K, D, OBSERVED = 8, 6, [0, 2, 4]
UNOBSERVED = [1, 3, 5]


def make_problem(num_mixtures, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(num_mixtures, K))
    means = rng.normal(0, 2, (num_mixtures, K, D))
    factors = rng.normal(0, 0.5, (num_mixtures, K, D, D))
    covs = factors @ np.swapaxes(factors, -1, -2) + 0.1 * np.eye(D)
    values = rng.normal(0, 2, (num_mixtures, len(OBSERVED)))
    return logits, means, covs, values


def numpy_condition(logits, means, covs, values):
    """Vectorised float64 textbook conditioning: solves on the observed blocks."""
    o, u = np.array(OBSERVED), np.array(UNOBSERVED)
    c_oo = covs[..., o[:, None], o]
    c_uo = covs[..., u[:, None], o]
    c_uu = covs[..., u[:, None], u]
    residual = values[:, None, :] - means[..., o]
    solved = np.linalg.solve(c_oo, residual[..., None])[..., 0]
    gains = np.linalg.solve(c_oo, np.swapaxes(c_uo, -1, -2))
    _, log_det = np.linalg.slogdet(c_oo)
    log_w = (logits - np.logaddexp.reduce(logits, -1, keepdims=True)
             - 0.5 * np.sum(residual * solved, -1) - 0.5 * log_det
             - 0.5 * len(o) * np.log(2 * np.pi))
    weights = np.exp(log_w - np.logaddexp.reduce(log_w, -1, keepdims=True))
    locs = means[..., u] + np.einsum("nkou,nko->nku", gains, residual)
    cond = c_uu - np.einsum("nkuo,nkov->nkuv", c_uo, gains)
    return weights, locs, cond


def gmr_condition(logits, means, covs, values):
    priors = np.exp(logits - np.logaddexp.reduce(logits, -1, keepdims=True))
    out = []
    for row in range(len(values)):
        model = gmr.GMM(K, priors=priors[row], means=means[row], covariances=covs[row])
        out.append(model.condition(OBSERVED, values[row]).priors)
    return np.array(out)


def tfp_mixture(logits, means, covs, dtype):
    return tfd.MixtureSameFamily(
        tfd.Categorical(logits=tf.constant(logits, dtype)),
        tfd.MultivariateNormalTriL(tf.constant(means, dtype),
                                   tf.constant(np.linalg.cholesky(covs), dtype)))


def best_of(repeats, fn):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(num_mixtures, gmr_rows, repeats, json_path=None):
    logits, means, covs, values = make_problem(num_mixtures)
    ref_time, (ref_w, ref_loc, _) = best_of(repeats, lambda: numpy_condition(logits, means, covs,
                                                                              values))
    rows = slice(0, gmr_rows)
    gmr_time, gmr_w = best_of(1, lambda: gmr_condition(logits[rows], means[rows], covs[rows],
                                                       values[rows]))
    np.testing.assert_allclose(gmr_w, ref_w[rows], atol=1e-8)
    gmr_time *= num_mixtures / gmr_rows
    results = [("numpy float64, vectorised (reference)", ref_time),
               (f"gmr, one observation at a time (x{num_mixtures // gmr_rows} of "
                f"{gmr_rows} rows)", gmr_time)]
    for dtype in ("float64", "float32"):
        mixture = tfp_mixture(logits, means, covs, dtype)
        tf_values = tf.constant(values, dtype)

        def eager():
            result = mdn_layers.condition(mixture, OBSERVED, tf_values)
            return result.mixture_distribution.probs_parameter().numpy(), result

        @tf.function(jit_compile=True)
        def compiled(loc, tril, mixture_logits, observed_values):
            source = tfd.MixtureSameFamily(tfd.Categorical(logits=mixture_logits),
                                           tfd.MultivariateNormalTriL(loc, tril))
            result = mdn_layers.condition(source, OBSERVED, observed_values)
            return (result.mixture_distribution.probs_parameter(),
                    result.components_distribution.loc)

        args = (mixture.components_distribution.loc,
                mixture.components_distribution.scale.to_dense(),
                mixture.mixture_distribution.logits, tf_values)
        start = time.perf_counter()
        compiled(*args)
        compile_seconds = time.perf_counter() - start
        eager_time, (weights, result) = best_of(repeats, eager)
        tolerance = 1e-8 if dtype == "float64" else 2e-3
        np.testing.assert_allclose(weights, ref_w, atol=tolerance)
        np.testing.assert_allclose(result.components_distribution.loc, ref_loc,
                                   atol=tolerance * 10)
        xla_time, (xla_weights, _) = best_of(repeats, lambda: [t.numpy() for t in
                                                                compiled(*args)])
        np.testing.assert_allclose(xla_weights, ref_w, atol=tolerance)
        results.append((f"mdn_layers.condition, {dtype}, eager", eager_time))
        results.append((f"mdn_layers.condition, {dtype}, tf.function(jit_compile=True) "
                        f"(first call, compiling: {compile_seconds:.1f} s)", xla_time))

    print(f"# Conditioning {num_mixtures:,} mixtures (K={K}, D={D}, observe {len(OBSERVED)})")
    print(f"machine: {machine()}, TensorFlow {tf.__version__}; best of {repeats}\n")
    print("| method | seconds | speed-up vs gmr | vs numpy reference |")
    print("|---|---:|---:|---:|")
    for name, seconds in results:
        print(f"| {name} | {seconds:.3f} | {gmr_time / seconds:.1f}x | "
              f"{ref_time / seconds:.2f}x |")
    write_json(json_path, {"machine": machine(), "num_mixtures": num_mixtures, "K": K, "D": D,
                           "observed": OBSERVED},
               [{"method": name, "seconds": seconds, "vs_gmr": gmr_time / seconds,
                 "vs_numpy": ref_time / seconds} for name, seconds in results])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-mixtures", type=int, default=100_000)
    parser.add_argument("--gmr-rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    main(args.num_mixtures, args.gmr_rows, args.repeats, args.json)
