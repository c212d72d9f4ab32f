"""The argument checks: what each accepts and returns (values and Python types), each boundary,
and every error message whole (it names the argument, what was expected and what came)."""
import re
import warnings

import numpy as np
import pytest
from conftest import warned_here

from mdn_layers.core import validation as v


def _raises(message, function, *arguments, **keywords):
    """Calls ``function`` and asserts an ``ArgumentError`` (a ``ValueError`` and a ``TypeError``)
    whose message is exactly ``message``."""
    with pytest.raises(v.ArgumentError, match=f"^{re.escape(message)}$") as caught:
        function(*arguments, **keywords)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, TypeError)


def test_ints_accept_numpy_integers_at_their_minimum_and_return_python_ints():
    for check, minimum in ((v.check_positive_int, 1), (v.check_nonnegative_int, 0)):
        for value in (minimum, np.int64(minimum), np.uint8(minimum + 3)):
            out = check(value, "n")
            assert type(out) is int and out == int(value)


@pytest.mark.parametrize("check, kind, minimum", [(v.check_positive_int, "positive", 1),
                                                  (v.check_nonnegative_int, "non-negative", 0)])
def test_ints_refuse_bools_floats_and_values_below_the_minimum(check, kind, minimum):
    _raises(f"`n` must be a {kind} int; received True of type bool.", check, True, "n")
    _raises(f"`n` must be a {kind} int; received {np.True_!r} of type "
            f"{type(np.True_).__name__}.", check, np.True_, "n")
    _raises(f"`n` must be a {kind} int; received 2.0 of type float.", check, 2.0, "n")
    _raises(f"`n` must be a {kind} int (>= {minimum}); received {minimum - 1}.",
            check, minimum - 1, "n")


def test_probability_is_open_at_both_ends():
    assert v.check_probability(np.float32(0.25), "p") == 0.25
    assert type(v.check_probability(np.float32(0.25), "p")) is float
    assert v.check_probability(1e-300, "p") == 1e-300
    assert v.check_probability(1 - 1e-16, "p") == 1 - 1e-16
    for value in (0, 0.0, 1, 1.0, -0.5, float("nan")):
        _raises(f"`p` must be in (0, 1); received {value!r}.", v.check_probability, value, "p")
    _raises("`p` must be a float in (0, 1); received '0.5' of type str.",
            v.check_probability, "0.5", "p")
    _raises("`p` must be a float in (0, 1); received False of type bool.",
            v.check_probability, False, "p")


def test_covariance_kinds_and_the_mixture_config():
    for kind in ("full", "diag", "spherical"):
        assert v.check_covariance(kind) == kind
    _raises("`covariance` must be one of ['full', 'diag', 'spherical']; received 'Full'.",
            v.check_covariance, "Full")
    assert v.check_mixture_config(np.int32(2), 3, "diag") == (2, 3, "diag")
    _raises("`event_size` must be a positive int (>= 1); received 0.",
            v.check_mixture_config, 0, 3, "full")
    _raises("`num_components` must be a positive int; received 2.5 of type float.",
            v.check_mixture_config, 2, 2.5, "full")
    _raises("`covariance` must be one of ['full', 'diag', 'spherical']; received None.",
            v.check_mixture_config, 2, 2, None)


def test_nonnegative_floats_take_zero_and_numeric_types():
    zero = v.check_nonnegative_float(0, "s")
    assert zero == 0.0 and type(zero) is float
    assert v.check_nonnegative_float(np.float32(1.5), "s") == 1.5
    assert v.check_nonnegative_float(np.array(2.0), "s") == 2.0
    _raises("`s` must be a non-negative float; received True of type bool.",
            v.check_nonnegative_float, True, "s")
    _raises("`s` must be a non-negative float; received '1' of type str.",
            v.check_nonnegative_float, "1", "s")
    _raises("`s` must be a non-negative float; received b'1' of type bytes.",
            v.check_nonnegative_float, b"1", "s")
    _raises("`s` must be a non-negative float; received [1, 2].",
            v.check_nonnegative_float, [1, 2], "s")
    _raises("`s` must be a non-negative float; received None.",
            v.check_nonnegative_float, None, "s")
    for value in (-1e-300, float("inf"), float("nan")):
        _raises(f"`s` must be a finite float >= 0; received {value!r}.",
                v.check_nonnegative_float, value, "s")


