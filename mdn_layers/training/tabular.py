"""The documented recipe for tables: an MDN fitted to raw inputs and raw targets with the
regularisation that works for MDNs, in one call, from 300 to 50,000 rows. Keras 3 only; runs
on every backend.

:func:`fit_tabular` normalises the inputs inside the model, holds out part of the training
rows (by distinct row), trains one network per input-noise level with early stopping and
learning-rate halving on the held-out NLL, and keeps the most regularised network whose
held-out NLL is within one standard error of the best (the "one-standard-error rule": on small
tables the held-out NLL is noisy, so among networks it cannot tell apart, the smoother one
wins); then it chooses the number of components the same way. Batch size, epochs, patience,
width and the noise levels tried follow from the number of training rows
(:func:`training_schedule`); targets on a grid get a scale floor or dequantisation.
:func:`fit_tabular_ensemble` trains members of an ensemble the same way. Measured in
``benchmarks/bench_uci.py``.
"""

import inspect
import random
from typing import NamedTuple

import keras
import numpy as np

from mdn_layers.core import layout, target_statistics, validation
from mdn_layers.training.layer import MixtureDensity
from mdn_layers.training.losses import MixtureNLL
from mdn_layers.training.networks import input_normalization, tabular_model
from mdn_layers.training.schedule import (
    DEFAULT_NUM_COMPONENTS,
    EDGE_STEPS,
    TrainingSchedule,
    held_out_rows,
    level_beyond_the_edge,
    one_standard_error_choice,
    training_schedule,
)

GRID_HANDLING = ("floor", "dequantize", "ignore")


class TabularFit(NamedTuple):
    """What :func:`fit_tabular` returns.

    Attributes:
      model: the chosen trained ``keras.Model``: raw inputs in (normalised inside), the
        mixture's params in the targets' units out.
      input_noise: the chosen input-noise standard deviation.
      validation_nll: ``{noise level: mean held-out NLL}`` of the networks of the noise
        choice (at the largest number of components).
      epochs: the chosen network's best epoch (its weights are from that epoch).
      num_components: the chosen number of components.
      components_nll: ``{num_components: mean held-out NLL}`` at the chosen noise.
      schedule: the :class:`TrainingSchedule` used.
      grid_step: ``[D]`` the grid step of each target dim (0: not on a grid), and so what
        ``grid_targets`` acted on.
      learning_rates: the chosen network's learning rate in each epoch up to its best
        (what a refit replays).
    """
    model: object
    input_noise: float
    validation_nll: dict
    epochs: int
    num_components: int = None
    components_nll: dict = None
    schedule: TrainingSchedule = None
    grid_step: np.ndarray = None
    learning_rates: tuple = None


def _check_levels(values, name, check):
    levels = tuple(values) if np.ndim(values) else (values,)
    if not levels:
        raise ValueError(f"fit_tabular: `{name}` must hold at least one value.")
    return tuple(check(level, name) for level in levels)


def _check_noise_levels(noise_levels):
    levels = _check_levels(noise_levels, "noise_levels", validation.check_nonnegative_float)
    if max(levels) > 1:
        raise ValueError("fit_tabular: noise_levels are standard deviations of noise on "
                         f"normalised inputs, at most 1; received {list(levels)}.")
    return levels


class _PreservedGlobalRandomState:
    """Seeds Keras for reproducible training and gives the caller's Python and numpy global
    generators back untouched afterwards."""

    def __init__(self, seed):
        self.seed = seed

    def __enter__(self):
        self.state = (random.getstate(), np.random.get_state())
        keras.utils.set_random_seed(self.seed)

    def __exit__(self, *exc):
        random.setstate(self.state[0])
        np.random.set_state(self.state[1])


