"""Training under tf.distribute.MirroredStrategy on two logical CPU devices.

Logical devices must be configured before TensorFlow starts, so the check runs in a fresh
Python process.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import keras, numpy as np, mdn_layers

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 3)).astype("float32")
    y = np.stack([x[:, 0] - x[:, 1], x[:, 2] ** 2], -1).astype("float32")
    y += rng.normal(0, 0.1, y.shape).astype("float32")

    def build():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(16, activation="tanh"),
                                  mdn_layers.MixtureDensity(2, 3)])
        model.compile(keras.optimizers.SGD(0.02), loss=mdn_layers.MixtureNLL(2, 3))
        return model

    single = build()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = build()
    mirrored.set_weights(single.get_weights())
    fit = dict(epochs=3, batch_size=64, shuffle=False, verbose=0)
    one = single.fit(x, y, **fit).history["loss"]
    two = mirrored.fit(x, y, **fit).history["loss"]
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "one": one, "two": two}))
""")


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    assert losses["replicas"] == 2
    assert all(np.isfinite(losses["two"]))
    np.testing.assert_allclose(losses["two"], losses["one"], rtol=1e-4)
    assert losses["two"][-1] < losses["two"][0]
