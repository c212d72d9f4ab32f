"""Sequence generation: an LSTM with a MixtureDensity head on 2-D pen strokes, with temperature.

Data: pen strokes from a small synthetic process — each stroke is a loop ``(dx, dy)`` of
offsets whose heading turns by a per-stroke rate, with noise; strokes have different lengths
and are zero-padded to a common length, so a ``Masking`` layer marks the padding and
``MixtureNLL`` leaves those steps out (NaN padding would be fine too). The model reads the
offsets so far and predicts a full-covariance mixture for the next offset at every step (no
``TimeDistributed`` needed). Then we generate strokes one step at a time with
``mdn_layers.sample`` at two temperatures and plot real against generated strokes.

Run: ``python examples/sequence_generation.py [--epochs N] [--long] [--quiet] [--output PATH]``
(about a minute on 2 CPU cores).
"""

if __name__ == "__main__":  # options first: --help answers before TensorFlow loads
    from _cli import parse_args
    ARGS = parse_args(__doc__, epochs=30, output="sequence_generation.png")

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import mdn_layers  # noqa: E402

EVENT_SIZE, NUM_COMPONENTS, MAX_STEPS = 2, 3, 40


def make_strokes(num_strokes, seed):
    """Offsets ``[N, T, 2]`` (zero after each stroke's end) and lengths ``[N]``."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(MAX_STEPS // 2, MAX_STEPS + 1, num_strokes)
    turn = rng.choice([-1.0, 1.0], num_strokes) * rng.uniform(0.15, 0.3, num_strokes)
    heading = rng.uniform(0, 2 * np.pi, num_strokes)[:, None] + turn[:, None] * np.arange(
        MAX_STEPS)[None, :]
    speed = rng.uniform(0.8, 1.2, num_strokes)[:, None]
    offsets = speed[..., None] * np.stack([np.cos(heading), np.sin(heading)], -1)
    offsets += rng.normal(0, 0.05, offsets.shape)
    offsets[np.arange(MAX_STEPS)[None, :] >= lengths[:, None]] = 0.0
    return offsets.astype("float32"), lengths


def build_model():
    inputs = keras.Input((None, EVENT_SIZE))
    features = keras.layers.Masking(0.0)(inputs)
    features = keras.layers.LSTM(64, return_sequences=True)(features)
    head = mdn_layers.MixtureDensity(EVENT_SIZE, NUM_COMPONENTS)
    return keras.Model(inputs, head(features)), head


def generate(model, head, start, num_steps, temperature, seed):
    """Draws ``[B, num_steps, 2]`` offsets one step at a time from ``start`` ``[B, 1, 2]``."""
    sequence = start
    for step in range(num_steps - 1):
        params = model.predict(sequence, verbose=0)[:, -1]  # the next step's mixture params
        mixture = mdn_layers.mixture_from_params(params, EVENT_SIZE, NUM_COMPONENTS)
        draw = mdn_layers.sample(mixture, temperature=temperature,
                                 sigma_temperature=temperature, seed=seed + step).numpy()
        sequence = np.concatenate([sequence, draw[:, None, :]], axis=1)
    return sequence


def main(epochs=30, output="sequence_generation.png", quiet=False):
    keras.utils.set_random_seed(0)
    strokes, lengths = make_strokes(2000, seed=0)
    test_strokes, test_lengths = make_strokes(400, seed=1)
    # Predict step t+1 from steps <= t; the target of a padded step is padding too.
    x, y = strokes[:, :-1], strokes[:, 1:]
    model, head = build_model()
    steps = epochs * int(np.ceil(len(x) / 64))
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(5e-3, steps)),
                  loss=mdn_layers.MixtureNLL.for_layer(head))
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0 if quiet else "auto")
    test_loss = model.evaluate(test_strokes[:, :-1], test_strokes[:, 1:], verbose=0)
    print(f"held-out NLL per real step {test_loss:.3f} nats (padded steps are masked out; "
          f"the noise alone gives about {2 * (0.5 * np.log(2 * np.pi * 0.05**2) + 0.5):.2f})")

    starts = test_strokes[:6, :1]
    figure, axes = plt.subplots(1, 3, figsize=(16, 5.4), sharex=True, sharey=True)
    colours = plt.get_cmap("tab10").colors
    for index in range(6):
        path = np.cumsum(test_strokes[index, :test_lengths[index]], axis=0)
        axes[0].plot(path[:, 0], path[:, 1], lw=1.5, color=colours[index],
                     label=f"stroke {index}")
    axes[0].set_title("real strokes (held out)")
    for ax, temperature in zip(axes[1:], (1.0, 0.3)):
        generated = generate(model, head, starts, MAX_STEPS // 2 + 5, temperature, seed=7)
        for index, path in enumerate(np.cumsum(generated, axis=1)):
            ax.plot(path[:, 0], path[:, 1], lw=1.5, color=colours[index],
                    label=f"from stroke {index}'s first step")
        ax.set_title(f"generated, temperature {temperature}")
    for ax in axes:  # one scale for all three panels (shared axes)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("pen x (cumulative offset)")
        ax.plot([], [], " ", label="same colour = same first step")
    axes[0].set_ylabel("pen y (cumulative offset)")
    axes[0].legend(loc="best", fontsize=7)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    print(f"wrote {output}")
    return test_loss


if __name__ == "__main__":
    args = ARGS
    main(args.epochs * (4 if args.long else 1), args.output, args.quiet)
