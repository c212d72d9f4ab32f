import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mdn_layers  # noqa: E402
from mdn_layers import datasets, plotting, scores  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def saved(ax, tmp_path, name):
    path = tmp_path / f"{name}.png"
    ax.figure.savefig(path)
    assert path.stat().st_size > 1000
    return path


def test_every_plot_writes_a_file(tmp_path):
    task = datasets.correlated_2d(300, seed=0)
    x_grid = np.linspace(-1, 1, 40, dtype="float32")[:, None]
    layer = mdn_layers.MixtureDensity(2, 3)
    grid_mixture = layer.mixture(layer(x_grid))
    ax = plotting.plot_conditional_density(grid_mixture, x_grid[:, 0], np.linspace(-2, 2, 50),
                                           dim=1, x_data=task.x, y_data=task.y[:, 1])
    saved(ax, tmp_path, "conditional")
    ax = plotting.plot_mixture_2d(task.true_mixture[0], data=task.y)
    assert len(ax.patches) == 2  # one ellipse per component
    saved(ax, tmp_path, "mixture2d")
    draws = mdn_layers.sample(task.true_mixture, seed=1)
    saved(plotting.plot_samples(draws, task.y), tmp_path, "samples")
    saved(plotting.plot_samples(draws[:, :1], task.y[:, :1]), tmp_path, "samples1d")
    pit = scores.pit(task.true_mixture, task.y)
    saved(plotting.plot_pit_histogram(pit), tmp_path, "pit")
    saved(plotting.plot_density_1d(task.true_mixture[0], np.linspace(-2, 2, 100)), tmp_path,
          "density")


def test_plots_draw_on_given_axes():
    _, ax = plt.subplots()
    task = datasets.bimodal_sine(50, seed=0)
    assert plotting.plot_density_1d(task.true_mixture[0], np.linspace(-3, 3, 20), ax=ax) is ax
