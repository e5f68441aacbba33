"""Reductions over an axis tuple, with keepdims: sum, mean, max, min, prod, argmax, argmin.

Each declares how it lowers (`Reduction`: combiner, identity, finalizer). Reducing over a
zero-size axis is allowed where the combiner has an identity (sum, prod, mean gives NaN as
numpy) and a ShapeError for max, min, argmax and argmin, which have no answer there.
"""

from __future__ import annotations

import builtins
import math
import numbers

from .. import dtypes as dt
from ..errors import ShapeError
from ..tensor import apply
from ..types import TensorType, normalize_axes, normalize_axis
from .registry import Kind, Op, Reduction, register


def _as_int(axis):
    """numpy integers (``axis=np.int64(1)``) as Python ints: numpy accepts them, and node
    attrs must stay JSON-friendly. Anything else is left for normalize_axis to reject."""
    return int(axis) if isinstance(axis, numbers.Integral) and not isinstance(axis, bool) else axis


def reduced_axes(axis, ndim: int) -> tuple[int, ...]:
    """The sorted non-negative axes named by ``axis``: None (all), an int or an iterable."""
    axis = _as_int(axis)
    if axis is not None and not isinstance(axis, int):
        # a float or other non-iterable: let normalize_axis say what is wrong with it
        axis = tuple(map(_as_int, axis)) if hasattr(axis, "__iter__") else (axis,)
    return normalize_axes(axis, ndim)


def _canonical(types, attrs):
    return {"axis": reduced_axes(attrs.get("axis"), types[0].ndim),
            "keepdims": bool(attrs.get("keepdims", False))}


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _rule(out_dtype, needs_elements):
    def rule(types, axis, keepdims):
        (x,) = types
        if needs_elements and any(x.shape[a] == 0 for a in axis):
            raise ShapeError(f"cannot reduce over a zero-size axis of shape {x.shape}; "
                             "it has no maximum or minimum")
        return TensorType(_reduced_shape(x.shape, axis, keepdims), out_dtype(x.dtype))
    return rule


def _accumulating(dtype):
    """sum and prod accumulate bool and integers in int64, floats in their own dtype."""
    return dtype if dt.is_float(dtype) else "int64"


def _keep(g, x, axis, keepdims):
    """Bring a reduced cotangent back to the input's rank and shape."""
    from .shape import broadcast_to, reshape
    if not keepdims:
        g = reshape(g, _reduced_shape(x.shape, axis, True))
    return broadcast_to(g, x.shape)


def _sum_vjp(g, x, out, axis, keepdims):
    return (_keep(g, x, axis, keepdims),)


def _mean_vjp(g, x, out, axis, keepdims):
    count = math.prod(x.shape[a] for a in axis)
    return (_keep(g, x, axis, keepdims) / builtins.max(count, 1),)


def _extreme_vjp(g, x, out, axis, keepdims):
    """Split the cotangent evenly among the elements that attain the extreme (as JAX)."""
    from .elementwise import cast, where
    hit = x == _keep(out, x, axis, keepdims)
    share = cast(hit, x.dtype.name)
    ties = _keep(sum(share, axis=axis, keepdims=keepdims), x, axis, keepdims)
    return (where(hit, _keep(g, x, axis, keepdims) / ties, 0),)


def _prod_vjp(g, x, out, axis, keepdims):
    """Exact where x has no zeros (g * prod / x)."""
    return (_keep(g * out, x, axis, keepdims) / x,)


def _sum_impl(xp, x, axis, keepdims):
    return xp.sum(x, axis=axis, keepdims=keepdims, dtype=_accumulating(dt.name_of(x.dtype)))


def _mean_impl(xp, x, axis, keepdims):
    dtype = dt.float_of(dt.name_of(x.dtype))
    if math.prod(x.shape[a] for a in axis) == 0:
        return xp.full(_reduced_shape(x.shape, axis, keepdims), xp.nan, dtype)
    return xp.mean(x.astype(dtype, copy=False), axis=axis, keepdims=keepdims)


