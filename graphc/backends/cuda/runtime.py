"""Running a planned graph on an NVIDIA GPU: one device arena, generated kernels, cuBLAS.

`CudaExecutable` lays the graph out like the LLVM program does (`graphc.backends.locations`:
every value a slot plus a byte offset with its strides, views free), then turns each
node into one *step*:

- an elementwise kernel (`codegen.ModuleSource.add_elementwise`): the flat variant when
  every full-size operand is contiguous (its vectorized twin when every pointer is 16-byte
  aligned), else the strided one with its stride table uploaded once, at construction;
- a row-wise kernel (softmax, layer norm, cross-entropy, single reductions): one block per
  row when the reduced axes are trailing, a column kernel when they are a middle block;
- a GEMM (batched or not) through cuBLAS (``driver.matmul``), then its fused epilogue as
  an elementwise kernel over the GEMM result (in place when nothing it reads shares that
  memory, else through a scratch buffer);
- anything else (convolution, gathers, argmax, layouts a kernel cannot read) through the
  reference interpreter on device views with the device's array namespace, the result
  copied into its planned home.

Per call the runtime inputs are used where they are (made contiguous if they are not) and
results get fresh device arrays, so nothing returned aliases the arena. With
``cuda_graph=True`` the first call runs normally, then the whole step list is captured as
one CUDA graph over static buffers: later calls copy the inputs into those buffers, launch
the graph and copy the results out — one launch instead of one per kernel.
"""

from __future__ import annotations

import math
import os
import warnings
from time import perf_counter_ns

import numpy as np

from ... import dtypes as dt
from ... import profiler
from ...graph import Graph, Node, Value
from ...ops import scalar as S
from ...types import TensorType
from .. import kernel_specs as ks
from ..base import Executable
from ..block_copies import copy_spec, is_block_copy, runs_of, sources, strided_source
from ..locations import Loc, Locations, overlap, strides_table
from ..reference import Interpreter, _poison, dead_buffers
from . import codegen

#: threads per block of elementwise and column kernels
BLOCK = 256
#: bytes every pointer of the vectorized elementwise variant is aligned to
VECTOR_ALIGN = 16


