"""Elementwise ops against independent float64 numpy references, through tests/opcheck.py.

Each op runs on several shapes (broadcast, 0-d, size-1 and zero-size dims), non-contiguous
views and dtypes; its VJP is checked against finite differences in float64 (once per
case: check_grad computes in float64 whatever the input dtype). Inputs stay away from
kinks, ties and domain edges so the finite differences are meaningful. A second group of
tests checks that every op's scalar expression (what the backends render) computes what
its eager implementation computes, special values included.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
from opcheck import check_op, vjp

import graphc as gc
from graphc.ops import registry
from graphc.ops import scalar as S
from graphc.tensor import apply

SQRT2, C_TANH = math.sqrt(2.0), math.sqrt(2.0 / math.pi)
ref_erf = np.vectorize(math.erf, otypes=[np.float64])


def draw(shape, domain: str, dtype=np.float64, layout: str = "c", seed: int = 0) -> np.ndarray:
    """Values of ``domain`` in an array of ``shape`` laid out as ``layout``:
    'c' contiguous, 'T' a transposed view, 'step' a ::2 view."""
    rng = np.random.default_rng(seed)
    full = shape[::-1] if layout == "T" else (
        (2 * shape[0], *shape[1:]) if layout == "step" else shape)
    n = math.prod(full)
    if domain == "real":     # |x| in [0.1, 2]: away from the kinks at 0
        v = rng.uniform(0.1, 2.0, n) * rng.choice([-1.0, 1.0], n)
    elif domain == "pos":
        v = rng.uniform(0.2, 2.0, n)
    elif domain == "wide":   # both of erf's branches (|x| < 3 and >= 3)
        v = rng.uniform(-5.0, 5.0, n)
    elif domain == "gt-1":
        v = rng.uniform(-0.7, 2.0, n)
    elif domain == "nonint":  # away from integers and halves (floor, ceil, round)
        v = rng.integers(-3, 3, n) + rng.choice([0.2, 0.3, 0.7, 0.8], n)
    elif domain == "int":
        v = rng.integers(-3, 4, n)
    elif domain == "posint":
        v = rng.integers(1, 4, n)
    elif domain == "bool":
        v = rng.integers(0, 2, n).astype(bool)
    else:
        raise ValueError(domain)
    a = np.asarray(v, dtype).reshape(full)
    if layout == "T":
        a = a.T
    elif layout == "step":
        a = a[::2]
    assert a.shape == tuple(shape)
    return a


def check(fn, args, reference, dtype: str, **kw):
    """check_op, plus the documented output dtype."""
    outs = check_op(fn, args, reference, **kw)
    assert outs[0].dtype.name == dtype, f"dtype {outs[0].dtype.name}, expected {dtype}"
    return outs


# -- unary -------------------------------------------------------------------------------

def gelu_erf(x):
    return 0.5 * x * (1 + ref_erf(x / SQRT2))


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(C_TANH * (x + 0.044715 * x ** 3)))


# name: (graphc function, float64 reference, input domain)
UNARY = {
    "neg": (gc.neg, lambda x: -x, "real"),
    "abs": (gc.abs, lambda x: np.where(x < 0, -x, x), "real"),
    "exp": (gc.exp, np.exp, "real"),
    "log": (gc.log, np.log, "pos"),
    "log1p": (gc.log1p, np.log1p, "gt-1"),
    "expm1": (gc.expm1, np.expm1, "real"),
    "sqrt": (gc.sqrt, np.sqrt, "pos"),
    "rsqrt": (gc.rsqrt, lambda x: 1 / np.sqrt(x), "pos"),
    "square": (gc.square, lambda x: x * x, "real"),
    "reciprocal": (gc.reciprocal, lambda x: 1 / x, "real"),
    "sin": (gc.sin, np.sin, "real"),
    "cos": (gc.cos, np.cos, "real"),
    "tanh": (gc.tanh, np.tanh, "real"),
    "sigmoid": (gc.sigmoid, lambda x: 1 / (1 + np.exp(-x)), "real"),
    "relu": (gc.relu, lambda x: np.where(x > 0, x, 0.0), "real"),
    "leaky_relu": (gc.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x), "real"),
    "leaky_relu_0.2": (lambda x: gc.leaky_relu(x, alpha=0.2),
                       lambda x: np.where(x > 0, x, 0.2 * x), "real"),
    "elu": (gc.elu, lambda x: np.where(x > 0, x, np.exp(x) - 1), "real"),
    "elu_0.7": (lambda x: gc.elu(x, alpha=0.7), lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1)),
                "real"),
    "gelu": (gc.gelu, gelu_erf, "wide"),
    "gelu_tanh": (lambda x: gc.gelu(x, approximate="tanh"), gelu_tanh, "wide"),
    "erf": (gc.erf, ref_erf, "wide"),
    "softplus": (gc.softplus, lambda x: np.log(1 + np.exp(x)), "wide"),
    "sign": (gc.sign, lambda x: (x > 0).astype(np.float64) - (x < 0), "real"),
    "floor": (gc.floor, np.floor, "nonint"),
    "ceil": (gc.ceil, np.ceil, "nonint"),
    "round": (gc.round, np.rint, "nonint"),
    "clip_min": (lambda x: gc.clip(x, min=-0.55), lambda x: np.where(x < -0.55, -0.55, x), "real"),
    "clip_max": (lambda x: gc.clip(x, max=0.55), lambda x: np.where(x > 0.55, 0.55, x), "real"),
    "clip_both": (lambda x: gc.clip(x, -0.55, 0.55),
                  lambda x: np.minimum(np.maximum(x, -0.55), 0.55), "real"),
}
SHAPES = [((), "c"), ((1,), "c"), ((5,), "c"), ((3, 4), "c"), ((2, 1, 3), "c"), ((0, 3), "c"),
          ((3, 4), "T"), ((3, 4), "step")]


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("shape,layout", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unary(name, shape, layout, dtype):
    fn, ref, domain = UNARY[name]
    x = draw(shape, domain, dtype, layout)
    # check_grad runs in float64 whatever the input dtype: check the VJP once per case.
    check(fn, [x], ref, dtype, grad=dtype == "float64")


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "sigmoid", "gelu", "softplus",
                                  "relu", "neg", "floor", "round"])
def test_unary_float16(name):
    fn, ref, domain = UNARY[name]
    check(fn, [draw((2, 3), domain, np.float16)], ref, "float16", grad=False)


# Ops defined on integers keep the integer dtype; float-only ops compute in float32.
INT_KEEPS = {"neg": lambda x: -x, "abs": np.abs, "square": lambda x: x * x,
             "relu": lambda x: np.maximum(x, 0), "sign": np.sign,
             "clip_both": lambda x: np.clip(x, -1, 2)}
FLOAT_ONLY = ["exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "reciprocal", "sin", "cos", "tanh",
              "sigmoid", "leaky_relu_0.2", "elu", "gelu", "gelu_tanh", "erf", "softplus",
              "floor", "ceil", "round"]


@pytest.mark.parametrize("name", INT_KEEPS)
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_unary_int_keeps_dtype(name, dtype):
    fn = UNARY[name][0] if name != "clip_both" else (lambda x: gc.clip(x, -1, 2))
    check(fn, [draw((3, 4), "int", dtype)], INT_KEEPS[name], dtype, grad=False)
    check(fn, [draw((3, 4), "int", dtype, "T")], INT_KEEPS[name], dtype, grad=False)


@pytest.mark.parametrize("name", FLOAT_ONLY)
@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log(0), 1/0: inf as numpy
def test_unary_float_only_on_ints_gives_float32(name, dtype):
    fn, ref, _ = UNARY[name]
    x = draw((2, 3), "bool" if dtype == "bool" else "posint", dtype)
    check(fn, [x], lambda a: ref(a.astype(np.float64)), "float32", grad=False)


@pytest.mark.parametrize("name", ["neg", "abs", "square", "sign", "relu"])
def test_unary_arith_on_bool_gives_int64(name):
    x = np.array([True, False, True])
    check(UNARY[name][0], [x], lambda a: INT_KEEPS[name](a.astype(np.int64)), "int64", grad=False)


def test_logical_not():
    check(gc.logical_not, [draw((3, 4), "bool", bool)], np.logical_not, "bool", grad=False)
    check(gc.logical_not, [np.array([0.0, 2.5, -1.0], np.float32)], lambda a: a == 0, "bool",
          grad=False)
    check(lambda x: ~x, [draw((3, 4), "bool", bool, "T")], np.logical_not, "bool", grad=False)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log(0), 1/0: inf as numpy
def test_unary_extremes_are_stable():
    """Formulas that would overflow if written naively."""
    x = np.array([-800.0, -60.0, 0.0, 60.0, 800.0])
    check(gc.softplus, [x], lambda a: np.where(a > 0, a, 0) + np.log1p(np.exp(-np.abs(a))),
          "float64", grad=False)
    assert gc.softplus(gc.array(x.astype(np.float32))).numpy()[-1] == np.float32(800.0)
    check(gc.sigmoid, [x], lambda a: np.array([0.0, math.exp(-60), 0.5, 1.0, 1.0]), "float64",
          grad=False)
    check(gc.erf, [np.array([-np.inf, -30.0, -3.0, 3.0, 30.0, np.inf, np.nan])],
          lambda a: np.array([-1, -1, math.erf(-3), math.erf(3), 1, 1, np.nan]), "float64",
          grad=False)


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(gc.ShapeError, match="gelu.*approximate.*'fast'"):
        gc.gelu(gc.ones(3), approximate="fast")


# -- cast ----------------------------------------------------------------------------------

DTYPES = ["bool", "int32", "int64", "float16", "float32", "float64"]


def cast_input(src: str) -> np.ndarray:
    """Values every destination represents: small ints and fractions, zeros, negatives."""
    if src == "bool":
        return np.array([[True, False, True], [False, False, True]])
    if src.startswith("int"):
        return np.array([[-3, 0, 7], [1, -1, 100]], src)
    return np.array([[-2.75, 0.0, 1.5], [0.25, -0.5, 99.0]], src)


def cast_ref(dst: str):
    def ref(a):
        if dst == "bool":
            return a != 0
        if dst.startswith("int"):
            return np.trunc(a.astype(np.float64)).astype(np.int64)  # toward zero, as C
        return a.astype(np.float64)
    return ref


@pytest.mark.parametrize("src", DTYPES)
@pytest.mark.parametrize("dst", DTYPES)
def test_cast(src, dst):
    x = cast_input(src)
    # check_grad runs in float64: finite differences survive only a cast to float64
    check(lambda t: gc.cast(t, dst), [x], cast_ref(dst), dst,
          grad=src.startswith("float") and dst == "float64")
    check(lambda t: t.astype(dst), [x.T], lambda a: cast_ref(dst)(a), dst, grad=False)


def test_cast_accepts_numpy_and_python_dtypes():
    x = gc.array(np.array([1.5, -2.5]))
    assert gc.cast(x, np.float32).dtype == np.float32
    assert gc.cast(x, np.dtype("int32")).dtype == np.int32
    assert gc.cast(x, float).dtype == np.float32
    assert gc.cast(x, int).dtype == np.int64
    assert gc.cast(x, bool).numpy().tolist() == [True, True]


def test_cast_float_to_float_grad_keeps_input_dtype():
    (g,) = vjp(lambda t: gc.cast(t, "float64"), [np.ones(3, np.float32)], [np.ones(3)], [0])
    assert g.dtype == np.float32


# -- binary --------------------------------------------------------------------------------

# name: (graphc function, float64 reference, domain of x, domain of y)
BINARY = {
    "add": (gc.add, lambda x, y: x + y, "real", "real"),
    "sub": (gc.sub, lambda x, y: x - y, "real", "real"),
    "mul": (gc.mul, lambda x, y: x * y, "real", "real"),
    "div": (gc.div, lambda x, y: x / y, "real", "real"),
    "pow": (gc.pow, lambda x, y: np.exp(y * np.log(x)), "pos", "real"),
    "maximum": (gc.maximum, lambda x, y: np.where(x > y, x, y), "real", "real"),
    "minimum": (gc.minimum, lambda x, y: np.where(x < y, x, y), "real", "real"),
}
COMPARE = {
    "equal": (gc.equal, lambda x, y: x == y), "not_equal": (gc.not_equal, lambda x, y: x != y),
    "less": (gc.less, lambda x, y: x < y), "less_equal": (gc.less_equal, lambda x, y: x <= y),
    "greater": (gc.greater, lambda x, y: x > y),
    "greater_equal": (gc.greater_equal, lambda x, y: x >= y),
}
LOGICAL = {"logical_and": (gc.logical_and, lambda x, y: x & y),
           "logical_or": (gc.logical_or, lambda x, y: x | y)}
PAIRS = [((3, 4), "c", (3, 4), "c"), ((3, 1), "c", (1, 4), "c"), ((2, 3, 4), "c", (4,), "c"),
         ((), "c", (3,), "c"), ((2, 1), "c", (), "c"), ((), "c", (), "c"), ((1,), "c", (1,), "c"),
         ((0, 3), "c", (1, 3), "c"), ((2, 0), "c", (2, 1), "c"), ((3, 4), "T", (3, 4), "step"),
         ((3, 4), "step", (4,), "c"), ((4, 3), "T", (1, 3), "c")]


def pair(name, sx, lx, sy, ly, dtype, domains):
    x = draw(sx, domains[0], dtype, lx, seed=1)
    y = draw(sy, domains[1], dtype, ly, seed=2)
    if name in ("maximum", "minimum"):  # no ties: keep |x - y| >= 0.05
        close = np.abs(x - y) < 0.05
        y = np.where(close, y + 0.1, y).astype(dtype)
    return x, y


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("sx,lx,sy,ly", PAIRS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary(name, sx, lx, sy, ly, dtype):
    fn, ref, dx, dy = BINARY[name]
    x, y = pair(name, sx, lx, sy, ly, dtype, (dx, dy))
    check(fn, [x, y], ref, dtype, grad=dtype == "float64")


@pytest.mark.parametrize("name", ["add", "mul", "div", "maximum"])
def test_binary_float16(name):
    fn, ref, dx, dy = BINARY[name]
    x, y = pair(name, (2, 3), "c", (3,), "c", np.float16, (dx, dy))
    check(fn, [x, y], ref, "float16", grad=False)


INT_BINARY = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
              "maximum": np.maximum, "minimum": np.minimum}


@pytest.mark.parametrize("name", INT_BINARY)
@pytest.mark.parametrize("dx,dy,out", [("int32", "int32", "int32"), ("int64", "int64", "int64"),
                                       ("int32", "int64", "int64"), ("bool", "int32", "int32"),
                                       ("bool", "bool", "int64")])
def test_binary_ints(name, dx, dy, out):
    x = draw((3, 1), "bool" if dx == "bool" else "int", dx, seed=1)
    y = draw((4,), "bool" if dy == "bool" else "int", dy, seed=2)
    ref = lambda a, b: INT_BINARY[name](a.astype(np.int64), b.astype(np.int64))
    check(BINARY[name][0], [x, y], ref, out, grad=False)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_int_pow_and_div(dtype):
    x, y = draw((3, 4), "int", dtype, seed=1), draw((4,), "posint", dtype, seed=2) - 1
    check(gc.pow, [x, y], lambda a, b: a.astype(np.int64) ** b, dtype, grad=False)
    check(gc.div, [x, y + 1], lambda a, b: a / b, "float32", grad=False)
    with np.errstate(divide="ignore", invalid="ignore"):  # x / 0 is inf or nan, as numpy
        check(lambda a, b: a / b, [x, np.zeros((4,), dtype)], lambda a, b: a / b.astype(float),
              "float32", grad=False)


@pytest.mark.parametrize("name", COMPARE)
@pytest.mark.parametrize("dx,dy", [("float32", "float32"), ("float64", "float32"),
                                   ("int32", "int32"), ("int64", "float16"), ("bool", "int32"),
                                   ("bool", "bool")])
def test_compare(name, dx, dy):
    fn, ref = COMPARE[name]
    # few distinct values, so that ties (where == and <= matter) occur
    x = draw((3, 1), "bool" if dx == "bool" else "int", dx, seed=3)
    y = draw((4,), "bool" if dy == "bool" else "int", dy, seed=4)
    check(fn, [x, y], ref, "bool", grad=False)
    check(fn, [draw((3, 4), "int", "float64", "T"), draw((3, 4), "int", "float64", "step")],
          ref, "bool", grad=False)
    check(fn, [draw((0, 3), "int", dx if dx != "bool" else "int32"), y[:3]], ref, "bool",
          grad=False)


def test_compare_nan():
    x = np.array([np.nan, 1.0, np.nan, np.inf])
    y = np.array([np.nan, np.nan, 1.0, np.inf])
    for fn, ref in COMPARE.values():
        check(fn, [x, y], ref, "bool", grad=False)


@pytest.mark.parametrize("name", LOGICAL)
def test_logical(name):
    fn, ref = LOGICAL[name]
    check(fn, [draw((3, 1), "bool", bool, seed=5), draw((4,), "bool", bool, seed=6)], ref, "bool",
          grad=False)
    check(fn, [draw((3, 4), "bool", bool, "T"), draw((3, 4), "bool", bool, "step")], ref, "bool",
          grad=False)
    # non-bool operands are truth values, as numpy's logical_and
    x, y = np.array([0.0, 2.0, 0.0, -1.0], np.float32), np.array([0, 0, 3, 5], np.int32)
    check(fn, [x, y], lambda a, b: ref(a != 0, b != 0), "bool", grad=False)


def test_bool_operators():
    a, b = np.array([True, True, False, False]), np.array([True, False, True, False])
    check(lambda x, y: x & y, [a, b], lambda x, y: x & y, "bool", grad=False)
    check(lambda x, y: x | y, [a, b], lambda x, y: x | y, "bool", grad=False)


# -- where -----------------------------------------------------------------------------------

@pytest.mark.parametrize("sc,sx,sy", [((3, 4), (3, 4), (3, 4)), ((3, 1), (1, 4), ()),
                                      ((4,), (2, 3, 4), (3, 1)), ((), (2,), (2,)),
                                      ((0, 1), (1, 3), (3,))])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_where(sc, sx, sy, dtype):
    c = draw(sc, "bool", bool, seed=7)
    x, y = draw(sx, "real", dtype, seed=8), draw(sy, "real", dtype, seed=9)
    check(gc.where, [c, x, y], lambda c, x, y: np.where(c, x, y), dtype,
          grad=dtype == "float64")


def test_where_non_contiguous_and_mixed_dtypes():
    c = draw((3, 4), "bool", bool, "T")
    x, y = draw((3, 4), "real", np.float32, "step"), draw((3, 4), "int", np.int32, "T")
    check(gc.where, [c, x, y], lambda c, x, y: np.where(c, x, y), "float32",
          grad_argnums=[1])
    check(gc.where, [c, y, y.astype(np.int64)], lambda c, x, y: np.where(c, x, y), "int64",
          grad=False)
    check(gc.where, [c, y, y.astype(np.float16)], lambda c, x, y: np.where(c, x, y), "float16",
          grad=False)
    check(lambda c, x: gc.where(c, x, 0), [c, x], lambda c, x: np.where(c, x, 0), "float32")
    check(lambda c, y: gc.where(c, y, 0.5), [c, y], lambda c, y: np.where(c, y, 0.5), "float32",
          grad=False)
    check(lambda c: gc.where(c, 1, 2), [c], lambda c: np.where(c, 1, 2), "int64", grad=False)


def test_where_condition_is_a_truth_value():
    c = np.array([0.0, 0.5, -2.0, 0.0], np.float32)
    check(lambda c: gc.where(c, 1.0, -1.0), [c], lambda c: np.where(c != 0, 1.0, -1.0),
          "float32", grad=False)


# -- Python scalars and numpy arrays as operands ---------------------------------------------

@pytest.mark.parametrize("fn,ref,dx,domain,out", [
    (lambda x: x * 2.5, lambda x: x * 2.5, "float32", "real", "float32"),
    (lambda x: 2.5 * x, lambda x: x * 2.5, "float16", "real", "float16"),
    (lambda x: x + 1, lambda x: x + 1, "float64", "real", "float64"),
    (lambda x: 1 - x, lambda x: 1 - x, "float32", "real", "float32"),
    (lambda x: 3.0 / x, lambda x: 3.0 / x, "float32", "real", "float32"),
    (lambda x: x / 2, lambda x: x / 2, "float32", "real", "float32"),
    (lambda x: x ** 2, lambda x: x * x, "float32", "real", "float32"),
    (lambda x: 2.0 ** x, lambda x: np.exp(x * math.log(2.0)), "float32", "real", "float32"),
    (lambda x: gc.maximum(x, 0.3), lambda x: np.where(x > 0.3, x, 0.3), "float32", "real",
     "float32"),
    (lambda x: x * 0.5, lambda x: x * 0.5, "int32", "int", "float32"),
    (lambda x: x * 0.5, lambda x: x * 0.5, "int64", "int", "float32"),
    (lambda x: x + 1, lambda x: x + 1, "int32", "int", "int32"),
    (lambda x: 2 * x, lambda x: 2 * x, "int64", "int", "int64"),
    (lambda x: x + True, lambda x: x + 1, "int32", "int", "int32"),
    (lambda x: x / 2, lambda x: x / 2, "int32", "int", "float32"),
    (lambda x: x + 1, lambda x: x.astype(np.int64) + 1, "bool", "bool", "int64"),
    (lambda x: x * 1.5, lambda x: x * 1.5, "bool", "bool", "float32"),
    (lambda x: x < 0.5, lambda x: x < 0.5, "int32", "int", "bool"),
    (lambda x: x == 2, lambda x: x == 2, "int64", "int", "bool"),
    (lambda x: x > 0.25, lambda x: x > np.float32(0.25), "float32", "real", "bool"),
])
def test_python_scalar_operands(fn, ref, dx, domain, out):
    x = draw((3, 4), domain, dx)
    check(fn, [x], ref, out, grad=out.startswith("float") and dx.startswith("float"))
    check(fn, [draw((), domain, dx)], ref, out, grad=False)


def test_numpy_array_operands_are_strong():
    x = gc.array(np.ones(3, np.float32))
    assert (x + np.ones(3)).dtype == np.float64
    assert (x + np.ones(3, np.int64)).dtype == np.float32
    assert (gc.array(np.ones(3, np.int32)) * np.ones(3, np.int64)).dtype == np.int64


# -- scalar expressions == eager implementations ---------------------------------------------

SPECIAL = [-np.inf, -40.0, -3.5, -2.5, -1.0, -0.5, -0.0, 0.0, 1e-3, 0.3, 0.5, 1.5, 2.5, 3.0,
           7.0, 40.0, np.inf, np.nan]
INT_VALUES = [-7, -3, -1, 0, 1, 2, 5]
FLOATS = ["float16", "float32", "float64"]
ARITH = FLOATS + ["int32", "int64"]

# op name: [(attrs, input dtypes)]; inputs are what the op's impl receives (post-promotion).
SCALAR_CASES = {
    **{n: [({}, (d,)) for d in ARITH] for n in ("neg", "abs", "square", "relu", "sign")},
    **{n: [({}, (d,)) for d in FLOATS] for n in (
        "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "reciprocal", "sin", "cos", "tanh",
        "sigmoid", "erf", "softplus", "floor", "ceil", "round")},
    "leaky_relu": [({"alpha": a}, (d,)) for a in (0.01, 0.3) for d in FLOATS],
    "elu": [({"alpha": a}, (d,)) for a in (1.0, 0.5) for d in FLOATS],
    "gelu": [({"approximate": a}, (d,)) for a in ("none", "tanh") for d in FLOATS],
    "clip": [({"min": lo, "max": hi}, (d,)) for lo, hi in ((-1.0, None), (None, 2.0), (-1.0, 2.0))
             for d in ARITH],
    "cast": [({"dtype": dst}, (src,)) for src in DTYPES for dst in DTYPES],
    "logical_not": [({}, ("bool",))],
    **{n: [({}, (d, d)) for d in ARITH] for n in ("add", "sub", "mul", "maximum", "minimum")},
    "div": [({}, (d, d)) for d in FLOATS],
    "pow": [({}, (d, d)) for d in ARITH],
    **{n: [({}, (d, d)) for d in ARITH + ["bool"]] for n in COMPARE},
    **{n: [({}, ("bool", "bool"))] for n in LOGICAL},
    "where": [({}, ("bool", d, d)) for d in ARITH + ["bool"]],
}


def scalar_inputs(name, dtypes, attrs):
    """Every combination of special values (or small ints, or bools) for each input."""
    def values(d, position):
        if d == "bool":
            return np.array([False, True])
        if d.startswith("int"):
            v = np.array(INT_VALUES)
            return np.abs(v) if (name == "pow" and position == 1) else v
        if name == "cast" and not attrs["dtype"].startswith("float") and attrs["dtype"] != "bool":
            return np.array([-40.0, -2.5, -0.5, 0.0, 0.3, 1.5, 7.0])  # float->int is defined
        return np.array(SPECIAL)
    grids = np.meshgrid(*[values(d, i) for i, d in enumerate(dtypes)], indexing="ij")
    return [g.ravel().astype(d) for g, d in zip(grids, dtypes)]


def test_scalar_cases_cover_every_elementwise_op():
    names = set(UNARY_OPS + BINARY_OPS)
    assert names == set(SCALAR_CASES)
    for name in names:
        op = registry.get(name)
        assert op.kind is registry.Kind.ELEMENTWISE and op.scalar is not None, name


UNARY_OPS = ["neg", "abs", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "square",
             "reciprocal", "sin", "cos", "tanh", "sigmoid", "relu", "leaky_relu", "elu", "gelu",
             "erf", "softplus", "sign", "floor", "ceil", "round", "clip", "cast", "logical_not"]
BINARY_OPS = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", *COMPARE, *LOGICAL,
              "where"]


def assert_well_typed(e: S.Expr) -> None:
    """Backends render each node with one machine type: operands must agree with it."""
    args = [a.dtype for a in e.args]
    if e.fn in S.COMPARE:
        assert e.dtype == "bool" and args[0] == args[1], e
    elif e.fn == "select":
        assert args == ["bool", e.dtype, e.dtype], e
    elif e.fn == "not":
        assert args == ["bool"] and e.dtype == "bool", e
    elif e.fn != "cast":
        assert all(a == e.dtype for a in args), f"operand dtypes {args} in {e.dtype} node {e!r}"
    if e.fn == "const":
        assert np.asarray(e.value, S.dtypes.to_numpy(e.dtype)) == e.value or e.value != e.value, e
    for a in e.args:
        assert_well_typed(a)


@pytest.mark.parametrize("name,attrs,dtypes", [(n, a, d) for n, cases in SCALAR_CASES.items()
                                                for a, d in cases])
def test_scalar_expression_matches_impl(name, attrs, dtypes):
    op = registry.get(name)
    args = scalar_inputs(name, dtypes, attrs)
    with np.errstate(all="ignore"):
        want = np.asarray(op.impl(np, *args, **attrs))
        expr = op.scalar(*[S.arg(i, d) for i, d in enumerate(dtypes)], **attrs)
        got = S.evaluate(expr, args, want.shape)
    assert expr.dtype == want.dtype.name, f"{name}: expression {expr.dtype}, impl {want.dtype}"
    assert_well_typed(expr)
    assert got.dtype == want.dtype
    if want.dtype.kind == "f":
        rtol = {"float16": 2e-3, "float32": 2e-6, "float64": 1e-13}[want.dtype.name]
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-3, equal_nan=True,
                                   err_msg=f"{name}{attrs} on {dtypes}: {expr!r}")
    else:
        np.testing.assert_array_equal(got, want, err_msg=f"{name}{attrs} on {dtypes}")


def test_clip_on_ints_has_a_well_typed_expression():
    """The bounds are attrs stored as floats; next to an int input they must be int
    constants (truncated as the impl truncates them), not float32 operands of max/min."""
    expr = registry.get("clip").scalar(S.arg(0, "int32"), min=-1.5, max=2.0)
    assert_well_typed(expr)
    assert repr(expr) == "min(max(x0, -1), 2)"
    x = np.array([-3, -1, 0, 2, 5], np.int32)
    np.testing.assert_array_equal(S.evaluate(expr, [x], x.shape), [-1, -1, 0, 2, 2])
    check(lambda t: gc.clip(t, -1.5, 2.0), [x], lambda a: np.clip(a, -1, 2), "int32", grad=False)


# -- VJP rules trace: written with graphc ops only, so the autodiff pass can reuse them -------

DOMAIN = {"log": "pos", "sqrt": "pos", "rsqrt": "pos", "log1p": "gt-1", "pow": "pos"}


def vjp_of(name: str, attrs: dict, nin: int):
    """(inputs..., cotangent) -> the op's input cotangents, through its VJP rule."""
    op = registry.get(name)

    def f(*a):
        xs, g = a[:nin], a[nin]
        grads = op.vjp(g, *xs, apply(op, *xs, **attrs), **attrs)
        return tuple(v for v in grads if v is not None)
    return f


