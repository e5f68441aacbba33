"""Convolution and pooling library nodes for the LLVM backend: native loops around BLAS.

A single conv/pool node, or a fused ``library`` kernel whose library op is one of them,
compiles to ONE native function that walks the batch image by image (or in blocks of
images), so that every intermediate buffer stays in cache and the epilogue (bias,
activation, a gradient mask, an SGD update) is applied to each block as it is produced,
not as a separate pass over memory:

- ``conv2d``: im2col of a block of B images into a scratch ``cols`` matrix (Kg x B*L per
  group; padding, stride, dilation as index ranges computed once per kernel tap, so the
  inner loops are plain strided copies LLVM vectorizes), then one BLAS gemm per group,
  W_g (Og x Kg) @ cols_g, whose result is already NCHW when B = 1 (written straight into
  the output if there is no epilogue). Small images (L = Ho*Wo below `COLS_PER_GEMM`) are
  blocked so that each gemm has enough columns; the epilogue then reads the (O, B*L) block
  transposed and writes NCHW. 1x1 stride-1 convolutions skip im2col.
- ``conv2d_input_grad``: per image, cols = W_g^T @ g_n (gemm with the transpose flag),
  scattered back by col2im (a 1x1 stride-1 one writes the gemm result directly).
- ``conv2d_weight_grad``: per image, im2col then dW_g += g_n,g @ cols_g^T (beta = 1 after
  the first image); the epilogue runs once on the finished weight gradient.
- ``max_pool2d`` / ``avg_pool2d``: per output row, one vectorizable pass per kernel tap
  over the range of outputs whose tap is inside the image (max with ``llvm.maximum``, which
  propagates NaN; sums in the window's row-major order, divided as the reference does).
- ``max_pool2d_grad`` / ``avg_pool2d_grad``: scalar loops per output. The max gradient
  follows the reference exactly: the window's first maximum (numpy argmax, NaN first,
  padding counted as -inf) gets g, every other in-image tap gets ``0 * g``.

BLAS is numpy's bundled OpenBLAS (`library_codegen.blas`), called from the generated code
through a symbol registered with LLVM's dynamic linker. The epilogue's expressions are
rendered by `codegen._Emitter` from the body's scalar expressions, reading each input
through static broadcast strides (inputs are made C-contiguous per call). Scratch buffers
belong to the kernel, one set per calling thread. Only float32/float64 nodes without
empty channel or spatial dims are native; others raise `codegen.Unsupported`, and the
runtime runs them in the reference interpreter.
"""

from __future__ import annotations

import ctypes
import math
import threading

import numpy as np
from llvmlite import ir

from ... import dtypes as dt
from ...graph import Node
from ...ops import scalar as S
from ...ops.registry import Kind
from . import codegen, library_codegen
from .codegen import _MEM, I32, I64, PTR, Unsupported
from .program import Call

#: A forward convolution's images are blocked so that each gemm multiplies about this
#: many columns (images x output pixels): fewer make OpenBLAS's per-call packing dominate.
COLS_PER_GEMM = 1024
#: ... but a block's im2col matrix stays under this many bytes (it should stay in L2).
COLS_BYTES = 1 << 20
_ROW, _NO_T, _T = 101, 111, 112
_OPS = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad", "max_pool2d", "avg_pool2d",
        "max_pool2d_grad", "avg_pool2d_grad")
_GEMM = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad")


def _library(node: Node) -> Node | None:
    """The node's library op (itself, or the one LIBRARY node of a fused kernel)."""
    if node.body is None:
        return node if node.op.kind is Kind.LIBRARY else None
    if node.attrs.get("kind") != "library":
        return None
    libs = [n for n in node.body.nodes if n.op.kind is Kind.LIBRARY]
    return libs[0] if len(libs) == 1 else None


def handles(node: Node) -> bool:
    """Whether `ConvKernel` compiles ``node`` natively."""
    lib = _library(node)
    return lib is not None and lib.op.library in _OPS


# -- the epilogue -------------------------------------------------------------------------

def _uses_index(e: S.Expr, seen: set) -> bool:
    if id(e) in seen:
        return False
    seen.add(id(e))
    return e.fn == "index" or any(_uses_index(a, seen) for a in e.args)


