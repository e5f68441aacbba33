"""LLVM IR for elementwise kernels, rendered from the ops' scalar expressions.

First slice of the LLVM backend (issue 5): only *elementwise* kernels are generated here —
a fused ``elementwise`` node (its body) or a single ELEMENTWISE op node. Each becomes
functions over the kernel's domain D (the shape of every output), with the output written
contiguously at D's flat index and every input read by numpy broadcasting:

- ``<name>_flat(in0, ..., out0, ..., n)``, when every input has shape D or a single
  element: one loop over the flat index up to ``n`` with ``noalias`` pointers, which LLVM
  vectorizes (the runtime makes non-contiguous full-size inputs contiguous first);
- ``<name>_strided(in0, ..., out0, ..., table)``, for the other kernels (some input is
  broadcast): a loop nest over D's axes, ``table`` holding D's dims and then, per input,
  its element strides (0 on broadcast axes); input j is read at ``sum(i_k * stride_jk)``,
  so any numpy layout works (transposed, strided, broadcast views). Emitting it for flat
  kernels too would avoid their copies but more than doubles compile time.

Sizes are arguments, not constants: constant trip counts made LLVM fully unroll small
loop nests (up to 60 ms per kernel), and this way kernels with the same expression,
dtypes (and rank, for strided ones) share one function (`ModuleBuilder` dedups them, so
repeated layers compile once).

The math is the op's `graphc.ops.scalar` expression, rendered primitive by primitive
(`_Emitter`); no op names appear here. Semantics follow numpy:

- ``max``/``min`` propagate NaN; on ties they return the second operand in float32/64 and
  the first in float16 (as numpy's ``maximum(-0.0, 0.0)`` does);
- float -> int casts truncate, NaN and out-of-range values give INT_MIN (x86 numpy);
  float -> bool is ``x != 0`` (NaN is True);
- shifts by the bit width or more give 0; integer ``add``/``mul`` wrap; bool ``add``/``mul``
  are or/and; integer ``pow`` with a negative exponent (an error in numpy) gives 0;
- no fast-math flags. bool is i8 in memory, i1 in registers. float16 computes in LLVM
  ``half`` (each primitive rounds to half, like numpy's float16 loops); its transcendentals
  run in float32 and round once.

Transcendentals (exp, log, log1p, expm1, sin, cos, tanh, erf, pow) use
`graphc.backends.llvm.vmath`'s vectorizable emitters where that module provides one, else
LLVM intrinsics / libm calls (which keep the loop scalar).

Anything a kernel needs that is not rendered raises `Unsupported`; the runtime then runs
that node with the reference interpreter.
"""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np
from llvmlite import ir

from ... import dtypes as dt
from ...ops import scalar as S
from ..kernel_specs import KernelSpec, Unsupported, code_key

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()
_REG = {"bool": I1, "int32": I32, "int64": I64, "float16": ir.HalfType(),
        "float32": ir.FloatType(), "float64": ir.DoubleType()}
_MEM = {**_REG, "bool": I8}
_LLVM_SUFFIX = {"float16": "f16", "float32": "f32", "float64": "f64"}
#: Transcendentals without an LLVM intrinsic: libm names (float32 variant gets an 'f').
_LIBM = {"log1p", "expm1", "erf"}
_INTRINSIC = {"exp", "log", "sin", "cos", "tanh", "pow"}


def _vmath():
    """`vmath.EMITTERS` if that module exists (written alongside this one), else {}."""
    name = __package__ + ".vmath"
    try:
        if importlib.util.find_spec(name) is None:
            return {}
        return dict(getattr(importlib.import_module(name), "EMITTERS", {}))
    except ImportError:
        return {}


# -- the module ---------------------------------------------------------------------------

