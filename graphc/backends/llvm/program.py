"""One native entry point per compiled graph, over the memory plan's arena.

The runtime's kernels (`runtime._Kernel`, `runtime._RowKernel`, `library_codegen`...) can
each run from Python on numpy arrays. A `Program` runs them without Python instead: every
value of the graph gets a static *location* — a slot of a pointer table plus a byte offset,
with the layout (shape, strides) the value has there — and each kernel that can run on
those static locations describes its work as native `Call`s (function, arguments). Calls
between two steps that need Python are emitted as one LLVM function, a *segment*
``seg<i>(ptr slots)``; for a graph whose kernels are all native (the common case) a call
of the executable is ONE native call.

Slots: 0 is the arena (one allocation per executable, laid out by
`graphc.passes.memory.plan_memory`), then per-call slots (runtime inputs, output buffers),
then fixed ones (constants, GEMM scratch, staging copies). Reading a numpy array's data
pointer costs about 1 us from Python, so per call:

- an input that is the same array object as in the previous call keeps its slot (the
  array is kept alive, so its pointer cannot change); parameters hit this every call;
- a small input (<= `STAGE_BYTES`) is copied into a fixed staging buffer (a 100 ns copy);
- a small output buffer is computed in a fixed staging buffer and copied out at the end
  (results never alias memory a later call overwrites); a large one is a fresh array.

Steps that stay in Python (nodes the interpreter runs, kernels whose inputs need
a layout change, convolution...) read their inputs from numpy views of the same
locations and copy their results into their planned homes, so the native code after them
finds them there. Views cost nothing natively: a view's location is its base's slot and an
offset, with strides, found by running the view op once at construction on real memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter_ns

import numpy as np
from llvmlite import ir

from ... import dtypes as dt
from ... import profiler
from ...graph import Value
from ..locations import (  # noqa: F401  (Loc, NotStatic, overlap: used by the kernels)
    Loc,
    Locations,
    NotStatic,
    Ptr,
    address,
    overlap,
    strides_table,
)
from .codegen import I64, PTR

#: Inputs and output buffers up to this many bytes are copied through fixed staging
#: buffers instead of handing their data pointer to the native code per call.
STAGE_BYTES = 1 << 14

_TYPES = {"i32": ir.IntType(32), "i64": I64, "f32": ir.FloatType(), "f64": ir.DoubleType()}


@dataclass(frozen=True)
class Call:
    """One native call: ``fn`` (a function of the module, or an external symbol declared
    with ``ret``) and its arguments: `Ptr`, ("i64"|"i32"|"f32"|"f64", number), or an int64
    numpy table (emitted as a constant global)."""

    fn: str
    args: tuple
    #: how to split the call across threads: (index of the count argument, bytes each
    #: argument advances per counted item: 0 for arguments that stay), or None
    split: tuple | None = None
    #: chunk sizes are a multiple of this (64 items: whole vectors; 1: images, rows)
    grain: int = 64
    #: work per counted item, for `threads.PARALLEL_MIN` (None: a row kernel's row length)
    work: int | None = None


def emit_segment(module: ir.Module, name: str, calls: list[Call]) -> str:
    """The segment function ``name(ptr slots)`` making ``calls`` in order; a call with
    a ``split`` over at least `threads.PARALLEL_MIN` items runs in one chunk per thread."""
    from . import threads
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR]), name=name)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    tables: list = []
    after_blas = False
    for k, call in enumerate(calls):
        count = call.args[call.split[0]][1] if call.split else 0
        per = (call.work if call.work is not None else max(1, _row_items(call))) \
            if call.split else 1
        # after a BLAS call, OpenBLAS's threads spin-wait on the other cores for a while:
        # threads of ours would fight them (measured 12 ms vs 9 ms on W8 with 2 cores)
        if call.split is None or count < 2 or count * per < threads.PARALLEL_MIN or \
                after_blas:
            _emit_call(module, b, fn.args[0], call, None, name, tables)
            after_blas = after_blas or call.fn not in module.globals or \
                module.globals[call.fn].is_declaration
            continue
        worker = _emit_worker(module, f"{name}_w{k}", call, name, tables)
        _emit_parallel(module, b, fn.args[0], worker, count, call.grain)
    b.ret_void()
    return name


def _row_items(call: Call) -> int:
    """Items per counted unit (a row kernel's row length), for the parallel threshold."""
    i = call.split[0]
    return call.args[i + 1][1] if i + 1 < len(call.args) and isinstance(
        call.args[i + 1], tuple) else 1


def _emit_call(module, b: ir.IRBuilder, slots, call: Call, chunk, prefix: str,
               tables: list) -> None:
    """``call`` at builder ``b``; ``chunk``: (start, count) values of a split call."""
    bases: dict[int, ir.Value] = {}
    args = []
    for j, a in enumerate(call.args):
        if isinstance(a, Ptr):
            if a.slot not in bases:
                bases[a.slot] = b.load(b.gep(slots, [ir.Constant(I64, a.slot)],
                                             inbounds=True, source_etype=PTR), typ=PTR)
            p = bases[a.slot]
            off = ir.Constant(I64, a.offset)
            if chunk is not None and call.split[1][j]:
                off = b.add(off, b.mul(chunk[0], ir.Constant(I64, call.split[1][j])))
            args.append(p if a.offset == 0 and chunk is None else
                        b.gep(p, [off], source_etype=ir.IntType(8)))
        elif isinstance(a, np.ndarray):
            flat = [int(x) for x in a.reshape(-1)]
            ty = ir.ArrayType(I64, len(flat))
            g = ir.GlobalVariable(module, ty, name=f"{prefix}_t{len(tables)}")
            tables.append(g)
            g.global_constant = True
            g.linkage = "private"
            g.initializer = ir.Constant(ty, flat)
            args.append(g)
        elif chunk is not None and j == call.split[0]:
            args.append(chunk[1])
        else:
            args.append(ir.Constant(_TYPES[a[0]], a[1]))
    target = module.globals.get(call.fn)
    if target is None:   # an external symbol (BLAS)
        target = ir.Function(module, ir.FunctionType(ir.VoidType(), [a.type for a in args]),
                             name=call.fn)
    b.call(target, args)


_CTX = ir.LiteralStructType([PTR, I64, I64])   # slots, start, count


def _emit_worker(module, name: str, call: Call, prefix: str, tables: list) -> ir.Function:
    """``ptr name(ptr ctx)``: the call over the chunk in ``ctx`` (a pthread start routine)."""
    fn = ir.Function(module, ir.FunctionType(PTR, [PTR]), name=name)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    ctx = fn.args[0]
    field = [b.load(b.gep(ctx, [ir.Constant(ir.IntType(32), 0), ir.Constant(ir.IntType(32), i)],
                          inbounds=True, source_etype=_CTX), typ=t)
             for i, t in enumerate((PTR, I64, I64))]
    _emit_call(module, b, field[0], call, (field[1], field[2]), prefix, tables)
    b.ret(ir.Constant(PTR, None))
    return fn


def _extern(module, name: str, ty) -> ir.Value:
    g = module.globals.get(name)
    if g is None:
        g = ir.Function(module, ty, name=name) if isinstance(ty, ir.FunctionType) else \
            ir.GlobalVariable(module, ty, name=name)
    return g


def _emit_parallel(module, b: ir.IRBuilder, slots, worker: ir.Function, count: int,
                   grain: int) -> None:
    """Run ``worker`` over ``count`` items in T = graphc_num_threads chunks: T-1 new
    threads and this one, then join them."""
    from .codegen import _loop
    from .threads import MAX_THREADS
    i32 = ir.IntType(32)
    create = _extern(module, "pthread_create", ir.FunctionType(i32, [PTR, PTR, PTR, PTR]))
    join = _extern(module, "pthread_join", ir.FunctionType(i32, [I64, PTR]))
    nthreads = _extern(module, "graphc_num_threads", I64)
    t = b.load(nthreads, typ=I64)
    t = b.select(b.icmp_signed("<", t, ir.Constant(I64, 1)), ir.Constant(I64, 1), t)
    t = b.select(b.icmp_signed(">", t, ir.Constant(I64, MAX_THREADS)),
                 ir.Constant(I64, MAX_THREADS), t)
    t = b.select(b.icmp_signed(">", t, ir.Constant(I64, count)), ir.Constant(I64, count), t)
    n = ir.Constant(I64, count)
    # chunk = ceil(count / t), rounded up to the grain (64 items: chunks start on whole
    # vectors)
    chunk = b.sdiv(b.add(n, b.sub(t, ir.Constant(I64, 1))), t)
    if grain > 1:
        assert grain & (grain - 1) == 0, grain
        chunk = b.and_(b.add(chunk, ir.Constant(I64, grain - 1)), ir.Constant(I64, -grain))
    ctxs = b.alloca(_CTX, size=ir.Constant(I64, MAX_THREADS))
    tids = b.alloca(I64, size=ir.Constant(I64, MAX_THREADS))

    def fill(i):
        start = b.mul(i, chunk)
        start = b.select(b.icmp_signed(">", start, n), n, start)
        left = b.sub(n, start)
        cnt = b.select(b.icmp_signed("<", left, chunk), left, chunk)
        ctx = b.gep(ctxs, [i])   # (typed pointers from alloca: no source_etype)
        for k, v in enumerate((slots, start, cnt)):
            b.store(v, b.gep(ctx, [ir.Constant(i32, 0), ir.Constant(i32, k)]))
        return ctx

    extra = b.sub(t, ir.Constant(I64, 1))

    def spawn(i):
        j = b.add(i, ir.Constant(I64, 1))
        ctx = fill(j)
        tid = b.gep(tids, [j])
        rc = b.call(create, [tid, ir.Constant(PTR, None), worker, ctx])
        with b.if_then(b.icmp_signed("!=", rc, ir.Constant(i32, 0))):
            b.call(worker, [ctx])   # no thread: run that chunk here
            b.store(ir.Constant(I64, 0), tid)
    _loop(b, extra, spawn)
    b.call(worker, [fill(ir.Constant(I64, 0))])

    def wait(i):
        tid = b.load(b.gep(tids, [b.add(i, ir.Constant(I64, 1))]), typ=I64)
        with b.if_then(b.icmp_signed("!=", tid, ir.Constant(I64, 0))):
            b.call(join, [tid, ir.Constant(PTR, None)])
    _loop(b, extra, wait)


def _readable(loc: Loc, dtype) -> bool:
    a = loc.array
    return a.dtype == dtype and a.dtype.isnative and bool(a.flags.aligned)


def elementwise_calls(spec, names: dict, ins: list[Loc], outs: list[Loc],
                      builder=None) -> list | None:
    """An elementwise kernel (`kernel_specs.KernelSpec`, its function ``names``) as native
    calls over static locations: the flat variant when every full-size input is
    contiguous, else the strided one with a constant stride table (emitted into
    ``builder`` now if the kernel had only a flat variant: a view read in place beats a
    copy); None if neither can be had."""
    if spec.size == 0:
        return []
    if not all(o.contiguous and _readable(o, o.array.dtype) for o in outs) or \
            not all(_readable(a, dt.to_numpy(t.dtype)) for a, t in zip(ins, spec.in_types)):
        return None
    tail = [o.at(0) for o in outs]
    if "flat" in names and all(a.contiguous or a.array.size == 1 for a in ins):
        steps = [0 if a.array.size == 1 else a.array.itemsize for a in ins] + \
            [o.array.itemsize for o in outs] + [0]
        return [Call(names["flat"], (*[a.at(0) for a in ins], *tail, ("i64", spec.size)),
                     (len(steps) - 1, tuple(steps)))]
    table = strides_table(spec.domain, [a.array for a in ins])
    # an input read across its rows (innermost stride neither 0 nor 1): the tiled loops
    across = len(spec.domain) >= 2 and any(s not in (0, 1) for s in table[1:, -1])
    variant = "tiled" if across else "strided"
    if variant not in names and builder is not None and spec.domain:
        names[variant] = builder._shared(spec, True, tiled=across)
    if variant not in names and "strided" in names:
        variant = "strided"
    if variant in names:
        return [Call(names[variant], (*[a.at(0) for a in ins], *tail, table))]
    return None


def copy_calls(builder, src: Loc, dst: Loc, name: str) -> list | None:
    """Native calls copying ``src`` (any layout of ``dst``'s shape: a transposed or
    broadcast view) into the contiguous ``dst``, by a strided identity kernel."""
    from ...ops import scalar as S
    from ...types import TensorType
    from .codegen import KernelSpec
    dtype = dt.name_of(dst.array.dtype)
    spec = KernelSpec(name, [TensorType(src.array.shape, dtype)],
                      [TensorType(dst.array.shape, dtype)], [S.arg(0, dtype)])
    if spec.size == 0:
        return []
    names = {"strided": builder._shared(spec, True)} if spec.domain else \
        builder.add_kernel(spec)
    return elementwise_calls(spec, names, [src], [dst])


def scratch(at: Locations, shape: tuple, dtype) -> Loc:
    """A private buffer of the executable (a fixed slot), as a location."""
    a = np.empty(shape, dtype)
    return Loc(at.new_slot(a), 0, a)


class Program:
    """The schedule of a compiled graph: native segments and Python steps (see the module
    docstring). ``python_steps`` counts the steps that need Python per call."""

    def __init__(self, locations: Locations, schedule: list, outputs: list[Value],
                 step_nodes: list[list]):
        self.at = locations
        self.schedule = schedule        # [("native", segment name) | ("python", node, kernel)]
        self.graph_outputs = outputs
        self.python_steps = sum(1 for s in schedule if s[0] == "python")
        self.dying = None   # the sanitizer's poison list (see `poison_after`)
        #: per schedule entry, the nodes it runs (for `graphc.profiler`)
        self.step_nodes = step_nodes
        at = locations
        self.values = np.zeros(at.n_slots, np.int64)  # the pointer table
        self.table_address = address(self.values)
        for slot, a in at.fixed.items():
            self.values[slot] = address(a)
        self._last: list = [None] * len(at.inputs)
        self._misses = [0] * len(at.inputs)
        self._stage: list = [None] * len(at.inputs)
        self._in_specs = [(slot, v.shape, dt.to_numpy(v.dtype)) for slot, v in at.inputs]
        self._fresh = [(slot, at.home[root].shape, at.home[root].dtype)
                       for slot, root in at.outputs if slot not in at.fixed]
        inputs = {v.name: i for i, (_, v) in enumerate(at.inputs)}
        # per graph output: ("input", index) | ("copy", None) | ("home", None)
        self._out_kinds = []
        for v in outputs:
            slot = at.loc[v.name].slot if v.name in at.loc else None
            if v.name in inputs:
                self._out_kinds.append(("input", inputs[v.name]))
            elif 0 < slot <= len(at.inputs):
                # written over a donated input: that array, unless it is staged
                self._out_kinds.append(("donated", slot - 1))
            elif slot in at.fixed and v.role != "constant" and slot != 0:
                self._out_kinds.append(("copy", None))   # a staging or private buffer
            else:
                self._out_kinds.append(("home", None))
        self.buffers: dict[int, np.ndarray] = dict(at.fixed)  # slot -> array this call

    def poison_after(self, steps: list[int]) -> None:
        """Sanitizer: before schedule entry k (the plan step ``steps[k]``), poison every
        arena buffer whose lifetime ended before that step; the arena starts each call
        poisoned."""
        from ..reference import _poison, dead_buffers
        self._poison = _poison
        self.dying = dead_buffers(self.at.plan, steps, self.at.arena)

    def bind(self, module) -> Program:
        import ctypes
        self.steps = []
        for step in self.schedule:
            if step[0] == "native":
                self.steps.append((module.function(step[1], [ctypes.c_void_p]), None, None))
            else:
                self.steps.append((None, step[1], step[2]))
        return self

    def run(self, arrays, run_python) -> list:
        """One call: point the per-call slots at this call's arrays, run the schedule,
        return the graph's outputs. ``run_python(node, kernel, env)`` runs a Python step."""
        values, buffers = self.values, self.buffers
        for i, (slot, shape, dtype) in enumerate(self._in_specs):
            a = arrays[i]
            if a is self._last[i]:
                continue
            stage = self._stage[i]
            if stage is not None:
                stage[...] = a
                continue
            if type(a) is not np.ndarray:   # a numpy scalar's pointer is a temporary's
                a = np.asarray(a)
            if not (a.flags.c_contiguous and a.flags.aligned and a.dtype.isnative):
                a = np.ascontiguousarray(a, dtype.newbyteorder("="))
            if self._last[i] is not None:
                self._misses[i] += 1
                if self._misses[i] > 1 and a.nbytes <= STAGE_BYTES:
                    # a new array every call: copy it into a fixed buffer from now on
                    stage = self._stage[i] = np.empty(shape, dtype.newbyteorder("="))
                    stage[...] = a
                    values[slot] = address(stage)
                    buffers[slot] = stage
                    self._last[i] = None
                    continue
            values[slot] = address(a)
            buffers[slot] = self._last[i] = a
        for slot, shape, dtype in self._fresh:
            out = np.empty(shape, dtype)
            values[slot] = address(out)
            buffers[slot] = out
        env = None
        dying = self.dying
        if dying is not None:
            self.at.arena.fill(0xFF)   # NaN in every float dtype
        prof = profiler._ACTIVE
        for k, (fn, node, kernel) in enumerate(self.steps):
            if dying is not None:
                for flat, dtype in dying[k]:
                    self._poison(flat, dtype, np)
            if prof is not None:
                t = perf_counter_ns()
            if fn is not None:
                fn(self.table_address)
                if prof is not None:
                    prof.record(self.step_nodes[k], t, perf_counter_ns() - t)
                continue
            if env is None:
                env = {}
            for v in node.inputs:
                env[id(v)] = self.home(v)
            run_python(node, kernel, env)
            for v in node.outputs:
                if v.name not in self.at.plan.aliases:
                    home = self.home(v)
                    r = env[id(v)]
                    if r is not home:
                        np.copyto(home, r)
            if prof is not None:
                prof.record(self.step_nodes[k], t, perf_counter_ns() - t)
        outs = []
        for v, (kind, i) in zip(self.graph_outputs, self._out_kinds):
            if kind == "input":
                outs.append(arrays[i])
            elif kind == "donated":
                home = self.home(v)
                outs.append(home if self._stage[i] is None else home.copy())
            else:
                home = self.home(v)
                outs.append(home.copy() if kind == "copy" else home)
        return outs

    def home(self, v: Value) -> np.ndarray:
        """Value ``v`` as a numpy array over this call's memory."""
        loc = self.at.loc[v.name]
        if loc.slot in self.at.fixed:
            return loc.array
        a = loc.array
        if a.size == 0:
            return np.empty(a.shape, a.dtype)
        return np.ndarray(a.shape, a.dtype, buffer=self.buffers[loc.slot], offset=loc.offset,
                          strides=a.strides)
