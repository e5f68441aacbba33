"""Native reductions of the LLVM backend (`graphc.backends.llvm.reduce_codegen`) against the
reference backend.

- single reductions (sum, mean, max, min, prod) over every axis set of 1-3-d inputs, with
  and without keepdims, on odd sizes (0 where allowed, 1, 3, 17, 1023, 4097), float32 and
  float64; NaN/inf/signed-zero inputs; non-contiguous inputs (transposed, strided,
  reversed); none of them may fall back;
- row-wise fused kernels (softmax, log_softmax, layer_norm, softmax cross-entropy) through
  ``gc.jit(..., backend='llvm')``: native and equal to the reference within float tolerance;
- the model suite forward at opt level 2;
- the optimized IR of a float32 row sum, max and softmax uses 8-wide vectors.

Row sums are reassociated (several partial sums), so sums match within float tolerance,
scaled by the number of reduced elements.
"""

from __future__ import annotations

import itertools
import math
import re

import models as M
import numpy as np
import pytest

import graphc as gc

SIZES = (0, 1, 3, 17, 1023, 4097)
REDUCTIONS = ("sum", "mean", "max", "min", "prod")
EPS = {"float32": 1e-5, "float64": 1e-12}


def _axis_sets(ndim: int):
    yield None
    for r in range(1, ndim + 1):
        yield from itertools.combinations(range(ndim), r)


def _cases(shape):
    """(op, axis, keepdims) of every reduction that is defined on ``shape``."""
    for name, axis, keep in itertools.product(REDUCTIONS, _axis_sets(len(shape)), (False, True)):
        axes = range(len(shape)) if axis is None else axis
        if name in ("max", "min") and any(shape[a] == 0 for a in axes):
            continue  # no maximum of nothing: a ShapeError in both backends
        yield name, axis, keep


def _compare(got, want, count: int, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert (got.shape, got.dtype) == (want.shape, want.dtype), what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaNs")
    eps = EPS[want.dtype.name]
    tol = eps * max(1.0, math.sqrt(count))
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol,
                               atol=tol, err_msg=what)
    zeros = (got == 0) & (want == 0)
    np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(want[zeros]),
                                  err_msg=f"{what}: signs of zeros")


def _run_all(x: np.ndarray, p: np.ndarray, cases: list) -> None:
    """Every case on ``x`` (prod on ``p``, values near 1) in ONE graph, llvm vs reference;
    no node may fall back."""
    def fn(x, p):
        return tuple(getattr(gc, name)(p if name == "prod" else x, axis=axis, keepdims=keep)
                     for name, axis, keep in cases)
    f, r = gc.jit(fn, backend="llvm"), gc.jit(fn, backend="reference")
    with np.errstate(all="ignore"):
        got, want = f(x, p), r(x, p)
    exe = f.compiled(x, p)
    assert not [n.op.name for n in exe.fallback_nodes if n.op.kind.name == "REDUCTION"]
    for (name, axis, keep), g, w in zip(cases, got, want):
        axes = range(x.ndim) if axis is None else axis
        count = math.prod(x.shape[a] for a in axes)
        _compare(g.numpy(), w.numpy(), count, f"{name}(axis={axis}, keepdims={keep}) "
                 f"of {x.dtype}{list(x.shape)}")


def _inputs(rng, shape, dtype):
    x = rng.uniform(-1, 1, shape).astype(dtype)
    p = rng.uniform(0.9, 1.1, shape).astype(dtype)
    return x, p


SHAPES = [(n,) for n in SIZES] + [(3, n) for n in SIZES] + [(n, 3) for n in SIZES] + \
    [(2, 3, 5), (4, 1, 7), (0, 3, 2), (5, 17, 9)]


