"""The examples in the public docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["core.layout", "core.target_statistics", "training.head", "training.layer",
           "training.losses", "training.metrics", "training.schedule", "training.tabular",
           "analysis.mixtures", "analysis.ensembles", "analysis.conditioning",
           "analysis.sampling", "analysis.summaries", "analysis.scores", "prediction",
           "tfp_layers"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"mdn_layers.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"mdn_layers.{name} has no docstring example"
    assert result.failed == 0