def test_dimension_indices_normalise_negatives_and_keep_their_order():
    assert v.check_dimension_indices(-1, 3) == (2,)
    assert v.check_dimension_indices(np.int64(1), 3) == (1,)
    assert v.check_dimension_indices([2, -3], 3) == (2, 0)
    assert v.check_dimension_indices(np.array([1, 0], np.uint8), 2) == (1, 0)
    assert v.check_dimension_indices([], 3) == ()
    assert v.check_dimension_indices(np.zeros(0), 3) == ()  # empty float arrays are empty
    assert all(type(i) is int for i in v.check_dimension_indices(np.array([0, 2]), 3))

    class Eager:  # a TensorFlow eager tensor's interface
        def numpy(self):
            return np.array([0, -1])
    assert v.check_dimension_indices(Eager(), 4) == (0, 3)


def test_dimension_index_errors_whole():
    _raises("`dims` must be an int or a 1-D sequence of ints; received shape (1, 2).",
            v.check_dimension_indices, [[0, 1]], 3, "dims")
    _raises("`indices` must hold integers; received [0.0, 1.0] (dtype float64).",
            v.check_dimension_indices, [0.0, 1.0], 3)
    _raises("`indices` must hold integers; received [True] (dtype bool).",
            v.check_dimension_indices, [True], 3)
    _raises("`indices` must be an int or a 1-D sequence of ints; received shape ().",
            v.check_dimension_indices, True, 3)   # a bool is not an int index
    _raises("`dims` must name at least one dimension; received [].",
            v.check_dimension_indices, [], 3, "dims", allow_empty=False)
    _raises("`indices` [3, -4] out of range for an event of size 3 (valid: -3 .. 2).",
            v.check_dimension_indices, [0, 3, -4, -3], 3)
    _raises("`indices` must not repeat a dimension; received [1, -2] (as non-negative "
            "indices: [1, 1]).", v.check_dimension_indices, [1, -2], 3)


def test_foreign_tensors_are_found_in_nested_inputs():
    class Layer:
        pass
    foreign = type("KerasTensor", (), {"__module__": "tf_keras.src.engine"})()
    ours = type("KerasTensor", (), {"__module__": "keras.src.backend"})()
    v.reject_foreign_tensors(Layer(), {"a": [ours, (ours,)]}, "tf_keras", "Use keras.")
    for inputs in (foreign, [ours, foreign], {"a": ours, "b": (ours, [foreign])}):
        _raises("Layer was called on a tf_keras tensor (KerasTensor). Use keras.",
                v.reject_foreign_tensors, Layer(), inputs, "tf_keras", "Use keras.")


def test_initialisation_needs_a_scale_above_the_shift():
    assert v.check_initialisation(0.5, 0, 0.1) == (0.5, 0.0)
    assert v.check_initialisation(1e-3, 2, 0.0) == (1e-3, 2.0)
    _raises("`initial_scale` must exceed `diag_shift`=0.1; received 0.1.",
            v.check_initialisation, 0.1, 1.0, 0.1)
    _raises("`initial_scale` must exceed `diag_shift`=0.0; received 0.0.",
            v.check_initialisation, 0, 1.0, 0.0)
    _raises("`initial_scale` must be a finite float >= 0; received -1.0.",
            v.check_initialisation, -1.0, 1.0, 0.0)
    _raises("`loc_spread` must be a finite float >= 0; received -1.",
            v.check_initialisation, 1.0, -1, 0.0)


def test_bools_refuse_strings_and_numbers():
    assert v.check_bool(np.True_, "flag") is True and v.check_bool(False, "flag") is False
    _raises("`flag` must be True or False; received 'false' of type str.",
            v.check_bool, "false", "flag")
    _raises("`flag` must be True or False; received 1 of type int.", v.check_bool, 1, "flag")


def test_member_weights():
    out = v.check_weights([1, 2.5], 2, "weights")
    assert out.dtype == np.float64 and out.tolist() == [1.0, 2.5]
    _raises("`weights` must be 2 positive floats; received ['a', 'b'].",
            v.check_weights, ["a", "b"], 2, "weights")
    for bad in ([1.0], [1.0, 0.0], [1.0, -1.0], [1.0, np.inf], [1.0, np.nan], [[1.0, 1.0]]):
        _raises(f"`weights` must be 2 positive finite floats (one per member); received {bad!r}.",
                v.check_weights, bad, 2, "weights")