class CudaExecutable(Executable):
    def __init__(self, graph: Graph, check: bool = True, sanitize: bool | None = None,
                 memory_plan=None, cuda_graph: bool = False, driver=None):
        super().__init__(graph)
        from ...passes.memory import plan_memory
        from .driver import default_driver
        self.driver = d = driver if driver is not None else default_driver()
        self.xp = d.xp
        self.check = check
        if sanitize is None:
            sanitize = os.environ.get("GRAPHC_SANITIZE", "") not in ("", "0")
        self.sanitize = bool(sanitize)
        self.cuda_graph = bool(cuda_graph)
        plan = self.memory_plan = memory_plan or plan_memory(graph)
        self.interpreter = Interpreter(graph, check=False, sanitize=False)
        # view ops that copy (a reshape of a transpose) run as Python steps into buffers
        # of their own
        at = self.at = Locations(graph, plan, any_copy=True)
        self._device_slots()
        source = codegen.ModuleSource()
        pending = []
        for i in plan.order:
            node = graph.nodes[i]
            if all(v.name in plan.aliases for v in node.outputs):
                # a view is free, unless numpy's view op copies
                if any(v.name in at.copies for v in node.outputs):
                    pending.append((_Python(self, node), node, i))
                continue
            pending.append((self._plan_step(node, i, source), node, i))
        module = d.load(source.source()) if source.has_kernels() else None
        self.steps = []
        self.step_nodes: list[Node] = []
        for step, node, _ in pending:
            self.steps.append(step.bind(module) if isinstance(step, _Pending | _Sequence)
                              else step)
            self.step_nodes.append(node)
        self.fallback_nodes = [n for s, n in zip(self.steps, self.step_nodes)
                               if isinstance(s, _Python)]
        self._dying = self._poison_lists(pending) if self.sanitize else None
        self._outputs()
        #: CUDA graph mode (`_call_graph`): the graph, the inputs read in place (index,
        #: array), the staged ones (index -> buffer), the previous call's arrays
        self._replay = None
        self._pinned: list = []
        self._staged: dict = {}
        self._seen = None
        self.captures = 0

    # -- construction ---------------------------------------------------------------------
    def _device_slots(self) -> None:
        """Device memory for every fixed slot (the arena, constants, copy buffers); per-call
        slots (inputs, outputs) are filled per call, or fixed too under ``cuda_graph``."""
        at, d = self.at, self.driver
        constants = {at.slot_of[v.name] for v in self.graph.inputs if v.role == "constant"}
        self.buffers: dict[int, object] = {}
        for slot, host in at.fixed.items():
            if slot == 0:
                self.buffers[0] = d.empty(max(self.memory_plan.arena_bytes, 64), np.uint8)
            elif slot in constants:
                self.buffers[slot] = d.to_device(np.ascontiguousarray(host))
            else:
                self.buffers[slot] = d.empty(host.shape, host.dtype)
        self.in_slots = [slot for slot, _ in at.inputs]
        self.out_slots = [(slot, at.home[root].shape, at.home[root].dtype)
                          for slot, root in at.outputs]
        if self.cuda_graph:   # results computed in place, copied out per call
            for slot, shape, dtype in self.out_slots:
                self.buffers[slot] = d.empty(shape, dtype)
        self.ptrs = [0] * at.n_slots
        for slot, buf in self.buffers.items():
            self.ptrs[slot] = d.ptr(buf)
        #: slots whose memory changes per call (a CUDA graph bakes in the inputs' pointers
        #: at capture: see `_call_graph`)
        self.dynamic = set(self.in_slots) | (
            set() if self.cuda_graph else {s for s, _, _ in self.out_slots})

    def new_buffer(self, shape, dtype) -> Loc:
        """A fixed device buffer (scratch) and its location."""
        host = np.empty(shape, dtype)
        slot = self.at.new_slot(host)
        buf = self.buffers[slot] = self.driver.empty(shape, dtype)
        self.ptrs.append(0)
        self.ptrs[slot] = self.driver.ptr(buf)
        return Loc(slot, 0, host)

    def _plan_step(self, node: Node, i: int, source):
        """The step running ``node``: a kernel awaiting the module, or a Python step."""
        name = f"k{i}"
        try:
            if ks.is_elementwise_kernel(node):
                spec = ks.kernel_spec(node, name)
                return _Elementwise.plan(self, spec, node.inputs, node.outputs, source) \
                    or _Python(self, node)
            if ks.is_row_kernel(node):
                return _Rows.plan(self, node, name, source) or _Python(self, node)
            if ks.is_gemm(node):
                return _Gemm.plan(self, node, name, source) or _Python(self, node)
            if is_block_copy(node):
                return _blocks(self, node, name, source) or _Python(self, node)
        except ks.Unsupported:
            pass
        return _Python(self, node)

    def _poison_lists(self, pending) -> list:
        """Sanitizer: per step, the arena buffers whose lifetime ended before it."""
        plan = self.memory_plan
        steps = [plan.order.index(k) for (_, _, k) in pending]
        return dead_buffers(plan, steps, self.buffers[0])

    def _outputs(self) -> None:
        """How each graph output is returned: the caller's input, or its home (copied when
        the home is memory a later call reuses)."""
        at = self.at
        inputs = {v.name: i for i, (_, v) in enumerate(at.inputs)}
        per_call = {s for s, _, _ in self.out_slots} | set(self.in_slots)
        self.out_kinds = []
        for v in self.graph.outputs:
            if v.name in inputs:
                self.out_kinds.append(("input", inputs[v.name]))
            elif at.loc[v.name].slot in per_call and not self.cuda_graph:
                self.out_kinds.append(("home", None))
            elif v.role == "constant":
                self.out_kinds.append(("home", None))   # copied by fresh_outputs
            else:
                self.out_kinds.append(("copy", None))

    # -- per call -------------------------------------------------------------------------
    def view(self, loc: Loc):
        """The device array at ``loc`` this call."""
        a = loc.array
        base = self.buffers[loc.slot]
        if a.size == 0:
            return self.xp.empty(a.shape, a.dtype)
        return self.driver.view(base, loc.offset, a.shape, a.dtype, a.strides)

    def home(self, v: Value):
        return self.view(self.at.loc[v.name])

    def __call__(self, *arrays) -> list:
        xp = self.xp
        arrays = tuple(a if isinstance(a, xp.ndarray) else xp.asarray(a) for a in arrays)
        if self.check:
            self.check_inputs(arrays)
        if self.cuda_graph:
            return self.fresh_outputs(self._call_graph(arrays))
        d, ptrs, buffers = self.driver, self.ptrs, self.buffers
        self._bind_inputs(arrays)
        for slot, shape, dtype in self.out_slots:
            out = buffers[slot] = d.empty(shape, dtype)
            ptrs[slot] = d.ptr(out)
        self._run_steps()
        return self.fresh_outputs(self._results(arrays))

    def _run_steps(self) -> None:
        prof = profiler._ACTIVE
        dying = self._dying
        if dying is not None:
            self.buffers[0].fill(0xFF)   # NaN in every float dtype
        for k, step in enumerate(self.steps):
            if dying is not None:
                for flat, dtype in dying[k]:
                    _poison(flat, dtype, self.xp)
            if prof is None:
                step.run(self.ptrs)
                continue
            self.driver.synchronize()
            t = perf_counter_ns()
            step.run(self.ptrs)
            self.driver.synchronize()
            prof.record(self.step_nodes[k], t, perf_counter_ns() - t)

    def _results(self, arrays) -> list:
        outs = []
        for v, (kind, i) in zip(self.graph.outputs, self.out_kinds):
            if kind == "input":
                outs.append(arrays[i])
            else:
                home = self.home(v)
                outs.append(home.copy() if kind == "copy" else home)
        return outs

    def _bind_inputs(self, arrays, staged: dict | None = None) -> None:
        """Point the input slots at this call's arrays (a C-contiguous, aligned copy where
        an array is not), or at their staging buffers (``staged``: index -> buffer, which
        this call's values are copied into)."""
        d, ptrs, buffers = self.driver, self.ptrs, self.buffers
        for i, (slot, a) in enumerate(zip(self.in_slots, arrays)):
            if staged is not None and i in staged:
                staged[i][...] = a
                a = staged[i]
            elif not a.flags.c_contiguous or d.ptr(a) % VECTOR_ALIGN:
                a = a.copy()   # C order, and aligned (pool allocations are)
            buffers[slot] = a
            ptrs[slot] = d.ptr(a)

    def _call_graph(self, arrays) -> list:
        """CUDA graph mode. The first call runs kernel by kernel (modules load, cuBLAS and
        the memory pool settle). The second captures the graph: an input passed as the
        same array object both times (parameters, optimizer state) is read where it is,
        pinned (its array held, so its memory stays valid); any other input is copied into
        a staging buffer each call. Later calls copy the staged inputs and launch the
        graph; a pinned input that arrives as another array becomes staged, and the graph
        is captured again."""
        replay = self._replay
        if replay is not None and all(arrays[i] is a for i, a in self._pinned):
            for i, buf in self._staged.items():
                buf[...] = arrays[i]
            replay.launch()
            return self._results(arrays)
        if self._seen is None:
            self._seen = arrays
            self._bind_inputs(arrays)
            self._run_steps()
            return self._results(arrays)
        for i, (a, before) in enumerate(zip(arrays, self._seen)):
            if i not in self._staged and (a is not before or not a.flags.c_contiguous or
                                          self.driver.ptr(a) % VECTOR_ALIGN):
                self._staged[i] = self.driver.empty(a.shape, a.dtype)
        self._seen = arrays
        self._pinned = [(i, a) for i, a in enumerate(arrays) if i not in self._staged]
        self._bind_inputs(arrays, self._staged)
        self._replay = None
        try:
            self._replay = self.driver.capture(self._run_steps)
        except Exception as e:   # a step reads device values on the host
            warnings.warn(f"{self.graph.name}: cuda_graph=True, but the call cannot be "
                          f"captured as a CUDA graph ({type(e).__name__}: {e}); it runs "
                          "kernel by kernel", stacklevel=3)
            self._replay = _Uncaptured(self._run_steps)
        self.captures += 1
        self._replay.launch()
        return self._results(arrays)

    @property
    def num_launches(self) -> int:
        """Device launches per call without a CUDA graph (kernels, GEMMs, Python steps)."""
        return sum(step.launches for step in self.steps)