@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reductions_match_reference(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    _run_all(*_inputs(rng, shape, dtype), list(_cases(shape)))


@pytest.mark.parametrize("view", ("transposed", "strided", "reversed"))
def test_reductions_of_non_contiguous_inputs(view):
    rng = np.random.default_rng(1)
    x, p = _inputs(rng, (6, 34, 5), "float32")
    make = {"transposed": lambda a: a.transpose(2, 0, 1),
            "strided": lambda a: a[::2, ::3, 1:],
            "reversed": lambda a: a[::-1, :, ::-1]}[view]
    x, p = make(x), make(p)
    assert not x.flags.c_contiguous
    _run_all(x, p, list(_cases(x.shape)))


@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_nan_inf_and_signed_zeros_as_numpy(dtype):
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (7, 1023)).astype(dtype)
    x[1, 5] = np.nan            # NaN wins in every reduction
    x[2, :] = np.inf            # inf sums to inf
    x[3, 7], x[3, 900] = np.inf, -np.inf   # inf - inf is NaN
    x[4, 1000] = -np.inf
    x[5, :] = -0.0              # sum of -0.0 is -0.0; max/min of zeros are zeros
    x[6, 3] = np.nan
    x[6, 4] = np.inf
    p = np.abs(x) + 0.5
    p[5, :] = 1.0
    cases = [(n, a, k) for n, a, k in _cases(x.shape) if a in ((1,), (0,), None)]
    _run_all(x, p, cases)


def test_zero_size_reductions_give_the_identity():
    x = np.zeros((3, 0), np.float32)
    f = gc.jit(lambda x: (gc.sum(x, axis=1), gc.prod(x, axis=1), gc.mean(x, axis=1)),
               backend="llvm")
    s, p, m = (t.numpy() for t in f(x))
    assert not f.compiled(x).fallback_nodes
    np.testing.assert_array_equal(s, np.zeros(3, np.float32))
    assert not np.signbit(s).any()
    np.testing.assert_array_equal(p, np.ones(3, np.float32))
    assert np.isnan(m).all()


def test_argmax_and_int_reductions_fall_back_but_run():
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    f = gc.jit(lambda x: (gc.argmax(x, axis=1), gc.sum(x, axis=0)), backend="llvm")
    a, s = (t.numpy() for t in f(x))
    np.testing.assert_array_equal(a, np.argmax(x, axis=1))
    np.testing.assert_array_equal(s, x.sum(axis=0))
    assert len(f.compiled(x).fallback_nodes) == 2


# -- fused row-wise kernels ------------------------------------------------------------------

def _ln(x, g, b):
    return gc.layer_norm(x, g, b)


def _xent(x, labels):
    return gc.softmax_cross_entropy(x, labels)


ROWWISE = {
    "softmax": (lambda x: gc.softmax(x, axis=-1), lambda rng, x: ()),
    "log_softmax": (lambda x: gc.log_softmax(x, axis=-1), lambda rng, x: ()),
    "layer_norm": (_ln, lambda rng, x: (rng.standard_normal(x.shape[-1]).astype(x.dtype),
                                        rng.standard_normal(x.shape[-1]).astype(x.dtype))),
    "softmax_cross_entropy": (_xent, lambda rng, x: (rng.integers(0, x.shape[-1],
                                                                  x.shape[:-1]),)),
}


def _fused_native(exe) -> bool:
    fused = [i for i, n in enumerate(exe.graph.nodes) if n.attrs.get("kind") == "reduction"]
    return bool(fused) and all(i in exe.kernels for i in fused)


@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("shape", [(4, 3), (5, 17), (3, 1023), (2, 4097), (2, 3, 33),
                                   (64, 1000)], ids=str)
@pytest.mark.parametrize("case", sorted(ROWWISE))
def test_rowwise_kernels_match_reference(case, shape, dtype):
    fn, extra = ROWWISE[case]
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    args = (x, *extra(rng, x))
    f, r = gc.jit(fn, backend="llvm"), gc.jit(fn, backend="reference")
    got, want = f(*args).numpy(), r(*args).numpy()
    assert _fused_native(f.compiled(*args)), f.compiled(*args).graph
    rtol = 2e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, err_msg=case)