@pytest.mark.parametrize("name,attrs,dtypes", [
    (n, a, d) for n, cases in SCALAR_CASES.items() for a, d in cases
    if d[-1] == "float64" and a.get("dtype", "float64").startswith("float")])
def test_vjp_traced_equals_eager(name, attrs, dtypes):
    shapes = [(3, 4), (4,), (3, 1)][:len(dtypes)]
    xs = [draw(s, "bool" if d == "bool" else DOMAIN.get(name, "real") if i == 0 else "real",
               d, seed=i) for i, (s, d) in enumerate(zip(shapes, dtypes))]
    f = vjp_of(name, attrs, len(xs))
    out = registry.get(name).impl(np, *xs, **attrs)
    g = np.random.default_rng(5).standard_normal(np.shape(out)).astype(out.dtype)
    eager = f(*[gc.array(a) for a in (*xs, g)])
    if not eager:
        return  # no input takes a gradient (comparisons, rounding...)
    traced = gc.jit(f, backend="reference")(*xs, g)
    assert len(traced) == len(eager)
    for t, e in zip(traced, eager):
        assert t.shape == e.shape and t.dtype == e.dtype
        np.testing.assert_allclose(t.numpy(), e.numpy(), rtol=1e-12)


# -- gradient conventions at kinks and ties (where finite differences cannot decide) ----------

