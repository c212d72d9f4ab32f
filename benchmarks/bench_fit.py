"""Training throughput through ``model.fit``: every head on every backend, against the peers.

Setting: 8 inputs, a 2x64 ReLU trunk, Adam, batch 1024, ``--samples`` rows per epoch, for
each ``(D, K)`` in ``--configs``. Heads: ours (full, diag, spherical) and keras-mdn-layer
1.0's ``MDN`` (diagonal) on each Keras 3 backend (``jit_compile=True`` on TensorFlow and
JAX, eager PyTorch), and ``tfp.layers.MixtureSameFamily(K, MultivariateNormalTriL(D))`` on
tf_keras with and without ``jit_compile``; the **ceiling** of each of our heads (the same
network and output width, ``Dense(P)``, trained with the cheapest loss that reads every
output, ``mean((params[:, :D] - y)^2) + 1e-3 mean(params^2)``: what any loss adds on top of
it is the loss's cost), reported as ours / ceiling; every head also with each
``--steps-per-execution`` value, so each library is compared at its best setting. Each
backend runs in its own subprocess (Keras picks its backend at import). Within it, every
model of a config is built and trains one warm-up (compiling) epoch, then ``--epochs`` rounds
in which each model trains one epoch in turn, so all heads see the same machine state;
samples/s is the median over a model's timed epochs, then over ``--repeats`` (the backends'
subprocesses alternate between repeats). Before timing, each loss is checked against TFP's
log density.

A final partial batch changes the batch shape, so XLA compiles a second program during the
first epoch; ``--partial`` adds one run per head at the largest config with
``samples + 300`` rows and reports that first epoch's time next to a full-batch one.

    python benchmarks/bench_fit.py [--backends tensorflow,jax,torch] [--configs 2x4,8x16]
        [--samples 32768] [--epochs 2] [--repeats 2] [--partial] [--jit-compile auto]
        [--steps-per-execution 1,8] [--json results.json]
"""

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import textwrap

from _common import machine, run_worker, write_json

COMMON = textwrap.dedent("""
    import json, sys
    import numpy as np
    from _common import timer_class

    CONFIGS, SAMPLES, EPOCHS, PARTIAL, JIT, STEPS, BATCH = json.loads(sys.argv[1])

    def device_name():
        # What the backend computes on: "gpu: NVIDIA H100 80GB HBM3", "cpu", ...
        import keras
        backend = keras.backend.backend()
        if backend == "jax":
            import jax
            device = jax.devices()[0]
            return f"{device.platform}: {device.device_kind}"
        if backend == "torch":
            import torch
            return (f"gpu: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
                    else "cpu")
        import tensorflow as tf
        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"

    def data(d, samples):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(samples, 8)).astype("float32")
        y = x[:, :1] * np.linspace(-1, 1, d) + rng.normal(size=(samples, d))
        return x, y.astype("float32")

    def describe(error):
        # The line of a (TensorFlow) error message that says what went wrong.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        useful = [line for line in lines if not line.startswith(("File ", "Graph execution",
                  "Detected at node", "[[", "tf2xla conversion", "Run with", "<stack traces"))]
        return f"{type(error).__name__}: {(useful or lines or [''])[0][:160]}"

    def interleaved(models, x, y, timer_class, base):
        # One warm-up (compiling) epoch per model, then EPOCHS rounds in which every model
        # trains one epoch in turn, so all heads see the same machine state.
        stats, live = {}, dict(models)
        for round_ in range(EPOCHS + 1):
            for name, model in list(live.items()):
                timer = timer_class()
                try:
                    loss = model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0,
                                     callbacks=[timer]).history["loss"][-1]
                except Exception as error:  # reported, not hidden
                    stats[name] = {"error": describe(error)}
                    del live[name]
                    continue
                entry = stats.setdefault(name, {"times": []})
                entry["times"].append(timer.times[0])
                entry["loss"] = loss
        rows = []
        for name, entry in stats.items():
            row = {**base, "head": name}
            if "error" in entry:
                row["error"] = entry["error"]
            else:
                row.update(samples_per_s=len(x) / float(np.median(entry["times"][1:])),
                           first_epoch_s=entry["times"][0], loss=entry["loss"])
            rows.append(row)
        return rows

    def first_epochs(models, x, y, timer_class, base):
        # The final-partial-batch check: two epochs per model, both reported.
        rows = []
        for name, model in models.items():
            row = {**base, "head": name}
            timer = timer_class()
            try:
                model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[timer])
                row.update(partial_first_epoch_s=timer.times[0],
                           partial_second_epoch_s=timer.times[1])
            except Exception as error:
                row["partial_error"] = describe(error)
            rows.append(row)
        return rows
""")

