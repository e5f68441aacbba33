"""LLVM IR for reductions: single REDUCTION nodes and fused row-wise ``reduction`` kernels.

Both are rendered from the ops' facts, never their names: a reduction folds with its
`Reduction.combiner` (a scalar primitive name, looked up in `_COMBINE`) from its
``identity`` and applies its ``finalize`` (`_FINALIZE`); elementwise body nodes are their
scalar expressions, rendered by `codegen._Emitter`.

Kernels (sizes are arguments, so one function serves every shape):

- ``<name>_rows(in..., out..., rows, n)``: a loop over ``rows`` rows of ``n`` elements with,
  per row, one inner pass per level of the chain of reductions (softmax: max, then sum of
  ``exp(x - max)``), then a pass writing the full-shape outputs and the per-row outputs.
  Inputs are read by kind (`RowSpec.in_kinds`): ``full`` (contiguous rows; the runtime
  broadcasts other inputs to S and moves reduced axes that are not trailing last), ``col``
  (one row, broadcast to every row: layer norm's gamma), ``row`` (one element per row),
  and ``scalar``. A single reduction node is the same kernel with one pass: the runtime
  moves the reduced axes last (copying when that is not a view).
- ``<name>_cols(in, out, outer, m, inner)``: a single reduction over a middle block of a
  contiguous input's axes, seen as (outer, m, inner); it folds whole rows of ``inner``
  elements into the output, a loop LLVM vectorizes without reassociation.

Numerics: every fold starts from the declared identity (so sums of -0.0 are +0.0 and empty
sums 0.0, as numpy). Row max/min fold with ``llvm.maximum``/``llvm.minimum`` (vectorized,
NaN propagates as in numpy); a zero result then becomes the row's last zero, as numpy's
scalar fold gives (numpy's own SIMD loops on long rows may pick another zero's sign).
Column folds render the combiner as the scalar primitive (numpy's elementwise semantics).
The row sums carry the fast-math flag ``reassoc`` (and only they) so LLVM vectorizes them
with several partial sums: this changes rounding like numpy's own pairwise summation does
(within float tolerance, not bit-identical). Products fold in order. Only float32/float64
reductions are generated (others raise `Unsupported` and fall back); argmax/argmin have no
combiner here and fall back.
"""

from __future__ import annotations

from llvmlite import ir

from ...ops import scalar as S
from ..kernel_specs import FLOATS, Reduce, RowSpec, Unsupported
from .codegen import (
    _MEM,
    _REG,
    I64,
    PTR,
    ModuleBuilder,
    _const,
    _Emitter,
    _loop,
)


def _fold_add(em, acc, x):
    return em.b.fadd(acc, x, flags=("reassoc",))


def _fold_mul(em, acc, x):
    return em.b.fmul(acc, x)


def _fold_intrinsic(name):
    def fold(em, acc, x):
        return em.b.call(em.mb.declare(f"llvm.{name}.{_suffix(acc.type)}", acc.type,
                                       [acc.type, acc.type]), [acc, x])
    return fold


def _suffix(ty) -> str:
    return "f32" if isinstance(ty, ir.FloatType) else "f64"


#: combiner primitive -> fold(emitter, acc, x)
_COMBINE = {"add": _fold_add, "mul": _fold_mul,
            "max": _fold_intrinsic("maximum"), "min": _fold_intrinsic("minimum")}
#: Combiners whose ties between -0.0 and +0.0 numpy's scalar fold resolves to the later
#: element: a zero result is replaced by the row's last zero (`_last_zero`).
_ZERO_TIES = ("max", "min")
#: finalize -> f(builder, acc, count as float)
_FINALIZE = {None: lambda b, acc, n: acc, "mean": lambda b, acc, n: b.fdiv(acc, n)}


class _Args:
    """What `_Emitter` reads of a kernel spec."""

    def __init__(self, in_types):
        self.in_types = in_types


