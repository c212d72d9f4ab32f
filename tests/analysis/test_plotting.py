
import matplotlib
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np
import pytest
import tensorflow_probability as tfp

import mdn_layers
from mdn_layers import datasets, plotting, scores  # noqa: E402

matplotlib.use("Agg")


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


def test_colour_bars_name_the_density_and_the_view_follows_the_weights():
    tfd = tfp.distributions
    x_grid = np.linspace(-1, 1, 20, dtype="float32")[:, None]
    layer = mdn_layers.MixtureDensity(1, 2)
    ax = plotting.plot_conditional_density(layer.mixture(layer(x_grid)), x_grid[:, 0],
                                           np.linspace(-2, 2, 30), density_label="p(x | t)")
    assert [a.get_ylabel() for a in ax.figure.axes][-1] == "p(x | t)"
    assert ax.get_xlim() == (-1.0, 1.0) and ax.get_ylim() == (-2.0, 2.0)  # the grid's extent
    ax = plotting.plot_conditional_density(layer.mixture(layer(x_grid)), x_grid[:, 0],
                                           np.linspace(-2, 2, 30), colorbar=False)
    assert len(ax.figure.axes) == 1
    # 99% of the weight near the origin, 1% in a component 100x broader: the default view
    # frames the heavy component, not the broad one (whose 3.5-sigma box is +-350).
    mixture = tfd.MixtureSameFamily(
        tfd.Categorical(probs=[0.99, 0.01]),
        tfd.MultivariateNormalDiag(np.zeros((2, 2), "float32"), [[1.0, 1.0], [100.0, 100.0]]))
    ax = plotting.plot_mixture_2d(mixture)
    low, high = ax.get_xlim()
    assert -40 < low < -3 and 3 < high < 40
    assert ax.figure.axes[-1].get_ylabel() == "density"


def test_plots_refuse_batched_mixtures_and_read_1d_samples(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from mdn_layers import plotting
    batched = mdn_layers.mixture_from_params(np.zeros((5, 18), "float32"), 2, 3)
    with pytest.raises(ValueError, match="one mixture"):
        plotting.plot_mixture_2d(batched)
    with pytest.raises(ValueError, match="one mixture"):
        plotting.plot_density_1d(batched, np.linspace(-1, 1, 5))
    with pytest.raises(ValueError, match="one mixture per x_grid point"):
        plotting.plot_conditional_density(batched, np.linspace(0, 1, 4), np.linspace(-1, 1, 5))
    ax = plotting.plot_samples(np.arange(10.0), np.arange(10.0) + 0.5)
    assert len(ax.patches) > 2  # histograms of ten 1-D points, not one 10-D point
    import matplotlib.pyplot as plt
    before = len(plt.get_fignums())
    plotting.plot_mixture_2d(batched[0])
    assert len(plt.get_fignums()) == before  # not left open in pyplot's registry