KERAS3_WORKER = COMMON + textwrap.dedent("""
    import keras
    import keras_mdn_layer, mdn_layers
    from _common import ceiling_loss

    backend = keras.backend.backend()
    jit = {"jit_compile": JIT} if backend in ("tensorflow", "jax") else {}
    steps_options = STEPS if backend != "torch" else [1]  # eager: steps only loop in Python
    Timer = timer_class(keras.callbacks.Callback)

    def models(d, k, steps_options):
        out = {}
        for steps in steps_options:
            heads = [(f"ours {kind}", mdn_layers.MixtureDensity(d, k, kind),
                      mdn_layers.MixtureNLL(d, k, kind)) for kind in ("full", "diag", "spherical")]
            heads.append(("keras-mdn-layer diag", keras_mdn_layer.MDN(d, k),
                          keras_mdn_layer.get_mixture_loss_func(d, k)))
            heads += [(f"ceiling {kind}", keras.layers.Dense(mdn_layers.params_size(d, k, kind)),
                       ceiling_loss(keras.ops, d)) for kind in ("full", "diag", "spherical")]
            for name, head, loss in heads:
                keras.utils.set_random_seed(0)
                model = keras.Sequential([
                    keras.Input((8,)), keras.layers.Dense(64, activation="relu"),
                    keras.layers.Dense(64, activation="relu"), head])
                model.compile(keras.optimizers.Adam(1e-3), loss=loss,
                              steps_per_execution=steps, **jit)
                out[name + (f", steps_per_execution={steps}" if steps != 1 else "")] = model
        return out

    results = []
    for d, k in CONFIGS:
        base = {"backend": backend, "D": d, "K": k, "device": device_name(), "batch": BATCH}
        results += interleaved(models(d, k, steps_options), *data(d, SAMPLES), Timer, base)
    if PARTIAL:
        d, k = CONFIGS[-1]
        results += first_epochs(models(d, k, [1]), *data(d, SAMPLES + 300), Timer,
                                {"backend": backend, "D": d, "K": k})
    print(json.dumps(results))
""")

TF_KERAS_WORKER = COMMON + textwrap.dedent("""
    import tf_keras, tensorflow_probability as tfp

    Timer = timer_class(tf_keras.callbacks.Callback)

    def models(d, k, steps_options):
        out = {}
        size = int(tfp.layers.MixtureSameFamily.params_size(
            k, tfp.layers.MultivariateNormalTriL.params_size(d)))
        for steps in steps_options:
            for name, jit in [("tfp.layers full", False), ("tfp.layers full, jit_compile", True)]:
                tf_keras.utils.set_random_seed(0)
                model = tf_keras.Sequential([
                    tf_keras.Input((8,)), tf_keras.layers.Dense(64, activation="relu"),
                    tf_keras.layers.Dense(64, activation="relu"), tf_keras.layers.Dense(size),
                    tfp.layers.MixtureSameFamily(k, tfp.layers.MultivariateNormalTriL(d))])
                model.compile(tf_keras.optimizers.Adam(1e-3),
                              loss=lambda y, dist: -dist.log_prob(y), jit_compile=jit,
                              steps_per_execution=steps)
                out[name + (f", steps_per_execution={steps}" if steps != 1 else "")] = model
        return out

    results = []
    for d, k in CONFIGS:
        base = {"backend": "tf_keras", "D": d, "K": k}
        results += interleaved(models(d, k, STEPS), *data(d, SAMPLES), Timer, base)
    if PARTIAL:
        d, k = CONFIGS[-1]
        results += first_epochs(models(d, k, [1]), *data(d, SAMPLES + 300), Timer,
                                {"backend": "tf_keras", "D": d, "K": k})
    print(json.dumps(results))
""")