def test_target_statistics_both_or_neither():
    assert v.check_target_statistics(None, None, 2, "full") == (None, None)
    loc, scale = v.check_target_statistics(np.array([[1, 2]]), [0.5, 3], 2, "full")
    assert loc == (1.0, 2.0) and scale == (0.5, 3.0)
    assert all(type(x) is float for x in loc + scale)
    assert v.check_target_statistics([1, 2], [2, 2], 2, "spherical") == ((1.0, 2.0), (2.0, 2.0))
    assert v.check_target_statistics(1, 0.5, 1, "spherical") == ((1.0,), (0.5,))
    _raises("`target_loc` and `target_scale` go together: pass both or neither; received "
            "target_loc=[0], target_scale=None.", v.check_target_statistics, [0], None, 1, "full")
    _raises("`target_loc` and `target_scale` go together: pass both or neither; received "
            "target_loc=None, target_scale=[1].", v.check_target_statistics, None, [1], 1, "full")
    _raises("`target_loc` must be 1 floats; received 'a'.",
            v.check_target_statistics, "a", [1], 1, "full")
    _raises("`target_scale` must be 1 floats; received {1}.",
            v.check_target_statistics, [0], {1}, 1, "full")
    _raises("`target_loc` must be 2 finite floats (one per target dim); received [0].",
            v.check_target_statistics, [0], [1, 1], 2, "full")
    _raises("`target_scale` must be 2 finite floats (one per target dim); received [1, nan].",
            v.check_target_statistics, [0, 0], [1, np.nan], 2, "full")
    _raises("`target_scale` must be positive; received [1, 0].",
            v.check_target_statistics, [0, 0], [1, 0], 2, "diag")
    _raises("`target_scale` must be one value repeated for covariance='spherical' (one shared "
            "standard deviation); received [1, 2].",
            v.check_target_statistics, [0, 0], [1, 2], 2, "spherical")


def test_scale_floor_forms():
    assert v.check_scale_floor(None, 2) is None and v.check_scale_floor("grid", 2) == "grid"
    assert v.check_scale_floor(0.5, 3) == (0.5, 0.5, 0.5)
    assert v.check_scale_floor(np.array([[0, 2]]), 2) == (0.0, 2.0)
    assert v.check_scale_floor([0.25], 1) == (0.25,)
    _raises("`floor` must be None, 'grid' or 2 non-negative floats (target units); received "
            "'Grid'.", v.check_scale_floor, "Grid", 2, "floor")
    _raises("`scale_floor` must be None, 'grid' or 2 non-negative floats; received {0}.",
            v.check_scale_floor, {0}, 2)
    for bad in ([0, 1, 2], [-1e-9, 0], [0, np.inf], [np.nan]):
        _raises("`scale_floor` must be None, 'grid' or 2 non-negative finite floats (one per "
                f"target dim, in target units); received {bad!r}.", v.check_scale_floor, bad, 2)


def test_affine_arguments():
    out = v.check_affine(2, 3, "scale", True)
    assert out.dtype == np.float64 and out.tolist() == [2.0, 2.0, 2.0]
    assert v.check_affine([1, -2], 2, "loc", False).tolist() == [1.0, -2.0]
    assert v.check_affine(0.0, 2, "loc", False).tolist() == [0.0, 0.0]
    assert v.check_affine([0.5, 1e-300], 2, "scale", True).tolist() == [0.5, 1e-300]
    _raises("`loc` must be a float or 2 floats; received 'a'.", v.check_affine, "a", 2, "loc",
            False)
    _raises("`loc` must be a float or 2 floats (one per dim); received shape (3,).",
            v.check_affine, [1, 2, 3], 2, "loc", False)
    _raises("`loc` must be a float or 2 floats (one per dim); received shape (1, 2).",
            v.check_affine, [[1, 2]], 2, "loc", False)
    _raises("`loc` must hold finite floats; received [1, inf].", v.check_affine, [1, np.inf],
            2, "loc", False)
    _raises("`scale` must hold positive finite floats; received 0.0.", v.check_affine, 0.0,
            2, "scale", True)
    _raises("`scale` must hold positive finite floats; received [1, -1].", v.check_affine,
            [1, -1], 2, "scale", True)


def test_tables_become_float64_with_a_target_axis():
    x, y = v.check_table([[1, 2], [3, 4]], [5, 6], "fit")
    assert x.dtype == y.dtype == np.float64 and y.tolist() == [[5.0], [6.0]]
    x, y = v.check_table([[np.nan], [1.0]], [[1.0, np.nan], [np.nan, 2.0]], "fit",
                         missing_inputs=True, missing_targets=True)
    assert np.isnan(x[0, 0]) and np.isnan(y[0, 1]) and y[1, 1] == 2.0


