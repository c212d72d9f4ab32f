"""Argument checks shared by every public entry point (plain Python: no Keras, no TensorFlow).

Each check fails early with an :class:`ArgumentError` that names the argument, what
was expected and what was received. Like scikit-learn's ``InvalidParameterError`` it is both
a ``ValueError`` and a ``TypeError``, so a wrong type and a wrong value are caught the same
way, whichever the caller expects.
"""

import numbers
import sys
import warnings

import numpy as np

COVARIANCE_KINDS = ("full", "diag", "spherical")


class ArgumentError(ValueError, TypeError):
    """An argument of a public call has the wrong type or value (the message names it)."""


def _check_int(value, name, minimum, kind):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentError(f"`{name}` must be a {kind} int; received {value!r} "
                            f"of type {type(value).__name__}.")
    if value < minimum:
        raise ArgumentError(f"`{name}` must be a {kind} int (>= {minimum}); received {value!r}.")
    return int(value)


def check_positive_int(value, name):
    """Returns ``value`` as a Python int, or raises if it is not an int >= 1."""
    return _check_int(value, name, 1, "positive")


def check_nonnegative_int(value, name):
    """Returns ``value`` as a Python int, or raises if it is not an int >= 0."""
    return _check_int(value, name, 0, "non-negative")


def check_probability(value, name):
    """Returns ``value`` as a Python float, or raises if it is not a real number in (0, 1)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentError(f"`{name}` must be a float in (0, 1); received {value!r} "
                            f"of type {type(value).__name__}.")
    if not 0 < value < 1:
        raise ArgumentError(f"`{name}` must be in (0, 1); received {value!r}.")
    return float(value)


def check_covariance(covariance):
    """Returns ``covariance`` if it is one of :data:`COVARIANCE_KINDS`."""
    if covariance not in COVARIANCE_KINDS:
        raise ArgumentError(f"`covariance` must be one of {list(COVARIANCE_KINDS)}; "
                            f"received {covariance!r}.")
    return covariance


def check_mixture_config(event_size, num_components, covariance):
    """Validates the three numbers that define a params layout."""
    return (check_positive_int(event_size, "event_size"),
            check_positive_int(num_components, "num_components"),
            check_covariance(covariance))


def check_nonnegative_float(value, name):
    """Returns ``value`` as a Python float, or raises if it is not a finite float >= 0."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise ArgumentError(f"`{name}` must be a non-negative float; received {value!r} "
                            f"of type {type(value).__name__}.")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ArgumentError(f"`{name}` must be a non-negative float; received {value!r}.") from None
    if not np.isfinite(as_float) or as_float < 0:
        raise ArgumentError(f"`{name}` must be a finite float >= 0; received {value!r}.")
    return as_float


def check_dimension_indices(indices, event_size, name="indices", allow_empty=True):
    """Normalises dimension indices to a tuple of non-negative Python ints.

    Negative indices count from the end, as in numpy (``-1`` is the last dim).

    Args:
      indices: an int or a 1-D sequence / array of ints.
      event_size: the number of dims the indices refer to.

    Raises:
      ValueError: an index is not an integer, is out of range ``[-event_size, event_size)``, an
        index repeats, or ``indices`` is empty while ``allow_empty`` is False.
    """
    if isinstance(indices, numbers.Integral) and not isinstance(indices, bool):
        indices = [indices]
    if hasattr(indices, "numpy"):
        indices = indices.numpy()
    array = np.asarray(indices)
    if array.ndim != 1:
        raise ArgumentError(f"`{name}` must be an int or a 1-D sequence of ints; "
                            f"received shape {array.shape}.")
    if array.size and not (np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_):
        raise ArgumentError(f"`{name}` must hold integers; received {indices!r} "
                            f"(dtype {array.dtype}).")
    if not array.size and not allow_empty:
        raise ArgumentError(f"`{name}` must name at least one dimension; received {indices!r}.")
    out_of_range = [int(i) for i in array if not -event_size <= i < event_size]
    if out_of_range:
        raise ArgumentError(f"`{name}` {out_of_range} out of range for an event of size "
                            f"{event_size} (valid: {-event_size} .. {event_size - 1}).")
    normalised = tuple(int(i) % event_size for i in array)
    if len(set(normalised)) != len(normalised):
        raise ArgumentError(f"`{name}` must not repeat a dimension; received {indices!r} "
                            f"(as non-negative indices: {list(normalised)}).")
    return normalised


