"""The mixture config shared by layers, losses and metrics of both front-ends.

Plain Python over :mod:`mdn_layers.core.layout`: imports neither keras nor tensorflow.
"""

import numpy as np

from mdn_layers.core import layout, target_statistics, validation

# The package name every serialisable class of the library registers under.
PACKAGE = "mdn_layers"


class MixtureConfig:
    """Mixin: the ``(event_size, num_components, covariance, diag_shift)`` quadruple,
    validated once, and what follows from it (params width, split)."""

    def _init_mixture_config(self, event_size, num_components, covariance, diag_shift):
        self.event_size, self.num_components, self.covariance = (
            validation.check_mixture_config(event_size, num_components, covariance))
        self.diag_shift = validation.check_nonnegative_float(diag_shift, "diag_shift")
        self.num_params = layout.params_width(self.event_size, self.num_components,
                                              self.covariance)

    def mixture_config(self):
        """How to read the params, as a dict: the keyword arguments of
        :func:`mdn_layers.mixture_from_params` (and of a matching :class:`MixtureNLL`)."""
        return {"event_size": self.event_size, "num_components": self.num_components,
                "covariance": self.covariance, "diag_shift": self._params_diag_shift()}

    def _params_diag_shift(self):
        """The ``diag_shift`` a reader of the params adds (heads that fold their floor into
        the params report 0)."""
        return self.diag_shift

    def config_entries(self):
        """The four constructor arguments as given, for ``get_config``."""
        return {"event_size": self.event_size, "num_components": self.num_components,
                "covariance": self.covariance, "diag_shift": self.diag_shift}

    def split(self, ops, params):
        """:func:`mdn_layers.core.layout.split_params` of ``params`` ``[..., P]``, this config."""
        return layout.split_params(ops, params, self.event_size, self.num_components,
                                   self.covariance, self._params_diag_shift())

    def mixture(self, params):
        """The ``tfd.MixtureSameFamily`` that ``params`` ``[..., P]`` describe.

        Loads the analysis path (TensorFlow + TFP) through the package's lazy attribute.
        """
        import mdn_layers  # the package's documented lazy load of the analysis path
        return mdn_layers.mixture_from_params(params, **self.mixture_config())


