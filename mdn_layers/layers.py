"""Keras 3 front-end (the training path): a layer that emits mixture params, the loss that
scores them, and :func:`predict_mixture`.

Runs inside ``model.fit`` on every Keras backend (TensorFlow, JAX, PyTorch): it imports only
``keras`` and the shared maths (:mod:`mdn_layers.layout`, :mod:`mdn_layers.gaussian`) through
``keras.ops``. Keras 3 layers cannot return distributions, so :class:`MixtureDensity` returns
the params and :func:`predict_mixture` turns them into a TFP mixture (loading TensorFlow then).
"""

import keras
from keras import ops

from mdn_layers import _keras_ops, _validation, gaussian, layout

_PACKAGE = "mdn_layers"
_REDUCED_PRECISION = ("float16", "bfloat16")
_FULL_PRECISION = ("float32", "float64")


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
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: num_features})

    def _initial_bias(self, shape, dtype=None):
        locs = self._loc_initializer((self.num_components, self.event_size), dtype=dtype)
        return layout.initial_params(_keras_ops, self.event_size, self.num_components,
                                     self.covariance, locs, self.initial_scale, self.diag_shift)

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


def check_finite(tensor, message):
    """Returns ``tensor``, raising ``ValueError(message)`` if it holds NaN or inf.

    Eager tensors (PyTorch, eager TensorFlow) are checked at once; TensorFlow graphs get an
    assertion (``InvalidArgumentError`` when run). Compiled code cannot raise: XLA (TF and
    JAX ``jit_compile=True``) drops the check, so use ``keras.callbacks.TerminateOnNaN``.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from mdn_layers import _tf_ops  # TensorFlow is the backend: loaded already
        return _tf_ops.check_finite(tensor, message)
    all_finite = ops.all(ops.isfinite(tensor))
    if backend == "jax":
        import jax
        if isinstance(all_finite, jax.core.Tracer):
            return tensor
    if not bool(all_finite):
        raise ValueError(message)
    return tensor


def keras_mask(tensor):
    """The Keras mask attached to ``tensor`` (``[...]`` bool), or None."""
    try:
        from keras.src.backend import get_keras_mask
    except ImportError:  # pragma: no cover - older Keras 3 releases
        return getattr(tensor, "_keras_mask", None)
    return get_keras_mask(tensor)


class TargetsMixin(layout.MixtureConfig):
    """Target handling shared by :class:`MixtureNLL` and the metrics."""

    def _targets_like(self, y_true, y_pred, mask=None):
        """``y_true`` checked and shaped like ``y_pred`` ``[..., P]`` -> ``[..., D]``.

        A ``(batch,)`` target is accepted when ``event_size == 1``. Masked steps
        (``mask`` False) get zero targets, so NaN padding there cannot reach the maths.
        """
        name = type(self).__name__
        y_true = ops.convert_to_tensor(y_true)
        if self.event_size == 1 and len(y_true.shape) == len(y_pred.shape) - 1:
            y_true = ops.expand_dims(y_true, -1)
        if len(y_true.shape) == 0 or y_true.shape[-1] not in (None, self.event_size):
            raise ValueError(
                f"{name}: y_true last axis has size "
                f"{y_true.shape[-1] if len(y_true.shape) else 'none (scalar)'}, but "
                f"event_size={self.event_size}; y_true shape {tuple(y_true.shape)}.")
        if y_pred.shape[-1] not in (None, self.num_params):
            raise ValueError(
                f"{name}: y_pred last axis has size {y_pred.shape[-1]}, but "
                f"event_size={self.event_size}, num_components={self.num_components}, "
                f"covariance={self.covariance!r} need params_size={self.num_params}.")
        y_true = ops.cast(y_true, y_pred.dtype)
        if mask is not None:
            y_true = ops.where(ops.expand_dims(ops.cast(mask, "bool"), -1), y_true,
                               ops.zeros_like(y_true))
        return y_true

    def _log_prob(self, y_true, parts):
        """``[...]`` log density of ``y_true`` under the split params ``parts`` (observed dims
        only with ``allow_missing``)."""
        log_weights, loc, scale = parts
        diagonal = self.covariance != "full"
        if self.allow_missing:
            return gaussian.observed_log_prob(_keras_ops, log_weights, loc, scale, diagonal,
                                              y_true)
        return gaussian.mixture_log_prob(_keras_ops, log_weights, loc, scale, diagonal, y_true)

    def _check_finite_targets(self, y_true):
        """NaN means missing only with ``allow_missing``; inf is never a valid target."""
        name = type(self).__name__
        if self.allow_missing:
            missing = ops.isnan(y_true)
            present = check_finite(
                ops.where(missing, ops.zeros_like(y_true), y_true),
                f"{name}: y_true contains inf (NaN marks a missing value with "
                "allow_missing=True; inf is not a value).")
            return ops.where(missing, y_true, present)
        return check_finite(
            y_true, f"{name}: y_true contains NaN or inf. Pass allow_missing=True to "
            "treat NaN targets as missing values.")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MixtureNLL(TargetsMixin, keras.losses.Loss):
    """Negative log-likelihood (nats) of targets under the mixture the params describe.

    Returns the **per-sample** NLL ``-log p(y)`` (the ``2*pi`` constant included), so
    ``sample_weight`` and masks act per sample before Keras reduces: a Keras mask on the
    model output (from ``Masking`` or ``mask_zero`` upstream of :class:`MixtureDensity`)
    leaves masked steps out of the mean, NaN padding included. A negative value is normal:
    densities can exceed 1. Runs on every Keras backend.

    Args:
      event_size, num_components, covariance, diag_shift: as in :class:`MixtureDensity`
        (they must match the layer; :meth:`for_layer` copies them).
      allow_missing: if True, NaN entries of ``y_true`` are missing values and each
        sample's NLL is the marginal NLL of its observed dims (0 for a row with no
        observed dim). Batched: one Cholesky per sample and component. ``inf`` targets
        still raise.
      **kwargs: ``Loss`` arguments (``reduction``, ``name``, ``dtype``).

    Example:

    >>> head = MixtureDensity(event_size=2, num_components=5)
    >>> loss = MixtureNLL.for_layer(head)      # same as MixtureNLL(2, 5)
    >>> loss.event_size, loss.num_components, loss.covariance
    (2, 5, 'full')
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

    @classmethod
    def for_layer(cls, layer, **kwargs):
        """The loss for a :class:`MixtureDensity` ``layer``: its config, so they cannot differ."""
        if not isinstance(layer, MixtureDensity):
            raise TypeError("MixtureNLL.for_layer expects an mdn_layers.MixtureDensity layer; "
                            f"received {type(layer).__name__}.")
        return cls(**layer._mixture_config(), **kwargs)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if hasattr(y_pred, "log_prob"):
            raise TypeError(
                "MixtureNLL expects params from mdn_layers.MixtureDensity, but the model "
                f"output is a distribution ({type(y_pred).__name__}). For tf_keras models "
                "whose output is a distribution use mdn_layers.tfp_layers."
                "negative_log_likelihood.")
        params_dtype = keras.backend.standardize_dtype(getattr(y_pred, "dtype", None))
        if self._dtype_follows_params and params_dtype in _FULL_PRECISION:
            self._dtype = params_dtype
        mask = keras_mask(y_pred)
        if mask is not None:
            y_true = self._targets_like(y_true, ops.convert_to_tensor(y_pred), mask)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        y_true = self._targets_like(y_true, y_pred)
        y_pred = check_finite(
            y_pred, "MixtureNLL: the params (model output) contain NaN or inf: the inputs "
            "are not finite or training diverged.")
        y_true = self._check_finite_targets(y_true)
        return -self._log_prob(y_true, self._split(_keras_ops, y_pred))

    def get_config(self):
        config = super().get_config()
        config.update(self._mixture_config())
        config["allow_missing"] = self.allow_missing
        if self._dtype_follows_params:
            config["dtype"] = None
        return config


