"""Helpers shared by the benchmark scripts (and their subprocess workers)."""

import json
import os
import platform
import subprocess
import sys
import time

BENCHMARKS_DIR = os.path.dirname(os.path.abspath(__file__))


def timer_class(callback_base):
    """A Keras (or tf_keras) callback class recording each epoch's wall time in ``times``."""
    class EpochTimer(callback_base):
        def on_train_begin(self, logs=None):
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)
    return EpochTimer


def ceiling_loss(ops, event_size):
    """The cheapest loss that reads every output of a head (``ops``: ``keras.ops``): a
    head of this width trained with it is the ceiling any mixture loss is measured against."""
    def loss(y, params):
        return (ops.mean(ops.square(params[..., :event_size] - y), axis=-1)
                + 1e-3 * ops.mean(ops.square(params), axis=-1))
    return loss


def machine():
    """One line naming the machine the numbers come from."""
    return f"{platform.machine()}, {os.cpu_count()} cores, CPU"


def worker_env(backend):
    """Environment for a worker subprocess on a Keras ``backend`` that imports this module."""
    path = os.pathsep.join(filter(None, [BENCHMARKS_DIR, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": path}


def run_worker(code, argument, backend, timeout):
    """Runs ``python -c code json(argument)`` on a Keras ``backend``; returns the JSON of its
    last stdout line, or raises with the end of its stderr."""
    result = subprocess.run([sys.executable, "-c", code, json.dumps(argument)],
                            env=worker_env(backend), capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"worker on {backend} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_json(path, meta, rows, **extra):
    """Writes ``{"meta": meta, "rows": rows, **extra}`` to ``path`` (skipped when None)."""
    if path:
        with open(path, "w") as file:
            json.dump({"meta": meta, "rows": rows, **extra}, file, indent=1)
