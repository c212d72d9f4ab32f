#!/usr/bin/env bash
# The published artefacts: build the sdist and the wheel, check their metadata, look inside
# the wheel, install it (with the [jax] extra) into a clean venv and train on JAX from outside
# the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
python -m pip install --quiet build twine
python -m build --outdir "$out/dist" . > "$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
python -m twine check --strict "$out"/dist/*
python - "$out"/dist/*.whl <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for needed in ("mdn_layers/__init__.py", "mdn_layers/py.typed", "licenses/LICENSE"):
    assert any(name.endswith(needed) for name in names), f"the wheel lacks {needed}"
assert not any(name.startswith(("tests/", "benchmarks/", "examples/")) for name in names)
print(f"wheel holds {len(names)} files, LICENSE and py.typed among them")
PY
python3 -m venv "$out/venv"
wheel="$(ls "$out"/dist/*.whl)"
"$out/venv/bin/python" -m pip install --quiet "$wheel[jax]"
cd "$out"
KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=2 "$out/venv/bin/python" - <<'PY'
import numpy as np, keras, mdn_layers
assert keras.backend.backend() == "jax"
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 1)).astype("float32")
y = 100.0 + 20.0 * np.concatenate([x, -x], 1) + rng.normal(size=(256, 2)).astype("float32")
head = mdn_layers.MixtureDensity(2, 3).adapt(y)
model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(16, activation="tanh"), head])
model.compile("adam", loss=mdn_layers.MixtureNLL.for_layer(head))
model.fit(x, y, epochs=3, verbose=0)
mixture = mdn_layers.predict_mixture(model, x[:8])
given = mdn_layers.condition(mixture, indices=[1], values=y[:8, 1:])
assert np.all(np.isfinite(mixture.log_prob(y[:8]))) and given.event_shape == [1]
print("installed wheel", mdn_layers.__version__, "trains on JAX and conditions its mixtures")
PY
