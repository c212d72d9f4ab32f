"""Keras 3 metrics over params: proper scores to watch in ``model.compile(metrics=...)``.

Training path: each metric runs inside ``fit`` / ``evaluate`` on every Keras backend (compiled
too), through the shared maths in :mod:`mdn_layers.gaussian`. Each takes the same config as
:class:`mdn_layers.MixtureNLL` (``allow_missing`` included) and averages a per-sample score over
the batches it sees; ``sample_weight`` acts per sample and Keras masks leave steps out.

Example:

>>> from mdn_layers import MixtureNLL
>>> from mdn_layers.training.metrics import CRPS, EnergyScore, IntervalCoverage
>>> metrics = [CRPS(2, 4), EnergyScore(2, 4), IntervalCoverage(2, 4, level=0.9)]
>>> [m.name for m in metrics]
['crps', 'energy_score', 'coverage']
"""

import keras
from keras import ops

from mdn_layers.core import layout, marginals, triangular, validation
from mdn_layers.core.draws import draw
from mdn_layers.training import keras_ops
from mdn_layers.training.head import PACKAGE
from mdn_layers.training.targets import TargetsMixin, keras_mask

_QUANTILE_ITERATIONS = 60


class _MixtureMetric(TargetsMixin, keras.metrics.Mean):
    """Mean over samples of ``score(parts, y_true, observed)``; subclasses define ``score``.

    ``score`` gets the split params ``(log_weights, loc, scale)``, targets ``[..., D]`` (NaN
    replaced by 0) and ``observed`` ``[..., D]`` (1.0 where a target is present) and returns
    per-sample scores ``[...]``. With ``allow_missing`` a sample whose dims are all missing
    carries no weight.
    """

    def __init__(self, event_size, num_components, covariance="full",
                 diag_shift=layout.DEFAULT_DIAG_SHIFT, allow_missing=False, name=None,
                 dtype=None):
        super().__init__(name=name or self.default_name, dtype=dtype)
        self._init_mixture_config(event_size, num_components, covariance, diag_shift)
        self.allow_missing = validation.check_bool(allow_missing, "allow_missing")

    def update_state(self, y_true, y_pred, sample_weight=None):
        mask = keras_mask(y_pred)
        y_pred = ops.convert_to_tensor(y_pred)
        if keras.backend.standardize_dtype(y_pred.dtype) != "float64":
            y_pred = ops.cast(y_pred, "float32")
        y_true = self._check_finite_targets(self._targets_like(y_true, y_pred, mask))
        observed = ops.cast(ops.logical_not(ops.isnan(y_true)), y_pred.dtype)
        filled = ops.where(ops.isnan(y_true), ops.zeros_like(y_true), y_true)
        values = self.score(self.split(keras_ops, y_pred), y_true, filled, observed)
        weight = ops.ones_like(values)
        if mask is not None:
            weight = weight * ops.cast(mask, values.dtype)
        if self.allow_missing:
            weight = weight * ops.cast(ops.max(observed, axis=-1) > 0, values.dtype)
        if sample_weight is not None:
            sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), values.dtype)
            if len(sample_weight.shape) > len(weight.shape):
                sample_weight = ops.squeeze(sample_weight, -1)
            weight = weight * sample_weight
        return super().update_state(values, sample_weight=weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "allow_missing": self.allow_missing,
                **self.mixture_config()}

    def _marginals(self, parts):
        log_weights, loc, scale = parts
        return log_weights, loc, marginals.marginal_stddev(keras_ops, scale,
                                                          self.covariance != "full")


def _mean_over_observed(values, observed):
    """``[...]`` mean of ``values`` ``[..., D]`` over observed dims (0 where none is)."""
    count = ops.sum(observed, axis=-1)
    return ops.sum(values * observed, axis=-1) / ops.maximum(count, 1.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class NegativeLogLikelihood(_MixtureMetric):
    """Mean NLL in nats (same value as :class:`mdn_layers.MixtureNLL`, as a metric)."""
    default_name = "nll"

    def score(self, parts, y_true, filled, observed):
        return -self._log_prob(y_true, parts)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CRPS(_MixtureMetric):
    """Mean closed-form CRPS over samples and (observed) target dims, in target units."""
    default_name = "crps"

    def score(self, parts, y_true, filled, observed):
        crps = marginals.marginal_crps(keras_ops, *self._marginals(parts), filled)
        return _mean_over_observed(crps, observed)


@keras.saving.register_keras_serializable(package=PACKAGE)
class EnergyScore(_MixtureMetric):
    """Mean Monte Carlo energy score ``E||X - y|| - 1/2 E||X - X'||`` (seeded draws).

    ``num_samples`` pairs of draws per sample; with the same ``seed`` every batch uses the
    same random numbers, so the metric is reproducible. With ``allow_missing`` the norms
    run over the observed dims (the draws' marginal on those dims).
    """
    default_name = "energy_score"

    def __init__(self, event_size, num_components, covariance="full", num_samples=100,
                 seed=0, **kwargs):
        super().__init__(event_size, num_components, covariance, **kwargs)
        self.num_samples = validation.check_positive_int(num_samples, "num_samples")
        self.seed = validation.check_nonnegative_int(seed, "seed")

    def score(self, parts, y_true, filled, observed):
        log_weights, loc, scale = parts
        scale = triangular.dense(keras_ops, scale)
        batch_shape = ops.shape(log_weights)[:-1]
        component_axes = tuple(scale.shape[len(batch_shape):])  # (K, D) or (K, D, D)
        flat = (ops.reshape(log_weights, (-1, self.num_components)),
                ops.reshape(loc, (-1, self.num_components, self.event_size)),
                ops.reshape(scale, (-1,) + component_axes))
        num_draws = 2 * self.num_samples
        rows = ops.shape(flat[0])[0]
        uniform = keras.random.uniform((rows, num_draws, self.num_components), minval=1e-30,
                                       maxval=1.0, dtype=loc.dtype, seed=self.seed)
        noise = keras.random.normal((rows, num_draws, self.event_size), dtype=loc.dtype,
                                    seed=self.seed + 1)
        draws = draw(keras_ops, *flat, self.covariance != "full", uniform, noise,
                              1.0, 1.0)  # [rows, 2S, D]
        draws = ops.moveaxis(draws, 1, 0)  # [2S, rows, D]
        score = marginals.energy_score(
            keras_ops, draws[:self.num_samples], draws[self.num_samples:],
            ops.reshape(filled, (-1, self.event_size)),
            ops.reshape(observed, (-1, self.event_size)))
        return ops.reshape(score, batch_shape)

    def get_config(self):
        return {**super().get_config(), "num_samples": self.num_samples, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class IntervalCoverage(_MixtureMetric):
    """Fraction of (observed) target values inside the central ``level`` interval of their
    marginal; near ``level`` for a calibrated model."""
    default_name = "coverage"

    def __init__(self, event_size, num_components, covariance="full", level=0.9, **kwargs):
        super().__init__(event_size, num_components, covariance, **kwargs)
        self.level = validation.check_probability(level, "level")

    def score(self, parts, y_true, filled, observed):
        bounds = marginals.marginal_quantiles(
            keras_ops, *self._marginals(parts), [(1 - self.level) / 2, (1 + self.level) / 2],
            _QUANTILE_ITERATIONS)
        inside = ops.cast(ops.logical_and(filled >= bounds[0], filled <= bounds[1]),
                          filled.dtype)
        return _mean_over_observed(inside, observed)

    def get_config(self):
        return {**super().get_config(), "level": self.level}
