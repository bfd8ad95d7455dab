"""Initializers: callables ``init(shape, dtype=gc.float32) -> np.ndarray``, all seedable.

Glorot (Xavier) keeps the variance of activations and gradients about equal across layers
for tanh/sigmoid networks: Var = 2 / (fan_in + fan_out). He keeps it for ReLU networks:
Var = 2 / fan_in. Fans of conv filters ``[kh, kw, in, out]`` count the receptive field.
"""
import numpy as np

from .ir import dtypes as D
from .ir.shapes import normalize_shape


def _fans(shape):
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    """Base: subclasses implement ``sample(rng, shape)`` in float64."""

    def __init__(self, seed=None):
        self.seed = seed
        self._calls = 0

    def __call__(self, shape, dtype=D.float32, partition_info=None):
        shape = normalize_shape(shape)
        # A seeded initializer gives the same values for the same call sequence; distinct
        # variables drawn from one initializer still differ (the call counter).
        rng = np.random.default_rng(None if self.seed is None else (self.seed, self._calls))
        self._calls += 1
        return np.asarray(self.sample(rng, shape)).astype(D.as_dtype(dtype).np)


class zeros(Initializer):
    def sample(self, rng, shape):
        return np.zeros(shape)


class ones(Initializer):
    def sample(self, rng, shape):
        return np.ones(shape)


class constant(Initializer):
    def __init__(self, value=0.0, seed=None):
        super().__init__(seed)
        self.value = value

    def sample(self, rng, shape):
        return np.broadcast_to(np.asarray(self.value, np.float64), shape).copy()


class random_normal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def sample(self, rng, shape):
        return rng.normal(self.mean, self.stddev, shape)


class random_uniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = minval, maxval

    def sample(self, rng, shape):
        return rng.uniform(self.minval, self.maxval, shape)


def _truncated(rng, shape, stddev):
    z = rng.standard_normal(shape)
    bad = np.abs(z) > 2
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > 2
    return z * stddev


class truncated_normal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def sample(self, rng, shape):
        return self.mean + _truncated(rng, shape, self.stddev)


class glorot_uniform(Initializer):
    """Xavier uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out))."""

    def sample(self, rng, shape):
        fi, fo = _fans(shape)
        limit = np.sqrt(6.0 / (fi + fo))
        return rng.uniform(-limit, limit, shape)


class glorot_normal(Initializer):
    """Xavier normal: truncated N(0, 2 / (fan_in + fan_out)), corrected for truncation."""

    def sample(self, rng, shape):
        fi, fo = _fans(shape)
        return _truncated(rng, shape, np.sqrt(2.0 / (fi + fo)) / 0.87962566103423978)


class he_normal(Initializer):
    """He normal: truncated N(0, 2 / fan_in), corrected for truncation."""

    def sample(self, rng, shape):
        fi, _ = _fans(shape)
        return _truncated(rng, shape, np.sqrt(2.0 / fi) / 0.87962566103423978)


class he_uniform(Initializer):
    """He uniform: U(-l, l), l = sqrt(6 / fan_in)."""

    def sample(self, rng, shape):
        fi, _ = _fans(shape)
        limit = np.sqrt(6.0 / fi)
        return rng.uniform(-limit, limit, shape)


class orthogonal(Initializer):
    """A (semi-)orthogonal matrix from the QR of a Gaussian one, times ``gain``."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = gain

    def sample(self, rng, shape):
        rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        cols = shape[-1]
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        q = q.T if rows < cols else q
        return self.gain * q.reshape(shape)


xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
