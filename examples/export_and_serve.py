"""Export a trained MDN for serving, load it in a fresh process, and use what it serves.

What a deployment needs:

1. train a Keras 3 MDN (TensorFlow backend: ``model.export`` writes a TF SavedModel);
2. ``model.export(path)`` — a SavedModel with a ``serve`` endpoint returning the params —
   and a TFLite flatbuffer converted from it (``tf.lite.TFLiteConverter``; the same model
   runs in the LiteRT interpreter);
3. in a **fresh Python process that imports only TensorFlow** (no Keras model code, no
   mdn_layers), load both artifacts and compute the params of the test inputs;
4. check those params equal ``model.predict``, then turn them into mixtures with
   ``mdn_layers.mixture_from_params`` and draw samples — the server ships params, the
   client (or a later batch job) does the distribution work;
5. write ``export_and_serve.png``.

Run: ``python examples/export_and_serve.py [--epochs N] [--long] [--quiet] [--output PATH]``
(under a minute on 2 CPU cores). Needs the TensorFlow backend (the default).
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap

if __name__ == "__main__":  # options first: --help answers before TensorFlow loads
    from _cli import parse_args
    ARGS = parse_args(__doc__, epochs=30, output="export_and_serve.png",
                      extra=[("--folder", {"default": None, "help": "where to keep the "
                                           "exported artifacts (default: a temporary folder, "
                                           "removed afterwards)"})])

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import mdn_layers  # noqa: E402
from mdn_layers import datasets, plotting  # noqa: E402

EVENT_SIZE, NUM_COMPONENTS = 2, 4

# Runs in a fresh interpreter: TensorFlow only, no Keras model code and no mdn_layers.
SERVE = textwrap.dedent("""
    import json, os, sys, warnings
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    warnings.filterwarnings("ignore")
    import numpy as np
    import tensorflow as tf

    folder = sys.argv[1]
    x = np.load(os.path.join(folder, "x.npy"))
    served = tf.saved_model.load(os.path.join(folder, "saved_model"))
    np.save(os.path.join(folder, "params_saved_model.npy"), served.serve(x).numpy())
    with open(os.path.join(folder, "mdn.tflite"), "rb") as file:
        interpreter = tf.lite.Interpreter(model_content=file.read())
    inputs, outputs = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inputs["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inputs["index"], x)
    interpreter.invoke()
    np.save(os.path.join(folder, "params_tflite.npy"), interpreter.get_tensor(outputs["index"]))
    print(json.dumps({"mdn_layers_loaded": "mdn_layers" in sys.modules}))
""")


def export(model, folder):
    """Writes ``folder/saved_model`` and ``folder/mdn.tflite``; returns their sizes in bytes."""
    import tensorflow as tf
    model.export(os.path.join(folder, "saved_model"), verbose=False)
    flatbuffer = tf.lite.TFLiteConverter.from_saved_model(
        os.path.join(folder, "saved_model")).convert()
    with open(os.path.join(folder, "mdn.tflite"), "wb") as file:
        file.write(flatbuffer)
    return len(flatbuffer)


def serve_in_fresh_process(model, folder, x):
    """Exports ``model`` to ``folder`` and serves ``x`` from a TensorFlow-only process.

    Returns the TFLite size in bytes, what the process reported, and the params it served,
    ``{"saved_model": [N, P], "tflite": [N, P]}``.
    """
    tflite_bytes = export(model, folder)
    np.save(os.path.join(folder, "x.npy"), x)
    result = subprocess.run([sys.executable, "-c", SERVE, folder], capture_output=True,
                            text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"serving process failed:\n{result.stderr[-3000:]}")
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    params = {name: np.load(os.path.join(folder, f"params_{name}.npy"))
              for name in ("saved_model", "tflite")}
    return tflite_bytes, fresh, params


def main(epochs=30, output="export_and_serve.png", quiet=False, folder=None):
    if keras.backend.backend() != "tensorflow":
        raise SystemExit("model.export writes a TF SavedModel: run with KERAS_BACKEND=tensorflow "
                         "(a model trained on another backend can be saved as .keras and loaded "
                         "under TensorFlow first).")
    keras.utils.set_random_seed(0)
    train, test = datasets.correlated_2d(6000, seed=0), datasets.correlated_2d(1000, seed=1)
    head = mdn_layers.MixtureDensity(EVENT_SIZE, NUM_COMPONENTS)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(64, activation="tanh"),
                              keras.layers.Dense(64, activation="tanh"), head])
    steps = epochs * int(np.ceil(len(train.x) / 128))
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(5e-3, steps)),
                  loss=mdn_layers.MixtureNLL.for_layer(head))
    model.fit(train.x, train.y, epochs=epochs, batch_size=128, verbose=0 if quiet else "auto")

    with contextlib.ExitStack() as cleanup:
        where = folder or cleanup.enter_context(tempfile.TemporaryDirectory(prefix="mdn_"))
        tflite_bytes, fresh, params = serve_in_fresh_process(model, where, test.x)
    expected = model.predict(test.x, verbose=0)
    differences = {name: float(np.max(np.abs(served - expected)))
                   for name, served in params.items()}
    print(f"exported to {folder or 'a temporary folder (removed)'}: SavedModel and a "
          f"{tflite_bytes:,}-byte TFLite model")
    print(f"fresh process (mdn_layers imported: {fresh['mdn_layers_loaded']}); largest "
          f"|served params - model.predict|: SavedModel {differences['saved_model']:.2e}, "
          f"TFLite {differences['tflite']:.2e}")

    served = params["saved_model"]
    mixture = mdn_layers.mixture_from_params(served, EVENT_SIZE, NUM_COMPONENTS)
    nll = -float(np.mean(mixture.log_prob(test.y)))
    print(f"held-out NLL from the served params {nll:.3f} nats (oracle {test.oracle_nll():.3f})")

    row = int(np.argmin(np.abs(test.x[:, 0] - 0.5)))
    near = np.abs(train.x[:, 0] - test.x[row, 0]) < 0.03
    draws = mdn_layers.sample(mixture[row], 600, seed=0).numpy()
    sharp = mdn_layers.sample(mixture[row], 600, temperature=0.5, sigma_temperature=0.5,
                              seed=0).numpy()
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    plotting.plot_samples(draws, train.y[near], ax=axes[0])
    axes[0].set_title(f"samples from the served params at x={test.x[row, 0]:.2f} vs data")
    plotting.plot_samples(sharp, train.y[near], ax=axes[1])
    axes[1].set_title("the same, temperature 0.5, sigma_temperature 0.5")
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    print(f"wrote {output}")
    return differences


if __name__ == "__main__":
    args = ARGS
    main(args.epochs * (4 if args.long else 1), args.output, args.quiet, args.folder)
