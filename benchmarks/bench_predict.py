"""``predict_mixture`` on many rows: time and peak memory, against ``model.predict`` alone.

An untrained model (8 inputs, 2x64 ReLU trunk, ``MixtureDensity(D, K)`` full) predicts the
mixtures of ``--rows`` inputs. Each method runs in a fresh subprocess, which reports its wall
time and its peak resident memory above what it held before the call (``ru_maxrss``):

* ``model.predict`` — the params alone (Keras keeps every batch's output, then concatenates);
* ``model.predict`` + ``mixture_from_params`` — the same, then the TFP mixture;
* ``predict_mixture`` — ours: rows are predicted in chunks of about 128 MB of params and
  each chunk is split into its mixture parts as it arrives (no params array for every row),
  then the parts are joined.

Before timing, the three agree on the log density of a few rows.

    python benchmarks/bench_predict.py [--rows 1000000] [--event-size 4] [--components 8]
        [--backend tensorflow] [--json results.json]
"""

import argparse
import textwrap

from _common import machine, run_worker, write_json

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
    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    y = np.zeros((5, d), "float32")
    check = None if method == "predict" else np.asarray(result[:5].log_prob(y)).tolist()
    print(json.dumps({"method": method, "seconds": seconds, "peak_above_start_mb": peak - before,
                      "check": check}))
""")

METHODS = {"predict": "model.predict (params only)",
           "predict+mixture": "model.predict + mixture_from_params",
           "predict_mixture": "mdn_layers.predict_mixture (streamed)"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--event-size", type=int, default=4)
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    import numpy as np
    results = [run_worker(WORKER, [method, args.rows, args.event_size, args.components],
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
    write_json(args.json, {"machine": machine(), "rows": args.rows, "backend": args.backend,
                           "params_mb": params_mb, "mixture_mb": mixture_mb},
                [{**row, "method": METHODS[row["method"]]} for row in results])


if __name__ == "__main__":
    main()
