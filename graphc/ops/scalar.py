"""Scalar expressions: how an elementwise op computes one element.

An elementwise op declares its math once, as a function from typed scalar expressions to
a scalar expression (``relu = lambda x: smax(x, 0)``). Backends render these trees over a
small, fixed set of primitives (below) into LLVM IR or CUDA C, so a backend never needs
to know op names; `evaluate` renders them with numpy, which is how the tests check that an
op's scalar expression and its eager implementation agree.

Conventions every renderer follows: ``max``/``min`` propagate NaN (as numpy's maximum);
``rint`` rounds half to even; integer ``mul``/``add`` wrap around; ``shr`` is a logical
shift of the low 32 bits (used by the counter-based RNG); comparisons yield bool.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from .special import erf as _erf

UNARY = ("neg", "abs", "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "erf",
         "floor", "ceil", "rint", "not")
BINARY = ("add", "sub", "mul", "div", "pow", "max", "min", "lt", "le", "gt", "ge", "eq", "ne",
          "and", "or", "xor", "shr", "shl")
COMPARE = ("lt", "le", "gt", "ge", "eq", "ne")


class Expr:
    """A node of a scalar expression tree: ``fn`` applied to ``args``, of ``dtype``.

    Leaves: ``arg`` (the i-th input element, ``value`` = i), ``const`` (``value``), and
    ``index`` (the flat index of the output element, int64).
    """

    __slots__ = ("fn", "args", "value", "dtype")

    def __init__(self, fn: str, args: tuple = (), value=None, dtype: str = "float32"):
        self.fn, self.args, self.value, self.dtype = fn, args, value, dtype

    def __repr__(self) -> str:
        if self.fn == "arg":
            return f"x{self.value}"
        if self.fn == "const":
            return repr(self.value)
        if self.fn == "index":
            return "index"
        if self.fn == "cast":
            return f"cast<{self.dtype}>({self.args[0]!r})"
        return f"{self.fn}({', '.join(map(repr, self.args))})"

    # Operators make op definitions read like math.
    def __add__(self, o): return call("add", self, o)
    def __radd__(self, o): return call("add", o, self)
    def __sub__(self, o): return call("sub", self, o)
    def __rsub__(self, o): return call("sub", o, self)
    def __mul__(self, o): return call("mul", self, o)
    def __rmul__(self, o): return call("mul", o, self)
    def __truediv__(self, o): return call("div", self, o)
    def __rtruediv__(self, o): return call("div", o, self)
    def __pow__(self, o): return call("pow", self, o)
    def __neg__(self): return call("neg", self)
    def __lt__(self, o): return call("lt", self, o)
    def __le__(self, o): return call("le", self, o)
    def __gt__(self, o): return call("gt", self, o)
    def __ge__(self, o): return call("ge", self, o)


def arg(i: int, dtype: str) -> Expr:
    return Expr("arg", (), i, dtype)


def index() -> Expr:
    return Expr("index", (), None, "int64")


def const(value, dtype: str) -> Expr:
    return Expr("const", (), value, dtype)


def _lift(x, like: str) -> Expr:
    """Python numbers are weak: they take the dtype of the expression next to them."""
    if isinstance(x, Expr):
        return x
    return const(x, dtypes.scalar_dtype(x, like))


def call(fn: str, *args) -> Expr:
    like = next((a.dtype for a in args if isinstance(a, Expr)), "float32")
    args = tuple(_lift(a, like) for a in args)
    if fn == "select":
        dtype = args[1].dtype
    elif fn in COMPARE or fn == "not":
        dtype = "bool"
    else:
        dtype = args[0].dtype
    return Expr(fn, args, None, dtype)


def cast(x: Expr, dtype: str) -> Expr:
    return x if x.dtype == dtype else Expr("cast", (x,), None, dtype)


def select(c, a, b) -> Expr:
    like = a.dtype if isinstance(a, Expr) else b.dtype
    return call("select", c, _lift(a, like), _lift(b, like))


def _named(fn):
    return lambda *a: call(fn, *a)


exp, log, log1p, expm1, sqrt, sin, cos, tanh, erf, floor, ceil, rint, sabs = map(
    _named, ("exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "erf", "floor",
             "ceil", "rint", "abs"))
smax, smin, eq, ne, logical_and, logical_or, logical_not, xor, shr, shl = map(
    _named, ("max", "min", "eq", "ne", "and", "or", "not", "xor", "shr", "shl"))


def lowbias32(x: Expr) -> Expr:
    """An integer hash with good avalanche (Chris Wellons' lowbias32), on the low 32 bits.

    The counter-based RNG of dropout draws element i's bits as a hash of (key, i), so any
    backend, given the same key, draws the same mask."""
    m = 0xFFFFFFFF
    x = call("and", x, m)
    x = call("and", xor(x, shr(x, 16)) * 0x7FEB352D, m)
    x = call("and", xor(x, shr(x, 15)) * 0x846CA68B, m)
    return xor(x, shr(x, 16))


# -- numpy rendering ----------------------------------------------------------------------

def _np_shr(a, b):
    return np.right_shift(np.bitwise_and(a, 0xFFFFFFFF), b)


_NUMPY = {
    "neg": np.negative, "abs": np.abs, "exp": np.exp, "log": np.log, "log1p": np.log1p,
    "expm1": np.expm1, "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos, "tanh": np.tanh,
    "erf": lambda x: _erf(np, x), "floor": np.floor, "ceil": np.ceil, "rint": np.rint,
    "not": np.logical_not, "add": np.add, "sub": np.subtract, "mul": np.multiply,
    "div": np.divide, "pow": np.power, "max": np.maximum, "min": np.minimum, "lt": np.less,
    "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "eq": np.equal,
    "ne": np.not_equal, "and": lambda a, b: a & b, "or": lambda a, b: a | b,
    "xor": lambda a, b: a ^ b, "shr": _np_shr, "shl": np.left_shift,
    "select": np.where,
}


def evaluate(expr: Expr, args: list, shape: tuple[int, ...]) -> np.ndarray:
    """Evaluate ``expr`` elementwise over numpy ``args`` broadcast to ``shape``."""
    memo: dict[int, np.ndarray] = {}

    def ev(e: Expr):
        key = id(e)
        if key in memo:
            return memo[key]
        np_dtype = dtypes.to_numpy(e.dtype)
        if e.fn == "arg":
            r = np.asarray(args[e.value], np_dtype)
        elif e.fn == "const":
            r = np.asarray(e.value, np_dtype)
        elif e.fn == "index":
            r = np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
        elif e.fn == "cast":
            r = ev(e.args[0]).astype(np_dtype)
        else:
            with np.errstate(all="ignore"):
                r = np.asarray(_NUMPY[e.fn](*[ev(a) for a in e.args])).astype(np_dtype, copy=False)
        memo[key] = r
        return r

    return np.broadcast_to(ev(expr), shape)
