"""Elementwise ops: one `Op` record each, with its scalar expression for the backends.

Every op here broadcasts its inputs like numpy after casting them to a common dtype
(see `graphc.dtypes`); its eager implementation is the numpy/cupy ufunc, its scalar
expression the same math over `graphc.ops.scalar` primitives, and its VJP is written
with graphc ops. Gradients of broadcast inputs are summed back with `sum_to`.
"""

from __future__ import annotations

import math

from .. import dtypes as dt
from ..errors import DTypeError
from ..tensor import Tensor, apply, set_cast_op
from ..types import TensorType, broadcast_shapes
from . import scalar as S
from .registry import Kind, Op, promote_common, promote_float, register
from .special import erf as _erf_impl

# -- type rules and promotion policies --------------------------------------------------

def _same_dtype(types: tuple) -> TensorType:
    shape = types[0].shape if len(types) == 1 else broadcast_shapes(*(t.shape for t in types))
    return TensorType(shape, types[0].dtype)


def _compare_type(types: tuple) -> TensorType:
    return TensorType(broadcast_shapes(*(t.shape for t in types)), "bool")


def promote_arith(dtypes: tuple[str, ...]) -> tuple[str, ...]:
    """Common dtype; arithmetic never computes in bool, so bool operands become int64."""
    common = dt.promote(*dtypes)
    return ((dt.DEFAULT_INT if common == "bool" else common),) * len(dtypes)


def promote_bool(dtypes: tuple[str, ...]) -> tuple[str, ...]:
    return ("bool",) * len(dtypes)


def promote_where(dtypes: tuple[str, ...]) -> tuple[str, ...]:
    common = dt.promote(*dtypes[1:])
    return ("bool", common, common)