def check_losses_against_tfp(event_size, num_components):
    """Our three losses and keras-mdn-layer's equal TFP's log density on random params."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras_mdn_layer
    import numpy as np
    import tensorflow_probability as tfp

    import mdn_layers
    tfd = tfp.distributions
    rng = np.random.default_rng(0)
    y = rng.normal(size=(64, event_size)).astype("float32")
    for kind in ("full", "diag", "spherical"):
        params = rng.normal(size=(64, mdn_layers.params_size(event_size, num_components, kind)))
        params = params.astype("float32")
        if kind == "full":  # the full layout is TFP's own layer's
            reference = tfp.layers.MixtureSameFamily.new(
                params, num_components, tfp.layers.MultivariateNormalTriL(event_size)
            ).log_prob(y)
        else:  # [K logits | per component: D means, D (or 1) softplus scales]
            blocks = params[:, num_components:].reshape(64, num_components, -1)
            scale = np.broadcast_to(np.logaddexp(0.0, blocks[..., event_size:]) + 1e-5,
                                    blocks[..., :event_size].shape)
            reference = tfd.MixtureSameFamily(
                tfd.Categorical(logits=params[:, :num_components]),
                tfd.MultivariateNormalDiag(blocks[..., :event_size], scale)).log_prob(y)
        ours = mdn_layers.MixtureNLL(event_size, num_components, kind).call(y, params)
        np.testing.assert_allclose(-np.asarray(ours), reference, rtol=1e-4, atol=1e-4)
    diag = rng.normal(size=(64, num_components * (2 * event_size + 1))).astype("float32")
    sigma_block = slice(num_components * event_size, 2 * num_components * event_size)
    diag[:, sigma_block] = np.exp(diag[:, sigma_block])  # its layer emits positive sigmas
    mu, sigma, logits = keras_mdn_layer._split_mdn_params(diag, event_size, num_components)
    peer = keras_mdn_layer._mdn_log_prob(y, mu, sigma, logits, event_size, num_components)
    truth = tfd.MixtureSameFamily(
        tfd.Categorical(logits=np.asarray(logits)),
        tfd.MultivariateNormalDiag(np.asarray(mu).reshape(64, num_components, event_size),
                                   np.asarray(sigma).reshape(64, num_components, event_size))
    ).log_prob(y)
    np.testing.assert_allclose(np.asarray(peer), truth, rtol=1e-4, atol=1e-4)


def summarise(runs):
    """Medians over repeats: one row per (head, backend, D, K)."""
    grouped = {}
    for row in (row for run in runs for row in run):
        key = (row["head"], row["backend"], row["D"], row["K"])
        grouped.setdefault(key, []).append(row)
    table = []
    for (head, backend, d, k), rows in grouped.items():
        entry = {"head": head, "backend": backend, "D": d, "K": k}
        for field in ("samples_per_s", "first_epoch_s", "loss", "partial_first_epoch_s",
                      "partial_second_epoch_s"):
            values = [row[field] for row in rows if field in row]
            if values:
                entry[field] = statistics.median(values)
                if field == "samples_per_s":
                    entry["range"] = (min(values), max(values))
        for field in ("error", "partial_error"):
            errors = [row[field] for row in rows if row.get(field)]
            if errors:
                entry[field] = errors[0]
        table.append(entry)
    return table


def best(table, library, d, k):
    """The fastest (samples/s, where) of a library's heads at one config."""
    rows = [row for row in table if row["D"] == d and row["K"] == k
            and row["head"].startswith(library) and "samples_per_s" in row]
    top = max(rows, key=lambda row: row["samples_per_s"], default=None)
    return (top["samples_per_s"], f"{top['head']} / {top['backend']}") if top else (None, "")


def ratios(table):
    """The issue's targets: ours against each peer at its best backend and setting."""
    out = []
    targets = [((8, 16), "ours full", "tfp.layers", 1.5),
               ((8, 16), "ours diag", "keras-mdn-layer", 1.2),
               ((4, 8), "ours full", "keras-mdn-layer", 1.0)]
    for (d, k), ours, peer, target in targets:
        mine = best(table, ours, d, k)
        theirs = best(table, peer, d, k)
        if mine[0] and theirs[0]:
            out.append({"D": d, "K": k, "ours": ours, "peer": peer, "ours_best": mine,
                        "peer_best": theirs, "ratio": mine[0] / theirs[0], "target": target})
    return out


CEILING_TARGETS = {"full": 0.85, "diag": 0.90, "spherical": 0.90}


