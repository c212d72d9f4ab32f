"""Training with missing targets: use every observed value instead of dropping rows.

Task: ``mdn_layers.datasets.correlated_2d`` (2-D targets, a correlated two-Gaussian
mixture), where ``y[1]`` is missing (NaN) in 70% of the training rows. We train

* ``MixtureNLL(..., allow_missing=True)`` on every row: each row's loss is the marginal NLL of
  its observed dims, so the rows with only ``y[0]`` still teach the model about ``y[0]``;
* the same model on the complete rows only (what you get by dropping rows with a NaN),

and compare held-out NLLs on complete test data: the joint ``p(y | x)`` and the marginal
``p(y0 | x)``, next to the oracle. Writes ``missing_targets.png``.

Run: ``python examples/missing_targets.py [--epochs N] [--long] [--quiet] [--output PATH]``
(about a minute on 2 CPU cores).
"""

import argparse

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import mdn_layers  # noqa: E402
from mdn_layers import datasets, metrics, plotting  # noqa: E402

EVENT_SIZE, NUM_COMPONENTS, MISSING = 2, 4, 0.7


def train(x, y, epochs, allow_missing, quiet):
    keras.utils.set_random_seed(0)
    head = mdn_layers.MixtureDensity(EVENT_SIZE, NUM_COMPONENTS)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(64, activation="tanh"),
                              keras.layers.Dense(64, activation="tanh"), head])
    steps = epochs * int(np.ceil(len(x) / 128))
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(5e-3, steps)),
                  loss=mdn_layers.MixtureNLL.for_layer(head, allow_missing=allow_missing),
                  metrics=[metrics.CRPS(EVENT_SIZE, NUM_COMPONENTS,
                                        allow_missing=allow_missing)])
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0 if quiet else "auto")
    return model


def main(epochs=40, output="missing_targets.png", quiet=False):
    train_set = datasets.correlated_2d(6000, seed=0)
    test = datasets.correlated_2d(2000, seed=1)
    rng = np.random.default_rng(2024)  # not the dataset's seed: its stream drew x
    y = train_set.y.copy()
    y[rng.random(len(y)) < MISSING, 1] = np.nan
    complete = ~np.isnan(y).any(-1)
    print(f"{len(y)} training rows, {complete.sum()} complete; the rest miss y[1]")

    with_missing = train(train_set.x, y, epochs, True, quiet)
    # Dropping rows leaves fewer steps per epoch; train as many steps as with every row.
    dropped = train(train_set.x[complete], y[complete],
                    int(epochs * len(y) / complete.sum()), False, quiet)
    oracle_marginal = mdn_layers.marginalize(test.true_mixture, [0]).log_prob(test.y[:, :1])
    print(f"{'':>28} joint NLL   NLL of y0 alone")
    print(f"{'oracle':>28} {test.oracle_nll():9.3f}   {-float(np.mean(oracle_marginal)):9.3f}")
    results = {}
    for name, model in (("allow_missing=True", with_missing), ("complete rows only", dropped)):
        mixture = mdn_layers.predict_mixture(model, test.x)
        joint = -float(np.mean(mixture.log_prob(test.y)))
        marginal = -float(np.mean(mdn_layers.marginalize(mixture, [0]).log_prob(test.y[:, :1])))
        results[name] = (joint, marginal)
        print(f"{name:>28} {joint:9.3f}   {marginal:9.3f}")

    figure, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    x_grid = np.linspace(-1, 1, 200, dtype="float32")[:, None]
    for ax, (name, model) in zip(axes, (("allow_missing=True", with_missing),
                                        ("complete rows only", dropped))):
        on_grid = mdn_layers.predict_mixture(model, x_grid)
        plotting.plot_conditional_density(on_grid, x_grid[:, 0], np.linspace(-1.6, 1.6, 200),
                                          dim=0, x_data=test.x, y_data=test.y[:, 0], ax=ax)
        ax.set_title(f"p(y0 | x), {name}")
    names = list(results)
    positions = np.arange(2)
    for offset, (column, label) in zip((-0.2, 0.2), enumerate(("joint", "y0 alone"))):
        axes[2].bar(positions + offset, [results[n][column] for n in names], width=0.4,
                    label=label)
    axes[2].axhline(test.oracle_nll(), color="k", ls="--", lw=1, label="oracle (joint)")
    axes[2].set_xticks(positions, names)
    axes[2].set_ylabel("held-out NLL (nats, lower is better)")
    axes[2].set_title(f"{MISSING:.0%} of y1 missing in training")
    axes[2].legend()
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    print(f"wrote {output}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--long", action="store_true", help="train 4x longer")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--output", default="missing_targets.png")
    args = parser.parse_args()
    main(args.epochs * (4 if args.long else 1), args.output, args.quiet)