def test_rowwise_kernels_propagate_nan_and_inf():
    x = np.random.default_rng(3).standard_normal((4, 17)).astype(np.float32)
    x[0, 3], x[1, 2], x[2, :] = np.nan, np.inf, -np.inf
    for fn in (ROWWISE["softmax"][0], ROWWISE["log_softmax"][0]):
        f, r = gc.jit(fn, backend="llvm"), gc.jit(fn, backend="reference")
        with np.errstate(all="ignore"):
            got, want = f(x).numpy(), r(x).numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def test_rowwise_kernel_on_non_contiguous_input():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 9)).astype(np.float32).T[:, ::2]   # (9, 20), strided
    g, b = rng.standard_normal(20).astype(np.float32), rng.standard_normal(20).astype(np.float32)
    f, r = gc.jit(_ln, backend="llvm"), gc.jit(_ln, backend="reference")
    np.testing.assert_allclose(f(x, g, b).numpy(), r(x, g, b).numpy(), rtol=2e-5, atol=2e-5)
    assert _fused_native(f.compiled(x, g, b))


@pytest.mark.parametrize("case", sorted(M.INFERENCE))
def test_models_forward_match_reference(case):
    fn, args = M.INFERENCE[case]()
    f, r = gc.jit(fn, backend="llvm", opt_level=2), gc.jit(fn, backend="reference",
                                                          opt_level=2)
    with np.errstate(all="ignore"):
        got, want = f(*args), r(*args)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=f"{case} output {i}")


@pytest.mark.parametrize("fn", [lambda x: gc.sum(x, axis=1), lambda x: gc.max(x, axis=1),
                                lambda x: gc.softmax(x, axis=-1)],
                         ids=["sum", "max", "softmax"])
def test_row_kernels_are_vectorized_8_wide(fn):
    x = np.ones((4, 4096), np.float32)
    f = gc.jit(fn, backend="llvm")
    exe = f.compiled(x)
    vectors = set(re.findall(r"<(\d+) x float>", exe.optimized_ir))
    assert "8" in vectors or "16" in vectors, sorted(vectors)


@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_zero_ties_resolve_as_numpy(dtype):
    """max/min of rows whose extreme is a zero of either sign: the later zero wins, as in
    numpy's scalar fold (short rows) and its elementwise fold (columns)."""
    rng = np.random.default_rng(5)
    x = -np.abs(rng.standard_normal((64, 7))).astype(dtype)
    zeros = rng.random(x.shape) < 0.5
    x[zeros] = np.where(rng.random(x.shape) < 0.5, 0.0, -0.0)[zeros]
    cases = [(n, a, False) for n in ("max", "min") for a in ((0,), (1,))]
    _run_all(x, x, cases)
    _run_all(-x, -x, cases)


def test_byte_swapped_and_unaligned_inputs():
    x = np.random.default_rng(6).standard_normal((5, 17))
    swapped = x.astype(">f8")
    raw = np.zeros(x.size * 8 + 1, np.uint8)[1:].view(np.float64).reshape(x.shape)
    raw[...] = x
    assert not raw.flags.aligned
    for a in (swapped, raw):
        _run_all(a, np.abs(a) + 0.5, [("sum", (1,), False), ("max", (0,), True),
                                      ("mean", None, False)])
        f = gc.jit(lambda x: gc.softmax(x, axis=-1), backend="llvm")
        np.testing.assert_allclose(f(a).numpy(), gc.jit(lambda x: gc.softmax(x, axis=-1),
                                                        backend="reference")(a).numpy(),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,axis", [((7, 33), 0), ((4, 5, 6), (0, 2)), ((3, 1), 1),
                                        ((5, 1, 4), 1)], ids=str)
def test_fused_reductions_over_any_axes(shape, axis):
    """A prologue, several reductions over leading/middle axes and an exported full value:
    the runtime moves the reduced axes last; rows of one element are full and reduced."""
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal(shape), rng.standard_normal(shape[-1:])

    def fn(x, y):
        t = gc.tanh(x * y) + 1.0
        return gc.sum(t * t, axis=axis), gc.max(t, axis=axis, keepdims=True), t * 2.0, \
            gc.softmax(x, axis=axis)
    f, r = gc.jit(fn, backend="llvm"), gc.jit(fn, backend="reference")
    exe = f.compiled(x, y)
    assert _fused_native(exe), exe.graph
    for g, w in zip(f(x, y), r(x, y)):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-12, atol=1e-12)
