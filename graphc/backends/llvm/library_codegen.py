"""GEMM library nodes for the LLVM backend: BLAS sgemm/dgemm plus a native epilogue.

A single ``matmul`` node (``Op.library == 'gemm'``) and a fused ``library`` kernel whose
library op is a gemm run as one BLAS call per batch matrix — the optimized OpenBLAS numpy
itself links (its ILP64 ``cblas_[sd]gemm`` symbol in numpy's ``.libs`` folder, called
through ctypes, which releases the GIL; OpenBLAS threads as numpy.matmul does) — into a
contiguous buffer, then, for a fused kernel, ONE native elementwise pass over it that
applies the epilogue (bias, activation...) and writes the kernel's outputs: the epilogue's
body nodes are rendered as an elementwise kernel (`codegen`) whose last input is the GEMM
result, so nothing is special-cased per op.

Operands are matrices (numpy's 1-D rules make vectors a row or a column); a row-major or
column-major operand with any leading dimension is passed with BLAS's transpose flags, not
copied; other layouts (negative or non-unit inner strides) are copied once. Batch dims
broadcast as numpy through stride-0 views: each batch matrix is a pointer offset.
Empty inner dimensions give zeros (as numpy). Products of fewer than `SMALL_GEMM`
multiply-adds are latency-bound (W7's tiny MLP) and stay in the reference interpreter
(numpy ops cost less there than the set-up of the ctypes calls, about 1 us per data
pointer read). Only float32/float64
gemms are native; other dtypes, constants of several elements inside the kernel, and the
case where the BLAS symbol cannot be found (`blas()` is None) raise `kernel_specs.Unsupported`,
and the runtime runs the node in the reference interpreter.
"""

from __future__ import annotations

import ctypes
import glob
import math
import os

import numpy as np

from ... import dtypes as dt
from ...graph import Node
from .. import kernel_specs
from ..kernel_specs import gemm_epilogue
from . import codegen

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
#: Below this many multiply-adds (``a.size * n``, from the static types) a gemm node or
#: kernel is left to the reference interpreter (numpy.matmul calls the same BLAS, or its
#: own loop for tiny operands): the few us of Python work to set up the ctypes calls
#: would cost more than the arithmetic.
SMALL_GEMM = 1 << 16
_BLAS: dict | None = None


#: dtype -> (symbol name, index type) of the gemm functions, registered with LLVM so
#: generated code (`program` segments) calls them directly.
SYMBOLS: dict[str, tuple[str, str]] = {}


