"""Initializers: callables ``init(shape, dtype=None) -> np.ndarray``, all seedable (TF1's).

The values are drawn in float64 with NumPy when the variable is created and stored as its
initial value. Defaults are TF1's (``random_normal`` has stddev 1.0, ``random_uniform`` spans
[0, 1)). Variance scaling draws with variance ``scale / n``, ``n`` the fan chosen by ``mode``:

- Glorot (Xavier): scale 1, n = (fan_in + fan_out) / 2 — keeps the variance of activations
  and of gradients about equal across tanh/sigmoid layers.
- He: scale 2, n = fan_in — the same for ReLU layers, which zero half their inputs.
- LeCun: scale 1, n = fan_in.

Fans of conv filters ``[kh, kw, in, out]`` count the receptive field (``kh*kw*in``). The
truncated normal is cut at two standard deviations and its stddev divided by 0.8796 (the
stddev of a unit normal truncated there), so the variance is the one asked for.

Seeds: an initializer built with ``seed=s`` yields the same sequence of arrays every time it is
rebuilt, and distinct arrays for the distinct variables it initializes (each call advances a
counter). Without a seed it follows ``gc.set_random_seed`` (the graph seed, combined with the
node count, as random ops are) or, without that either, fresh entropy.
"""
import numpy as np

from ..ir import dtypes as D
from ..ir.ops.state import truncated_normal_impl
from ..ir.graph import get_default_graph
from ..ir.shapes import normalize_shape

_TRUNCATED_STD = 0.87962566103423978  # stddev of N(0, 1) truncated to [-2, 2]


def _fans(shape):
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def _truncated(rng, shape, stddev):
    """N(0, stddev^2) samples redrawn until all lie within two standard deviations (the
    ``truncated_normal`` op's own kernel, in float64)."""
    return truncated_normal_impl(rng, shape, dtype=D.float64, stddev=stddev)


class Initializer:
    """Base: subclasses implement ``sample(rng, shape)`` in float64.

    Args:
        seed: an int for reproducible values (see the module docstring).
        dtype: the default dtype of the values (a call's ``dtype`` wins).
    """

    random = False

    def __init__(self, seed=None, dtype=None):
        self.seed = seed
        self.dtype = dtype
        self._calls = 0

    def __call__(self, shape, dtype=None, partition_info=None):
        shape = normalize_shape(shape)
        dtype = D.as_dtype(dtype or self.dtype or D.float32)
        if self.random and not dtype.is_floating:
            raise ValueError(f"{type(self).__name__}: random values need a floating dtype, "
                             f"got {dtype.name}")
        value = np.asarray(self.sample(self._rng(), shape), np.float64)
        return value.astype(dtype.np)

    def _rng(self):
        if self.seed is not None:
            # The same seed replays the same sequence; successive calls still differ.
            key = (self.seed, self._calls)
        else:
            g = get_default_graph()
            key = None if g.seed is None else (g.seed, len(g.nodes), self._calls)
        self._calls += 1
        return np.random.default_rng(key)

    def sample(self, rng, shape):
        raise NotImplementedError

    def __repr__(self):
        return f"<initializer {type(self).__name__} seed={self.seed}>"


class zeros(Initializer):
    """All zeros.

    Example:
        >>> b = gc.Variable(gc.initializers.zeros()([128]))
    """

    def __init__(self, dtype=None):
        super().__init__(None, dtype)

    def sample(self, rng, shape):
        return np.zeros(shape)


class ones(Initializer):
    """All ones."""

    def __init__(self, dtype=None):
        super().__init__(None, dtype)

    def sample(self, rng, shape):
        return np.ones(shape)


class constant(Initializer):
    """A scalar broadcast to the shape, or a list with exactly as many values (reshaped).

    Raises:
        ValueError: a list whose size neither is 1 nor matches the shape.
    Example:
        >>> gc.initializers.constant([1, 2, 3, 4])([2, 2])
    """

    def __init__(self, value=0.0, dtype=None, verify_shape=False, seed=None):
        super().__init__(seed, dtype)
        self.value = np.asarray(value, np.float64)
        self.verify_shape = verify_shape

    def sample(self, rng, shape):
        v = self.value
        if v.shape == tuple(shape):
            return v.copy()
        if self.verify_shape or v.size not in (1, int(np.prod(shape))):
            raise ValueError(f"constant initializer: value of shape {list(v.shape)} does not "
                             f"fit shape {list(shape)}")
        return np.broadcast_to(v.reshape(()), shape).copy() if v.size == 1 else \
            v.reshape(shape)


class random_normal(Initializer):
    """N(mean, stddev^2) (TF1 default stddev 1.0)."""

    random = True

    def __init__(self, mean=0.0, stddev=1.0, seed=None, dtype=None):
        super().__init__(seed, dtype)
        self.mean, self.stddev = mean, stddev

    def sample(self, rng, shape):
        return rng.normal(self.mean, self.stddev, shape)


class truncated_normal(random_normal):
    """N(mean, stddev^2) redrawn outside two standard deviations (TF1 default stddev 1.0)."""

    def sample(self, rng, shape):
        return self.mean + _truncated(rng, shape, self.stddev)


