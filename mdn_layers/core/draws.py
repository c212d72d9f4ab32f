"""Draws from a Gaussian mixture over tensors of an array namespace ``ops`` (see
:mod:`mdn_layers.core.densities` for the mixture's three tensors)."""

import math

from mdn_layers.core.triangular import dense


def draw(ops, log_weights, loc, scale, diagonal, uniform, noise, temperature,
         sigma_temperature):
    """Draws ``[N, S, D]`` from ``N`` mixtures (``log_weights`` ``[N, K]``, ``loc`` ``[N, K, D]``).

    ``uniform`` ``[N, S, K]`` in ``(0, 1)`` picks the components by Gumbel-max,
    ``argmax(log_weights / temperature + Gumbel)`` ~ ``Categorical(logits / temperature)``
    (``temperature == 0``: the most probable component); ``noise`` ``[N, S, D]`` standard
    normal draws are scaled by the component's factor times ``sqrt(sigma_temperature)``
    (``sigma_temperature == 0``: the component mean).
    """
    num_components, event_size = loc.shape[-2], loc.shape[-1]
    if temperature == 0.0:
        scores = ops.expand_dims(log_weights, -2) + 0.0 * uniform
    else:
        scores = ops.expand_dims(log_weights, -2) / temperature - ops.log(-ops.log(uniform))
    chosen = ops.cast(ops.one_hot(ops.argmax(scores, axis=-1), num_components), loc.dtype)
    draws = ops.matmul(chosen, loc)  # one-hot selection: [N, S, K] @ [N, K, D]
    if sigma_temperature == 0.0:
        return draws
    noise = noise * math.sqrt(sigma_temperature)
    if diagonal:
        return draws + ops.matmul(chosen, scale) * noise
    flat_scale = ops.reshape(dense(ops, scale), (-1, num_components, event_size * event_size))
    chosen_scale = ops.reshape(ops.matmul(chosen, flat_scale),
                               (-1, uniform.shape[1], event_size, event_size))
    return draws + ops.sum(chosen_scale * ops.expand_dims(noise, -2), axis=-1)