def _flatten(structure):
    if isinstance(structure, dict):
        structure = list(structure.values())
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in _flatten(item)]
    return [structure]


def reject_foreign_tensors(layer, inputs, foreign_module, advice):
    """Raises a ``TypeError`` if ``inputs`` hold tensors of the other Keras (``foreign_module``).

    Keras 3 and tf_keras symbolic tensors do not mix; without this check the failure
    surfaces deep inside the framework.
    """
    for tensor in _flatten(inputs):
        if type(tensor).__module__.startswith(foreign_module):
            raise ArgumentError(f"{type(layer).__name__} was called on a {foreign_module} tensor "
                                f"({type(tensor).__name__}). {advice}")


def check_initialisation(initial_scale, loc_spread, diag_shift):
    """Validates the starting standard deviation and mean spread of a mixture layer."""
    initial_scale = check_nonnegative_float(initial_scale, "initial_scale")
    if initial_scale <= diag_shift:
        raise ArgumentError(f"`initial_scale` must exceed `diag_shift`={diag_shift}; "
                            f"received {initial_scale!r}.")
    return initial_scale, check_nonnegative_float(loc_spread, "loc_spread")


def check_bool(value, name):
    """Returns ``value`` as a Python bool, or raises if it is not a bool (``bool("false")`` is
    True, so strings and numbers are refused rather than converted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(f"`{name}` must be True or False; received {value!r} "
                            f"of type {type(value).__name__}.")
    return bool(value)


def check_weights(weights, size, name):
    """``weights`` as a float64 ``[size]`` numpy array of positive finite numbers, or raises."""
    try:
        array = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentError(f"`{name}` must be {size} positive floats; received {weights!r}.") \
            from None
    if array.shape != (size,) or not np.all(np.isfinite(array) & (array > 0)):
        raise ArgumentError(f"`{name}` must be {size} positive finite floats (one per member); "
                            f"received {weights!r}.")
    return array


def check_target_statistics(target_loc, target_scale, event_size, covariance):
    """``(target_loc, target_scale)`` as tuples of ``event_size`` floats, or ``(None, None)``.

    Both or neither; finite; positive scales, all equal for ``"spherical"`` (one standard
    deviation is shared by every dim).
    """
    if target_loc is None and target_scale is None:
        return None, None
    if target_loc is None or target_scale is None:
        raise ArgumentError("`target_loc` and `target_scale` go together: pass both or neither; "
                            f"received target_loc={target_loc!r}, target_scale={target_scale!r}.")
    values = []
    for name, value in (("target_loc", target_loc), ("target_scale", target_scale)):
        try:
            array = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ArgumentError(f"`{name}` must be {event_size} floats; received {value!r}.") \
                from None
        if array.shape != (event_size,) or not np.all(np.isfinite(array)):
            raise ArgumentError(f"`{name}` must be {event_size} finite floats (one per target "
                                f"dim); received {value!r}.")
        values.append(array)
    if not np.all(values[1] > 0):
        raise ArgumentError(f"`target_scale` must be positive; received {target_scale!r}.")
    if covariance == "spherical" and not np.all(values[1] == values[1][0]):
        raise ArgumentError("`target_scale` must be one value repeated for covariance="
                            "'spherical' (one shared standard deviation); received "
                            f"{target_scale!r}.")
    return tuple(values[0].tolist()), tuple(values[1].tolist())


def check_scale_floor(scale_floor, event_size, name="scale_floor"):
    """``None``, ``"grid"``, or ``event_size`` non-negative finite floats as a tuple."""
    if scale_floor is None or (isinstance(scale_floor, str) and scale_floor == "grid"):
        return scale_floor
    if isinstance(scale_floor, str):
        raise ArgumentError(f"`{name}` must be None, 'grid' or {event_size} non-negative floats "
                            f"(target units); received {scale_floor!r}.")
    try:
        array = np.asarray(scale_floor, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ArgumentError(f"`{name}` must be None, 'grid' or {event_size} non-negative floats; "
                            f"received {scale_floor!r}.") from None
    if array.size == 1:
        array = np.repeat(array, event_size)
    if array.shape != (event_size,) or not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ArgumentError(f"`{name}` must be None, 'grid' or {event_size} non-negative finite "
                            f"floats (one per target dim, in target units); received "
                            f"{scale_floor!r}.")
    return tuple(array.tolist())


def check_affine(value, event_size, name, positive):
    """``value`` (a float or ``[event_size]`` floats) as a float64 ``[event_size]`` array of
    finite (and, with ``positive``, positive) numbers, or raises."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentError(f"`{name}` must be a float or {event_size} floats; received "
                            f"{value!r}.") from None
    kind = "positive finite" if positive else "finite"
    if array.ndim > 1 or (array.ndim == 1 and array.shape[0] != event_size):
        raise ArgumentError(f"`{name}` must be a float or {event_size} floats (one per dim); "
                            f"received shape {array.shape}.")
    if not np.all(np.isfinite(array) & ((array > 0) if positive else True)):
        raise ArgumentError(f"`{name}` must hold {kind} floats; received {value!r}.")
    return np.broadcast_to(array, (event_size,))