@pytest.mark.parametrize("fn,x,want", [
    (gc.relu, [-1.0, 0.0, 2.0], [0, 0, 1]),
    (gc.abs, [-1.0, 0.0, 2.0], [-1, 0, 1]),
    (lambda t: gc.clip(t, -1.0, 1.0), [-1.0, 0.0, 1.0, 1.5], [1, 1, 1, 0]),
    (lambda t: gc.maximum(t, gc.array(np.array([0.0, 0.0]))), [0.0, 1.0], [1, 1]),
    (lambda t: gc.minimum(gc.array(np.array([0.0, 0.0])), t), [0.0, -1.0], [0, 1]),
    (lambda t: t ** 2.0, [0.0, -3.0], [0, -6]),
    (lambda t: gc.sqrt(t), [4.0], [0.25]),
])
def test_gradient_conventions(fn, x, want):
    """relu'(0) = 0, |x|'(0) = 0, clip passes the gradient at its bounds, maximum/minimum
    give a tie to their first argument."""
    (g,) = vjp(fn, [np.array(x)], [np.ones(len(x))], [0])
    np.testing.assert_array_equal(g.numpy(), want)


# -- errors ----------------------------------------------------------------------------------

FILE = os.path.basename(__file__)


def here(offset: int = 0) -> str:
    """``test file:line`` of the caller's line plus ``offset``, as errors print it."""
    return f"{FILE}:{sys._getframe(1).f_lineno + offset}"


