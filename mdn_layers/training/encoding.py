"""Raw table columns into features, inside the model: :class:`TableEncoder`.

Keras 3 only (``keras.ops``), on every backend, saved with the model. Numeric columns are
imputed (a missing value becomes the column's mean, so 0 once normalised), flagged (one 0/1
feature per column that had missing values in training) and normalised; category columns
arrive as integer codes (``0``: unseen or missing, ``1..V``: the training categories) and leave
one-hot. The code of each category is the caller's (``mdn_layers.MixtureDensityRegressor``
keeps the vocabularies): Keras's string lookups run through TensorFlow only, not inside a JAX
or PyTorch model.
"""

import keras
import numpy as np
from keras import ops

from mdn_layers.core import validation
from mdn_layers.training.head import PACKAGE


def column_statistics(numeric):
    """``(mean [F], std [F], flagged [F] bool)`` of numeric columns ``[N, F]`` with NaN as
    missing: std 1 for a constant (or empty) column; ``flagged``: it had a missing value."""
    numeric = np.asarray(numeric, dtype=np.float64)
    observed = ~np.isnan(numeric)
    count = observed.sum(axis=0)
    mean = np.where(count > 0, np.nansum(numeric, axis=0) / np.maximum(count, 1), 0.0)
    centred = np.where(observed, numeric - mean, 0.0)
    std = np.sqrt((centred ** 2).sum(axis=0) / np.maximum(count, 1))
    std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
    return mean, std, ~observed.all(axis=0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TableEncoder(keras.layers.Layer):
    """Table rows ``[N, F]`` (numbers with NaN for missing; category codes) -> features.

    Args:
      numeric_columns: positions of the numeric columns.
      mean, std: ``[len(numeric_columns)]`` their training mean and (positive) standard
        deviation.
      flagged: ``[len(numeric_columns)]`` bools: the columns that get a missing indicator.
      category_columns: positions of the category-code columns.
      category_sizes: the number of training categories of each (codes ``1..V``; ``0`` and
        anything out of range or NaN is the reserved bucket).

    Output: ``[N, len(numeric) + sum(flagged) + sum(V + 1)]``: normalised numbers, missing
    indicators, one-hot categories.

    Example:

    >>> import keras, numpy as np
    >>> encoder = TableEncoder([0], [10.0], [2.0], [True], [1], [2])
    >>> features = encoder(np.array([[12.0, 1.0], [np.nan, 7.0]], "float32"))
    >>> keras.ops.convert_to_numpy(features).tolist()
    [[1.0, 0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 0.0]]
    """

    def __init__(self, numeric_columns, mean, std, flagged, category_columns, category_sizes,
                 **kwargs):
        super().__init__(**kwargs)
        self.numeric_columns = [int(c) for c in numeric_columns]
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.flagged = [bool(f) for f in flagged]
        self.category_columns = [int(c) for c in category_columns]
        self.category_sizes = [validation.check_nonnegative_int(int(v), "category_sizes")
                               for v in category_sizes]
        if not (len(self.mean) == len(self.std) == len(self.flagged)
                == len(self.numeric_columns)) or len(self.category_sizes) != len(
                    self.category_columns):
            raise validation.ArgumentError(
                "TableEncoder: one mean, std and flag per numeric column and one size per "
                "category column.")
        if not all(s > 0 for s in self.std):
            raise validation.ArgumentError("TableEncoder: `std` must be positive.")

    def call(self, inputs):
        inputs = ops.cast(inputs, self.compute_dtype)
        features = []
        if self.numeric_columns:
            numeric = ops.take(inputs, self.numeric_columns, axis=-1)
            missing = ops.isnan(numeric)
            mean = ops.convert_to_tensor(np.asarray(self.mean, self.compute_dtype))
            std = ops.convert_to_tensor(np.asarray(self.std, self.compute_dtype))
            features.append(ops.where(missing, 0.0, (numeric - mean) / std))
            flagged = [i for i, flag in enumerate(self.flagged) if flag]
            if flagged:
                features.append(ops.cast(ops.take(missing, flagged, axis=-1),
                                         self.compute_dtype))
        for column, size in zip(self.category_columns, self.category_sizes):
            code = inputs[..., column]
            known = ops.logical_not(ops.isnan(code)) & (code >= 1) & (code <= size)
            code = ops.cast(ops.where(known, code, 0.0), "int32")
            features.append(ops.one_hot(code, size + 1, dtype=self.compute_dtype))
        return ops.concatenate(features, axis=-1)

    def compute_output_shape(self, input_shape):
        width = (len(self.numeric_columns) + sum(self.flagged)
                 + sum(size + 1 for size in self.category_sizes))
        return tuple(input_shape[:-1]) + (width,)

    def get_config(self):
        config = super().get_config()
        config.update({"numeric_columns": self.numeric_columns, "mean": self.mean,
                       "std": self.std, "flagged": self.flagged,
                       "category_columns": self.category_columns,
                       "category_sizes": self.category_sizes})
        return config
