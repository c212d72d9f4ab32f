"""Sampling predicted mixtures with temperature: mdn_layers vs keras-mdn-layer.

N predicted diagonal mixtures (K=8, D=4), one draw each at temperature 0.5 and
sigma_temperature 0.5 (both libraries use the same conventions: logits / temperature,
covariance * sigma_temperature). keras-mdn-layer samples one row at a time in numpy, so it
runs on ``--peer-rows`` rows and its time is scaled to N. Before timing, the sample means
of both are compared on the peer rows.

    python benchmarks/bench_sampling.py [--num-mixtures 100000] [--peer-rows 5000]
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_mdn_layer  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import mdn_layers  # noqa: E402

K, D, TEMPERATURE, SIGMA_TEMPERATURE = 8, 4, 0.5, 0.5


def make_params(num_mixtures, seed=0):
    """The same mixtures in keras-mdn-layer's layout and in ours (diag)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(num_mixtures, K))
    means = rng.normal(0, 3, (num_mixtures, K, D))
    sds = rng.uniform(0.2, 1.0, (num_mixtures, K, D))
    peer = np.concatenate([means.reshape(num_mixtures, -1), sds.reshape(num_mixtures, -1),
                           logits], -1)
    raw = sds - 1e-5
    raw = raw + np.log(-np.expm1(-raw))  # inverse softplus
    ours = np.concatenate([logits, np.concatenate([means, raw], -1).reshape(num_mixtures, -1)],
                          -1)
    return peer, ours.astype("float32")


def main(num_mixtures, peer_rows):
    peer, ours = make_params(num_mixtures)
    mixture = mdn_layers.mixture_from_params(ours, D, K, "diag")

    start = time.perf_counter()
    theirs = np.array([keras_mdn_layer.sample_from_output(row, D, K, temp=TEMPERATURE,
                                                          sigma_temp=SIGMA_TEMPERATURE)
                       for row in peer[:peer_rows]])
    peer_time = (time.perf_counter() - start) * num_mixtures / peer_rows

    def ours_draw():
        return mdn_layers.sample(mixture, temperature=TEMPERATURE,
                                 sigma_temperature=SIGMA_TEMPERATURE, seed=0).numpy()

    check = mdn_layers.sample(mdn_layers.mixture_from_params(ours[:peer_rows], D, K, "diag"),
                              temperature=TEMPERATURE, sigma_temperature=SIGMA_TEMPERATURE,
                              seed=1).numpy()
    np.testing.assert_allclose(check.mean(0), theirs.mean(0), atol=0.2)
    ours_draw()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        ours_draw()
        times.append(time.perf_counter() - start)
    ours_time = min(times)

    compiled = tf.function(lambda: mdn_layers.sample(
        mixture, temperature=TEMPERATURE, sigma_temperature=SIGMA_TEMPERATURE, seed=0))
    compiled()
    start = time.perf_counter()
    compiled().numpy()
    graph_time = time.perf_counter() - start

    print(f"# One draw from each of {num_mixtures:,} mixtures (K={K}, D={D}, diag), "
          f"temperature {TEMPERATURE}, sigma_temperature {SIGMA_TEMPERATURE}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, CPU, TensorFlow "
          f"{tf.__version__}\n")
    print("| method | seconds | speed-up vs keras-mdn-layer |")
    print("|---|---:|---:|")
    print(f"| keras-mdn-layer sample_from_output, row by row ({peer_rows:,} rows, scaled) | "
          f"{peer_time:.3f} | 1.0x |")
    print(f"| mdn_layers.sample, eager (best of 3) | {ours_time:.3f} | "
          f"{peer_time / ours_time:.0f}x |")
    print(f"| mdn_layers.sample, tf.function | {graph_time:.3f} | "
          f"{peer_time / graph_time:.0f}x |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-mixtures", type=int, default=100_000)
    parser.add_argument("--peer-rows", type=int, default=5000)
    args = parser.parse_args()
    main(args.num_mixtures, args.peer_rows)