class _Epilogue:
    """A fused kernel split into its library op's operands and the elementwise rest, as
    expressions over the epilogue inputs and the library result (the last argument).

    Sources of values are outer graph values or (multi-element) body constants."""

    def __init__(self, node: Node, lib: Node):
        body = node.body
        outer: dict[int, object] = {}
        params = iter(node.inputs)
        for v in body.inputs:
            outer[id(v)] = body.constants[v.name] if v.role == "constant" else next(params)
        self.operands = [outer.get(id(v)) for v in lib.inputs]
        if any(o is None for o in self.operands):
            raise Unsupported("a library operand computed inside the kernel")
        domain = lib.outputs[0].type.shape
        env: dict[int, S.Expr] = {}
        self.sources: list = []
        self.in_types: list = []
        res = S.arg(-1, lib.outputs[0].dtype)  # renumbered once every input is known

        def read(v):
            if id(v) not in env:
                src = outer[id(v)]
                if isinstance(src, np.ndarray) and src.size == 1:
                    env[id(v)] = S.const(src.reshape(()).item(), v.dtype)
                else:
                    env[id(v)] = S.arg(len(self.sources), v.dtype)
                    self.sources.append(src)
                    self.in_types.append(v.type)
            return env[id(v)]
        for n in body.nodes:
            if n is lib:
                env[id(n.outputs[0])] = res
                continue
            e = codegen._apply(n, [read(v) for v in n.inputs])
            if n.outputs[0].type.shape != domain and _uses_index(e, set()):
                raise Unsupported("the flat index at a broadcast shape in an epilogue")
            env[id(n.outputs[0])] = e
        exprs = [read(v) for v in body.outputs]
        if any(v.type.shape != domain for v in node.outputs):
            raise Unsupported("an epilogue output not at the library op's shape")
        self.in_types.append(lib.outputs[0].type)
        last = S.arg(len(self.sources), res.dtype)
        memo: dict = {}
        self.exprs = [_substitute(e, res, last, memo) for e in exprs]
        self.out_types = [v.type for v in node.outputs]

    @classmethod
    def identity(cls, out_type) -> _Epilogue:
        """Copies the library result (used to transpose a blocked gemm's result)."""
        self = cls.__new__(cls)
        self.sources, self.in_types, self.out_types = [], [out_type], [out_type]
        self.exprs = [S.arg(0, out_type.dtype)]
        return self

    def spec(self, name: str) -> codegen.KernelSpec:
        return codegen.KernelSpec(name, self.in_types, self.out_types, self.exprs)


def _substitute(e: S.Expr, old: S.Expr, new: S.Expr, memo: dict) -> S.Expr:
    if e is old:
        return new
    if id(e) not in memo:
        memo[id(e)] = S.Expr(e.fn, tuple(_substitute(a, old, new, memo) for a in e.args),
                             e.value, e.dtype) if e.args else e
    return memo[id(e)]


def _broadcast_strides(shape: tuple, domain: tuple) -> tuple[int, ...]:
    """Element strides of a C-contiguous array of ``shape`` read at ``domain``'s indices
    (numpy broadcasting: 0 on missing and unit axes)."""
    pad = (1,) * (len(domain) - len(shape)) + tuple(shape)
    out, step = [], 1
    for d in reversed(pad):
        out.append(0 if d == 1 else step)
        step *= d
    return tuple(reversed(out))


def _c_strides(shape: tuple) -> tuple[int, ...]:
    return tuple(math.prod(shape[k + 1:]) for k in range(len(shape)))


# -- IR helpers ---------------------------------------------------------------------------

class _Fn:
    """A void function of pointer (and trailing i64) arguments under construction, with
    the loop and memory helpers the kernels are written in."""

    def __init__(self, module: ir.Module, name: str, n_ptrs: int, real: str,
                 n_ints: int = 0):
        ty = ir.FunctionType(ir.VoidType(), [PTR] * n_ptrs + [I64] * n_ints)
        self.fn = ir.Function(module, ty, name=name)
        for a in self.fn.args[:n_ptrs]:
            a.add_attribute("noalias")
            a.add_attribute("captures(none)")
        self.entry = self.fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)
        self.dtype, self.real = real, _MEM[real]
        self.args = list(self.fn.args)

    def i(self, v) -> ir.Value:
        return ir.Constant(I64, int(v)) if isinstance(v, int) else v

    def f(self, v: float) -> ir.Constant:
        return ir.Constant(self.real, float(v))

    def add(self, *vals) -> ir.Value:
        out = self.i(vals[0])
        for v in vals[1:]:
            out = self.b.add(out, self.i(v))
        return out

    def mul(self, a, k) -> ir.Value:
        return self.b.mul(self.i(a), self.i(k))

    def smin(self, a, c) -> ir.Value:
        a, c = self.i(a), self.i(c)
        return self.b.select(self.b.icmp_signed("<", a, c), a, c)

    def smax(self, a, c) -> ir.Value:
        a, c = self.i(a), self.i(c)
        return self.b.select(self.b.icmp_signed(">", a, c), a, c)

    def at(self, base, off) -> ir.Value:
        return self.b.gep(base, [self.i(off)], inbounds=True, source_etype=self.real)

    def load(self, base, off) -> ir.Value:
        return self.b.load(self.at(base, off), typ=self.real)

    def store(self, v, base, off) -> None:
        self.b.store(v, self.at(base, off))

    def loop(self, n, body) -> None:
        """for k in range(n): body(k)"""
        if isinstance(n, int) and n <= 0:
            return
        codegen._loop(self.b, self.i(n), body)

    def range(self, lo, hi, body) -> None:
        """for k in range(lo, hi): body(k)"""
        lo = self.i(lo)
        codegen._loop(self.b, self.b.sub(self.i(hi), lo), lambda k: body(self.b.add(k, lo)))

    def fill(self, base, off, n, value) -> None:
        off = self.i(off)
        self.loop(n, lambda k: self.store(value, base, self.b.add(off, k)))

    def var(self, init) -> ir.Value:
        """A stack slot (promoted to a register by mem2reg)."""
        with self.b.goto_block(self.entry):
            self.b.position_at_start(self.entry)
            slot = self.b.alloca(init.type)
        self.b.store(init, slot)
        return slot

    def taps(self, k, stride: int, dilation: int, pad: int, size: int, out: int):
        """The outputs ``o`` in [lo, hi) whose kernel tap ``k`` reads inside the input:
        0 <= o*stride + k*dilation - pad < size."""
        b = self.b
        a = self.add(pad, b.neg(self.mul(k, dilation)))  # pad - k*d: o*s >= a
        lo = b.select(b.icmp_signed("<=", a, self.i(0)), self.i(0),
                      b.sdiv(self.add(a, stride - 1), self.i(stride)))
        e = self.add(a, size - 1)  # o*s <= size - 1 + a
        hi = b.select(b.icmp_signed("<", e, self.i(0)), self.i(0),
                      self.add(b.sdiv(e, self.i(stride)), 1))
        lo = self.smin(lo, out)
        return lo, self.smax(self.smin(hi, out), lo)


