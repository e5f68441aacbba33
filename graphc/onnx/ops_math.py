"""ONNX converters for math ops: elementwise arithmetic, activations, comparisons and
logic, Cast/Where, MatMul/Gemm, reductions and ArgMax/ArgMin.

ONNX asks for equal input dtypes where graphc would promote, so the converters call graphc
ops directly; they cast only where ONNX semantics differ from numpy's: integer Div
truncates toward zero (graphc's div is true division), Mod, Pow with an exponent of another
dtype, and reductions graphc computes in float (ReduceMean of ints) cast back to the input
dtype. Attributes that became inputs (Clip's bounds at 11, reduction axes at 13/18) are
read from either place by opset.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes as dt
from ..ops import composite as C
from ..ops import elementwise as E
from ..ops import linalg as L
from ..ops import reduce as R
from ..ops import shape as S
from ..tensor import Tensor, array
from .importer import converter, dtype_name


def _dtype(t) -> str:
    return dt.name_of(t.dtype)


def _restore(out, like: str):
    """``out`` cast back to ``like`` when graphc computed it in another dtype."""
    return out if _dtype(out) == like else E.cast(out, like)


# -- elementwise: unary -------------------------------------------------------------------

_UNARY = {
    "Neg": E.neg, "Abs": E.abs, "Sqrt": E.sqrt, "Exp": E.exp, "Log": E.log,
    "Reciprocal": E.reciprocal, "Floor": E.floor, "Ceil": E.ceil, "Round": E.round,
    "Sign": E.sign, "Sin": E.sin, "Cos": E.cos, "Tanh": E.tanh, "Sigmoid": E.sigmoid,
    "Relu": E.relu, "Erf": E.erf, "Softplus": E.softplus, "Not": E.logical_not,
}


def _unary(fn):
    def convert(ctx):
        x = ctx.tensor(0)
        kind = _dtype(x)
        out = fn(x)
        # Floor/Ceil/Round/Sign/Abs of ints are identities or stay ints in ONNX
        return _restore(out, kind) if kind != "bool" else out
    return convert


for _op, _fn in _UNARY.items():
    converter(_op)(_unary(_fn))


@converter("LeakyRelu")
def _leaky_relu(ctx):
    return E.leaky_relu(ctx.tensor(0), ctx.attr("alpha", 0.01))


@converter("Elu")
def _elu(ctx):
    return E.elu(ctx.tensor(0), ctx.attr("alpha", 1.0))


@converter("ThresholdedRelu")
def _thresholded_relu(ctx):
    x = ctx.tensor(0)
    return E.where(x > ctx.attr("alpha", 1.0), x, 0)


@converter("HardSigmoid")
def _hard_sigmoid(ctx):
    x = ctx.tensor(0)
    return E.clip(x * ctx.attr("alpha", 0.2) + ctx.attr("beta", 0.5), 0.0, 1.0)


@converter("Softsign")
def _softsign(ctx):
    x = ctx.tensor(0)
    return x / (E.abs(x) + 1)


@converter("Mish")
def _mish(ctx):
    x = ctx.tensor(0)
    return x * E.tanh(E.softplus(x))


def _bound(ctx, value, kind: str):
    """A Clip bound input: None, a 0-d array of the clipped tensor's dtype ``kind``, or
    the Tensor itself when it is computed from the model's inputs."""
    if value is None:
        return None
    if not isinstance(value, np.ndarray):
        return value                       # a Tensor computed at run time
    if value.size != 1:
        raise ctx.fail(f"Clip bounds must be scalars, got shape {value.shape}")
    return np.asarray(value.reshape(()), dt.to_numpy(kind))


