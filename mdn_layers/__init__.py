"""Keras output layers for mixture density networks, on TensorFlow Probability.

Two paths over one maths:

* the training path — :class:`MixtureDensity`, :class:`MixtureNLL`, :mod:`mdn_layers.metrics`
  — is ``keras.ops`` only and runs inside ``model.fit`` on every Keras 3 backend;
* the analysis path — :func:`mixture_from_params`, :func:`predict_mixture`, :func:`condition`,
  :func:`marginalize`, :func:`sample`, summaries and scores — returns TensorFlow Probability
  distributions. TensorFlow and TFP load on first use of one of these names, so with the JAX
  or PyTorch backend ``import mdn_layers`` and training import neither.

The tf_keras front-end (``tfp.layers.DistributionLambda`` style) lives in
:mod:`mdn_layers.tfp_layers`, matplotlib views in :mod:`mdn_layers.plotting`.
"""

import importlib

import keras

from mdn_layers._version import __version__  # noqa: F401 - the one version string
from mdn_layers.core.layout import params_size
from mdn_layers.training import metrics, targets
from mdn_layers.training.head import GridTargetWarning
from mdn_layers.training.layer import MixtureDensity
from mdn_layers.training.losses import MixtureNLL, mixture_nll
from mdn_layers.training.schedule import training_schedule
from mdn_layers.training.tabular import TabularFit, fit_tabular, fit_tabular_ensemble

if keras.backend.backend() == "tensorflow":  # TensorFlow is loaded already: graphs assert
    from mdn_layers.analysis import tf_ops as _tf_ops
    targets.tensorflow_check_finite = _tf_ops.check_finite

# Public names of the analysis path (TensorFlow + TFP), loaded on first use.
_LAZY_ATTRIBUTES = {
    "MixtureDensityRegressor": "mdn_layers.estimator",
    "condition": "mdn_layers.analysis.conditioning",
    "marginalize": "mdn_layers.analysis.conditioning",
    "rescale": "mdn_layers.analysis.conditioning",
    "ensemble": "mdn_layers.analysis.ensembles",
    "mixture_from_params": "mdn_layers.analysis.mixtures",
    "predict_mixture": "mdn_layers.prediction",
    "sample": "mdn_layers.analysis.sampling",
    "central_interval": "mdn_layers.analysis.summaries",
    "mode": "mdn_layers.analysis.summaries",
    "most_probable_component": "mdn_layers.analysis.summaries",
    "quantile": "mdn_layers.analysis.summaries",
    "responsibilities": "mdn_layers.analysis.summaries",
}
_LAZY_MODULES = ("datasets", "plotting", "scores", "summaries", "tfp_layers")


def __getattr__(name):
    if name in _LAZY_ATTRIBUTES:
        return getattr(importlib.import_module(_LAZY_ATTRIBUTES[name]), name)
    if name in _LAZY_MODULES:
        return importlib.import_module(f"mdn_layers.{name}")
    raise AttributeError(f"module 'mdn_layers' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_ATTRIBUTES) | set(_LAZY_MODULES))


# What ``from mdn_layers import *`` gives: the names loaded with the package. The analysis
# names above load TensorFlow on first use, so a star import leaves them out (use
# ``mdn_layers.condition`` and so on, or import them by name).
__all__ = [
    "GridTargetWarning",
    "MixtureDensity",
    "MixtureNLL",
    "TabularFit",
    "fit_tabular",
    "fit_tabular_ensemble",
    "metrics",
    "mixture_nll",
    "params_size",
    "training_schedule",
]
