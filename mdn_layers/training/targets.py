"""Target handling of the training path: what :class:`mdn_layers.MixtureNLL` and
:mod:`mdn_layers.training.metrics` do to ``y_true`` before the maths (shape, mask, finiteness).

Keras 3 only (``keras.ops``), on every backend.
"""

import keras
from keras import ops

from mdn_layers.core import densities
from mdn_layers.training import keras_ops
from mdn_layers.training.head import MixtureConfig

# On the TensorFlow backend, the graph assertion of :mod:`mdn_layers.analysis.tf_ops`: set by
# the package's ``__init__`` there (TensorFlow is loaded already), since this floor imports
# no TensorFlow itself.
tensorflow_check_finite = None


def check_finite(tensor, message):
    """Returns ``tensor``, raising ``ValueError(message)`` if it holds NaN or inf.

    Eager tensors (PyTorch, eager TensorFlow) are checked at once; TensorFlow graphs get an
    assertion (``InvalidArgumentError`` when run). Compiled code cannot raise: XLA (TF and
    JAX ``jit_compile=True``) drops the check, so use ``keras.callbacks.TerminateOnNaN``.
    """
    if tensorflow_check_finite is not None:     # set on the TensorFlow backend only
        return tensorflow_check_finite(tensor, message)
    all_finite = ops.all(ops.isfinite(tensor))
    if keras.backend.backend() == "jax":
        import jax
        if isinstance(all_finite, jax.core.Tracer):
            return tensor
    if not bool(all_finite):
        raise ValueError(message)
    return tensor


def keras_mask(tensor):
    """The Keras mask attached to ``tensor`` (``[...]`` bool), or None."""
    # Keras 3.15 has no public accessor: the mask lives in a per-backend side table
    # (an attribute on TensorFlow tensors, a weak dict for JAX and PyTorch arrays).
    from keras.src.backend import get_keras_mask
    return get_keras_mask(tensor)


class TargetsMixin(MixtureConfig):
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
        leading_true, leading_pred = tuple(y_true.shape[:-1]), tuple(y_pred.shape[:-1])
        if len(leading_true) != len(leading_pred) or any(
                a is not None and b is not None and a != b
                for a, b in zip(leading_true, leading_pred)):
            # Broadcasting here would score every target against every prediction.
            raise ValueError(
                f"{name}: y_true shape {tuple(y_true.shape)} does not match the params "
                f"shape {tuple(y_pred.shape)}: targets need the params' leading axes "
                f"{leading_pred} and a last axis of size event_size={self.event_size}.")
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
            return densities.observed_log_prob(keras_ops, log_weights, loc, scale, diagonal,
                                              y_true)
        return densities.mixture_log_prob(keras_ops, log_weights, loc, scale, diagonal, y_true)

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
