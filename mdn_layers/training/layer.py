"""Keras 3 front-end (the training path): :class:`MixtureDensity`, the layer that emits
mixture params.

Runs inside ``model.fit`` on every Keras backend (TensorFlow, JAX, PyTorch): it imports only
``keras`` and the shared maths (:mod:`mdn_layers.core.layout`) through ``keras.ops``. Keras 3
layers cannot return distributions, so the layer returns the params;
:class:`mdn_layers.MixtureNLL` scores them and :func:`mdn_layers.predict_mixture` turns them
into a TFP mixture (loading TensorFlow then).
"""

import keras
from keras import ops

from mdn_layers.core import layout, validation
from mdn_layers.training import keras_ops
from mdn_layers.training.head import PACKAGE, MixtureHead

_REDUCED_PRECISION = ("float16", "bfloat16")


@keras.saving.register_keras_serializable(package=PACKAGE)
class MixtureDensity(MixtureHead, keras.layers.Layer):
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
        keeps the density bounded when a component collapses onto a point. After
        :meth:`adapt` it counts in standardised units (``diag_shift * target_scale`` in
        the targets' units, so it scales with the targets) and is folded into the params:
        :meth:`mixture_config` then reports ``diag_shift=0`` for their readers.
      initial_scale: starting standard deviation of every component.
      loc_spread: standard deviation of the random starting means.
      kernel_initializer, kernel_regularizer, bias_regularizer: as in ``Dense``.
      target_loc, target_scale: ``[D]`` per-dim location and positive scale of the
        targets, for a head whose targets' statistics are known (what :meth:`adapt` sets;
        both or neither). ``None``: the params are in standardised units.
      scale_floor: a floor on every standard deviation, in target units: ``None`` (only
        ``diag_shift``), ``"grid"`` (set by :meth:`adapt` for target dims whose values sit
        on a grid: the grid step; 0 for the others) or ``[D]`` non-negative floats.
        For ``"full"`` it floors the Cholesky diagonal, so each dim's marginal standard
        deviation too; spherical heads use its largest entry.
      target_floor: the floor in force, ``[D]`` floats (what :meth:`adapt` resolves
        ``"grid"`` to; saved in the config).
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
                 bias_regularizer=None, target_loc=None, target_scale=None, scale_floor=None,
                 target_floor=None, **kwargs):
        super().__init__(**kwargs)
        self._init_mixture_config(event_size, num_components, covariance, diag_shift)
        self._init_target_statistics(target_loc, target_scale, scale_floor, target_floor)
        self.initial_scale, self.loc_spread = validation.check_initialisation(
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
        validation.reject_foreign_tensors(
            self, inputs, "tf_keras", "This is a Keras 3 layer; in a tf_keras model use "
            "mdn_layers.tfp_layers.MixtureDensity (or MixtureDistribution) with "
            "tfp_layers.negative_log_likelihood.")
        return super().__call__(inputs, *args, **kwargs)

    _ops = keras_ops

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

    def call(self, inputs):
        if not isinstance(inputs, keras.KerasTensor):  # a run (eager or traced), not a build
            self._ran_as = (self._target_loc is not None, self.target_floor)
        params = ops.add(ops.matmul(inputs, self.kernel), self.bias)
        if self.compute_dtype in _REDUCED_PRECISION:
            # Mixed precision: the projection runs in 16 bits, the mixture maths in 32.
            params = ops.cast(params, self.variable_dtype)
        return self._to_target_units(params)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_params,)

    def compute_output_spec(self, inputs):
        dtype = (self.variable_dtype if self.compute_dtype in _REDUCED_PRECISION
                 else self.compute_dtype)
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=dtype)

    def get_config(self):
        config = super().get_config()
        config.update(self.config_entries())
        config.update({
            "initial_scale": self.initial_scale,
            "loc_spread": self.loc_spread,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
        })
        config.update(self.target_statistics_config())
        return config
