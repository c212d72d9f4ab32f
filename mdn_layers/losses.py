"""The training loss: :class:`MixtureNLL`, the per-sample negative log-likelihood of the
params a :class:`mdn_layers.MixtureDensity` layer emits.

Keras 3 only (``keras.ops``), on every backend; the maths is :mod:`mdn_layers.gaussian`.
"""

import keras
from keras import ops

from mdn_layers import _config, _keras_ops, _validation, layout
from mdn_layers._targets import TargetsMixin, check_finite, keras_mask
from mdn_layers.layers import MixtureDensity

_FULL_PRECISION = ("float32", "float64")


@keras.saving.register_keras_serializable(package=_config.PACKAGE)
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
        self.allow_missing = _validation.check_bool(allow_missing, "allow_missing")
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
        return -self._log_prob(y_true, self.split(_keras_ops, y_pred))

    def get_config(self):
        config = super().get_config()
        config.update(self.mixture_config())
        config["allow_missing"] = self.allow_missing
        if self._dtype_follows_params:
            config["dtype"] = None
        return config
