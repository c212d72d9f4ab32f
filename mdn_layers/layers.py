"""Keras 3 front-end (the training path): :class:`MixtureDensity`, the layer that emits
mixture params.

Runs inside ``model.fit`` on every Keras backend (TensorFlow, JAX, PyTorch): it imports only
``keras`` and the shared maths (:mod:`mdn_layers.layout`) through ``keras.ops``. Keras 3
layers cannot return distributions, so the layer returns the params;
:class:`mdn_layers.MixtureNLL` scores them and :func:`mdn_layers.predict_mixture` turns them
into a TFP mixture (loading TensorFlow then).
"""

import keras
from keras import ops

from mdn_layers import _config, _keras_ops, _validation, adaptation, layout

_REDUCED_PRECISION = ("float16", "bfloat16")


@keras.saving.register_keras_serializable(package=_config.PACKAGE)
class MixtureDensity(_config.MixtureConfig, keras.layers.Layer):
    """Output layer of a mixture density network: features ``(..., F)`` -> params ``(..., P)``.

    A learned affine map to the params of a Gaussian mixture with ``num_components``
    components over ``event_size`` target dims. Any number of leading axes is allowed,
    so ``(batch, features)`` and ``(batch, time, features)`` both work. Train it with
    :class:`MixtureNLL`; turn its output into a distribution with :meth:`mixture`,
    :func:`mdn_layers.mixture_from_params` or :func:`mdn_layers.predict_mixture`.

    The bias starts with equal weights, means drawn from ``N(0, loc_spread^2)`` (so the
    components start apart) and every standard deviation equal to ``initial_scale``:
    suited to roughly standardised targets.

    **Raw targets:** call :meth:`adapt` on the training targets first (as with
    ``keras.layers.Normalization``). The layer then learns in standardised units inside and
    emits the params of the mixture in the targets' own units, so
    :class:`mdn_layers.MixtureNLL`, ``val_loss``, the metrics and
    :func:`mdn_layers.predict_mixture` are all in those units with no other change.

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
      target_loc, target_scale: ``[D]`` per-dim location and positive scale of the
        targets, for a head whose targets' statistics are known (what :meth:`adapt` sets;
        both or neither). ``None``: the params are in standardised units.
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
                 bias_regularizer=None, target_loc=None, target_scale=None, **kwargs):
        super().__init__(**kwargs)
        self._init_mixture_config(event_size, num_components, covariance, diag_shift)
        self._init_target_statistics(target_loc, target_scale)
        self.initial_scale, self.loc_spread = _validation.check_initialisation(
            initial_scale, loc_spread, self.diag_shift)
        self._loc_initializer = keras.initializers.RandomNormal(stddev=self.loc_spread)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)
        # A Keras mask on the input (padded timesteps) passes to the params, and from there
        # to MixtureNLL and the metrics, which leave masked steps out.
        self.supports_masking = True

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
        self._build_target_weights()
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: num_features})

    def _build_target_weights(self):
        if self.target_loc is None or getattr(self, "target_loc_weight", None) is not None:
            return
        self.target_loc_weight, self.target_scale_weight = (
            self.add_weight(name=name, shape=(self.event_size,), trainable=False,
                            initializer=keras.initializers.Constant(values))
            for name, values in (("target_loc", self.target_loc),
                                 ("target_scale", self.target_scale)))

    def _initial_bias(self, shape, dtype=None):
        if self._start is not None:
            centres, spreads = self._start
            return layout.initial_params(_keras_ops, self.event_size, self.num_components,
                                         self.covariance, ops.cast(centres, dtype), spreads, 0.0)
        locs = self._loc_initializer((self.num_components, self.event_size), dtype=dtype)
        return layout.initial_params(_keras_ops, self.event_size, self.num_components,
                                     self.covariance, locs, self.initial_scale, self.diag_shift)

    def adapt(self, y):
        """Learns each target dim's location and scale from ``y`` and starts the mixture there.

        Like ``keras.layers.Normalization.adapt``: call it on the training targets before
        training (before or after the layer is built). It stores the per-dim mean and
        standard deviation of ``y`` as non-trainable weights (saved with the model; NaN
        entries are missing values and are skipped) and sets a data-aware start: component
        means at k-means centres of the standardised targets (quantiles for ``D = 1``),
        component spreads from the points around each, equal weights. Afterwards the params
        describe the mixture in ``y``'s units: train on raw targets with
        :meth:`mdn_layers.MixtureNLL.for_layer` (or any ``MixtureNLL`` of this config);
        losses, metrics and :func:`mdn_layers.predict_mixture` are in those units. Calling it
        again restarts the head on the new targets (the kernel is kept).

        Args:
          y: targets ``[N, D]`` (``[N]`` for ``D = 1``; ``[N, T, D]`` sequence targets
            too), numbers or NaN; at least one observed value per dim. Seconds for a
            million rows (the start is fit to at most 20,000 of them).

        Returns:
          The layer.

        Example:

        >>> import numpy as np
        >>> head = MixtureDensity(event_size=1, num_components=3)
        >>> head = head.adapt(np.array([150_000.0, 210_000.0, 480_000.0, np.nan]))
        >>> round(head.target_loc[0])
        280000
        """
        stats = adaptation.target_statistics(y, self.event_size, self.num_components,
                                             self.covariance, name=f"{type(self).__name__}.adapt")
        self.target_loc, self.target_scale = tuple(stats.loc.tolist()), tuple(stats.scale.tolist())
        self._start = (stats.centres, stats.spreads)
        if self.built:
            self._build_target_weights()
            self.target_loc_weight.assign(stats.loc)
            self.target_scale_weight.assign(stats.scale)
            self.bias.assign(self._initial_bias(self.bias.shape, self.bias.dtype))
        return self

    def call(self, inputs):
        params = ops.add(ops.matmul(inputs, self.kernel), self.bias)
        if self.compute_dtype in _REDUCED_PRECISION:
            # Mixed precision: the projection runs in 16 bits, the mixture maths in 32.
            params = ops.cast(params, self.variable_dtype)
        if self.target_loc is not None:
            params = layout.rescale_params(
                _keras_ops, params, self.event_size, self.num_components, self.covariance,
                self.target_loc_weight, self.target_scale_weight)
        return params

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_params,)

    def compute_output_spec(self, inputs):
        dtype = (self.variable_dtype if self.compute_dtype in _REDUCED_PRECISION
                 else self.compute_dtype)
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=dtype)

    def get_config(self):
        config = super().get_config()
        config.update(self.mixture_config())
        config.update({
            "initial_scale": self.initial_scale,
            "loc_spread": self.loc_spread,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "target_loc": None if self.target_loc is None else list(self.target_loc),
            "target_scale": None if self.target_scale is None else list(self.target_scale),
        })
        return config
