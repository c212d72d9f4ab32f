"""Matplotlib views of predicted mixtures. Headless-safe: nothing here calls ``plt.show()``.

Every function draws on ``ax`` and returns the axes. Without ``ax`` it makes a new figure:
a pyplot figure under an interactive or notebook backend (so it shows inline), otherwise a
plain ``matplotlib.figure.Figure`` that pyplot does not keep open (save it with
``ax.figure.savefig``).
"""

import numpy as np
import tensorflow as tf

from mdn_layers.analysis.conditioning import marginalize
from mdn_layers.analysis.mixtures import mixture_parts
from mdn_layers.analysis.summaries import quantile

_NON_INTERACTIVE = ("agg", "cairo", "pdf", "pgf", "ps", "svg", "template")


def _axes(ax):
    if ax is None:
        import matplotlib
        if matplotlib.get_backend().lower() in _NON_INTERACTIVE:
            from matplotlib.figure import Figure
            ax = Figure(figsize=(6, 4.5)).subplots()
        else:
            import matplotlib.pyplot as plt
            _, ax = plt.subplots(figsize=(6, 4.5))
    return ax


def _one_mixture(mixture, function):
    if len(mixture.batch_shape) != 0:
        raise ValueError(f"{function} draws one mixture (batch shape []); received batch "
                         f"shape {list(mixture.batch_shape)}: index it first, e.g. "
                         "mixture[0].")


def _marginal_density(mixture, dim, values):
    """``[len(values), *batch]`` density of dim ``dim`` at each value, per batch member."""
    marginal = marginalize(mixture, [dim])
    batch_rank = len(marginal.batch_shape)
    points = np.reshape(np.asarray(values, dtype=marginal.dtype.as_numpy_dtype),
                        (-1,) + (1,) * batch_rank + (1,))
    return np.exp(marginal.log_prob(points).numpy())


def plot_conditional_density(mixture, x_grid, y_grid, dim=0, x_data=None, y_data=None,
                             ax=None, cmap="viridis", colorbar=True, density_label=None):
    """Heat map of ``p(y_dim | x)`` over a 1-D input grid, data on top (Bishop's figure).

    Args:
      mixture: predicted mixtures with batch shape ``[G]``, one per ``x_grid`` point.
      x_grid: ``[G]`` inputs, increasing.
      y_grid: ``[Y]`` target values at which to evaluate the density.
      dim: which target dim to show (its marginal).
      x_data, y_data: optional ``[N]`` points to scatter on top.
      colorbar: draw a colour bar of the density beside the axes.
      density_label: the colour bar's label (default ``"p(y[dim] | x)"``).
    """
    num_x = np.asarray(x_grid).reshape(-1).size
    if list(mixture.batch_shape) != [num_x]:
        raise ValueError("plot_conditional_density needs one mixture per x_grid point: batch "
                         f"shape [{num_x}]; received batch shape {list(mixture.batch_shape)}.")
    ax = _axes(ax)
    density = _marginal_density(mixture, dim, y_grid)
    mesh = ax.pcolormesh(np.asarray(x_grid).ravel(), np.asarray(y_grid).ravel(), density,
                         shading="auto", cmap=cmap)
    if x_data is not None and y_data is not None:
        ax.scatter(np.ravel(x_data), np.ravel(y_data), s=2, c="white", alpha=0.35,
                   linewidths=0)
    ax.set_xlim(np.min(x_grid), np.max(x_grid))  # the heat map's extent, data or not
    ax.set_ylim(np.min(y_grid), np.max(y_grid))
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label=density_label or f"p(y[{dim}] | x)")
    ax.set_xlabel("x")
    ax.set_ylabel(f"y[{dim}]")
    return ax


def plot_density_1d(mixture, y_grid, dim=0, ax=None, **line_kwargs):
    """Density of target dim ``dim`` of one mixture (batch shape ``[]``) over ``y_grid``."""
    _one_mixture(mixture, "plot_density_1d")
    ax = _axes(ax)
    ax.plot(np.ravel(y_grid), _marginal_density(mixture, dim, y_grid).ravel(), **line_kwargs)
    ax.set_xlabel(f"y[{dim}]")
    ax.set_ylabel("density")
    return ax