def test_table_errors_whole():
    _raises("fit: `x` and `y` must be arrays of numbers (encode categorical columns first).",
            v.check_table, [["a"]], [1], "fit")
    _raises("fit expects x [N, F] and y [N, D] with the same N; received x [2] and y [2, 1].",
            v.check_table, [1, 2], [1, 2], "fit")
    _raises("fit expects x [N, F] and y [N, D] with the same N; received x [2, 1] and "
            "y [2, 1, 1].", v.check_table, [[1], [2]], [[[1]], [[2]]], "fit")
    _raises("fit expects x [N, F] and y [N, D] with the same N; received x [2, 1] and y [3, 1].",
            v.check_table, [[1], [2]], [1, 2, 3], "fit")
    x = np.array([[np.nan, np.inf], [1.0, np.nan], [1.0, 2.0]])
    _raises("fit: `x` has 3 NaN or infinite entries (in 2 rows); drop or impute them first.",
            v.check_table, x, [1, 2, 3], "fit")
    _raises("fit: `x` has 1 infinite entries (in 1 rows); drop or impute them first (NaN marks "
            "a missing value).", v.check_table, x, [1, 2, 3], "fit", missing_inputs=True)
    _raises("fit: `y` has 2 NaN or infinite entries (in 1 rows); drop or impute them first.",
            v.check_table, [[1], [2]], [[1, 2], [np.nan, -np.inf]], "fit")
    _raises("fit: target dims [0, 2] of `y` have no observed value.", v.check_table,
            [[1], [2]], [[np.nan, 1, np.nan], [np.nan, np.nan, np.nan]], "fit",
            missing_targets=True)


def test_sample_weights():
    assert v.check_sample_weight(None, 3).tolist() == [1.0, 1.0, 1.0]
    out = v.check_sample_weight([0, 2, 0], 3)
    assert out.dtype == np.float64 and out.tolist() == [0.0, 2.0, 0.0]
    assert v.check_sample_weight([0, 1e-300], 2).tolist() == [0.0, 1e-300]  # one tiny weight
    _raises("`sample_weight` must be numbers; received list.", v.check_sample_weight,
            ["a", "b"], 2)
    _raises("`sample_weight` must have shape [2] (one weight per row); received shape [2, 1].",
            v.check_sample_weight, [[1], [1]], 2)
    for bad in ([0, 0], [1, -1], [1, np.nan], [np.inf, 1]):
        _raises("`sample_weight` must be finite and non-negative, and not all weights zero.",
                v.check_sample_weight, bad, 2)


def test_float32_rounding_warns_on_the_dims_with_a_large_offset():
    rng = np.random.default_rng(0)
    fine = rng.normal(size=(100, 1))
    offset = 1e12 + rng.normal(size=(100, 1)) * 1e5   # rounding 6e4 > 1e-3 * 1e5
    y = np.concatenate([fine, offset, fine], axis=1)
    y[0, 0] = y[0, 1] = offset[0, 0] = np.nan         # NaN-aware statistics
    with pytest.warns(RuntimeWarning) as caught:
        v.warn_on_float32_rounding(y, "fit")
    number = r"(-?[0-9.e+]+)"
    found = re.fullmatch(
        r"fit: target dims \[1\] have a large offset for their spread \(mean \[" + number
        + r"\], standard deviation \[" + number + re.escape(
            "]); float32, in which the model trains, rounds them by more than 0.1% of the "
            "spread. Subtract an offset first (y - offset) and add it back to the predicted "
            "mixtures with mdn_layers.rescale(mixture, offset, 1.0)."), str(caught[0].message))
    assert len(caught) == 1 and found, str(caught[0].message)
    assert warned_here(caught[0], __file__)              # the first caller outside the package
    np.testing.assert_allclose([float(found[1]), float(found[2])],
                               [np.nanmean(offset), np.nanstd(offset)], rtol=1e-12)
    # The threshold: max |y| 2^-24 > 1e-3 std. With std exactly 1e5, offsets 1% either side
    # of 1e-3 * 1e5 * 2^24 - 1e5 (max |y| is the offset + 1e5).
    spread = 1e5 * np.tile([-1.0, 1.0], 50)[:, None]
    edge = 1e-3 * 1e5 * 2.0 ** 24 - 1e5
    with pytest.warns(RuntimeWarning, match=r"^fit: target dims \[0\]"):
        v.warn_on_float32_rounding(1.01 * edge + spread, "fit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v.warn_on_float32_rounding(np.concatenate([fine, 0.99 * edge + spread], axis=1), "fit")
