"""Training throughput through ``model.fit`` on each Keras backend, against keras-mdn-layer.

Each backend runs in its own subprocess (Keras picks its backend at import). Setting: 8
inputs, a 2x64 ReLU trunk, Adam, ``--samples`` rows per epoch; after a warm-up epoch,
``--epochs`` timed epochs; samples/s is the median over epochs and the run is repeated
``--repeats`` times with the heads interleaved. Heads: ours (full, diag) and
keras-mdn-layer 1.0's ``MDN`` (diagonal). Before timing, each head's loss is checked against
TFP's log density on the same params (in the parent process, TensorFlow backend).

    python benchmarks/bench_backends.py --backend tensorflow,jax [--event-size 8]
        [--components 16] [--batch 1024] [--samples 65536] [--jit]

Prints one markdown row per head and backend, and the device each ran on.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

WORKER = textwrap.dedent("""
    import json, os, platform, sys, time
    import keras, numpy as np
    import mdn_layers

    D, K, BATCH, SAMPLES, EPOCHS, JIT = json.loads(sys.argv[1])
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        device = str(jax.devices()[0])
    elif backend == "torch":
        import torch
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    else:
        import tensorflow as tf
        device = ", ".join(d.name for d in tf.config.list_logical_devices()) or "cpu"
    device += f" ({platform.processor() or platform.machine()}, {os.cpu_count()} cpus)"

    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, 8)).astype("float32")
    y = (x[:, :D] @ rng.normal(size=(D, D)) * 0.5
         + rng.normal(size=(SAMPLES, D))).astype("float32")

    def heads():
        import keras_mdn_layer
        yield "ours full", mdn_layers.MixtureDensity(D, K), mdn_layers.MixtureNLL(D, K)
        yield ("ours diag", mdn_layers.MixtureDensity(D, K, "diag"),
               mdn_layers.MixtureNLL(D, K, "diag"))
        yield ("keras-mdn-layer diag", keras_mdn_layer.MDN(D, K),
               keras_mdn_layer.get_mixture_loss_func(D, K))

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()
        def on_epoch_end(self, epoch, logs=None):
            self.times = getattr(self, "times", []) + [time.perf_counter() - self.start]

    results = {}
    for name, head, loss in heads():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(64, activation="relu"),
                                  keras.layers.Dense(64, activation="relu"), head])
        kwargs = {"jit_compile": True} if JIT and backend in ("tensorflow", "jax") else {}
        model.compile(keras.optimizers.Adam(1e-3), loss=loss, **kwargs)
        timer = Timer()
        history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS + 1, verbose=0,
                            callbacks=[timer]).history["loss"]
        rate = SAMPLES / float(np.median(timer.times[1:]))
        results[name] = {"samples_per_s": rate, "first_loss": history[0],
                         "last_loss": history[-1]}
    print(json.dumps({"backend": backend, "device": device, "results": results}))
""")


def check_losses_against_tfp(event_size, num_components):
    """Our loss and keras-mdn-layer's equal TFP's log density on random params."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras_mdn_layer
    import numpy as np
    import tensorflow_probability as tfp

    import mdn_layers
    tfd = tfp.distributions
    rng = np.random.default_rng(0)
    y = rng.normal(size=(64, event_size)).astype("float32")
    full = rng.normal(size=(64, mdn_layers.params_size(event_size, num_components)))
    reference = tfp.layers.MixtureSameFamily.new(
        full.astype("float32"), num_components,
        tfp.layers.MultivariateNormalTriL(event_size)).log_prob(y)
    ours = mdn_layers.MixtureNLL(event_size, num_components).call(y, full.astype("float32"))
    np.testing.assert_allclose(-np.asarray(ours), reference, rtol=1e-4, atol=1e-4)
    diag = rng.normal(size=(64, num_components * (2 * event_size + 1))).astype("float32")
    sigma_block = slice(num_components * event_size, 2 * num_components * event_size)
    diag[:, sigma_block] = np.exp(diag[:, sigma_block])  # its layer emits positive sigmas
    mu, sigma, logits = keras_mdn_layer._split_mdn_params(diag, event_size, num_components)
    peer = keras_mdn_layer._mdn_log_prob(y, mu, sigma, logits, event_size, num_components)
    truth = tfd.MixtureSameFamily(
        tfd.Categorical(logits=np.asarray(logits)),
        tfd.MultivariateNormalDiag(np.asarray(mu).reshape(64, num_components, event_size),
                                   np.asarray(sigma).reshape(64, num_components, event_size))
    ).log_prob(y)
    np.testing.assert_allclose(np.asarray(peer), truth, rtol=1e-4, atol=1e-4)


def run_backend(backend, config, timeout):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", WORKER, json.dumps(config)], env=env,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{backend} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="tensorflow,jax",
                        help="comma-separated Keras backends (tensorflow, jax, torch)")
    parser.add_argument("--event-size", type=int, default=8)
    parser.add_argument("--components", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=65536)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--jit", action="store_true", help="jit_compile=True on TF and JAX")
    parser.add_argument("--skip-check", action="store_true",
                        help="skip the TFP reference check (no TensorFlow on this machine)")
    parser.add_argument("--timeout", type=int, default=1800)
    args = parser.parse_args()
    if not args.skip_check:
        check_losses_against_tfp(args.event_size, args.components)
    config = [args.event_size, args.components, args.batch, args.samples, args.epochs,
              args.jit]
    backends = args.backend.split(",")
    runs = {backend: [] for backend in backends}
    for _ in range(args.repeats):  # interleave backends across repeats
        for backend in backends:
            runs[backend].append(run_backend(backend, config, args.timeout))
    print(f"D={args.event_size}, K={args.components}, batch {args.batch}, "
          f"{args.samples} samples/epoch, jit_compile={args.jit}\n")
    print("| head | backend | device | samples/s (median of repeats) | range "
          "| loss first -> last |")
    print("|---|---|---|---:|---|---|")
    for backend, repeats in runs.items():
        for head in repeats[0]["results"]:
            rates = [run["results"][head]["samples_per_s"] for run in repeats]
            first = repeats[0]["results"][head]
            print(f"| {head} | {backend} | {repeats[0]['device']} | "
                  f"{statistics.median(rates) / 1e3:,.0f}k | "
                  f"{min(rates) / 1e3:,.0f}k–{max(rates) / 1e3:,.0f}k | "
                  f"{first['first_loss']:.3f} -> {first['last_loss']:.3f} |")


if __name__ == "__main__":
    main()
