"""From trained models to predicted mixtures: :func:`predict_mixture`, for both front-ends.

The analysis path's entry point (it loads TensorFlow + TFP): it runs a Keras 3 params model
(any backend) or a tf_keras distribution model over the inputs in row chunks and returns one
batched ``tfd.MixtureSameFamily``; given several models it returns their ensemble.
"""

import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # names used in annotations only
    from numpy.typing import ArrayLike
    from tensorflow_probability import distributions as tfd

import keras
import numpy as np

from mdn_layers.analysis import ensembles, mixtures
from mdn_layers.core import layout, validation
from mdn_layers.training.head import MixtureConfig
from mdn_layers.training.layer import MixtureDensity
from mdn_layers.training.losses import MixtureNLL

DEFAULT_BATCH_SIZE = 1024


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


def _single_output(predicted):
    """The one array of a prediction (a dict or list of one output is unwrapped)."""
    leaves = keras.tree.flatten(predicted)
    if len(leaves) != 1:
        raise ValueError(f"predict_mixture: the model returned {len(leaves)} outputs; it "
                         "needs exactly one (the params).")
    return leaves[0]


def predict_chunks(model, x, batch_size, num_params):
    """Yields ``model.predict`` of consecutive row chunks of ``x`` (numpy arrays).

    Each chunk holds about :data:`mdn_layers.core.layout.CHUNK_BYTES` of params (whole batches), so
    the caller can turn it into a mixture before the next one is predicted. Inputs that
    cannot be sliced by rows (datasets, generators) are predicted whole. Zero rows give one
    empty chunk of the model's output shape.
    """
    leaves = keras.tree.flatten(x)
    sizes = {leaf.shape[0] if len(getattr(leaf, "shape", ())) else None for leaf in leaves}
    if not leaves or len(sizes) != 1 or None in sizes:
        yield _single_output(model.predict(x, batch_size=batch_size, verbose=0))
        return
    rows = sizes.pop()
    if rows == 0:  # predict one zero row for the output shape, keep none of it
        one_row = keras.tree.map_structure(
            lambda leaf: np.zeros((1,) + tuple(leaf.shape[1:]), np.asarray(leaf).dtype), x)
        yield _single_output(model.predict(one_row, verbose=0))[:0]
        return
    chunk = layout.chunk_rows(num_params, multiple=batch_size)
    for start in range(0, rows, chunk):
        part = keras.tree.map_structure(lambda leaf: leaf[start:start + chunk], x)
        yield _single_output(model.predict(part, batch_size=batch_size, verbose=0))


def check_loss_matches(model, head):
    """Raises if ``model`` was compiled with a :class:`MixtureNLL` (alone, or in a list or
    dict of losses) whose config differs from ``head``'s: a different layout of the same
    width trains silently but decodes wrongly.

    What cannot be seen from here: a loss wrapped in a function or another loss class, and a
    subclassed model that transforms the head's params before returning them.
    """
    loss = getattr(model, "loss", None)
    losses = keras.tree.flatten(loss) if isinstance(loss, (list, tuple, dict)) else [loss]
    expected = head.mixture_config()
    # A loss built before adapt (or by hand with the layer's arguments) keeps the layer's
    # diag_shift as an absolute floor: the same layout, so accepted.
    accepted = [expected, {**expected, "diag_shift": head.diag_shift}]
    for loss in losses:
        if isinstance(loss, MixtureNLL) and loss.mixture_config() not in accepted:
            raise ValueError(
                f"The model's MixtureNLL config {loss.mixture_config()} differs from its "
                f"MixtureDensity layer '{head.name}' config {head.mixture_config()}; build "
                "the loss with MixtureNLL.for_layer(layer).")


def _keras_param_chunks(model, x, batch_size):
    if not isinstance(model, keras.Model):
        raise TypeError("predict_mixture: `model` must be a Keras model (or a list of them); "
                        f"received {type(model).__name__}.")
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

    return head, checked(predict_chunks(model, x, batch_size, head.num_params))


