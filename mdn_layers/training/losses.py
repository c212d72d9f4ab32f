"""The training loss: :class:`MixtureNLL`, the per-sample negative log-likelihood of the
params a :class:`mdn_layers.MixtureDensity` layer emits.

Keras 3 only (``keras.ops``), on every backend; the maths is :mod:`mdn_layers.gaussian`.
"""

import keras
from keras import ops

from mdn_layers.core import layout, validation
from mdn_layers.training import keras_ops
from mdn_layers.training.head import PACKAGE
from mdn_layers.training.layer import MixtureDensity
from mdn_layers.training.targets import TargetsMixin, check_finite, keras_mask

_FULL_PRECISION = ("float32", "float64")


@keras.saving.register_keras_serializable(package=PACKAGE)
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
        self.allow_missing = validation.check_bool(allow_missing, "allow_missing")
        # With no dtype given the loss computes in the params' dtype (float32 or
        # float64), so a float64 model gets a float64 likelihood.
        self._dtype_follows_params = dtype is None

    @classmethod
    def for_layer(cls, layer, **kwargs):
        """The loss for a :class:`MixtureDensity` ``layer``: its config, so they cannot differ."""
        if not isinstance(layer, MixtureDensity):
            raise TypeError("MixtureNLL.for_layer expects an mdn_layers.MixtureDensity layer; "
                            f"received {type(layer).__name__}.")
        return cls(**layer.mixture_config(), **kwargs)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if hasattr(y_pred, "log_prob"):
            raise TypeError(
                "MixtureNLL expects params from mdn_layers.MixtureDensity, but the model "
                f"output is a distribution ({type(y_pred).__name__}). For tf_keras models "
                "whose output is a distribution use mdn_layers.tfp_layers."
                "negative_log_likelihood.")
        params_dtype = keras.backend.standardize_dtype(getattr(y_pred, "dtype", None))
        mask = keras_mask(y_pred)
        if mask is not None:
            y_true = self._targets_like(y_true, ops.convert_to_tensor(y_pred), mask)
        if not (self._dtype_follows_params and params_dtype in _FULL_PRECISION):
            return super().__call__(y_true, y_pred, sample_weight=sample_weight)
        # This call computes in the params' dtype; the loss object keeps its own, so one
        # loss shared by a float32 and a float64 model serves each in its dtype.
        own_dtype, self._dtype = self._dtype, params_dtype
        try:
            return super().__call__(y_true, y_pred, sample_weight=sample_weight)
        finally:
            self._dtype = own_dtype

    def call(self, y_true, y_pred):
        y_true = self._targets_like(y_true, y_pred)
        y_pred = check_finite(
            y_pred, "MixtureNLL: the params (model output) contain NaN or inf: the inputs "
            "are not finite or training diverged.")
        y_true = self._check_finite_targets(y_true)
        return -self._log_prob(y_true, self.split(keras_ops, y_pred))

    def get_config(self):
        config = super().get_config()
        config.update(self.mixture_config())
        config["allow_missing"] = self.allow_missing
        # Keras's own config leaves the dtype out: a float64 loss would load as float32.
        config["dtype"] = None if self._dtype_follows_params else self.dtype
        return config


def mixture_nll(y_true, y_pred, event_size, num_components, covariance="full",
                diag_shift=layout.DEFAULT_DIAG_SHIFT, allow_missing=False):
    """Per-sample NLL ``[...]`` in nats of ``y_true`` ``[..., D]`` under the params
    ``y_pred`` ``[..., P]``: the function :class:`MixtureNLL` reduces (as
    ``keras.losses.mean_squared_error`` stands beside ``MeanSquaredError``), for custom
    training loops. Arguments as in :class:`MixtureNLL`; no reduction, no weights.

    >>> import numpy as np
    >>> params = np.zeros((4, MixtureDensity.params_size(1, 2)), "float32")
    >>> nll = mixture_nll(np.zeros((4, 1), "float32"), params, event_size=1, num_components=2)
    >>> tuple(nll.shape), round(float(nll[0]), 4)   # N(0, softplus(0)^2): 0.919 + log 0.693
    ((4,), 0.5524)
    """
    return MixtureNLL(event_size, num_components, covariance, diag_shift, allow_missing,
                      reduction=None)(y_true, y_pred)