def _load() -> dict:
    """{'float32': sgemm, 'float64': dgemm} from numpy's bundled OpenBLAS, or {}; their
    symbols are registered with LLVM (`SYMBOLS`)."""
    root = os.path.dirname(os.path.dirname(np.__file__))
    names = [("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", ctypes.c_int64),
             ("cblas_sgemm64_", "cblas_dgemm64_", ctypes.c_int64),
             ("cblas_sgemm", "cblas_dgemm", ctypes.c_int)]
    for path in sorted(glob.glob(os.path.join(root, "numpy.libs", "*openblas*")) +
                       glob.glob(os.path.join(root, "numpy", ".dylibs", "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for s, d, idx in names:
            if hasattr(lib, s) and hasattr(lib, d):
                global _SET_THREADS
                for setter in ("scipy_openblas_set_num_threads64_",
                               "openblas_set_num_threads64_", "openblas_set_num_threads"):
                    if hasattr(lib, setter):
                        _SET_THREADS = getattr(lib, setter)
                        _SET_THREADS.argtypes, _SET_THREADS.restype = [ctypes.c_int], None
                        break
                out = {}
                for dtype, name, real in (("float32", s, ctypes.c_float),
                                          ("float64", d, ctypes.c_double)):
                    fn = getattr(lib, name)
                    ci, p = ctypes.c_int, ctypes.c_void_p
                    fn.argtypes = [ci, ci, ci, idx, idx, idx, real, p, idx, p, idx, real,
                                   p, idx]
                    fn.restype = None
                    out[dtype] = fn
                    _register(name, ctypes.cast(fn, ctypes.c_void_p).value,
                              "i64" if idx is ctypes.c_int64 else "i32", dtype)
                return out
    return {}


def set_blas_threads(n: int) -> None:
    """OpenBLAS's thread count, where numpy's OpenBLAS exports the setter."""
    blas()
    if _SET_THREADS is not None:
        _SET_THREADS(n)


_SET_THREADS = None


def _register(name: str, address: int, index: str, dtype: str) -> None:
    import llvmlite.binding as llvm
    llvm.add_symbol(name, address)
    SYMBOLS[dtype] = (name, index)


def blas() -> dict | None:
    """The gemm functions by dtype, or None where no BLAS symbol was found."""
    global _BLAS
    if _BLAS is None:
        _BLAS = _load()
    return _BLAS or None


def _matrix(x: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """A 2-D operand's (trans flag, leading dimension), or None if it is neither row- nor
    column-major (then it is copied)."""
    r, c = x.shape
    it = x.itemsize
    s0, s1 = x.strides
    if s0 % it == 0 and s1 % it == 0:
        s0, s1 = s0 // it, s1 // it
        if (c == 1 or s1 == 1) and (r == 1 or s0 >= max(1, c)):
            return _NO_TRANS, s0 if r > 1 else max(1, c)
        if (r == 1 or s0 == 1) and (c == 1 or s1 >= max(1, r)):
            return _TRANS, s1 if c > 1 else max(1, r)
    return None


def _offsets(x: np.ndarray, nb: int) -> np.ndarray:
    """Byte offsets of each batch matrix of ``x`` (a view broadcast to its batch dims
    ``x.shape[:nb]``), in C order."""
    off = np.zeros((), np.int64)
    for n, s in zip(x.shape[:nb], x.strides[:nb]):
        off = (off[..., None] + np.arange(n, dtype=np.int64) * s)
    return off.reshape(-1)


def _batched(a: np.ndarray, b: np.ndarray) -> tuple:
    """numpy.matmul's operands as stacks of matrices: a vector is a row (a) or a column
    (b); (batch..., m, k) @ (k, n) with a C-contiguous ``a`` is ONE (batch*m, k) matrix
    (the output is laid out so); other batch dims broadcast as stride-0 views. Returns
    (a, b, m, k, n, batch)."""
    a = a[None, :] if a.ndim == 1 else a
    b = b[:, None] if b.ndim == 1 else b
    if a.ndim > 2 and b.ndim == 2 and a.flags.c_contiguous:
        a = a.reshape(math.prod(a.shape[:-1]), a.shape[-1])   # (-1 fails when k == 0)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    return (np.broadcast_to(a, batch + (m, k)), np.broadcast_to(b, batch + (k, n)),
            m, k, n, batch)


def gemm(a: np.ndarray, b: np.ndarray, out_shape: tuple, dtype) -> np.ndarray:
    """numpy.matmul(a, b) of dtype ``dtype`` through BLAS, as a new C-contiguous array of
    ``out_shape``."""
    a, b = np.asarray(a, dtype), np.asarray(b, dtype)
    fn = _BLAS[np.dtype(dtype).name]
    a = a if a.flags.aligned else a.copy()
    b = b if b.flags.aligned else b.copy()
    a, b, m, k, n, batch = _batched(a, b)
    out = np.empty(batch + (m, n), dtype)
    if out.size == 0:
        return out.reshape(out_shape)
    if k == 0:
        out.fill(0)
        return out.reshape(out_shape)
    nb = len(batch)
    first = (0,) * nb
    la, lb = _matrix(a[first]), _matrix(b[first])  # every batch matrix has these strides
    if la is None:
        a = np.ascontiguousarray(a)
        la = _NO_TRANS, max(1, k)
    if lb is None:
        b = np.ascontiguousarray(b)
        lb = _NO_TRANS, max(1, n)
    (ta, lda), (tb, ldb) = la, lb
    pa, pb, pc = a.ctypes.data, b.ctypes.data, out.ctypes.data
    step = m * n * out.itemsize
    for i, (x, y) in enumerate(zip(_offsets(a, nb).tolist(), _offsets(b, nb).tolist())):
        fn(_ROW_MAJOR, ta, tb, m, n, k, 1.0, pa + x, lda, pb + y, ldb, 0.0, pc + i * step, n)
    return out.reshape(out_shape)


class _Value:
    """Stands for the GEMM result among the epilogue kernel's inputs (last)."""

    __slots__ = ()


class _EpilogueNode:
    """The epilogue as an elementwise node for the runtime's elementwise kernel runner."""

    def __init__(self, inputs, outputs):
        self.inputs, self.outputs = inputs, outputs


class LibraryKernel:
    """A gemm node or fused gemm kernel: BLAS, then (fused) the native epilogue."""

    def __init__(self, node: Node, name: str, builder: codegen.ModuleBuilder, make_kernel):
        """``make_kernel``: the runtime's elementwise kernel class, called as (node, spec,
        module, names) to bind the epilogue (its ``launch`` runs it)."""
        if blas() is None:
            raise kernel_specs.Unsupported("no BLAS gemm symbol found in numpy's libraries")
        self.node, self.make_kernel = node, make_kernel
        self.epilogue = self.names = self.spec = None
        if node.body is None:
            self.operands, self.out_type = list(node.inputs), node.outputs[0].type
        else:
            lib, self.operands, self.spec, ins = gemm_epilogue(node, name)
            self.out_type = lib.outputs[0].type
        if self.out_type.dtype not in ("float32", "float64") or len(self.operands) != 2:
            raise kernel_specs.Unsupported(f"{self.out_type.dtype} gemm")
        a, b = (v.type for v in self.operands)
        #: run from Python by numpy (see `SMALL_GEMM`); native segments call BLAS anyway
        self.small = a.size * b.shape[-1] < SMALL_GEMM
        self.np_dtype = dt.to_numpy(self.out_type.dtype)
        if self.spec is not None:
            self.names = builder.add_kernel(self.spec)
            self.epi_node = _EpilogueNode(ins + [_Value()], node.outputs)
            self.in_place = [v.type for v in node.outputs] == [self.out_type]

    def bind(self, module) -> LibraryKernel:
        """Binds the epilogue's entry points in the loaded module."""
        if self.spec is not None:
            self.epilogue = self.make_kernel(self.epi_node, self.spec, module, self.names)
        return self

    def calls(self, at) -> list | None:
        """BLAS calls (one per batch matrix) and the epilogue as native `program.Call`s over
        static locations ``at``, or None when an operand's layout needs a copy."""
        from .program import Call, Loc, elementwise_calls, overlap
        dtype = self.np_dtype
        la, lb = (at.loc[v.name] for v in self.operands)
        a, b = la.array, lb.array
        if not all(x.dtype == dtype and x.dtype.isnative and x.flags.aligned for x in (a, b)):
            return None
        a, b, m, k, n, batch = _batched(a, b)
        nb = len(batch)
        outs = [at.loc[v.name] for v in self.node.outputs]
        epi_ins = [at.loc[v.name] for v in self.epi_node.inputs[:-1]] if self.spec else []
        if self.spec is None or self.in_place and not any(overlap(outs[0], x)
                                                          for x in epi_ins):
            c = outs[0]   # (not over an epilogue input the plan let the output take)
            if not c.contiguous:
                return None
        else:
            scratch = np.empty(self.out_type.shape, dtype)
            c = Loc(at.new_slot(scratch), 0, scratch)
        calls = []
        if m and n and math.prod(batch):
            if k == 0:
                return None
            first = (0,) * nb
            ma, mb = _matrix(a[first]), _matrix(b[first])
            offsets = list(zip(_offsets(a, nb).tolist(), _offsets(b, nb).tolist()))
            if ma is None or mb is None or len(offsets) > 1024:
                return None
            sym, idx = SYMBOLS[dtype.name]
            real = "f32" if dtype == np.float32 else "f64"
            step = m * n * dtype.itemsize
            calls = [Call(sym, (("i32", _ROW_MAJOR), ("i32", ma[0]), ("i32", mb[0]),
                                (idx, m), (idx, n), (idx, k), (real, 1.0), la.at(x),
                                (idx, ma[1]), lb.at(y), (idx, mb[1]), (real, 0.0),
                                c.at(i * step), (idx, n)))
                     for i, (x, y) in enumerate(offsets)]
        if self.spec is None:
            return calls
        epilogue = elementwise_calls(self.spec, self.names, epi_ins + [c], outs, at.builder)
        return None if epilogue is None else calls + epilogue

    def run(self, env: dict) -> None:
        a, b = (np.asarray(env[id(v)]) for v in self.operands)
        if self.small:   # numpy's matmul costs less than the ctypes set-up here
            c = np.asarray(np.matmul(a, b), self.np_dtype)   # (1-D @ 1-D: a scalar)
            c = c if c.flags.c_contiguous and c.flags.writeable else c.copy()
        else:
            c = gemm(a, b, self.out_type.shape, self.np_dtype)
        if self.epilogue is None:
            env[id(self.node.outputs[0])] = c
            return
        self._epilogue([np.asarray(env[id(v)]) for v in self.epi_node.inputs[:-1]] + [c],
                       env)

    def _epilogue(self, ins: list, env: dict) -> None:
        """The epilogue kernel over ``ins`` (its inputs, the gemm result last); one output
        of the gemm's type is written over the gemm result, in place."""
        outs = self.epilogue.launch(ins, [ins[-1]] if self.in_place else None)
        for v, o in zip(self.node.outputs, outs):
            env[id(v)] = o