def test_shape_error_names_op_shapes_and_user_line():
    with pytest.raises(gc.ShapeError) as info:
        loc = here(1)
        gc.add(gc.ones((3,)), gc.ones((4,)))
    text = str(info.value)
    assert "add" in text and "(3,)" in text and "(4,)" in text and loc in text, text
    with pytest.raises(gc.ShapeError) as info:
        loc = here(1)
        gc.ones((2, 3)) * gc.ones((2,))
    assert "mul" in str(info.value) and "(2, 3)" in str(info.value) and loc in str(info.value)
    with pytest.raises(gc.ShapeError, match=r"where.*\(5,\)"):
        gc.where(gc.ones(3) > 0, gc.ones(5), 0.0)


def test_shape_error_inside_jit_names_the_traced_line():
    def f(a, b):
        return gc.relu(a) + b
    line = f"{FILE}:{f.__code__.co_firstlineno + 1}"
    with pytest.raises(gc.ShapeError) as info:
        gc.jit(f)(np.ones(3, np.float32), np.ones(4, np.float32))
    text = str(info.value)
    assert "add" in text and "(3,)" in text and "(4,)" in text and line in text, text
    with pytest.raises(gc.ShapeError, match=f"add.*{line}"):
        gc.trace(f, np.ones(3, np.float32), np.ones(4, np.float32))


