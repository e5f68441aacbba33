"""Reductions and the composites built on them, against independent float64 numpy references.

Every case goes through tests/opcheck.py (eager vs reference, type rule vs eager, traced vs
eager, JSON round trip, and the VJP against finite differences in float64). Inputs for
max/min have no ties and inputs for prod no zeros, where the gradient is not defined.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from opcheck import check_op, vjp

import graphc as gc
from graphc.ops import registry
from graphc.tensor import apply
from graphc.types import TensorType

FILE = os.path.basename(__file__)


def distinct(shape, dtype=np.float64, layout="c", seed=0) -> np.ndarray:
    """Distinct values (no ties, gaps >= 0.05) in random order; 'T' / 'step' give views."""
    rng = np.random.default_rng(seed)
    full = shape[::-1] if layout == "T" else (
        (2 * shape[0], *shape[1:]) if layout == "step" else shape)
    n = math.prod(full)
    v = (rng.permutation(n) - n / 2) * 0.1 + rng.uniform(0, 0.05, n)
    a = v.reshape(full).astype(dtype)
    return a.T if layout == "T" else (a[::2] if layout == "step" else a)


def nonzero(shape, dtype=np.float64, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape), dtype)


def check(fn, args, reference, dtype, **kw):
    outs = check_op(fn, args, reference, **kw)
    assert outs[0].dtype.name == dtype, f"dtype {outs[0].dtype.name}, expected {dtype}"
    return outs


def count(x, axis):
    axes = range(x.ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
    return math.prod(x.shape[a] for a in axes)


# name: (graphc function, float64 reference(x, axis, keepdims), input maker)
REDUCE = {
    "sum": (gc.sum, lambda x, a, k: np.sum(x, axis=a, keepdims=k), distinct),
    "mean": (gc.mean, lambda x, a, k: np.sum(x, axis=a, keepdims=k) / count(x, a), distinct),
    "max": (gc.max, lambda x, a, k: np.max(x, axis=a, keepdims=k), distinct),
    "min": (gc.min, lambda x, a, k: np.min(x, axis=a, keepdims=k), distinct),
    "prod": (gc.prod, lambda x, a, k: np.prod(x, axis=a, keepdims=k), nonzero),
}
AXES = [None, 0, 1, -1, (0, 2), (-1, -3), [2, 0], (), (0, 1, 2)]


@pytest.mark.parametrize("name", REDUCE)
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduce(name, axis, keepdims):
    fn, ref, make = REDUCE[name]
    x = make((2, 3, 4))
    check(lambda t: fn(t, axis=axis, keepdims=keepdims), [x],
          lambda a: ref(a, tuple(axis) if isinstance(axis, list) else axis, keepdims), "float64")


@pytest.mark.parametrize("name", REDUCE)
@pytest.mark.parametrize("shape,axis", [((), None), ((), ()), ((5,), 0), ((5,), -1),
                                        ((1, 4), 0), ((3, 1), (0, 1)), ((2, 1, 3), 1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduce_small_shapes(name, shape, axis, keepdims):
    fn, ref, make = REDUCE[name]
    check(lambda t: fn(t, axis=axis, keepdims=keepdims), [make(shape)],
          lambda a: ref(a, axis, keepdims), "float64")


@pytest.mark.parametrize("name", REDUCE)
@pytest.mark.parametrize("layout", ["T", "step"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("axis", [None, 0, -1])
def test_reduce_non_contiguous_and_low_precision(name, layout, dtype, axis):
    fn, ref, make = REDUCE[name]
    x = distinct((3, 4), dtype, layout) if make is distinct else \
        np.ascontiguousarray(nonzero((4, 3), dtype)).T
    check(lambda t: fn(t, axis=axis), [x], lambda a: ref(a, axis, False), dtype,
          grad=dtype == "float32" and axis == 0)


@pytest.mark.parametrize("name,dtype,out", [
    ("sum", "int32", "int64"), ("sum", "int64", "int64"), ("sum", "bool", "int64"),
    ("prod", "int32", "int64"), ("prod", "bool", "int64"),
    ("mean", "int32", "float32"), ("mean", "int64", "float32"), ("mean", "bool", "float32"),
    ("max", "int32", "int32"), ("max", "int64", "int64"), ("max", "bool", "bool"),
    ("min", "int32", "int32"), ("min", "bool", "bool"),
])
@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, True), (-1, False), ((0, 1), True)])
def test_reduce_int_dtypes(name, dtype, out, axis, keepdims):
    fn, ref, _ = REDUCE[name]
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, (3, 4)) if dtype == "bool" else rng.integers(-5, 6, (3, 4))
    check(lambda t: fn(t, axis=axis, keepdims=keepdims), [x.astype(dtype)],
          lambda a: ref(a.astype(np.float64), axis, keepdims), out, grad=False)


def test_sum_of_int32_does_not_overflow_int32():
    x = np.full((4,), 2**30, np.int32)
    check(gc.sum, [x], lambda a: np.array(2**32), "int64")


# -- argmax / argmin -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, -3])
@pytest.mark.parametrize("keepdims", [False, True])
def test_arg_extreme(name, axis, keepdims):
    fn, npfn = getattr(gc, name), getattr(np, name)
    check(lambda t: fn(t, axis=axis, keepdims=keepdims), [distinct((2, 3, 4))],
          lambda a: npfn(a, axis=axis, keepdims=keepdims), "int64", grad=False)
    check(lambda t: fn(t, axis=axis, keepdims=keepdims),
          [np.random.default_rng(2).integers(-3, 3, (2, 3, 4)).astype(np.int32)],
          lambda a: npfn(a, axis=axis, keepdims=keepdims), "int64", grad=False)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_arg_extreme_first_index_wins_ties_and_views(name):
    fn, npfn = getattr(gc, name), getattr(np, name)
    x = np.array([[1.0, 3.0, 3.0, -1.0], [-1.0, 2.0, -1.0, 2.0]])
    want = {"argmax": [[1], [1]], "argmin": [[3], [0]]}[name]
    check(lambda t: fn(t, axis=1, keepdims=True), [x], lambda a: np.array(want), "int64",
          grad=False)
    check(lambda t: fn(t, axis=0), [x.T], lambda a: npfn(a, axis=0), "int64", grad=False)
    check(lambda t: fn(t), [distinct((3, 4), layout="step")], lambda a: npfn(a), "int64",
          grad=False)
    check(fn, [np.array(2.5)], lambda a: np.array(0), "int64", grad=False)
    check(lambda t: fn(t, axis=0), [np.array([True, False, True])],
          lambda a: npfn(a, axis=0), "int64", grad=False)


# -- zero-size axes --------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduce_over_zero_size_axis(axis, keepdims):
    x = np.zeros((0, 3))
    shape = np.sum(x, axis=axis, keepdims=keepdims).shape
    check(lambda t: gc.sum(t, axis=axis, keepdims=keepdims), [x], lambda a: np.zeros(shape),
          "float64")
    check(lambda t: gc.prod(t, axis=axis, keepdims=keepdims), [x], lambda a: np.ones(shape),
          "float64")
    check(lambda t: gc.mean(t, axis=axis, keepdims=keepdims), [x],
          lambda a: np.full(shape, np.nan), "float64")
    check(lambda t: gc.mean(t, axis=axis, keepdims=keepdims), [x.astype(np.int32)],
          lambda a: np.full(shape, np.nan), "float32", grad=False)
    check(lambda t: gc.sum(t, axis=axis, keepdims=keepdims), [x.astype(np.int32)],
          lambda a: np.zeros(shape), "int64", grad=False)


@pytest.mark.parametrize("name", ["max", "min", "argmax", "argmin"])
def test_extreme_over_zero_size_axis_is_a_shape_error(name):
    fn, x = getattr(gc, name), gc.zeros((0, 3))
    for axis in (None, 0):
        with pytest.raises(gc.ShapeError, match=rf"{name}.*\(0, 3\).*{FILE}"):
            fn(x, axis=axis)
    with pytest.raises(gc.ShapeError, match=rf"{name}.*\(0, 3\).*{FILE}"):
        gc.trace(lambda t: fn(t, axis=0), np.zeros((0, 3), np.float32))
    # reducing a non-empty axis of an empty tensor is fine: the result is empty too
    check(lambda t: fn(t, axis=1), [np.zeros((0, 3))],
          lambda a: np.zeros((0,), np.int64 if name.startswith("arg") else np.float64),
          "int64" if name.startswith("arg") else "float64", grad=False)


# -- NaN, as numpy ---------------------------------------------------------------------------

WITH_NAN = np.array([[1.0, np.nan, 3.0, np.nan], [2.0, -1.0, 5.0, 0.5]])


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "prod"])
@pytest.mark.parametrize("axis", [None, 1, 0])
def test_nan_propagates_as_numpy(name, axis):
    fn, npfn = getattr(gc, name), getattr(np, name)
    check(lambda t: fn(t, axis=axis), [WITH_NAN], lambda a: npfn(a, axis=axis), "float64",
          grad=False)


@pytest.mark.parametrize("name,row1", [("argmax", 2), ("argmin", 1)])
def test_arg_extreme_first_nan_wins(name, row1):
    fn = getattr(gc, name)
    check(lambda t: fn(t, axis=1), [WITH_NAN], lambda a: np.array([1, row1]), "int64", grad=False)
    check(fn, [WITH_NAN], lambda a: np.array(1), "int64", grad=False)


# -- gradients at ties ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["max", "min"])
def test_extreme_gradient_is_split_evenly_among_ties(name):
    x = np.array([[1.0, 3.0, 3.0], [2.0, -4.0, 2.0], [-4.0, 0.0, -4.0]])
    (g,) = vjp(lambda t: getattr(gc, name)(t, axis=1), [x], [np.array([1.0, 2.0, 4.0])], [0])
    want = {"max": [[0, 0.5, 0.5], [1, 0, 1], [0, 4, 0]],
            "min": [[1, 0, 0], [0, 2, 0], [2, 0, 2]]}[name]
    np.testing.assert_allclose(g.numpy(), want)
    (g,) = vjp(lambda t: getattr(gc, name)(t), [np.full((2, 2), 7.0)], [np.array(1.0)], [0])
    np.testing.assert_allclose(g.numpy(), np.full((2, 2), 0.25))


@pytest.mark.parametrize("name", REDUCE)
@pytest.mark.parametrize("axis,keepdims", [(None, False), (1, True), (-1, False), ((0, 2), False),
                                           ((0, 2), True), ((), False)])
def test_vjp_traced_equals_eager(name, axis, keepdims):
    """VJP rules are graphc ops only, so the autodiff pass can trace them."""
    op = registry.get(name)
    x = REDUCE[name][2]((2, 3, 4))
    attrs = op.canonical((TensorType(x.shape, "float64"),), {"axis": axis, "keepdims": keepdims})
    g = np.random.default_rng(1).standard_normal(op.impl(np, x, **attrs).shape)

    def f(x, g):
        (dx,) = op.vjp(g, x, apply(op, x, **attrs), **attrs)
        return dx
    eager = f(gc.array(x), gc.array(g))
    traced = gc.jit(f, backend="reference")(x, g)
    assert traced.shape == x.shape and traced.dtype == eager.dtype
    np.testing.assert_allclose(traced.numpy(), eager.numpy(), rtol=1e-12)


# -- axis arguments --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sum", "max", "mean"])
@pytest.mark.parametrize("axis", [np.int64(1), np.int32(-1), (np.int64(0), 2)], ids=repr)
def test_numpy_integer_axes_are_accepted(name, axis):
    fn, npfn = getattr(gc, name), getattr(np, name)
    check(lambda t: fn(t, axis=axis), [distinct((2, 3, 4))], lambda a: npfn(a, axis=axis),
          "float64", grad=False)


def test_numpy_integer_axes_become_python_ints():
    x = distinct((2, 3, 4))
    check(lambda t: gc.argmax(t, axis=np.int64(2)), [x], lambda a: np.argmax(a, axis=2), "int64",
          grad=False)
    g = gc.trace(lambda t: gc.sum(t, axis=np.int64(1)), x)
    assert type(g.nodes[-1].attrs["axis"][0]) is int


def test_bad_axes_are_shape_errors():
    x = gc.zeros((2, 7))  # a shape no other test reduces (see the memo test below)
    with pytest.raises(gc.ShapeError, match=rf"sum.*axis 2.*rank 2.*{FILE}"):
        gc.sum(x, axis=2)
    with pytest.raises(gc.ShapeError, match=r"mean.*axis -3"):
        gc.mean(x, axis=(0, -3))
    with pytest.raises(gc.ShapeError, match=r"max.*repeated axis"):
        gc.max(x, axis=(1, -1))
    with pytest.raises(gc.ShapeError, match=r"argmax.*axis must be an int"):
        gc.argmax(x, axis=(0, 1))
    with pytest.raises(gc.ShapeError, match=r"sum.*axis must be an int.*'a'"):
        gc.sum(x, axis="a")
    with pytest.raises(gc.ShapeError, match=r"prod.*axis must be an int.*True"):
        gc.prod(x, axis=True)
    with pytest.raises(gc.ShapeError, match=r"sum.*axis must be an int, got 1.0"):
        gc.sum(x, axis=1.0)
    with pytest.raises(gc.ShapeError, match=r"min.*axis must be an int, got 0.5"):
        gc.min(x, axis=(0.5,))


def test_rejected_axis_stays_rejected_after_an_equal_valid_one():
    """True == 1 == 1.0 hash alike: the eager attrs memo must not let axis=True through."""
    x = gc.zeros((2, 9))
    gc.prod(x, axis=1)
    with pytest.raises(gc.ShapeError, match=r"prod.*axis must be an int.*True"):
        gc.prod(x, axis=True)


def test_reduction_canonical_attrs():
    g = gc.trace(lambda t: (gc.sum(t, axis=[-1, 0]), gc.max(t), gc.argmin(t, axis=-2)),
                 np.zeros((2, 3, 4), np.float32))
    attrs = [n.attrs for n in g.nodes]
    assert attrs[0] == {"axis": (0, 2), "keepdims": False}
    assert attrs[1] == {"axis": (0, 1, 2), "keepdims": False}
    assert attrs[2] == {"axis": 1, "keepdims": False}


# -- composites ------------------------------------------------------------------------------

def np_logsumexp(x, axis=None, keepdims=False):
    return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


def np_softmax(x, axis):
    e = np.exp(x)
    return e / np.sum(e, axis=axis, keepdims=True)


def moderate(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).uniform(-2, 2, shape).astype(dtype)


@pytest.mark.parametrize("axis", [None, 0, -1, 1, (0, 2), (-1, -2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp(axis, keepdims):
    check(lambda t: gc.logsumexp(t, axis=axis, keepdims=keepdims), [moderate((2, 3, 4))],
          lambda a: np_logsumexp(a, axis, keepdims), "float64")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log(0) = -inf, on purpose
def test_logsumexp_extremes():
    big = np.array([[1000.0, 1000.0, -5.0], [-1000.0, -1000.0 + math.log(3), -2000.0]])
    want = np.array([1000.0 + math.log(2.0 + math.exp(-1005.0)), -1000.0 + math.log(4.0)])
    check(lambda t: gc.logsumexp(t, axis=1), [big], lambda a: want, "float64")
    check(lambda t: gc.logsumexp(t, axis=1), [big.astype(np.float32)], lambda a: want, "float32",
          grad=False)
    inf = np.inf
    x = np.array([[-inf, -inf, -inf], [0.0, -inf, 1.0], [inf, 0.0, 1.0], [inf, inf, 2.0]])
    want = np.array([-inf, math.log(1 + math.e), inf, inf])
    check(lambda t: gc.logsumexp(t, axis=1), [x], lambda a: want, "float64", grad=False)
    check(lambda t: gc.logsumexp(t, axis=1, keepdims=True), [x], lambda a: want[:, None],
          "float64", grad=False)
    # finite rows with -inf entries: the -inf entries get zero gradient
    check(lambda t: gc.logsumexp(t, axis=1), [x[1:2]], lambda a: want[1:2], "float64")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log(0) = -inf, on purpose
@pytest.mark.parametrize("shape,axis", [((2, 0), 1), ((0, 3), 0), ((0, 3), None), ((2, 0), -1),
                                        ((2, 0), np.int64(1)), ((0, 3), (0, 1))], ids=repr)
def test_composites_over_an_empty_axis(shape, axis):
    """logsumexp of nothing is log(0) = -inf as numpy's; softmax of an empty row is empty.
    (They used to raise a ShapeError naming max, which the user never called.)"""
    x = np.zeros(shape)
    for keepdims in (False, True):
        want = np.full(np.sum(x, axis=axis, keepdims=keepdims).shape, -np.inf)
        check(lambda t, k=keepdims: gc.logsumexp(t, axis=axis, keepdims=k), [x],
              lambda a, w=want: w, "float64")
    if axis is not None:
        check(lambda t: gc.softmax(t, axis=axis), [x], lambda a: a, "float64")
        check(lambda t: gc.log_softmax(t, axis=axis), [x], lambda a: a, "float64")


def test_logsumexp_of_ints_is_float32():
    check(gc.logsumexp, [np.array([[1, 2], [3, 4]], np.int32)], np_logsumexp, "float32",
          grad=False)


@pytest.mark.parametrize("fn,ref", [(gc.softmax, np_softmax),
                                    (gc.log_softmax, lambda x, a: np.log(np_softmax(x, a)))])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax(fn, ref, axis):
    check(lambda t: fn(t, axis=axis), [moderate((2, 3, 4))], lambda a: ref(a, axis), "float64")
    check(lambda t: fn(t, axis=axis), [moderate((3, 4), 1, np.float32).T],
          lambda a: ref(a, axis if axis != 1 else -1), "float32", grad=False)


@pytest.mark.parametrize("fn,ref", [(gc.softmax, np_softmax),
                                    (gc.log_softmax, lambda x, a: np.log(np_softmax(x, a)))])
@pytest.mark.parametrize("shift", [1000.0, -1000.0, 1e5])
def test_softmax_large_logits_are_stable(fn, ref, shift):
    x = moderate((3, 4))
    check(lambda t: fn(t, axis=-1), [x + shift], lambda a: ref(x, -1), "float64",
          grad=shift != 1e5)
    # the reference sees the float32-rounded logits, shifted back exactly in float64
    check(lambda t: fn(t, axis=0), [(x + shift).astype(np.float32)],
          lambda a: ref(a - shift, 0), "float32", grad=False)


def test_softmax_saturates_exactly():
    assert gc.softmax(gc.array(np.array([1e4, 0.0], np.float32))).numpy().tolist() == [1.0, 0.0]
    out = gc.log_softmax(gc.array(np.array([1e4, 0.0], np.float32))).numpy()
    assert out.tolist() == [0.0, -1e4]


def test_softmax_default_axis_and_default_dtype():
    x = moderate((2, 5))
    check(gc.softmax, [x], lambda a: np_softmax(a, -1), "float64")
    check(gc.log_softmax, [x], lambda a: np.log(np_softmax(a, -1)), "float64")
    check(gc.softmax, [np.array([[1, 2, 3]], np.int64)], lambda a: np_softmax(a, -1), "float32",
          grad=False)


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_var(axis, keepdims):
    def ref(a):
        mu = np.sum(a, axis=axis, keepdims=True) / count(a, axis)
        return np.sum((a - mu) ** 2, axis=axis, keepdims=keepdims) / count(a, axis)
    check(lambda t: gc.var(t, axis=axis, keepdims=keepdims), [moderate((2, 3, 4))], ref,
          "float64")
    check(lambda t: gc.var(t, axis=axis, keepdims=keepdims),
          [np.random.default_rng(3).integers(-4, 5, (2, 3, 4)).astype(np.int32)], ref,
          "float32", grad=False)


def np_layer_norm(x, gamma, beta, axis, eps=1e-5):
    mu = np.mean(x, axis=axis, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=axis, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    return y * (1 if gamma is None else gamma) + (0 if beta is None else beta)


@pytest.mark.parametrize("axis,norm_shape", [(-1, (4,)), (2, (4,)), ((-2, -1), (3, 4)),
                                             ((1, 2), (3, 4))])
@pytest.mark.parametrize("affine", ["none", "gamma", "both"])
def test_layer_norm(axis, norm_shape, affine):
    x = moderate((2, 3, 4))
    gamma = moderate(norm_shape, 1) if affine != "none" else None
    beta = moderate(norm_shape, 2) if affine == "both" else None
    args = [x] + [a for a in (gamma, beta) if a is not None]

    def fn(t, *p):
        g = p[0] if gamma is not None else None
        b = p[1] if beta is not None else None
        return gc.layer_norm(t, g, b, axis=axis)
    check(fn, args, lambda a, *p: np_layer_norm(a, *(list(p) + [None, None])[:2], axis),
          "float64")


def test_layer_norm_eps_and_float32():
    x = moderate((3, 5), 4, np.float32)
    check(lambda t: gc.layer_norm(t, eps=0.1), [x], lambda a: np_layer_norm(a, None, None, -1, 0.1),
          "float32")
    const = np.full((2, 4), 3.0)  # zero variance: (x - mu) = 0, no division by zero
    check(gc.layer_norm, [const], lambda a: np.zeros_like(a), "float64", grad=False)