class _Uncaptured:
    """Stands for a CUDA graph that could not be captured: runs the steps one by one."""

    def __init__(self, run):
        self.launch = run


class _Pending:
    """A step whose kernels are in the module being built."""

    def __init__(self, make):
        self.make = make

    def bind(self, module):
        return self.make(module)


def _grid(threads: int, block: int, sm_count: int) -> tuple:
    """Blocks for a grid-stride loop over ``threads`` items: enough to fill the device
    several times over, no more (each thread loops over the rest)."""
    return (max(1, min(math.ceil(threads / block), sm_count * 32)),)


class _Launch:
    """One kernel launch whose pointer arguments may be per-call slots."""

    launches = 1

    def __init__(self, ex: CudaExecutable, fn, grid: tuple, block: int, args: list):
        """``args``: `Loc` (a pointer to it) or numpy scalars."""
        self.fn, self.grid, self.block = fn, grid, (block,)
        self.args = [np.uint64(ex.ptrs[a.slot] + a.offset) if isinstance(a, Loc) else a
                     for a in args]
        self.dyn = [(j, a.slot, a.offset) for j, a in enumerate(args)
                    if isinstance(a, Loc) and a.slot in ex.dynamic]

    def run(self, ptrs) -> None:
        args = self.args
        if self.dyn:
            args = list(args)
            for j, slot, offset in self.dyn:
                args[j] = np.uint64(ptrs[slot] + offset)
        self.fn(self.grid, self.block, tuple(args))


