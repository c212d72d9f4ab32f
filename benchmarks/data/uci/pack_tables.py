"""Packs the standard UCI split folders into one compressed ``<table>.npz`` each.

    python benchmarks/data/uci/pack_tables.py SOURCE_DIR

``SOURCE_DIR`` is a copy of ``experiments/data/UCI_for_sharing/standard`` of the repository
cambridge-mlg/DUN (see ``README.md`` here). Each archive holds ``data`` (``[N, C]`` float64,
parsed from ``data.txt``), ``features`` and ``target`` (column indices), ``train`` and
``test`` (``[S, n]`` row indices of each split), ``n_hidden`` and ``n_epochs`` (the
protocol's), and ``data_sha256`` (of the original ``data.txt``, to check provenance).
"""

import hashlib
import pathlib
import sys

import numpy as np

TABLES = ("boston", "concrete", "energy", "kin8nm", "naval", "power", "protein", "wine",
          "yacht")


def _integers(path):
    return np.loadtxt(path, dtype=np.int64, ndmin=1)


def pack(source, table, destination):
    folder = pathlib.Path(source) / table
    raw = (folder / "data.txt").read_bytes()
    splits = int((folder / "n_splits.txt").read_text().split()[0])
    np.savez_compressed(
        pathlib.Path(destination) / f"{table}.npz",
        data=np.loadtxt(folder / "data.txt", dtype=np.float64, ndmin=2),
        features=_integers(folder / "index_features.txt"),
        target=_integers(folder / "index_target.txt"),
        train=np.stack([_integers(folder / f"index_train_{i}.txt") for i in range(splits)]),
        test=np.stack([_integers(folder / f"index_test_{i}.txt") for i in range(splits)]),
        n_hidden=_integers(folder / "n_hidden.txt")[0],
        n_epochs=_integers(folder / "n_epochs.txt")[0],
        data_sha256=hashlib.sha256(raw).hexdigest())


if __name__ == "__main__":
    for name in TABLES:
        pack(sys.argv[1], name, pathlib.Path(__file__).parent)
