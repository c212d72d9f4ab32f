"""Scale-out with real worker processes: JAX multi-process data parallel, tf_keras under
``MultiWorkerMirroredStrategy``, a fit killed with SIGKILL and resumed by ``BackupAndRestore``,
and ``ModelCheckpoint`` files.

Every child runs a tiny model on free localhost ports (port 0 bound at run time) under a
timeout and is killed if the test fails; each test compares the distributed (or interrupted)
run with one plain process on the same global batches.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import mdn_layers

pytestmark = pytest.mark.slow  # every test here trains models in subprocesses or examples

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHILD_TIMEOUT = 300


def free_ports(count):
    """``count`` distinct localhost ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def run_children(script, argument_lists, env, tmp_path):
    """Starts one child per argument list, waits for all; returns their return codes and
    stderr tails. Children still alive at the end (a failure or a timeout) are killed."""
    path = tmp_path / "child.py"
    path.write_text(script)
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT, **env}
    children = [subprocess.Popen([sys.executable, str(path), *map(str, arguments)],
                                 env=full_env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
                for arguments in argument_lists]
    try:
        results = []
        for child in children:
            _, stderr = child.communicate(timeout=CHILD_TIMEOUT)
            results.append((child.returncode, stderr[-3000:]))
        return results
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def check_ok(results):
    for code, stderr in results:
        assert code == 0, stderr


# --- JAX: keras.distribution over processes ----------------------------------------------

JAX_WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    import mdn_layers

    process_id, num_processes, port, out, allow_missing = (
        int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] == "1")
    if num_processes > 1:
        keras.distribution.initialize(job_addresses=f"127.0.0.1:{port}",
                                      num_processes=num_processes, process_id=process_id)
        keras.distribution.set_distribution(keras.distribution.DataParallel(
            devices=keras.distribution.list_devices("cpu"), auto_shard_dataset=False))

    # float64 (JAX_ENABLE_X64 is set): the two runs sum a batch's gradient in different
    # orders, and Adam divides by sqrt(v), which amplifies that round-off in weights with
    # tiny gradients; in float32 it reached 2e-4 relative, in float64 it is ~1e-12.
    keras.config.set_floatx("float64")
    GLOBAL_BATCH, STEPS = 64, 6
    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS, 3))
    y = np.concatenate([np.sin(x[:, :1]), x[:, 1:2] * x[:, 2:3]], 1)
    y = y + 0.1 * rng.normal(size=y.shape)
    if allow_missing:
        y[rng.random(y.shape) < 0.25] = np.nan

    def shard(array):
        # This process's rows of every global batch, in order.
        local = GLOBAL_BATCH // num_processes
        steps = array.reshape(STEPS, GLOBAL_BATCH, -1)
        return steps[:, process_id * local:(process_id + 1) * local].reshape(-1, array.shape[1])

    keras.utils.set_random_seed(0)
    head = mdn_layers.MixtureDensity(2, 3)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(16, activation="tanh"), head])
    model.compile(keras.optimizers.Adam(0.01),
                  loss=mdn_layers.MixtureNLL.for_layer(head, allow_missing=allow_missing))
    history = model.fit(shard(x), shard(y), batch_size=GLOBAL_BATCH // num_processes, epochs=3,
                        shuffle=False, verbose=0)

    def host_copy(variable):
        value = variable.value
        shards = getattr(value, "addressable_shards", None)
        return np.asarray(shards[0].data if shards else value).tolist()

    with open(out, "w") as file:
        json.dump({"loss": history.history["loss"],
                   "weights": [host_copy(v) for v in model.weights],
                   "devices": len(keras.distribution.list_devices("cpu"))}, file)