class ModuleBuilder:
    """One LLVM module holding every kernel of a graph."""

    def __init__(self, name: str = "graphc"):
        self.module = ir.Module(name=name)
        self.vmath = _vmath()
        self.functions: dict[tuple, str] = {}  # (variant, code_key) -> function name

    def add_kernel(self, spec: KernelSpec) -> dict[str, str]:
        """Emit ``spec``'s variants; returns {'flat'|'strided': function name}. On
        `Unsupported`, the module is left as it was."""
        if spec.size == 0:
            return {}  # nothing to compute: the runtime only allocates the outputs
        names: dict[str, str] = {}
        try:
            if spec.flat:
                names["flat"] = self._shared(spec, False)
            elif spec.domain:
                names["strided"] = self._shared(spec, True)
            else:
                raise Unsupported("a 0-d kernel with inputs of several elements")
        except Unsupported:
            for name in names.values():
                del self.module.globals[name]
            raise
        return names

    def _shared(self, spec: KernelSpec, strided: bool, tiled: bool = False) -> str:
        """The function of ``spec``'s variant, emitted unless an equal one exists.
        ``tiled``: the strided variant with its two inner loops walked in square tiles
        (for inputs read across their rows, e.g. through a transpose view)."""
        tiled = tiled and strided and len(spec.domain) >= 2
        key = (len(spec.domain) if strided else None, tiled, code_key(spec))
        if key not in self.functions:
            self.functions[key] = self._emit(spec, strided, tiled)
        return self.functions[key]

    def _emit(self, spec: KernelSpec, strided: bool, tiled: bool = False) -> str:
        n_in, n_out = len(spec.in_types), len(spec.out_types)
        argtys = [PTR] * (n_in + n_out) + [PTR if strided else I64]
        variant = "tiled" if tiled else "strided" if strided else "flat"
        name = f"{spec.name}_{variant}"
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), argtys), name=name)
        try:
            self._define(fn, spec, strided, tiled)
        except Unsupported:
            del self.module.globals[name]
            raise
        return name

    def _define(self, fn: ir.Function, spec: KernelSpec, strided: bool,
                tiled: bool = False) -> None:
        n_in, n_out = len(spec.in_types), len(spec.out_types)
        for a in fn.args[:n_in + n_out]:
            a.add_attribute("noalias")
            a.add_attribute("captures(none)")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        ins, outs = fn.args[:n_in], fn.args[n_in:n_in + n_out]

        def body(index, offsets):
            em = _Emitter(b, self, spec, ins, offsets, index)
            vals = [em.value(e) for e in spec.exprs]
            for ptr, v, t, e in zip(outs, vals, spec.out_types, spec.exprs):
                v = em.convert(v, e.dtype, t.dtype)
                if t.dtype == "bool":
                    v = b.zext(v, I8)
                b.store(v, b.gep(ptr, [index], inbounds=True, source_etype=_MEM[t.dtype]))

        if not strided:
            _loop(b, fn.args[-1],
                  lambda i: body(i, [i if t.size != 1 else ir.Constant(I64, 0)
                                     for t in spec.in_types]))
        else:
            ndim = len(spec.domain)
            table = fn.args[-1]

            def entry(i):
                return b.load(b.gep(table, [ir.Constant(I64, i)], inbounds=True,
                                    source_etype=I64), typ=I64)
            dims = [entry(k) for k in range(ndim)]
            strides = [[entry(ndim * (1 + j) + k) for k in range(ndim)] for j in range(n_in)]

            def level(k, lin, offs):
                if tiled and k == ndim - 2:
                    return tiles(lin, offs)

                def step(i):
                    lin2 = b.add(b.mul(lin, dims[k]), i)
                    offs2 = [b.add(o, b.mul(i, s[k])) for o, s in zip(offs, strides)]
                    if k + 1 == ndim:
                        body(lin2, offs2)
                    else:
                        level(k + 1, lin2, offs2)
                _loop(b, dims[k], step)

            def tiles(lin, offs):
                """The last two axes in TILE x TILE blocks: a transposed read then stays
                in cache while a block of the output's rows is written."""
                d0, d1 = dims[-2], dims[-1]
                t = ir.Constant(I64, TILE)

                def count(d):
                    return b.sdiv(b.add(d, ir.Constant(I64, TILE - 1)), t)

                def block(t0, t1):
                    i0, j0 = b.mul(t0, t), b.mul(t1, t)
                    n0 = b.select(b.icmp_signed("<", b.sub(d0, i0), t), b.sub(d0, i0), t)
                    n1 = b.select(b.icmp_signed("<", b.sub(d1, j0), t), b.sub(d1, j0), t)

                    def row(a):
                        i = b.add(i0, a)
                        base = b.mul(b.add(b.mul(lin, d0), i), d1)
                        offs_i = [b.add(o, b.mul(i, st[-2])) for o, st in zip(offs, strides)]

                        def col(c):
                            j = b.add(j0, c)
                            body(b.add(base, j),
                                 [b.add(o, b.mul(j, st[-1])) for o, st in zip(offs_i, strides)])
                        _loop(b, n1, col)
                    _loop(b, n0, row)
                _loop(b, count(d0), lambda t0: _loop(b, count(d1), lambda t1: block(t0, t1)))

            zero = ir.Constant(I64, 0)
            level(0, zero, [zero] * n_in)
        b.ret_void()

    def declare(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name=name)
        return fn


