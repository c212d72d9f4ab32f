"""Keras output layers for mixture density networks, on TensorFlow Probability.

Keras 3 front-end and the core functions live here; the tf_keras front-end
(``tfp.layers.DistributionLambda`` style) lives in :mod:`mdn_layers.tfp_layers`, and
matplotlib views in :mod:`mdn_layers.plotting` (both imported on demand).
"""

from mdn_layers import datasets, metrics, scores, summaries
from mdn_layers.conditioning import condition, marginalize, rescale
from mdn_layers.layers import MixtureDensity, MixtureNLL, predict_mixture
from mdn_layers.layout import mixture_from_params, params_size
from mdn_layers.sampling import sample
from mdn_layers.summaries import (central_interval, mode, most_probable_component, quantile,
                                  responsibilities)

__version__ = "0.1.0"


def __getattr__(name):
    # `mdn_layers.tfp_layers` and `mdn_layers.plotting` load on first use, so that
    # `import mdn_layers` imports neither tf_keras nor matplotlib.
    if name in ("tfp_layers", "plotting"):
        import importlib
        return importlib.import_module(f"mdn_layers.{name}")
    raise AttributeError(f"module 'mdn_layers' has no attribute {name!r}")

__all__ = [
    "MixtureDensity",
    "MixtureNLL",
    "central_interval",
    "condition",
    "datasets",
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