class _LearningRates(keras.callbacks.Callback):
    """Records the learning rate each epoch trains at (to replay it in a refit)."""

    def on_train_begin(self, logs=None):
        self.rates = []

    def on_epoch_begin(self, epoch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def _network(problem, num_components, level, learning_rate):
    """A compiled network of the recipe (its head adapted to every row's targets)."""
    head = MixtureDensity(problem.y.shape[1], num_components, problem.covariance,
                          diag_shift=problem.diag_shift,
                          scale_floor=problem.scale_floor).adapt(problem.y)
    model = tabular_model(problem.x.shape[1], head, level, problem.schedule.units,
                          problem.preprocessing)
    model.compile(keras.optimizers.Adam(learning_rate),
                  loss=MixtureNLL.for_layer(head, allow_missing=problem.allow_missing))
    return model, head


def _train_one(problem, num_components, level, seed):
    """One network of the recipe, trained on the fitting rows: ``(model, per-row held-out
    NLL [M] (weighted), best epoch, learning rate of each epoch up to the best)``."""
    x_train, y_train, w_train, x_valid, y_valid, w_valid = problem.data
    schedule = problem.schedule
    rates = _LearningRates()
    with _PreservedGlobalRandomState(seed):
        model, head = _network(problem, num_components, level, problem.learning_rate)
        history = model.fit(
            x_train, y_train, sample_weight=w_train,
            validation_data=(x_valid, y_valid, w_valid),
            epochs=schedule.max_epochs, batch_size=schedule.batch_size,
            verbose=problem.verbose, callbacks=[
                rates,
                keras.callbacks.ReduceLROnPlateau(
                    factor=0.5, patience=max(1, schedule.patience // 4), min_lr=1e-4),
                keras.callbacks.EarlyStopping(
                    patience=schedule.patience, restore_best_weights=True,
                    start_from_epoch=min(schedule.warmup_epochs, schedule.max_epochs - 1))])
    # A direct call, not predict: no per-model function to trace for the held-out rows.
    per_row = MixtureNLL.for_layer(head, reduction=None, allow_missing=problem.allow_missing)(
        y_valid, model(x_valid, training=False))
    per_row = np.asarray(keras.ops.convert_to_numpy(per_row), dtype="float64")
    per_row = per_row * w_valid / np.mean(w_valid)       # its mean is the weighted mean
    losses = history.history["val_loss"]
    start = min(schedule.warmup_epochs, len(losses) - 1)
    best_epoch = start + int(np.argmin(losses[start:])) + 1
    return model, per_row, best_epoch, tuple(rates.rates[:best_epoch])


def fit_tabular(x, y, num_components=DEFAULT_NUM_COMPONENTS, covariance="full",
                noise_levels=None, validation_fraction=0.1, units=None, max_epochs=None,
                batch_size=None, learning_rate=0.01, patience=None, grid_targets="floor",
                refit=True, sample_weight=None, preprocessing=None, seed=0, verbose=0,
                diag_shift=layout.DEFAULT_DIAG_SHIFT):
    """Fits the recipe's MDN to raw inputs and raw targets.

    Every choice comes from the rows given: the size rules of :func:`training_schedule`
    (batch size, epochs, patience, width, noise levels), then the input noise and the
    number of components by the one-standard-error rule on held-out rows.

    Args:
      x: ``[N, F]`` inputs, raw or standardised (finite): a ``Normalization`` layer inside
        the model standardises them with their mean and variance, so the model takes raw
        inputs (with ``preprocessing``: whatever that layer takes, NaN included).
      y: ``[N, D]`` (or ``[N]``) targets in their own units; NaN marks a missing target
        (trained with the missing-target loss: each row scores its observed dims), inf
        raises before anything trains. The head is ``adapt``-ed to them, so losses and
        predicted mixtures are in those units.
      num_components: an int, or several: the largest trains with every noise level, the
        others at the chosen noise, and the smallest within one standard error of the best
        is kept. Default ``(1, 5)``.
      covariance: the head's.
      noise_levels: input-noise standard deviations to try (one level: no choice is made);
        None: the schedule's, extended beyond an edge of the grid while the choice sits on
        it (:func:`mdn_layers.training.schedule.level_beyond_the_edge`, at most
        ``EDGE_STEPS`` more networks).
      validation_fraction: share of the rows held out (at random, ``seed``, whole groups of
        identical rows together) for early stopping and the choices.
      units, max_epochs, batch_size, patience: None (the schedule's) or positive ints.
        Adam at ``learning_rate``, halved after ``patience // 4`` epochs without a better
        held-out NLL (down to 1e-4); training stops after ``patience`` such epochs (not
        before ``patience`` epochs have passed) and keeps the best epoch's weights.
      grid_targets: what to do with target dims whose values sit on a grid (integer scores,
        counts; :func:`mdn_layers.core.target_statistics.grid_steps`), where a
        mixture's likelihood has no bound: ``"floor"`` (default: every standard
        deviation of such a dim at least the grid step, so no density at a grid
        value exceeds ``1 / step``),
        ``"dequantize"`` (train on ``y + U(-step/2, step/2)`` noise; the model is then a
        density of the dequantised target), or ``"ignore"``.
      refit: if True (default), the returned model is trained again on all the rows, with
        the chosen network's learning rate epoch by epoch up to its best epoch (the held-out
        rows only chose; no row is left out of the final fit).
      sample_weight: ``[N]`` non-negative row weights (training and the held-out means), or
        None.
      preprocessing: a Keras layer from the raw inputs ``[N, F]`` to features, first in the
        model, in place of the ``Normalization`` (it must handle what ``x`` holds, NaN
        included); None for the default.
      seed: seeds the split and every network's initialisation; the caller's global Python
        and numpy generators are left as they were.
      verbose: ``fit``'s verbosity.
      diag_shift: the head's floor on every standard deviation, in standardised units
        (``diag_shift * target_scale`` in the targets' units: it scales with the targets).

    Returns:
      a :class:`TabularFit`.

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(loc=500, scale=80, size=(200, 3))           # raw inputs
    >>> y = 100 + 0.1 * x[:, :1] + rng.normal(size=(200, 1))
    >>> fit = fit_tabular(x, y, num_components=2, noise_levels=[0.1], max_epochs=3)
    >>> fit.input_noise, fit.num_components
    (0.1, 2)
    """
    problem = _prepare(x, y, num_components, covariance, noise_levels, validation_fraction,
                       units, max_epochs, batch_size, learning_rate, patience, grid_targets,
                       refit, sample_weight, preprocessing, seed, verbose, diag_shift)
    schedule = problem.schedule

    def train(k, level):
        return _train_one(problem, k, level, seed)

    largest = problem.components[-1]
    runs = {level: train(largest, level) for level in schedule.noise_levels}
    chosen_noise = one_standard_error_choice({level: run[1] for level, run in runs.items()})
    for _ in range(EDGE_STEPS if noise_levels is None else 0):
        beyond = level_beyond_the_edge(
            {level: float(np.mean(run[1])) for level, run in runs.items()}, chosen_noise)
        if beyond is None:
            break
        runs[beyond] = train(largest, beyond)
        chosen_noise = one_standard_error_choice({level: run[1] for level, run in runs.items()})
    by_components = {largest: runs[chosen_noise]}
    for k in problem.components[:-1]:
        by_components[k] = train(k, chosen_noise)
    chosen_k = one_standard_error_choice({k: run[1] for k, run in by_components.items()},
                                         simplest=min)
    model, _, best_epoch, rates = by_components[chosen_k]
    if refit:
        model = _refit(problem, chosen_k, chosen_noise, rates, seed)
    return TabularFit(model, chosen_noise,
                      {level: float(np.mean(run[1])) for level, run in runs.items()},
                      best_epoch, chosen_k,
                      {k: float(np.mean(run[1])) for k, run in by_components.items()},
                      schedule, problem.grid_step, rates)


class _Problem(NamedTuple):
    """A checked call of :func:`fit_tabular`: the arrays, the split and every setting."""
    x: np.ndarray          # [N, F] float32, every row
    y: np.ndarray          # [N, D] float32, every row (dequantised when asked; NaN missing)
    weight: np.ndarray     # [N] float32 row weights (ones when none were given)
    data: tuple            # (x, y, weight) of the fitting rows, then of the held-out rows
    components: tuple
    covariance: str
    schedule: TrainingSchedule
    preprocessing: object  # the first layer: the inputs' Normalization, or the caller's
    learning_rate: float
    scale_floor: object
    allow_missing: bool
    grid_step: np.ndarray
    verbose: int
    diag_shift: float


def _prepare(x, y, num_components, covariance, noise_levels, validation_fraction, units,
             max_epochs, batch_size, learning_rate, patience, grid_targets, refit,
             sample_weight, preprocessing, seed, verbose, diag_shift):
    components = tuple(sorted(set(_check_levels(num_components, "num_components",
                                                 validation.check_positive_int))))
    levels = None if noise_levels is None else _check_noise_levels(noise_levels)
    fraction = validation.check_probability(validation_fraction, "validation_fraction")
    for value, name in ((units, "units"), (max_epochs, "max_epochs"),
                        (batch_size, "batch_size"), (patience, "patience")):
        if value is not None:
            validation.check_positive_int(value, name)
    learning_rate = validation.check_nonnegative_float(learning_rate, "learning_rate")
    if learning_rate == 0:
        raise ValueError("`learning_rate` must be > 0; received 0.")
    if grid_targets not in GRID_HANDLING:
        raise ValueError(f"fit_tabular: `grid_targets` must be one of {list(GRID_HANDLING)}; "
                         f"received {grid_targets!r}.")
    validation.check_bool(refit, "refit")
    diag_shift = validation.check_nonnegative_float(diag_shift, "diag_shift")
    x, y = validation.check_table(x, y, "fit_tabular", missing_inputs=preprocessing is not None,
                                  missing_targets=True)
    weight = validation.check_sample_weight(sample_weight, len(x))
    validation.warn_on_float32_rounding(y, "fit_tabular")
    valid, train = held_out_rows(x, y, fraction, seed)
    schedule = training_schedule(len(train))._replace(**{
        name: value for name, value in (
            ("units", units), ("max_epochs", max_epochs), ("batch_size", batch_size),
            ("noise_levels", levels))
        if value is not None})
    if patience is not None:
        schedule = schedule._replace(patience=patience, warmup_epochs=patience)
    grid_step = target_statistics.grid_steps(y[train])
    if grid_targets == "dequantize" and grid_step.any():
        y = y + np.random.default_rng(seed).uniform(-0.5, 0.5, size=y.shape) * grid_step
    x32, y32, w32 = x.astype("float32"), y.astype("float32"), weight.astype("float32")
    data = (x32[train], y32[train], w32[train], x32[valid], y32[valid], w32[valid])
    return _Problem(x32, y32, w32, data, components, covariance, schedule,
                    input_normalization(x) if preprocessing is None else preprocessing,
                    learning_rate, "grid" if grid_targets == "floor" else None,
                    bool(np.isnan(y).any()), grid_step, verbose, diag_shift)


def _refit(problem, num_components, level, rates, seed):
    """A network trained on every row of ``problem`` with a chosen run's learning rates,
    epoch by epoch (no rows held out, no early stopping)."""
    with _PreservedGlobalRandomState(seed):
        model, _ = _network(problem, num_components, level, rates[0])
        model.fit(problem.x, problem.y, sample_weight=problem.weight, epochs=len(rates),
                  batch_size=problem.schedule.batch_size, verbose=problem.verbose,
                  callbacks=[keras.callbacks.LearningRateScheduler(
                      lambda epoch, _: rates[min(epoch, len(rates) - 1)])])
    return model


def fit_tabular_ensemble(x, y, members=5, seed=0, first=None, **kwargs):
    """Fits ``members`` networks with the recipe, for one ensemble mixture.

    Member 0 is ``fit_tabular(x, y, seed=seed, **kwargs)``: it chooses the input noise, the
    number of components and the training length. With ``refit=True`` (the default) member
    ``m`` trains once on every row with those choices and its own seed ``seed + m`` (its
    initialisation, and its dequantisation noise if asked); with ``refit=False`` it is
    ``fit_tabular`` at member 0's choices with ``seed + m`` (its own held-out rows and early
    stopping). Combine them with ``predict_mixture([fit.model for fit in fits], x)``: one
    mixture of the members' components, each member weighted ``1 / members``.

    Args:
      x, y: as in :func:`fit_tabular`.
      members: number of networks, a positive int.
      seed: member 0's seed.
      first: member 0 if it is already fitted (the :class:`TabularFit` of
        ``fit_tabular(x, y, seed=seed, **kwargs)``), or None to fit it here.
      **kwargs: the other arguments of :func:`fit_tabular`.

    Returns:
      a list of ``members`` :class:`TabularFit`, member 0 first (the others repeat its
      choices; with ``refit=True`` they held out no rows, so their ``validation_nll`` and
      ``components_nll`` are empty).

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 3)).astype("float32")
    >>> y = (100 + 10 * x[:, :1] + rng.normal(size=(200, 1))).astype("float32")
    >>> fits = fit_tabular_ensemble(x, y, members=2, num_components=2,
    ...                             noise_levels=[0.05, 0.2], max_epochs=3)
    >>> len(fits), fits[1].input_noise == fits[0].input_noise   # member 1 reuses the noise
    (2, True)
    >>> len(fits[0].validation_nll), len(fits[1].validation_nll)  # held-out scores
    (2, 0)
    """
    members = validation.check_positive_int(members, "members")
    if first is None:
        first = fit_tabular(x, y, seed=seed, **kwargs)  # checks every argument first
    elif not isinstance(first, TabularFit):
        raise TypeError("fit_tabular_ensemble: `first` must be a TabularFit (what fit_tabular "
                        f"returns) or None; received {type(first).__name__}.")
    kwargs.update(noise_levels=(first.input_noise,), num_components=first.num_components)
    if not kwargs.get("refit", True):
        return [first] + [fit_tabular(x, y, seed=seed + member, **kwargs)
                          for member in range(1, members)]
    fits = [first]
    for member in range(1, members):
        problem = _prepare(x, y, seed=seed + member, **{**_PREPARE_DEFAULTS, **kwargs})
        model = _refit(problem, first.num_components, first.input_noise,
                       first.learning_rates, seed + member)
        fits.append(first._replace(model=model, validation_nll={}, components_nll={}))
    return fits


_PREPARE_DEFAULTS = {name: parameter.default for name, parameter in
                     inspect.signature(fit_tabular).parameters.items()
                     if name not in ("x", "y", "seed")}
