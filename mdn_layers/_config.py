"""The mixture config shared by layers, losses and metrics of both front-ends.

Plain Python over :mod:`mdn_layers.layout`: imports neither keras nor tensorflow.
"""

import numpy as np

from mdn_layers import _validation, adaptation, layout

# The package name every serialisable class of the library registers under.
PACKAGE = "mdn_layers"


class MixtureConfig:
    """Mixin: the ``(event_size, num_components, covariance, diag_shift)`` quadruple,
    validated once, and what follows from it (params width, split)."""

    def _init_mixture_config(self, event_size, num_components, covariance, diag_shift):
        self.event_size, self.num_components, self.covariance = (
            _validation.check_mixture_config(event_size, num_components, covariance))
        self.diag_shift = _validation.check_nonnegative_float(diag_shift, "diag_shift")
        self.num_params = layout.params_size(self.event_size, self.num_components,
                                             self.covariance)

    def mixture_config(self):
        """The config as a dict: the keyword arguments of :func:`mdn_layers.mixture_from_params`."""
        return {"event_size": self.event_size, "num_components": self.num_components,
                "covariance": self.covariance, "diag_shift": self.diag_shift}

    def split(self, ops, params):
        """:func:`mdn_layers.layout.split_params` of ``params`` ``[..., P]`` with this config."""
        return layout.split_params(ops, params, self.event_size, self.num_components,
                                   self.covariance, self.diag_shift)

    def mixture(self, params):
        """The ``tfd.MixtureSameFamily`` that ``params`` ``[..., P]`` describe.

        Loads the analysis path (TensorFlow + TFP) through the package's lazy attribute.
        """
        import mdn_layers  # the package's documented lazy load of the analysis path
        return mdn_layers.mixture_from_params(params, **self.mixture_config())


def _constant_initializer(values):
    """An initializer (Keras 3 and tf_keras alike) filling a weight with ``values``."""
    def initializer(shape, dtype=None):
        dtype = getattr(dtype, "as_numpy_dtype", dtype) or "float32"  # a tf.DType too
        return np.asarray(values, dtype=dtype).reshape(shape)
    return initializer


class MixtureHead(MixtureConfig):
    """Mixin for the layers that own a projection (``kernel``, ``bias``) to the params: the
    starting bias and :meth:`adapt`, for both front-ends. Subclasses set ``_ops`` (their
    array namespace), ``_loc_initializer``, ``initial_scale`` and ``loc_spread``, call
    :meth:`_init_target_statistics` in ``__init__`` and :meth:`_build_target_weights` in
    ``build``, and pass their params through :meth:`_to_target_units`."""

    def _init_target_statistics(self, target_loc, target_scale):
        """Validated per-dim target location and scale of an adapted head (or both None)."""
        self.target_loc, self.target_scale = _validation.check_target_statistics(
            target_loc, target_scale, self.event_size, self.covariance)
        self._start = None  # (centres [K, D], spreads [K]) for the bias, set by adapt

    def _to_target_units(self, params):
        """The params of the standardised mixture mapped to the targets' units (adapted
        heads; others pass through)."""
        if self.target_loc is None:
            return params
        return layout.rescale_params(
            self._ops, params, self.event_size, self.num_components, self.covariance,
            self.target_loc_weight, self.target_scale_weight)

    def _build_target_weights(self):
        """Creates the non-trainable ``target_loc`` and ``target_scale`` weights of an adapted
        head (unadapted heads have only ``kernel`` and ``bias``, as files saved before
        ``adapt`` existed expect)."""
        if self.target_loc is None or getattr(self, "target_loc_weight", None) is not None:
            return
        # Keras 3 locks a built layer's state; adapt on a built head adds two weights, as
        # build would have (the lock/unlock pair Keras itself uses to untrack a variable).
        tracker = getattr(self, "_tracker", None)
        locked = bool(getattr(tracker, "locked", False))
        if locked:
            tracker.unlock()
        try:
            self.target_loc_weight, self.target_scale_weight = (
                self.add_weight(name=name, shape=(self.event_size,), trainable=False,
                                initializer=_constant_initializer(values))
                for name, values in (("target_loc", self.target_loc),
                                     ("target_scale", self.target_scale)))
        finally:
            if locked:
                tracker.lock()

    def _initial_bias(self, shape, dtype=None):
        if self._start is not None:
            centres, spreads = self._start
            return layout.initial_params(self._ops, self.event_size, self.num_components,
                                         self.covariance, self._ops.cast(centres, dtype),
                                         spreads, 0.0)
        locs = self._loc_initializer((self.num_components, self.event_size), dtype=dtype)
        return layout.initial_params(self._ops, self.event_size, self.num_components,
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
        >>> from mdn_layers import MixtureDensity
        >>> head = MixtureDensity(event_size=1, num_components=3)
        >>> head = head.adapt(np.array([150_000.0, 210_000.0, 480_000.0, np.nan]))
        >>> round(head.target_loc[0])
        280000
        """
        stats = adaptation.target_statistics(
            y, self.event_size, self.num_components, self.covariance,
            name=f"{type(self).__name__}.adapt")
        self.target_loc, self.target_scale = (tuple(stats.loc.tolist()),
                                              tuple(stats.scale.tolist()))
        self._start = (stats.centres, stats.spreads)
        if self.built:
            self._build_target_weights()
            for weight, values in ((self.target_loc_weight, stats.loc),
                                   (self.target_scale_weight, stats.scale)):
                weight.assign(_constant_initializer(values)(weight.shape, weight.dtype))
            self.bias.assign(self._initial_bias(self.bias.shape, self.bias.dtype))
        return self