def _gemm_symbol(mb: codegen.ModuleBuilder, dtype: str) -> tuple[ir.Function, ir.Type]:
    """The BLAS gemm declared in the module (the symbol `library_codegen` registers with
    LLVM's dynamic linker) and its integer type."""
    library_codegen.blas()
    name, index = library_codegen.SYMBOLS[dtype]
    idx = I64 if index == "i64" else I32
    real = _MEM[dtype]
    decl = mb.declare(name, ir.VoidType(), [I32, I32, I32, idx, idx, idx, real, PTR, idx,
                                            PTR, idx, real, PTR, idx])
    return decl, idx


class _Gemm:
    """Calls the module's BLAS gemm (row-major) from a `_Fn`."""

    def __init__(self, f: _Fn, mb: codegen.ModuleBuilder):
        self.f = f
        self.fn, self.idx = _gemm_symbol(mb, f.dtype)

    def __call__(self, ta, tb, m, n, k, a, lda, b_, ldb, beta, c, ldc) -> None:
        f = self.f

        def ix(v):
            v = f.i(v)
            return v if self.idx is I64 else f.b.trunc(v, I32)
        i32 = [ir.Constant(I32, v) for v in (_ROW, ta, tb)]
        beta = f.f(beta) if isinstance(beta, float) else beta
        f.b.call(self.fn, i32 + [ix(m), ix(n), ix(k), f.f(1.0), a, ix(lda), b_, ix(ldb),
                                 beta, c, ix(ldc)])


# -- geometry -----------------------------------------------------------------------------

class _Geo:
    """A window op's sizes: images (N, C, H, W), kernel (kh, kw), outputs (O, Ho, Wo),
    groups, stride/padding/dilation pairs."""

    def __init__(self, lib: Node):
        a = lib.attrs
        op = lib.op.library
        self.stride, self.pad = a["stride"], a["padding"]
        self.dil, self.groups = a.get("dilation", (1, 1)), a.get("groups", 1)
        if op in ("conv2d", "conv2d_weight_grad", "max_pool2d", "avg_pool2d",
                  "max_pool2d_grad"):
            x = lib.inputs[0].type.shape
        else:  # the input size is an attribute
            g = lib.inputs[0].type.shape
            x = g[:1] + ((lib.inputs[1].type.shape[1] * self.groups,) if op == _GEMM[1]
                         else g[1:2]) + tuple(a["input_size"])
        self.N, self.C, self.H, self.W = x
        if op in _GEMM:
            w = lib.outputs[0].type.shape if op == _GEMM[2] else lib.inputs[1].type.shape
            self.O, _, self.kh, self.kw = w
            out = lib.inputs[1 if op == _GEMM[2] else 0].type.shape if op != "conv2d" \
                else lib.outputs[0].type.shape
        else:
            self.O = self.C
            self.kh, self.kw = a["kernel_size"]
            out = lib.inputs[-1].type.shape if op.endswith("_grad") else \
                lib.outputs[0].type.shape
        self.Ho, self.Wo = out[2:]
        self.L = self.Ho * self.Wo
        self.Cg, self.Og = self.C // self.groups, self.O // self.groups
        self.Kg = self.Cg * self.kh * self.kw
        self.pointwise = (self.kh, self.kw, self.stride, self.pad) == (1, 1, (1, 1), (0, 0))

    def key(self) -> tuple:
        return (self.N, self.C, self.H, self.W, self.O, self.kh, self.kw, self.Ho, self.Wo,
                self.stride, self.pad, self.dil, self.groups)


