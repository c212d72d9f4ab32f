"""Ensembles of predicted mixtures as one mixture (the analysis path: TensorFlow + TFP).

An ensemble of ``M`` mixture density networks predicts, for each input, the equally weighted
average of its members' densities: ``p(y | x) = sum_m v_m p_m(y | x)``. Each member is a
mixture of ``K_m`` Gaussians, so the ensemble is one mixture of ``sum_m K_m`` Gaussians with
weights ``v_m w_mk``: conditioning, marginalising, sampling, summaries, scores and plots all
work on it unchanged.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # names used in annotations only
    from numpy.typing import ArrayLike
    from tensorflow_probability import distributions as tfd

import numpy as np
import tensorflow as tf

from mdn_layers.analysis.mixtures import MixtureParts, build_distribution, mixture_parts
from mdn_layers.core import validation


def _member_log_weights(weights, num_members, dtype):
    """``[M]`` log member weights (``1 / M`` each by default; given weights are normalised)."""
    if weights is None:
        return tf.fill([num_members], tf.constant(-np.log(num_members), dtype))
    weights = validation.check_weights(weights, num_members, "weights")
    weights = weights / weights.max()  # the sum of huge weights overflows; their ratios do not
    return tf.constant(np.log(weights / weights.sum()), dtype)


def ensemble(mixtures: "Sequence[tfd.Distribution]",
             weights: "ArrayLike | None" = None) -> "tfd.MixtureSameFamily":
    """One Gaussian mixture from ``M`` mixtures with equal batch and event shapes.

    Args:
      mixtures: a sequence of ``M >= 1`` Gaussian mixtures (any kind :func:`mdn_layers.condition`
        accepts: ``tfd.MixtureSameFamily`` of full, diagonal or spherical normals, single
        multivariate normals, ``tfp.layers`` outputs), each with batch shape ``B`` and event
        shape ``[D]``; members may have different numbers of components.
      weights: ``[M]`` positive member weights (normalised to sum to 1); default ``1 / M``.

    Returns:
      ``tfd.MixtureSameFamily`` with batch shape ``B``, event shape ``[D]`` and
      ``sum_m K_m`` components, member ``m``'s components first to last with weights
      ``weights[m] * w_mk``. Its ``log_prob`` is ``logsumexp_m(log p_m + log weights[m])``;
      components are diagonal only when every member's are.

    Example:

    >>> import numpy as np
    >>> from mdn_layers import mixture_from_params, params_size
    >>> members = [mixture_from_params(np.full([4, params_size(2, 3)], m, "float32"), 2, 3)
    ...            for m in range(5)]
    >>> combined = ensemble(members)
    >>> combined.batch_shape, combined.event_shape, combined.mixture_distribution.logits.shape
    (TensorShape([4]), TensorShape([2]), TensorShape([4, 15]))
    """
    if isinstance(mixtures, (str, bytes)) or not hasattr(mixtures, "__len__"):
        raise ValueError("`mixtures` must be a sequence of mixtures; received "
                         f"{type(mixtures).__name__}.")
    if not len(mixtures):
        raise ValueError("`mixtures` must hold at least one mixture; received none.")
    parts = [mixture_parts(mixture) for mixture in mixtures]
    first = parts[0]
    for index, member in enumerate(parts[1:], start=1):
        if member.scalar != first.scalar or member.event_size != first.event_size:
            raise ValueError(
                f"`mixtures` must share one event shape; member 0 has event size "
                f"{'() (scalar)' if first.scalar else first.event_size}, member {index} has "
                f"{'() (scalar)' if member.scalar else member.event_size}.")
        if member.log_weights.shape[:-1] != first.log_weights.shape[:-1]:
            raise ValueError(
                f"`mixtures` must share one batch shape; member 0 has "
                f"{first.log_weights.shape[:-1]}, member {index} has "
                f"{member.log_weights.shape[:-1]}.")
        if member.dtype != first.dtype:
            raise ValueError(f"`mixtures` must share one dtype; member 0 is {first.dtype.name}, "
                             f"member {index} is {member.dtype.name}.")
    member_log_weights = _member_log_weights(weights, len(parts), first.dtype)
    diagonal = all(member.diagonal for member in parts)
    log_weights = tf.concat([member.log_weights + member_log_weights[index]
                             for index, member in enumerate(parts)], axis=-1)
    loc = tf.concat([member.loc for member in parts], axis=-2)
    scale = tf.concat([member.scale if diagonal else member.scale_tril() for member in parts],
                      axis=-2 if diagonal else -3)
    return build_distribution(MixtureParts(log_weights, loc, scale, diagonal,
                                           scalar=first.scalar))