@converter("Clip")
def _clip(ctx):
    x = ctx.tensor(0)
    kind = _dtype(x)
    if ctx.opset < 11:
        lo, hi = ctx.attr("min"), ctx.attr("max")
        lo = None if lo is None or lo == -math.inf else np.asarray(lo, dt.to_numpy(kind))
        hi = None if hi is None or hi == math.inf else np.asarray(hi, dt.to_numpy(kind))
    else:
        lo = _bound(ctx, ctx.inputs[1] if ctx.has(1) else None, kind)
        hi = _bound(ctx, ctx.inputs[2] if ctx.has(2) else None, kind)
    if dt.is_float(kind) and all(b is None or isinstance(b, np.ndarray) for b in (lo, hi)):
        return E.clip(x, None if lo is None else float(lo), None if hi is None else float(hi))
    # ints (whose bounds a float attr could not hold exactly) and run-time bounds
    if lo is not None:
        x = E.maximum(x, _as_tensor(lo, kind))
    if hi is not None:
        x = E.minimum(x, _as_tensor(hi, kind))
    return x


def _as_tensor(v, kind: str):
    return v if isinstance(v, Tensor) else array(np.asarray(v, dt.to_numpy(kind)), dtype=kind)


# -- elementwise: binary ------------------------------------------------------------------

_BINARY = {
    "Add": E.add, "Sub": E.sub, "Mul": E.mul,
    "Equal": E.equal, "Less": E.less, "Greater": E.greater,
    "LessOrEqual": E.less_equal, "GreaterOrEqual": E.greater_equal,
    "And": E.logical_and, "Or": E.logical_or, "Xor": E.not_equal,
}


def _operands(ctx):
    """A binary op's two inputs; before opset 7, ``broadcast=1`` with ``axis`` aligns the
    second input's dims with the first's starting at ``axis`` (trailing 1s appended)."""
    a, b = ctx.tensor(0), ctx.tensor(1)
    axis = ctx.attr("axis")
    if ctx.opset < 7 and ctx.attr("broadcast", 0) and axis is not None:
        rank = len(ctx.shape(0))
        axis = axis + rank if axis < 0 else axis
        trailing = rank - axis - len(ctx.shape(1))
        if trailing < 0:
            raise ctx.fail(f"legacy broadcast of {ctx.shape(1)} at axis {axis} of "
                           f"{ctx.shape(0)}")
        b = S.reshape(b, ctx.shape(1) + (1,) * trailing)
    return a, b


def _binary(fn):
    def convert(ctx):
        return fn(*_operands(ctx))
    return convert


for _op, _fn in _BINARY.items():
    converter(_op)(_binary(_fn))


@converter("Div")
def _div(ctx):
    a, b = _operands(ctx)
    kind = _dtype(a)
    if dt.is_float(kind):
        return E.div(a, b)
    # integer division truncates toward zero (C), not floor (Python): float64 holds
    # every int32 and int64 up to 2**53 exactly
    q = E.div(E.cast(a, "float64"), E.cast(b, "float64"))
    return E.cast(q, kind)   # float -> int truncates toward zero


@converter("Mod")
def _mod(ctx):
    a, b = ctx.tensor(0), ctx.tensor(1)
    kind = _dtype(a)
    # in float64: exact for ints up to 2**53, and float32 quotients round once
    fa = a if kind == "float64" else E.cast(a, "float64")
    fb = b if kind == "float64" else E.cast(b, "float64")
    q = fa / fb
    if ctx.attr("fmod", 0):      # C fmod, A - trunc(A / B) * B: the sign of the dividend
        q = E.sign(q) * E.floor(E.abs(q))
    else:                        # Python %, A - floor(A / B) * B: the sign of the divisor
        q = E.floor(q)           # (for floats too from opset 28)
    r = fa - q * fb
    if not ctx.attr("fmod", 0) and dt.is_float(kind):
        # the remainder of a finite x by an infinite y: x when the signs agree, else y
        # (numpy.mod's rule), where the formula gives NaN
        agree = (fa == 0) | ((fa > 0) == (fb > 0))
        r = E.where((E.abs(fb) == math.inf) & (E.abs(fa) < math.inf),
                    E.where(agree, E.where(fa == 0, fa * 0 * E.sign(fb), fa), fb), r)
    return _restore(r, kind)


