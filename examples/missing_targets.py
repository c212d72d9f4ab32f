"""Training with missing targets: use every observed value instead of dropping rows.

Task: ``mdn_layers.datasets.correlated_2d`` (2-D targets, a correlated two-Gaussian
mixture), where ``y[1]`` goes missing (NaN) the way field data does: rarely for ``x < 0``
(20% of rows), almost always for ``x > 0`` (95%) — say, a second sensor that fails in one
operating range. We train

* ``MixtureNLL(..., allow_missing=True)`` on every row: each row's loss is the marginal NLL of
  its observed dims, so the many ``x > 0`` rows with only ``y[0]`` still teach the model
  ``p(y0 | x)`` there, and the few complete ones the joint;
* the same model on the complete rows only (what dropping rows with a NaN gives: for
  ``x > 0`` only about 150 rows are left), trained for as many steps,

and compare held-out NLLs on complete test data, over all inputs and over ``x > 0`` where
the dropped rows were: the joint ``p(y | x)`` and the marginal ``p(y0 | x)``, next to the
oracle. Writes ``missing_targets.png``.

Run: ``python examples/missing_targets.py [--epochs N] [--long] [--quiet] [--output PATH]``
(about a minute on 2 CPU cores).
"""

if __name__ == "__main__":  # options first: --help answers before TensorFlow loads
    from _cli import parse_args
    ARGS = parse_args(__doc__, epochs=40, output="missing_targets.png")

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import mdn_layers  # noqa: E402
from mdn_layers import datasets, metrics, plotting  # noqa: E402

EVENT_SIZE, NUM_COMPONENTS = 2, 4
MISSING_BELOW, MISSING_ABOVE = 0.2, 0.95  # chance that y[1] is missing for x < 0, x > 0


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


def held_out_nll(model, test, rows):
    """``(joint, y0 alone)`` mean NLL of the test ``rows``."""
    mixture = mdn_layers.predict_mixture(model, test.x[rows])
    joint = -float(np.mean(mixture.log_prob(test.y[rows])))
    marginal = mdn_layers.marginalize(mixture, [0]).log_prob(test.y[rows, :1])
    return joint, -float(np.mean(marginal))


def main(epochs=40, output="missing_targets.png", quiet=False):
    train_set = datasets.correlated_2d(6000, seed=0)
    test = datasets.correlated_2d(2000, seed=1)
    rng = np.random.default_rng(2024)  # not the dataset's seed: its stream drew x
    y = train_set.y.copy()
    chance = np.where(train_set.x[:, 0] > 0, MISSING_ABOVE, MISSING_BELOW)
    y[rng.random(len(y)) < chance, 1] = np.nan
    complete = ~np.isnan(y).any(-1)
    above = train_set.x[:, 0] > 0
    print(f"{len(y)} training rows, {complete.sum()} complete; for x > 0, {above.sum()} rows "
          f"of which {(complete & above).sum()} complete")

    print("training with allow_missing=True on every row")
    with_missing = train(train_set.x, y, epochs, True, quiet)
    # Dropping rows leaves fewer steps per epoch; train as many steps as with every row.
    print("training on the complete rows only")
    dropped = train(train_set.x[complete], y[complete],
                    int(epochs * len(y) / complete.sum()), False, quiet)
    models = {"allow_missing=True": with_missing, "complete rows only": dropped}
    regions = {"all x": np.ones(len(test.x), bool), "x > 0": test.x[:, 0] > 0}
    oracle_joint = test.true_mixture.log_prob(test.y).numpy()
    oracle_y0 = mdn_layers.marginalize(test.true_mixture, [0]).log_prob(test.y[:, :1]).numpy()
    truth = {region: (-float(np.mean(oracle_joint[rows])), -float(np.mean(oracle_y0[rows])))
             for region, rows in regions.items()}
    results = {name: {region: held_out_nll(model, test, rows)
                      for region, rows in regions.items()} for name, model in models.items()}
    print("held-out NLL, nats (lower is better)      all x: joint   y0    x > 0: joint   y0")
    for name, row in [("oracle", truth)] + list(results.items()):
        print(f"{name:>38} {row['all x'][0]:11.3f} {row['all x'][1]:6.3f} "
              f"{row['x > 0'][0]:13.3f} {row['x > 0'][1]:6.3f}")
    print("allow_missing keeps the y0-only rows, so it learns p(y | x) for x > 0 from 20x more "
          "rows; dropping them leaves the model to guess there.")

    figure, axes = plt.subplots(1, 3, figsize=(18, 4.8))
    x_grid = np.linspace(-1, 1, 200, dtype="float32")[:, None]
    for ax, (name, model) in zip(axes, models.items()):
        on_grid = mdn_layers.predict_mixture(model, x_grid)
        plotting.plot_conditional_density(on_grid, x_grid[:, 0], np.linspace(-1.6, 1.6, 200),
                                          dim=0, x_data=test.x, y_data=test.y[:, 0], ax=ax)
        ax.axvline(0.0, color="w", ls=":", lw=1)
        ax.set_title(f"p(y0 | x), {name}")
    bars = [(f"{name}\n{region}", results[name][region][0], truth[region][0])
            for region in regions for name in models]
    positions = np.arange(len(bars))
    colours = ["tab:blue", "tab:orange"] * len(regions)
    axes[2].bar(positions, [value for _, value, _ in bars], color=colours, width=0.6)
    axes[2].scatter(positions, [oracle for _, _, oracle in bars], color="k", marker="_", s=900,
                    label="oracle", zorder=3)
    values = [value for _, value, _ in bars] + [oracle for _, _, oracle in bars]
    span = max(values) - min(values)
    axes[2].set_ylim(min(values) - 0.15 * span, max(values) + 0.25 * span)
    axes[2].set_xticks(positions, [label for label, _, _ in bars], fontsize=8)
    axes[2].set_ylabel("held-out joint NLL (nats, lower is better)")
    axes[2].set_title(f"y1 missing in {MISSING_BELOW:.0%} (x < 0) / {MISSING_ABOVE:.0%} "
                      "(x > 0) of training rows")
    axes[2].legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    print(f"wrote {output}")
    return results


if __name__ == "__main__":
    args = ARGS
    main(args.epochs * (4 if args.long else 1), args.output, args.quiet)
