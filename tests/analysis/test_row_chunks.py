"""Many rows are analysed in row chunks (bounded memory): chunked results against scipy,
draws that do not repeat across chunks, a factor's upper triangle still ignored."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import random_mixture, run_python, scipy_mixture_logpdf

import mdn_layers
from mdn_layers.analysis import mixtures
from mdn_layers.core import layout

tfd = tfp.distributions
ROWS, D, K = 120, 3, 4


@pytest.fixture(params=[9, 60])
def small_chunks(request, monkeypatch):
    """9 rows per chunk (14 chunks of the 120 rows), or 60 (two chunks); returns the rows."""
    monkeypatch.setattr(layout, "CHUNK_BYTES", request.param * 8 * K * (1 + D + D * D))
    return request.param


def _batch(rng):
    parts = [random_mixture(rng, K, D) for _ in range(ROWS)]
    weights, means, covs = (np.stack(p) for p in zip(*parts))
    dist = tfd.MixtureSameFamily(
        tfd.Categorical(probs=weights),
        tfd.MultivariateNormalTriL(means, np.linalg.cholesky(covs)))
    return parts, dist


def test_the_rows_are_cut_into_chunks(rng, small_chunks):
    _, dist = _batch(rng)
    starts = [start for start, _, _ in mixtures.row_chunks(mixtures.mixture_parts(dist))]
    assert starts == list(range(0, ROWS, small_chunks))


def test_chunked_nll_and_condition_equal_scipy(rng, small_chunks):
    parts, dist = _batch(rng)
    y = rng.normal(size=(ROWS, D))
    expected = np.array([scipy_mixture_logpdf(y[i:i + 1], *parts[i])[0] for i in range(ROWS)])
    np.testing.assert_allclose(mdn_layers.scores.nll(dist, y).numpy(), -expected, rtol=1e-9)
    # p(y1, y2 | y0) = p(y) / p(y0), p(y0) from the first row and column of each covariance
    given = mdn_layers.condition(dist, [0], y[:, :1])
    marginal = np.array([scipy_mixture_logpdf(y[i:i + 1, :1], w, m[:, :1], c[:, :1, :1])[0]
                         for i, (w, m, c) in enumerate(parts)])
    np.testing.assert_allclose(given.log_prob(y[:, 1:]).numpy(), expected - marginal,
                               rtol=1e-8, atol=1e-9)


def test_values_with_a_sample_axis_or_broadcast_are_not_cut(rng, small_chunks):
    parts, dist = _batch(rng)
    draws = rng.normal(size=(3, ROWS, D))                      # [S, N, D]: one pass
    np.testing.assert_allclose(mdn_layers.scores.nll(dist, draws).numpy(),
                               -dist.log_prob(draws).numpy(), rtol=1e-10)
    point = rng.normal(size=D)                                 # [D]: every chunk
    np.testing.assert_allclose(mdn_layers.scores.nll(dist, point).numpy(),
                               -dist.log_prob(point).numpy(), rtol=1e-10)
    row = rng.normal(size=(1, D))                              # [1, D]: broadcast, not cut
    np.testing.assert_allclose(mdn_layers.scores.nll(dist, row).numpy(),
                               -dist.log_prob(row).numpy(), rtol=1e-10)


def test_two_batch_axes_are_cut_along_the_first_and_a_point_goes_whole(rng, small_chunks):
    """Batch ``[N, 2]``: rows of the first axis per chunk; values ``[D]`` (one rank below the
    batch) and ``[N, 2, D]`` against TFP."""
    parts, _ = _batch(rng)
    weights, means, covs = (np.stack([np.stack(p)] * 2, axis=1) for p in zip(*parts))
    pairs = tfd.MixtureSameFamily(tfd.Categorical(probs=weights),
                                  tfd.MultivariateNormalTriL(means, np.linalg.cholesky(covs)))
    for values in (rng.normal(size=D), rng.normal(size=(ROWS, 2, D))):
        np.testing.assert_allclose(mdn_layers.scores.nll(pairs, values).numpy(),
                                   -pairs.log_prob(values).numpy(), rtol=1e-10)


def test_chunked_draws_are_fresh_in_every_chunk_and_reproducible(rng, small_chunks):
    weights, means, covs = random_mixture(rng, K, D)
    dist = tfd.MixtureSameFamily(   # the same mixture in every row
        tfd.Categorical(probs=np.tile(weights, (ROWS, 1))),
        tfd.MultivariateNormalTriL(np.tile(means, (ROWS, 1, 1)),
                                   np.tile(np.linalg.cholesky(covs), (ROWS, 1, 1, 1))))
    draws = mdn_layers.sample(dist, 50, seed=3).numpy()            # [50, ROWS, D]
    assert len(np.unique(draws[0, :, 0])) == ROWS                   # no chunk repeats one
    np.testing.assert_array_equal(draws, mdn_layers.sample(dist, 50, seed=3).numpy())
    mean = np.einsum("k,kd->d", weights, means)
    pooled = draws.reshape(-1, D)
    standard_error = pooled.std(0) / np.sqrt(len(pooled))
    assert np.all(np.abs(pooled.mean(0) - mean) < 5 * standard_error)


def test_rows_per_chunk_shrink_with_the_draws_per_row(rng, monkeypatch):
    """S draws per row make S copies of a row's parts: with a budget that holds every row's
    parts once, one draw per row takes one chunk of all 120 rows, two draws two chunks and
    ten draws chunks of 12 rows (full and diagonal factors), so a chunk's draws stay within
    the budget; the chunks' draws are joined row by row."""
    from mdn_layers.analysis import sampling
    cut = []

    def recorded(parts, values=None, copies=1):
        for start, chunk, chunk_values in mixtures.row_chunks(parts, values, copies):
            cut.append(int(chunk.log_weights.shape[0]))
            yield start, chunk, chunk_values

    monkeypatch.setattr(sampling, "row_chunks", recorded)
    _, dist = _batch(rng)
    diagonal = tfd.MixtureSameFamily(dist.mixture_distribution, tfd.MultivariateNormalDiag(
        dist.components_distribution.mean(), dist.components_distribution.stddev()))
    for mixture, entries in [(dist, 1 + D + D * D), (diagonal, 1 + 2 * D)]:
        monkeypatch.setattr(layout, "CHUNK_BYTES", ROWS * 8 * K * entries)
        for draws, chunks in [(1, [ROWS]), (2, [60, 60]), (10, [12] * 10)]:
            cut.clear()
            assert mdn_layers.sample(mixture, draws, seed=0).shape == (draws, ROWS, D)
            assert cut == chunks
    # Each row's draws come from its own mixture: rows 100 apart stay within 50 of theirs.
    offset = 100.0 * np.arange(ROWS)[:, None, None]
    apart = tfd.MixtureSameFamily(dist.mixture_distribution, tfd.MultivariateNormalDiag(
        dist.components_distribution.mean() + offset, dist.components_distribution.stddev()))
    draws = mdn_layers.sample(apart, 10, seed=0).numpy()
    assert np.all(np.abs(draws - offset[:, 0][None]) < 50.0)


