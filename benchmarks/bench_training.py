"""Training MDNs through model.fit: mdn_layers against keras-mdn-layer and tfp.layers.

Same data (``datasets.correlated_2d``: 2-D targets, correlated mixture), same trunk
(two Dense(64, tanh)), same optimizer (Adam 3e-3), batch 256, K=4 components. For each
head we time epochs after a warm-up epoch and report the held-out NLL (nats) after the
same number of epochs, computed from each library's own predicted parameters.

    python benchmarks/bench_training.py [--epochs 15] [--train 20000]

Heads: keras-mdn-layer ``MDN`` (Keras 3, diagonal), ``mdn_layers.MixtureDensity``
(Keras 3; diagonal and full), ``tfp.layers.MixtureSameFamily(K, MultivariateNormalTriL(D))``
(tf_keras, full) and ``mdn_layers.tfp_layers.MixtureDistribution`` (tf_keras, full).
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_mdn_layer  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
import tf_keras  # noqa: E402

import mdn_layers  # noqa: E402
from mdn_layers import datasets, tfp_layers  # noqa: E402

D, K, BATCH, LR = 2, 4, 256, 3e-3


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times = getattr(self, "times", []) + [time.perf_counter() - self.start]


class TfKerasEpochTimer(tf_keras.callbacks.Callback):
    on_epoch_begin = EpochTimer.on_epoch_begin
    on_epoch_end = EpochTimer.on_epoch_end


def keras3_trunk(head):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(64, activation="tanh"),
                             keras.layers.Dense(64, activation="tanh"), head])


def tf_keras_trunk(*head):
    tf_keras.utils.set_random_seed(0)
    return tf_keras.Sequential([tf_keras.Input((1,)),
                                tf_keras.layers.Dense(64, activation="tanh"),
                                tf_keras.layers.Dense(64, activation="tanh"), *head])


def keras_mdn_layer_run(train, test, epochs):
    model = keras3_trunk(keras_mdn_layer.MDN(D, K))
    model.compile(keras.optimizers.Adam(LR), loss=keras_mdn_layer.get_mixture_loss_func(D, K))
    timer = EpochTimer()
    model.fit(train.x, train.y, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=[timer])
    params = model.predict(test.x, batch_size=4096, verbose=0)
    mu, sigma, logits = keras_mdn_layer._split_mdn_params(params, D, K)
    log_prob = keras_mdn_layer._mdn_log_prob(test.y, mu, sigma, logits, D, K)
    return timer.times, -float(np.mean(log_prob))


def ours_keras3_run(covariance, jit_compile="auto"):
    def run(train, test, epochs):
        model = keras3_trunk(mdn_layers.MixtureDensity(D, K, covariance))
        model.compile(keras.optimizers.Adam(LR), loss=mdn_layers.MixtureNLL(D, K, covariance),
                      jit_compile=jit_compile)
        timer = EpochTimer()
        model.fit(train.x, train.y, epochs=epochs, batch_size=BATCH, verbose=0,
                  callbacks=[timer])
        mixture = mdn_layers.predict_mixture(model, test.x, batch_size=4096)
        return timer.times, -float(np.mean(mixture.log_prob(test.y)))
    return run


def tf_keras_run(head):
    def run(train, test, epochs):
        model = tf_keras_trunk(*head())
        model.compile(tf_keras.optimizers.Adam(LR),
                      loss=lambda y, dist: -dist.log_prob(y))
        timer = TfKerasEpochTimer()
        model.fit(train.x, train.y, epochs=epochs, batch_size=BATCH, verbose=0,
                  callbacks=[timer])
        params_model = tf_keras.Model(model.inputs, model.layers[-1].input)
        params = params_model.predict(test.x, batch_size=4096, verbose=0)
        mixture = mdn_layers.mixture_from_params(params, D, K)  # same layout as both heads
        return timer.times, -float(np.mean(mixture.log_prob(test.y)))
    return run


def tfp_head():
    component_size = tfp.layers.MultivariateNormalTriL.params_size(D)
    size = tfp.layers.MixtureSameFamily.params_size(K, component_size)
    return (tf_keras.layers.Dense(int(size)),
            tfp.layers.MixtureSameFamily(K, tfp.layers.MultivariateNormalTriL(D)))


def our_tf_keras_head():
    return (tf_keras.layers.Dense(tfp_layers.MixtureDistribution.params_size(D, K)),
            tfp_layers.MixtureDistribution(D, K))


def main(epochs, num_train):
    train = datasets.correlated_2d(num_train, seed=0)
    test = datasets.correlated_2d(5000, seed=1)
    runs = [
        ("keras-mdn-layer MDN (Keras 3, diag)", keras_mdn_layer_run),
        ("mdn_layers.MixtureDensity (Keras 3, diag)", ours_keras3_run("diag")),
        ("mdn_layers.MixtureDensity (Keras 3, full)", ours_keras3_run("full")),
        ("mdn_layers.MixtureDensity (Keras 3, full, jit_compile=True)",
         ours_keras3_run("full", jit_compile=True)),
        ("tfp.layers.MixtureSameFamily + MultivariateNormalTriL (tf_keras, full)",
         tf_keras_run(tfp_head)),
        ("mdn_layers.tfp_layers.MixtureDistribution (tf_keras, full)",
         tf_keras_run(our_tf_keras_head)),
    ]
    rows = []
    for name, run in runs:
        times, nll = run(train, test, epochs)
        rows.append((name, float(np.median(times[1:])), nll))
    baseline = rows[0][1]
    print(f"# Training {num_train:,} samples x {epochs} epochs, batch {BATCH}, K={K}, D={D}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, CPU only, TensorFlow "
          f"{tf.__version__}, Keras {keras.__version__}; oracle NLL {test.oracle_nll():.3f}\n")
    print("| head | s / epoch (median, after warm-up) | time vs keras-mdn-layer | "
          "held-out NLL |")
    print("|---|---:|---:|---:|")
    for name, seconds, nll in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / baseline:.2f}x | {nll:.3f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train", type=int, default=20_000)
    args = parser.parse_args()
    main(args.epochs, args.train)
