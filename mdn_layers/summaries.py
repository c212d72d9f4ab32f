"""The public path ``mdn_layers.summaries``: the module
:mod:`mdn_layers.analysis.summaries` itself."""

import sys

from mdn_layers.analysis import summaries

sys.modules[__name__] = summaries
