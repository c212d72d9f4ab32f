"""Runs every benchmark and writes one markdown report and one plot.

Each benchmark script runs in its own process with ``--json``; their markdown tables go
into ``<out>/RESULTS.md`` under one heading each, and ``<out>/results.png`` plots fit
throughput (best setting per library), the issue's speed targets, conditioning time and
accuracy. ``--only`` reruns some of them; the report then keeps the others' last results
(each section says when it ran). ``--quick`` runs tiny sizes: a smoke test of the whole
pipeline, not numbers to quote.

    python benchmarks/run_all.py [--out benchmarks/results] [--quick]
        [--only fit,conditioning,predict,accuracy] [--backends tensorflow,jax,torch]
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

from _common import BENCHMARKS_DIR, machine, worker_env

FULL = {
    "fit": ["--partial", "--repeats", "1"],  # 3 interleaved timed epochs per head; 14 min
    "conditioning": [],
    "predict": [],
    "accuracy": [],
}
QUICK = {
    "fit": ["--configs", "2x4,4x8", "--samples", "2048", "--epochs", "1", "--repeats", "1"],
    "conditioning": ["--num-mixtures", "500", "--gmr-rows", "50", "--repeats", "1"],
    "predict": ["--rows", "5000"],
    "accuracy": ["--epochs", "2", "--train", "512", "--test", "256"],
}
TITLES = {
    "fit": "Fit throughput (`bench_fit.py`)",
    "conditioning": "Conditioning (`bench_conditioning.py`)",
    "predict": "predict_mixture on many rows (`bench_predict.py`)",
    "accuracy": "Accuracy at a fixed budget (`bench_accuracy.py`)",
}


def run(name, extra, out_dir):
    path = os.path.join(out_dir, f"{name}.json")
    command = [sys.executable, os.path.join(BENCHMARKS_DIR, f"bench_{name}.py"),
               "--json", path, *extra]
    start = time.perf_counter()
    result = subprocess.run(command, env=worker_env("tensorflow"), capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-4000:]}")
    table = f"Run {datetime.date.today()}.\n\n{result.stdout.strip()}"
    with open(os.path.join(out_dir, f"{name}.md"), "w") as file:
        file.write(table)
    return time.perf_counter() - start


def load(out_dir):
    """The markdown and JSON of every benchmark that has run into ``out_dir``."""
    tables, results = {}, {}
    for name in FULL:
        if os.path.exists(os.path.join(out_dir, f"{name}.md")):
            with open(os.path.join(out_dir, f"{name}.md")) as file:
                tables[name] = file.read()
            with open(os.path.join(out_dir, f"{name}.json")) as file:
                results[name] = json.load(file)
    return tables, results


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    if "fit" in results:
        ax = axes[0, 0]
        rows = results["fit"]["rows"]
        configs = sorted({(r["D"], r["K"]) for r in rows})
        libraries = [("ours full", "ours full"), ("ours diag", "ours diag"),
                     ("keras-mdn-layer diag", "keras-mdn-layer"), ("tfp.layers full",
                                                                   "tfp.layers")]
        width = 0.8 / len(libraries)
        for index, (label, prefix) in enumerate(libraries):
            best = [max((r["samples_per_s"] for r in rows if (r["D"], r["K"]) == config
                         and r["head"].startswith(prefix) and "samples_per_s" in r),
                        default=0) for config in configs]
            ax.bar(np.arange(len(configs)) + index * width, np.array(best) / 1e3, width,
                   label=label)
        ax.set_xticks(np.arange(len(configs)) + 0.4 - width / 2,
                      [f"D={d}\nK={k}" for d, k in configs])
        ax.set_ylabel("samples / s (thousands), best backend")
        ax.set_title("model.fit throughput (higher is better)")
        ax.legend(fontsize=8)
        targets = results["fit"].get("targets", [])
        if targets:
            ax = axes[0, 1]
            labels = [f"D={t['D']}, K={t['K']}\n{t['ours']} / {t['peer']}" for t in targets]
            ax.barh(labels, [t["ratio"] for t in targets], color="tab:blue", label="measured")
            ax.scatter([t["target"] for t in targets], labels, marker="|", s=400,
                       color="tab:red", label="target", zorder=3)
            ax.set_xlabel("throughput ratio, each at its best backend")
            ax.set_title("Speed targets")
            ax.legend(fontsize=8, loc="lower right")
    if "conditioning" in results:
        ax = axes[1, 0]
        rows = results["conditioning"]["rows"]
        labels = [r["method"].split(" (")[0].replace("mdn_layers.condition, ", "ours, ")
                  .replace("tf.function(jit_compile=True)", "XLA").replace(", vectorised", "")
                  .replace(", one observation at a time", "") for r in rows]
        ax.barh(labels, [r["seconds"] for r in rows], color="tab:green")
        ax.set_xscale("log")
        ax.set_xlabel("seconds (log)")
        meta = results["conditioning"]["meta"]
        ax.set_title(f"Conditioning {meta['num_mixtures']:,} mixtures (K={meta['K']}, "
                     f"D={meta['D']}; lower is better)")
        ax.tick_params(axis="y", labelsize=7)
    if "accuracy" in results:
        ax = axes[1, 1]
        rows = results["accuracy"]["rows"]
        tasks = list(dict.fromkeys(r["task"] for r in rows))
        heads = list(dict.fromkeys(r["head"] for r in rows))
        width = 0.8 / len(heads)
        for index, head in enumerate(heads):
            gaps = [next(r["gap"] for r in rows if r["task"] == task and r["head"] == head)
                    for task in tasks]
            ax.bar(np.arange(len(tasks)) + index * width, gaps, width, label=head)
        ax.axhline(0.05, color="gray", linestyle="--", linewidth=1)
        ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks, fontsize=8)
        ax.set_ylabel("held-out NLL - oracle (nats)")
        ax.set_title("Held-out NLL gap at a fixed budget (dashed: 0.05)")
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(BENCHMARKS_DIR, "results"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--only", default=",".join(FULL), help="comma-separated benchmarks")
    parser.add_argument("--backends", default="tensorflow,jax,torch",
                        help="Keras 3 backends for the fit benchmark")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    settings = QUICK if args.quick else FULL
    for name in filter(None, args.only.split(",")):  # --only "": rewrite the report only
        extra = settings[name] + (["--backends", args.backends] if name == "fit" else [])
        print(f"{name}: {run(name, extra, args.out):.0f} s", flush=True)
    tables, results = load(args.out)
    import keras
    import tensorflow as tf
    quick = " (quick smoke run: not numbers to quote)" if args.quick else ""
    lines = [f"# Benchmark results{quick}",
             "", f"{datetime.date.today()}; {machine()}; Keras {keras.__version__}, "
             f"TensorFlow {tf.__version__}. Command: `python benchmarks/run_all.py"
             f"{' --quick' if args.quick else ''}`.", "", "![results](results.png)", ""]
    for name, table in tables.items():
        lines += [f"## {TITLES[name]}", "", table, ""]
    with open(os.path.join(args.out, "RESULTS.md"), "w") as file:
        file.write("\n".join(lines))
    plot(results, os.path.join(args.out, "results.png"))
    print(f"wrote {os.path.join(args.out, 'RESULTS.md')} and results.png")


if __name__ == "__main__":
    main()
