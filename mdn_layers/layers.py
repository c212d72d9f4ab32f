"""Keras 3 front-end: a layer that emits mixture params and the loss that scores them.

Keras 3 layers cannot return distributions, so :class:`MixtureDensity` returns the
params tensor and :class:`MixtureNLL` (and :func:`predict_mixture`) turn params into
the mixture through :mod:`mdn_layers.layout`.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

from mdn_layers import _validation, components, layout
from mdn_layers.conditioning import masked_log_prob

tfd = tfp.distributions
_PACKAGE = "mdn_layers"
_REDUCED_PRECISION = ("float16", "bfloat16")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MixtureDensity(layout.MixtureConfig, keras.layers.Layer):
    """Output layer of a mixture density network: features ``(..., F)`` -> params ``(..., P)``.

    A learned affine map to the params of a Gaussian mixture with ``num_components``
    components over ``event_size`` target dims. Any number of leading axes is allowed,
    so ``(batch, features)`` and ``(batch, time, features)`` both work. Train it with
    :class:`MixtureNLL`; turn its output into a distribution with :meth:`mixture`,
    :func:`mdn_layers.mixture_from_params` or :func:`mdn_layers.predict_mixture`.

    The bias starts with equal weights, means drawn from ``N(0, loc_spread^2)`` (so the
    components start apart) and every standard deviation equal to ``initial_scale``:
    suited to roughly standardised targets.

    Args:
      event_size: ``D``, number of target dims.
      num_components: ``K``, number of mixture components.
      covariance: ``"full"`` (default, lower-triangular scale), ``"diag"`` or
        ``"spherical"``.
      diag_shift: floor added to every standard deviation (Cholesky diagonal); it
        keeps the density bounded when a component collapses onto a point.
      initial_scale: starting standard deviation of every component.
      loc_spread: standard deviation of the random starting means.
      kernel_initializer, kernel_regularizer, bias_regularizer: as in ``Dense``.
      **kwargs: ``Layer`` arguments (``name``, ``dtype``, ...).

    Example:

    >>> import keras, mdn_layers
    >>> model = keras.Sequential([
    ...     keras.Input((1,)), keras.layers.Dense(32, activation="tanh"),
    ...     mdn_layers.MixtureDensity(event_size=2, num_components=5)])
    >>> model.compile("adam", loss=mdn_layers.MixtureNLL(event_size=2, num_components=5))
    """

    def __init__(self, event_size, num_components, covariance="full",
                 diag_shift=layout.DEFAULT_DIAG_SHIFT, initial_scale=1.0, loc_spread=1.0,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None,
                 bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self._init_mixture_config(event_size, num_components, covariance, diag_shift)
        self.initial_scale, self.loc_spread = _validation.check_initialisation(
            initial_scale, loc_spread, self.diag_shift)
        self._loc_initializer = keras.initializers.RandomNormal(stddev=self.loc_spread)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    @staticmethod
    def params_size(event_size, num_components, covariance="full"):
        """Width ``P`` of the params this layer emits (a Python int)."""
        return layout.params_size(event_size, num_components, covariance)

    def __call__(self, inputs, *args, **kwargs):
        _validation.reject_foreign_tensors(
            self, inputs, "tf_keras", "This is a Keras 3 layer; in a tf_keras model use "
            "mdn_layers.tfp_layers.MixtureDensity (or MixtureDistribution) with "
            "tfp_layers.negative_log_likelihood.")
        return super().__call__(inputs, *args, **kwargs)

    def build(self, input_shape):
        num_features = input_shape[-1]
        if num_features is None:
            raise ValueError("MixtureDensity needs a known last input axis (features); "
                             f"received input shape {input_shape}.")
        self.kernel = self.add_weight(
            name="kernel", shape=(num_features, self.num_params),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer)
        self.bias = self.add_weight(name="bias", shape=(self.num_params,),
                                    initializer=self._initial_bias,
                                    regularizer=self.bias_regularizer)
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: num_features})

    def _initial_bias(self, shape, dtype=None):
        locs = self._loc_initializer((self.num_components, self.event_size), dtype=dtype)
        return layout.initial_params(self.event_size, self.num_components, self.covariance,
                                     locs, self.initial_scale, self.diag_shift, dtype=dtype)

    def call(self, inputs):
        params = ops.add(ops.matmul(inputs, self.kernel), self.bias)
        if self.compute_dtype in _REDUCED_PRECISION:
            # Mixed precision: the projection runs in 16 bits, the mixture maths in 32.
            params = ops.cast(params, self.variable_dtype)
        return params

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_params,)

    def compute_output_spec(self, inputs):
        dtype = (self.variable_dtype if self.compute_dtype in _REDUCED_PRECISION
                 else self.compute_dtype)
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=dtype)

    def get_config(self):
        config = super().get_config()
        config.update(self._mixture_config())
        config.update({
            "initial_scale": self.initial_scale,
            "loc_spread": self.loc_spread,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
        })
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MixtureNLL(layout.MixtureConfig, keras.losses.Loss):
    """Negative log-likelihood (nats) of targets under the mixture the params describe.

    Returns the **per-sample** NLL ``-log p(y)`` (the ``2*pi`` constant included), so
    ``sample_weight`` and masks act per sample before Keras reduces. A negative value is
    normal: densities can exceed 1.

    Args:
      event_size, num_components, covariance, diag_shift: as in :class:`MixtureDensity`
        (they must match the layer).
      allow_missing: if True, NaN entries of ``y_true`` are missing values and each
        sample's NLL is the marginal NLL of its observed dims (0 for a row with no
        observed dim). Batched: one Cholesky per sample and component.
      **kwargs: ``Loss`` arguments (``reduction``, ``name``, ``dtype``).

    Example:

    >>> loss = MixtureNLL(event_size=2, num_components=5)
    >>> model.compile(optimizer="adam", loss=loss)
    """

    def __init__(self, event_size, num_components, covariance="full",
                 diag_shift=layout.DEFAULT_DIAG_SHIFT, allow_missing=False,
                 name="mixture_nll", dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        self._init_mixture_config(event_size, num_components, covariance, diag_shift)
        self.allow_missing = bool(allow_missing)
        # With no dtype given the loss computes in the params' dtype (float32 or
        # float64), so a float64 model gets a float64 likelihood.
        self._dtype_follows_params = dtype is None

    def __call__(self, y_true, y_pred, sample_weight=None):
        if isinstance(y_pred, tfd.Distribution):
            raise TypeError(
                "MixtureNLL expects params from mdn_layers.MixtureDensity, but the model "
                f"output is a distribution ({type(y_pred).__name__}). For tf_keras models "
                "whose output is a distribution use mdn_layers.tfp_layers."
                "negative_log_likelihood.")
        params_dtype = getattr(y_pred, "dtype", None)
        if self._dtype_follows_params and params_dtype in (tf.float32, tf.float64, "float32",
                                                            "float64"):
            self._dtype = tf.as_dtype(params_dtype).name
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        y_true = self._check_targets(y_true, y_pred)
        y_pred = _validation.check_finite(
            y_pred, "MixtureNLL: the params (model output) contain NaN or inf: the inputs "
            "are not finite or training diverged.")
        if self.allow_missing:
            return -masked_log_prob(self._parts(y_pred), y_true)
        y_true = _validation.check_finite(
            y_true, "MixtureNLL: y_true contains NaN or inf. Pass allow_missing=True to "
            "treat NaN targets as missing values.")
        return -components.log_prob(self._parts(y_pred), y_true)

    def _check_targets(self, y_true, y_pred):
        """Static shape checks; a ``(batch,)`` target is accepted when ``event_size == 1``."""
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = self._targets_like(y_true, y_pred)
        if y_true.shape.rank is not None and (
                y_true.shape.rank == 0 or y_true.shape[-1] not in (None, self.event_size)):
            raise ValueError(
                f"MixtureNLL: y_true last axis has size "
                f"{y_true.shape[-1] if y_true.shape.rank else 'none (scalar)'}, but "
                f"event_size={self.event_size}; y_true shape {y_true.shape}.")
        if y_pred.shape[-1] not in (None, self.num_params):
            raise ValueError(
                f"MixtureNLL: y_pred last axis has size {y_pred.shape[-1]}, but "
                f"event_size={self.event_size}, num_components={self.num_components}, "
                f"covariance={self.covariance!r} need params_size={self.num_params}.")
        return y_true

    def get_config(self):
        config = super().get_config()
        config.update(self._mixture_config())
        config["allow_missing"] = self.allow_missing
        if self._dtype_follows_params:
            config["dtype"] = None
        return config


def _find_mixture_layer(model, layer_type):
    for layer in reversed(model.layers):
        if isinstance(layer, layer_type):
            return layer
        if hasattr(layer, "layers"):
            found = _find_mixture_layer(layer, layer_type)
            if found is not None:
                return found
    return None


def _is_tf_keras_model(model):
    return any(cls.__module__.startswith("tf_keras") for cls in type(model).__mro__)


def predict_mixture(model, x, batch_size=None):
    """Runs ``model`` over ``x`` in batches and returns one batched mixture (not samples).

    Args:
      model: a Keras 3 model whose output is the params of a :class:`MixtureDensity`
        layer, or a tf_keras model whose output is a
        :class:`mdn_layers.tfp_layers.MixtureDistribution`.
      x: model inputs (anything ``model.predict`` accepts).
      batch_size: ``model.predict`` batch size (default 32, as in Keras).

    Returns:
      ``tfd.MixtureSameFamily`` with batch shape ``[N, ...]`` (one mixture per input).

    Example:

    >>> mixture = predict_mixture(model, x_test)
    >>> mixture.mean().shape
    TensorShape([N, D])
    """
    if _is_tf_keras_model(model):
        from mdn_layers import tfp_layers  # the only module that imports tf_keras
        return tfp_layers.predict_mixture(model, x, batch_size=batch_size)
    if not isinstance(model, keras.Model):
        raise TypeError("predict_mixture: `model` must be a Keras model; received "
                        f"{type(model).__name__}.")
    head = _find_mixture_layer(model, MixtureDensity)
    if head is None:
        raise ValueError("predict_mixture: the model has no MixtureDensity layer. For a "
                         "model emitting params some other way, call "
                         "mdn_layers.mixture_from_params(model.predict(x), ...).")
    params = model.predict(x, batch_size=batch_size, verbose=0)
    if isinstance(params, (list, tuple, dict)):
        raise ValueError("predict_mixture: the model has several outputs; call "
                         "mdn_layers.mixture_from_params on the params output instead.")
    if params.shape[-1] != head.num_params:
        raise ValueError(f"predict_mixture: the model output has last axis "
                         f"{params.shape[-1]}, but its MixtureDensity layer "
                         f"'{head.name}' emits {head.num_params} params.")
    return head.mixture(tf.convert_to_tensor(np.asarray(params)))
