"""Composite ops, written as compositions of primitives so that fusion sees through them
and their gradients come from the primitives' VJPs.
"""

from __future__ import annotations

import math

from ..errors import ShapeError
from ..tensor import shape_dependent
from .elementwise import abs as _abs
from .elementwise import exp, log, rsqrt, where
from .reduce import max as _max
from .reduce import mean, reduced_axes, sum


def _stable_max(x, axis):
    """The max along ``axis`` with infinities replaced by 0, so ``x - m`` stays finite.

    An empty axis has no max (`max` raises there), but any shift is as good: 0, so that
    logsumexp gives log(0) = -inf as numpy does and softmax an empty tensor."""
    if _empty_axis(x, axis):
        return 0
    m = _max(x, axis=axis, keepdims=True)
    return where(_abs(m) < math.inf, m, 0)


def _empty_axis(x, axis) -> bool:
    shape = tuple(getattr(x, "shape", ()))
    if 0 not in shape:
        return False
    try:
        axes = reduced_axes(axis, len(shape))
    except ShapeError:
        return False  # let max name the bad axis
    return any(shape[a] == 0 for a in axes)


@shape_dependent
def logsumexp(x, axis=None, keepdims: bool = False):
    """log(sum(exp(x))) along ``axis``, without overflow."""
    m = _stable_max(x, axis)
    out = log(sum(exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else _drop(out, x, axis)


def _drop(out, x, axis):
    from .shape import squeeze
    return squeeze(out, axis=axis)


@shape_dependent
def softmax(x, axis: int = -1):
    e = exp(x - _stable_max(x, axis))
    return e / sum(e, axis=axis, keepdims=True)


@shape_dependent
def log_softmax(x, axis: int = -1):
    s = x - _stable_max(x, axis)
    return s - log(sum(exp(s), axis=axis, keepdims=True))


@shape_dependent
def var(x, axis=None, keepdims: bool = False):
    """Population variance (ddof=0), as numpy.var's default."""
    centered = x - mean(x, axis=axis, keepdims=True)
    return mean(centered * centered, axis=axis, keepdims=keepdims)


@shape_dependent
def layer_norm(x, gamma=None, beta=None, axis=-1, eps: float = 1e-5):
    """Normalize over ``axis`` (an int or tuple of trailing axes), then scale and shift.

    ``gamma`` and ``beta`` have the shape of the normalized axes (None: 1 and 0)."""
    mu = mean(x, axis=axis, keepdims=True)
    centered = x - mu
    y = centered * rsqrt(mean(centered * centered, axis=axis, keepdims=True) + eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y