def check_table(x, y, caller, missing_inputs=False, missing_targets=False):
    """``(x [N, F], y [N, D])`` as float64 arrays of numbers with the same rows (``y`` ``[N]``
    becomes ``[N, 1]``), finite but for NaN where allowed (``missing_inputs``,
    ``missing_targets``: NaN marks a missing value), or an error that names the array and
    counts the rows."""
    try:
        x = np.asarray(x, dtype="float64")
        y = np.asarray(y, dtype="float64")
    except (TypeError, ValueError):
        raise ArgumentError(f"{caller}: `x` and `y` must be arrays of numbers (encode "
                            "categorical columns first).") from None
    y = y[:, None] if y.ndim == 1 else y
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ArgumentError(f"{caller} expects x [N, F] and y [N, D] with the same N; "
                            f"received x {list(x.shape)} and y {list(y.shape)}.")
    for name, array, missing in (("x", x, missing_inputs), ("y", y, missing_targets)):
        bad = np.isinf(array) if missing else ~np.isfinite(array)
        if bad.any():
            what = "infinite" if missing else "NaN or infinite"
            raise ArgumentError(
                f"{caller}: `{name}` has {int(bad.sum())} {what} entries (in "
                f"{int(bad.any(axis=1).sum())} rows); drop or impute them first"
                + (" (NaN marks a missing value)." if missing else "."))
    if missing_targets:
        empty = np.flatnonzero(np.all(np.isnan(y), axis=0))
        if empty.size:
            raise ArgumentError(f"{caller}: target dims {empty.tolist()} of `y` have no "
                                "observed value.")
    return x, y


def check_sample_weight(sample_weight, num_rows):
    """``[num_rows]`` float64 row weights (ones for None): finite, non-negative, not all 0."""
    if sample_weight is None:
        return np.ones(num_rows)
    try:
        weight = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentError("`sample_weight` must be numbers; received "
                            f"{type(sample_weight).__name__}.") from None
    if weight.shape != (num_rows,):
        raise ArgumentError(f"`sample_weight` must have shape [{num_rows}] (one weight per "
                            f"row); received shape {list(weight.shape)}.")
    if not np.all(np.isfinite(weight)) or np.any(weight < 0) or not np.any(weight > 0):
        raise ArgumentError("`sample_weight` must be finite and non-negative, and not all "
                            "weights zero.")
    return weight


def warn_on_float32_rounding(y, caller):
    """Warns when casting the targets ``[N, D]`` to float32 rounds them by more than 0.1% of
    their spread (a large offset, such as 1e12 +- 1e5)."""
    spread = np.nanstd(y, axis=0)
    rounding = np.nanmax(np.abs(y), axis=0) * 2.0 ** -24
    dims = np.flatnonzero(rounding > 1e-3 * spread).tolist()
    if dims:
        warn_caller(
            f"{caller}: target dims {dims} have a large offset for their spread (mean "
            f"{np.nanmean(y, axis=0)[dims].tolist()}, standard deviation {spread[dims].tolist()}"
            "); float32, in which the model trains, rounds them by more than 0.1% of the "
            "spread. Subtract an offset first (y - offset) and add it back to the predicted "
            "mixtures with mdn_layers.rescale(mixture, offset, 1.0).", RuntimeWarning)


def warn_caller(message, category):
    """``warnings.warn`` at the first caller outside this package, however deep inside it the
    warning arises (``fit_tabular``, ``fit_tabular_ensemble`` or an estimator's ``fit``), so
    the warning names the user's line and warning filters keyed on it work."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] == (
            __name__.partition(".")[0]):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
