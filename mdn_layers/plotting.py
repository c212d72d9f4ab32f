"""The public path ``mdn_layers.plotting``: the module
:mod:`mdn_layers.analysis.plotting` itself."""

import sys

from mdn_layers.analysis import plotting

sys.modules[__name__] = plotting
