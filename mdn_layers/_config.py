"""The mixture config shared by layers, losses and metrics of both front-ends.

Plain Python over :mod:`mdn_layers.layout`: imports neither keras nor tensorflow.
"""

from mdn_layers import _validation, layout

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

    def _init_target_statistics(self, target_loc, target_scale):
        """Validated per-dim target location and scale of an adapted head (or both None)."""
        self.target_loc, self.target_scale = _validation.check_target_statistics(
            target_loc, target_scale, self.event_size, self.covariance)
        self._start = None  # (centres [K, D], spreads [K]) for the bias, set by adapt

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