@converter("Pow")
def _pow(ctx):
    x = ctx.tensor(0)
    kind = _dtype(x)
    if ctx.is_const(1) and ctx.const(1).size == 1 and dt.is_float(kind) \
            and ctx.const(1).ndim <= len(x.shape):   # (a (1, 1) exponent would broadcast)
        e = float(ctx.const(1).reshape(()))
        if e == 1.0:
            return x
        if e == 2.0:
            return x * x
        if e == 3.0:
            return x * x * x
        if e == 0.5:
            return E.sqrt(x)
        if e == -1.0:
            return E.reciprocal(x)
    y = ctx.tensor(1)
    if _dtype(y) == kind:
        return E.pow(x, y)
    if dt.is_float(kind):        # a float base, an int exponent (opset 12+)
        return E.pow(x, E.cast(y, kind))
    # an int base: in float64, then truncated as onnxruntime does (std::pow, then a cast);
    # results within 1e-12 of an integer are that integer, as 3**6 is, so a pow a few ulps
    # off (the llvm backend's) does not truncate 728.99999... to 728
    r = E.pow(E.cast(x, "float64"), E.cast(y, "float64"))
    near = E.abs(r - E.round(r)) <= 1e-12 * E.maximum(E.abs(r), 1.0)
    return E.cast(E.where(near, E.round(r), r), kind)


def _variadic(fn):
    def convert(ctx):
        xs = [ctx.tensor(i) for i in range(len(ctx.inputs)) if ctx.has(i)]
        if not xs:
            raise ctx.fail("needs at least one input")
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return ctx.inputs[0] if len(xs) == 1 else out
    return convert


converter("Sum")(_variadic(E.add))
converter("Max")(_variadic(E.maximum))
converter("Min")(_variadic(E.minimum))


@converter("Mean")
def _mean(ctx):
    xs = [ctx.tensor(i) for i in range(len(ctx.inputs)) if ctx.has(i)]
    if not xs:
        raise ctx.fail("needs at least one input")
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out if len(xs) == 1 else out / len(xs)


@converter("Cast")
def _cast(ctx):
    to = ctx.attr("to")
    if to is None:
        raise ctx.fail("Cast needs a 'to' attribute")
    if isinstance(to, str):      # opset 1-5 wrote the type's name
        to = {"FLOAT": 1, "INT32": 6, "INT64": 7, "BOOL": 9, "FLOAT16": 10,
              "DOUBLE": 11}.get(to.upper(), -1)
        if to == -1:
            raise ctx.fail(f"Cast to {ctx.attr('to')!r} is not supported")
    kind = dtype_name(int(to), f"ONNX node {ctx.node.name!r} (Cast)")
    return _cast_to(ctx.inputs[0], kind)


def _cast_to(x, kind: str):
    if isinstance(x, np.ndarray):
        return x.astype(dt.to_numpy(kind))
    return x if _dtype(x) == kind else E.cast(x, kind)


@converter("CastLike")
def _cast_like(ctx):
    return _cast_to(ctx.inputs[0], dt.name_of(ctx.inputs[1].dtype))


@converter("Where")
def _where(ctx):
    c = ctx.tensor(0)
    if _dtype(c) != "bool":
        c = E.cast(c, "bool")
    return E.where(c, ctx.tensor(1), ctx.tensor(2))


# -- linear algebra -----------------------------------------------------------------------

@converter("MatMul")
def _matmul(ctx):
    return L.matmul(ctx.tensor(0), ctx.tensor(1))


@converter("Gemm")
def _gemm(ctx):
    a, b = ctx.tensor(0), ctx.tensor(1)
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise ctx.fail(f"A and B must be matrices, got shapes {tuple(a.shape)} and "
                       f"{tuple(b.shape)}")
    if ctx.attr("transA", 0):
        a = S.transpose(a)
    if ctx.attr("transB", 0):
        b = S.transpose(b)
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    y = L.matmul(a, b)
    if alpha != 1.0:
        y = y * alpha
    if ctx.has(2) and beta != 0.0:   # C is optional from opset 11
        c = ctx.tensor(2)
        y = y + (c if beta == 1.0 else c * beta)
    return y


# -- reductions ---------------------------------------------------------------------------