DEFAULT_PREDICT_BATCH_SIZE = 1024


def _output_head(model):
    """The :class:`MixtureDensity` layer whose output is ``model``'s output, or None."""
    if isinstance(model, MixtureDensity):
        return model
    outputs = getattr(model, "outputs", None)
    if outputs is not None:  # functional and Sequential models
        if len(outputs) != 1:
            raise ValueError("predict_mixture: the model has several outputs; call "
                             "mdn_layers.mixture_from_params on the params output instead.")
        history = getattr(outputs[0], "_keras_history", None)
        producer = history[0] if history else None
        return _output_head(producer) if isinstance(producer, keras.Model) else (
            producer if isinstance(producer, MixtureDensity) else None)
    heads = [layer for layer in model._flatten_layers(include_self=False)
             if isinstance(layer, MixtureDensity)]
    return heads[0] if len(heads) == 1 else None  # a subclassed model: one head or none


def _is_tf_keras_model(model):
    return any(cls.__module__.startswith("tf_keras") for cls in type(model).__mro__)


def predict_mixture(model, x, batch_size=None):
    """Runs ``model`` over ``x`` in batches and returns one batched mixture (not samples).

    Works for models trained on any Keras backend; the mixture is a TensorFlow Probability
    distribution (TensorFlow loads on first call).

    Args:
      model: a Keras 3 model whose output is the params of a :class:`MixtureDensity`
        layer (that layer's output must be the model's output), or a tf_keras model whose
        output is a :class:`mdn_layers.tfp_layers.MixtureDistribution`.
      x: model inputs (anything ``model.predict`` accepts).
      batch_size: rows per ``model.predict`` batch (default 1024; memory grows with it).

    Returns:
      ``tfd.MixtureSameFamily`` with batch shape ``[N, ...]`` (one mixture per input).

    Raises:
      ValueError: the model's output is not a :class:`MixtureDensity` layer's params, or
        the model was compiled with a :class:`MixtureNLL` whose config differs from the
        layer's (the loss and the decoding would disagree).

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((1,)), MixtureDensity(2, 3)])
    >>> mixture = predict_mixture(model, np.zeros((5, 1), "float32"))
    >>> mixture.batch_shape, mixture.event_shape
    (TensorShape([5]), TensorShape([2]))
    """
    if batch_size is None:
        batch_size = DEFAULT_PREDICT_BATCH_SIZE
    batch_size = _validation.check_positive_int(batch_size, "batch_size")
    if _is_tf_keras_model(model):
        from mdn_layers import tfp_layers  # the only module that imports tf_keras
        return tfp_layers.predict_mixture(model, x, batch_size=batch_size)
    if not isinstance(model, keras.Model):
        raise TypeError("predict_mixture: `model` must be a Keras model; received "
                        f"{type(model).__name__}.")
    head = _output_head(model)
    if head is None:
        raise ValueError("predict_mixture: the model's output is not the output of a "
                         "MixtureDensity layer. For a model emitting params some other way, "
                         "call mdn_layers.mixture_from_params(model.predict(x), ...).")
    check_loss_matches(model, head)

    def checked(chunks):
        for params in chunks:
            if params.shape[-1] != head.num_params:
                raise ValueError(f"predict_mixture: the model output has last axis "
                                 f"{params.shape[-1]}, but its MixtureDensity layer "
                                 f"'{head.name}' emits {head.num_params} params.")
            yield params

    from mdn_layers import components  # the analysis path: loads TensorFlow
    return components.mixture_from_param_chunks(
        checked(_predict_chunks(model, x, batch_size, head.num_params)),
        **head._mixture_config())


