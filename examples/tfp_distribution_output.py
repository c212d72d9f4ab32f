"""The TFP idiom on tf_keras: a model whose output *is* the predicted mixture.

Same task as the quickstart (``datasets.correlated_2d``), written the way TFP's docs write
probabilistic models: the last layer is a ``DistributionLambda``
(``mdn_layers.tfp_layers.MixtureDistribution``), the loss is ``-dist.log_prob(y)``. Unlike
``tfp.layers.MixtureSameFamily`` the whole model saves to ``.keras`` and loads back with
``safe_mode=True`` and no ``custom_objects``; ``model.predict`` gives the mixture mean, and
``mdn_layers.predict_mixture`` the mixtures themselves.

Run: ``python examples/tfp_distribution_output.py [--epochs N] [--long] [--quiet] [--output PATH]``.
"""

import os
import tempfile

if __name__ == "__main__":  # options first: --help answers before TensorFlow loads
    from _cli import parse_args
    ARGS = parse_args(__doc__, epochs=60, output="tfp_distribution_output.png")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tf_keras  # noqa: E402

import mdn_layers  # noqa: E402
from mdn_layers import datasets, plotting, tfp_layers  # noqa: E402

EVENT_SIZE, NUM_COMPONENTS = 2, 4


def main(epochs, output, quiet=False):
    tf_keras.utils.set_random_seed(0)
    train = datasets.correlated_2d(6000, seed=0)
    test = datasets.correlated_2d(2000, seed=1)
    model = tf_keras.Sequential([
        tf_keras.Input((1,)),
        tf_keras.layers.Dense(64, activation="tanh"),
        tf_keras.layers.Dense(64, activation="tanh"),
        tf_keras.layers.Dense(tfp_layers.MixtureDistribution.params_size(EVENT_SIZE,
                                                                         NUM_COMPONENTS)),
        tfp_layers.MixtureDistribution(EVENT_SIZE, NUM_COMPONENTS),
    ])
    steps = epochs * int(np.ceil(len(train.x) / 128))
    model.compile(tf_keras.optimizers.Adam(tf_keras.optimizers.schedules.CosineDecay(5e-3, steps)),
                  loss=tfp_layers.negative_log_likelihood)
    model.fit(train.x, train.y, epochs=epochs, batch_size=128,
              verbose=0 if quiet else "auto")

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "mdn.keras")
        model.save(path)
        model = tf_keras.models.load_model(path, safe_mode=True)  # no custom_objects

    predicted = mdn_layers.predict_mixture(model, test.x)
    print(f"held-out NLL after save/load {-np.mean(predicted.log_prob(test.y)):.3f} nats "
          f"(oracle {test.oracle_nll():.3f})")
    print("model.predict gives the mixture mean:", np.round(model.predict(test.x[:2],
                                                                          verbose=0), 3))
    given_y1 = mdn_layers.condition(model(test.x), [1], test.y[:, 1:])  # the layer output
    print(f"held-out NLL of y0 given y1 {-np.mean(given_y1.log_prob(test.y[:, :1])):.3f} nats")

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    x_grid = np.linspace(-1, 1, 200, dtype="float32")[:, None]
    plotting.plot_conditional_density(mdn_layers.predict_mixture(model, x_grid), x_grid[:, 0],
                                      np.linspace(-2, 2, 200), dim=0, x_data=test.x,
                                      y_data=test.y[:, 0], ax=axes[0])
    axes[0].set_title("p(y0 | x) from the reloaded tf_keras model")
    plotting.plot_samples(mdn_layers.sample(predicted, seed=0), test.y, ax=axes[1])
    axes[1].set_title("samples vs held-out data")
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    print(f"wrote {output}")


if __name__ == "__main__":
    args = ARGS
    main(args.epochs * (4 if args.long else 1), args.output, args.quiet)