def plot_mixture_2d(mixture, dims=(0, 1), data=None, ax=None, grid_size=120,
                    num_levels=8, extent=None, colorbar=True):
    """Density contours of one 2-D mixture with a 2-sigma ellipse per component.

    Args:
      mixture: a mixture with batch shape ``[]`` and at least two target dims.
      dims: the two target dims to show (the others are marginalised out).
      data: optional ``[N, 2]`` points to scatter.
      extent: ``(xmin, xmax, ymin, ymax)``; by default the mixture's own 0.5% and 99.5%
        marginal quantiles per dim, widened by a quarter of that range on each side (weights
        count, so a broad component of small weight does not zoom the view out).
      colorbar: draw a colour bar of the density beside the axes.
    Ellipse line width and opacity grow with the component weight.
    """
    from matplotlib.patches import Ellipse

    _one_mixture(mixture, "plot_mixture_2d")
    ax = _axes(ax)
    marginal = marginalize(mixture, list(dims))
    parts = mixture_parts(marginal)
    weights = np.exp(parts.log_weights.numpy()).reshape(-1)
    locs = parts.loc.numpy().reshape(-1, 2)
    covariances = parts.covariance().numpy().reshape(-1, 2, 2)
    if extent is None:
        low, high = quantile(marginal, [0.005, 0.995]).numpy()
        pad = 0.25 * (high - low)
        low, high = low - pad, high + pad
        extent = (low[0], high[0], low[1], high[1])
    grid_x, grid_y = np.meshgrid(np.linspace(extent[0], extent[1], grid_size),
                                 np.linspace(extent[2], extent[3], grid_size))
    points = np.stack([grid_x, grid_y], -1).astype(marginal.dtype.as_numpy_dtype)
    density = np.exp(marginal.log_prob(points).numpy())
    filled = ax.contourf(grid_x, grid_y, density, levels=num_levels, cmap="Blues")
    if colorbar:
        ax.figure.colorbar(filled, ax=ax, label="density")
    if data is not None:
        data = np.asarray(data)
        ax.scatter(data[:, 0], data[:, 1], s=3, c="k", alpha=0.3, linewidths=0, label="data")
    for weight, loc, cov in zip(weights, locs, covariances):
        eigenvalues, eigenvectors = np.linalg.eigh(cov)
        angle = np.degrees(np.arctan2(eigenvectors[1, -1], eigenvectors[0, -1]))
        width, height = 2 * 2 * np.sqrt(np.maximum(eigenvalues[::-1], 0))
        ax.add_patch(Ellipse(loc, width, height, angle=angle, fill=False, color="crimson",
                             lw=0.5 + 3 * weight, alpha=min(1.0, 0.3 + weight)))
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel(f"y[{dims[0]}]")
    ax.set_ylabel(f"y[{dims[1]}]")
    return ax


def plot_samples(samples, data, dims=(0, 1), ax=None):
    """Scatter of model samples against data, both ``[N, D]`` (``D >= 2``); 1-D: histograms.

    ``[N]`` arrays are ``N`` one-dimensional points.
    """
    samples, data = (np.asarray(a, dtype=float) for a in (samples, data))
    samples, data = (a.reshape(-1, 1) if a.ndim <= 1 else a.reshape(-1, a.shape[-1])
                     for a in (samples, data))
    if samples.shape[-1] != data.shape[-1]:
        raise ValueError(f"plot_samples: samples have {samples.shape[-1]} dims but data "
                         f"{data.shape[-1]}.")
    ax = _axes(ax)
    if samples.shape[-1] == 1:
        bins = np.histogram_bin_edges(np.concatenate([samples[:, 0], data[:, 0]]), bins=50)
        ax.hist(data[:, 0], bins=bins, density=True, alpha=0.5, label="data")
        ax.hist(samples[:, 0], bins=bins, density=True, alpha=0.5, label="samples")
        ax.set_xlabel("y[0]")
    else:
        ax.scatter(data[:, dims[0]], data[:, dims[1]], s=3, alpha=0.4, label="data")
        ax.scatter(samples[:, dims[0]], samples[:, dims[1]], s=3, alpha=0.4, label="samples")
        ax.set_xlabel(f"y[{dims[0]}]")
        ax.set_ylabel(f"y[{dims[1]}]")
    ax.legend(loc="best")
    return ax


def plot_pit_histogram(pit_values, bins=20, ax=None):
    """Histogram of probability integral transform values; flat at 1 when calibrated."""
    ax = _axes(ax)
    pit_values = np.ravel(tf.convert_to_tensor(pit_values).numpy())
    ax.hist(pit_values, bins=bins, range=(0, 1), density=True, alpha=0.7, edgecolor="k")
    ax.axhline(1.0, color="crimson", ls="--", label="calibrated")
    ax.set_xlabel("PIT value")
    ax.set_ylabel("density")
    ax.legend(loc="best")
    return ax
