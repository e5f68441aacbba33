"""Convolution and pooling library nodes for the LLVM backend: native kernels and BLAS.

A conv/pool node, or a fused ``library`` kernel whose library op is one of them, compiles
to ONE native function ``(operands..., epilogue inputs..., outputs..., scratch, scratch,
images)`` that walks the batch image by image (or block by block), so intermediates stay
in cache and the epilogue (bias, activation, a gradient mask, an SGD update: the body's
scalar expressions, rendered by `codegen._Emitter`) runs on each image as it is produced,
never as a separate pass over the output:

- Direct kernel (``conv2d`` and ``conv2d_input_grad`` with short dot products, see
  `DIRECT_MAX_K`; stride 1, or a forward convolution with few input channels per group,
  see `DIRECT_STRIDED_MAX_CIN`: depthwise layers, RGB stems): the image is copied
  zero-padded to (C, Hp, Wp), for stride s split into s0*s1 phase planes (a stride-s
  correlation is a stride-1 one over them), and outputs are computed on the (Ho, Wq) grid
  of a plane, where the taps of 16 neighbouring grid points are 16 neighbouring inputs:
  one unmasked vector load per tap, FMAs into vector accumulators for up to 16 output
  channels (`_direct`). The forward convolution runs per item, an (image, block of
  groups) pair (`ITEM_OUTPUTS`), so threads share the channels of one image and a
  depthwise channel's input and result stay in cache. The input gradient is the same
  kernel on g with the flipped, transposed weight. ``conv2d_weight_grad`` of stride-1
  layers accumulates output-channel x tap register blocks over the grid
  (`_direct_weight_grad`).
- Otherwise im2col + BLAS: im2col of a block of images (padding, stride, dilation as index
  ranges per kernel tap, so inner loops are plain strided copies), one gemm per group,
  W_g @ cols_g, already NCHW for one image a gemm (small images are blocked, see
  `COLS_PER_GEMM`, and the epilogue reads the block transposed); the input gradient is
  W_g^T @ g_n then col2im; the weight gradient dW_g += g_n,g @ cols_g^T per image. 1x1
  stride-1 layers skip im2col. BLAS is numpy's OpenBLAS, called from the generated code
  through the symbol `library_codegen` registers.
- Pools and their gradients: whole windows per output, taps unrolled, so the strided
  accesses of a row of windows vectorize as interleaved groups (`_windows`); max with
  ``llvm.maximum`` (NaN propagates, padding -inf), sums in the window's row-major order
  (the reference's), the max gradient replaying numpy's argmax (first NaN or first maximum,
  padding taps -inf; the others get 0 * g as the reference's ``hit * g``).

Results match the reference backend within float rounding (the direct kernel sums each
dot product in im2col order with FMAs, as OpenBLAS does). Only float32/float64 nodes with
non-empty channel and spatial dims are native; anything else raises `kernel_specs.Unsupported`
and the runtime interprets the node. `ConvKernel.calls` gives the native program its call
(`advances` says how to split it over images across threads); `run` serves the Python
path, with per-thread scratch.
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
from .. import kernel_specs
from . import codegen, library_codegen
from .codegen import _MEM, I32, I64, PTR, Unsupported
from .program import Call

#: A forward convolution through BLAS multiplies whole images per gemm, as many as fit
#: in this many columns (images x output pixels): ResNet's 7x7 maps (49 columns an image)
#: run at 0.67x numpy.matmul's speed one image per gemm and 0.87x eight at a time, while
#: two 28x28 images per gemm (their im2col past L2) were slower than one.
COLS_PER_GEMM = 1024
#: ... and whose im2col matrix takes at most this many bytes.
COLS_BYTES = 8 << 20
#: Stride-1 convolutions (and their input gradients) whose dot products are at most this
#: long (input channels per group x kh x kw) run as a direct vectorized kernel instead of
#: im2col + BLAS: small products leave BLAS's micro-kernels mostly idle (LeNet's first
#: layer multiplies 6 x 25 matrices: 4x faster direct) and im2col copies the input kh*kw
#: times. Measured single-threaded on ResNet/CIFAR shapes, direct wins up to 64 channels
#: x 3x3 and BLAS from 128 x 3x3 on.
DIRECT_MAX_K = 576
#: ... except 1x1 kernels with more than this many weights per group: there BLAS wins
#: (each tap of the direct kernel streams another input plane).
DIRECT_MAX_POINTWISE = 8192
#: Output channels a direct kernel keeps in vector registers at once, and vector
#: accumulators in all (the rest are neighbouring grid vectors, which share each weight
#: broadcast and keep the FMA pipes busy when there are few channels).
DIRECT_CHANNELS = 16
#: Strided forward convolutions run as the direct kernel (over the input split by stride
#: phase) when they have at most this many input channels per group: depthwise layers
#: (MobileNet's stride-2 3x3: 2-3 GFLOP/s as im2col + one tiny gemm per group) and RGB
#: stems; with more channels per group im2col + BLAS wins.
DIRECT_STRIDED_MAX_CIN = 3
#: A direct forward convolution is split into items of (image, block of groups), each
#: block the fewest groups with at least this many outputs: the threads share out the
#: channels of a single image, and a small block's input and result stay in L1/L2.
ITEM_OUTPUTS = 4096
DIRECT_ACCUMULATORS = 24
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
            e = kernel_specs.apply_scalar(n, [read(v) for v in n.inputs])
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

    def spec(self, name: str) -> kernel_specs.KernelSpec:
        return kernel_specs.KernelSpec(name, self.in_types, self.out_types, self.exprs)


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


# -- direct convolution -------------------------------------------------------------------

class _Direct:
    """A correlation as the direct kernel sees it: ``cin`` input channels of (H, W),
    ``cout`` outputs of (Ho, Wo), groups, padding, dilation, stride. The input of an image
    (or of a block of groups) is copied zero-padded and split by stride phase: padded
    element (r, c) goes to phase plane (r % s0, c % s1) of (Hq, Wq) = (ceil(Hp / s0),
    ceil(Wp / s1)) at (r // s0, c // s1), so that each kernel tap reads, for every output,
    one phase plane at a fixed offset (a stride-s correlation is a stride-1 one over the
    phase planes; stride 1: one plane, the padded image). Outputs are computed on the
    (Ho, Wq) grid of that plane's row pitch, so that the taps of VL consecutive grid points
    are VL consecutive inputs (one vector load, no masks): the Wq - Wo columns past each
    row are computed and dropped, and the result rows (pitch ``R``) are read back through
    the epilogue's strides."""

    def __init__(self, cin, h, w, cout, kh, kw, pad, dil, groups, out, dtype,
                 stride=(1, 1)):
        self.cin, self.H, self.W, self.cout, self.kh, self.kw = cin, h, w, cout, kh, kw
        self.pad, self.dil, self.groups, self.stride = pad, dil, groups, stride
        self.Ho, self.Wo = out
        self.cin_g, self.cout_g = cin // groups, cout // groups
        self.Hp, self.Wp = h + 2 * pad[0], w + 2 * pad[1]
        self.Hq, self.Wq = -(-self.Hp // stride[0]), -(-self.Wp // stride[1])
        self.phases = stride[0] * stride[1]
        self.plane = self.Hq * self.Wq
        self.VL = 16 if dtype == "float32" else 8
        grid = self.Ho * self.Wq
        self.nq = -(-grid // self.VL)
        self.R = self.nq * self.VL
        # the last vector of the last channel reads up to here (the slack past the planes
        # stays zero)
        last = max(self.tap(cin - 1 - (cin - 1) % self.cin_g + c, i, j)
                   for c in range(self.cin_g) for i in range(kh) for j in range(kw))
        self.padded = max(cin * self.phases * self.plane, last + self.R)
        self.ob = min(self.cout_g, DIRECT_CHANNELS)

    def tap(self, c, i, j) -> int:
        """The offset of input channel c's tap (i, j) for grid point 0."""
        (s0, s1), (d0, d1) = self.stride, self.dil
        ph = (c * s0 + i * d0 % s0) * s1 + j * d1 % s1
        return ph * self.plane + i * d0 // s0 * self.Wq + j * d1 // s1


def _intrinsic(f: _Fn, name: str, ret, args: list):
    """The module's declaration of LLVM intrinsic ``name``."""
    fn = f.fn.module.globals.get(name)
    if fn is None:
        fn = ir.Function(f.fn.module, ir.FunctionType(ret, args), name=name)
    return fn


def _pad_image(f: _Fn, d: _Direct, x, xp, zero_pad: bool = True) -> None:
    """xp = x zero-padded and split into (cin, s0, s1, Hq, Wq) phase planes (see `_Direct`;
    stride 1: (cin, Hp, Wp)); ``zero_pad=False``: the caller zeroed xp. The slack after
    the planes stays as it is."""
    (p0, p1), (s0, s1) = d.pad, d.stride
    zero = f.f(0.0)
    if (p0 or p1) and zero_pad:
        f.fill(xp, 0, d.cin * d.phases * d.plane, zero)
    cols = [(max(0, -(-(p1 - pc) // s1)), -(-(d.W + p1 - pc) // s1)) for pc in range(s1)]
    cols = [(lo, max(lo, hi)) for lo, hi in cols]   # phase pc: image column c'*s1 + pc - p1
    VL = d.VL
    lo_all, hi_all = max(lo for lo, _ in cols), min(hi for _, hi in cols)
    nv = (hi_all - lo_all) // VL if s1 > 1 else 0   # whole vectors of every phase at once
    wide = ir.VectorType(f.real, VL * s1)
    item = 4 if f.dtype == "float32" else 8

    def row(c, rq, pr):
        src = f.mul(f.add(f.mul(c, d.H), f.mul(rq, s0), pr - p0), d.W)
        dst = [f.add(f.mul(f.add(f.mul(c, d.phases), pr * s1 + pc), d.plane),
                     f.mul(rq, d.Wq)) for pc in range(s1)]

        def vector(k):   # s1*VL neighbouring inputs -> VL of each phase
            c0 = f.add(f.mul(k, VL), lo_all)
            v = f.b.load(f.at(x, f.add(src, f.mul(c0, s1), -p1)), typ=wide, align=item)
            for pc in range(s1):
                part = f.b.shuffle_vector(v, ir.Constant(wide, ir.Undefined), ir.Constant(
                    ir.VectorType(I32, VL), [pc + s1 * u for u in range(VL)]))
                f.b.store(part, f.at(xp, f.add(dst[pc], c0)), align=item)
        f.loop(nv, vector)
        for pc, (lo, hi) in enumerate(cols):
            def copy(k, pc=pc):
                f.store(f.load(x, f.add(src, f.mul(k, s1), pc - p1)), xp, f.add(dst[pc], k))
            if nv:
                f.range(lo, lo_all, copy)
                f.range(lo_all + nv * VL, hi, copy)
            else:
                f.range(lo, hi, copy)
    for pr in range(s0):   # padded rows r = r'*s0 + pr, image row r - p0
        rlo = max(0, -(-(p0 - pr) // s0))
        rhi = max(rlo, -(-(d.H + p0 - pr) // s0))
        if rhi > rlo:
            f.loop(d.cin, lambda c, rlo=rlo, rhi=rhi, pr=pr: f.range(
                rlo, rhi, lambda rq: row(c, rq, pr)))


def _tap_offset(f: _Fn, d: _Direct, c, i, j) -> ir.Value:
    """`_Direct.tap` of IR values (loop indices)."""
    (s0, s1), (d0, d1), b = d.stride, d.dil, f.b
    if (s0, s1) == (1, 1):
        return f.add(f.mul(c, d.plane), f.mul(i, d0 * d.Wq), f.mul(j, d1))
    ri, rj = f.mul(i, d0), f.mul(j, d1)
    ph = f.add(f.mul(f.add(f.mul(c, s0), b.urem(ri, f.i(s0))), s1), b.urem(rj, f.i(s1)))
    return f.add(f.mul(ph, d.plane), f.mul(b.udiv(ri, f.i(s0)), d.Wq), b.udiv(rj, f.i(s1)))


def _direct(f: _Fn, d: _Direct, xp, w, res) -> None:
    """res[o, q] = sum over (c, i, j) of w[o, c, i, j] * xp[q + `_Direct.tap` (c, i, j)] for
    every grid point q < R, with up to `DIRECT_ACCUMULATORS` vector accumulators (outputs
    x grid vectors) in registers."""
    b, VL = f.b, d.VL
    vt = ir.VectorType(f.real, VL)
    item = 4 if f.dtype == "float32" else 8
    fma = _intrinsic(f, f"llvm.fmuladd.v{VL}{'f32' if f.dtype == 'float32' else 'f64'}",
                     vt, [vt] * 3)
    taps = d.kh * d.kw
    splat_mask = ir.Constant(ir.VectorType(I32, VL), [0] * VL)
    undef = ir.Constant(vt, ir.Undefined)

    def splat(v):
        return b.shuffle_vector(b.insert_element(undef, v, ir.Constant(I32, 0)), undef,
                                splat_mask)

    def block(g, o0, size):
        def points(q0, qs):   # grid vectors q0 .. q0 + qs - 1
            accs = [[f.var(ir.Constant(vt, [0.0] * VL)) for _ in range(qs)]
                    for _ in range(size)]

            def tap(c, i, j):
                off = f.add(_tap_offset(f, d, f.add(f.mul(g, d.cin_g), c), i, j),
                            f.mul(q0, VL))
                xs = [b.load(f.at(xp, f.add(off, u * VL)), typ=vt, align=item)
                      for u in range(qs)]
                wk = f.add(f.mul(f.add(f.mul(o0, d.cin_g), c), taps), f.mul(i, d.kw), j)
                for k, row in enumerate(accs):
                    wv = splat(f.load(w, f.add(wk, k * d.cin_g * taps)))
                    for xv, acc in zip(xs, row):
                        b.store(b.call(fma, [wv, xv, b.load(acc)]), acc)
            f.loop(d.cin_g, lambda c: f.loop(d.kh, lambda i: f.loop(
                d.kw, lambda j: tap(c, i, j))))
            for k, row in enumerate(accs):
                for u, acc in enumerate(row):
                    at = f.add(f.mul(f.add(o0, k), d.R), f.mul(f.add(q0, u), VL))
                    b.store(b.load(acc), f.at(res, at), align=item)
        qb = max(1, min(d.nq, DIRECT_ACCUMULATORS // size))
        full, rest = divmod(d.nq, qb)
        f.loop(full, lambda k: points(f.mul(k, qb), qb))
        if rest:
            points(full * qb, rest)

    def group(g):
        full, rest = divmod(d.cout_g, d.ob)
        base = f.mul(g, d.cout_g)
        f.loop(full, lambda k: block(g, f.add(base, f.mul(k, d.ob)), d.ob))
        if rest:
            block(g, f.add(base, full * d.ob), rest)
    f.loop(d.groups, group)


def _direct_weight_grad(f: _Fn, d: _Direct, x, g, scratch, dw, count) -> None:
    """dw[o, c, i, j] = sum over images n and grid points q of gg[n, o, q] *
    xp[n, c, q + i*d0*Wp + j*d1]. Per image (its padded input xp and its g laid on the
    (Ho, Wp) grid, zero off the outputs, both in L1), register blocks of outputs x taps
    run over the grid from vector partial sums kept in scratch; the sums are reduced once
    at the end. Inputs at grid points that are not outputs are masked to 0 (0 * inf would
    be nan)."""
    b, VL = f.b, d.VL
    vt = ir.VectorType(f.real, VL)
    item = 4 if f.dtype == "float32" else 8
    sfx = "f32" if f.dtype == "float32" else "f64"
    fma = _intrinsic(f, f"llvm.fmuladd.v{VL}{sfx}", vt, [vt] * 3)
    reduce = _intrinsic(f, f"llvm.vector.reduce.fadd.v{VL}{sfx}", f.real, [f.real, vt])
    plane, taps = d.Hp * d.Wp, d.kh * d.kw
    grid, k_all = d.Ho * d.Wp, d.cin_g * d.kh * d.kw
    gg = f.at(scratch, d.padded)
    mask = f.at(gg, d.cout * d.R)
    sums = f.at(mask, d.R)
    one, zero = f.f(1.0), f.f(0.0)
    zvec = ir.Constant(vt, [0.0] * VL)

    def mask_row(oh):
        f.fill(mask, f.mul(oh, d.Wp), d.Wo, one)
        f.fill(mask, f.add(f.mul(oh, d.Wp), d.Wo), d.Wp - d.Wo, zero)
    f.loop(d.Ho, mask_row)
    f.fill(mask, grid, d.R - grid, zero)
    f.fill(scratch, d.cin * plane, d.padded - d.cin * plane, zero)
    f.fill(sums, 0, d.cout * k_all * VL, zero)

    def zero_tail(o):
        f.fill(gg, f.add(f.mul(o, d.R), grid), d.R - grid, zero)
    f.loop(d.cout, zero_tail)

    def prepare(n):
        _pad_image(f, d, f.at(x, f.mul(n, d.cin * d.H * d.W)), scratch)
        gn = f.at(g, f.mul(n, d.cout * d.Ho * d.Wo))

        def row(o, oh):
            src, dst = f.mul(f.add(f.mul(o, d.Ho), oh), d.Wo), f.add(f.mul(o, d.R),
                                                                       f.mul(oh, d.Wp))
            f.loop(d.Wo, lambda k: f.store(f.load(gn, f.add(src, k)), gg, f.add(dst, k)))
            f.fill(gg, f.add(dst, d.Wo), d.Wp - d.Wo, zero)
        f.loop(d.cout, lambda o: f.loop(d.Ho, lambda oh: row(o, oh)))
    ob = min(d.cout_g, 8)
    tb = max(1, min(k_all, DIRECT_ACCUMULATORS // ob))

    def block(grp, o0, osize, t0, tsize):
        slots = [[f.add(f.mul(f.add(f.mul(f.add(o0, k), k_all), t0), VL), t * VL)
                  for t in range(tsize)] for k in range(osize)]
        accs = [[f.var(b.load(f.at(sums, at), typ=vt, align=item)) for at in row]
                for row in slots]
        offs = []
        for t in range(tsize):
            ta = f.add(t0, t)
            c, r = b.udiv(ta, f.i(taps)), b.urem(ta, f.i(taps))
            i, j = b.udiv(r, f.i(d.kw)), b.urem(r, f.i(d.kw))
            offs.append(f.add(f.mul(f.add(f.mul(grp, d.cin_g), c), plane),
                              f.mul(i, d.dil[0] * d.Wp), f.mul(j, d.dil[1])))

        def point(q):
            p = f.mul(q, VL)
            m = b.fcmp_ordered("!=", b.load(f.at(mask, p), typ=vt, align=item), zvec)
            xs = [b.select(m, b.load(f.at(scratch, f.add(p, off)), typ=vt, align=item),
                           zvec) for off in offs]
            for k, row in enumerate(accs):
                gv = b.load(f.at(gg, f.add(p, f.mul(f.add(o0, k), d.R))), typ=vt, align=item)
                for xv, acc in zip(xs, row):
                    b.store(b.call(fma, [gv, xv, b.load(acc)]), acc)
        f.loop(d.nq, point)
        for row, ats in zip(accs, slots):
            for acc, at in zip(row, ats):
                b.store(b.load(acc), f.at(sums, at), align=item)

    def group(grp):
        ofull, orest = divmod(d.cout_g, ob)
        tfull, trest = divmod(k_all, tb)
        base = f.mul(grp, d.cout_g)

        def outputs(o0, osize):
            f.loop(tfull, lambda u: block(grp, o0, osize, f.mul(u, tb), tb))
            if trest:
                block(grp, o0, osize, f.i(tfull * tb), trest)
        f.loop(ofull, lambda k: outputs(f.add(base, f.mul(k, ob)), ob))
        if orest:
            outputs(f.add(base, ofull * ob), orest)

    def image(n):
        prepare(n)
        f.loop(d.groups, group)
    f.loop(count, image)
    f.loop(d.cout * k_all, lambda k: f.store(
        b.call(reduce, [zero, b.load(f.at(sums, f.mul(k, VL)), typ=vt, align=item)]), dw, k))

# -- pooling ------------------------------------------------------------------------------

def _maximum(f: _Fn, a, c) -> ir.Value:
    """numpy's maximum: NaN propagates."""
    name = f"llvm.maximum.{'f32' if f.dtype == 'float32' else 'f64'}"
    return f.b.call(_intrinsic(f, name, f.real, [f.real, f.real]), [a, c])


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


def _windows(f: _Fn, geo: _Geo, oh, visit) -> None:
    """visit(ow, taps) for every output column ow of output row oh, ``taps`` listing the
    window's kernel taps in row-major order as (offset in the input plane, inside): an i1,
    or None where the tap is inside for sure; offsets outside are clamped into the plane.
    The interior columns (every kernel column inside) are one loop over whole windows, so
    the vectorizer sees the taps' strided loads and stores as interleaved groups; the edge
    columns come after, one by one."""
    (s0, s1), (p0, p1) = geo.stride, geo.pad
    kh, kw, H, W, Wo = geo.kh, geo.kw, geo.H, geo.W, geo.Wo
    lo = min(Wo, -(-p1 // s1))
    hi = max(lo, min(Wo, (W - kw + p1) // s1 + 1))
    b = f.b
    rows = []
    for i in range(kh):   # per kernel row: inside (uniform over the row) and clamped base
        ih = f.add(f.mul(oh, s0), i - p0)
        ok = b.icmp_unsigned("<", ih, f.i(H)) if p0 else None
        rows.append((ok, f.mul(ih if ok is None else b.select(ok, ih, f.i(0)), W)))

    def window(ow, edge: bool):
        taps = []
        for ok, base in rows:
            for j in range(kw):
                iw = f.add(f.mul(ow, s1), j - p1)
                inside = ok
                if edge:
                    col = b.icmp_unsigned("<", iw, f.i(W))
                    iw = b.select(col, iw, f.i(0))
                    inside = col if ok is None else b.and_(ok, col)
                taps.append((f.add(base, iw), inside))
        visit(ow, taps)
    f.range(lo, hi, lambda ow: window(ow, False))
    f.loop(lo, lambda ow: window(ow, True))
    f.range(hi, Wo, lambda ow: window(ow, True))


def _tap_values(f: _Fn, x, taps, pad_value: float) -> list:
    """The taps' inputs, ``pad_value`` outside the image (the reference's padding)."""
    vals = []
    for off, inside in taps:
        v = f.load(x, off)
        vals.append(v if inside is None else f.b.select(inside, v, f.f(pad_value)))
    return vals


def _pool(f: _Fn, geo: _Geo, x, out, mode: str, include_pad: bool) -> None:
    """One image of max_pool2d/avg_pool2d: the max over each window (NaN propagates;
    padding is -inf), or its sum in the window's order (padding is 0) over the divisor."""
    b = f.b

    def row(c, oh):
        xc = f.at(x, f.mul(c, geo.H * geo.W))
        r = f.at(out, f.mul(f.add(f.mul(c, geo.Ho), oh), geo.Wo))

        def visit(ow, taps):
            vals = _tap_values(f, xc, taps, -math.inf if mode == "max" else 0.0)
            acc = vals[0]
            for v in vals[1:]:
                acc = _maximum(f, acc, v) if mode == "max" else b.fadd(acc, v)
            if mode == "avg":
                acc = b.fdiv(acc, _divisor(f, geo, include_pad, oh, ow))
            f.store(acc, r, ow)
        _windows(f, geo, oh, visit)
    f.loop(geo.C, lambda c: f.loop(geo.Ho, lambda oh: row(c, oh)))


def _tiled(geo: _Geo) -> bool:
    """Whether the windows tile the input exactly (each element is one window's tap)."""
    return (geo.stride, geo.pad, geo.H, geo.W) == ((geo.kh, geo.kw), (0, 0), geo.Ho * geo.kh,
                                                   geo.Wo * geo.kw)


def _pool_grad(f: _Fn, geo: _Geo, x, g, dx, row_buf, mode: str, include_pad: bool) -> None:
    """One image of max_pool2d_grad / avg_pool2d_grad into ``dx``. The max gradient
    replays numpy's argmax over each window (padding taps -inf, the first NaN or else the
    first maximum wins): the winner gets g, every other in-image tap 0 * g, as the
    reference's ``hit * g`` does. Windows that tile the input write each element once
    (one pass over whole windows, stores only); overlapping or padded ones first find
    each window's winner (or share of g) for a whole output row into ``row_buf``, then add
    tap by tap (within a tap the windows' elements are distinct, so both passes
    vectorize), after zeroing ``dx``."""
    b = f.b
    plane = geo.H * geo.W
    tiled = _tiled(geo)
    if not tiled:
        f.fill(dx, 0, geo.C * plane, f.f(0.0))

    def winner(xc, taps):
        """The index of the window's winning tap (an i64)."""
        vals = _tap_values(f, xc, taps, -math.inf)
        m = vals[0]
        for v in vals[1:]:
            m = _maximum(f, m, v)
        nan_m = b.fcmp_unordered("uno", m, m)
        at = f.i(len(vals))
        for t in reversed(range(len(vals))):   # the first hit is the last assigned
            v = vals[t]
            eq = b.select(nan_m, b.fcmp_unordered("uno", v, v), b.fcmp_ordered("==", v, m))
            at = b.select(eq, f.i(t), at)
        return at

    def row(c, oh):
        xc = f.at(x, f.mul(c, plane)) if x is not None else None
        dc = f.at(dx, f.mul(c, plane))
        gr = f.at(g, f.mul(f.add(f.mul(c, geo.Ho), oh), geo.Wo))

        def share(ow):
            return b.fdiv(f.load(gr, ow), _divisor(f, geo, include_pad, oh, ow))

        if tiled:
            def visit(ow, taps):
                gv = f.load(gr, ow)
                if mode == "max":
                    at, zero_g = winner(xc, taps), b.fmul(gv, f.f(0.0))
                    adds = [b.select(b.icmp_signed("==", at, f.i(t)), gv, zero_g)
                            for t in range(len(taps))]
                else:
                    adds = [share(ow)] * len(taps)
                for (off, _), add in zip(taps, adds):
                    f.store(add, dc, off)
            _windows(f, geo, oh, visit)
            return

        def first(ow, taps):
            v = b.sitofp(winner(xc, taps), f.real) if mode == "max" else share(ow)
            f.store(v, row_buf, ow)
        _windows(f, geo, oh, first)
        (s0, s1), (p0, p1) = geo.stride, geo.pad
        for i in range(geo.kh):
            ih = f.add(f.mul(oh, s0), i - p0)
            base = f.mul(ih, geo.W)

            def kernel_row(i=i, base=base):
                for j in range(geo.kw):
                    lo, hi = f.taps(j, s1, 1, p1, geo.W, geo.Wo)
                    t = i * geo.kw + j

                    def add(ow, j=j, t=t):
                        k = f.add(base, f.mul(ow, s1), j - p1)
                        if mode == "max":
                            gv = f.load(gr, ow)
                            hit = b.fcmp_ordered("==", f.load(row_buf, ow), f.f(t))
                            v = b.select(hit, gv, b.fmul(gv, f.f(0.0)))
                        else:
                            v = f.load(row_buf, ow)
                        f.store(b.fadd(f.load(dc, k), v), dc, k)
                    f.range(lo, hi, add)
            if p0:
                with b.if_then(b.icmp_unsigned("<", ih, f.i(geo.H))):
                    kernel_row()
            else:
                kernel_row()
    f.loop(geo.C, lambda c: f.loop(geo.Ho, lambda oh: row(c, oh)))


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
        self.dg = self._direct_plan(epi)
        #: items per image (direct forward convolution: blocks of groups), whose index a
        #: call finds as the distance between two extra pointer arguments (`calls`)
        self.per_image = geo.groups // self.dg.groups if self.op == "conv2d" and \
            self.dg is not None else 1
        self.indexed = self.op == "conv2d" and self.dg is not None
        self.block = 1 if self.dg else self._block()
        straight = epi is None and (self.op == _GEMM[2] or self.dg is None and (
            self.op != "conv2d" or self.block == 1))
        if epi is None and not straight:
            epi = _Epilogue.identity(out)
        self.epi = epi
        self.sources = epi.sources if epi is not None else []
        self.src_dtypes = [dt.to_numpy(t.dtype) for t in (epi.in_types[:-1] if epi else [])]
        self.out_np = [dt.to_numpy(v.dtype) for v in node.outputs]
        self.out_shapes = [v.type.shape for v in node.outputs]
        self.cols, self.tmp = self._scratch_sizes(straight)
        key = ("conv", self.op, self.dtype, geo.key(), tuple(sorted(
            (k, v) for k, v in lib.attrs.items())), self.block, straight, self.dg is None,
            self.per_image,
            None if epi is None else (kernel_specs.code_key(epi.spec(name)),
                                      tuple(t.shape for t in epi.in_types)))
        self.name = builder.functions.get(key)
        if self.name is None:
            self.name = builder.functions[key] = self._emit_or_undo(builder, name, out.shape)
        self.n_ptrs = len(self.operands) + len(self.sources) + len(node.outputs) + 2 + \
            2 * self.indexed
        self._local = threading.local()
        self.fn = None

    def _direct_plan(self, epi) -> _Direct | None:
        """The direct kernel's view of a stride-1 convolution or input gradient (a
        correlation of g with the flipped, transposed weight) with short dot products."""
        geo = self.geo
        if self.op not in _GEMM or geo.stride != (1, 1) and (
                self.op != "conv2d" or geo.Cg > DIRECT_STRIDED_MAX_CIN):
            return None
        if self.op == "conv2d":   # a block of groups per item (see `_items`)
            gb = self._group_block(epi)
            d = _Direct(geo.Cg * gb, geo.H, geo.W, geo.Og * gb, geo.kh, geo.kw, geo.pad,
                        geo.dil, gb, (geo.Ho, geo.Wo), self.dtype, geo.stride)
        elif self.op != _GEMM[1]:   # the forward's geometry
            d = _Direct(geo.C, geo.H, geo.W, geo.O, geo.kh, geo.kw, geo.pad, geo.dil,
                        geo.groups, (geo.Ho, geo.Wo), self.dtype)
        else:
            pad = tuple(d * (k - 1) - p for d, k, p in zip(geo.dil, (geo.kh, geo.kw),
                                                           geo.pad))
            if min(pad) < 0:
                return None
            d = _Direct(geo.O, geo.Ho, geo.Wo, geo.C, geo.kh, geo.kw, pad, geo.dil,
                        geo.groups, (geo.H, geo.W), self.dtype)
        k = d.cin_g * d.kh * d.kw
        if k > DIRECT_MAX_K or d.kh * d.kw == 1 and k * d.cout_g > DIRECT_MAX_POINTWISE:
            return None
        return d

    def _group_block(self, epi) -> int:
        """Groups per item of a direct forward convolution: the fewest (a divisor of the
        groups) with at least `ITEM_OUTPUTS` outputs."""
        geo = self.geo
        per = geo.Og * geo.L
        if epi is not None and any(_uses_index(e, set()) for e in epi.exprs):
            return geo.groups   # whole images: the epilogue reads the flat index
        return next(gb for gb in range(1, geo.groups + 1)
                    if geo.groups % gb == 0 and (gb * per >= ITEM_OUTPUTS or
                                                 gb == geo.groups))

    @property
    def items(self) -> int:
        """The counted items of a call: (image, block of groups) pairs for the direct
        forward convolution, images otherwise."""
        return self.geo.N * self.per_image

    def _block(self) -> int:
        """Images per gemm of a forward convolution (the weight gradient's per-image
        gemms were measured no slower than blocked ones, whose g must be gathered)."""
        geo = self.geo
        if self.op != "conv2d" or geo.L >= COLS_PER_GEMM or geo.N <= 1:
            return 1
        per_image = geo.C * geo.kh * geo.kw * geo.L * np.dtype(self.np_dtype).itemsize
        return max(1, min(geo.N, COLS_PER_GEMM // geo.L, COLS_BYTES // per_image))

    def _scratch_sizes(self, straight: bool) -> tuple[int, int]:
        """Elements of the im2col (or padded image) and result scratch buffers."""
        geo, op, dg, B = self.geo, self.op, self.dg, self.block
        if dg is not None and op == _GEMM[2]:   # padded image, g on the grid, mask, sums
            return (dg.padded + geo.O * dg.R + dg.R + geo.O * geo.Kg * dg.VL,
                    0 if straight else geo.O * geo.Kg)
        if dg is not None:   # the padded image, then (input grad) the flipped weight
            return dg.padded + (geo.O * geo.Kg if op == _GEMM[1] else 0), dg.cout * dg.R
        cols = geo.Wo if op.endswith("pool2d_grad") else 0   # a row's winners or shares
        if op in _GEMM and not (geo.pointwise and B == 1):
            cols = geo.C * geo.kh * geo.kw * geo.L * B
        tmp = 0 if straight else math.prod(self.node.outputs[0].type.shape[1:]) * B
        if op == _GEMM[2] and not straight:
            tmp = math.prod(self.node.outputs[0].type.shape)
        return cols, tmp

    # -- code -------------------------------------------------------------------------------
    def _emit_or_undo(self, mb: codegen.ModuleBuilder, name: str, domain: tuple) -> str:
        """`_emit`, or on `Unsupported` (an epilogue primitive the emitter lacks) the
        module's functions and function table as they were: a half-built function would
        make the whole module invalid. (New declarations stay: llvmlite cannot reuse a
        deleted name, and an unused declaration is harmless.)"""
        names, keys = set(mb.module.globals), set(mb.functions)
        try:
            return self._emit(mb, name, domain)
        except Unsupported:
            for k in set(mb.module.globals) - names:
                if not mb.module.globals[k].is_declaration:
                    del mb.module.globals[k]
            for k in set(mb.functions) - keys:
                del mb.functions[k]
            raise

    def _emit(self, mb: codegen.ModuleBuilder, name: str, domain: tuple) -> str:
        n_ops, n_src = len(self.operands), len(self.sources)
        n_out = len(self.node.outputs)
        epi_name = None
        if self.epi is not None:
            epi_name, ints = self._emit_epilogue(mb, name + "_epilogue", domain)
        f = _Fn(mb.module, name + "_" + self.op, n_ops + n_src + n_out + 2 +
                2 * self.indexed, self.dtype, n_ints=1)
        a = f.args
        ops, srcs = a[:n_ops], a[n_ops:n_ops + n_src]
        outs = a[n_ops + n_src:n_ops + n_src + n_out]
        cols, tmp, self.count = a[n_ops + n_src + n_out], a[n_ops + n_src + n_out + 1], \
            a[-1]   # count: the images (items) of this call
        epi_fn = mb.module.globals[epi_name] if epi_name else None
        if self.indexed:   # start = the distance between the two index pointers
            for arg in a[-3:-1]:   # compared as addresses, never read
                arg.attributes.discard("noalias")
                arg.attributes.discard("captures(none)")
            self.start = f.b.sub(f.b.ptrtoint(a[-2], I64), f.b.ptrtoint(a[-3], I64))
            return self._emit_direct_items(f, ops, srcs, outs, cols, tmp, epi_fn, ints)

        def epilogue(n0, count, res):
            f.b.call(epi_fn, list(srcs) + [res] + list(outs) + [f.i(v) for v in
                                                                  (n0, count, *ints)])
        emit = getattr(self, "_emit_" + self.op.replace("2d", ""))
        emit(f, mb, ops, outs[0], cols, tmp, epilogue if epi_fn else None)
        f.b.ret_void()
        return f.fn.name

    def _emit_direct(self, f, x, w, cols, tmp, epilogue):
        """Per image: pad, the direct kernel into ``tmp``, the epilogue."""
        dg = self.dg
        grid = dg.cin * dg.Hp * dg.Wp
        f.fill(cols, grid, dg.padded - grid, f.f(0.0))   # the slack the last vector reads

        def one(n):
            _pad_image(f, dg, f.at(x, f.mul(n, dg.cin * dg.H * dg.W)), cols)
            _direct(f, dg, cols, w, tmp)
            epilogue(n, 1, tmp)
        f.loop(self.count, one)

    def _emit_direct_items(self, f, ops, srcs, outs, cols, tmp, epi_fn, ints) -> str:
        """The direct forward convolution over items [start, start + count) (the call's
        scratch reused item after item): per item (image n, block of groups) the block's
        input channels padded (split by stride phase), the direct kernel into ``tmp``, the
        epilogue over the block's output channels (the sources and outputs offset to
        them; whole images when the epilogue reads the flat index)."""
        dg, geo, b = self.dg, self.geo, f.b
        x, w = ops
        cb, planes = dg.cout, dg.cin * dg.phases * dg.plane
        whole = dg.pad != (0, 0) or dg.Hp % dg.stride[0] or dg.Wp % dg.stride[1]
        epi = self.epi
        src_strides = [_broadcast_strides(t.shape, self.out_shapes[0])
                       for t in epi.in_types[:-1]]
        images = self.per_image == 1   # n0 = n over whole images (as a flat index needs)
        ints = ints if images else [cb] + list(ints[1:])

        def item(k):
            idx = f.add(self.start, k)
            n, blk = b.udiv(idx, f.i(self.per_image)), b.urem(idx, f.i(self.per_image))
            xp, res = cols, tmp   # this call's scratch, reused item after item
            c0 = f.mul(blk, cb)
            # zeros where no input lands (padding, phase rows and columns past the padded
            # image, the slack the last vector reads): even dropped grid points must not
            # read garbage (denormals are slow)
            f.fill(xp, 0 if whole else planes, dg.padded - (0 if whole else planes),
                   f.f(0.0))
            _pad_image(f, dg, f.at(x, f.mul(f.add(f.mul(n, self.per_image), blk),
                                            dg.cin * dg.H * dg.W)), xp, zero_pad=False)
            _direct(f, dg, xp, f.at(w, f.mul(c0, geo.Cg * geo.kh * geo.kw)), res)
            if images:
                b.call(epi_fn, list(srcs) + [res] + list(outs) + [n] +
                       [f.i(v) for v in (1, *ints)])
                return
            args = [b.gep(p, [f.add(f.mul(n, st[0]), f.mul(c0, st[1]))], inbounds=True,
                          source_etype=_MEM[t.dtype])
                    for p, st, t in zip(srcs, src_strides, epi.in_types)]
            args.append(res)
            args += [b.gep(p, [f.mul(f.add(f.mul(n, geo.O), c0), geo.L)], inbounds=True,
                           source_etype=_MEM[t.dtype])
                     for p, t in zip(outs, epi.out_types)]
            b.call(epi_fn, args + [f.i(v) for v in (0, 1, *ints)])
        f.loop(self.count, item)
        f.b.ret_void()
        return f.fn.name

    def _emit_conv(self, f, mb, ops, out, cols, tmp, epilogue):
        if self.dg is not None:
            return self._emit_direct(f, ops[0], ops[1], cols, tmp, epilogue)
        geo, B = self.geo, self.block
        x, w = ops
        gemm = _Gemm(f, mb)
        pitch, image = B * geo.L, geo.C * geo.H * geo.W
        in_place = geo.pointwise and B == 1

        def block(blk):
            n0 = f.mul(blk, B)
            count = f.smin(B, f.b.sub(self.count, n0))
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
        f.loop(f.b.sdiv(f.add(self.count, B - 1), f.i(B)), block)

    def _emit_conv_input_grad(self, f, mb, ops, out, cols, tmp, epilogue):
        geo = self.geo
        g_, w = ops
        if self.dg is not None:   # w'[c, o, i, j] = w[o, c, kh-1-i, kw-1-j] per group
            wt = f.at(cols, self.dg.padded)
            kh, kw, cg, og = geo.kh, geo.kw, geo.Cg, geo.Og

            def move(g, o, c, i, j):
                src = f.add(f.mul(f.add(f.mul(f.add(f.mul(f.add(f.mul(g, og), o), cg), c),
                                              kh), i), kw), j)
                dst = f.add(f.mul(f.add(f.mul(f.add(f.mul(f.add(f.mul(g, cg), c), og), o),
                                              kh), f.add(kh - 1, f.b.neg(i))), kw),
                            f.add(kw - 1, f.b.neg(j)))
                f.store(f.load(w, src), wt, dst)
            f.loop(geo.groups, lambda g: f.loop(og, lambda o: f.loop(cg, lambda c: f.loop(
                kh, lambda i: f.loop(kw, lambda j: move(g, o, c, i, j))))))
            return self._emit_direct(f, g_, wt, cols, tmp, epilogue)
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
        f.loop(self.count, one)

    def _emit_conv_weight_grad(self, f, mb, ops, out, cols, tmp, epilogue):
        """dW_g += g_n,g @ cols_g^T per image (beta = 1 after the first)."""
        geo = self.geo
        x, g_ = ops
        dst = tmp if epilogue else out
        with f.b.if_then(f.b.icmp_signed("==", self.count, f.i(0))):
            f.fill(dst, 0, geo.O * geo.Kg, f.f(0.0))
        if self.dg is not None:
            _direct_weight_grad(f, self.dg, x, g_, cols, dst, self.count)
            if epilogue:
                epilogue(0, geo.O, tmp)
            return
        gemm = _Gemm(f, mb)
        image, L = geo.C * geo.H * geo.W, geo.L

        def one(n):
            xn = f.at(x, f.mul(n, image))
            if geo.pointwise:
                src = xn
            else:
                _im2col(f, geo, xn, cols, 0, L)
                src = cols
            gn = f.at(g_, f.mul(n, geo.O * L))
            beta = f.b.select(f.b.icmp_signed("==", n, f.i(0)), f.f(0.0), f.f(1.0))
            f.loop(geo.groups, lambda g: gemm(
                _NO_T, _T, geo.Og, geo.Kg, L, f.at(gn, f.mul(g, geo.Og * L)), L,
                f.at(src, f.mul(g, geo.Kg * L)), L, beta,
                f.at(dst, f.mul(g, geo.Og * geo.Kg)), geo.Kg))
        f.loop(self.count, one)
        if epilogue:
            epilogue(0, geo.O, tmp)

    def _pool_driver(self, f, out, tmp, epilogue, image_out, body):
        def one(n):
            dst = tmp if epilogue else f.at(out, f.mul(n, image_out))
            body(n, dst)
            if epilogue:
                epilogue(n, 1, tmp)
        f.loop(self.count, one)

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
            x = f.at(ops[0], f.mul(n, image)) if mode == "max" else None
            _pool_grad(f, geo, x, f.at(ops[-1], f.mul(n, oimage)), dst, cols, mode, include)
        self._pool_driver(f, out, tmp, epilogue, image, body)

    def _emit_avg_pool_grad(self, f, mb, ops, out, cols, tmp, epilogue):
        self._emit_max_pool_grad(f, mb, ops, out, cols, tmp, epilogue, "avg")

    def _res_strides(self, domain: tuple) -> tuple[int, ...]:
        """Element strides of the library result in the scratch ``tmp``, per domain axis
        (axis 0 counted from the block's first image)."""
        if self.dg is not None and self.op != _GEMM[2]:
            return (0, self.dg.R, self.dg.Wq, 1)
        if self.op == "conv2d" and self.block > 1:
            L = self.geo.L
            return (L, self.block * L, self.geo.Wo, 1)
        return _c_strides(domain)

    def _emit_epilogue(self, mb: codegen.ModuleBuilder, name: str,
                       domain: tuple) -> tuple[str, list[int]]:
        """The epilogue function ``(srcs..., res, outs..., n0, count, ints...)`` over
        images [n0, n0 + count) of the domain, reading the result at `_res_strides`, and
        its ``ints``: the loop sizes and outer strides. Those are arguments of a
        non-inlined function so that LLVM does not unroll small loops (and layers with the
        same epilogue share the code); only the innermost strides (0 or 1) are constants,
        which is all the vectorizer needs."""
        epi = self.epi
        spec = epi.spec(name)
        d = domain
        strides = [_broadcast_strides(t.shape, d) for t in epi.in_types[:-1]]
        strides.append(self._res_strides(d))
        if all(s[2] == s[3] * d[3] for s in strides):   # (H, W) as one axis
            dims, strides = (d[1], 1, d[2] * d[3]), [(s[0], s[1], 0, s[3]) for s in strides]
        else:
            dims = tuple(d[1:])
        ints = list(dims) + [v for s in strides for v in s[:3]]
        inner = tuple(s[3] for s in strides)
        key = ("conv_epilogue", self.dtype, kernel_specs.code_key(spec), inner)
        if key not in mb.functions:
            mb.functions[key] = self._define_epilogue(mb, name, spec, inner)
        return mb.functions[key], ints

    def _define_epilogue(self, mb, name, spec, inner) -> str:
        epi = self.epi
        n_src, n_out = len(epi.sources), len(epi.out_types)
        f = _Fn(mb.module, name, n_src + 1 + n_out, self.dtype, n_ints=5 + 3 * len(inner))
        f.fn.attributes.add("noinline")
        srcs, res, outs = f.args[:n_src], f.args[n_src], f.args[n_src + 1:n_src + 1 + n_out]
        n0, count, d1, d2, d3 = f.args[n_src + 1 + n_out:n_src + 6 + n_out]
        st = f.args[n_src + 6 + n_out:]
        strides = [st[3 * k:3 * k + 3] + [inner[k]] for k in range(len(inner))]
        b = f.b

        def element(i, a1, a2, a3):
            n = b.add(n0, i)
            offs = [f.add(f.mul(n, s[0]), f.mul(a1, s[1]), f.mul(a2, s[2]), f.mul(a3, s[3]))
                    for s in strides[:-1]]
            r = strides[-1]
            offs.append(f.add(f.mul(i, r[0]), f.mul(a1, r[1]), f.mul(a2, r[2]),
                              f.mul(a3, r[3])))
            flat = f.add(f.mul(f.add(f.mul(f.add(f.mul(n, d1), a1), d2), a2), d3), a3)
            em = codegen._Emitter(b, mb, spec, list(srcs) + [res], offs, flat)
            # every value before any store: an output may take an input's buffer in place
            vals = [em.convert(em.value(e), e.dtype, t.dtype)
                    for e, t in zip(spec.exprs, spec.out_types)]
            for ptr, v, t in zip(outs, vals, spec.out_types):
                if t.dtype == "bool":
                    v = b.zext(v, codegen.I8)
                b.store(v, b.gep(ptr, [flat], inbounds=True, source_etype=_MEM[t.dtype]))
        f.loop(count, lambda i: f.loop(d1, lambda a1: f.loop(
            d2, lambda a2: f.loop(d3, lambda a3: element(i, a1, a2, a3)))))
        b.ret_void()
        return name

    # -- running ----------------------------------------------------------------------------
    def bind(self, module) -> ConvKernel:
        self.fn = module.function(self.name, [ctypes.c_void_p] * self.n_ptrs +
                                  [ctypes.c_int64])
        return self

    def advances(self) -> list[int] | None:
        """Bytes each pointer argument advances per image, when the images are
        independent (no BLAS inside, no flat index in the epilogue, not a weight
        gradient): the call can then run in chunks of images on several threads, each
        chunk with its own scratch (the scratch buffers hold one region per image)."""
        if self.op == _GEMM[2] or (self.op in _GEMM and self.dg is None) or \
                self.epi is not None and any(_uses_index(e, set()) for e in self.epi.exprs):
            return None
        item = np.dtype(self.np_dtype).itemsize
        if self.indexed:   # items find their data from their index: only scratch moves
            return [0] * (len(self.operands) + len(self.sources) + len(self.node.outputs)) \
                + [self.cols * item, self.tmp * item, 0, 1]
        batch = {"conv2d": (True, False), "conv2d_input_grad": (True, False),
                 "max_pool2d_grad": (True, True)}.get(self.op, (True,))
        out: list[int] = []
        for v, b in zip(self.operands, batch):
            out.append(math.prod(v.shape[1:]) * item if b else 0)
        domain = self.out_shapes[0]
        for t, d in zip(self.epi.in_types[:-1] if self.epi else [], self.src_dtypes):
            out.append(_broadcast_strides(t.shape, domain)[0] * np.dtype(d).itemsize)
        for shape, d in zip(self.out_shapes, self.out_np):
            out.append(math.prod(shape[1:]) * np.dtype(d).itemsize)
        return out + [self.cols * item, self.tmp * item]

    def calls(self, at) -> list | None:
        """The kernel as one native `program.Call` over static locations ``at`` (scratch
        buffers in fixed slots; per image when the call may be split over images), or
        None when an operand is not C-contiguous native memory (then `run` copies it)."""
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
        advances = self.advances()
        items = max(1, self.items) if advances is not None else 1
        for n in (self.cols, self.tmp):
            args.append(Ptr(at.new_slot(np.zeros(max(1, n * items), self.np_dtype)), 0))
        if self.indexed:   # the same address twice: the split moves the second one
            index = at.new_slot(np.zeros(1, np.int8))
            args += [Ptr(index, 0), Ptr(index, 0)]
        split = None if advances is None else (len(args), tuple(advances) + (0,))
        g = self.geo   # multiply-adds (or window reads) per item: the split threshold
        work = g.O * g.L * g.kh * g.kw * (g.Cg if self.op in _GEMM else 1) // self.per_image
        return [Call(self.name, tuple(args) + (("i64", self.items),), split, grain=1,
                     work=work)]

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
        index = [cols.ctypes.data] * 2 if self.indexed else []
        self.fn(*[a.ctypes.data for a in ins], *[o.ctypes.data for o in outs],
                cols.ctypes.data, tmp.ctypes.data, *index, self.items)
        for v, o in zip(self.node.outputs, outs):
            env[id(v)] = o