#: The opset at which each reduction's axes moved from an attribute to an input.
_AXES_INPUT = {"ReduceSum": 13}


def _reduce_axes(ctx):
    """The reduced axes (None: all) and keepdims, or ``"noop"`` for the identity."""
    keepdims = bool(ctx.attr("keepdims", 1))
    if ctx.opset >= _AXES_INPUT.get(ctx.op_type, 18):
        axes = ctx.const(1)
        axes = None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
        if not axes:
            if ctx.attr("noop_with_empty_axes", 0):
                return "noop", keepdims
            axes = None
    else:
        axes = ctx.attr("axes")
        axes = None if axes is None or len(axes) == 0 else [int(a) for a in axes]
    return (None if axes is None else tuple(axes)), keepdims


def _reduction(body):
    def convert(ctx):
        x = ctx.tensor(0)
        kind = _dtype(x)
        axes, keepdims = _reduce_axes(ctx)
        if axes == "noop":
            return x
        axes = tuple(range(len(x.shape))) if axes is None else axes
        if ctx.op_type in ("ReduceMax", "ReduceMin") and any(
                x.shape[a] == 0 for a in axes):
            # ONNX reduces an empty set to the identity: -inf for max, +inf for min
            return _empty_extreme(ctx.op_type == "ReduceMax", x, axes, keepdims)
        return _restore(body(x, axes, keepdims), kind)
    return convert


def _empty_extreme(is_max: bool, x, axes, keepdims: bool) -> np.ndarray:
    np_type = dt.to_numpy(_dtype(x))
    if np_type == np.bool_:
        value = not is_max
    elif np.issubdtype(np_type, np.integer):
        info = np.iinfo(np_type)
        value = info.min if is_max else info.max
    else:
        value = -np.inf if is_max else np.inf
    axes = {a % len(x.shape) for a in axes}
    shape = [1 if i in axes else d for i, d in enumerate(x.shape) if keepdims or i not in axes]
    return np.full(shape, value, np_type)


_REDUCTIONS = {
    "ReduceSum": lambda x, a, k: R.sum(x, axis=a, keepdims=k),
    "ReduceMean": lambda x, a, k: R.mean(x, axis=a, keepdims=k),
    "ReduceMax": lambda x, a, k: R.max(x, axis=a, keepdims=k),
    "ReduceMin": lambda x, a, k: R.min(x, axis=a, keepdims=k),
    "ReduceProd": lambda x, a, k: R.prod(x, axis=a, keepdims=k),
    "ReduceSumSquare": lambda x, a, k: R.sum(x * x, axis=a, keepdims=k),
    "ReduceL1": lambda x, a, k: R.sum(E.abs(x), axis=a, keepdims=k),
    "ReduceL2": lambda x, a, k: E.sqrt(R.sum(x * x, axis=a, keepdims=k)),
    "ReduceLogSum": lambda x, a, k: E.log(R.sum(x, axis=a, keepdims=k)),
    "ReduceLogSumExp": lambda x, a, k: C.logsumexp(x, axis=a, keepdims=k),
}

for _op, _body in _REDUCTIONS.items():
    converter(_op)(_reduction(_body))


def _arg(fn):
    def convert(ctx):
        x = ctx.tensor(0)
        ndim = len(x.shape)
        axis = int(ctx.attr("axis", 0))
        if not -ndim <= axis < max(ndim, 1):
            raise ctx.fail(f"axis {axis} is out of range for shape {tuple(x.shape)}")
        axis %= max(ndim, 1)
        keepdims = bool(ctx.attr("keepdims", 1))
        if ctx.attr("select_last_index", 0):
            # the first extreme of the reversed axis is the last one of the original
            n = x.shape[axis]
            rev = S.slice(x, [None] * axis + [None], [None] * axis + [None],
                          [None] * axis + [-1])
            return (n - 1) - fn(rev, axis=axis, keepdims=keepdims)
        return fn(x, axis=axis, keepdims=keepdims)
    return convert


converter("ArgMax")(_arg(R.argmax))
converter("ArgMin")(_arg(R.argmin))
