"""A scikit-learn estimator over the tabular recipe: :class:`MixtureDensityRegressor`.

A bridge (scikit-learn, the training path and the analysis path): ``fit`` takes a numpy array
or a pandas DataFrame with numeric, categorical, string, boolean and missing values and
targets ``[N]`` or ``[N, D]`` with NaN for missing ones; every prediction method is a view of
one TFP mixture per row. Needs scikit-learn (``pip install "mdn_layers[sklearn]"``).
"""

import json
import os
import zipfile

import keras
import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from mdn_layers.analysis import scores, summaries
from mdn_layers.core import validation
from mdn_layers.core.layout import DEFAULT_DIAG_SHIFT
from mdn_layers.prediction import predict_mixture
from mdn_layers.training.encoding import TableEncoder, column_statistics
from mdn_layers.training.schedule import DEFAULT_NUM_COMPONENTS
from mdn_layers.training.tabular import fit_tabular, fit_tabular_ensemble


def _is_numeric(column):
    kind = getattr(column, "dtype", np.asarray(column).dtype).kind
    return kind in "iuf"


def _columns(X):
    """``[(name, values)]`` of a DataFrame or a 2-D array, and whether it was a DataFrame."""
    if scipy.sparse.issparse(X):
        raise TypeError("MixtureDensityRegressor: sparse input is not supported; pass a dense "
                        "array or a DataFrame.")
    if hasattr(X, "columns") and hasattr(X, "iloc"):
        columns = [(name, X[name]) for name in X.columns]
        rows = len(X)
    else:
        array = np.asarray(X)
        if array.ndim != 2:
            raise validation.ArgumentError(
                "MixtureDensityRegressor: `X` must be 2-D [N, F] (a DataFrame or an array); "
                f"received shape {list(array.shape)}. Reshape your data with "
                "X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample.")
        if array.dtype.kind == "c":
            raise validation.ArgumentError("MixtureDensityRegressor: Complex data not "
                                           "supported in `X`.")
        columns = [(index, array[:, index]) for index in range(array.shape[1])]
        rows = array.shape[0]
    if not columns:
        raise validation.ArgumentError(
            f"MixtureDensityRegressor: 0 feature(s) (shape=({rows}, 0)) while a minimum of 1 "
            "is required.")
    return columns, rows


def _as_numbers(values):
    """A column as float64 with NaN for missing, or None if it is not numeric."""
    if getattr(values, "dtype", np.asarray(values).dtype).kind == "c":
        raise validation.ArgumentError("MixtureDensityRegressor: Complex data not "
                                       "supported in `X`.")
    if _is_numeric(values):
        return np.asarray(values, dtype=np.float64)
    try:
        array = np.asarray(values, dtype=object)
        if any(isinstance(v, (str, bytes, bool, np.bool_)) for v in array):
            return None
        return np.array([np.nan if v is None else float(v) for v in array])
    except (TypeError, ValueError):
        return None


def _category_keys(values):
    """A category column's values as strings (None for a missing one)."""
    keys = []
    for value in np.asarray(values, dtype=object):
        missing = value is None or (isinstance(value, float) and np.isnan(value))
        keys.append(None if missing or str(value) in ("<NA>", "nan") else str(value))
    return keys


