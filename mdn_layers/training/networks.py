"""The recipe's network for tables: inputs normalised inside the model, input noise, one
hidden ReLU layer, a mixture head. Keras 3 only; runs on every backend."""

import keras
import numpy as np


def input_normalization(x):
    """A ``keras.layers.Normalization`` holding the mean and variance of ``x`` ``[N, F]``
    (computed in float64; a constant column gets variance 1, so it maps to 0)."""
    rows = np.asarray(x, dtype=np.float64)
    variance = rows.var(axis=0)
    variance = np.where(variance > 1e-12 * np.maximum(rows.mean(axis=0) ** 2, 1.0),
                        variance, 1.0)
    return keras.layers.Normalization(mean=rows.mean(axis=0), variance=variance)


def tabular_model(num_features, head, input_noise, units, normalization=None):
    """``Input -> [normalization] -> GaussianNoise(input_noise) -> Dense(units, relu) -> head``.

    The noise acts in training only, on normalised inputs.
    """
    layers = [keras.Input((num_features,))]
    if normalization is not None:
        layers.append(normalization)
    if input_noise:
        layers.append(keras.layers.GaussianNoise(input_noise))
    return keras.Sequential(layers + [keras.layers.Dense(units, activation="relu"), head])
