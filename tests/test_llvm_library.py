"""GEMM library nodes of the LLVM backend (`graphc.backends.llvm.library_codegen`) against
the reference backend.

- single matmuls: 2-D on odd sizes (1, 3, 17, 1023) and zero-size dims, vector cases,
  batched with broadcast batch dims, transposed/strided/reversed operands, float32 and
  float64; none may fall back;
- fused Dense epilogues (bias, relu, tanh, sigmoid) through ``gc.jit(..., backend='llvm')``:
  one native kernel, equal to the reference within float tolerance;
- the model suite forward at opt level 2;
each three ways: in the executable's native program (BLAS called from generated code),
and node by node from Python, through the ctypes BLAS call and as a small product left
to numpy.
"""

from __future__ import annotations

import models as M
import numpy as np
import pytest

import graphc as gc
from graphc.backends.llvm import library_codegen, runtime

pytestmark = pytest.mark.skipif(library_codegen.blas() is None,
                                reason="no BLAS gemm symbol in numpy's libraries")
TOL = {"float32": 2e-5, "float64": 1e-12}


@pytest.fixture(autouse=True, params=["program", "blas", "small"])
def _path(request, monkeypatch):
    """Every case runs in the native program, and node by node through the ctypes BLAS
    call and as a latency-bound product (under `SMALL_GEMM`: numpy)."""
    monkeypatch.setattr(runtime, "NATIVE_GEMM", True)
    monkeypatch.setattr(runtime, "PROGRAM", request.param == "program")
    monkeypatch.setattr(library_codegen, "SMALL_GEMM", 0 if request.param == "blas"
                        else 1 << 62)


def _check(fn, *args, native: bool = True):
    f, r = gc.jit(fn, backend="llvm"), gc.jit(fn, backend="reference")
    got, want = f(*args), r(*args)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):
        g, w = g.numpy(), w.numpy()
        assert (g.shape, g.dtype) == (w.shape, w.dtype)
        tol = TOL[w.dtype.name] * max(1, args[0].shape[-1]) ** 0.5
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
    if native:
        exe = f.compiled(*args)
        assert not [n for n in exe.fallback_nodes if n.op.library == "gemm" or
                    n.attrs.get("kind") == "library"]


def _rand(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 17, 5), (17, 3, 1023), (1023, 17, 3),
                                   (0, 3, 4), (3, 0, 4), (3, 4, 0), (1, 1023, 1)])
def test_matmul_2d(m, k, n, dtype):
    _check(gc.matmul, _rand((m, k), dtype), _rand((k, n), dtype, 1))


@pytest.mark.parametrize("a,b", [((5,), (5, 3)), ((4, 5), (5,)), ((5,), (5,)),
                                 ((2, 3, 4), (4, 5)), ((4, 5), (3, 5, 6)),
                                 ((2, 1, 3, 4), (5, 4, 2)), ((0, 3, 4), (4, 2)),
                                 ((1, 3, 4), (6, 4, 2)), ((3,), (2, 3, 4))])
def test_matmul_vector_and_batched(a, b):
    _check(gc.matmul, _rand(a, "float32"), _rand(b, "float32", 1))


def _views(x):
    """Layouts of (possibly permuted) copies of ``x``."""
    yield x.T.copy().T  # column-major
    yield x[::-1]  # negative row stride
    yield x[:, ::-1]
    yield np.ascontiguousarray(np.repeat(x, 2, axis=1))[:, ::2]  # strided inner
    big = np.zeros((x.shape[0] + 3, x.shape[1] + 5), x.dtype)
    big[1:x.shape[0] + 1, 2:x.shape[1] + 2] = x
    yield big[1:x.shape[0] + 1, 2:x.shape[1] + 2]  # leading dimension > cols
    yield np.asfortranarray(big)[1:x.shape[0] + 1, 2:x.shape[1] + 2]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_non_contiguous_operands(dtype):
    a, b = _rand((7, 9), dtype), _rand((9, 11), dtype, 1)
    for va in _views(a):
        for vb in _views(b):
            _check(gc.matmul, va, vb)
    # batched transposed operands
    x, y = _rand((3, 5, 4), dtype), _rand((3, 6, 5), dtype, 2)
    _check(lambda p, q: gc.matmul(p, q), x.transpose(0, 2, 1), y.transpose(0, 2, 1))
    _check(gc.matmul, np.broadcast_to(_rand((1, 4), dtype), (3, 4)), _rand((4, 2), dtype))


def test_gemm_uses_trans_flags_not_copies():
    a = _rand((6, 4), "float32")
    assert library_codegen._matrix(a.T) == (library_codegen._TRANS, 4)
    assert library_codegen._matrix(a) == (library_codegen._NO_TRANS, 4)
    assert library_codegen._matrix(a[::-1]) is None


def test_integer_matmul_falls_back_but_runs():
    a, b = np.arange(6).reshape(2, 3), np.arange(12).reshape(3, 4)
    f = gc.jit(gc.matmul, backend="llvm")
    np.testing.assert_array_equal(f(a, b).numpy(), a @ b)
    assert len(f.compiled(a, b).fallback_nodes) == 1


EPILOGUES = {
    "bias": lambda x, w, b: gc.matmul(x, w) + b,
    "bias_relu": lambda x, w, b: gc.relu(gc.matmul(x, w) + b),
    "bias_tanh": lambda x, w, b: gc.tanh(gc.matmul(x, w) + b),
    "bias_sigmoid_two_outputs": lambda x, w, b: (gc.matmul(x, w),
                                                 gc.sigmoid(gc.matmul(x, w) + b) * 2.0),
    "wt_bias_relu": lambda x, w, b: gc.relu(gc.matmul(x, gc.transpose(w, (1, 0)).T) + b),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(EPILOGUES))
@pytest.mark.parametrize("shape", [(1, 1, 1), (4, 17, 3), (17, 1023, 7), (0, 3, 5)])
def test_dense_epilogues_fuse_and_match(case, shape, dtype):
    m, k, n = shape
    x, w, b = _rand((m, k), dtype), _rand((k, n), dtype, 1), _rand((n,), dtype, 2)
    fn = EPILOGUES[case]
    _check(fn, x, w, b)
    exe = gc.jit(fn, backend="llvm").compiled(x, w, b)
    kinds = [n.attrs.get("kind") for n in exe.graph.nodes if n.body is not None]
    assert "library" in kinds
    assert not exe.fallback_nodes
    if runtime.PROGRAM:   # BLAS and the epilogue called from one native segment
        assert {s[0] for s in exe.program.schedule} <= {"native"}


def test_epilogue_nan_inf_and_non_contiguous():
    x, w = _rand((5, 4), "float32"), _rand((3, 4), "float32", 1)
    x[0, 0], x[1, 1] = np.nan, np.inf
    b = _rand((3,), "float32")
    _check(lambda x, w, b: gc.relu(gc.matmul(x, w) + b), x, w.T, b)


@pytest.mark.parametrize("case", sorted(M.INFERENCE))
def test_models_forward_match_reference(case):
    fn, args = M.INFERENCE[case]()
    f, r = gc.jit(fn, backend="llvm", opt_level=2), gc.jit(fn, backend="reference",
                                                          opt_level=2)
    got, want = f(*args), r(*args)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-5)