class ReduceModuleBuilder:
    """Adds row and column kernels to a `codegen.ModuleBuilder`'s module (deduplicated)."""

    def __init__(self, mb: ModuleBuilder):
        self.mb, self.module = mb, mb.module
        self.functions: dict[tuple, str] = {}

    def add_rows(self, spec: RowSpec) -> str:
        key = ("rows", spec.key())
        if key not in self.functions:
            self.functions[key] = self._define(spec.name + "_rows", spec, self._rows)
        return self.functions[key]

    def add_cols(self, spec: RowSpec) -> str:
        key = ("cols", spec.key())
        if key not in self.functions:
            self.functions[key] = self._define(spec.name + "_cols", spec, self._cols)
        return self.functions[key]

    def _define(self, name, spec, define) -> str:
        n = len(spec.in_types) + len(spec.outs)
        extra = 2 if define == self._rows else 3
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR] * n + [I64] * extra),
                         name=name)
        for a in fn.args[:n]:
            a.add_attribute("noalias")
            a.add_attribute("captures(none)")
        try:
            b = ir.IRBuilder(fn.append_basic_block("entry"))
            define(b, fn, spec)
            b.ret_void()
        except Unsupported:
            del self.module.globals[name]
            raise
        except (AttributeError, TypeError, KeyError) as e:  # e.g. a full input at row level
            del self.module.globals[name]
            raise Unsupported(f"cannot render row kernel: {e}") from None
        return name

    def _emitter(self, b, spec, ins, offsets, memo):
        em = _Emitter(b, self.mb, _Args(spec.in_types), ins, offsets, None)
        em.memo.update(memo)
        return em

    def _finish(self, b, red: Reduce, acc, n):
        """The reduction's result from its folded accumulator over ``n`` elements."""
        return _FINALIZE[red.finalize](b, acc, b.sitofp(n, _REG[red.dtype]))

    def _start(self, red: Reduce):
        return _const(red.identity, red.dtype)

    def _rows(self, b: ir.IRBuilder, fn: ir.Function, spec: RowSpec) -> None:
        n_in = len(spec.in_types)
        ins, outs = fn.args[:n_in], fn.args[n_in:-2]
        rows, n = fn.args[-2], fn.args[-1]
        zero = ir.Constant(I64, 0)
        full = [(p, dtype, e) for p, (lv, dtype, e) in zip(outs, spec.outs) if lv == "full"]
        stash = _stash(spec, full)

        def row(r):
            base = b.mul(r, n)
            # per-row code reads no full input, unless rows have one element (index r)
            row_offsets = _Offsets(r if k == "row" or k == "full" and spec.unit_rows
                                   else zero if k == "scalar" else None
                                   for k in spec.in_kinds)
            row_em = self._emitter(b, spec, ins, row_offsets, {})

            def offsets(i):
                full = b.add(base, i)
                return [full if k == "full" else i if k == "col" else r if k == "row" else zero
                        for k in spec.in_kinds]
            for d in range(1, spec.depth + 1):
                reds = [red for red in spec.reds if red.depth == d]

                def step(i, accs, reds=reds, last=d == spec.depth):
                    em = self._emitter(b, spec, ins, offsets(i), row_em.memo)
                    new = [_COMBINE[red.combiner](em, acc, em.convert(
                        em.value(red.expr), red.expr.dtype, red.dtype))
                        for red, acc in zip(reds, accs)]
                    if last and stash is not None:
                        _store(b, stash[0], b.add(base, i), em.value(stash[1]), stash[1].dtype)
                    return new
                accs = _fold_loop(b, n, [self._start(red) for red in reds], step)
                for red, acc in zip(reds, accs):
                    if red.combiner in _ZERO_TIES:
                        acc = self._last_zero(b, spec, ins, offsets, row_em.memo, red, acc, n)
                    row_em.memo[id(red.out)] = self._finish(b, red, acc, n)
            if full:
                def write(i):
                    em = self._emitter(b, spec, ins, offsets(i), row_em.memo)
                    if stash is not None:
                        p, e = stash
                        em.memo[id(e)] = b.load(b.gep(p, [b.add(base, i)], inbounds=True,
                                                      source_etype=_MEM[e.dtype]),
                                                typ=_MEM[e.dtype])
                    for p, dtype, e in full:
                        _store(b, p, b.add(base, i), em.convert(em.value(e), e.dtype, dtype),
                               dtype)
                _loop(b, n, write)
            for p, (lv, dtype, e) in zip(outs, spec.outs):
                if lv == "row":
                    _store(b, p, r, row_em.convert(row_em.value(e), e.dtype, dtype), dtype)
        _loop(b, rows, row)

    def _last_zero(self, b, spec, ins, offsets, memo, red: Reduce, acc, n):
        """``acc``, or if it is a zero, the row's last zero (numpy's scalar max/min keep
        the later of two equal operands; the vectorized ``llvm.maximum`` prefers +0.0).
        Rows whose extreme is exactly zero are rare, so this scalar pass rarely runs."""
        pre = b.block
        with b.if_then(b.fcmp_ordered("==", acc, _const(0.0, red.dtype)), likely=False):
            def step(i, zs):
                em = self._emitter(b, spec, ins, offsets(i), memo)
                x = em.convert(em.value(red.expr), red.expr.dtype, red.dtype)
                return [b.select(b.fcmp_ordered("==", x, zs[0]), x, zs[0])]
            (z,) = _fold_loop(b, n, [acc], step)
            end = b.block
        out = b.phi(acc.type)
        out.add_incoming(acc, pre)
        out.add_incoming(z, end)
        return out

    def _cols(self, b: ir.IRBuilder, fn: ir.Function, spec: RowSpec) -> None:
        (red,) = spec.reds
        x, out = fn.args[0], fn.args[1]
        outer, m, inner = fn.args[2:5]
        ty = _MEM[red.dtype]
        acc = S.Expr("reduced", (), -1, red.dtype)
        combine = S.Expr(red.combiner, (acc, S.cast(red.expr, red.dtype)), None, red.dtype)

        def block(o):
            base = b.mul(o, inner)

            def at(j):
                return b.gep(out, [b.add(base, j)], inbounds=True, source_etype=ty)
            _loop(b, inner, lambda j: b.store(self._start(red), at(j)))

            def fold(r):
                src = b.mul(b.add(b.mul(o, m), r), inner)

                def step(j):  # numpy's elementwise combiner: lanes are independent
                    em = self._emitter(b, spec, [x], [b.add(src, j)],
                                       {id(acc): b.load(at(j), typ=ty)})
                    b.store(em.value(combine), at(j))
                _loop(b, inner, step)
            _loop(b, m, fold)
            _loop(b, inner, lambda j: b.store(self._finish(b, red, b.load(at(j), typ=ty), m),
                                              at(j)))
        _loop(b, outer, block)


