"""Multi-process data-parallel training of an MDN: try it with local processes, run it on hosts.

Two engines, each tested in ``tests/integration/test_scale_out.py``:

* ``--engine jax`` (Keras 3 on JAX): ``keras.distribution.initialize`` (JAX's
  ``jax.distributed``) joins the processes, ``DataParallel`` spans every process's devices,
  and each process feeds **its own rows of every global batch** (``auto_shard_dataset=False``):
  the steps equal one process trained on the whole batch.
* ``--engine tf_keras`` (the tf_keras front-end, ``mdn_layers.tfp_layers``) under
  ``tf.distribute.MultiWorkerMirroredStrategy``, one ``TF_CONFIG`` per worker. Keras 3 on
  TensorFlow fails under that strategy (keras-team/keras#20585), so this route uses tf_keras.

Try it on one machine (the script launches the processes and waits for them):

    python examples/multi_process.py --launch 2                    # JAX, 2 local processes
    python examples/multi_process.py --launch 2 --engine tf_keras  # 2 local tf_keras workers

On real hosts, run the same script once per host with that host's id (no ``--launch``):

    # JAX: host 0 is the coordinator
    KERAS_BACKEND=jax python examples/multi_process.py --address HOST0:PORT \\
        --num-processes N --process-id I
    # tf_keras: every worker's address, in the same order on every host
    python examples/multi_process.py --engine tf_keras --address HOST0:PORT,HOST1:PORT \\
        --num-processes N --process-id I

``--batch-size`` is the **global** batch; each process reads ``batch / N`` rows of every
batch. Process 0 prints the held-out NLL and writes ``multi_process.png``; the predicted
mixtures are computed on that one host (``predict_mixture`` of the trained model on the full
test set); every process ends with the same weights.
"""

import os
import socket
import subprocess
import sys

if __name__ == "__main__":  # options first: --help answers before TensorFlow loads
    from _cli import parse_args
    ARGS = parse_args(__doc__, epochs=30, output="multi_process.png", long=False, extra=[
        ("--engine", {"choices": ["jax", "tf_keras"], "default": "jax",
                      "help": "jax: Keras 3 on JAX; tf_keras: MultiWorkerMirroredStrategy"}),
        ("--launch", {"type": int, "default": 0,
                      "help": "start this many local processes and wait for them"}),
        ("--address", {"default": None, "help": "jax: the coordinator HOST:PORT; tf_keras: "
                       "every worker's HOST:PORT, comma-separated"}),
        ("--num-processes", {"type": int, "default": 1, "help": "processes in all"}),
        ("--process-id", {"type": int, "default": 0, "help": "this process's id, 0..N-1"}),
        ("--batch-size", {"type": int, "default": 256, "help": "the global batch size"})])

import numpy as np  # noqa: E402

EVENT_SIZE, NUM_COMPONENTS = 2, 4


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def launch(num_processes, engine, epochs, output, batch_size, quiet, timeout=900):
    """Starts ``num_processes`` local copies of this script and waits; returns process 0's
    report (the last line it printed)."""
    ports = free_ports(1 if engine == "jax" else num_processes)
    address = ",".join(f"127.0.0.1:{port}" for port in ports)
    env = {**os.environ, "KERAS_BACKEND": "jax" if engine == "jax" else "tensorflow"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    children = [subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--engine", engine, "--address", address,
         "--num-processes", str(num_processes), "--process-id", str(index), "--epochs",
         str(epochs), "--output", output, "--batch-size", str(batch_size)]
        + (["--quiet"] if quiet else []), env=env, stdout=subprocess.PIPE, text=True)
        for index in range(num_processes)]
    try:
        outputs = [child.communicate(timeout=timeout)[0] for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    for index, child in enumerate(children):
        if child.returncode != 0:
            raise RuntimeError(f"process {index} failed (exit code {child.returncode})")
    print(outputs[0], end="")
    return outputs[0].strip().splitlines()[-1]


def own_rows(array, batch_size, num_processes, process_id):
    """This process's rows of every global batch (whole batches only), in order."""
    steps = len(array) // batch_size
    local = batch_size // num_processes
    batches = array[:steps * batch_size].reshape(steps, batch_size, *array.shape[1:])
    rows = batches[:, process_id * local:(process_id + 1) * local]
    return rows.reshape(steps * local, *array.shape[1:])


def train_jax(train, epochs, batch_size, address, num_processes, process_id, quiet):
    import keras

    import mdn_layers
    if keras.backend.backend() != "jax":
        raise SystemExit("--engine jax trains on Keras's JAX backend: run with KERAS_BACKEND=jax.")
    if num_processes > 1:
        keras.distribution.initialize(job_addresses=address, num_processes=num_processes,
                                      process_id=process_id)
        keras.distribution.set_distribution(keras.distribution.DataParallel(
            devices=keras.distribution.list_devices(), auto_shard_dataset=False))
    keras.utils.set_random_seed(0)
    head = mdn_layers.MixtureDensity(EVENT_SIZE, NUM_COMPONENTS)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(64, activation="tanh"),
                              keras.layers.Dense(64, activation="tanh"), head])
    model.compile(keras.optimizers.Adam(5e-3), loss=mdn_layers.MixtureNLL.for_layer(head))
    shard = [own_rows(a, batch_size, num_processes, process_id) for a in (train.x, train.y)]
    model.fit(*shard, batch_size=batch_size // num_processes, epochs=epochs, shuffle=False,
              verbose=0 if quiet or process_id else 2)
    return process_local_copy(model) if num_processes > 1 else model


