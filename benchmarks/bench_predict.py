"""``predict_mixture`` on many rows: time and peak memory, against ``model.predict`` alone.

An untrained model (8 inputs, 2x64 ReLU trunk, ``MixtureDensity(D, K)`` full) predicts the
mixtures of ``--rows`` inputs. Each method runs in a fresh subprocess, which reports its wall
time and its peak resident memory above what it held before the call (the high-water mark
reset just before it):

* ``model.predict`` — the params alone (Keras keeps every batch's output, then concatenates);
* ``model.predict`` + ``mixture_from_params`` — the same, then the TFP mixture;
* ``predict_mixture`` — ours: rows are predicted in chunks of about 32 MB of params and
  each chunk is split into its mixture parts as it arrives (no params array for every row),
  then the parts are joined.

Before timing, the three agree on the log density of a few rows. Then the analysis of a
million predicted mixtures (``--analysis-event-size``, default 6): TFP's own ``log_prob``,
``scores.nll``, ``condition`` and ``sample`` — ours work in row chunks, so their peak stays
near their output's size.

    python benchmarks/bench_predict.py [--rows 1000000] [--event-size 4] [--components 8]
        [--backend tensorflow] [--json results.json]
"""

import argparse
import textwrap

from _common import machine, run_worker, write_json

# Peak resident memory of the measured call alone: the high-water mark is reset before it
# (Linux: /proc/self/clear_refs), read after it, minus what the process held before.
MEMORY = textwrap.dedent("""
    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    def reset_peak():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    def peak_mb():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
""")

WORKER = textwrap.dedent("""
    import json, resource, sys, time
    import keras, numpy as np, mdn_layers

    method, rows, d, k = json.loads(sys.argv[1])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"),
                              mdn_layers.MixtureDensity(d, k)])
    x = np.random.default_rng(0).normal(size=(rows, 8)).astype("float32")
    model.predict(x[:2048], batch_size=1024, verbose=0)  # compile before measuring
    mdn_layers.predict_mixture(model, x[:2048])
    reset_peak()
    before = rss_mb()
    start = time.perf_counter()
    if method == "predict":
        result = model.predict(x, batch_size=1024, verbose=0)
    elif method == "predict+mixture":
        result = mdn_layers.mixture_from_params(model.predict(x, batch_size=1024, verbose=0),
                                                d, k)
    else:
        result = mdn_layers.predict_mixture(model, x, batch_size=1024)
    seconds = time.perf_counter() - start
    peak = peak_mb()
    y = np.zeros((5, d), "float32")
    check = None if method == "predict" else np.asarray(result[:5].log_prob(y)).tolist()
    print(json.dumps({"method": method, "seconds": seconds, "peak_above_start_mb": peak - before,
                      "check": check}))
""")

# The analysis of many predicted mixtures: each operation in a fresh process on the mixture of
# random params (rows x P), peak resident memory above what the process held with the mixture
# built. log_prob, condition and sample work in row chunks; mixture.log_prob is TFP's own.
ANALYSIS_WORKER = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np, mdn_layers

    operation, rows, d, k = json.loads(sys.argv[1])
    rng = np.random.default_rng(0)
    params = rng.normal(size=(rows, mdn_layers.params_size(d, k))).astype("float32")
    mixture = mdn_layers.mixture_from_params(params, d, k)
    y = rng.normal(size=(rows, d)).astype("float32")
    del params
    small = mdn_layers.mixture_from_params(np.zeros((2, mdn_layers.params_size(d, k)),
                                                    "float32"), d, k)
    run = {"TFP log_prob": lambda m, v: m.log_prob(v),
           "scores.nll": lambda m, v: mdn_layers.scores.nll(m, v),
           "condition on 2 dims": lambda m, v: mdn_layers.condition(m, [0, 1], v[:, :2]),
           "sample, one per row": lambda m, v: mdn_layers.sample(m, seed=0)}[operation]
    run(small, y[:2])                                  # load every code path first
    reset_peak()
    before = rss_mb()
    start = time.perf_counter()
    result = run(mixture, y)
    seconds = time.perf_counter() - start
    peak = peak_mb()
    parts = [result] if not hasattr(result, "log_prob") else [
        result.mixture_distribution.logits, result.components_distribution.loc,
        result.components_distribution.scale.to_dense()]
    output_mb = sum(np.asarray(part).nbytes for part in parts) / 2**20
    print(json.dumps({"operation": operation, "seconds": seconds,
                      "peak_above_start_mb": peak - before, "output_mb": output_mb}))
""")
ANALYSIS = ("TFP log_prob", "scores.nll", "condition on 2 dims", "sample, one per row")

METHODS = {"predict": "model.predict (params only)",
           "predict+mixture": "model.predict + mixture_from_params",
           "predict_mixture": "mdn_layers.predict_mixture (streamed)"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--event-size", type=int, default=4)
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--analysis-event-size", type=int, default=6,
                        help="D of the mixtures whose analysis is measured")
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    import numpy as np
    results = [run_worker(MEMORY + WORKER, [method, args.rows, args.event_size, args.components],
                          args.backend, 1800) for method in METHODS]
    np.testing.assert_allclose(results[1]["check"], results[2]["check"], rtol=1e-5)
    size = args.rows * (args.event_size * (args.event_size + 3) // 2 + 1) * args.components
    params_mb = size * 4 / 2**20
    mixture_mb = args.rows * args.components * (1 + args.event_size
                                               + args.event_size**2) * 4 / 2**20
    print(f"{args.rows:,} rows, D={args.event_size}, K={args.components} (full), backend "
          f"{args.backend}, batch 1024; {machine()}. Params array {params_mb:,.0f} MB; the "
          f"mixture's weights, means and dense factors {mixture_mb:,.0f} MB.\n")
    print("| method | seconds | peak memory above start (MB) |")
    print("|---|---:|---:|")
    for row in results:
        print(f"| {METHODS[row['method']]} | {row['seconds']:.2f} | "
              f"{row['peak_above_start_mb']:,.0f} |")
    analysis = [run_worker(MEMORY + ANALYSIS_WORKER,
                           [operation, args.rows, args.analysis_event_size, args.components],
                           args.backend, 1800)
                for operation in ANALYSIS]
    mixture_mb = args.rows * args.components * (1 + args.analysis_event_size
                                               + args.analysis_event_size**2) * 4 / 2**20
    print(f"\nAnalysis of {args.rows:,} mixtures, D={args.analysis_event_size}, "
          f"K={args.components} (full; weights, means and dense factors {mixture_mb:,.0f} "
          "MB):\n")
    print("| operation | seconds | output (MB) | peak memory above start (MB) |")
    print("|---|---:|---:|---:|")
    for row in analysis:
        print(f"| {row['operation']} | {row['seconds']:.2f} | {row['output_mb']:,.0f} | "
              f"{row['peak_above_start_mb']:,.0f} |")
    write_json(args.json, {"machine": machine(), "rows": args.rows, "backend": args.backend,
                           "params_mb": params_mb, "mixture_mb": mixture_mb},
                [{**row, "method": METHODS[row["method"]]} for row in results],
                analysis=analysis)


if __name__ == "__main__":
    main()
