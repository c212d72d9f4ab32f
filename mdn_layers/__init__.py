"""Keras output layers for mixture density networks, on TensorFlow Probability.

Keras 3 front-end and the core functions live here; the tf_keras front-end
(``tfp.layers.DistributionLambda`` style) lives in :mod:`mdn_layers.tfp_layers`.
"""

from mdn_layers.conditioning import condition, marginalize
from mdn_layers.layers import MixtureDensity, MixtureNLL, predict_mixture
from mdn_layers.layout import mixture_from_params, params_size

__version__ = "0.1.0"

__all__ = [
    "MixtureDensity",
    "MixtureNLL",
    "condition",
    "marginalize",
    "mixture_from_params",
    "params_size",
    "predict_mixture",
]
