#!/usr/bin/env bash
# One command to check a GPU set-up: a fresh virtual environment with the CUDA wheels of JAX
# and PyTorch (no TensorFlow needed), the project, the GPU tests (tests/gpu) and the GPU
# benchmark (bench_fit.py --gpu: ours against keras-mdn-layer and the ceiling at batch 8192,
# D=2,K=4 and D=8,K=16, every head, both backends). Writes benchmarks/results/gpu.json and
# gpu.md. On a machine without a GPU it runs as far as it can: the tests skip with the reason
# and the benchmark says no GPU is visible.
#
#   bash benchmarks/gpu_check.sh [VENV_DIR]      (default .venv-gpu)
#
# Versions (tested with Keras 3.15): jax[cuda13]==0.10.2 (CUDA 13 wheels from PyPI) and
# torch==2.13.0 (PyPI's default Linux wheel is a CUDA build). Set MDN_GPU_OFFLINE=1 to skip
# the installs and use the environment already active (a machine with no network).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-gpu}"
if [ "${MDN_GPU_OFFLINE:-0}" != "1" ]; then
    python3 -m venv "$VENV"
    . "$VENV/bin/activate"
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet "jax[cuda13]==0.10.2" "torch==2.13.0" "keras==3.15.*" \
        numpy pytest keras-mdn-layer==1.0.0
    # The training path needs no TensorFlow; the package is installed without its
    # dependencies so none is pulled in (the CPU-reload test uses the JAX CPU device).
    python -m pip install --quiet --no-deps -e .
fi
export TF_CPP_MIN_LOG_LEVEL=3
python -m pytest -q -rs -m gpu tests/gpu || status=$?
mkdir -p benchmarks/results
python benchmarks/bench_fit.py --gpu --json benchmarks/results/gpu.json \
    | tee benchmarks/results/gpu.md
exit "${status:-0}"