def _im2col(f: _Fn, geo: _Geo, x, cols, col_off, pitch: int) -> None:
    """cols[(c*kh + i)*kw + j, col_off + oh*Wo + ow] = x[c, ih, iw] (0 outside), for one
    (C, H, W) image ``x``; rows of ``pitch`` elements."""
    (s0, s1), (p0, p1), (d0, d1) = geo.stride, geo.pad, geo.dil
    Wo, Ho = geo.Wo, geo.Ho
    zero = f.f(0.0)

    def tap_j(c, i, ohlo, ohhi, j):
        owlo, owhi = f.taps(j, s1, d1, p1, geo.W, Wo)
        row = f.add(f.mul(f.add(f.mul(f.add(f.mul(c, geo.kh), i), geo.kw), j), pitch),
                    col_off)
        f.fill(cols, row, f.mul(ohlo, Wo), zero)
        f.fill(cols, f.add(row, f.mul(ohhi, Wo)), f.mul(f.b.sub(f.i(Ho), ohhi), Wo), zero)
        shift = f.add(f.mul(j, d1), -p1)

        def out_row(oh):
            ih = f.add(f.mul(oh, s0), f.mul(i, d0), -p0)
            dst = f.add(row, f.mul(oh, Wo))
            src = f.add(f.mul(f.add(f.mul(c, geo.H), ih), geo.W), shift)
            f.fill(cols, dst, owlo, zero)
            f.range(owlo, owhi, lambda ow: f.store(f.load(x, f.add(src, f.mul(ow, s1))),
                                                   cols, f.add(dst, ow)))
            f.fill(cols, f.add(dst, owhi), f.b.sub(f.i(Wo), owhi), zero)
        f.range(ohlo, ohhi, out_row)

    def tap_i(c, i):
        ohlo, ohhi = f.taps(i, s0, d0, p0, geo.H, Ho)
        f.loop(geo.kw, lambda j: tap_j(c, i, ohlo, ohhi, j))
    f.loop(geo.C, lambda c: f.loop(geo.kh, lambda i: tap_i(c, i)))


def _col2im(f: _Fn, geo: _Geo, cols, x) -> None:
    """The adjoint of `_im2col` (pitch L, offset 0): x[c, ih, iw] += cols[...]; the taps
    are added in the reference's order (row-major over the kernel)."""
    (s0, s1), (p0, p1), (d0, d1) = geo.stride, geo.pad, geo.dil
    Wo = geo.Wo

    def tap_j(c, i, ohlo, ohhi, j):
        owlo, owhi = f.taps(j, s1, d1, p1, geo.W, Wo)
        row = f.mul(f.add(f.mul(f.add(f.mul(c, geo.kh), i), geo.kw), j), geo.L)
        shift = f.add(f.mul(j, d1), -p1)

        def out_row(oh):
            ih = f.add(f.mul(oh, s0), f.mul(i, d0), -p0)
            src = f.add(row, f.mul(oh, Wo))
            dst = f.add(f.mul(f.add(f.mul(c, geo.H), ih), geo.W), shift)

            def add(ow):
                k = f.add(dst, f.mul(ow, s1))
                f.store(f.b.fadd(f.load(x, k), f.load(cols, f.add(src, ow))), x, k)
            f.range(owlo, owhi, add)
        f.range(ohlo, ohhi, out_row)

    def tap_i(c, i):
        ohlo, ohhi = f.taps(i, s0, d0, p0, geo.H, geo.Ho)
        f.loop(geo.kw, lambda j: tap_j(c, i, ohlo, ohhi, j))
    f.loop(geo.C, lambda c: f.loop(geo.kh, lambda i: tap_i(c, i)))


# -- pooling ------------------------------------------------------------------------------

def _maximum(f: _Fn, a, c) -> ir.Value:
    suffix = "f32" if f.dtype == "float32" else "f64"
    fn = f.fn.module.globals.get(f"llvm.maximum.{suffix}") or ir.Function(
        f.fn.module, ir.FunctionType(f.real, [f.real, f.real]), name=f"llvm.maximum.{suffix}")
    return f.b.call(fn, [a, c])


def _divisor(f: _Fn, geo: _Geo, include_pad: bool, oh, ow) -> ir.Value:
    """avg_pool's divisor at output (oh, ow): kh*kw, or the window's in-image taps."""
    if include_pad or geo.pad == (0, 0):
        return f.f(geo.kh * geo.kw)

    def count(o, s, p, k, size):
        start = f.add(f.mul(o, s), -p)
        return f.b.sub(f.smin(k, f.b.sub(f.i(size), start)), f.smax(0, f.b.neg(start)))
    n = f.b.mul(count(oh, geo.stride[0], geo.pad[0], geo.kh, geo.H),
                count(ow, geo.stride[1], geo.pad[1], geo.kw, geo.W))
    return f.b.sitofp(n, f.real)