#: Block size of the tiled strided variant (a 16 x 16 float64 tile is 2 KiB).
TILE = 16


def _loop(b: ir.IRBuilder, n: ir.Value, body) -> None:
    """``for (i = 0; i < n; i++) body(i)``; the builder ends after the loop."""
    fn = b.function
    pre = b.block
    header, block, latch, done = (fn.append_basic_block(s) for s in
                                  ("loop", "body", "latch", "done"))
    b.branch(header)
    b.position_at_end(header)
    i = b.phi(I64, "i")
    i.add_incoming(ir.Constant(I64, 0), pre)
    b.cbranch(b.icmp_signed("<", i, n), block, done)
    b.position_at_end(block)
    body(i)
    b.branch(latch)
    b.position_at_end(latch)
    i.add_incoming(b.add(i, ir.Constant(I64, 1), flags=["nuw", "nsw"]), latch)
    b.branch(header)
    b.position_at_end(done)


# -- rendering scalar expressions ---------------------------------------------------------

def _const(value, dtype: str) -> ir.Constant:
    if dtype == "bool":
        return ir.Constant(I1, int(bool(value)))
    if dt.is_float(dtype):
        return ir.Constant(_REG[dtype], float(np.asarray(value).astype(dt.to_numpy(dtype))))
    bits = _REG[dtype].width
    v = int(value) & ((1 << bits) - 1)
    return ir.Constant(_REG[dtype], v - (1 << bits) if v >> (bits - 1) else v)


