"""Inverse kinematics of a two-link planar arm: full covariance and conditioning.

Forward kinematics (Bishop, 1994): joint angles ``theta = (theta1, theta2)`` with
``theta1 ~ U(0.3, 1.2)``, ``theta2 ~ U(pi/2, 3pi/2)``, links ``l1 = 0.8``, ``l2 = 0.2``, put
the end effector at ``x = (l1 cos theta1 - l2 cos(theta1 + theta2), l1 sin theta1 -
l2 sin(theta1 + theta2))``. The inverse (position -> angles) has two branches, "elbow up"
and "elbow down". Along each branch the two angles move together, so a full-covariance
component captures that correlation. We

1. train an MDN from positions to (standardised) angles,
2. compare the end-effector error of the mixture **mode** with that of its **mean** (the mean
   averages the two branches into a pose that reaches somewhere else),
3. condition each predicted mixture on the true ``theta1`` and read ``theta2`` off the
   conditional mean,
4. write ``robot_arm.png``.

Run: ``python examples/robot_arm.py [--epochs N] [--long] [--quiet] [--output PATH]``
(about a minute on 2 CPU cores).
"""

if __name__ == "__main__":  # options first: --help answers before TensorFlow loads
    from _cli import parse_args
    ARGS = parse_args(__doc__, epochs=120, output="robot_arm.png")

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import mdn_layers  # noqa: E402

LINKS = (0.8, 0.2)
EVENT_SIZE, NUM_COMPONENTS = 2, 4


def forward_kinematics(theta):
    """``[N, 2]`` end-effector positions of joint angles ``[N, 2]``."""
    theta1, theta2 = theta[:, 0], theta[:, 0] + theta[:, 1]
    return np.stack([LINKS[0] * np.cos(theta1) - LINKS[1] * np.cos(theta2),
                     LINKS[0] * np.sin(theta1) - LINKS[1] * np.sin(theta2)], -1)


def make_data(num_samples, seed):
    rng = np.random.default_rng(seed)
    theta = np.stack([rng.uniform(0.3, 1.2, num_samples),
                      rng.uniform(np.pi / 2, 3 * np.pi / 2, num_samples)], -1)
    return forward_kinematics(theta).astype("float32"), theta.astype("float32")


def branch_row(mixture, x_test, near=(0.5, 0.7)):
    """The test target closest to ``near`` whose predicted mixture puts at least 20% weight on
    each of two components more than 0.5 rad apart in theta2 (both elbow solutions); the
    closest target overall if the model found none."""
    weights = np.exp(mixture.mixture_distribution.logits_parameter().numpy())
    weights /= weights.sum(-1, keepdims=True)
    theta2 = mixture.components_distribution.mean().numpy()[..., 1]
    heavy = weights > 0.2
    highest = np.where(heavy, theta2, -np.inf).max(-1)
    lowest = np.where(heavy, theta2, np.inf).min(-1)
    two_branches = heavy.sum(-1) >= 2
    two_branches[two_branches] = (highest - lowest)[two_branches] > 0.5
    distance = np.linalg.norm(x_test - np.asarray(near), axis=-1)
    return int(np.argmin(np.where(two_branches, distance, np.inf))) if two_branches.any() \
        else int(np.argmin(distance))


def main(epochs=120, output="robot_arm.png", quiet=False):
    keras.utils.set_random_seed(0)
    x_train, theta_train = make_data(8000, seed=0)
    x_test, theta_test = make_data(2000, seed=1)
    # Train on standardised angles; `rescale` maps the predicted mixtures back to radians.
    mean, std = theta_train.mean(0), theta_train.std(0)
    head = mdn_layers.MixtureDensity(EVENT_SIZE, NUM_COMPONENTS)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(64, activation="tanh"),
                              keras.layers.Dense(64, activation="tanh"), head])
    steps = epochs * int(np.ceil(len(x_train) / 128))
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(5e-3, steps)),
                  loss=mdn_layers.MixtureNLL.for_layer(head))
    model.fit(x_train, (theta_train - mean) / std, epochs=epochs, batch_size=128,
              verbose=0 if quiet else "auto")

    mixture = mdn_layers.rescale(mdn_layers.predict_mixture(model, x_test), mean, std)
    print(f"held-out NLL {-float(np.mean(mixture.log_prob(theta_test))):.3f} nats "
          "(angles in radians)")
    mode = mdn_layers.mode(mixture).numpy()
    mixture_mean = mixture.mean().numpy()
    errors = {name: np.linalg.norm(forward_kinematics(guess) - x_test, axis=-1)
              for name, guess in (("mode", mode), ("mean", mixture_mean))}
    for name, error in errors.items():
        print(f"end-effector error of the {name}: median {np.median(error):.4f}, "
              f"90th percentile {np.quantile(error, 0.9):.4f} (arm length 1.0)")
    given_theta1 = mdn_layers.condition(mixture, [0], theta_test[:, :1])
    theta2 = given_theta1.mean().numpy()[:, 0]
    print(f"theta2 from the mixture conditioned on the true theta1: median absolute error "
          f"{np.median(np.abs(theta2 - theta_test[:, 1])):.4f} rad")

    figure, axes = plt.subplots(1, 3, figsize=(17, 5))
    axes[0].scatter(theta_test[:, 0], theta_test[:, 1], s=2, c="0.6", label="true angles")
    axes[0].scatter(mode[:, 0], mode[:, 1], s=2, c="tab:blue", label="mixture mode")
    axes[0].scatter(mixture_mean[:, 0], mixture_mean[:, 1], s=2, c="crimson",
                    label="mixture mean")
    axes[0].set_xlabel("theta1")
    axes[0].set_ylabel("theta2")
    axes[0].set_title("predicted joint angles (test set)")
    axes[0].legend(loc="upper right", markerscale=4)
    bins = np.linspace(0, max(np.quantile(errors["mean"], 0.99), 0.05), 50)
    for name, error in errors.items():
        axes[1].hist(error, bins=bins, alpha=0.6, label=name)
    axes[1].set_xlabel("end-effector error (distance)")
    axes[1].set_title("reaching the target: mode vs mean")
    axes[1].legend()
    row = branch_row(mixture, x_test)
    grid1, grid2 = np.meshgrid(np.linspace(0.2, 1.3, 150), np.linspace(1.4, 4.9, 150))
    points = np.stack([grid1, grid2], -1).astype("float32")
    log_density = mixture[row].log_prob(points).numpy()  # log scale: the branches are narrow
    filled = axes[2].contourf(grid1, grid2, np.maximum(log_density, log_density.max() - 12),
                              levels=12, cmap="Blues")
    figure.colorbar(filled, ax=axes[2], label="log density")
    for name, theta, color in (("true", theta_test[row], "k"), ("mode", mode[row], "tab:blue"),
                               ("mean", mixture_mean[row], "crimson")):
        axes[2].plot(*theta, "o", color=color, label=name)
    axes[2].set_xlabel("theta1")
    axes[2].set_ylabel("theta2")
    axes[2].set_title(f"log p(theta | x={np.round(x_test[row], 2)}): both elbow branches")
    axes[2].legend()
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    print(f"wrote {output}")
    return errors


if __name__ == "__main__":
    args = ARGS
    main(args.epochs * (4 if args.long else 1), args.output, args.quiet)