class random_uniform(Initializer):
    """U(minval, maxval) (TF1 defaults: [0, 1))."""

    random = True

    def __init__(self, minval=0.0, maxval=None, seed=None, dtype=None):
        super().__init__(seed, dtype)
        self.minval, self.maxval = minval, 1.0 if maxval is None else maxval

    def sample(self, rng, shape):
        return rng.uniform(self.minval, self.maxval, shape)


class variance_scaling(Initializer):
    """Samples of variance ``scale / n`` (n from ``mode``), the family of Glorot, He, LeCun.

    Args:
        scale: positive factor.
        mode: "fan_in", "fan_out" or "fan_avg".
        distribution: "truncated_normal" (or "normal", TF1's older name for it),
            "untruncated_normal" or "uniform".
    Example:
        >>> init = gc.initializers.variance_scaling(2.0, "fan_in", "truncated_normal", seed=0)
    """

    random = True

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 dtype=None):
        super().__init__(seed, dtype)
        if scale <= 0:
            raise ValueError(f"variance_scaling: scale must be positive, got {scale}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"variance_scaling: mode {mode!r} is not fan_in, fan_out, fan_avg")
        if distribution not in ("normal", "truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(f"variance_scaling: unknown distribution {distribution!r}")
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def variance(self, shape):
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}
        return self.scale / max(1.0, n[self.mode])

    def sample(self, rng, shape):
        var = self.variance(shape)
        if self.distribution == "uniform":
            limit = np.sqrt(3.0 * var)  # U(-l, l) has variance l^2 / 3
            return rng.uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, np.sqrt(var), shape)
        return _truncated(rng, shape, np.sqrt(var) / _TRUNCATED_STD)


def _scaling(name, scale, mode, distribution, doc):
    def __init__(self, seed=None, dtype=None):
        variance_scaling.__init__(self, scale, mode, distribution, seed, dtype)
    return type(name, (variance_scaling,), {"__init__": __init__, "__doc__": doc})


glorot_uniform = _scaling("glorot_uniform", 1.0, "fan_avg", "uniform",
                          "Xavier uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out)).")
glorot_normal = _scaling("glorot_normal", 1.0, "fan_avg", "truncated_normal",
                         "Xavier normal: truncated, variance 2 / (fan_in + fan_out).")
he_uniform = _scaling("he_uniform", 2.0, "fan_in", "uniform",
                      "He uniform: U(-l, l), l = sqrt(6 / fan_in).")
he_normal = _scaling("he_normal", 2.0, "fan_in", "truncated_normal",
                     "He normal: truncated, variance 2 / fan_in.")
lecun_uniform = _scaling("lecun_uniform", 1.0, "fan_in", "uniform",
                         "LeCun uniform: U(-l, l), l = sqrt(3 / fan_in).")
lecun_normal = _scaling("lecun_normal", 1.0, "fan_in", "truncated_normal",
                        "LeCun normal: truncated, variance 1 / fan_in.")


class orthogonal(Initializer):
    """A (semi-)orthogonal matrix from the QR of a Gaussian one, times ``gain``.

    The shape is flattened to ``[prod(shape[:-1]), shape[-1]]``: its columns are orthonormal
    when it has at least as many rows as columns, its rows otherwise.

    Raises:
        ValueError: shapes of rank below 2.
    Example:
        >>> W = gc.initializers.orthogonal(seed=0)([64, 64])     # W.T @ W == I
    """

    random = True

    def __init__(self, gain=1.0, seed=None, dtype=None):
        super().__init__(seed, dtype)
        self.gain = gain

    def sample(self, rng, shape):
        if len(shape) < 2:
            raise ValueError(f"orthogonal initializer: the shape must have rank >= 2, got "
                             f"{list(shape)}")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))  # a uniform (Haar) distribution needs the sign fix
        q = q.T if rows < cols else q
        return self.gain * q.reshape(shape)


class identity(Initializer):
    """``gain`` times the identity matrix (2-D shapes only)."""

    def __init__(self, gain=1.0, dtype=None):
        super().__init__(None, dtype)
        self.gain = gain

    def sample(self, rng, shape):
        if len(shape) != 2:
            raise ValueError(f"identity initializer: needs a 2-D shape, got {list(shape)}")
        return self.gain * np.eye(*shape)


def global_variables():
    """TF1's ``tf.initializers.global_variables()``: the op initializing every variable."""
    from ..framework.graph import global_variables_initializer
    return global_variables_initializer()


def variables(var_list, name="init"):
    """TF1's ``tf.initializers.variables(var_list)``."""
    from ..framework.graph import variables_initializer
    return variables_initializer(var_list, name)


xavier_uniform, xavier_normal = glorot_uniform, glorot_normal

# TF1's top-level class names (gc.zeros_initializer(), gc.glorot_uniform_initializer(seed=0)).
zeros_initializer, ones_initializer, constant_initializer = zeros, ones, constant
random_normal_initializer, truncated_normal_initializer = random_normal, truncated_normal
random_uniform_initializer, variance_scaling_initializer = random_uniform, variance_scaling
glorot_uniform_initializer, glorot_normal_initializer = glorot_uniform, glorot_normal
orthogonal_initializer = orthogonal

TF1_ALIASES = sorted(n for n in dir() if n.endswith("_initializer"))
