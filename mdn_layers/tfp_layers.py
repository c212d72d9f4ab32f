"""tf_keras front-end: layers whose output *is* the mixture, in the ``tfp.layers`` idiom.

``tfp.layers.DistributionLambda`` only works with tf_keras (Keras 2). The layers here are
``DistributionLambda`` subclasses built on the same core as the Keras 3 front-end, so they
give the same mixtures — and, unlike ``tfp.layers.MixtureSameFamily``, whole models save
and load (``.keras`` with ``safe_mode=True``, ``.h5``) with no ``custom_objects``, and
``model.predict`` returns the mixture mean rather than random samples by default.

This is the only module of the library that imports ``tf_keras``.

Example:

>>> import tf_keras
>>> from mdn_layers import tfp_layers
>>> model = tf_keras.Sequential([
...     tf_keras.Input((1,)),
...     tf_keras.layers.Dense(32, activation="tanh"),
...     tf_keras.layers.Dense(tfp_layers.MixtureDistribution.params_size(2, 4)),
...     tfp_layers.MixtureDistribution(event_size=2, num_components=4)])
>>> model.compile("adam", loss=tfp_layers.negative_log_likelihood)
"""

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from mdn_layers.analysis import mixtures, summaries, tf_ops
from mdn_layers.core import layout, validation
from mdn_layers.prediction import predict_mixture  # noqa: F401 - also the tf_keras entry
from mdn_layers.training.head import PACKAGE, MixtureConfig, MixtureHead

_CONVERT_TO_TENSOR_FNS = {
    "mean": tfp.distributions.Distribution.mean,
    "sample": tfp.distributions.Distribution.sample,
    "mode": summaries.mode,
}


def _convert_to_tensor_fn_name(convert_to_tensor_fn):
    """The registered name of a convert-to-tensor function (a name or one of the functions)."""
    for name, fn in _CONVERT_TO_TENSOR_FNS.items():
        if convert_to_tensor_fn == name or convert_to_tensor_fn is fn:
            return name
    raise ValueError(f"`convert_to_tensor_fn` must be one of {list(_CONVERT_TO_TENSOR_FNS)} "
                     "(or tfd.Distribution.mean / .sample) so the layer can be saved; "
                     f"received {convert_to_tensor_fn!r}.")


