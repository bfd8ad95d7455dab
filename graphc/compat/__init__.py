"""``tf.compat.v1``: TF1 code written against TensorFlow 2's compatibility module.

Scripts ported to TF2 with the least effort start with::

    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()

and then use TF1's API through that module. graphc *is* TF1's API, so ``graphc.compat.v1`` is
graphc itself under that name: every attribute resolves to graphc's (``tf.compat.v1.placeholder``
is ``gc.placeholder``), and the switches that turn TF2 behaviour off are accepted and do nothing,
because graphc never had it (graphs are built, then run by a Session or a compiled step; nothing
executes eagerly)::

    import graphc.compat.v1 as tf         # or: import graphc as gc; tf = gc.compat.v1
    tf.disable_v2_behavior()
"""
import sys
import types

__all__ = ["v1", "disable_v2_behavior", "disable_eager_execution", "enable_v2_behavior",
           "enable_eager_execution", "executing_eagerly"]


def disable_v2_behavior():
    """Accepted for ``tf.compat.v1`` scripts; graphc always behaves as TF1."""


def disable_eager_execution():
    """Accepted for ``tf.compat.v1`` scripts; graphc never executes eagerly."""


def executing_eagerly():
    """False: graphc builds graphs and runs them as whole compiled steps."""
    return False


def enable_v2_behavior():
    """Refused: graphc implements TensorFlow 1.x's graph API only."""
    raise NotImplementedError("graphc implements TensorFlow 1.x's graph API; TF2 behaviour "
                              "(eager execution, tf.function) is not available")


enable_eager_execution = enable_v2_behavior


class _V1(types.ModuleType):
    """``graphc.compat.v1``: graphc's namespace under TF2's compatibility name."""

    def __getattr__(self, name):
        import graphc
        return getattr(graphc, name)

    def __dir__(self):
        import graphc
        return sorted(set(dir(graphc)) | set(self.__dict__))


v1 = _V1(__name__ + ".v1", __doc__)
for _fn in (disable_v2_behavior, disable_eager_execution, enable_v2_behavior,
            enable_eager_execution, executing_eagerly):
    setattr(v1, _fn.__name__, _fn)
v1.enable_eager_execution = enable_eager_execution
sys.modules[v1.__name__] = v1  # ``import graphc.compat.v1 as tf`` finds it