def test_shape_error_of_variable_expression_names_the_building_line():
    a, b = gc.Variable("a"), gc.Variable("b")
    loc = here(1)
    d = gc.maximum(a, b)
    with pytest.raises(gc.ShapeError) as info:
        gc.compile(d)(a=np.ones((2, 3), np.float32), b=np.ones((3, 2), np.float32))
    text = str(info.value)
    assert "maximum" in text and "(2, 3)" in text and "(3, 2)" in text and loc in text, text


def test_sign_of_negative_zero_is_positive_zero_in_every_rendering():
    # regression: the scalar expression returned x itself for zeros, so -0.0 kept its sign
    from graphc.ops import registry
    from graphc.ops import scalar as S
    x = np.array([-0.0, 0.0, np.nan, -2.0, 3.0], np.float32)
    expr = registry.get("sign").scalar(S.arg(0, "float32"))
    got = S.evaluate(expr, [x], x.shape)
    want = np.sign(x)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    np.testing.assert_array_equal(got, want)
    assert not np.signbit(gc.sign(gc.array(x)).numpy()[0])


def test_sigmoid_does_not_overflow():
    # regression: 1 / (1 + exp(-x)) overflowed exp (a RuntimeWarning) for x << 0
    import warnings
    x = np.array([-1000.0, -89.0, 0.0, 89.0, 1000.0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = gc.sigmoid(gc.array(x)).numpy()
    with np.errstate(over="ignore"):
        want = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
