"""What each floor of the package may import (docs/architecture.md), read from the source."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "mdn_layers"
FORBIDDEN = {  # floor: top-level packages its modules never import
    "core": {"keras", "tensorflow", "tensorflow_probability", "tf_keras", "jax", "torch",
             "mdn_layers.training", "mdn_layers.analysis"},
    "training": {"tensorflow", "tensorflow_probability", "tf_keras", "mdn_layers.analysis"},
    "analysis": {"keras", "tf_keras", "mdn_layers.training"},
}


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@pytest.mark.parametrize("floor", sorted(FORBIDDEN))
def test_each_floor_imports_only_what_it_may(floor):
    modules = sorted((PACKAGE / floor).glob("*.py"))
    assert modules, floor
    for path in modules:
        for name in _imports(path):
            assert not any(name == banned or name.startswith(banned + ".")
                           for banned in FORBIDDEN[floor]), f"{path.name} imports {name}"