def _tf_keras_param_chunks(model, x, batch_size):
    """The head of a tf_keras model is a :class:`mdn_layers.tfp_layers.MixtureDistribution`
    (a :class:`MixtureConfig` with ``params`` and ``features_model``)."""
    head = next((layer for layer in reversed(model.layers)
                 if isinstance(layer, MixtureConfig)), None)
    if head is None:
        raise ValueError("predict_mixture: the tf_keras model has no "
                         "mdn_layers.tfp_layers.MixtureDistribution layer.")
    features_model = head.features_model(model)
    return head, (head.params(features) for features in predict_chunks(
        features_model, x, batch_size, head.num_params))


def predict_mixture(model: "keras.Model | Sequence[keras.Model]", x: "ArrayLike",
                    batch_size: "int | None" = None) -> "tfd.MixtureSameFamily":
    """Runs ``model`` over ``x`` in batches and returns one batched mixture (not samples).

    Works for models trained on any Keras backend; the mixture is a TensorFlow Probability
    distribution (TensorFlow loads on first call). A head that was adapted to its targets
    (:meth:`mdn_layers.MixtureDensity.adapt`) gives mixtures in the targets' units.

    Args:
      model: a Keras 3 model whose output is the params of a :class:`MixtureDensity`
        layer (that layer's output must be the model's output), a tf_keras model whose
        output is a :class:`mdn_layers.tfp_layers.MixtureDistribution`, or a list of such
        models (an ensemble: see :func:`mdn_layers.ensemble`).
      x: model inputs (anything ``model.predict`` accepts); zero rows give a mixture with
        batch shape ``[0]``.
      batch_size: rows per ``model.predict`` batch (default 1024; memory grows with it).

    Returns:
      ``tfd.MixtureSameFamily`` with batch shape ``[N, ...]`` (one mixture per input); for a
      list of ``M`` models with ``K`` components each, one mixture of ``M * K`` components
      (member weights ``1 / M``).

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
    batch_size = validation.check_positive_int(
        DEFAULT_BATCH_SIZE if batch_size is None else batch_size, "batch_size")
    if isinstance(model, (list, tuple)):
        if not model:
            raise ValueError("predict_mixture: `model` is an empty list; pass one model or "
                             "a list of at least one.")
        return ensembles.ensemble([predict_mixture(member, x, batch_size)
                                   for member in model])
    with _model_lock(model):
        if _is_tf_keras_model(model):
            head, chunks = _tf_keras_param_chunks(model, x, batch_size)
        else:
            head, chunks = _keras_param_chunks(model, x, batch_size)
        return mixtures.mixture_from_param_chunks(_warn_on_non_finite_rows(chunks),
                                                  **head.mixture_config())


# One lock per model: Keras 3.15 on JAX loses a model's variables when two threads run its
# predict at once (keras.Model.predict itself, not this library), so calls on one model take
# turns; calls on different models run in parallel.
_LOCKS = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _model_lock(model):
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.Lock()
    return lock


def _warn_on_non_finite_rows(chunks):
    """Passes the params chunks through, warning once with the count and first indices of
    rows whose params are NaN or inf (a NaN input row gives a NaN mixture)."""
    bad, start = [], 0
    for params in chunks:
        array = np.asarray(params)
        if array.size and np.issubdtype(array.dtype, np.floating):
            rows = ~np.all(np.isfinite(array.reshape(len(array), -1)), axis=1)
            bad.extend((start + np.flatnonzero(rows)).tolist())
        start += len(array)
        yield params
    if bad:
        validation.warn_caller(f"predict_mixture: {len(bad)} rows have NaN or infinite params "
                               "(their inputs are not finite, or the model diverged), first "
                               f"rows {bad[:10]}; their mixtures are NaN.", RuntimeWarning)