def _pool(f: _Fn, geo: _Geo, x, out, mode: str, include_pad: bool) -> None:
    """One image of max_pool2d/avg_pool2d: per output row, a pass per kernel tap over the
    outputs whose tap is inside the image."""
    (s0, s1), (p0, p1) = geo.stride, geo.pad
    Wo = geo.Wo
    init = f.f(-math.inf if mode == "max" else 0.0)

    def row(c, oh):
        r = f.mul(f.add(f.mul(c, geo.Ho), oh), Wo)
        f.fill(out, r, Wo, init)
        ilo, ihi = f.taps(oh, 1, s0, p0, geo.H, geo.kh)  # taps i of output oh: symmetric

        def tap_i(i):
            src = f.mul(f.add(f.mul(c, geo.H), f.add(f.mul(oh, s0), i), -p0), geo.W)

            def tap_j(j):
                owlo, owhi = f.taps(j, s1, 1, p1, geo.W, Wo)

                def step(ow):
                    v = f.load(x, f.add(src, f.mul(ow, s1), j, -p1))
                    acc = f.load(out, f.add(r, ow))
                    acc = _maximum(f, acc, v) if mode == "max" else f.b.fadd(acc, v)
                    f.store(acc, out, f.add(r, ow))
                f.range(owlo, owhi, step)
            for j in range(geo.kw):
                tap_j(j)
        f.range(ilo, ihi, tap_i)
        if mode == "avg":
            f.loop(Wo, lambda ow: f.store(
                f.b.fdiv(f.load(out, f.add(r, ow)), _divisor(f, geo, include_pad, oh, ow)),
                out, f.add(r, ow)))
    f.loop(geo.C, lambda c: f.loop(geo.Ho, lambda oh: row(c, oh)))


def _window(f: _Fn, geo: _Geo, oh, ow, visit) -> None:
    """visit(i, j, input offset in the plane, inside) for every tap of output (oh, ow)
    in row-major order, padding included (``inside`` false there, offset clamped to 0)."""
    (s0, s1), (p0, p1) = geo.stride, geo.pad
    b = f.b

    def tap(i, j):
        ih, iw = f.add(f.mul(oh, s0), i, -p0), f.add(f.mul(ow, s1), j, -p1)
        inside = b.and_(b.icmp_unsigned("<", ih, f.i(geo.H)),
                        b.icmp_unsigned("<", iw, f.i(geo.W)))
        off = b.select(inside, f.add(f.mul(ih, geo.W), iw), f.i(0))
        visit(i, j, off, inside)
    f.loop(geo.kh, lambda i: f.loop(geo.kw, lambda j: tap(i, j)))


def _pool_grad(f: _Fn, geo: _Geo, x, g, dx, mode: str, include_pad: bool) -> None:
    """One image of max_pool2d_grad / avg_pool2d_grad into the zeroed ``dx``."""
    b = f.b
    plane, oplane = geo.H * geo.W, geo.L

    def output(c, oh, ow):
        xc, dc = f.mul(c, plane), f.mul(c, plane)
        gv = f.load(g, f.add(f.mul(c, oplane), f.mul(oh, geo.Wo), ow))
        if mode == "max":
            best, at = f.var(f.f(-math.inf)), f.var(f.i(-1))

            def scan(i, j, off, inside):
                v = b.select(inside, f.load(x, f.add(xc, off)), f.f(-math.inf))
                cur = b.load(best)
                nan_v, nan_cur = b.fcmp_unordered("uno", v, v), b.fcmp_unordered("uno", cur,
                                                                                   cur)
                take = b.or_(b.icmp_signed("<", b.load(at), f.i(0)),
                             b.and_(b.not_(nan_cur), b.or_(b.fcmp_ordered(">", v, cur), nan_v)))
                b.store(b.select(take, v, cur), best)
                b.store(b.select(take, f.add(f.mul(i, geo.kw), j), b.load(at)), at)
            _window(f, geo, oh, ow, scan)
            zero_g = b.fmul(gv, f.f(0.0))
            hit = b.load(at)

            def give(i, j, off, inside):
                with b.if_then(inside):
                    k = f.add(dc, off)
                    v = b.select(b.icmp_signed("==", f.add(f.mul(i, geo.kw), j), hit), gv,
                                 zero_g)
                    f.store(b.fadd(f.load(dx, k), v), dx, k)
        else:
            v = b.fdiv(gv, _divisor(f, geo, include_pad, oh, ow))

            def give(i, j, off, inside):
                with b.if_then(inside):
                    k = f.add(dc, off)
                    f.store(b.fadd(f.load(dx, k), v), dx, k)
        _window(f, geo, oh, ow, give)
    f.loop(geo.C, lambda c: f.loop(geo.Ho, lambda oh: f.loop(
        geo.Wo, lambda ow: output(c, oh, ow))))


# -- the kernel ---------------------------------------------------------------------------

