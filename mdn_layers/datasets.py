"""The public path ``mdn_layers.datasets``: the module
:mod:`mdn_layers.analysis.datasets` itself."""

import sys

from mdn_layers.analysis import datasets

sys.modules[__name__] = datasets