class _Emitter:
    """Renders scalar expressions at one element, memoized per expression node."""

    def __init__(self, b: ir.IRBuilder, mb: ModuleBuilder, spec: KernelSpec, ins, offsets,
                 index):
        self.b, self.mb, self.spec, self.ins, self.offsets, self.index = \
            b, mb, spec, ins, offsets, index
        self.memo: dict[int, ir.Value] = {}

    def value(self, e: S.Expr) -> ir.Value:
        v = self.memo.get(id(e))
        if v is None:
            v = self.memo[id(e)] = self._render(e)
        return v

    def _render(self, e: S.Expr) -> ir.Value:
        if e.fn == "arg":
            j = e.value
            t = self.spec.in_types[j].dtype
            ptr = self.b.gep(self.ins[j], [self.offsets[j]], inbounds=True,
                             source_etype=_MEM[t])
            v = self.b.load(ptr, typ=_MEM[t])
            if t == "bool":
                v = self.b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
            return self.convert(v, t, e.dtype)
        if e.fn == "const":
            return _const(e.value, e.dtype)
        if e.fn == "index":
            return self.index
        if e.fn == "cast":
            return self.convert(self.value(e.args[0]), e.args[0].dtype, e.dtype)
        method = getattr(self, "_p_" + e.fn, None)
        if method is None:
            raise Unsupported(f"scalar primitive {e.fn!r}")
        return method(e)

    def operands(self, e: S.Expr, dtype: str) -> list[ir.Value]:
        return [self.convert(self.value(a), a.dtype, dtype) for a in e.args]

    # -- conversions (numpy astype semantics) --------------------------------------------
    def convert(self, v: ir.Value, src: str, dst: str) -> ir.Value:
        b = self.b
        if src == dst:
            return v
        if dst == "bool":
            if dt.is_float(src):
                return b.fcmp_unordered("!=", v, ir.Constant(_REG[src], 0.0))
            return b.icmp_unsigned("!=", v, ir.Constant(_REG[src], 0))
        if src == "bool":
            return b.uitofp(v, _REG[dst]) if dt.is_float(dst) else b.zext(v, _REG[dst])
        if dt.is_float(src) and dt.is_float(dst):
            order = ("float16", "float32", "float64")
            wider = order.index(dst) > order.index(src)
            return b.fpext(v, _REG[dst]) if wider else b.fptrunc(v, _REG[dst])
        if dt.is_float(dst):
            return b.sitofp(v, _REG[dst])
        if dt.is_float(src):  # truncate; NaN and out of range give INT_MIN as x86 numpy
            if src == "float16":
                v, src = b.fpext(v, _REG["float32"]), "float32"
            bits = _REG[dst].width
            lo, hi = _const(-2.0 ** (bits - 1), src), _const(2.0 ** (bits - 1), src)
            ok = b.and_(b.fcmp_ordered(">=", v, lo), b.fcmp_ordered("<", v, hi))
            return b.select(ok, b.fptosi(v, _REG[dst]), _const(-(1 << (bits - 1)), dst))
        if _REG[dst].width > _REG[src].width:
            return b.sext(v, _REG[dst])
        return b.trunc(v, _REG[dst])

    # -- calls ---------------------------------------------------------------------------
    def intrinsic(self, name: str, dtype: str, *vals: ir.Value) -> ir.Value:
        ty = _REG[dtype]
        fn = self.mb.declare(f"llvm.{name}.{_LLVM_SUFFIX[dtype]}", ty, [ty] * len(vals))
        return self.b.call(fn, list(vals))

    def transcendental(self, name: str, e: S.Expr) -> ir.Value:
        dtype = e.dtype
        if not dt.is_float(dtype):
            raise Unsupported(f"{name} of {dtype}")
        vals = self.operands(e, dtype)
        compute = "float32" if dtype == "float16" else dtype
        vals = [self.convert(v, dtype, compute) for v in vals]
        out = None
        emit = self.mb.vmath.get(name)
        if emit is not None:
            try:
                out = emit(self.b, *vals)
            except (NotImplementedError, TypeError, KeyError, ValueError):
                out = None
        if out is None and name in _INTRINSIC:
            out = self.intrinsic(name, compute, *vals)
        elif out is None:
            libm = name + ("f" if compute == "float32" else "")
            ty = _REG[compute]
            out = self.b.call(self.mb.declare(libm, ty, [ty] * len(vals)), vals)
        return self.convert(out, compute, dtype)

    # -- primitives ----------------------------------------------------------------------
    def _arith(self, e, fop, iop, bop=None):
        a, c = self.operands(e, e.dtype)
        if dt.is_float(e.dtype):
            return getattr(self.b, fop)(a, c)
        if e.dtype == "bool":  # numpy: bool + bool is or, bool * bool is and
            if bop is None:
                raise Unsupported(f"{e.fn} on bool")
            return getattr(self.b, bop)(a, c)
        return getattr(self.b, iop)(a, c)

    def _p_add(self, e): return self._arith(e, "fadd", "add", "or_")
    def _p_sub(self, e): return self._arith(e, "fsub", "sub")
    def _p_mul(self, e): return self._arith(e, "fmul", "mul", "and_")

    def _p_div(self, e):
        if not dt.is_float(e.dtype):
            raise Unsupported(f"div of {e.dtype}")
        return self.b.fdiv(*self.operands(e, e.dtype))

    def _minmax(self, e, op):
        a, c = self.operands(e, e.dtype)
        b = self.b
        if dt.is_float(e.dtype):  # NaN in a wins, else (a op c ? a : c): NaN in c wins
            if e.dtype == "float16":
                op += "="  # numpy's half loops return a on ties, the others c
            pick = b.select(b.fcmp_ordered(op, a, c), a, c)
            return b.select(b.fcmp_unordered("uno", a, a), a, pick)
        if e.dtype == "bool":
            return b.select(b.icmp_unsigned(op, a, c), a, c)
        return b.select(b.icmp_signed(op, a, c), a, c)

    def _p_max(self, e): return self._minmax(e, ">")
    def _p_min(self, e): return self._minmax(e, "<")

    def _compare(self, e, op):
        dtype = dt.promote(*(a.dtype for a in e.args))
        a, c = self.operands(e, dtype)
        if dt.is_float(dtype):
            if op == "!=":
                return self.b.fcmp_unordered(op, a, c)
            return self.b.fcmp_ordered(op, a, c)
        if dtype == "bool":
            return self.b.icmp_unsigned(op, a, c)
        return self.b.icmp_signed(op, a, c)

    def _p_lt(self, e): return self._compare(e, "<")
    def _p_le(self, e): return self._compare(e, "<=")
    def _p_gt(self, e): return self._compare(e, ">")
    def _p_ge(self, e): return self._compare(e, ">=")
    def _p_eq(self, e): return self._compare(e, "==")
    def _p_ne(self, e): return self._compare(e, "!=")

    def _bitwise(self, e, op):
        if dt.is_float(e.dtype):
            raise Unsupported(f"{e.fn} on {e.dtype}")
        return getattr(self.b, op)(*self.operands(e, e.dtype))

    def _p_and(self, e): return self._bitwise(e, "and_")
    def _p_or(self, e): return self._bitwise(e, "or_")
    def _p_xor(self, e): return self._bitwise(e, "xor")

    def _p_not(self, e):
        (a,) = self.operands(e, "bool")
        return self.b.xor(a, ir.Constant(I1, 1))

    def _shift(self, e, op):
        if e.dtype not in dt.INTS:
            raise Unsupported(f"{e.fn} on {e.dtype}")
        a, s = self.operands(e, e.dtype)
        ty, b = _REG[e.dtype], self.b
        if op == "lshr" and ty.width > 32:
            a = b.and_(a, ir.Constant(ty, 0xFFFFFFFF))  # the low 32 bits, logically
        r = getattr(b, op)(a, s)
        big = b.icmp_unsigned(">=", s, ir.Constant(ty, ty.width))
        return b.select(big, ir.Constant(ty, 0), r)

    def _p_shr(self, e): return self._shift(e, "lshr")
    def _p_shl(self, e): return self._shift(e, "shl")

    def _p_neg(self, e):
        (a,) = self.operands(e, e.dtype)
        if dt.is_float(e.dtype):
            return self.b.fneg(a)
        if e.dtype == "bool":
            raise Unsupported("neg on bool")
        return self.b.sub(ir.Constant(_REG[e.dtype], 0), a)

    def _p_abs(self, e):
        (a,) = self.operands(e, e.dtype)
        if dt.is_float(e.dtype):
            return self.intrinsic("fabs", e.dtype, a)
        if e.dtype == "bool":
            return a
        neg = self.b.sub(ir.Constant(_REG[e.dtype], 0), a)
        return self.b.select(self.b.icmp_signed("<", a, ir.Constant(_REG[e.dtype], 0)), neg, a)

    def _rounding(self, e, name):
        (a,) = self.operands(e, e.dtype)
        return self.intrinsic(name, e.dtype, a) if dt.is_float(e.dtype) else a

    def _p_floor(self, e): return self._rounding(e, "floor")
    def _p_ceil(self, e): return self._rounding(e, "ceil")
    def _p_rint(self, e): return self._rounding(e, "roundeven")

    def _p_sqrt(self, e):
        if not dt.is_float(e.dtype):
            raise Unsupported(f"sqrt of {e.dtype}")
        return self.intrinsic("sqrt", e.dtype, *self.operands(e, e.dtype))

    def _p_exp(self, e): return self.transcendental("exp", e)
    def _p_log(self, e): return self.transcendental("log", e)
    def _p_log1p(self, e): return self.transcendental("log1p", e)
    def _p_expm1(self, e): return self.transcendental("expm1", e)
    def _p_sin(self, e): return self.transcendental("sin", e)
    def _p_cos(self, e): return self.transcendental("cos", e)
    def _p_tanh(self, e): return self.transcendental("tanh", e)
    def _p_erf(self, e): return self.transcendental("erf", e)

    def _p_pow(self, e):
        if dt.is_float(e.dtype):
            return self.transcendental("pow", e)
        if e.dtype == "bool":
            raise Unsupported("pow on bool")
        return self._int_pow(*self.operands(e, e.dtype), _REG[e.dtype])

    def _int_pow(self, x, n, ty):
        """Square and multiply; wraps like numpy; a negative exponent gives 0."""
        b = self.b
        fn = b.function
        pre = b.block
        head, step, done = (fn.append_basic_block(s) for s in ("pow", "pow_step", "pow_done"))
        b.branch(head)
        b.position_at_end(head)
        acc, base, k = b.phi(ty), b.phi(ty), b.phi(ty)
        for phi, init in ((acc, ir.Constant(ty, 1)), (base, x), (k, n)):
            phi.add_incoming(init, pre)
        b.cbranch(b.icmp_signed(">", k, ir.Constant(ty, 0)), step, done)
        b.position_at_end(step)
        odd = b.trunc(k, I1)
        acc.add_incoming(b.select(odd, b.mul(acc, base), acc), step)
        base.add_incoming(b.mul(base, base), step)
        k.add_incoming(b.lshr(k, ir.Constant(ty, 1)), step)
        b.branch(head)
        b.position_at_end(done)
        return b.select(b.icmp_signed("<", n, ir.Constant(ty, 0)), ir.Constant(ty, 0), acc)

    def _p_select(self, e):
        c = self.convert(self.value(e.args[0]), e.args[0].dtype, "bool")
        a = self.convert(self.value(e.args[1]), e.args[1].dtype, e.dtype)
        d = self.convert(self.value(e.args[2]), e.args[2].dtype, e.dtype)
        return self.b.select(c, a, d)
