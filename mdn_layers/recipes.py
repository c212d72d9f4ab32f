"""The documented recipe for tables: an MDN fitted to raw targets with the regularisation that
works for MDNs, in one call. Keras 3 only; runs on every backend.

:func:`fit_tabular` holds out part of the training rows, trains one network per input-noise
level with early stopping and learning-rate halving on the held-out NLL, and keeps the most
regularised network whose held-out NLL is within one standard error of the best (the
"one-standard-error rule": on small tables the held-out NLL is noisy, so among networks it
cannot tell apart, the smoother one wins). :func:`fit_tabular_ensemble` trains members of an
ensemble the same way. Measured in ``benchmarks/bench_uci.py``.
"""

from typing import NamedTuple

import keras
import numpy as np

from mdn_layers import _validation
from mdn_layers.layers import MixtureDensity
from mdn_layers.losses import MixtureNLL

DEFAULT_NOISE_LEVELS = (0.05, 0.1, 0.2)


class TabularFit(NamedTuple):
    """What :func:`fit_tabular` returns.

    Attributes:
      model: the chosen trained ``keras.Model`` (its head adapted to the targets' units).
      input_noise: the chosen input-noise standard deviation.
      validation_nll: ``{noise level: mean held-out NLL}`` of every network trained.
      epochs: the chosen network's best epoch (its weights are from that epoch).
    """
    model: object
    input_noise: float
    validation_nll: dict
    epochs: int


def tabular_model(num_features, head, input_noise, units=50):
    """``Input -> GaussianNoise(input_noise) -> Dense(units, relu) -> head``.

    The noise acts in training only, on inputs the caller standardised.
    """
    layers = [keras.Input((num_features,))]
    if input_noise:
        layers.append(keras.layers.GaussianNoise(input_noise))
    return keras.Sequential(layers + [keras.layers.Dense(units, activation="relu"), head])


def _check_noise_levels(noise_levels):
    levels = tuple(noise_levels) if np.ndim(noise_levels) else (noise_levels,)
    if not levels:
        raise ValueError("fit_tabular: noise_levels must hold at least one level.")
    levels = tuple(_validation.check_nonnegative_float(level, "noise_levels") for level in levels)
    if max(levels) > 1:
        raise ValueError("fit_tabular: noise_levels are standard deviations of noise on "
                         f"standardised inputs, at most 1; received {list(levels)}.")
    return levels


