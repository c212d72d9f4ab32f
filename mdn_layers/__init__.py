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

from mdn_layers import metrics
from mdn_layers.layers import MixtureDensity
from mdn_layers.layout import params_size
from mdn_layers.losses import MixtureNLL
from mdn_layers.recipes import TabularFit, fit_tabular, fit_tabular_ensemble

from mdn_layers._version import __version__  # noqa: E402,F401 - the one version string

# Public names of the analysis path (TensorFlow + TFP), loaded on first use.
_LAZY_ATTRIBUTES = {
    "condition": "mdn_layers.conditioning",
    "marginalize": "mdn_layers.conditioning",
    "rescale": "mdn_layers.conditioning",
    "ensemble": "mdn_layers.ensembles",
    "mixture_from_params": "mdn_layers.distributions",
    "predict_mixture": "mdn_layers.prediction",
    "sample": "mdn_layers.sampling",
    "central_interval": "mdn_layers.summaries",
    "mode": "mdn_layers.summaries",
    "most_probable_component": "mdn_layers.summaries",
    "quantile": "mdn_layers.summaries",
    "responsibilities": "mdn_layers.summaries",
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


__all__ = [
    "MixtureDensity",
    "MixtureNLL",
    "TabularFit",
    "central_interval",
    "condition",
    "datasets",
    "ensemble",
    "fit_tabular",
    "fit_tabular_ensemble",
    "marginalize",
    "metrics",
    "mixture_from_params",
    "mode",
    "most_probable_component",
    "params_size",
    "predict_mixture",
    "quantile",
    "rescale",
    "responsibilities",
    "sample",
    "scores",
    "summaries",
]
