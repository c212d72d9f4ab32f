"""The examples in the public docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["layout", "adaptation", "distributions", "layers", "losses", "metrics", "prediction",
           "ensembles",
           "conditioning", "sampling", "summaries",
           "scores", "tfp_layers"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"mdn_layers.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"mdn_layers.{name} has no docstring example"
    assert result.failed == 0
