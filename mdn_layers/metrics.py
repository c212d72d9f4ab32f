"""The public path ``mdn_layers.metrics``: the module :mod:`mdn_layers.training.metrics` itself."""

import sys

from mdn_layers.training import metrics

sys.modules[__name__] = metrics
