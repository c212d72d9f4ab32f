"""The two array namespaces (`keras_ops` for training, `tf_ops` for analysis) offer every name
the shared maths calls, with the same results on the same inputs."""

import pathlib
import re

import keras
import numpy as np
import pytest

from mdn_layers.analysis import tf_ops
from mdn_layers.training import keras_ops

pytestmark = pytest.mark.backend_neutral

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "mdn_layers"
SHARED = sorted(path.name for path in (PACKAGE / "core").glob("*.py"))


def _names_called():
    names = set()
    for module in SHARED:
        names |= set(re.findall(r"\bops\.(\w+)\(", (PACKAGE / "core" / module).read_text()))
    return sorted(names)


@pytest.mark.parametrize("name", _names_called())
def test_both_namespaces_offer_every_name_the_shared_maths_calls(name):
    assert callable(getattr(keras_ops, name, None)), f"keras_ops lacks {name}"
    assert callable(getattr(tf_ops, name, None)), f"tf_ops lacks {name}"


def _both(name, *arguments, **keywords):
    ours = [np.asarray(keras.ops.convert_to_numpy(getattr(ops, name)(*arguments, **keywords)))
            for ops in (keras_ops, tf_ops)]
    return ours


@pytest.mark.parametrize("name", ["abs", "exp", "expm1", "log", "sqrt", "square", "softplus",
                                  "erf", "erfc", "zeros_like", "ones_like", "isnan"])
def test_elementwise_functions_agree(rng, name):
    x = rng.uniform(0.1, 3.0, size=(3, 4)).astype("float32")
    keras_value, tf_value = _both(name, x)
    np.testing.assert_allclose(keras_value, tf_value, rtol=1e-6, atol=1e-7)


def test_structural_functions_agree_and_broadcast_alike(rng):
    a = rng.normal(size=(2, 1, 3)).astype("float32")
    b = rng.normal(size=(1, 4, 3)).astype("float32")
    for name, arguments, keywords in [
            ("maximum", (a, b), {}), ("where", (a > 0, a, b), {}),
            ("logsumexp", (a,), {"axis": -1}), ("log_softmax", (b,), {"axis": -1}),
            ("sum", (a,), {"axis": -1}), ("max", (b,), {"axis": 1}),
            ("swapaxes", (b, -1, -2), {}), ("moveaxis", (b, (-2, -1), (0, 1)), {}),
            ("expand_dims", (a, -2), {}), ("take", (b, np.array([2, 0]), -1), {}),
            ("matmul", (a[..., None], b[..., None, :]), {}), ("stack", ([a, a], -1), {}),
            ("concatenate", ([b, b], -1), {}), ("split_last_axis", (b, (3, 1)), {})]:
        keras_value, tf_value = _both(name, *arguments, **keywords)
        np.testing.assert_allclose(keras_value, tf_value, rtol=1e-6, atol=1e-6, err_msg=name)
    for keras_piece, tf_piece in zip(keras_ops.split(b, [1], axis=-1),
                                     tf_ops.split(b, [1], axis=-1)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(keras_piece), tf_piece)


def test_linear_algebra_agrees(rng):
    tall = rng.normal(size=(2, 5, 3)).astype("float32")
    keras_r, tf_r = _both("qr_upper", tall)
    np.testing.assert_allclose(np.abs(keras_r), np.abs(tf_r), rtol=1e-4, atol=1e-5)
    tril = np.tril(rng.normal(size=(2, 3, 3))) + 3 * np.eye(3)
    rhs = rng.normal(size=(2, 3))
    keras_z, tf_z = _both("solve_lower_triangular", tril, rhs)
    np.testing.assert_allclose(keras_z, tf_z, rtol=1e-6)
    np.testing.assert_allclose(tf_z, np.linalg.solve(tril, rhs[..., None])[..., 0], rtol=1e-6)
    for shape in [(4, 3, 3), (2, 4, 3, 3)]:                # the last two axes, at any rank
        square = rng.normal(size=shape).astype("float32")
        for diagonal in _both("matrix_diagonal", square):
            np.testing.assert_array_equal(diagonal, np.diagonal(square, axis1=-2, axis2=-1))