@tf_keras.saving.register_keras_serializable(package=PACKAGE)
class MixtureDistribution(MixtureConfig, tfp.layers.DistributionLambda):
    """``DistributionLambda`` turning params ``[..., P]`` into a Gaussian mixture.

    With default options a drop-in replacement for
    ``tfp.layers.MixtureSameFamily(K, tfp.layers.MultivariateNormalTriL(D))``: the same
    params layout and the same distribution for the same params (weights trained with TFP's
    layer load into a model using this one), but whole models save and load.

    Args:
      event_size: ``D``, number of target dims.
      num_components: ``K``, number of mixture components.
      covariance: ``"full"`` (default), ``"diag"`` or ``"spherical"``.
      diag_shift: floor added to every standard deviation (Cholesky diagonal).
      convert_to_tensor_fn: what the layer's tensor value (and so ``model.predict``) is:
        ``"mean"`` (default), ``"sample"`` (TFP's default) or ``"mode"``.
      **kwargs: ``Layer`` arguments (``name``, ``dtype``, ...).
    """

    def __init__(self, event_size, num_components, covariance="full",
                 diag_shift=layout.DEFAULT_DIAG_SHIFT, convert_to_tensor_fn="mean", **kwargs):
        convert_name = _convert_to_tensor_fn_name(convert_to_tensor_fn)
        kwargs.pop("make_distribution_fn", None)
        # The mixture is built at call time from this layer's attributes (set below).
        super().__init__(lambda inputs: mixtures.mixture_from_params(
            self.params(inputs), **self.mixture_config()),
                         convert_to_tensor_fn=_CONVERT_TO_TENSOR_FNS[convert_name], **kwargs)
        self._init_mixture_config(event_size, num_components, covariance, diag_shift)
        self.convert_to_tensor_fn_name = convert_name

    @staticmethod
    def params_size(event_size, num_components, covariance="full"):
        """Width ``P`` of the params this layer takes (a Python int)."""
        return layout.params_size(event_size, num_components, covariance)

    def params(self, inputs):
        """The mixture params ``[..., P]`` for this layer's inputs (here: the inputs)."""
        return inputs

    def features_model(self, model):
        """A tf_keras model from ``model``'s inputs to this layer's input (what
        :func:`mdn_layers.predict_mixture` runs before :meth:`params`)."""
        try:
            return tf_keras.Model(model.inputs, self.input)
        except (AttributeError, ValueError) as error:
            raise ValueError("predict_mixture needs a functional or Sequential tf_keras model "
                             f"whose {self.name!r} layer has a single input.") from error

    def __call__(self, inputs, *args, **kwargs):
        validation.reject_foreign_tensors(
            self, inputs, "keras", "This is a tf_keras layer; in a Keras 3 model use "
            "mdn_layers.MixtureDensity with mdn_layers.MixtureNLL. tf_keras models start "
            "from tf_keras.Input.")
        return super().__call__(inputs, *args, **kwargs)

    def get_config(self):
        # Skip DistributionLambda/Lambda.get_config, which pickle Python functions.
        config = tf_keras.layers.Layer.get_config(self)
        config.update(self.config_entries())
        config["convert_to_tensor_fn"] = self.convert_to_tensor_fn_name
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@tf_keras.saving.register_keras_serializable(package=PACKAGE)
class MixtureDensity(MixtureHead, MixtureDistribution):
    """Features ``(..., F)`` -> Gaussian mixture: a learned projection plus the mixture.

    The tf_keras twin of :class:`mdn_layers.MixtureDensity` (same signature, same
    initialisation), whose output is the distribution itself.

    Args:
      event_size, num_components, covariance, diag_shift, convert_to_tensor_fn: as in
        :class:`MixtureDistribution`.
      initial_scale, loc_spread, kernel_initializer, target_loc, target_scale, scale_floor,
        target_floor: as in
        :class:`mdn_layers.MixtureDensity`; :meth:`adapt` works as there (raw targets,
        mixtures in their units).
    """
    _ops = tf_ops

    def __init__(self, event_size, num_components, covariance="full",
                 diag_shift=layout.DEFAULT_DIAG_SHIFT, initial_scale=1.0, loc_spread=1.0,
                 kernel_initializer="glorot_uniform", convert_to_tensor_fn="mean",
                 target_loc=None, target_scale=None, scale_floor=None, target_floor=None,
                 **kwargs):
        super().__init__(event_size, num_components, covariance, diag_shift,
                         convert_to_tensor_fn=convert_to_tensor_fn, **kwargs)
        self._init_target_statistics(target_loc, target_scale, scale_floor, target_floor)
        self.initial_scale, self.loc_spread = validation.check_initialisation(
            initial_scale, loc_spread, self.diag_shift)
        self._loc_initializer = tf_keras.initializers.RandomNormal(stddev=self.loc_spread)
        self.kernel_initializer = tf_keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        num_features = tf.TensorShape(input_shape)[-1]
        if num_features is None:
            raise ValueError("MixtureDensity needs a known last input axis (features); "
                             f"received input shape {input_shape}.")
        self.kernel = self.add_weight("kernel", shape=(num_features, self.num_params),
                                      initializer=self.kernel_initializer)
        self.bias = self.add_weight("bias", shape=(self.num_params,),
                                    initializer=self._initial_bias)
        self._build_target_weights()
        super().build(input_shape)

    def params(self, inputs):
        inputs = tf.convert_to_tensor(inputs, self.kernel.dtype)
        if not _is_model_construction(inputs):  # a run (eager or traced): adapt is now late
            self._ran_as = (self._target_loc is not None, self.target_floor)
        return self._to_target_units(
            tf.linalg.matvec(self.kernel, inputs, transpose_a=True) + self.bias)

    def get_config(self):
        config = super().get_config()
        config.update({"initial_scale": self.initial_scale, "loc_spread": self.loc_spread,
                       "kernel_initializer":
                           tf_keras.initializers.serialize(self.kernel_initializer)})
        config.update(self.target_statistics_config())
        return config


def _is_model_construction(tensor):
    """Whether ``tensor`` lives in the scratch graph tf_keras traces a layer in while a
    functional or sequential model is put together (not a run of the model)."""
    graph = getattr(tensor, "graph", None)  # eager tensors have none
    return getattr(graph, "name", "").endswith("_scratch_graph")


@tf_keras.saving.register_keras_serializable(package=PACKAGE,
                                             name="negative_log_likelihood")
def negative_log_likelihood(y_true, distribution):
    """Per-sample NLL ``-distribution.log_prob(y_true)`` in nats: the loss for these layers."""
    if not hasattr(distribution, "log_prob"):
        raise TypeError("negative_log_likelihood expects the model output to be a "
                        "distribution (a tfp_layers.MixtureDistribution output); received "
                        f"{type(distribution).__name__}. For a Keras 3 params model use "
                        "mdn_layers.MixtureNLL.")
    y_true = tf.cast(y_true, distribution.dtype)
    event_shape = distribution.event_shape
    if (event_shape.rank == 1 and y_true.shape.rank is not None
            and (y_true.shape.rank == 0 or y_true.shape[-1] not in (None, event_shape[0]))):
        raise ValueError(f"negative_log_likelihood: y_true last axis has size "
                         f"{y_true.shape[-1] if y_true.shape.rank else 'none (scalar)'}, but "
                         f"the distribution's event size is {event_shape[0]}; y_true shape "
                         f"{y_true.shape}.")
    batch_shape = distribution.batch_shape
    if event_shape.rank == 1 and y_true.shape.rank is not None and batch_shape.rank is not None:
        leading = y_true.shape[:-1]
        if leading.rank != batch_shape.rank or not leading.is_compatible_with(batch_shape):
            # Broadcasting here would score every target against every prediction.
            raise ValueError(f"negative_log_likelihood: y_true shape {y_true.shape} does not "
                             f"match the distribution's batch shape {batch_shape} plus its "
                             f"event shape {event_shape}.")
    y_true = tf_ops.check_finite(y_true, "negative_log_likelihood: y_true contains NaN or "
                                  "inf.")
    return -distribution.log_prob(y_true)