def fractions(table):
    """Each of our heads as a fraction of its ceiling: the same network and output width
    trained with a squared-error loss, same backend, config and steps_per_execution."""
    out = []
    for row in table:
        if not row["head"].startswith("ours ") or "samples_per_s" not in row:
            continue
        ceiling_name = "ceiling " + row["head"][len("ours "):]
        ceiling = next((r for r in table if r["head"] == ceiling_name and "samples_per_s" in r
                        and (r["backend"], r["D"], r["K"]) == (row["backend"], row["D"],
                                                                row["K"])), None)
        if ceiling:
            kind = row["head"].split()[1].rstrip(",")
            out.append({"D": row["D"], "K": row["K"], "head": row["head"],
                        "backend": row["backend"], "ours": row["samples_per_s"],
                        "ceiling": ceiling["samples_per_s"],
                        "fraction": row["samples_per_s"] / ceiling["samples_per_s"],
                        "target": CEILING_TARGETS[kind]})
    return out


def best_fractions(rows):
    """Per (D, K, kind): the fraction at the backend and setting where ours is fastest."""
    best_rows = {}
    for row in rows:
        key = (row["D"], row["K"], row["head"].split()[1].rstrip(","))
        if key not in best_rows or row["ours"] > best_rows[key]["ours"]:
            best_rows[key] = row
    return [best_rows[key] for key in sorted(best_rows)]


def markdown(table, target_rows, meta):
    lines = [f"Machine: {meta['machine']}; Keras {meta['keras']}; batch 1024, "
             f"{meta['samples']} samples/epoch, median of {meta['epochs']} timed epochs x "
             f"{meta['repeats']} repeats; TF and JAX with jit_compile={meta['jit_compile']}, "
             f"PyTorch eager; steps_per_execution in {{{meta['steps_per_execution']}}} (a "
             "head's name says when it is not 1).", "",
             "| D | K | head | backend | samples/s | range | first epoch (s) |",
             "|---:|---:|---|---|---:|---|---:|"]
    for row in sorted(table, key=lambda r: (r["D"], r["K"], r["head"], r["backend"])):
        if "samples_per_s" not in row:
            if "error" in row:
                lines.append(f"| {row['D']} | {row['K']} | {row['head']} | {row['backend']} | "
                             f"fails: {row['error']} | | |")
            continue
        low, high = row["range"]
        lines.append(f"| {row['D']} | {row['K']} | {row['head']} | {row['backend']} | "
                     f"{row['samples_per_s'] / 1e3:,.0f}k | {low / 1e3:,.0f}k–{high / 1e3:,.0f}k"
                     f" | {row['first_epoch_s']:.1f} |")
    lines += ["", "| target | ours (best) | peer (best) | ratio | target |",
              "|---|---|---|---:|---:|"]
    for row in target_rows:
        lines.append(f"| D={row['D']}, K={row['K']}: {row['ours']} vs {row['peer']} | "
                     f"{row['ours_best'][0] / 1e3:,.0f}k ({row['ours_best'][1]}) | "
                     f"{row['peer_best'][0] / 1e3:,.0f}k ({row['peer_best'][1]}) | "
                     f"{row['ratio']:.2f}x | {row['target']:.1f}x |")
    ceiling_rows = best_fractions(fractions(table))
    if ceiling_rows:
        lines += ["", "Our heads as a fraction of the ceiling (the same network and output "
                  "width trained with a squared-error loss), at our fastest backend and setting",
                  "", "| D | K | head | backend | ours | ceiling | fraction | target |",
                  "|---:|---:|---|---|---:|---:|---:|---:|"]
        for row in ceiling_rows:
            lines.append(f"| {row['D']} | {row['K']} | {row['head']} | {row['backend']} | "
                         f"{row['ours'] / 1e3:,.0f}k | {row['ceiling'] / 1e3:,.0f}k | "
                         f"{row['fraction']:.2f} | {row['target']:.2f} |")
    partial = [row for row in table if "partial_first_epoch_s" in row or "partial_error" in row]
    if partial:
        lines += ["", "Final partial batch (D, K as the largest config; 300 extra rows): first "
                  "and second epoch, seconds", "",
                  "| head | backend | first epoch, full batches | first epoch, partial batch "
                  "| second epoch, partial batch |", "|---|---|---:|---:|---:|"]
        for row in sorted(partial, key=lambda r: (r["head"], r["backend"])):
            full = next((r["first_epoch_s"] for r in table if r["head"] == row["head"]
                         and r["backend"] == row["backend"] and r["D"] == row["D"]
                         and r["K"] == row["K"] and "first_epoch_s" in r), float("nan"))
            if "partial_error" in row:
                lines.append(f"| {row['head']} | {row['backend']} | {full:.1f} | fails: "
                             f"{row['partial_error']} | |")
                continue
            lines.append(f"| {row['head']} | {row['backend']} | {full:.1f} | "
                         f"{row['partial_first_epoch_s']:.1f} | "
                         f"{row['partial_second_epoch_s']:.1f} |")
    return "\n".join(lines)


