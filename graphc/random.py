"""Seeded random numbers: tensors from a numpy Generator, and keys for dropout's RNG.

Tensors are drawn on the host and then moved to their device, so the same seed gives
the same numbers on the CPU and on a GPU.

Dropout draws its mask from a counter-based hash of (key, element index), so a mask is a
pure function of its key. Each dropout call takes the next key of one global stream;
a compiled function takes as many keys per call as its trace did, in the same order, so
after the same `seed` an eager and a compiled run draw the same masks.
"""

from __future__ import annotations

import numpy as np

from . import dtypes as dt
from .tensor import Tensor, _wrap

_state = {"seed": 0, "counter": 0, "gen": np.random.default_rng(0)}


def seed(value: int) -> None:
    """Reseed both the tensor generator and the dropout key stream."""
    _state.update(seed=int(value), counter=0, gen=np.random.default_rng(int(value)))


def _draw(sample, shape, dtype, device) -> Tensor:
    from .tensor import array
    shape = (shape,) if isinstance(shape, int) else tuple(shape or ())
    data = sample(_state["gen"], shape)
    return array(data.astype(dt.to_numpy(dt.canonical(dtype or dt.DEFAULT_FLOAT))),
                 device=device)


def uniform(low=0.0, high=1.0, shape=(), dtype=None, device=None) -> Tensor:
    return _draw(lambda g, s: g.uniform(low, high, s), shape, dtype, device)


def normal(loc=0.0, scale=1.0, shape=(), dtype=None, device=None) -> Tensor:
    return _draw(lambda g, s: g.normal(loc, scale, s), shape, dtype, device)


def randint(low, high, shape=(), dtype="int64", device=None) -> Tensor:
    return _draw(lambda g, s: g.integers(low, high, s), shape, dtype, device)


def _mix(x: int) -> int:
    """splitmix64's finalizer, to turn (seed, counter) into a well-spread key."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def next_key_value() -> int:
    """The next key of the global stream, a non-negative int below 2**31."""
    key = _mix(_mix(_state["seed"]) ^ _state["counter"]) & 0x7FFFFFFF
    _state["counter"] += 1
    return key


def next_key(like: Tensor | None = None) -> Tensor:
    """A key tensor (int64, 0-d). While ``like`` is traced, a per-call input of the trace."""
    if like is not None and like._sym is not None:
        return like._sym.tracer.new_key()
    return _wrap(np.asarray(next_key_value(), np.int64))