class MixtureDensityRegressor(RegressorMixin, BaseEstimator):
    """A mixture density network for tables, with the scikit-learn estimator contract.

    ``fit`` trains :func:`mdn_layers.fit_tabular` (``members > 1``:
    :func:`mdn_layers.fit_tabular_ensemble`, predicting as one mixture) on raw tables:

    * ``X``: a numpy array or a pandas DataFrame. Numeric columns are imputed (mean), flagged
      where values were missing in training, and normalised inside the model; categorical,
      string and boolean columns become integer codes here (the vocabulary of each is kept
      by the estimator, ``categories_``) and one-hot inside the model, where a category
      unseen in training (or missing) goes to a reserved bucket, never an error.
    * ``y``: ``[N]`` or ``[N, D]`` in its own units; NaN marks a missing target (trained with
      the missing-target loss). ``D > 1`` is one joint model, full covariance by default, so
      :func:`mdn_layers.condition` and :func:`mdn_layers.marginalize` answer every
      conditional question from one fit.

    Args:
      num_components: ``K``, an int or several to choose from on held-out rows.
      covariance: ``"full"``, ``"diag"`` or ``"spherical"``.
      members: networks in the ensemble (1: a single model).
      noise_levels, validation_fraction, units, max_epochs, batch_size, learning_rate,
        patience, grid_targets, diag_shift: as in :func:`mdn_layers.fit_tabular` (None: its
        size rules).
      random_state: an int seed (the split and every initialisation).
      verbose: ``fit``'s verbosity.

    Attributes (after ``fit``): ``n_features_in_``, ``feature_names_in_`` (DataFrames with
    string column names), ``n_targets_``, ``categories_`` (``{column: [categories]}``),
    ``models_`` (the Keras models; each takes the encoded columns, ``encode(X)``),
    ``fit_`` (member 0's :class:`mdn_layers.TabularFit`).

    Saving: ``pickle`` / ``joblib`` work (Keras models pickle as ``.keras`` archives);
    :meth:`save` and :meth:`load` write and read one zip of ``.keras`` files and JSON, with
    no pickle.

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2))
    >>> y = 3 * X[:, 0] + rng.normal(size=200)
    >>> est = MixtureDensityRegressor(num_components=2, noise_levels=[0.1], max_epochs=5)
    >>> mean, std = est.fit(X, y).predict(X[:3], return_std=True)
    >>> mean.shape, std.shape
    ((3,), (3,))
    """

    def __init__(self, num_components=DEFAULT_NUM_COMPONENTS, covariance="full", members=1,
                 noise_levels=None, validation_fraction=0.1, units=None, max_epochs=None,
                 batch_size=None, learning_rate=0.01, patience=None, grid_targets="floor",
                 diag_shift=DEFAULT_DIAG_SHIFT, random_state=0, verbose=0):
        self.num_components = num_components
        self.covariance = covariance
        self.members = members
        self.noise_levels = noise_levels
        self.validation_fraction = validation_fraction
        self.units = units
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.grid_targets = grid_targets
        self.diag_shift = diag_shift
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.target_tags.required = True
        # score is the mean log-likelihood, not R^2: scikit-learn's "score > 0.5" does not apply.
        tags.regressor_tags.poor_score = True
        return tags

    # --- the table -> numbers map -----------------------------------------------------------

    def _learn_columns(self, columns):
        """Each column's kind and, for categories, its training vocabulary."""
        self.column_names_ = [name if isinstance(name, str) else int(name)
                              for name, _ in columns]
        kinds, categories = [], {}
        for name, values in columns:
            numbers = _as_numbers(values)
            if numbers is not None:
                kinds.append("numeric")
                continue
            kinds.append("category")
            seen = sorted({key for key in _category_keys(values) if key is not None})
            categories[name] = seen
        self.column_kinds_ = kinds
        self.categories_ = categories

    def encode(self, X):
        """``X`` -> ``[N, F]`` float32: numbers (NaN kept) and category codes (0 = unseen or
        missing), what the fitted models take."""
        check_is_fitted(self, "models_")
        columns, _ = _columns(X)
        validate_data(self, X, skip_check_array=True, reset=False)
        if len(columns) != self.n_features_in_:
            raise validation.ArgumentError(
                f"MixtureDensityRegressor: `X` has {len(columns)} columns; it was fitted with "
                f"{self.n_features_in_}.")
        return self._encoded(columns)

    def _encoded(self, columns):
        encoded = np.empty((len(columns[0][1]), len(columns)), np.float64)
        for index, ((name, values), kind) in enumerate(zip(columns, self.column_kinds_)):
            if kind == "numeric":
                numbers = _as_numbers(values)
                if numbers is None:
                    raise validation.ArgumentError(
                        f"MixtureDensityRegressor: column {name!r} was numeric in training; "
                        "it now holds non-numbers.")
                if np.isinf(numbers).any():
                    raise validation.ArgumentError(
                        f"MixtureDensityRegressor: column {name!r} holds inf; use NaN for a "
                        "missing value.")
                encoded[:, index] = numbers
            else:
                codes = {key: code for code, key in
                     enumerate(self.categories_[self.column_names_[index]], 1)}
                encoded[:, index] = [codes.get(key, 0) for key in _category_keys(values)]
        return encoded.astype("float32")

    def _encoder(self, encoded):
        numeric = [i for i, kind in enumerate(self.column_kinds_) if kind == "numeric"]
        mean, std, flagged = column_statistics(encoded[:, numeric])
        category = [i for i, kind in enumerate(self.column_kinds_) if kind == "category"]
        sizes = [len(self.categories_[self.column_names_[i]]) for i in category]
        return TableEncoder(numeric, mean, std, flagged, category, sizes)

    # --- fit ----------------------------------------------------------------------------

    def _targets(self, y, num_rows):
        try:
            targets = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise validation.ArgumentError(
                "MixtureDensityRegressor: `y` must hold numbers (NaN for a missing target); "
                f"received {np.asarray(y).dtype} values.") from None
        if targets.ndim not in (1, 2) or len(targets) != num_rows:
            raise validation.ArgumentError(
                f"MixtureDensityRegressor: `y` must be [N] or [N, D] with N = {num_rows} rows "
                f"of X; received shape {list(targets.shape)}.")
        return targets

    def fit(self, X, y, sample_weight=None):
        """Fits the model(s) to ``X`` and ``y``; returns ``self``."""
        if y is None:
            raise validation.ArgumentError("MixtureDensityRegressor requires y to be passed, "
                                           "but the target y is None.")
        columns, rows = _columns(X)
        validate_data(self, X, skip_check_array=True, reset=True)
        self.n_features_in_ = len(columns)
        if rows < 4:
            raise validation.ArgumentError(
                f"MixtureDensityRegressor needs at least 4 samples (2 to train on, 2 held out); "
                f"received {rows} sample{'s' if rows != 1 else ''} (n_samples = {rows}).")
        targets = self._targets(y, rows)
        self._one_target = targets.ndim == 1
        targets = targets[:, None] if self._one_target else targets
        self.n_targets_ = targets.shape[1]
        self._learn_columns(columns)
        encoded = self._encoded(columns)
        options = dict(num_components=self.num_components, covariance=self.covariance,
                       noise_levels=self.noise_levels,
                       validation_fraction=self.validation_fraction, units=self.units,
                       max_epochs=self.max_epochs, batch_size=self.batch_size,
                       learning_rate=self.learning_rate, patience=self.patience,
                       grid_targets=self.grid_targets, diag_shift=self.diag_shift,
                       sample_weight=sample_weight,
                       preprocessing=self._encoder(encoded), verbose=self.verbose)
        seed = validation.check_nonnegative_int(self.random_state, "random_state")
        members = validation.check_positive_int(self.members, "members")
        first = fit_tabular(encoded, targets, seed=seed, **options)
        fits = (fit_tabular_ensemble(encoded, targets, members=members, seed=seed,
                                     first=first, **options) if members > 1 else [first])
        self.models_ = [fit.model for fit in fits]
        self.fit_ = first
        return self

    # --- predictions ----------------------------------------------------------------------

    def predict_mixture(self, X):
        """One ``tfd.MixtureSameFamily`` with batch shape ``[N]`` and event shape ``[D]``
        (for ``members > 1`` the ensemble's mixture): ``condition``, ``marginalize``,
        ``sample``, summaries, scores and plots apply unchanged."""
        encoded = self.encode(X)
        return predict_mixture(self.models_ if len(self.models_) > 1 else self.models_[0],
                               encoded)

    def _shaped(self, values):
        values = np.asarray(values)
        return values[..., 0] if self._one_target else values

    def predict(self, X, return_std=False):
        """The mixture mean ``[N]`` (``[N, D]`` for several targets); with
        ``return_std=True`` also the per-dim standard deviation, the scikit-learn
        convention."""
        mixture = self.predict_mixture(X)
        mean = self._shaped(summaries.mean(mixture).numpy().astype(np.float64))
        if not return_std:
            return mean
        variance = np.diagonal(summaries.covariance(mixture).numpy(), axis1=-2, axis2=-1)
        return mean, self._shaped(np.sqrt(variance.astype(np.float64)))

    def predict_interval(self, X, coverage=0.9):
        """``[N, 2]`` (``[N, D, 2]``) lower and upper ends of each target dim's central
        interval holding ``coverage`` of the marginal mixture."""
        lower, upper = summaries.central_interval(self.predict_mixture(X), coverage)
        bounds = np.stack([lower.numpy(), upper.numpy()], axis=-1).astype(np.float64)
        return bounds[:, 0, :] if self._one_target else bounds

    def predict_quantiles(self, X, alpha):
        """``[N, Q]`` (``[N, D, Q]``) marginal quantiles at the probabilities ``alpha``."""
        probs = np.atleast_1d(np.asarray(alpha, dtype=np.float64))
        for prob in probs:
            validation.check_probability(float(prob), "alpha")
        values = np.moveaxis(summaries.quantile(self.predict_mixture(X), probs).numpy(), 0, -1)
        values = values.astype(np.float64)
        return values[:, 0, :] if self._one_target else values

    def score(self, X, y, sample_weight=None):
        """The mean log-likelihood per row (higher is better), in nats and the targets' units;
        a missing (NaN) target dim is marginalised out, a row with none observed left out.
        ``GridSearchCV`` and ``cross_val_score`` choose by it."""
        mixture = self.predict_mixture(X)
        targets = self._targets(y, int(mixture.batch_shape[0]))
        targets = targets[:, None] if targets.ndim == 1 else targets
        log_density = -np.asarray(scores.nll(mixture, targets, allow_missing=True))
        observed = ~np.all(np.isnan(targets), axis=1)
        weight = np.ones(len(targets)) if sample_weight is None else np.asarray(sample_weight)
        return float(np.sum(weight[observed] * log_density[observed])
                     / np.sum(weight[observed]))

    # --- saving without pickle -------------------------------------------------------------

    def save(self, path):
        """Writes the fitted estimator to ``path`` (a zip: each model's ``.keras`` file and
        the estimator's parameters and column vocabularies as JSON; no pickle)."""
        check_is_fitted(self, "models_")
        state = {"params": self.get_params(), "n_features_in_": self.n_features_in_,
                 "feature_names_in_": (list(map(str, self.feature_names_in_))
                                       if hasattr(self, "feature_names_in_") else None),
                 "n_targets_": self.n_targets_, "one_target": self._one_target,
                 "column_kinds_": self.column_kinds_, "column_names_": self.column_names_,
                 "categories_": [[name, values] for name, values in self.categories_.items()],
                 "members": len(self.models_)}
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("estimator.json", json.dumps(state))
            for index, model in enumerate(self.models_):
                member = f"{path}.member{index}.keras"
                model.save(member)
                archive.write(member, f"member{index}.keras")
                os.remove(member)

    @classmethod
    def load(cls, path):
        """The estimator :meth:`save` wrote to ``path`` (``.keras`` loading in safe mode)."""
        with zipfile.ZipFile(path) as archive:
            state = json.loads(archive.read("estimator.json"))
            estimator = cls(**{key: (tuple(value) if isinstance(value, list) else value)
                               for key, value in state["params"].items()})
            models = []
            for index in range(state["members"]):
                member = f"{path}.member{index}.keras"
                with open(member, "wb") as file:
                    file.write(archive.read(f"member{index}.keras"))
                try:
                    models.append(keras.saving.load_model(member, safe_mode=True))
                finally:
                    os.remove(member)
        estimator.models_ = models
        estimator.n_features_in_ = state["n_features_in_"]
        if state["feature_names_in_"] is not None:
            estimator.feature_names_in_ = np.asarray(state["feature_names_in_"], dtype=object)
        estimator.n_targets_ = state["n_targets_"]
        estimator._one_target = state["one_target"]
        estimator.column_kinds_ = state["column_kinds_"]
        estimator.column_names_ = state["column_names_"]
        estimator.categories_ = {name: values for name, values in state["categories_"]}
        return estimator