# predict_mixture predicts this many bytes of params (float32) per model.predict call.
PREDICT_CHUNK_BYTES = 2**27


def _predict_chunks(model, x, batch_size, num_params):
    """Yields ``model.predict`` of consecutive row chunks of ``x`` (numpy params).

    Each chunk holds about ``PREDICT_CHUNK_BYTES`` of params (whole batches), so the caller
    can turn it into a mixture before the next one is predicted: neither ``model.predict``'s
    per-batch copies nor a params array for every row are ever held at once. Inputs that
    cannot be sliced by rows (datasets, generators) are predicted whole.
    """
    leaves = keras.tree.flatten(x)
    sizes = {leaf.shape[0] if len(getattr(leaf, "shape", ())) else None for leaf in leaves}
    if not leaves or len(sizes) != 1 or None in sizes:
        yield model.predict(x, batch_size=batch_size, verbose=0)
        return
    rows = sizes.pop()
    chunk = batch_size * max(1, PREDICT_CHUNK_BYTES // (4 * num_params * batch_size))
    for start in range(0, rows, chunk):
        part = keras.tree.map_structure(lambda leaf: leaf[start:start + chunk], x)
        yield model.predict(part, batch_size=batch_size, verbose=0)


def check_loss_matches(model, head):
    """Raises if ``model`` was compiled with a :class:`MixtureNLL` whose config differs from
    ``head``'s: a different layout of the same width trains silently but decodes wrongly."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, MixtureNLL) and loss._mixture_config() != head._mixture_config():
        raise ValueError(
            f"The model's MixtureNLL config {loss._mixture_config()} differs from its "
            f"MixtureDensity layer '{head.name}' config {head._mixture_config()}; build the "
            "loss with MixtureNLL.for_layer(layer).")