class GridTargetWarning(UserWarning):
    """A target dim takes values on a grid, where a mixture's likelihood has no bound."""


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

    def _init_target_statistics(self, target_loc, target_scale, scale_floor=None,
                                target_floor=None):
        """Validated per-dim target location and scale of an adapted head (or both None),
        the scale-floor policy and the floor in force (``[D]`` target units, or None)."""
        self._target_loc, self._target_scale = validation.check_target_statistics(
            target_loc, target_scale, self.event_size, self.covariance)
        self._ran_as = None  # (adapted, floor) the head last computed with, off Keras tensors
        self.scale_floor = validation.check_scale_floor(scale_floor, self.event_size)
        if target_floor is not None:
            self.target_floor = self._shared_floor(
                validation.check_scale_floor(target_floor, self.event_size, "target_floor"))
        elif isinstance(self.scale_floor, tuple):
            self.target_floor = self._shared_floor(self.scale_floor)
        else:
            self.target_floor = None
        self._start = None  # (centres [K, D], spreads [K]) for the bias, set by adapt

    def _shared_floor(self, floor):
        """``floor`` as a tuple; spherical heads share one standard deviation, so its largest
        entry; None when every entry is 0."""
        floor = np.asarray(floor, dtype=np.float64)
        if self.covariance == "spherical":
            floor = np.full_like(floor, floor.max())
        return tuple(floor.tolist()) if np.any(floor > 0) else None

    @property
    def target_loc(self):
        """``[D]`` the targets' location in use (read from the saved weight once it exists, so
        ``set_weights`` and ``load_weights`` show), or None for an unadapted head."""
        return self._statistic("target_loc_weight", self._target_loc)

    @property
    def target_scale(self):
        """``[D]`` the targets' scale in use (see :attr:`target_loc`), or None."""
        return self._statistic("target_scale_weight", self._target_scale)

    def _statistic(self, weight_name, stored):
        weight = getattr(self, weight_name, None)
        if weight is None:
            return stored
        return tuple(np.asarray(weight.numpy(), dtype=np.float64).tolist())

    def target_statistics_config(self):
        """The config entries of the target statistics and the scale floor."""
        def listed(values):
            return None if values is None else list(values)
        return {"target_loc": listed(self.target_loc), "target_scale": listed(self.target_scale),
                "scale_floor": (self.scale_floor if not isinstance(self.scale_floor, tuple)
                                else list(self.scale_floor)),
                "target_floor": listed(self.target_floor)}

    def _params_diag_shift(self):
        # An adapted head's diag_shift counts in standardised units (a floor of
        # diag_shift * target_scale in target units, whatever the targets' scale), so it
        # is folded into the params and their reader adds nothing.
        return 0.0 if self._target_loc is not None else self.diag_shift

    def _to_target_units(self, params):
        """The params of the standardised mixture mapped to the targets' units, with the scale
        floors (heads with neither pass through)."""
        if self._target_loc is None and self.target_floor is None:
            return params
        if self._target_loc is None:   # a floor alone: the params' own units
            loc, scale, relative = np.zeros(self.event_size), np.ones(self.event_size), 0.0
        else:
            loc, scale = self.target_loc_weight, self.target_scale_weight
            relative = self.diag_shift
        return layout.rescale_params(
            self._ops, params, self.event_size, self.num_components, self.covariance,
            loc, scale, floor=self.target_floor, relative_floor=relative)

    def _build_target_weights(self):
        """Creates the non-trainable ``target_loc`` and ``target_scale`` weights of an adapted
        head (unadapted heads have only ``kernel`` and ``bias``, as files saved before
        ``adapt`` existed expect)."""
        if self._target_loc is None or getattr(self, "target_loc_weight", None) is not None:
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
                for name, values in (("target_loc", self._target_loc),
                                     ("target_scale", self._target_scale)))
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

        **Targets on a grid** (integer scores, counts: see
        :func:`mdn_layers.core.target_statistics.grid_steps`): a mixture can shrink its
        components onto the grid values and report a likelihood without bound. With
        ``scale_floor="grid"`` the head floors every standard deviation of such a dim at
        the grid step (no component then claims more density at a grid value than
        a point mass spread over its grid cell); with the default ``scale_floor=None`` it
        warns with a :class:`GridTargetWarning`.

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
        stats = target_statistics.target_statistics(
            y, self.event_size, self.num_components, self.covariance,
            name=f"{type(self).__name__}.adapt")
        floor = self.target_floor
        if self.scale_floor == "grid":
            floor = self._shared_floor(target_statistics.grid_floor(stats.grid_step))
        if self._ran_as is not None and self._ran_as != (True, floor):
            # Keras caches a model's compiled functions: on TensorFlow they would go on
            # computing without the new weights or floor, silently.
            raise RuntimeError(
                f"{type(self).__name__}.adapt: this head has already run in a model "
                f"{'unadapted' if not self._ran_as[0] else 'with another scale floor'}; the "
                "model's compiled functions would not see the change. Call adapt before the "
                "first fit, predict or call, or adapt a new head (e.g. in "
                "a clone of the model).")
        self._target_loc, self._target_scale = (tuple(stats.loc.tolist()),
                                                tuple(stats.scale.tolist()))
        grid_dims = np.flatnonzero(stats.grid_step > 0).tolist()
        self.target_floor = floor
        if self.scale_floor is None and grid_dims:
            validation.warn_caller(
                f"{type(self).__name__}.adapt: target dims {grid_dims} take values on a grid "
                f"(steps {stats.grid_step[grid_dims].tolist()}); a mixture can shrink its "
                "components onto the grid values and report a log-likelihood without bound. "
                "Pass scale_floor='grid' to the layer (a floor at the grid step), or add "
                "uniform noise of one step to the training targets (dequantisation).",
                GridTargetWarning)
        self._start = (stats.centres, stats.spreads)
        if self.built:
            self._build_target_weights()
            for weight, values in ((self.target_loc_weight, stats.loc),
                                   (self.target_scale_weight, stats.scale)):
                weight.assign(_constant_initializer(values)(weight.shape, weight.dtype))
            self.bias.assign(self._initial_bias(self.bias.shape, self.bias.dtype))
        return self