def process_local_copy(model):
    """The trained model as a plain one-process model, for ``predict`` and
    ``predict_mixture``: a multi-process model's outputs span every process's devices, which
    no single process can read, but its weights are replicated, so each process holds them."""
    import keras
    weights = [np.asarray(variable.value.addressable_shards[0].data)
               for variable in model.weights]
    keras.distribution.set_distribution(None)
    local = keras.models.clone_model(model)
    local.set_weights(weights)
    return local


def tf_keras_strategy(address, num_processes, process_id):
    """The strategy of the tf_keras route. Made before any other TensorFlow op runs:
    collective ops are configured at program start-up."""
    import json
    if num_processes > 1:
        os.environ["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": address.split(",")},
            "task": {"type": "worker", "index": process_id}})
    import tensorflow as tf
    return (tf.distribute.MultiWorkerMirroredStrategy() if num_processes > 1
            else tf.distribute.get_strategy())


def train_tf_keras(train, epochs, batch_size, strategy, num_processes, process_id, quiet):
    import tensorflow as tf
    import tf_keras

    from mdn_layers import tfp_layers
    local = batch_size // num_processes
    x, y = (own_rows(a, batch_size, num_processes, process_id) for a in (train.x, train.y))

    def batches(context=None):
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(local).repeat()

    data = (strategy.distribute_datasets_from_function(batches) if num_processes > 1
            else batches())
    with strategy.scope():
        tf_keras.utils.set_random_seed(0)
        model = tf_keras.Sequential([
            tf_keras.Input((1,)), tf_keras.layers.Dense(64, activation="tanh"),
            tf_keras.layers.Dense(64, activation="tanh"),
            tfp_layers.MixtureDensity(EVENT_SIZE, NUM_COMPONENTS)])
        model.compile(tf_keras.optimizers.Adam(5e-3), loss=tfp_layers.negative_log_likelihood)
    model.fit(data, epochs=epochs, steps_per_epoch=len(x) // local,
              verbose=0 if quiet or process_id else 2)
    return model


def report(model, test, output):
    """Process 0: held-out NLL and a figure of one predicted mixture."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import mdn_layers
    from mdn_layers import plotting
    mixture = mdn_layers.predict_mixture(model, test.x)
    nll = -float(np.mean(mixture.log_prob(test.y)))
    row = int(np.argmin(np.abs(test.x[:, 0] - 0.5)))
    figure, ax = plt.subplots(figsize=(6.5, 5))
    plotting.plot_mixture_2d(mixture[row], data=test.y[np.abs(test.x[:, 0] - 0.5) < 0.05],
                             ax=ax)
    ax.set_title(f"p(y | x={test.x[row, 0]:.2f}) of the data-parallel model")
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    return nll


def run(engine, epochs, output, batch_size, address, num_processes, process_id, quiet):
    if engine == "tf_keras":
        strategy = tf_keras_strategy(address, num_processes, process_id)
    from mdn_layers import datasets
    train, test = datasets.correlated_2d(8192, seed=0), datasets.correlated_2d(1000, seed=1)
    if engine == "jax":
        model = train_jax(train, epochs, batch_size, address, num_processes, process_id, quiet)
    else:
        model = train_tf_keras(train, epochs, batch_size, strategy, num_processes, process_id,
                               quiet)
    if process_id == 0:
        nll = report(model, test, output)
        print(f"{engine}, {num_processes} process(es), global batch {batch_size}: held-out NLL "
              f"{nll:.3f} nats (oracle {test.oracle_nll():.3f}); wrote {output}")
        return nll
    return None


def main(epochs=30, output="multi_process.png", quiet=False, engine="jax", processes=2,
         batch_size=256):
    """Launches ``processes`` local processes of ``engine`` and returns process 0's report."""
    return launch(processes, engine, epochs, os.path.abspath(output), batch_size, quiet)


if __name__ == "__main__":
    args = ARGS
    if args.launch:
        launch(args.launch, args.engine, args.epochs, args.output, args.batch_size, args.quiet)
    else:
        run(args.engine, args.epochs, args.output, args.batch_size, args.address,
            args.num_processes, args.process_id, args.quiet)