class _Elementwise:
    """A flat (or vectorized flat) or strided elementwise launch."""

    launches = 1

    @staticmethod
    def plan(ex: CudaExecutable, spec: ks.KernelSpec, inputs, outputs, source,
             extra_in: list | None = None):
        if spec.size == 0:
            return _Nothing()
        at = ex.at
        ins = [at.loc[v.name] for v in inputs] + (extra_in or [])
        outs = [at.loc[v.name] for v in outputs]
        if not all(o.contiguous for o in outs):
            return None
        full = [a.array.size != 1 for a in ins]
        if spec.flat and all(a.contiguous for a, f in zip(ins, full) if f):
            names = source.add_elementwise(spec, strided=False)

            def make(module):
                return _Elementwise(ex, module, names, spec, ins, outs, full)
            return _Pending(make)
        return _strided(ex, spec, source.add_strided(spec), ins, outs)

    def __init__(self, ex, module, names, spec, ins, outs, full):
        sm = ex.driver.sm_count
        n = np.int64(spec.size)
        self.scalar = _Launch(ex, module.get_function(names["flat"]),
                              _grid(spec.size, BLOCK, sm), BLOCK, [*ins, *outs, n])
        self.vector = None
        vec = [a for a, f in zip(ins, full) if f] + outs
        if "flat4" in names and all(a.offset % VECTOR_ALIGN == 0 for a in vec):
            self.vector = _Launch(ex, module.get_function(names["flat4"]),
                                  _grid(math.ceil(spec.size / 4), BLOCK, sm), BLOCK,
                                  [*ins, *outs, n])
            self.checks = [(a.slot, a.offset) for a in vec if a.slot in ex.dynamic]

    def run(self, ptrs) -> None:
        v = self.vector
        if v is not None and all((ptrs[s] + o) % VECTOR_ALIGN == 0 for s, o in self.checks):
            v.run(ptrs)
        else:
            self.scalar.run(ptrs)