""")


@pytest.mark.parametrize("allow_missing", [False, True], ids=["full", "missing-targets"])
def test_jax_two_processes_train_like_one(tmp_path, allow_missing):
    """Two JAX processes, each feeding half of every global batch, take the same steps as
    one process fed the whole batch: per-epoch losses and final weights to round-off."""
    pytest.importorskip("jax")
    env = {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "1"}
    flag = int(allow_missing)
    (port,) = free_ports(1)
    check_ok(run_children(JAX_WORKER, [[0, 1, port, tmp_path / "one.json", flag]], env,
                          tmp_path))
    check_ok(run_children(JAX_WORKER, [[i, 2, port, tmp_path / f"two_{i}.json", flag]
                                       for i in range(2)], env, tmp_path))
    one = json.loads((tmp_path / "one.json").read_text())
    two = [json.loads((tmp_path / f"two_{i}.json").read_text()) for i in range(2)]
    assert one["devices"] == 1 and two[0]["devices"] == 2
    assert np.all(np.isfinite(one["loss"])) and one["loss"][-1] < one["loss"][0]
    for worker in two:
        np.testing.assert_allclose(worker["loss"], one["loss"], rtol=1e-9)
        for ours, single in zip(worker["weights"], one["weights"]):
            np.testing.assert_allclose(ours, single, rtol=1e-8, atol=1e-10)


# --- tf_keras: MultiWorkerMirroredStrategy ---------------------------------------------------

TF_KERAS_WORKER = textwrap.dedent("""
    import json, os, sys
    import numpy as np

    index, num_workers, ports, out = (int(sys.argv[1]), int(sys.argv[2]),
                                      sys.argv[3].split(","), sys.argv[4])
    if num_workers > 1:
        os.environ["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index}})
    import tensorflow as tf
    import tf_keras
    from mdn_layers import tfp_layers

    GLOBAL_BATCH, STEPS = 64, 6
    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS, 3)).astype("float32")
    y = np.concatenate([np.sin(x[:, :1]), x[:, 1:2] * x[:, 2:3]], 1)
    y = (y + 0.1 * rng.normal(size=y.shape)).astype("float32")
    # Uneven weights: worker 0's half of each batch weighs 3x worker 1's.
    weight = np.tile(np.repeat([3.0, 1.0], GLOBAL_BATCH // 2), STEPS).astype("float32")

    strategy = (tf.distribute.MultiWorkerMirroredStrategy() if num_workers > 1
                else tf.distribute.get_strategy())
    local = GLOBAL_BATCH // num_workers

    def shard(array):
        steps = array.reshape(STEPS, GLOBAL_BATCH, -1)
        rows = steps[:, index * local:(index + 1) * local]
        return rows.reshape((-1,) + array.shape[1:])

    def batches(context=None):
        # This worker's rows of every global batch, batched per replica as they are;
        # repeated, so epochs (steps_per_epoch=STEPS) run through it in the same order.
        return tf.data.Dataset.from_tensor_slices(
            (shard(x), shard(y), shard(weight[:, None])[:, 0])).batch(local).repeat()

    data = (strategy.distribute_datasets_from_function(batches) if num_workers > 1
            else batches())
    with strategy.scope():
        tf_keras.utils.set_random_seed(0)
        model = tf_keras.Sequential([tf_keras.Input((3,)),
                                     tf_keras.layers.Dense(16, activation="tanh"),
                                     tfp_layers.MixtureDensity(2, 3)])
        model.compile(tf_keras.optimizers.SGD(0.05), loss=tfp_layers.negative_log_likelihood)
    history = model.fit(data, epochs=3, steps_per_epoch=STEPS, verbose=0)
    with open(out, "w") as file:
        json.dump({"loss": history.history["loss"],
                   "weights": [w.tolist() for w in model.get_weights()],
                   "replicas": strategy.num_replicas_in_sync}, file)
""")


def test_tf_keras_two_workers_train_like_one(tmp_path):
    """tf_keras under MultiWorkerMirroredStrategy: each worker's loss is its weighted sum
    divided by the *global* batch (Keras's SUM_OVER_BATCH_SIZE scaled by the replica count),
    the gradients are summed over workers — so two workers with uneven sample weights take
    exactly the steps of one process on the whole batch with the same weights."""
    env = {"KERAS_BACKEND": "tensorflow"}
    check_ok(run_children(TF_KERAS_WORKER, [[0, 1, "0", tmp_path / "one.json"]], env,
                          tmp_path))
    ports = ",".join(map(str, free_ports(2)))
    check_ok(run_children(TF_KERAS_WORKER, [[i, 2, ports, tmp_path / f"two_{i}.json"]
                                            for i in range(2)], env, tmp_path))
    one = json.loads((tmp_path / "one.json").read_text())
    two = [json.loads((tmp_path / f"two_{i}.json").read_text()) for i in range(2)]
    assert one["replicas"] == 1 and two[0]["replicas"] == 2
    assert one["loss"][-1] < one["loss"][0]
    for worker in two:
        for ours, single in zip(worker["weights"], one["weights"]):
            np.testing.assert_allclose(ours, single, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(two[0]["weights"][0], two[1]["weights"][0], rtol=0, atol=0)


# --- SIGKILL mid-fit, resumed by BackupAndRestore ------------------------------------------

RESUMABLE = textwrap.dedent("""
    import json, os, signal, sys
    import numpy as np
    import keras
    import mdn_layers

    backup, out, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 2)).astype("float32")
    y = np.stack([x[:, 0] * x[:, 1], np.cos(x[:, 0])], -1).astype("float32")

    class Record(keras.callbacks.Callback):
        # Appends each epoch's loss to a file that outlives the process.
        def on_epoch_end(self, epoch, logs=None):
            with open(out + ".losses", "a") as file:
                file.write(json.dumps([epoch, float(logs["loss"])]) + "\\n")
            if epoch + 1 == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

    keras.utils.set_random_seed(0)
    head = mdn_layers.MixtureDensity(2, 2)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(8, activation="tanh"), head])
    model.compile(keras.optimizers.Adam(0.01), loss=mdn_layers.MixtureNLL.for_layer(head))
    callbacks = [keras.callbacks.BackupAndRestore(backup), Record()]
    model.fit(x, y, batch_size=32, epochs=4, shuffle=False, verbose=0, callbacks=callbacks)
    np.save(out, np.concatenate([np.ravel(w) for w in model.get_weights()]))
