"""TF1's session configuration protos, accepted and ignored: ``gc.Session(config=...)`` and
``sess.run(..., options=..., run_metadata=...)`` take them so TF1 scripts run unchanged.

graphc runs each compiled step on the host CPU with its own threading, so device placement,
GPU memory options and tracing have nothing to configure. Each class keeps the keyword
arguments it was given as attributes (``config.gpu_options.allow_growth = True`` works) and
changes nothing else.
"""

__all__ = ["ConfigProto", "GPUOptions", "RunOptions", "RunMetadata"]


class _Accepted:
    """Keyword arguments kept as attributes; unknown attributes read as None, as a proto's
    unset fields read as their default."""

    _defaults = {}

    def __init__(self, **kwargs):
        for key, value in {**self._defaults, **kwargs}.items():
            setattr(self, key, value)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in sorted(vars(self).items()))
        return f"{type(self).__name__}({fields})"


class GPUOptions(_Accepted):
    """TF1's ``tf.GPUOptions`` (``allow_growth``, ``per_process_gpu_memory_fraction``...):
    ignored, graphc has no GPU backend."""


class ConfigProto(_Accepted):
    """TF1's ``tf.ConfigProto`` (``allow_soft_placement``, ``log_device_placement``,
    ``gpu_options``...): ignored, but for ``intra_op_parallelism_threads``, the threads a
    Session's steps may use (``graphc.runtime.threads``; never more than the process's cores).

    Example:
        >>> sess = gc.Session(config=gc.ConfigProto(gpu_options=gc.GPUOptions(allow_growth=True)))
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("gpu_options", GPUOptions())
        super().__init__(**kwargs)


class RunOptions(_Accepted):
    """TF1's ``tf.RunOptions`` (``trace_level``...): ignored."""

    NO_TRACE, SOFTWARE_TRACE, HARDWARE_TRACE, FULL_TRACE = 0, 1, 2, 3


class RunMetadata(_Accepted):
    """TF1's ``tf.RunMetadata``: ``sess.run`` leaves it empty (graphc records no trace)."""