def _contains(e: S.Expr, part: S.Expr, seen: set) -> bool:
    if e is part:
        return True
    if id(e) in seen:
        return False
    seen.add(id(e))
    return any(_contains(a, part, seen) for a in e.args)


def _stash(spec: RowSpec, full: list) -> tuple | None:
    """(output pointer, value): a value the last reduction pass folds and a full output
    also needs (softmax's ``exp(x - max)``), stored into that output during the pass and
    read back by the writing pass instead of being computed twice."""
    for red in spec.reds:
        e = red.expr
        if red.depth != spec.depth or e.fn in ("arg", "const") or e.dtype not in FLOATS:
            continue
        for p, dtype, out in full:
            if dtype == e.dtype and _contains(out, e, set()):
                return p, e
    return None


class _Offsets(list):
    """Per-input offsets; None marks an input that cannot be read here (`Unsupported`)."""

    def __getitem__(self, j):
        v = super().__getitem__(j)
        if v is None:
            raise Unsupported("a per-row value reads a full-size input")
        return v


def _store(b, ptr, index, v, dtype) -> None:
    if dtype == "bool":
        v = b.zext(v, _MEM["bool"])
    b.store(v, b.gep(ptr, [index], inbounds=True, source_etype=_MEM[dtype]))


def _fold_loop(b: ir.IRBuilder, n, inits: list, step) -> list:
    """``for (i = 0; i < n; i++) accs = step(i, accs)``; returns the final accumulators."""
    fn = b.function
    pre = b.block
    header, body, done = (fn.append_basic_block(s) for s in ("fold", "fold_body", "fold_done"))
    b.branch(header)
    b.position_at_end(header)
    i = b.phi(I64, "i")
    i.add_incoming(ir.Constant(I64, 0), pre)
    accs = []
    for init in inits:
        phi = b.phi(init.type)
        phi.add_incoming(init, pre)
        accs.append(phi)
    b.cbranch(b.icmp_signed("<", i, n), body, done)
    b.position_at_end(body)
    new = step(i, accs)
    end = b.block
    i.add_incoming(b.add(i, ir.Constant(I64, 1), flags=["nuw", "nsw"]), end)
    for phi, v in zip(accs, new):
        phi.add_incoming(v, end)
    b.branch(header)
    b.position_at_end(done)
    return accs
