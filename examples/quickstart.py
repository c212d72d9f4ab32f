"""Quickstart: train a full-covariance MDN, then condition its predictions.

The task (``mdn_layers.datasets.correlated_2d``): 2-D targets whose conditional
density given a scalar input is a mixture of two correlated Gaussians. We

1. train an MDN with ``model.fit`` on the negative log-likelihood,
2. compare its held-out NLL with the oracle NLL of the true density,
3. condition each predicted mixture on the observed ``y[1]`` to get ``p(y0 | x, y1)``,
4. write ``quickstart.png``.

Run: ``python examples/quickstart.py [--epochs N] [--long] [--quiet] [--output PATH]``
(about 30 s on 2 CPU cores).
"""

if __name__ == "__main__":  # options first: --help answers before TensorFlow loads
    from _cli import parse_args
    ARGS = parse_args(__doc__, epochs=60, output="quickstart.png")

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import mdn_layers  # noqa: E402
from mdn_layers import datasets, plotting  # noqa: E402

EVENT_SIZE, NUM_COMPONENTS = 2, 4


def build_model(decay_steps):
    model = keras.Sequential([
        keras.Input((1,)),
        keras.layers.Dense(64, activation="tanh"),
        keras.layers.Dense(64, activation="tanh"),
        mdn_layers.MixtureDensity(EVENT_SIZE, NUM_COMPONENTS),
    ])
    learning_rate = keras.optimizers.schedules.CosineDecay(5e-3, decay_steps)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=mdn_layers.MixtureNLL(EVENT_SIZE, NUM_COMPONENTS))
    return model


def main(epochs, output, quiet=False):
    keras.utils.set_random_seed(0)
    train = datasets.correlated_2d(6000, seed=0)
    test = datasets.correlated_2d(2000, seed=1)
    model = build_model(decay_steps=epochs * int(np.ceil(len(train.x) / 128)))
    model.fit(train.x, train.y, epochs=epochs, batch_size=128,
              verbose=0 if quiet else "auto")

    predicted = mdn_layers.predict_mixture(model, test.x)
    nll = -float(np.mean(predicted.log_prob(test.y)))
    print(f"held-out NLL {nll:.3f} nats (oracle {test.oracle_nll():.3f}; "
          "negative values are normal for densities)")

    # p(y0 | x, y1): condition every predicted mixture on its observed y1.
    given_y1 = mdn_layers.condition(predicted, indices=[1], values=test.y[:, 1:])
    true_given_y1 = mdn_layers.condition(test.true_mixture, [1], test.y[:, 1:])
    conditional_nll = -float(np.mean(given_y1.log_prob(test.y[:, :1])))
    oracle_conditional = -float(np.mean(true_given_y1.log_prob(test.y[:, :1])))
    print(f"held-out NLL of y0 given y1: {conditional_nll:.3f} nats "
          f"(oracle {oracle_conditional:.3f})")

    figure, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    x_grid = np.linspace(-1, 1, 200, dtype="float32")[:, None]
    on_grid = mdn_layers.predict_mixture(model, x_grid)
    plotting.plot_conditional_density(on_grid, x_grid[:, 0], np.linspace(-2, 2, 200), dim=1,
                                      x_data=test.x, y_data=test.y[:, 1], ax=axes[0])
    axes[0].set_title("predicted p(y1 | x) with held-out data")
    row = int(np.argmin(np.abs(test.x[:, 0] - 0.7)))
    plotting.plot_mixture_2d(predicted[row], data=test.y[np.abs(test.x[:, 0] - 0.7) < 0.05],
                             ax=axes[1])
    axes[1].set_title(f"predicted p(y | x={test.x[row, 0]:.2f}), 2-sigma ellipses")
    y0_grid = np.linspace(-2, 2, 400)
    for y1 in (-0.6, 0.0, 0.6):
        x_and_y1 = np.array([[y1]], dtype="float32")
        model_view = mdn_layers.condition(predicted[row], [1], x_and_y1[0])
        true_view = mdn_layers.condition(test.true_mixture[row], [1], x_and_y1[0])
        line = plotting.plot_density_1d(model_view, y0_grid, ax=axes[2], label=f"y1={y1}")
        plotting.plot_density_1d(true_view, y0_grid, ax=axes[2], ls="--",
                                 color=line.lines[-1].get_color())
    axes[2].set_title("p(y0 | x, y1): model (solid) vs truth (dashed)")
    axes[2].legend()
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    print(f"wrote {output}")
    return nll


if __name__ == "__main__":
    args = ARGS
    main(args.epochs * (4 if args.long else 1), args.output, args.quiet)
