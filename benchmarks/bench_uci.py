"""The field's benchmark: the nine standard UCI tables on their published splits.

Held-out NLL in nats of the test targets in their own units (lower is better), mean ± standard
error over the standard splits (20 per table, protein 5), 90% central-interval coverage and
seconds per split, beside the published numbers (Deep Ensembles, MC-dropout, NGBoost, Deep
Evidential Regression, WGBoost).

    python benchmarks/bench_uci.py [--tables boston wine] [--splits 0 1 2] [--members 5]

Every split's result is written to ``--results`` (default ``benchmarks/results/uci/``) as soon
as it is done, and a rerun skips splits already there, so a long run resumes where it stopped;
the summary is written to ``results/uci.json`` and ``results/uci.md``.

Methods, all on the same splits (the training rows only for every choice):

* ``mdn_layers single``: ``mdn_layers.fit_tabular`` as a user calls it: raw inputs
  (normalised inside the model), raw targets; its size rules choose batch, epochs, patience,
  width (50 hidden ReLU; 100 from 20,000 rows, which is the protocol's trunk on all nine
  tables) and noise levels; input noise and ``K`` in {1, 5} are chosen by the
  one-standard-error rule on held-out rows; grid targets get the scale floor;
* ``mdn_layers ensemble of M``: ``predict_mixture`` of ``fit_tabular_ensemble``'s M models;
* for tables in ``--dequantize-tables`` (wine by default: its six integer scores), both again
  with ``grid_targets="dequantize"``, scored as ``-log P(cell) + log(step)``: the mixture's
  mass on the target's grid cell ``[y - step/2, y + step/2]``, per unit of target;
* NGBoost 0.6 (Normal, 2000 trees at most, learning rate 0.01, early stopping after 50
  rounds on 10% of the training rows) on the raw table;
* keras-mdn-layer 1.0 (diagonal) with our single model's trunk, normalisation, noise, ``K``
  and epochs, targets standardised by hand (it has no ``adapt``).
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import uci  # noqa: E402
from _common import BENCHMARKS_DIR, machine, write_json  # noqa: E402
from scipy import special, stats  # noqa: E402

import mdn_layers  # noqa: E402

PUBLISHED = {  # mean test NLL over the standard splits (the papers' own code)
    "boston": (2.41, 2.40, 2.43, 2.35, 2.47), "concrete": (3.06, 2.93, 3.04, 3.01, 2.83),
    "energy": (1.38, 1.21, 0.60, 1.39, 0.53), "kin8nm": (-1.20, -1.14, -0.49, -1.24, -0.44),
    "naval": (-5.63, -4.45, -5.34, -5.73, -5.47), "power": (2.79, 2.80, 2.79, 2.81, 2.60),
    "protein": (2.83, 2.87, 2.81, 2.63, 2.70), "wine": (0.94, 0.93, 0.91, 0.89, 0.95),
    "yacht": (1.18, 1.25, 0.20, 1.03, 0.16)}
PUBLISHED_METHODS = ("Deep Ensembles", "MC-dropout", "NGBoost", "Deep Evidential", "WGBoost")
BEST_PUBLISHED = {table: min(values) for table, values in PUBLISHED.items()}
BEST_PUBLISHED["naval"] = -5.87  # Concrete Dropout


def nll(mixture, y):
    return float(-np.mean(mixture.log_prob(y)))


def one_dim_parts(mixture):
    """``(weights [N, K], loc [N, K], scale [N, K])`` of a mixture over one target dim."""
    weights = special.softmax(mixture.mixture_distribution.logits.numpy(), axis=-1)
    components = mixture.components_distribution
    loc = components.mean().numpy()[..., 0]
    scale = components.stddev().numpy()[..., 0]
    return weights, loc, scale


def cell_nll(mixture, y, step):
    """``-log P(y - step/2 < Y < y + step/2) + log(step)`` averaged over rows: the NLL of a
    target on a grid, per unit of target (comparable with a density's NLL)."""
    weights, loc, scale = one_dim_parts(mixture)
    upper = stats.norm.cdf((y + step / 2 - loc) / scale)
    lower = stats.norm.cdf((y - step / 2 - loc) / scale)
    mass = np.sum(weights * (upper - lower), axis=-1)
    return float(np.mean(-np.log(np.maximum(mass, 1e-300)) + np.log(step)))


def coverage(mixture, y, level=0.9):
    """Fraction of the (one-dim) targets inside the central ``level`` interval."""
    return float(mdn_layers.scores.coverage(mixture, y, [level])[0, 0])


def keras_mdn_layer_nll(table, train, test, fit, epochs):
    import keras_mdn_layer
    k = fit.num_components
    x_train, y_train = table.x[train].astype("float32"), table.y[train]
    mean, std = y_train.mean(), y_train.std()
    keras.utils.set_random_seed(0)
    model = mdn_layers.training.tabular.tabular_model(
        x_train.shape[1], keras_mdn_layer.MDN(1, k), fit.input_noise, fit.schedule.units,
        mdn_layers.training.tabular.input_normalization(x_train))
    model.compile(keras.optimizers.Adam(0.01), loss=keras_mdn_layer.get_mixture_loss_func(1, k))
    model.fit(x_train, ((y_train - mean) / std).astype("float32"), epochs=epochs,
              batch_size=fit.schedule.batch_size, verbose=0)
    params = model.predict(table.x[test].astype("float32"), verbose=0).astype("float64")
    mu, sigma, logits = np.split(params, [k, 2 * k], axis=-1)  # its layout
    z = (table.y[test] - mean) / std
    log_density = special.logsumexp(
        special.log_softmax(logits, -1) + stats.norm(mu, sigma).logpdf(z), axis=-1)
    return float(-np.mean(log_density - np.log(std)))


def ngboost_nll(table, train, test):
    from ngboost import NGBRegressor
    rng = np.random.default_rng(0)
    order = rng.permutation(train)
    held = max(2, int(round(0.1 * len(order))))
    model = NGBRegressor(n_estimators=2000, verbose=False, random_state=0)
    model.fit(table.x[order[held:]], table.y[order[held:], 0],
              X_val=table.x[order[:held]], Y_val=table.y[order[:held], 0],
              early_stopping_rounds=50)
    return float(-np.mean(model.pred_dist(table.x[test]).logpdf(table.y[test, 0])))


def ours(table, train, test, members, grid_targets, max_epochs, seed, label):
    """``{method: {"nll", "seconds", "coverage"}}`` of our single model and ensemble."""
    x, y = table.x[train], table.y[train]
    start = time.perf_counter()
    first = mdn_layers.fit_tabular(x, y, seed=seed, grid_targets=grid_targets,
                                   max_epochs=max_epochs)
    single_seconds = time.perf_counter() - start
    fits = mdn_layers.fit_tabular_ensemble(x, y, members=members, seed=seed, first=first,
                                           grid_targets=grid_targets, max_epochs=max_epochs)
    elapsed = time.perf_counter() - start
    mixtures = {f"mdn_layers single{label}": mdn_layers.predict_mixture(first.model,
                                                                        table.x[test]),
                f"mdn_layers ensemble of {members}{label}": mdn_layers.predict_mixture(
                    [fit.model for fit in fits], table.x[test])}
    result = {}
    for (method, mixture), seconds in zip(mixtures.items(), (single_seconds, elapsed)):
        step = float(first.grid_step[0])
        score = (cell_nll(mixture, table.y[test], step) if grid_targets == "dequantize"
                 else nll(mixture, table.y[test]))
        result[method] = {"nll": score, "seconds": seconds,
                          "coverage": coverage(mixture, table.y[test])}
    return result, first


def run_split(table, split, args):
    train, test = table.train[split], table.test[split]
    seed = 1000 * split
    max_epochs = args.max_epochs
    methods, first = ours(table, train, test, args.members, "floor", max_epochs, seed, "")
    choices = {"input_noise": first.input_noise, "num_components": first.num_components,
               "epochs": first.epochs, "grid_step": first.grid_step.tolist(),
               "schedule": first.schedule._asdict(),
               "validation_nll": {str(k): v for k, v in first.validation_nll.items()},
               "components_nll": {str(k): v for k, v in first.components_nll.items()}}
    if table.name in args.dequantize_tables:
        more, _ = ours(table, train, test, args.members, "dequantize", max_epochs, seed,
                       " (dequantized, cell NLL)")
        methods.update(more)
    if not args.no_peers:
        start = time.perf_counter()
        methods["NGBoost"] = {"nll": ngboost_nll(table, train, test),
                              "seconds": time.perf_counter() - start}
        start = time.perf_counter()
        methods["keras-mdn-layer (same trunk and K)"] = {
            "nll": keras_mdn_layer_nll(table, train, test, first, first.epochs),
            "seconds": time.perf_counter() - start}
    return {"table": table.name, "split": split, "methods": methods, "choices": choices}


def _canonical(method):
    """Method names as this version writes them (earlier runs named keras-mdn-layer by K)."""
    return ("keras-mdn-layer (same trunk and K)" if method.startswith("keras-mdn-layer")
            else method)


def summarise(results):
    """Rows ``{table, method, mean, stderr, coverage, s_per_split, splits}``."""
    results = [{**r, "methods": {_canonical(m): v for m, v in r["methods"].items()}}
               for r in results]
    rows = []
    for name in uci.TABLES:
        done = [r for r in results if r["table"] == name]
        for method in sorted({m for r in done for m in r["methods"]}, key=_method_order):
            values = [r["methods"][method] for r in done if method in r["methods"]]
            scores = np.array([v["nll"] for v in values])
            covered = [v["coverage"] for v in values if "coverage" in v]
            rows.append({"table": name, "method": method, "mean": float(scores.mean()),
                         "stderr": float(scores.std(ddof=1) / np.sqrt(len(scores)))
                         if len(scores) > 1 else float("nan"),
                         "coverage": float(np.mean(covered)) if covered else None,
                         "s_per_split": float(np.mean([v["seconds"] for v in values])),
                         "splits": len(values)})
    return rows


def _method_order(method):
    return (not method.startswith("mdn_layers"), "dequantized" in method, method)


def markdown(rows):
    lines = ["| table | method | test NLL (mean ± s.e.) | 90% coverage | s per split | splits |",
             "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        cover = "" if row["coverage"] is None else f"{row['coverage']:.1%}"
        lines.append(f"| {row['table']} | {row['method']} | {row['mean']:.3f} ± "
                     f"{row['stderr']:.3f} | {cover} | {row['s_per_split']:.1f} | "
                     f"{row['splits']} |")
    lines += ["", "| table | " + " | ".join(PUBLISHED_METHODS) + " | best published |",
              "|---|" + "---:|" * (len(PUBLISHED_METHODS) + 1)]
    for table, values in PUBLISHED.items():
        lines.append(f"| {table} | " + " | ".join(f"{v:.2f}" for v in values)
                     + f" | {BEST_PUBLISHED[table]:.2f} |")
    return "\n".join(lines)


def _row(rows, table, method):
    return next((row for row in rows if row["table"] == table and row["method"] == method), None)


def targets(rows, members=5):
    """Markdown lines: the standard-table targets, met or missed and by how much. Wine counts
    with its honest variants (the better of floored and dequantised)."""
    ensemble, single = f"mdn_layers ensemble of {members}", "mdn_layers single"

    def score(table, method):
        found = [_row(rows, table, name) for name in (method, f"{method} (dequantized, cell NLL)")]
        found = [row["mean"] for row in found if row is not None]
        return min(found) if found else None

    tables = [table for table in PUBLISHED if score(table, ensemble) is not None]
    beats = {method: [t for t in tables if score(t, method) < PUBLISHED[t][0]]
             for method in (ensemble, single)}
    best = [t for t in tables if score(t, ensemble) < BEST_PUBLISHED[t]]

    def missed(method, reference):
        return ", ".join(f"{t} {score(t, method):.3f} vs {reference[t]:.2f}"
                         for t in tables if score(t, method) >= reference[t]) or "none"

    deep_ensembles = {t: PUBLISHED[t][0] for t in PUBLISHED}
    lines = [f"* ensemble beats Deep Ensembles on {len(beats[ensemble])} of {len(tables)} "
             f"(target: all nine; missed: {missed(ensemble, deep_ensembles)})",
             f"* ensemble beats the best published number on {len(best)} of {len(tables)} "
             f"(target: at least five; {', '.join(best) or 'none'})",
             f"* single model beats Deep Ensembles on {len(beats[single])} of {len(tables)} "
             f"(target: at least seven; missed: {missed(single, deep_ensembles)})"]
    for table, goal in (("boston", 2.30), ("concrete", 2.85)):
        if score(table, ensemble) is not None:
            value = score(table, ensemble)
            lines.append(f"* {table} ensemble {value:.3f} (target <= {goal:.2f}: "
                         f"{'met' if value <= goal else f'missed by {value - goal:.3f}'})")
    outside = [f"{row['table']} {row['method']} {row['coverage']:.1%}" for row in rows
               if row["coverage"] is not None and row["method"].startswith("mdn_layers")
               and not 0.85 <= row["coverage"] <= 0.95
               and not (row["table"] == "wine" and "dequantized" not in row["method"])]
    lines.append("* 90% intervals outside 85-95% (wine on its dequantised variant): "
                 + ("; ".join(outside) or "none"))
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=list(uci.TABLES), choices=uci.TABLES)
    parser.add_argument("--splits", nargs="+", type=int,
                        help="split numbers (default: every standard split)")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="cap on epochs (a smoke run sets it low; default: the recipe's)")
    parser.add_argument("--dequantize-tables", nargs="*", default=["wine"])
    parser.add_argument("--no-peers", action="store_true", help="ours only")
    parser.add_argument("--results", default=os.path.join(BENCHMARKS_DIR, "results", "uci"),
                        help="folder of per-split results (a rerun skips those present)")
    parser.add_argument("--json", default=os.path.join(BENCHMARKS_DIR, "results", "uci.json"))
    parser.add_argument("--markdown",
                        default=os.path.join(BENCHMARKS_DIR, "results", "uci.md"))
    args = parser.parse_args()
    os.makedirs(args.results, exist_ok=True)
    tables = {name: uci.load(name) for name in args.tables}
    # Round robin over the splits (split 0 of every table first), so a run stopped early
    # has the same number of splits of every table.
    rounds = max(len(table.train) for table in tables.values())
    results = []
    for split in (args.splits if args.splits is not None else range(rounds)):
        for name, table in tables.items():
            if split >= len(table.train):
                continue
            path = os.path.join(args.results, f"{name}_{split:02d}.json")
            if os.path.exists(path):
                with open(path) as file:
                    results.append(json.load(file))
                continue
            result = run_split(table, split, args)
            with open(path, "w") as file:
                json.dump(result, file, indent=1)
            results.append(result)
            print(f"{name} split {split}: " + ", ".join(
                f"{m} {v['nll']:.3f}" for m, v in result["methods"].items()), flush=True)
    rows = summarise(results)
    header = (f"Standard splits; {machine()}; Keras {keras.__version__} on "
              f"{keras.backend.backend()}; members {args.members}")
    table = markdown(rows) + "\n\nTargets:\n\n" + "\n".join(targets(rows, args.members))
    print(header + "\n" + table)
    write_json(args.json, {"machine": machine(), "backend": keras.backend.backend(),
                           "members": args.members, "max_epochs": args.max_epochs}, rows)
    if args.markdown:
        with open(args.markdown, "w") as file:
            file.write(header + "\n\n" + table + "\n")


if __name__ == "__main__":
    main()
