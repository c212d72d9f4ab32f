"""Accuracy at a fixed budget: held-out NLL minus the oracle on every task of ``datasets``.

Each head gets the same data, trunk (two Dense(64, tanh)), optimizer (Adam, learning rate
3e-3 decaying to 0 by a cosine over the run), batch 256, epochs and ``K`` components, and is
scored on a held-out set with its own predicted distribution (TensorFlow backend, tf_keras for
``tfp.layers``). The oracle NLL is that of the true conditional density, the best any model
can reach; "gap" is held-out NLL minus oracle (nats, lower is better). Seconds per epoch are
medians after the first (compiling) epoch, Keras's default ``jit_compile`` ("auto": no XLA
on a CPU-only machine) for every head.

    python benchmarks/bench_accuracy.py [--epochs 40] [--train 20000] [--json results.json]

Heads: ``mdn_layers.MixtureDensity`` full and diag (Keras 3), keras-mdn-layer 1.0 ``MDN``
(Keras 3, diagonal) and ``tfp.layers.MixtureSameFamily(K, MultivariateNormalTriL(D))``
(tf_keras, full).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BACKEND"] = "tensorflow"

import keras  # noqa: E402
import keras_mdn_layer  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
import tf_keras  # noqa: E402
from _common import machine, timer_class, write_json  # noqa: E402

import mdn_layers  # noqa: E402
from mdn_layers import datasets  # noqa: E402

tfd = tfp.distributions
TASKS = {"bimodal_sine (D=1)": datasets.bimodal_sine,
         "correlated_2d (D=2)": datasets.correlated_2d,
         "correlated_3d (D=3)": datasets.correlated_3d}
K, BATCH, LR = 4, 256, 3e-3


EpochTimer = timer_class(keras.callbacks.Callback)
TfKerasEpochTimer = timer_class(tf_keras.callbacks.Callback)


def decay_steps(train, epochs):
    return epochs * -(-len(train.x) // BATCH)


def keras3_fit(train, head, loss, epochs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(train.x.shape[1:]),
                              keras.layers.Dense(64, activation="tanh"),
                              keras.layers.Dense(64, activation="tanh"), head])
    schedule = keras.optimizers.schedules.CosineDecay(LR, decay_steps(train, epochs))
    model.compile(keras.optimizers.Adam(schedule), loss=loss)
    timer = EpochTimer()
    model.fit(train.x, train.y, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=[timer])
    return model, timer.times


def ours(covariance):
    def run(train, test, epochs):
        d = train.y.shape[-1]
        model, times = keras3_fit(train, mdn_layers.MixtureDensity(d, K, covariance),
                                  mdn_layers.MixtureNLL(d, K, covariance), epochs)
        mixture = mdn_layers.predict_mixture(model, test.x, batch_size=4096)
        return times, -float(np.mean(mixture.log_prob(test.y)))
    return run


def keras_mdn_layer_run(train, test, epochs):
    d = train.y.shape[-1]
    model, times = keras3_fit(train, keras_mdn_layer.MDN(d, K),
                              keras_mdn_layer.get_mixture_loss_func(d, K), epochs)
    params = model.predict(test.x, batch_size=4096, verbose=0)
    mu, sigma, logits = keras_mdn_layer._split_mdn_params(params, d, K)
    mixture = tfd.MixtureSameFamily(  # its own density, checked against TFP in tests
        tfd.Categorical(logits=logits),
        tfd.MultivariateNormalDiag(np.reshape(mu, (-1, K, d)), np.reshape(sigma, (-1, K, d))))
    return times, -float(np.mean(mixture.log_prob(test.y)))


def tfp_layers_run(train, test, epochs):
    d = train.y.shape[-1]
    tf_keras.utils.set_random_seed(0)
    size = int(tfp.layers.MixtureSameFamily.params_size(
        K, tfp.layers.MultivariateNormalTriL.params_size(d)))
    model = tf_keras.Sequential([
        tf_keras.Input(train.x.shape[1:]), tf_keras.layers.Dense(64, activation="tanh"),
        tf_keras.layers.Dense(64, activation="tanh"), tf_keras.layers.Dense(size),
        tfp.layers.MixtureSameFamily(K, tfp.layers.MultivariateNormalTriL(d))])
    schedule = tf_keras.optimizers.schedules.CosineDecay(LR, decay_steps(train, epochs))
    model.compile(tf_keras.optimizers.Adam(schedule), loss=lambda y, dist: -dist.log_prob(y))
    timer = TfKerasEpochTimer()
    model.fit(train.x, train.y, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=[timer])
    return timer.times, -float(np.mean(model(test.x).log_prob(test.y)))


HEADS = {"mdn_layers full": ours("full"), "mdn_layers diag": ours("diag"),
         "keras-mdn-layer diag": keras_mdn_layer_run, "tfp.layers full": tfp_layers_run}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--train", type=int, default=20_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    rows = []
    for task_name, make in TASKS.items():
        train, test = make(args.train, seed=0), make(args.test, seed=1)
        oracle = test.oracle_nll()
        for head_name, run in HEADS.items():
            times, nll = run(train, test, args.epochs)
            rows.append({"task": task_name, "head": head_name, "nll": nll, "oracle": oracle,
                         "gap": nll - oracle, "s_per_epoch": float(np.median(times[1:]))})
    print(f"{args.train:,} training rows, {args.epochs} epochs, batch {BATCH}, K={K}, "
          f"{args.test:,} held-out rows; {machine()}, TensorFlow {tf.__version__}, Keras "
          f"{keras.__version__}\n")
    print("| task | head | held-out NLL | oracle | gap (nats) | s / epoch |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['task']} | {row['head']} | {row['nll']:.3f} | {row['oracle']:.3f} | "
              f"{row['gap']:+.3f} | {row['s_per_epoch']:.2f} |")
    write_json(args.json, {"machine": machine(), "epochs": args.epochs, "train": args.train,
                           "test": args.test, "K": K}, rows)


if __name__ == "__main__":
    main()
