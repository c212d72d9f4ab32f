"""Bishop's (1994) inverse problem: where least squares fails and an MDN does not.

Forward: ``x ~ U(0, 1)``, ``t = x + 0.3 sin(2 pi x) + U(-0.1, 0.1)``. Learning ``x`` given
``t`` is multi-valued for ``t`` in about ``(0.3, 0.7)``: a least-squares network predicts the
conditional mean, which lies between the branches where there is no data. An MDN learns the
whole conditional density. We

1. compute the best achievable held-out NLL by numerical integration (the true ``p(x | t)``
   is uniform on the set ``{x : |t - f(x)| < 0.1}``),
2. train an MDN (5 components) and a least-squares network of the same size,
3. report the MDN's held-out NLL next to that bound, and both networks' errors,
4. write ``bishop_inverse.png``: the predicted density of ``x`` given ``t`` with the data,
   and the least-squares curve.

Run: ``python examples/bishop_inverse.py [--epochs N] [--long] [--quiet] [--output PATH]``
(about a minute on 2 CPU cores with the defaults).
"""

if __name__ == "__main__":  # options first: --help answers before TensorFlow loads
    from _cli import parse_args
    ARGS = parse_args(__doc__, epochs=150, output="bishop_inverse.png")

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import mdn_layers  # noqa: E402
from mdn_layers import plotting  # noqa: E402

NUM_COMPONENTS, NOISE = 5, 0.1


def forward(x):
    return x + 0.3 * np.sin(2 * np.pi * x)


def make_data(num_samples, seed):
    """``t`` ``[N, 1]`` (the network input) and ``x`` ``[N, 1]`` (the target)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (num_samples, 1))
    t = forward(x) + rng.uniform(-NOISE, NOISE, (num_samples, 1))
    return t.astype("float32"), x.astype("float32")


def best_achievable_nll(t, grid_size=20001):
    """Mean ``-log p(x | t)`` under the true density, by integrating over ``x`` on a grid.

    ``p(t | x) = 1 / (2 NOISE)`` on ``|t - f(x)| < NOISE`` and ``p(x) = 1`` on ``[0, 1]``, so
    ``p(x | t) = 1 / |{x : |t - f(x)| < NOISE}|`` on that set: ``-log p(x | t) = log |set|``.
    """
    grid = np.linspace(0, 1, grid_size)
    inside = np.abs(t.reshape(-1, 1) - forward(grid)[None, :]) < NOISE
    return float(np.mean(np.log(inside.mean(axis=1))))


def trunk(output_layer):
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(64, activation="tanh"),
                             keras.layers.Dense(64, activation="tanh"), output_layer])


def main(epochs=150, output="bishop_inverse.png", quiet=False):
    keras.utils.set_random_seed(0)
    t_train, x_train = make_data(4000, seed=0)
    t_test, x_test = make_data(2000, seed=1)
    steps = epochs * int(np.ceil(len(t_train) / 128))
    verbose = 0 if quiet else "auto"

    head = mdn_layers.MixtureDensity(1, NUM_COMPONENTS, initial_scale=0.3, loc_spread=0.3)
    mdn = trunk(head)
    print("training the MDN")
    mdn.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-2, steps)),
                loss=mdn_layers.MixtureNLL.for_layer(head))
    mdn.fit(t_train, x_train, epochs=epochs, batch_size=128, verbose=verbose)
    print("training the least-squares network (same trunk, one output, MSE)")
    least_squares = trunk(keras.layers.Dense(1))
    least_squares.compile(keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(1e-2, steps)), loss="mse")
    least_squares.fit(t_train, x_train, epochs=epochs, batch_size=128, verbose=verbose)

    mixture = mdn_layers.predict_mixture(mdn, t_test)
    nll = -float(np.mean(mixture.log_prob(x_test)))
    best = best_achievable_nll(t_test)
    print(f"MDN held-out NLL {nll:.3f} nats; best achievable {best:.3f} "
          "(true density, by numerical integration)")
    print(f"  the gap ({nll - best:.3f}) is estimation error, expected of any fitted model: "
          f"{len(t_train)} training points and {NUM_COMPONENTS} Gaussians approximate a "
          "density with sharp edges; only the true density reaches the best value")
    mode = mdn_layers.mode(mixture).numpy()
    mean_fit = least_squares.predict(t_test, verbose=0)
    # How far is each prediction from the nearest x that could have produced t?
    for name, guess in (("MDN mode", mode), ("least squares", mean_fit)):
        residual = np.abs(forward(guess) - t_test)
        print(f"{name:>14}: |f(x_hat) - t| > noise for {np.mean(residual > NOISE):.1%} "
              "of test points (a consistent x has 0%)")

    figure, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    t_grid = np.linspace(-0.05, 1.05, 220, dtype="float32")[:, None]
    on_grid = mdn_layers.predict_mixture(mdn, t_grid)
    plotting.plot_conditional_density(on_grid, t_grid[:, 0], np.linspace(-0.1, 1.1, 220),
                                      x_data=t_test, y_data=x_test, ax=axes[0],
                                      density_label="p(x | t)")
    axes[0].plot(t_grid[:, 0], least_squares.predict(t_grid, verbose=0)[:, 0], color="crimson",
                 lw=2, label="least squares (conditional mean)")
    axes[0].set_xlabel("t (input)")
    axes[0].set_ylabel("x (target)")
    axes[0].set_title("MDN density p(x | t), held-out data as white dots")
    axes[0].legend(loc="upper left")
    weights = np.exp(mdn_layers.mixture_from_params(
        mdn.predict(t_grid, verbose=0), 1, NUM_COMPONENTS).mixture_distribution
        .logits_parameter().numpy())
    weights /= weights.sum(-1, keepdims=True)
    axes[1].stackplot(t_grid[:, 0], weights.T, labels=[f"component {k}"
                                                        for k in range(NUM_COMPONENTS)])
    axes[1].set_xlabel("t (input)")
    axes[1].set_ylabel("mixture weight")
    axes[1].set_title("mixing coefficients: several components where x is multi-valued")
    axes[1].legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    print(f"wrote {output}")
    return nll, best


if __name__ == "__main__":
    args = ARGS
    main(args.epochs * (4 if args.long else 1), args.output, args.quiet)
