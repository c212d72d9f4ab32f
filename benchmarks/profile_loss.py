"""Where a training step's time goes: the compiled (XLA) program of one gradient step, per head.

For each head — ours (full, diag, spherical) and its ceiling (the same network and output
width with a squared-error loss, as in ``bench_fit.py``) — this compiles the gradient of the
loss with respect to every weight of the network with ``jax.jit`` and counts, in the optimised
HLO, the kernels the CPU runs (top-level fusions and other ops of the entry computation) and
the instructions inside them; then it times the compiled step (median of ``--repeats``).
More kernels mean more passes over memory: on a CPU the loss's cost is mostly kernel count
and memory traffic, not flops.

    KERAS_BACKEND=jax python benchmarks/profile_loss.py [--configs 8x16,4x8] [--batch 1024]
"""

import argparse
import os
import re
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import ceiling_loss, machine  # noqa: E402

import mdn_layers  # noqa: E402


def step_function(model, loss):
    """``(weights, x, y) -> gradients`` of the mean loss, stateless, for ``jax.jit``."""
    def mean_loss(weights, x, y):
        params, _ = model.stateless_call(weights, [], x)
        return keras.ops.mean(loss(y, params))
    return jax.jit(jax.grad(mean_loss))


def hlo_counts(compiled):
    """(kernels in the entry computation, instructions in all computations)."""
    text = compiled.as_text()
    entry = text[text.index("ENTRY"):]
    entry = entry[:entry.index("\n}")]
    kernels = [line for line in entry.splitlines()[1:]
               if "=" in line and not re.search(r"= \S+ (parameter|constant|tuple|"
                                                r"get-tuple-element|bitcast)\(", line)]
    instructions = [line for line in text.splitlines() if re.match(r"\s+\S+ = ", line)]
    return len(kernels), len(instructions)


def profile(event_size, num_components, batch, repeats):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 8)).astype("float32")
    y = rng.normal(size=(batch, event_size)).astype("float32")
    rows = []
    for kind in ("full", "diag", "spherical"):
        size = mdn_layers.params_size(event_size, num_components, kind)
        heads = {f"ours {kind}": (mdn_layers.MixtureDensity(event_size, num_components, kind),
                                  mdn_layers.MixtureNLL(event_size, num_components, kind)),
                 f"ceiling {kind}": (keras.layers.Dense(size), ceiling_loss(keras.ops, event_size))}
        for name, (head, loss) in heads.items():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(64, activation="relu"),
                                      keras.layers.Dense(64, activation="relu"), head])
            weights = [v.value for v in model.trainable_variables]
            step = step_function(model, loss)
            compiled = step.lower(weights, x, y).compile()
            kernels, instructions = hlo_counts(compiled)
            jax.block_until_ready(step(weights, x, y))
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                jax.block_until_ready(step(weights, x, y))
                times.append(time.perf_counter() - start)
            rows.append({"D": event_size, "K": num_components, "head": name, "P": size,
                         "kernels": kernels, "instructions": instructions,
                         "step_ms": 1e3 * float(np.median(times))})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="8x16,4x8", help="comma-separated DxK")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    print(f"{machine()}; Keras {keras.__version__} on JAX {jax.__version__}; batch "
          f"{args.batch}; gradient of the loss w.r.t. all weights (forward + backward)")
    print("| D | K | head | params P | kernels | HLO instructions | step (ms) |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for config in args.configs.split(","):
        d, k = (int(v) for v in config.split("x"))
        for row in profile(d, k, args.batch, args.repeats):
            print(f"| {row['D']} | {row['K']} | {row['head']} | {row['P']} | {row['kernels']} | "
                  f"{row['instructions']} | {row['step_ms']:.2f} |")


if __name__ == "__main__":
    main()
