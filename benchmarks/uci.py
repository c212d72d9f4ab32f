"""The nine standard UCI regression tables with the literature's split files
(``benchmarks/data/uci/``, provenance in its README)."""

import os
from typing import NamedTuple

import numpy as np

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "uci")
TABLES = ("boston", "concrete", "energy", "kin8nm", "naval", "power", "protein", "wine",
          "yacht")


class StandardTable(NamedTuple):
    """One table: ``x`` ``[N, F]`` and ``y`` ``[N, 1]`` (float64, raw), the splits' row
    indices ``train`` ``[S, n]`` and ``test`` ``[S, m]``, and the protocol's hidden units."""
    name: str
    x: np.ndarray
    y: np.ndarray
    train: np.ndarray
    test: np.ndarray
    n_hidden: int
    data_sha256: str


def load(name):
    """The :class:`StandardTable` ``name`` (one of :data:`TABLES`)."""
    if name not in TABLES:
        raise ValueError(f"`name` must be one of {list(TABLES)}; received {name!r}.")
    with np.load(os.path.join(DATA_DIR, f"{name}.npz")) as archive:
        data = archive["data"]
        return StandardTable(name, data[:, archive["features"]], data[:, archive["target"]],
                             archive["train"], archive["test"], int(archive["n_hidden"]),
                             str(archive["data_sha256"]))

