"""The public path ``mdn_layers.scores``: the module :mod:`mdn_layers.analysis.scores` itself."""

import sys

from mdn_layers.analysis import scores

sys.modules[__name__] = scores