def _prod_impl(xp, x, axis, keepdims):
    return xp.prod(x, axis=axis, keepdims=keepdims, dtype=_accumulating(dt.name_of(x.dtype)))


def _define(name, impl, vjp, reduction, out_dtype=lambda d: d, needs_elements=False):
    return register(Op(name, Kind.REDUCTION, _rule(out_dtype, needs_elements), impl, vjp=vjp,
                       canonical=_canonical, reduction=reduction))


_SUM = _define("sum", _sum_impl, _sum_vjp, Reduction("add", 0.0), _accumulating)
_MEAN = _define("mean", _mean_impl, _mean_vjp, Reduction("add", 0.0, "mean"), dt.float_of)
_MAX = _define("max", lambda xp, x, axis, keepdims: xp.max(x, axis=axis, keepdims=keepdims),
               _extreme_vjp, Reduction("max", -math.inf), needs_elements=True)
_MIN = _define("min", lambda xp, x, axis, keepdims: xp.min(x, axis=axis, keepdims=keepdims),
               _extreme_vjp, Reduction("min", math.inf), needs_elements=True)
_PROD = _define("prod", _prod_impl, _prod_vjp, Reduction("mul", 1.0), _accumulating)


# argmax / argmin: one axis, or the flattened tensor when axis is None (as numpy).

def _arg_canonical(types, attrs):
    axis = _as_int(attrs.get("axis"))
    return {"axis": None if axis is None else normalize_axis(axis, types[0].ndim),
            "keepdims": bool(attrs.get("keepdims", False))}


def _arg_rule(types, axis, keepdims):
    (x,) = types
    axes = tuple(range(x.ndim)) if axis is None else (axis,)
    if any(x.shape[a] == 0 for a in axes):
        raise ShapeError(f"cannot take the arg-extreme over a zero-size axis of shape {x.shape}")
    return TensorType(_reduced_shape(x.shape, axes, keepdims), "int64")


def _arg_impl(fn_name):
    def impl(xp, x, axis, keepdims):
        out = getattr(xp, fn_name)(x, axis=axis, keepdims=keepdims)
        return xp.asarray(out, dtype=xp.int64)
    return impl


_ARGMAX = register(Op("argmax", Kind.REDUCTION, _arg_rule, _arg_impl("argmax"),
                      vjp=lambda g, x, out, axis, keepdims: (None,),
                      canonical=_arg_canonical, reduction=Reduction("argmax", -math.inf)))
_ARGMIN = register(Op("argmin", Kind.REDUCTION, _arg_rule, _arg_impl("argmin"),
                      vjp=lambda g, x, out, axis, keepdims: (None,),
                      canonical=_arg_canonical, reduction=Reduction("argmin", math.inf)))


def sum(x, axis=None, keepdims: bool = False):
    """Sum over ``axis`` (an int, a tuple, or None for all); ints accumulate in int64."""
    return apply(_SUM, x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims: bool = False):
    """Arithmetic mean; integer inputs give float32."""
    return apply(_MEAN, x, axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims: bool = False):
    """Maximum over ``axis``; NaN wins, as numpy."""
    return apply(_MAX, x, axis=axis, keepdims=keepdims)


def min(x, axis=None, keepdims: bool = False):
    """Minimum over ``axis``; NaN wins, as numpy."""
    return apply(_MIN, x, axis=axis, keepdims=keepdims)


def prod(x, axis=None, keepdims: bool = False):
    """Product over ``axis``."""
    return apply(_PROD, x, axis=axis, keepdims=keepdims)


def argmax(x, axis: int | None = None, keepdims: bool = False):
    """Index of the first maximum along ``axis`` (of the flattened tensor if None), int64."""
    return apply(_ARGMAX, x, axis=axis, keepdims=keepdims)


def argmin(x, axis: int | None = None, keepdims: bool = False):
    """Index of the first minimum along ``axis`` (of the flattened tensor if None), int64."""
    return apply(_ARGMIN, x, axis=axis, keepdims=keepdims)