def fit_tabular(x, y, num_components=5, covariance="full", noise_levels=DEFAULT_NOISE_LEVELS,
                validation_fraction=0.1, units=50, max_epochs=600, batch_size=32,
                learning_rate=0.01, patience=40, seed=0, verbose=0):
    """Fits the recipe's MDN to raw targets.

    Args:
      x: ``[N, F]`` standardised inputs (float, finite).
      y: ``[N, D]`` (or ``[N]``) targets in their own units, finite (NaN or inf in ``x`` or
        ``y`` raises before anything trains); the head is ``adapt``-ed to the training part,
        so losses and predicted mixtures are in those units.
      num_components, covariance: the head's.
      noise_levels: input-noise standard deviations to try (one level: no choice is made).
      validation_fraction: share of the rows held out (at random, ``seed``) for early stopping
        and the choice of noise; the networks train on the rest.
      units: width of the hidden ReLU layer.
      max_epochs, batch_size, learning_rate, patience: Adam at ``learning_rate``, halved after
        ``patience // 4`` epochs without a better held-out NLL (down to 1e-4); training stops
        after ``patience`` such epochs and keeps the best epoch's weights.
      seed: seeds the split and every network's initialisation (``keras.utils.set_random_seed``).
      verbose: ``fit``'s verbosity.

    Returns:
      a :class:`TabularFit`.

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 3)).astype("float32")
    >>> y = (100 + 10 * x[:, :1] + rng.normal(size=(200, 1))).astype("float32")
    >>> fit = fit_tabular(x, y, num_components=2, noise_levels=[0.1], max_epochs=3)
    >>> fit.input_noise
    0.1
    """
    levels = _check_noise_levels(noise_levels)
    fraction = _validation.check_probability(validation_fraction, "validation_fraction")
    for value, name in ((units, "units"), (max_epochs, "max_epochs"),
                        (batch_size, "batch_size"), (patience, "patience")):
        _validation.check_positive_int(value, name)
    if _validation.check_nonnegative_float(learning_rate, "learning_rate") == 0:
        raise ValueError("`learning_rate` must be > 0; received 0.")
    x = np.asarray(x, dtype="float32")
    y = np.asarray(y, dtype="float32")
    y = y[:, None] if y.ndim == 1 else y
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"fit_tabular expects x [N, F] and y [N, D] with the same N; received "
                         f"x {list(x.shape)} and y {list(y.shape)}.")
    for name, array in (("x", x), ("y", y)):
        non_finite = ~np.isfinite(array)
        if non_finite.any():
            raise ValueError(
                f"fit_tabular: `{name}` has {int(non_finite.sum())} NaN or infinite entries (in "
                f"{int(non_finite.any(axis=1).sum())} rows); drop or impute "
                "them first" + (" (for missing targets train by hand with "
                                "MixtureNLL(..., allow_missing=True))." if name == "y" else "."))
    order = np.random.default_rng(seed).permutation(len(x))
    held_out = int(round(fraction * len(x)))
    if held_out < 2 or held_out > len(x) - 2:
        raise ValueError(f"fit_tabular: validation_fraction={fraction} of {len(x)} rows leaves "
                         "too few rows to train on or to validate with.")
    valid, train = order[:held_out], order[held_out:]
    runs = {}
    for level in levels:
        keras.utils.set_random_seed(seed)
        head = MixtureDensity(y.shape[1], num_components, covariance).adapt(y[train])
        model = tabular_model(x.shape[1], head, level, units)
        model.compile(keras.optimizers.Adam(learning_rate), loss=MixtureNLL.for_layer(head))
        history = model.fit(
            x[train], y[train], validation_data=(x[valid], y[valid]), epochs=max_epochs,
            batch_size=batch_size, verbose=verbose, callbacks=[
                keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=max(1, patience // 4),
                                                  min_lr=1e-4),
                keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)])
        # A direct call, not predict: no per-model function to trace for a few rows.
        per_row = MixtureNLL.for_layer(head, reduction=None)(
            y[valid], model(x[valid], training=False))
        per_row = np.asarray(keras.ops.convert_to_numpy(per_row), dtype="float64")
        best_epoch = int(np.argmin(history.history["val_loss"])) + 1
        runs[level] = (model, per_row, best_epoch)
    chosen = one_standard_error_choice({level: run[1] for level, run in runs.items()})
    model, _, best_epoch = runs[chosen]
    means = {level: float(np.mean(run[1])) for level, run in runs.items()}
    return TabularFit(model, chosen, means, best_epoch)


def fit_tabular_ensemble(x, y, members=5, seed=0, **kwargs):
    """Fits ``members`` networks with the recipe, for one ensemble mixture.

    Member 0 is ``fit_tabular(x, y, seed=seed, **kwargs)`` (it chooses the input noise);
    member ``m`` is ``fit_tabular`` with ``seed + m`` (its own initialisation and held-out
    rows) at member 0's noise, so it trains one network, not one per level. Combine them with
    ``predict_mixture([fit.model for fit in fits], x)``: one mixture of ``members * K``
    components, each member weighted ``1 / members``.

    Args:
      x, y: as in :func:`fit_tabular`.
      members: number of networks, a positive int.
      seed: member 0's seed.
      **kwargs: the other arguments of :func:`fit_tabular`.

    Returns:
      a list of ``members`` :class:`TabularFit`, member 0 first.

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 3)).astype("float32")
    >>> y = (100 + 10 * x[:, :1] + rng.normal(size=(200, 1))).astype("float32")
    >>> fits = fit_tabular_ensemble(x, y, members=2, num_components=2, max_epochs=3)
    >>> len(fits), fits[1].input_noise == fits[0].input_noise   # member 1 reuses the noise
    (2, True)
    >>> len(fits[0].validation_nll), len(fits[1].validation_nll)  # networks trained
    (3, 1)
    """
    members = _validation.check_positive_int(members, "members")
    first = fit_tabular(x, y, seed=seed, **kwargs)  # checks every argument before training
    kwargs["noise_levels"] = (first.input_noise,)
    return [first] + [fit_tabular(x, y, seed=seed + member, **kwargs)
                      for member in range(1, members)]


def one_standard_error_choice(held_out_nll):
    """The largest noise level whose mean held-out NLL is within one standard error (of the
    best level's mean) of the best: ``{level: [M] per-row NLL}`` -> level."""
    means = {level: float(np.mean(rows)) for level, rows in held_out_nll.items()}
    best = min(means, key=means.get)
    rows = np.asarray(held_out_nll[best], dtype="float64")
    standard_error = float(np.std(rows) / np.sqrt(rows.size))
    return max(level for level in means if means[level] <= means[best] + standard_error)