class _Nothing:
    """A kernel over zero elements."""

    launches = 0

    def run(self, ptrs) -> None:
        pass


def _row_block(n: int) -> int:
    """Threads per row: a power of two from one warp up to 1024, about the row length."""
    return min(1024, max(32, 1 << max(0, (n - 1).bit_length())))


class _Rows:
    """Row-wise kernels: one block per row of trailing reduced axes, or a column kernel
    (one thread per output) when a single reduction's axes are a middle block of a
    contiguous input. Other layouts (reduced axes leading, as a bias gradient's batch
    axis; non-contiguous or broadcast inputs) are copied into rows first by generated
    strided copy kernels, and full-size outputs copied back after."""

    @staticmethod
    def plan(ex: CudaExecutable, node: Node, name: str, source):
        at = ex.at
        ins = [at.loc[v.name] for v in node.inputs]
        outs = [at.loc[v.name] for v in node.outputs]
        if not all(o.contiguous for o in outs):
            return None
        if node.body is None:
            spec = ks.single_spec(node, name)
            shape = ins[0].array.shape
            axes = node.attrs.get("axis")
            axes = tuple(range(len(shape))) if axes is None else \
                (axes,) if isinstance(axes, int) else tuple(sorted(axes))
            block = bool(axes) and list(axes) == list(range(axes[0], axes[0] + len(axes)))
            if ins[0].contiguous and block and axes[-1] < len(shape) - 1:
                outer = math.prod(shape[:axes[0]])
                m = math.prod(shape[axes[0]:axes[-1] + 1])
                inner = math.prod(shape[axes[-1] + 1:])
                if outer * inner == 0:
                    return _Nothing()
                cols = source.add_cols(spec)
                return _Pending(lambda module: _Launch(
                    ex, module.get_function(cols),
                    _grid(outer * inner, BLOCK, ex.driver.sm_count), BLOCK,
                    [*ins, *outs, np.int64(outer), np.int64(m), np.int64(inner)]))
        else:
            spec, shape, axes = ks.row_spec(node, name)
        shape, axes = tuple(shape), tuple(axes)
        k = len(shape) - len(axes)
        perm = [i for i in range(len(shape)) if i not in axes] + list(axes)
        moved = perm != list(range(len(shape)))
        tshape = tuple(shape[i] for i in perm)
        rows, n = math.prod(tshape[:k]), math.prod(tshape[k:])
        if rows == 0 or not outs:
            return _Nothing()
        need = {"full": math.prod(shape), "col": n, "row": rows, "scalar": 1}
        steps: list = []
        for j, (a, kind) in enumerate(zip(ins, spec.in_kinds)):
            if kind == "full" and (moved or not a.contiguous or a.array.shape != shape):
                view = np.broadcast_to(a.array, shape).transpose(perm)
                ins[j] = ex.new_buffer(tshape, a.array.dtype)
                steps.append(_copy(ex, source, Loc(a.slot, a.offset, view), ins[j],
                                   f"{name}_in{j}"))
            elif not a.contiguous or a.array.size != need[kind]:
                return None
        after: list = []
        back = list(np.argsort(perm))
        for j, ((level, _, _), o) in enumerate(zip(spec.outs, outs)):
            if level == "full" and moved:
                outs[j] = ex.new_buffer(tshape, o.array.dtype)
                after.append(_copy(ex, source, Loc(outs[j].slot, 0,
                                                   outs[j].array.transpose(back)), o,
                                   f"{name}_out{j}"))
        fn = source.add_rows(spec)
        rows_step = _Pending(lambda module: _Launch(
            ex, module.get_function(fn), (max(1, min(rows, 65535)),), _row_block(n),
            [*ins, *outs, np.int64(rows), np.int64(n)]))
        return _Sequence([*steps, rows_step, *after])