def sum_to(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum ``g`` down to ``shape``: the VJP of broadcasting ``shape`` up to ``g.shape``."""
    if tuple(g.shape) == tuple(shape):
        return g
    from .reduce import sum as _sum
    from .shape import reshape
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape)
                                      if d == 1 and g.shape[lead + i] != 1)
    return reshape(_sum(g, axis=axes), shape)


def _define(name: str, impl, scalar, vjp, promote, type_rule=_same_dtype, arity=1,
            **extra) -> Op:
    # Every input of an elementwise op is read at the index it writes, so the output may
    # take over any input's buffer of the same size and dtype (the planner checks those).
    inplace = tuple(range(arity)) if type_rule is _same_dtype else ()
    return register(Op(name, Kind.ELEMENTWISE, lambda types, **a: type_rule(types),
                       impl, vjp=vjp, promote=promote, scalar=scalar, inplace=inplace,
                       **extra))


def _unary_fn(op: Op, doc: str):
    def fn(x):
        return apply(op, x)
    fn.__name__, fn.__qualname__, fn.__doc__ = op.name, op.name, doc
    return fn


def _binary_fn(op: Op, doc: str):
    def fn(x, y):
        return apply(op, x, y)
    fn.__name__, fn.__qualname__, fn.__doc__ = op.name, op.name, doc
    return fn


# -- unary -------------------------------------------------------------------------------

_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_GELU_C = 0.044715


def _gelu_tanh_grad(x):
    t = tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * x * x)


def _sigmoid_impl(xp, x):
    """1 / (1 + e**-x) with z = e**-|x|, which never overflows (numpy would warn)."""
    z = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + z), z / (1 + z))


# name: (impl, scalar, vjp(g, x, out), promote, doc)
_UNARY = {
    "neg": (lambda xp, x: xp.negative(x), lambda x: -x,
            lambda g, x, out: (-g,), promote_arith, "-x"),
    "abs": (lambda xp, x: xp.abs(x), lambda x: S.sabs(x),
            lambda g, x, out: (g * sign(x),), promote_arith, "|x|"),
    "exp": (lambda xp, x: xp.exp(x), lambda x: S.exp(x),
            lambda g, x, out: (g * out,), promote_float, "e**x"),
    "log": (lambda xp, x: xp.log(x), lambda x: S.log(x),
            lambda g, x, out: (g / x,), promote_float, "natural logarithm"),
    "log1p": (lambda xp, x: xp.log1p(x), lambda x: S.log1p(x),
              lambda g, x, out: (g / (x + 1),), promote_float, "log(1 + x), accurate near 0"),
    "expm1": (lambda xp, x: xp.expm1(x), lambda x: S.expm1(x),
              lambda g, x, out: (g * (out + 1),), promote_float, "e**x - 1, accurate near 0"),
    "sqrt": (lambda xp, x: xp.sqrt(x), lambda x: S.sqrt(x),
             lambda g, x, out: (g * 0.5 / out,), promote_float, "square root"),
    "rsqrt": (lambda xp, x: 1 / xp.sqrt(x), lambda x: 1 / S.sqrt(x),
              lambda g, x, out: (g * -0.5 * out / x,), promote_float, "1 / sqrt(x)"),
    "square": (lambda xp, x: xp.square(x), lambda x: x * x,
               lambda g, x, out: (g * 2 * x,), promote_arith, "x * x"),
    "reciprocal": (lambda xp, x: xp.reciprocal(x), lambda x: 1 / x,
                   lambda g, x, out: (-g * out * out,), promote_float, "1 / x"),
    "sin": (lambda xp, x: xp.sin(x), lambda x: S.sin(x),
            lambda g, x, out: (g * cos(x),), promote_float, "sine"),
    "cos": (lambda xp, x: xp.cos(x), lambda x: S.cos(x),
            lambda g, x, out: (-g * sin(x),), promote_float, "cosine"),
    "tanh": (lambda xp, x: xp.tanh(x), lambda x: S.tanh(x),
             lambda g, x, out: (g * (1 - out * out),), promote_float, "hyperbolic tangent"),
    "sigmoid": (lambda xp, x: _sigmoid_impl(xp, x), lambda x: 1 / (1 + S.exp(-x)),
                lambda g, x, out: (g * out * (1 - out),), promote_float, "1 / (1 + e**-x)"),
    "relu": (lambda xp, x: xp.maximum(x, 0), lambda x: S.smax(x, 0),
             lambda g, x, out: (where(x > 0, g, 0),), promote_arith, "max(x, 0)"),
    "erf": (lambda xp, x: _erf_impl(xp, x), lambda x: S.erf(x),
            lambda g, x, out: (g * _TWO_OVER_SQRT_PI * exp(-x * x),), promote_float,
            "the error function"),
    "softplus": (lambda xp, x: xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x))),
                 lambda x: S.smax(x, 0) + S.log1p(S.exp(-S.sabs(x))),
                 lambda g, x, out: (g * sigmoid(x),), promote_float,
                 "log(1 + e**x), without overflow"),
    "sign": (lambda xp, x: xp.sign(x),
             lambda x: S.select(x > 0, 1, S.select(x < 0, -1, S.select(S.eq(x, x), 0, x))),
             lambda g, x, out: (None,), promote_arith, "-1, 0 or 1 (NaN stays NaN)"),
    "floor": (lambda xp, x: xp.floor(x), lambda x: S.floor(x),
              lambda g, x, out: (None,), promote_float, "round down"),
    "ceil": (lambda xp, x: xp.ceil(x), lambda x: S.ceil(x),
             lambda g, x, out: (None,), promote_float, "round up"),
    "round": (lambda xp, x: xp.rint(x), lambda x: S.rint(x),
              lambda g, x, out: (None,), promote_float, "round half to even, as numpy"),
    "logical_not": (lambda xp, x: xp.logical_not(x), lambda x: S.logical_not(x),
                    lambda g, x, out: (None,), promote_bool, "not x, on bools"),
}

for _name, (_impl, _scalar, _vjp, _promote, _doc) in _UNARY.items():
    globals()[_name] = _unary_fn(_define(_name, _impl, _scalar, _vjp, _promote), _doc)

neg = globals()["neg"]
exp, log, sqrt, sin, cos, tanh = (globals()[n] for n in ("exp", "log", "sqrt", "sin", "cos",
                                                         "tanh"))
sigmoid, sign, relu, erf = (globals()[n] for n in ("sigmoid", "sign", "relu", "erf"))


# -- unary with attributes ---------------------------------------------------------------

def _float_attrs(*names: str, optional: bool = False):
    """A canonical rule that makes the named attrs Python floats (None allowed if optional),
    so a graph file cannot smuggle a string into a scalar expression."""
    def canonical(types, attrs):
        return {k: None if optional and attrs.get(k) is None else float(attrs[k])
                for k in names}
    return canonical


def _with_attrs(name, impl, scalar, vjp, promote, canonical) -> Op:
    return register(Op(name, Kind.ELEMENTWISE, lambda types, **a: _same_dtype(types), impl,
                       vjp=vjp, promote=promote, scalar=scalar, inplace=(0,),
                       canonical=canonical))


_LEAKY = _with_attrs(
    "leaky_relu", lambda xp, x, alpha: xp.where(x > 0, x, x * x.dtype.type(alpha)),
    lambda x, alpha: S.select(x > 0, x, x * alpha),
    lambda g, x, out, alpha: (where(x > 0, g, g * alpha),), promote_float,
    _float_attrs("alpha"))
_ELU = _with_attrs(
    "elu", lambda xp, x, alpha: xp.where(x > 0, x, x.dtype.type(alpha) * xp.expm1(x)),
    lambda x, alpha: S.select(x > 0, x, alpha * S.expm1(x)),
    lambda g, x, out, alpha: (where(x > 0, g, g * (out + alpha)),), promote_float,
    _float_attrs("alpha"))


def _gelu_impl(xp, x, approximate):
    if approximate == "tanh":
        c = x.dtype.type(_SQRT_2_OVER_PI)
        return 0.5 * x * (1 + xp.tanh(c * (x + x.dtype.type(_GELU_C) * x * x * x)))
    return 0.5 * x * (1 + _erf_impl(xp, x / x.dtype.type(_SQRT2)))


def _gelu_scalar(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + S.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x)))
    return 0.5 * x * (1 + S.erf(x * (1 / _SQRT2)))


def _gelu_vjp(g, x, out, approximate):
    if approximate == "tanh":
        return (g * _gelu_tanh_grad(x),)
    return (g * (0.5 * (1 + erf(x * (1 / _SQRT2))) + x * exp(-0.5 * x * x) * _INV_SQRT_2PI),)


def _gelu_canonical(types, attrs):
    approximate = attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return {"approximate": approximate}


_GELU = register(Op("gelu", Kind.ELEMENTWISE, lambda types, **a: _same_dtype(types),
                    _gelu_impl, vjp=_gelu_vjp, promote=promote_float, scalar=_gelu_scalar,
                    canonical=_gelu_canonical, inplace=(0,)))


def _clip_impl(xp, x, min, max):
    if min is not None:
        x = xp.maximum(x, x.dtype.type(min))
    if max is not None:
        x = xp.minimum(x, x.dtype.type(max))
    return x


def _clip_scalar(x, min, max):
    # Bounds are constants of x's dtype, converted as the impl converts them (an int
    # tensor truncates a float bound), so backends see a well-typed max/min.
    def bound(v):
        return S.const(v if dt.is_float(x.dtype) else int(v), x.dtype)
    if min is not None:
        x = S.smax(x, bound(min))
    if max is not None:
        x = S.smin(x, bound(max))
    return x


def _clip_vjp(g, x, out, min, max):
    inside = g
    if min is not None:
        inside = where(x >= min, inside, 0)
    if max is not None:
        inside = where(x <= max, inside, 0)
    return (inside,)


_CLIP = _with_attrs("clip", _clip_impl, _clip_scalar, _clip_vjp, promote_arith,
                    _float_attrs("min", "max", optional=True))


def _cast_rule(types, dtype):
    return TensorType(types[0].shape, dtype)


def _cast_canonical(types, attrs):
    return {"dtype": dt.canonical(attrs["dtype"])}


def _cast_vjp(g, x, out, dtype):
    return (apply(_CAST, g, dtype=x.dtype.name) if dt.is_float(x.dtype.name) else None,)


_CAST = register(Op("cast", Kind.ELEMENTWISE, _cast_rule,
                    lambda xp, x, dtype: x.astype(dt.to_numpy(dtype)),
                    vjp=_cast_vjp, canonical=_cast_canonical,
                    scalar=lambda x, dtype: S.cast(x, dtype)))
set_cast_op(_CAST)


def leaky_relu(x, alpha: float = 0.01):
    """x where x > 0, else alpha * x."""
    return apply(_LEAKY, x, alpha=float(alpha))


def elu(x, alpha: float = 1.0):
    """x where x > 0, else alpha * (e**x - 1)."""
    return apply(_ELU, x, alpha=float(alpha))


def gelu(x, approximate: str = "none"):
    """x * Phi(x); ``approximate='tanh'`` is the tanh form used by BERT and GPT-2."""
    return apply(_GELU, x, approximate=approximate)


def clip(x, min=None, max=None):
    """Limit x to [min, max]; either bound may be None."""
    return apply(_CLIP, x, min=None if min is None else float(min),
                 max=None if max is None else float(max))


def cast(x, dtype):
    """x converted to ``dtype`` (float to int truncates toward zero, as numpy)."""
    return apply(_CAST, x, dtype=dt.canonical(dtype))


# -- binary ------------------------------------------------------------------------------

def _max_vjp(g, x, y, out):
    take_x = x >= y
    return sum_to(where(take_x, g, 0), x.shape), sum_to(where(take_x, 0, g), y.shape)


def _min_vjp(g, x, y, out):
    take_x = x <= y
    return sum_to(where(take_x, g, 0), x.shape), sum_to(where(take_x, 0, g), y.shape)


def _pow_vjp(g, x, y, out):
    positive = x > 0
    log_x = where(positive, log(where(positive, x, 1)), 0)
    return sum_to(g * y * x ** (y - 1), x.shape), sum_to(g * out * log_x, y.shape)


_NONE2 = lambda g, x, y, out: (None, None)

# name: (impl, scalar, vjp(g, x, y, out), promote, type rule, doc)
_BINARY = {
    "add": (lambda xp, x, y: xp.add(x, y), lambda x, y: x + y,
            lambda g, x, y, out: (sum_to(g, x.shape), sum_to(g, y.shape)),
            promote_arith, _same_dtype, "x + y"),
    "sub": (lambda xp, x, y: xp.subtract(x, y), lambda x, y: x - y,
            lambda g, x, y, out: (sum_to(g, x.shape), sum_to(-g, y.shape)),
            promote_arith, _same_dtype, "x - y"),
    "mul": (lambda xp, x, y: xp.multiply(x, y), lambda x, y: x * y,
            lambda g, x, y, out: (sum_to(g * y, x.shape), sum_to(g * x, y.shape)),
            promote_arith, _same_dtype, "x * y"),
    "div": (lambda xp, x, y: xp.divide(x, y), lambda x, y: x / y,
            lambda g, x, y, out: (sum_to(g / y, x.shape), sum_to(-g * out / y, y.shape)),
            promote_float, _same_dtype, "x / y (true division; integers give float32)"),
    "pow": (lambda xp, x, y: xp.power(x, y), lambda x, y: x ** y, _pow_vjp,
            promote_arith, _same_dtype, "x ** y"),
    "maximum": (lambda xp, x, y: xp.maximum(x, y), lambda x, y: S.smax(x, y), _max_vjp,
                promote_arith, _same_dtype, "elementwise max; NaN wins"),
    "minimum": (lambda xp, x, y: xp.minimum(x, y), lambda x, y: S.smin(x, y), _min_vjp,
                promote_arith, _same_dtype, "elementwise min; NaN wins"),
    "equal": (lambda xp, x, y: xp.equal(x, y), lambda x, y: S.eq(x, y), _NONE2,
              promote_common, _compare_type, "x == y"),
    "not_equal": (lambda xp, x, y: xp.not_equal(x, y), lambda x, y: S.ne(x, y), _NONE2,
                  promote_common, _compare_type, "x != y"),
    "less": (lambda xp, x, y: xp.less(x, y), lambda x, y: x < y, _NONE2,
             promote_common, _compare_type, "x < y"),
    "less_equal": (lambda xp, x, y: xp.less_equal(x, y), lambda x, y: x <= y, _NONE2,
                   promote_common, _compare_type, "x <= y"),
    "greater": (lambda xp, x, y: xp.greater(x, y), lambda x, y: x > y, _NONE2,
                promote_common, _compare_type, "x > y"),
    "greater_equal": (lambda xp, x, y: xp.greater_equal(x, y), lambda x, y: x >= y, _NONE2,
                      promote_common, _compare_type, "x >= y"),
    "logical_and": (lambda xp, x, y: xp.logical_and(x, y),
                    lambda x, y: S.logical_and(x, y), _NONE2, promote_bool, _same_dtype,
                    "x and y, on bools"),
    "logical_or": (lambda xp, x, y: xp.logical_or(x, y), lambda x, y: S.logical_or(x, y),
                   _NONE2, promote_bool, _same_dtype, "x or y, on bools"),
}

for _name, (_impl, _scalar, _vjp, _promote, _rule, _doc) in _BINARY.items():
    globals()[_name] = _binary_fn(_define(_name, _impl, _scalar, _vjp, _promote, _rule,
                                          arity=2), _doc)

add, sub, mul, div = (globals()[n] for n in ("add", "sub", "mul", "div"))
maximum, minimum = globals()["maximum"], globals()["minimum"]
subtract, multiply, divide, power = sub, mul, div, globals()["pow"]


def _where_rule(types):
    if types[0].dtype != "bool":
        raise DTypeError(f"condition must be bool, got {types[0].dtype}")
    return TensorType(broadcast_shapes(*(t.shape for t in types)), types[1].dtype)


def _where_vjp(g, c, x, y, out):
    return None, sum_to(where(c, g, 0), x.shape), sum_to(where(c, 0, g), y.shape)


_WHERE = register(Op("where", Kind.ELEMENTWISE, lambda types: _where_rule(types),
                     lambda xp, c, x, y: xp.where(c, x, y), vjp=_where_vjp,
                     promote=promote_where, scalar=lambda c, x, y: S.select(c, x, y),
                     inplace=(1, 2)))


def where(condition, x, y):
    """x where condition is true, else y (all three broadcast)."""
    return apply(_WHERE, condition, x, y)