def _sees_gpu(backend):
    """Whether ``backend`` (jax or torch) sees a CUDA device, asked in a subprocess."""
    probe = ("import jax; print(any(d.platform == 'gpu' for d in jax.devices()))"
             if backend == "jax" else "import torch; print(torch.cuda.is_available())")
    try:
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                timeout=300)
    except subprocess.TimeoutExpired:
        return False
    return result.stdout.strip().endswith("True")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch",
                        help="comma-separated Keras 3 backends; a missing one is skipped")
    parser.add_argument("--configs", default="2x4,2x8,2x16,4x4,4x8,4x16,8x4,8x8,8x16",
                        help="comma-separated DxK")
    parser.add_argument("--samples", type=int, default=32768)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (rounds) per model")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-tf-keras", action="store_true", help="skip tfp.layers")
    parser.add_argument("--partial", action="store_true",
                        help="also time a final partial batch at the largest config")
    parser.add_argument("--jit-compile", default="true", choices=["true", "auto"],
                        help="jit_compile of the Keras 3 heads on TensorFlow and JAX")
    parser.add_argument("--steps-per-execution", default="1,8",
                        help="comma-separated values, each run for every head (TF and JAX; "
                             "PyTorch runs 1)")
    parser.add_argument("--json", help="write the summarised rows here")
    parser.add_argument("--timeout", type=int, default=3600)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--gpu", action="store_true",
                        help="GPU mode: JAX and PyTorch, batch 8192 (unless given), 32 batches "
                             "an epoch, D=2,K=4 and D=8,K=16, no tf_keras; stops with a message "
                             "when a backend sees no GPU")
    args = parser.parse_args()
    if args.gpu:
        given = {action.dest for action in parser._actions
                 if getattr(args, action.dest, action.default) != action.default}
        args.batch_size = args.batch_size if "batch_size" in given else 8192
        args.samples = args.samples if "samples" in given else 32 * args.batch_size
        args.configs = args.configs if "configs" in given else "2x4,8x16"
        args.backends = args.backends if "backends" in given else "jax,torch"
        args.no_tf_keras = True
    configs = [[int(v) for v in c.split("x")] for c in args.configs.split(",")]
    if importlib.util.find_spec("tensorflow"):  # a GPU machine may have no TensorFlow
        for d, k in configs:
            check_losses_against_tfp(d, k)
    modules = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
    backends = [b for b in args.backends.split(",") if importlib.util.find_spec(modules[b])]
    if args.gpu:
        backends = [b for b in backends if _sees_gpu(b)]
        if not backends:
            print("bench_fit --gpu: no GPU is visible to JAX or PyTorch here; nothing timed.")
            return
    jit = True if args.jit_compile == "true" else "auto"
    steps = [int(value) for value in args.steps_per_execution.split(",")]
    config = [configs, args.samples, args.epochs, args.partial, jit, steps, args.batch_size]
    runs = []
    for _ in range(args.repeats):
        for backend in backends:
            runs.append(run_worker(KERAS3_WORKER, config, backend, args.timeout))
        if not args.no_tf_keras:
            runs.append(run_worker(TF_KERAS_WORKER, config, "tensorflow", args.timeout))
    table = summarise(runs)
    import keras
    meta = {"machine": machine(), "batch": args.batch_size,
            "devices": sorted({row.get("device", "?") for run in runs for row in run}),
            "keras": keras.__version__, "samples": args.samples, "epochs": args.epochs,
            "repeats": args.repeats, "backends": backends, "jit_compile": args.jit_compile,
            "steps_per_execution": args.steps_per_execution}
    target_rows = ratios(table)
    print(markdown(table, target_rows, meta))
    write_json(args.json, meta, table, targets=target_rows,
               ceiling=best_fractions(fractions(table)))


if __name__ == "__main__":
    main()