def test_a_factor_with_entries_above_its_diagonal_is_read_as_its_lower_triangle(rng):
    tril = np.tril(rng.normal(size=(5, 2, D, D))) + 2 * np.eye(D)
    noisy = tril + np.triu(rng.normal(size=tril.shape), 1)   # TFP ignores the upper part
    dist = tfd.MixtureSameFamily(tfd.Categorical(logits=np.zeros((5, 2))),
                                 tfd.MultivariateNormalTriL(np.zeros((5, 2, D)), noisy))
    np.testing.assert_array_equal(mixtures.mixture_parts(dist).scale.numpy(), tril)
    assert tf.executing_eagerly()
    # Entries on the first superdiagonal alone are found too.
    near = tril + np.triu(np.tril(np.ones(tril.shape), 1), 1)
    dist = tfd.MixtureSameFamily(tfd.Categorical(logits=np.zeros((5, 2))),
                                 tfd.MultivariateNormalTriL(np.zeros((5, 2, D)), near))
    np.testing.assert_array_equal(mixtures.mixture_parts(dist).scale.numpy(), tril)


PEAK_SCRIPT = """
import json, resource, sys
import numpy as np, mdn_layers
operation = sys.argv[1]
rows, d, k = 200_000, 6, 8
rng = np.random.default_rng(0)
params = rng.normal(size=(rows, mdn_layers.params_size(d, k))).astype("float32")
mixture = mdn_layers.mixture_from_params(params, d, k)
y = rng.normal(size=(rows, d)).astype("float32")
small = mdn_layers.mixture_from_params(params[:2], d, k)
del params
run = {"nll": lambda m, v: mdn_layers.scores.nll(m, v),
       "condition": lambda m, v: mdn_layers.condition(m, [0, 1], v[:, :2]),
       "sample": lambda m, v: mdn_layers.sample(m, seed=0)}[operation]
run(small, y[:2])                               # code paths loaded on two rows
with open("/proc/self/statm") as f:
    before = int(f.read().split()[1]) * resource.getpagesize() / 2**20
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")                                # reset the high-water mark
result = run(mixture, y)
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
if hasattr(result, "numpy"):
    kept = [result]
else:                                           # the conditioned mixture: half the size
    from mdn_layers.analysis.mixtures import mixture_parts
    kept = mixture_parts(result)[:3]
print(json.dumps({"peak": peak - before, "mixture_mb": rows * k * (1 + d + d * d) * 4 / 2**20,
                  "result_mb": sum(t.numpy().nbytes for t in kept) / 2**20}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux /proc only")
def test_many_rows_are_scored_conditioned_and_sampled_in_bounded_memory():
    """Peak memory beyond the mixture and the operation's own result stays a fraction of the
    mixture's size (it was about twice its size when the factors were copied and every row
    worked at once). The conditioned mixture itself is about half the input's size."""
    for operation in ("nll", "condition", "sample"):
        measured = run_python(f"import sys; sys.argv[1:] = [{operation!r}]\n" + PEAK_SCRIPT)
        assert measured["peak"] - measured["result_mb"] < 0.4 * measured["mixture_mb"], (
            operation, measured)
