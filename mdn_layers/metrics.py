"""Keras 3 metrics over params: proper scores to watch in ``model.compile(metrics=...)``.

Each metric takes the same mixture config as :class:`mdn_layers.MixtureNLL` and averages a
per-sample score over the batches it sees (``sample_weight`` acts per sample).

Example:

>>> model.compile("adam", loss=MixtureNLL(2, 4),
...               metrics=[CRPS(2, 4), EnergyScore(2, 4), IntervalCoverage(2, 4, level=0.9)])
"""

import keras
import tensorflow as tf

from mdn_layers import layout, scores, summaries
from mdn_layers.layers import _PACKAGE


class _MixtureMetric(layout.MixtureConfig, keras.metrics.Mean):
    """Mean over samples of ``score(mixture, y_true)``; subclasses define ``score``."""

    def __init__(self, event_size, num_components, covariance="full",
                 diag_shift=layout.DEFAULT_DIAG_SHIFT, name=None, dtype=None):
        super().__init__(name=name or self.default_name, dtype=dtype)
        self._init_mixture_config(event_size, num_components, covariance, diag_shift)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = tf.cast(y_pred, tf.float64 if y_pred.dtype == tf.float64 else tf.float32)
        y_true = self._targets_like(y_true, y_pred)
        return super().update_state(self.score(self.mixture(y_pred), y_true),
                                    sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, **self._mixture_config()}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NegativeLogLikelihood(_MixtureMetric):
    """Mean NLL in nats (same value as :class:`MixtureNLL`, as a metric)."""
    default_name = "nll"

    def score(self, mixture, y_true):
        return scores.nll(mixture, y_true)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CRPS(_MixtureMetric):
    """Mean closed-form CRPS over samples and target dims (in target units)."""
    default_name = "crps"

    def score(self, mixture, y_true):
        return tf.reduce_mean(scores.crps(mixture, y_true), axis=-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EnergyScore(_MixtureMetric):
    """Mean Monte Carlo energy score (``num_samples`` seeded draws per sample)."""
    default_name = "energy_score"

    def __init__(self, event_size, num_components, covariance="full", num_samples=100,
                 seed=0, **kwargs):
        super().__init__(event_size, num_components, covariance, **kwargs)
        self.num_samples, self.seed = num_samples, seed

    def score(self, mixture, y_true):
        return scores.energy_score(mixture, y_true, num_samples=self.num_samples,
                                   seed=self.seed)

    def get_config(self):
        return {**super().get_config(), "num_samples": self.num_samples, "seed": self.seed}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class IntervalCoverage(_MixtureMetric):
    """Fraction of target values inside the central ``level`` interval of their marginal."""
    default_name = "coverage"

    def __init__(self, event_size, num_components, covariance="full", level=0.9, **kwargs):
        super().__init__(event_size, num_components, covariance, **kwargs)
        if not 0 < level < 1:
            raise ValueError(f"`level` must be in (0, 1); received {level!r}.")
        self.level = float(level)

    def score(self, mixture, y_true):
        lower, upper = summaries.central_interval(mixture, self.level)
        inside = tf.logical_and(y_true >= lower, y_true <= upper)
        return tf.reduce_mean(tf.cast(inside, lower.dtype), axis=-1)

    def get_config(self):
        return {**super().get_config(), "level": self.level}
