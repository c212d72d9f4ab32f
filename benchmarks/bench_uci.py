"""Real tables: held-out NLL in the targets' own units against peers and the published results.

Protocol of Deep Ensembles (Lakshminarayanan et al., 2017) and NGBoost (Duan et al., 2020):
random 90/10 splits (split ``s`` uses ``numpy.random.default_rng(s)``), inputs standardised on
the training rows, one hidden layer of 50 ReLU, Adam; the score is the mean NLL of the test
targets in their original units (dollars x 1000 for Boston, MPa for concrete), lower is
better; mean +- standard error over splits, seconds per split.

    python benchmarks/bench_uci.py [--tables boston concrete] [--splits 20] [--json out.json]

Methods, all on the same splits:

* ``mdn_layers`` (the README's recipe, ``mdn_layers.fit_tabular``): raw targets, the head
  ``adapt``-ed; 10% of the training rows held out; one network per input-noise level
  (0.05, 0.1, 0.2 on the standardised inputs), Adam 0.01 halved on plateaus, early stopping
  with the best epoch's weights; the most regularised network within one standard error of
  the best held-out NLL is kept. ``K = 5`` components; ``K = 1`` (a Gaussian) with the noise
  chosen for ``K = 5``. The ensemble is ``predict_mixture`` of the 5 models of
  ``mdn_layers.fit_tabular_ensemble`` (member 0 is the single model; members 1..4 use member
  0's noise and their own held-out rows and seeds);
* keras-mdn-layer 1.0 (Keras 3, diagonal): the same trunk, noise and epochs as our member 0,
  targets standardised by hand (it has no adapt), its density from its own params, moved to
  original units;
* NGBoost 0.6 (Normal, its defaults: 500 trees, learning rate 0.01) on the raw table.

The published numbers (20 splits; their own code) are quoted beside ours.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from scipy import special, stats  # noqa: E402

import mdn_layers  # noqa: E402
from mdn_layers import datasets  # noqa: E402
from _common import machine, write_json  # noqa: E402

COMPONENTS, MEMBERS, BATCH = 5, 5, 32  # the recipe's (mdn_layers.fit_tabular defaults)

PUBLISHED = {  # mean +- standard deviation over 20 splits, as the papers print them
    "boston": {"Deep Ensembles (5 nets)": "2.41 ± 0.25", "NGBoost": "2.43 ± 0.15",
               "MC-dropout": "2.46 ± 0.25", "MDN + noise (Rothfuss 2019)": "2.49 ± 0.11",
               "PBP": "2.57 ± 0.09"},
    "concrete": {"Deep Ensembles (5 nets)": "3.06 ± 0.18", "NGBoost": "3.04 ± 0.17",
                 "MC-dropout": "3.04 ± 0.09", "PBP": "3.16 ± 0.02"},
}


def splits(num_rows, num_splits):
    for split in range(num_splits):
        order = np.random.default_rng(split).permutation(num_rows)
        cut = int(round(0.9 * num_rows))
        yield split, order[:cut], order[cut:]


def standardise_inputs(x, train):
    mean, std = x[train].mean(0), x[train].std(0)
    return ((x - mean) / np.where(std > 0, std, 1.0)).astype("float32")


def fit_ours(x, y, num_components, seed, noise_levels=mdn_layers.recipes.DEFAULT_NOISE_LEVELS,
             max_epochs=600):
    """The README recipe: ``fit_tabular`` on raw targets."""
    return mdn_layers.fit_tabular(x, y, num_components=num_components, seed=seed,
                                  noise_levels=noise_levels, max_epochs=max_epochs)


def nll(mixture, y):
    return float(-np.mean(mixture.log_prob(y)))


def keras_mdn_layer_nll(x_train, y_train, x_test, y_test, seed, epochs, noise):
    import keras_mdn_layer
    keras.utils.set_random_seed(seed)
    mean, std = y_train.mean(), y_train.std()
    model = mdn_layers.recipes.tabular_model(x_train.shape[1],
                                             keras_mdn_layer.MDN(1, COMPONENTS), noise)
    model.compile(keras.optimizers.Adam(0.01),
                  loss=keras_mdn_layer.get_mixture_loss_func(1, COMPONENTS))
    model.fit(x_train, (y_train - mean) / std, epochs=epochs, batch_size=BATCH, verbose=0)
    params = model.predict(x_test, verbose=0).astype("float64")
    mu, sigma, logits = np.split(params, [COMPONENTS, 2 * COMPONENTS], axis=-1)  # its layout
    z = (y_test - mean) / std
    log_density = special.logsumexp(
        special.log_softmax(logits, -1) + stats.norm(mu, sigma).logpdf(z), axis=-1)
    return float(-np.mean(log_density - np.log(std)))


def ngboost_nll(x_train, y_train, x_test, y_test):
    from ngboost import NGBRegressor
    model = NGBRegressor(verbose=False, random_state=0).fit(x_train, y_train[:, 0])
    return float(-np.mean(model.pred_dist(x_test).logpdf(y_test[:, 0])))


def coverage(mixture, y, level=0.9):
    """Fraction of the (one-dim) targets inside the central ``level`` interval."""
    return float(mdn_layers.scores.coverage(mixture, y, [level])[0, 0])


def run_table(name, num_splits, max_epochs, members, peers):
    x_raw, y = datasets.real_table(name)
    scores = {}
    for split, train, test in splits(len(x_raw), num_splits):
        x = standardise_inputs(x_raw, train)
        row = {}
        start = time.perf_counter()
        fits = mdn_layers.fit_tabular_ensemble(x[train], y[train], members=members,
                                               num_components=COMPONENTS, seed=1000 * split,
                                               max_epochs=max_epochs)
        first = fits[0]
        elapsed = time.perf_counter() - start
        single = mdn_layers.predict_mixture(first.model, x[test])
        row[f"mdn_layers K={COMPONENTS}"] = (nll(single, y[test]), elapsed / members)
        combined = mdn_layers.predict_mixture([fit.model for fit in fits], x[test])
        row[f"mdn_layers ensemble of {members}"] = (nll(combined, y[test]), elapsed)
        start = time.perf_counter()
        gaussian = fit_ours(x[train], y[train], 1, 1000 * split, [first.input_noise],
                            max_epochs)
        row["mdn_layers K=1"] = (nll(mdn_layers.predict_mixture(gaussian.model, x[test]),
                                     y[test]), time.perf_counter() - start)
        row["coverage 90% (single)"] = (coverage(single, y[test]), 0.0)
        row["coverage 90% (ensemble)"] = (coverage(combined, y[test]), 0.0)
        row["chosen input noise"] = (first.input_noise, 0.0)
        if peers:
            start = time.perf_counter()
            row[f"keras-mdn-layer K={COMPONENTS}"] = (
                keras_mdn_layer_nll(x[train], y[train], x[test], y[test], split,
                                    first.epochs, first.input_noise),
                time.perf_counter() - start)
            start = time.perf_counter()
            row["NGBoost"] = (ngboost_nll(x_raw[train], y[train], x_raw[test], y[test]),
                              time.perf_counter() - start)
        for method, value in row.items():
            scores.setdefault(method, []).append(value)
        print(f"  {name} split {split}: " + ", ".join(
            f"{method} {value[0]:.3f}" for method, value in row.items()), flush=True)
    return [{"table": name, "method": method, "mean": float(np.mean([v[0] for v in values])),
             "stderr": float(np.std([v[0] for v in values]) / np.sqrt(len(values))),
             "s_per_split": float(np.mean([v[1] for v in values])), "splits": len(values)}
            for method, values in scores.items()]


def markdown(rows):
    lines = ["| table | method | test NLL (mean ± s.e.) | s per split |", "|---|---|---:|---:|"]
    for row in rows:
        if row["method"].startswith("coverage"):
            lines.append(f"| {row['table']} | {row['method']} | {row['mean']:.1%} | |")
        elif row["method"] == "chosen input noise":
            lines.append(f"| {row['table']} | {row['method']} (mean) | {row['mean']:.3f} | |")
        else:
            lines.append(f"| {row['table']} | {row['method']} | {row['mean']:.3f} ± "
                         f"{row['stderr']:.3f} | {row['s_per_split']:.1f} |")
    for table in sorted({row["table"] for row in rows}):
        for method, value in PUBLISHED.get(table, {}).items():
            lines.append(f"| {table} | published: {method} | {value} (± s.d.) | |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=["boston", "concrete"])
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--max-epochs", type=int, default=600,
                        help="early stopping's limit (a smoke run sets it low)")
    parser.add_argument("--members", type=int, default=MEMBERS)
    parser.add_argument("--no-peers", action="store_true", help="ours only")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    rows = [row for table in args.tables for row in run_table(
        table, args.splits, args.max_epochs, args.members, not args.no_peers)]
    print(f"{args.splits} splits, the fit_tabular recipe (at most {args.max_epochs} epochs), "
          f"batch {BATCH}; {machine()}, Keras {keras.__version__} on "
          f"{keras.backend.backend()}")
    print(markdown(rows))
    write_json(args.json, {"machine": machine(), "backend": keras.backend.backend(),
                           "splits": args.splits, "max_epochs": args.max_epochs}, rows)


if __name__ == "__main__":
    main()