""")


@pytest.mark.backend_neutral
def test_killed_fit_resumes_with_backup_and_restore(tmp_path):
    """A fit killed (SIGKILL) after epoch 2 of 4 and started again ends where an
    uninterrupted fit ends: the same weights and the same per-epoch losses."""
    env = {"KERAS_BACKEND": keras.backend.backend()}
    check_ok(run_children(RESUMABLE, [[tmp_path / "b0", tmp_path / "plain.npy", 0]], env,
                          tmp_path))
    ((code, _),) = run_children(RESUMABLE, [[tmp_path / "b1", tmp_path / "killed.npy", 2]],
                                env, tmp_path)
    assert code == -signal.SIGKILL and not (tmp_path / "killed.npy").exists()
    check_ok(run_children(RESUMABLE, [[tmp_path / "b1", tmp_path / "killed.npy", 0]], env,
                          tmp_path))

    def losses(name):
        lines = (tmp_path / f"{name}.npy.losses").read_text().splitlines()
        return [json.loads(line) for line in lines]

    plain, resumed = losses("plain"), losses("killed")
    assert [epoch for epoch, _ in resumed] == [0, 1, 2, 3]  # resumed at epoch 3, not 1
    np.testing.assert_allclose([v for _, v in resumed], [v for _, v in plain], rtol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "killed.npy"),
                               np.load(tmp_path / "plain.npy"), rtol=1e-5, atol=1e-6)


@pytest.mark.backend_neutral
def test_best_checkpoint_loads_without_custom_objects(tmp_path, rng):
    """``ModelCheckpoint(save_best_only=True)`` writes a ``.keras`` file that loads with
    ``safe_mode=True`` and no ``custom_objects``, and predicts the mixture it saved."""
    x = rng.normal(size=(256, 2)).astype("float32")
    y = (x @ rng.normal(size=(2, 2))).astype("float32")
    keras.utils.set_random_seed(0)
    head = mdn_layers.MixtureDensity(2, 2).adapt(y)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(8, activation="tanh"), head])
    model.compile(keras.optimizers.Adam(0.01), loss=mdn_layers.MixtureNLL.for_layer(head))
    path = str(tmp_path / "best.keras")
    best = keras.callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    history = model.fit(x[:200], y[:200], validation_data=(x[200:], y[200:]), epochs=4,
                        verbose=0, callbacks=[best])
    loaded = keras.saving.load_model(path, safe_mode=True)
    val_loss = min(history.history["val_loss"])
    np.testing.assert_allclose(loaded.evaluate(x[200:], y[200:], verbose=0), val_loss,
                               rtol=1e-5)
    assert loaded.layers[-1].get_config() == head.get_config()