def _copy(ex: CudaExecutable, source, src: Loc, dst: Loc, name: str) -> _Pending:
    """A generated strided copy of the elements at ``src`` (any layout) into the
    contiguous ``dst`` of the same shape: an identity elementwise kernel."""
    dtype = dt.name_of(src.array.dtype)
    t = TensorType(src.array.shape, dtype)
    spec = ks.KernelSpec(name, [t], [t], [S.arg(0, dtype)])
    return _strided(ex, spec, source.add_strided(spec), [src], [dst])


def _strided(ex: CudaExecutable, spec: ks.KernelSpec, fn_name: str, ins: list,
             outs: list) -> _Pending:
    """The strided elementwise variant over ``ins``' layouts, its table uploaded once."""
    table = strides_table(spec.domain, [a.array for a in ins])
    tloc = ex.new_buffer(table.shape, np.int64)
    ex.buffers[tloc.slot][...] = ex.driver.to_device(table)
    return _Pending(lambda module: _Launch(
        ex, module.get_function(fn_name), _grid(spec.size, BLOCK, ex.driver.sm_count),
        BLOCK, [*ins, *outs, tloc]))


def _blocks(ex: CudaExecutable, node: Node, name: str, source) -> _Sequence | None:
    """A block-copy node (concat, stack, slice, split: `block_copies`) as a few launches:
    an output that is a strided view of one input (a split piece, a slice) is one strided
    copy; any other output, at most `BLOCK_RUNS` flat copies of its runs."""
    found = sources(node)
    ins = [ex.at.loc[v.name] for v in node.inputs]
    outs = [ex.at.loc[v.name] for v in node.outputs]
    if found is None or not all(a.contiguous for a in ins + outs):
        return None
    dtype = node.outputs[0].dtype
    steps: list = []
    for i, (out, (src_j, src_k)) in enumerate(zip(outs, found)):
        if out.array.size == 0:
            continue
        item = out.array.itemsize
        view = strided_source(src_j, src_k)
        if view is not None and view[2] != _c_strides(out.array.shape):
            j, base, strides = view
            host = np.lib.stride_tricks.as_strided(
                ins[j].array.reshape(-1)[base:], out.array.shape,
                tuple(st * item for st in strides))
            steps.append(_copy(ex, source, Loc(ins[j].slot, ins[j].offset + base * item,
                                               host), out, f"{name}_o{i}"))
            continue
        flat_out = out.array.reshape(-1)
        out_runs = runs_of(src_j.reshape(-1), src_k.reshape(-1))
        if len(out_runs) > BLOCK_RUNS:
            return None
        for j, k, p, n in out_runs:
            src = Loc(ins[j].slot, ins[j].offset + k * item, ins[j].array.reshape(-1)[k:k + n])
            dst = Loc(out.slot, out.offset + p * item, flat_out[p:p + n])
            spec = copy_spec(name, n, dtype)
            names = source.add_elementwise(spec, strided=False)
            steps.append(_Pending(lambda module, names=names, spec=spec, src=src, dst=dst:
                                  _Elementwise(ex, module, names, spec, [src], [dst],
                                               [spec.size != 1])))
    return _Sequence(steps)


#: Flat copies per output at most (each is a launch; a Python step is a few cupy calls).
BLOCK_RUNS = 4


def _c_strides(shape: tuple) -> tuple:
    """C-order element strides (0 on axes of one element, as `strided_source` gives)."""
    out, step = [], 1
    for n in reversed(shape):
        out.append(step if n > 1 else 0)
        step *= n
    return tuple(reversed(out))


