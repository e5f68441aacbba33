"""Initializers: how a parameter's first value is drawn, with Gluon's names and defaults.

An initializer is called as ``init(name, shape, dtype) -> numpy array``. Random ones draw
from graphc.random's numpy Generator (read at call time), so ``gc.random.seed(s)`` makes
initialization reproducible. As in MXNet, the name decides for parameters that are not
weights: a global initializer (``net.initialize(init.Xavier())``) fills names ending in
``bias``, ``beta`` or ``running_mean`` with zeros and ``gamma`` or ``running_var`` with
ones, and uses its own rule for everything else. A parameter's own initializer
(``bias_initializer=init.Normal()``) must be called with ``by_name=False``, which skips
that rule.
"""

from __future__ import annotations

import math

import numpy as np

from . import dtypes as dt
from . import random as _random
from .errors import GraphcError

#: name suffixes a global initializer fills with a constant instead of its own rule
_BY_SUFFIX = (("running_mean", 0.0), ("running_var", 1.0), ("moving_mean", 0.0),
              ("moving_var", 1.0), ("bias", 0.0), ("beta", 0.0), ("gamma", 1.0))


def _gen() -> np.random.Generator:
    return _random._state["gen"]


class Initializer:
    """Base class: subclasses implement ``_init_weight(name, shape) -> float64 array``."""

    def __call__(self, name: str, shape, dtype="float32", by_name: bool = True) -> np.ndarray:
        shape = (int(shape),) if isinstance(shape, int | np.integer) else tuple(map(int, shape))
        np_dtype = dt.to_numpy(dt.canonical(dtype))
        if by_name:
            for suffix, value in _BY_SUFFIX:
                if str(name).endswith(suffix):
                    return np.full(shape, value, np_dtype)
        return np.asarray(self._init_weight(str(name), shape)).astype(np_dtype)

    def _init_weight(self, name: str, shape: tuple) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    __hash__ = object.__hash__


class Zero(Initializer):
    def _init_weight(self, name, shape):
        return np.zeros(shape)


class One(Initializer):
    def _init_weight(self, name, shape):
        return np.ones(shape)


class Constant(Initializer):
    """Every element ``value`` (a number, or an array broadcastable to the shape)."""

    def __init__(self, value=0.0):
        self.value = value

    def _init_weight(self, name, shape):
        return np.broadcast_to(np.asarray(self.value, np.float64), shape)


class Uniform(Initializer):
    """Uniform on ``[-scale, scale]`` (Gluon's default, scale 0.07)."""

    def __init__(self, scale: float = 0.07):
        self.scale = scale

    def _init_weight(self, name, shape):
        return _gen().uniform(-self.scale, self.scale, shape)


class Normal(Initializer):
    """Normal with mean 0 and standard deviation ``sigma``."""

    def __init__(self, sigma: float = 0.01):
        self.sigma = sigma

    def _init_weight(self, name, shape):
        return _gen().normal(0.0, self.sigma, shape)


def fans(shape: tuple) -> tuple[float, float]:
    """(fan_in, fan_out) as MXNet computes them: the receptive field (dims 2...) times
    the input (dim 1) or output (dim 0) channels; so a Dense weight (units, in_units) has
    fan_in = in_units and a Conv2D weight (C_out, C_in, kh, kw) fan_in = C_in*kh*kw."""
    if len(shape) < 2:
        raise GraphcError(f"fan_in/fan_out need a shape of at least 2 dims, got {shape}")
    field = math.prod(shape[2:])
    return float(shape[1] * field), float(shape[0] * field)


class Xavier(Initializer):
    """Glorot/Xavier: scale = sqrt(magnitude / factor), factor = the average of fan_in and
    fan_out ('avg'), fan_in ('in') or fan_out ('out'); 'uniform' draws from [-scale, scale],
    'gaussian' from N(0, scale). The defaults keep the activation variance across layers."""

    def __init__(self, rnd_type: str = "uniform", factor_type: str = "avg",
                 magnitude: float = 3):
        if rnd_type not in ("uniform", "gaussian"):
            raise GraphcError(f"Xavier: rnd_type must be 'uniform' or 'gaussian', got "
                              f"{rnd_type!r}")
        if factor_type not in ("avg", "in", "out"):
            raise GraphcError(f"Xavier: factor_type must be 'avg', 'in' or 'out', got "
                              f"{factor_type!r}")
        self.rnd_type, self.factor_type, self.magnitude = rnd_type, factor_type, magnitude

    def _init_weight(self, name, shape):
        if len(shape) < 2:
            raise GraphcError(f"Xavier cannot initialize '{name}' of shape {shape}: it needs "
                              "at least 2 dims (give this parameter its own initializer)")
        fan_in, fan_out = fans(shape)
        factor = {"avg": (fan_in + fan_out) / 2.0, "in": fan_in, "out": fan_out}
        scale = math.sqrt(self.magnitude / factor[self.factor_type])
        if self.rnd_type == "uniform":
            return _gen().uniform(-scale, scale, shape)
        return _gen().normal(0.0, scale, shape)


class MSRAPrelu(Xavier):
    """He/Kaiming initialization for (leaky) ReLU nets: Xavier gaussian with magnitude
    2 / (1 + slope**2)."""

    def __init__(self, factor_type: str = "avg", slope: float = 0.25):
        super().__init__("gaussian", factor_type, 2.0 / (1 + slope ** 2))


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix of shape (shape[0], prod(shape[1:])) from the SVD of a
    random one, times ``scale`` (Saxe et al.); ``rand_type`` 'uniform' or 'normal'."""

    def __init__(self, scale: float = 1.414, rand_type: str = "uniform"):
        if rand_type not in ("uniform", "normal"):
            raise GraphcError(f"Orthogonal: rand_type must be 'uniform' or 'normal', got "
                              f"{rand_type!r}")
        self.scale, self.rand_type = scale, rand_type

    def _init_weight(self, name, shape):
        if len(shape) < 1 or math.prod(shape) == 0:
            return np.zeros(shape)
        nout, nin = shape[0], math.prod(shape[1:])
        if self.rand_type == "uniform":
            tmp = _gen().uniform(-1.0, 1.0, (nout, nin))
        else:
            tmp = _gen().normal(0.0, 1.0, (nout, nin))
        u, _, v = np.linalg.svd(tmp, full_matrices=False)
        res = u if u.shape == tmp.shape else v
        return self.scale * res.reshape(shape)


_NAMES = {"zeros": Zero, "zero": Zero, "ones": One, "one": One, "uniform": Uniform,
          "normal": Normal, "xavier": Xavier, "orthogonal": Orthogonal,
          "msraprelu": MSRAPrelu, "constant": Constant}


def create(spec) -> Initializer | None:
    """An Initializer from ``spec``: an Initializer (returned as is), a name ('zeros',
    'ones', 'uniform', 'normal', 'xavier', 'orthogonal', ...), a number (a Constant), or
    None (None: the caller falls back to its default)."""
    if spec is None or isinstance(spec, Initializer):
        return spec
    if isinstance(spec, bool):
        raise GraphcError(f"not an initializer: {spec!r}")
    if isinstance(spec, int | float | np.integer | np.floating):
        return Constant(float(spec))
    if isinstance(spec, str) and spec.lower() in _NAMES:
        return _NAMES[spec.lower()]()
    raise GraphcError(f"unknown initializer {spec!r}; use one of {sorted(_NAMES)}, a number "
                      "or a graphc.init.Initializer")
