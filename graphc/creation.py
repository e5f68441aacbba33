"""Concrete tensors made from nothing: zeros, ones, full, arange (float32 by default),
on the CPU or, with ``device=``, on a GPU (made there: nothing is copied from the host)."""

from __future__ import annotations

from . import dtypes as dt
from .device import as_device
from .tensor import Tensor, _wrap


def _shape(shape) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int) else tuple(int(d) for d in shape)


def full(shape, fill_value, dtype=None, device=None) -> Tensor:
    if dtype is None:
        dtype = dt.scalar_dtype(fill_value, None)
    dev = as_device(device)
    with dev.scope():
        return _wrap(dev.xp.full(_shape(shape), fill_value, dt.to_numpy(dt.canonical(dtype))))


def zeros(shape, dtype=None, device=None) -> Tensor:
    return full(shape, 0, dtype or dt.DEFAULT_FLOAT, device)


def ones(shape, dtype=None, device=None) -> Tensor:
    return full(shape, 1, dtype or dt.DEFAULT_FLOAT, device)


def zeros_like(x: Tensor, dtype=None) -> Tensor:
    return zeros(x.shape, dtype or x.dtype, x.device)


def ones_like(x: Tensor, dtype=None) -> Tensor:
    return ones(x.shape, dtype or x.dtype, x.device)


def arange(start, stop=None, step=1, dtype=None, device=None) -> Tensor:
    """As numpy.arange; integer arguments give int64, any float gives float32."""
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        is_float = any(isinstance(v, float) for v in (start, stop, step))
        dtype = dt.DEFAULT_FLOAT if is_float else dt.DEFAULT_INT
    dev = as_device(device)
    with dev.scope():
        return _wrap(dev.xp.arange(start, stop, step, dtype=dt.to_numpy(dt.canonical(dtype))))