class _Sequence:
    """Several launches run as one step (copies into rows, the row kernel, copies back)."""

    def __init__(self, parts: list):
        self.parts = parts

    def bind(self, module) -> _Sequence:
        self.parts = [p.bind(module) if isinstance(p, _Pending) else p for p in self.parts]
        self.launches = sum(p.launches for p in self.parts)
        return self

    def run(self, ptrs) -> None:
        for p in self.parts:
            p.run(ptrs)


class _Gemm:
    """cuBLAS through the driver, then the fused epilogue (if any) as an elementwise
    kernel reading the GEMM result as its last input."""

    @staticmethod
    def plan(ex: CudaExecutable, node: Node, name: str, source):
        at = ex.at
        if node.body is None:
            lib, operands, spec, epi_ins = node, list(node.inputs), None, []
        else:
            lib, operands, spec, epi_ins = ks.gemm_epilogue(node, name)
        out_t = lib.outputs[0].type
        if out_t.dtype not in ("float16", "float32", "float64") or len(operands) != 2:
            return None
        la, lb = (at.loc[v.name] for v in operands)
        if spec is None:
            out = at.loc[node.outputs[0].name]
            if not out.contiguous or overlap(out, la) or overlap(out, lb):
                return None
            return _Gemm(ex, la, lb, out, None)
        outs = [at.loc[v.name] for v in node.outputs]
        readers = [at.loc[v.name] for v in epi_ins] + [la, lb]
        home = outs[0] if len(outs) == 1 and outs[0].contiguous and \
            outs[0].array.dtype == dt.to_numpy(out_t.dtype) and \
            outs[0].array.shape == out_t.shape and \
            not any(overlap(outs[0], r) for r in readers) else None
        result = home if home is not None else ex.new_buffer(out_t.shape,
                                                             dt.to_numpy(out_t.dtype))
        epi = _Elementwise.plan(ex, spec, epi_ins, node.outputs, source, extra_in=[result])
        if epi is None:
            return None
        gemm = _Gemm(ex, la, lb, result, None)
        if isinstance(epi, _Nothing):
            return gemm
        return _Pending(lambda module: gemm.with_epilogue(epi.bind(module)))

    launches = 1

    def __init__(self, ex, la, lb, out, epilogue):
        self.ex, self.la, self.lb, self.out, self.epilogue = ex, la, lb, out, epilogue
        self.fixed = None
        if not {la.slot, lb.slot, out.slot} & ex.dynamic:
            self.fixed = (ex.view(la), ex.view(lb), ex.view(out))

    def with_epilogue(self, epilogue) -> _Gemm:
        self.epilogue = epilogue
        self.launches = 2
        return self

    def run(self, ptrs) -> None:
        ex = self.ex
        a, b, out = self.fixed or (ex.view(self.la), ex.view(self.lb), ex.view(self.out))
        if out.size:
            ex.driver.matmul(a, b, out)
        if self.epilogue is not None:
            self.epilogue.run(ptrs)


class _Python:
    """A node the interpreter runs on device views with the device's array namespace; its
    results are copied into their planned homes."""

    launches = 1

    def __init__(self, ex: CudaExecutable, node: Node):
        self.ex, self.node = ex, node
        self.ins = [ex.at.loc[v.name] for v in node.inputs]
        self.outs = [(v, ex.at.loc[v.name]) for v in node.outputs
                     if v.name not in ex.memory_plan.aliases or v.name in ex.at.copies]

    def run(self, ptrs) -> None:
        ex, node = self.ex, self.node
        env = {id(v): ex.view(loc) for v, loc in zip(node.inputs, self.ins)}
        ex.interpreter.run_node(node, env, ex.xp)
        results = [env[id(v)] for v, _ in self.outs]
        if len(results) > 1:   # one may alias an input another is written over
            results = [r.copy() for r in results]
        for (_, loc), r in zip(self.outs, results):
            home = ex.view(loc)
            if home.size:
                home[...] = r
