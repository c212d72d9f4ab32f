"""Sampling with temperature, summaries and calibration of a trained MDN.

Trains a 1-D-target MDN on ``datasets.bimodal_sine``, then

* draws samples at several temperatures (``temperature`` divides the logits,
  ``sigma_temperature`` multiplies the covariances),
* reports mode, median and 90% interval for a few inputs,
* scores the held-out set (NLL, CRPS, energy score) and checks calibration (coverage, PIT),
* writes ``sampling_and_calibration.png``.

Run: ``python examples/sampling_and_calibration.py [--epochs N] [--long] [--quiet]
[--output PATH]``.
"""

if __name__ == "__main__":  # options first: --help answers before TensorFlow loads
    from _cli import parse_args
    ARGS = parse_args(__doc__, epochs=40, output="sampling_and_calibration.png")

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import mdn_layers  # noqa: E402
from mdn_layers import datasets, metrics, plotting, scores  # noqa: E402


def main(epochs, output, quiet=False):
    keras.utils.set_random_seed(1)
    train, test = datasets.bimodal_sine(4000, seed=0), datasets.bimodal_sine(1500, seed=1)
    model = keras.Sequential([
        keras.Input((1,)),
        keras.layers.Dense(64, activation="tanh"),
        keras.layers.Dense(64, activation="tanh"),
        mdn_layers.MixtureDensity(1, 4),
    ])
    # A decaying learning rate lets the mixture settle instead of jittering around the optimum.
    steps = epochs * int(np.ceil(len(train.x) / 128))
    learning_rate = keras.optimizers.schedules.CosineDecay(5e-3, steps)
    model.compile(keras.optimizers.Adam(learning_rate), loss=mdn_layers.MixtureNLL(1, 4),
                  metrics=[metrics.CRPS(1, 4), metrics.IntervalCoverage(1, 4, level=0.9)])
    model.fit(train.x, train.y, epochs=epochs, batch_size=128,
              verbose=0 if quiet else "auto")

    predicted = mdn_layers.predict_mixture(model, test.x)
    print(f"held-out NLL {np.mean(scores.nll(predicted, test.y)):.3f} nats "
          f"(oracle {test.oracle_nll():.3f})")
    print(f"held-out CRPS {np.mean(scores.crps(predicted, test.y)):.4f}, energy score "
          f"{np.mean(scores.energy_score(predicted, test.y, seed=0)):.4f}")
    print("coverage of central intervals (50%, 90%):",
          np.round(scores.coverage(predicted, test.y, levels=(0.5, 0.9)).numpy()[:, 0], 3))

    inputs = np.array([[-2.0], [0.0], [2.0]], dtype="float32")
    at_inputs = mdn_layers.predict_mixture(model, inputs)
    lower, upper = mdn_layers.central_interval(at_inputs, 0.9)
    for row, x in enumerate(inputs[:, 0]):
        print(f"x={x:+.1f}: mode {mdn_layers.mode(at_inputs)[row, 0]:+.3f}, median "
              f"{mdn_layers.quantile(at_inputs, 0.5)[row, 0]:+.3f}, 90% interval "
              f"[{lower[row, 0]:+.3f}, {upper[row, 0]:+.3f}]")

    figure, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    x_grid = np.linspace(-3, 3, 300, dtype="float32")[:, None]
    on_grid = mdn_layers.predict_mixture(model, x_grid)
    for temperature, colour in ((1.0, "tab:blue"), (0.3, "tab:red")):
        draws = mdn_layers.sample(on_grid, 3, temperature=temperature,
                                  sigma_temperature=temperature, seed=2).numpy()
        axes[0].scatter(np.tile(x_grid[:, 0], 3), draws.ravel(), s=3, c=colour,
                        label=f"temperature = sigma_temperature = {temperature}")
    axes[0].set_title("samples at two temperatures")
    axes[0].set_xlabel("x")
    axes[0].set_ylabel("y")
    axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, markerscale=3,
                   fontsize=8)
    samples = mdn_layers.sample(predicted, seed=3)
    plotting.plot_samples(samples, test.y, ax=axes[1])
    axes[1].set_title("marginal of samples vs held-out data")
    plotting.plot_pit_histogram(scores.pit(predicted, test.y), ax=axes[2])
    axes[2].set_title("PIT histogram (flat = calibrated)")
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    print(f"wrote {output}")


if __name__ == "__main__":
    args = ARGS
    main(args.epochs * (4 if args.long else 1), args.output, args.quiet)