class ConvKernel:
    """A conv/pool node or fused kernel: one native function over the batch."""

    def __init__(self, node: Node, name: str, builder: codegen.ModuleBuilder, make_kernel):
        """``make_kernel`` (the runtime's elementwise kernel class) is not needed: the
        epilogue is rendered inside the native function."""
        lib = _library(node)
        if lib is None or lib.op.library not in _OPS:
            raise Unsupported(f"{node.op.name} is not a convolution or pool")
        self.node, self.op = node, lib.op.library
        out = lib.outputs[0].type
        self.dtype = out.dtype
        if self.dtype not in ("float32", "float64") or \
                any(v.dtype != self.dtype for v in lib.inputs):
            raise Unsupported(f"{self.op} of {[v.dtype for v in lib.inputs]}")
        if self.op in _GEMM and library_codegen.blas() is None:
            raise Unsupported("no BLAS gemm symbol found in numpy's libraries")
        geo = self.geo = _Geo(lib)
        if 0 in (geo.C, geo.O, geo.H, geo.W) or 0 in out.shape[1:]:
            raise Unsupported("an empty channel or spatial dim")
        if node.body is None:
            self.operands, epi = list(node.inputs), None
        else:
            epi = _Epilogue(node, lib)
            self.operands = epi.operands
        self.attrs = lib.attrs
        self.np_dtype = dt.to_numpy(self.dtype)
        self.block = self._block()
        direct = epi is None and (self.op != "conv2d" or self.block == 1)
        if epi is None and not direct:
            epi = _Epilogue.identity(out)
        self.epi = epi
        self.sources = epi.sources if epi is not None else []
        self.src_dtypes = [dt.to_numpy(t.dtype) for t in (epi.in_types[:-1] if epi else [])]
        self.out_np = [dt.to_numpy(v.dtype) for v in node.outputs]
        self.out_shapes = [v.type.shape for v in node.outputs]
        self.cols, self.tmp = self._scratch_sizes(direct)
        key = ("conv", self.op, self.dtype, geo.key(), tuple(sorted(
            (k, v) for k, v in lib.attrs.items())), self.block, direct,
            None if epi is None else (codegen._code_key(epi.spec(name)),
                                      tuple(t.shape for t in epi.in_types)))
        self.name = builder.functions.get(key)
        if self.name is None:
            self.name = builder.functions[key] = self._emit(builder, name, out.shape)
        self.n_ptrs = len(self.operands) + len(self.sources) + len(node.outputs) + 2
        self._local = threading.local()
        self.fn = None

    def _block(self) -> int:
        """Images per gemm of a forward convolution."""
        geo = self.geo
        if self.op != "conv2d" or geo.L >= COLS_PER_GEMM or geo.N <= 1:
            return 1
        per_image = geo.C * geo.kh * geo.kw * geo.L * np.dtype(self.np_dtype).itemsize
        return max(1, min(geo.N, -(-COLS_PER_GEMM // geo.L), COLS_BYTES // per_image))

    def _scratch_sizes(self, direct: bool) -> tuple[int, int]:
        """Elements of the im2col and result scratch buffers."""
        geo, op = self.geo, self.op
        cols = 0
        if op in _GEMM and not (geo.pointwise and (op != "conv2d" or self.block == 1)):
            cols = geo.C * geo.kh * geo.kw * geo.L * self.block
        if op == "conv2d_input_grad" and geo.pointwise:
            cols = 0
        tmp = 0 if direct else math.prod(self.node.outputs[0].type.shape[1:]) * self.block
        if op == "conv2d_weight_grad" and not direct:
            tmp = math.prod(self.node.outputs[0].type.shape)
        return cols, tmp

    # -- code -------------------------------------------------------------------------------
    def _emit(self, mb: codegen.ModuleBuilder, name: str, domain: tuple) -> str:
        n_ops, n_src = len(self.operands), len(self.sources)
        n_out = len(self.node.outputs)
        epi_name = None
        if self.epi is not None:
            epi_name = self._emit_epilogue(mb, name + "_epilogue", domain)
        f = _Fn(mb.module, name + "_" + self.op, n_ops + n_src + n_out + 2, self.dtype)
        a = f.args
        ops, srcs, outs = a[:n_ops], a[n_ops:n_ops + n_src], a[n_ops + n_src:-2]
        cols, tmp = a[-2], a[-1]
        epi_fn = mb.module.globals[epi_name] if epi_name else None

        def epilogue(n0, count, res):
            f.b.call(epi_fn, list(srcs) + [res] + list(outs) + [f.i(n0), f.i(count)])
        emit = getattr(self, "_emit_" + self.op.replace("2d", ""))
        emit(f, mb, ops, outs[0], cols, tmp, epilogue if epi_fn else None)
        f.b.ret_void()
        return f.fn.name

    def _emit_conv(self, f, mb, ops, out, cols, tmp, epilogue):
        geo, B = self.geo, self.block
        x, w = ops
        gemm = _Gemm(f, mb)
        pitch, image = B * geo.L, geo.C * geo.H * geo.W
        in_place = geo.pointwise and B == 1

        def block(blk):
            n0 = f.mul(blk, B)
            count = f.smin(B, f.b.sub(f.i(geo.N), n0))
            if in_place:
                src, ld = f.at(x, f.mul(n0, image)), geo.L
            else:
                f.loop(count, lambda i: _im2col(f, geo, f.at(x, f.mul(f.add(n0, i), image)),
                                                cols, f.mul(i, geo.L), pitch))
                src, ld = cols, pitch
            dst, ldc = (tmp, pitch) if epilogue else (f.at(out, f.mul(n0, geo.O * geo.L)),
                                                      geo.L)
            f.loop(geo.groups, lambda g: gemm(
                _NO_T, _NO_T, geo.Og, f.mul(count, geo.L), geo.Kg,
                f.at(w, f.mul(g, geo.Og * geo.Kg)), geo.Kg, f.at(src, f.mul(g, geo.Kg * ld)),
                ld, 0.0, f.at(dst, f.mul(g, geo.Og * ldc)), ldc))
            if epilogue:
                epilogue(n0, count, tmp)
        f.loop(-(-geo.N // B), block)

    def _emit_conv_input_grad(self, f, mb, ops, out, cols, tmp, epilogue):
        geo = self.geo
        g_, w = ops
        gemm = _Gemm(f, mb)
        image = geo.C * geo.H * geo.W

        def one(n):
            dst = tmp if epilogue else f.at(out, f.mul(n, image))
            gn = f.at(g_, f.mul(n, geo.O * geo.L))
            res, ld = (dst, geo.L) if geo.pointwise else (cols, geo.L)
            f.loop(geo.groups, lambda g: gemm(
                _T, _NO_T, geo.Kg, geo.L, geo.Og, f.at(w, f.mul(g, geo.Og * geo.Kg)), geo.Kg,
                f.at(gn, f.mul(g, geo.Og * geo.L)), geo.L, 0.0,
                f.at(res, f.mul(g, geo.Kg * ld)), ld))
            if not geo.pointwise:
                f.fill(dst, 0, image, f.f(0.0))
                _col2im(f, geo, cols, dst)
            if epilogue:
                epilogue(n, 1, tmp)
        f.loop(geo.N, one)

    def _emit_conv_weight_grad(self, f, mb, ops, out, cols, tmp, epilogue):
        geo = self.geo
        x, g_ = ops
        gemm = _Gemm(f, mb)
        dst = tmp if epilogue else out
        image = geo.C * geo.H * geo.W
        if geo.N == 0:
            f.fill(dst, 0, geo.O * geo.Kg, f.f(0.0))

        def one(n):
            xn = f.at(x, f.mul(n, image))
            if geo.pointwise:
                src = xn
            else:
                _im2col(f, geo, xn, cols, 0, geo.L)
                src = cols
            gn = f.at(g_, f.mul(n, geo.O * geo.L))
            beta = f.b.select(f.b.icmp_signed("==", n, f.i(0)), f.f(0.0), f.f(1.0))
            f.loop(geo.groups, lambda g: gemm(
                _NO_T, _T, geo.Og, geo.Kg, geo.L, f.at(gn, f.mul(g, geo.Og * geo.L)), geo.L,
                f.at(src, f.mul(g, geo.Kg * geo.L)), geo.L, beta,
                f.at(dst, f.mul(g, geo.Og * geo.Kg)), geo.Kg))
        f.loop(geo.N, one)
        if epilogue:
            epilogue(0, geo.O, tmp)

    def _pool_driver(self, f, out, tmp, epilogue, image_out, body):
        def one(n):
            dst = tmp if epilogue else f.at(out, f.mul(n, image_out))
            body(n, dst)
            if epilogue:
                epilogue(n, 1, tmp)
        f.loop(self.geo.N, one)

    def _emit_max_pool(self, f, mb, ops, out, cols, tmp, epilogue, mode="max"):
        geo = self.geo
        include = self.attrs.get("count_include_pad", True)
        self._pool_driver(f, out, tmp, epilogue, geo.C * geo.L, lambda n, dst: _pool(
            f, geo, f.at(ops[0], f.mul(n, geo.C * geo.H * geo.W)), dst, mode, include))

    def _emit_avg_pool(self, f, mb, ops, out, cols, tmp, epilogue):
        self._emit_max_pool(f, mb, ops, out, cols, tmp, epilogue, "avg")

    def _emit_max_pool_grad(self, f, mb, ops, out, cols, tmp, epilogue, mode="max"):
        geo = self.geo
        image, oimage = geo.C * geo.H * geo.W, geo.C * geo.L
        include = self.attrs.get("count_include_pad", True)

        def body(n, dst):
            f.fill(dst, 0, image, f.f(0.0))
            x = f.at(ops[0], f.mul(n, image)) if mode == "max" else None
            _pool_grad(f, geo, x, f.at(ops[-1], f.mul(n, oimage)), dst, mode, include)
        self._pool_driver(f, out, tmp, epilogue, image, body)

    def _emit_avg_pool_grad(self, f, mb, ops, out, cols, tmp, epilogue):
        self._emit_max_pool_grad(f, mb, ops, out, cols, tmp, epilogue, "avg")

    def _res_strides(self, domain: tuple) -> tuple[int, ...]:
        """Element strides of the library result in the scratch ``tmp``, per domain axis
        (axis 0 counted from the block's first image)."""
        if self.op == "conv2d" and self.block > 1:
            L = self.geo.L
            return (L, self.block * L, self.geo.Wo, 1)
        return _c_strides(domain)

    def _emit_epilogue(self, mb: codegen.ModuleBuilder, name: str, domain: tuple) -> str:
        """``name(srcs..., res, outs..., n0, count)``: the epilogue on images
        [n0, n0 + count) of the domain, reading the result at `_res_strides`."""
        epi = self.epi
        spec = epi.spec(name)
        n_src, n_out = len(epi.sources), len(epi.out_types)
        f = _Fn(mb.module, name, n_src + 1 + n_out, self.dtype, n_ints=2)
        f.fn.linkage = "internal"
        srcs, res, outs = f.args[:n_src], f.args[n_src], f.args[n_src + 1:n_src + 1 + n_out]
        n0, count = f.args[-2:]
        strides = [_broadcast_strides(t.shape, domain) for t in epi.in_types[:-1]]
        strides.append(self._res_strides(domain))
        out_st = _c_strides(domain)
        d = domain
        merge = all(s[2] == s[3] * d[3] for s in strides)
        b = f.b

        def element(i, a1, a2, a3):
            n = b.add(n0, i)
            offs = [f.add(f.mul(n, s[0]), f.mul(a1, s[1]), f.mul(a2, s[2]), f.mul(a3, s[3]))
                    for s in strides[:-1]]
            r = strides[-1]
            offs.append(f.add(f.mul(i, r[0]), f.mul(a1, r[1]), f.mul(a2, r[2]),
                              f.mul(a3, r[3])))
            flat = f.add(f.mul(n, out_st[0]), f.mul(a1, out_st[1]), f.mul(a2, out_st[2]), a3)
            em = codegen._Emitter(b, mb, spec, list(srcs) + [res], offs, flat)
            for ptr, e, t in zip(outs, spec.exprs, spec.out_types):
                v = em.convert(em.value(e), e.dtype, t.dtype)
                if t.dtype == "bool":
                    v = b.zext(v, codegen.I8)
                b.store(v, b.gep(ptr, [flat], inbounds=True, source_etype=_MEM[t.dtype]))

        def plane(i, a1):
            if merge:
                f.loop(d[2] * d[3], lambda k: element(i, a1, f.i(0), k))
            else:
                f.loop(d[2], lambda a2: f.loop(d[3], lambda a3: element(i, a1, a2, a3)))
        f.loop(count, lambda i: f.loop(d[1], lambda a1: plane(i, a1)))
        b.ret_void()
        return name

    # -- running ----------------------------------------------------------------------------
    def bind(self, module) -> ConvKernel:
        self.fn = module.function(self.name, [ctypes.c_void_p] * self.n_ptrs)
        return self

    def calls(self, at) -> list | None:
        """The kernel as one native `program.Call` over static locations ``at`` (scratch
        buffers in fixed slots), or None when an operand is not C-contiguous native memory
        (then `run` copies it)."""
        from .program import Ptr
        args: list = []
        for src, d in [(v, self.np_dtype) for v in self.operands] + \
                list(zip(self.sources, self.src_dtypes)):
            if isinstance(src, np.ndarray):
                args.append(Ptr(at.new_slot(np.ascontiguousarray(src, d)), 0))
                continue
            loc = at.loc[src.name]
            a = loc.array
            if not (a.dtype == d and a.flags.c_contiguous and a.flags.aligned):
                return None
            args.append(loc.at(0))
        for v in self.node.outputs:
            loc = at.loc[v.name]
            if not loc.contiguous:
                return None
            args.append(loc.at(0))
        for n in (self.cols, self.tmp):
            args.append(Ptr(at.new_slot(np.empty(max(1, n), self.np_dtype)), 0))
        return [Call(self.name, tuple(args))]

    def _scratch(self) -> tuple[np.ndarray, np.ndarray]:
        s = getattr(self._local, "buffers", None)
        if s is None:
            s = self._local.buffers = (np.empty(max(1, self.cols), self.np_dtype),
                                       np.empty(max(1, self.tmp), self.np_dtype))
        return s

    def run(self, env: dict) -> None:
        """From Python, on arrays (copied to C-contiguous native ones if they are not)."""
        ins = [np.ascontiguousarray(v if isinstance(v, np.ndarray) else env[id(v)], d)
               for v, d in [(v, self.np_dtype) for v in self.operands] +
               list(zip(self.sources, self.src_dtypes))]
        outs = [np.empty(s, d) for s, d in zip(self.out_shapes, self.out_np)]
        cols, tmp = self._scratch()
        self.fn(*[a.ctypes.data for a in ins], *[o.ctypes.data for o in outs],
                cols.ctypes.data, tmp.ctypes.data)
        for v, o in zip(self.node.outputs, outs):
            env[id(v)] = o
