"""Running a graph with the LLVM backend (first slice): native elementwise kernels, the
reference interpreter for everything else.

`LLVMExecutable` compiles every elementwise kernel of its graph (fused ``elementwise``
nodes and single ELEMENTWISE ops, see `codegen`) into ONE LLVM module at construction,
optimized with the host CPU's target machine (name and features) and the new pass
manager at speed level 3, and loaded with MCJIT. A call runs the nodes in order: a
compiled kernel is called through ctypes on freshly allocated outputs (a ``flat`` kernel
after copying non-contiguous inputs to contiguous ones, a ``strided`` one with an
element-stride table built per call). Float reductions (single REDUCTION nodes and fused
row-wise ``reduction`` kernels, see `reduce_codegen`) compile into the same module
(`_RowKernel`: inputs made contiguous per call, a single reduction's axes moved last
unless they are one block of a contiguous input; ``NATIVE_REDUCTIONS = False`` turns them
off). Every other node — library ops (GEMM, convolution), injective ops, argmax/argmin,
integer reductions, fused library kernels, and any kernel a code generator raised
`kernel_specs.Unsupported` for — runs with `graphc.backends.reference.Interpreter.run_node`, so
every graph runs correctly.

Not yet (issue 5): one native entry point per graph over the memory plan's arena (outputs
are allocated per call and the memory plan is not used), cached data pointers (each call
reads every array's pointer), threads, an on-disk cache, native GEMM kernels.
``sanitize`` is accepted and ignored.
"""

from __future__ import annotations

import ctypes
import math
import os
from time import perf_counter_ns

import numpy as np

from ... import dtypes as dt
from ... import profiler
from ...graph import Graph, Node
from .. import kernel_specs
from ..base import Executable
from ..block_copies import is_block_copy
from ..reference import Interpreter
from . import codegen, conv_codegen, injective, library_codegen, reduce_codegen, threads
from .native_module import NativeModule
from .program import (
    STAGE_BYTES,
    Call,
    Loc,
    Locations,
    NotStatic,
    Program,
    copy_calls,
    elementwise_calls,
    emit_segment,
    scratch,
    strides_table,
)


class _Kernel:
    """A compiled elementwise node: its spec and entry points."""

    __slots__ = ("node", "spec", "flat", "strided", "np_in", "np_out", "full", "tables",
                 "names")

    def __init__(self, node: Node, spec: kernel_specs.KernelSpec, module: NativeModule | None,
                 names: dict[str, str]):
        """``module``: the loaded module, or None to `bind` it later."""
        self.node, self.spec, self.names = node, spec, names
        self.np_in = [dt.to_numpy(t.dtype) for t in spec.in_types]
        self.np_out = [dt.to_numpy(t.dtype) for t in spec.out_types]
        self.full = [t.shape == spec.domain and t.size != 1 for t in spec.in_types]
        self.tables: dict[tuple, tuple] = {}
        self.flat = self.strided = None
        if module is not None:
            self.bind(module)

    def bind(self, module: NativeModule) -> _Kernel:
        n = len(self.spec.in_types) + len(self.spec.out_types)
        ptrs = [ctypes.c_void_p] * n
        names = self.names
        self.flat = module.function(names["flat"], ptrs + [ctypes.c_int64]) \
            if "flat" in names else None
        self.strided = module.function(names["strided"], ptrs + [ctypes.c_void_p]) \
            if "strided" in names else None
        return self

    def calls(self, at: Locations) -> list[Call] | None:
        """The native call computing this kernel over static locations ``at`` (see
        `program`), or None when the layouts need Python."""
        return elementwise_calls(self.spec, self.names,
                                 [at.loc[v.name] for v in self.node.inputs],
                                 [at.loc[v.name] for v in self.node.outputs], at.builder)

    def run(self, env: dict) -> None:
        outs = self.launch([np.asarray(env[id(v)]) for v in self.node.inputs])
        for v, o in zip(self.node.outputs, outs):
            env[id(v)] = o

    def launch(self, ins: list, outs: list | None = None) -> list:
        """Run the kernel on arrays ``ins`` into ``outs`` (new arrays when None). The
        strided variant's table is cached per input layout: building one per call costs
        more than a tiny kernel's arithmetic."""
        spec = self.spec
        # the code reads native-endian, aligned elements (aligned: strides are multiples
        # of the item size, which the stride table needs)
        ins = [a if a.dtype == d and a.flags.aligned else np.ascontiguousarray(a, d)
               for a, d in zip(ins, self.np_in)]
        if outs is None:
            outs = [np.empty(spec.domain, d) for d in self.np_out]
        if spec.size == 0:
            return outs
        if self.flat is not None:
            ins = [np.ascontiguousarray(a) if f and not a.flags.c_contiguous else a
                   for a, f in zip(ins, self.full)]
            self.flat(*[a.ctypes.data for a in ins], *[o.ctypes.data for o in outs],
                      spec.size)
            return outs
        key = tuple((a.shape, a.strides) for a in ins)
        table = self.tables.get(key)
        if table is None:
            arr = strides_table(spec.domain, ins)
            table = self.tables[key] = (arr, arr.ctypes.data)
        self.strided(*[a.ctypes.data for a in ins], *[o.ctypes.data for o in outs], table[1])
        return outs


#: Whether REDUCTION nodes and fused ``reduction`` kernels run natively (`reduce_codegen`).
NATIVE_REDUCTIONS = True
#: Whether gemm nodes and fused gemm ``library`` kernels run as BLAS + a native epilogue
#: (`library_codegen`, tested in tests/test_llvm_library.py). Off until
#: tests/test_llvm_backend.py stops asserting that ``x @ w`` falls back.
NATIVE_GEMM = True


def _reduction_kernel(node: Node, name: str, reducer) -> _RowKernel:
    """A fused row-wise kernel or a single reduction node, emitted into ``reducer``."""
    if node.body is not None:
        spec, shape, axes = kernel_specs.row_spec(node, name)
        return _RowKernel(node, spec, reducer.add_rows(spec), None, shape, axes)
    spec = kernel_specs.single_spec(node, name)
    return _RowKernel(node, spec, reducer.add_rows(spec), reducer.add_cols(spec), None, ())


class _RowKernel:
    """A compiled reduction (`reduce_codegen`): a row kernel, and for single reductions a
    column kernel used when the reduced axes are one block of a contiguous input."""

    def __init__(self, node, spec, rows_name, cols_name, shape, axes):
        self.node, self.spec, self.rows_name, self.cols_name = node, spec, rows_name, cols_name
        self.shape, self.axes = shape, axes  # a fused kernel's full shape and reduced axes
        self.np_in = [dt.to_numpy(t.dtype) for t in spec.in_types]
        self.np_out = [dt.to_numpy(v.dtype) for v in node.outputs]

    def bind(self, module: NativeModule) -> _RowKernel:
        ptrs = [ctypes.c_void_p] * (len(self.spec.in_types) + len(self.spec.outs))
        i64 = ctypes.c_int64
        self.rows = module.function(self.rows_name, ptrs + [i64, i64])
        self.cols = module.function(self.cols_name, ptrs + [i64] * 3) if self.cols_name \
            else None
        return self

    def calls(self, at) -> list[Call] | None:
        """The row (or column) kernel call over static locations ``at`` when every input
        is already in the layout the kernel reads; None when Python must copy."""
        ins = [at.loc[v.name] for v in self.node.inputs]
        outs = [at.loc[v.name] for v in self.node.outputs]
        if not all(o.contiguous for o in outs) or not all(
                a.array.dtype == d and a.array.flags.aligned for a, d in zip(ins, self.np_in)):
            return None
        if self.shape is None:
            return self._single_calls(ins[0], outs[0])
        shape, axes = self.shape, self.axes
        keep = [i for i in range(len(shape)) if i not in axes]
        perm = keep + list(axes)
        moved = perm != list(range(len(shape)))
        tshape = tuple(shape[i] for i in perm)
        rows, n = math.prod(tshape[:len(keep)]), math.prod(tshape[len(keep):])
        if not rows or not outs:
            return []
        # full-size inputs not already contiguous rows are copied there first (reduced
        # axes moved last, broadcasts materialized), full-size outputs moved back after
        pre: list[Call] = []
        post: list[Call] = []
        need = {"full": math.prod(shape), "col": n, "row": rows, "scalar": 1}
        for j, (a, kind) in enumerate(zip(ins, self.spec.in_kinds)):
            if kind == "full" and (moved or not a.contiguous or a.array.shape != shape):
                if at.builder is None:
                    return None
                view = np.broadcast_to(a.array, shape).transpose(perm)
                ins[j] = scratch(at, tshape, a.array.dtype)
                copy = copy_calls(at.builder, Loc(a.slot, a.offset, view), ins[j],
                                  f"{self.spec.name}_in{j}")
                if copy is None:
                    return None
                pre += copy
            elif not ins[j].contiguous or ins[j].array.size != need[kind]:
                return None
        inverse = list(np.argsort(perm))
        for j, (o, (lv, _, _)) in enumerate(zip(outs, self.spec.outs)):
            if lv == "full" and moved:
                if at.builder is None:
                    return None
                outs[j] = scratch(at, tshape, o.array.dtype)
                copy = copy_calls(at.builder, Loc(outs[j].slot, 0,
                                                  outs[j].array.transpose(inverse)),
                                  o, f"{self.spec.name}_out{j}")
                if copy is None:
                    return None
                post += copy
        per_row = {"full": n, "row": 1, "col": 0, "scalar": 0}   # items a row advances
        steps = [per_row[k] * a.array.itemsize for a, k in zip(ins, self.spec.in_kinds)] + \
            [per_row[lv] * o.array.itemsize for o, (lv, _, _) in zip(outs, self.spec.outs)]
        return pre + [Call(self.rows_name, (*[a.at(0) for a in ins],
                                            *[o.at(0) for o in outs], ("i64", rows),
                                            ("i64", n)),
                           (len(steps), tuple(steps) + (0, 0)))] + post

    def _single_calls(self, x: Loc, out: Loc) -> list[Call] | None:
        if out.array.size == 0:
            return []
        if not x.contiguous:
            return None
        axes = set(self.node.attrs["axis"])
        dims = [(d, i in axes) for i, d in enumerate(x.array.shape) if d != 1]
        flags = [r for _, r in dims]
        sizes = [d for d, _ in dims]
        lo = flags.index(True) if True in flags else 0
        hi = len(flags) - flags[::-1].index(True) if True in flags else 0
        i64 = "i64"
        if self.cols_name and lo < hi < len(flags) and all(flags[lo:hi]):
            return [Call(self.cols_name, (x.at(0), out.at(0), (i64, math.prod(sizes[:lo])),
                                          (i64, math.prod(sizes[lo:hi])),
                                          (i64, math.prod(sizes[hi:]))))]
        if flags != sorted(flags):
            return None   # reduced axes between kept ones: Python transposes
        n = math.prod(d for i, d in enumerate(x.array.shape) if i in axes)
        steps = (n * x.array.itemsize, out.array.itemsize, 0, 0)
        return [Call(self.rows_name, (x.at(0), out.at(0), (i64, out.array.size), (i64, n)),
                     (2, steps))]

    def run(self, env: dict) -> None:
        if self.shape is None:
            out = np.empty(self.node.outputs[0].type.shape, self.np_out[0])
            env[id(self.node.outputs[0])] = out
            return self._single(np.asarray(env[id(self.node.inputs[0])]), out)
        shape, axes = self.shape, self.axes
        keep = [i for i in range(len(shape)) if i not in axes]
        perm = keep + list(axes)  # reduced axes last: identity for row-wise kernels
        moved = perm != sorted(perm)
        tshape = tuple(shape[i] for i in perm)
        outs = [np.empty(tshape if lv == "full" else v.type.shape, d)
                for v, d, (lv, _, _) in zip(self.node.outputs, self.np_out, self.spec.outs)]
        rows, n = math.prod(tshape[:len(keep)]), math.prod(tshape[len(keep):])
        if rows and outs:
            args = []
            for v, kind, d in zip(self.node.inputs, self.spec.in_kinds, self.np_in):
                a = np.asarray(env[id(v)])
                if kind == "col":
                    a = a.reshape((1,) * (len(shape) - a.ndim) + a.shape)[(0,) * len(keep)]
                    a = np.broadcast_to(a, tshape[len(keep):])
                elif kind == "full":
                    a = np.broadcast_to(a, shape).transpose(perm)
                args.append(_native(a, d))
            self.rows(*[a.ctypes.data for a in args], *[o.ctypes.data for o in outs], rows,
                      n)
        inverse = list(np.argsort(perm))
        for v, o, (lv, _, _) in zip(self.node.outputs, outs, self.spec.outs):
            env[id(v)] = np.ascontiguousarray(o.transpose(inverse)) if moved and \
                lv == "full" else o

    def _single(self, x: np.ndarray, out: np.ndarray) -> None:
        if out.size == 0:
            return
        x = np.asarray(x, self.np_in[0])
        x = x if x.flags.aligned else x.copy()
        axes = set(self.node.attrs["axis"])
        dims = [(d, i in axes) for i, d in enumerate(x.shape) if d != 1]
        flags = [r for _, r in dims]
        lo = flags.index(True) if True in flags else 0
        hi = len(flags) - flags[::-1].index(True) if True in flags else 0
        if self.cols is not None and x.flags.c_contiguous and lo < hi < len(flags) and \
                all(flags[lo:hi]):  # (outer, m, inner) with inner > 1: fold whole rows
            sizes = [d for d, _ in dims]
            self.cols(x.ctypes.data, out.ctypes.data, math.prod(sizes[:lo]),
                      math.prod(sizes[lo:hi]), math.prod(sizes[hi:]))
            return
        keep = [i for i in range(x.ndim) if i not in axes]
        red = sorted(axes)
        xt = np.ascontiguousarray(x.transpose(keep + red))
        self.rows(xt.ctypes.data, out.ctypes.data, math.prod(x.shape[i] for i in keep),
                  math.prod(x.shape[i] for i in red))


def _native(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` as a C-contiguous, aligned array of the native ``dtype`` (copied if not)."""
    a = np.ascontiguousarray(a, dtype)
    return a if a.flags.aligned else a.copy()


#: Debugging: one segment per node, so each node's results can be checked in between.
_ONE_NODE_SEGMENTS = False
#: Whether executables run as one native program over the memory plan's arena
#: (`program`); off, every kernel is called from Python on fresh arrays.
PROGRAM = True


class LLVMExecutable(Executable):
    def __init__(self, graph: Graph, check: bool = True, sanitize: bool | None = None,
                 memory_plan=None):
        super().__init__(graph)
        threads.register()
        if sanitize is None:
            sanitize = os.environ.get("GRAPHC_SANITIZE", "") not in ("", "0")
        #: one segment per node, and every arena buffer poisoned when its lifetime ends
        self.sanitize = bool(sanitize)
        self.check = check
        self.interpreter = Interpreter(graph, check=False, sanitize=False)
        builder = codegen.ModuleBuilder(graph.name)
        reducer = reduce_codegen.ReduceModuleBuilder(builder)
        #: node index -> compiled kernel; the other nodes run in the interpreter
        self.kernels: dict = {}
        for i, node in enumerate(graph.nodes):
            try:
                if kernel_specs.is_elementwise_kernel(node):
                    spec = kernel_specs.kernel_spec(node, f"k{i}")
                    self.kernels[i] = _Kernel(node, spec, None, builder.add_kernel(spec))
                elif NATIVE_REDUCTIONS and kernel_specs.is_row_kernel(node):
                    self.kernels[i] = _reduction_kernel(node, f"k{i}", reducer)
                elif NATIVE_GEMM and kernel_specs.is_gemm(node):
                    self.kernels[i] = library_codegen.LibraryKernel(node, f"k{i}", builder,
                                                                    _Kernel)
                elif conv_codegen.handles(node):
                    self.kernels[i] = conv_codegen.ConvKernel(node, f"k{i}", builder, _Kernel)
                elif is_block_copy(node):
                    self.kernels[i] = injective.InjectiveKernel(node, f"k{i}")
            except kernel_specs.Unsupported:
                continue
        self.program = None
        if PROGRAM:
            from ...passes.memory import plan_memory
            self.memory_plan = memory_plan or plan_memory(graph)
            try:
                self.program = self._program(builder)
            except NotStatic:
                pass
        self.module = None
        if self.kernels or self.program is not None:
            self.module = NativeModule(builder.module)
            for kernel in self.kernels.values():
                kernel.bind(self.module)
            if self.program is not None:
                self.program.bind(self.module)
        self._steps = [(self.kernels.get(i), node) for i, node in enumerate(graph.nodes)]

    def _program(self, builder: codegen.ModuleBuilder) -> Program:
        """Every kernel that can run on the plan's static locations, as native segments
        between the steps that need Python."""
        plan, graph = self.memory_plan, self.graph
        at = Locations(graph, plan, STAGE_BYTES)
        at.builder = builder
        schedule: list = []
        calls: list = []
        module = builder.module

        members: list = []
        steps: list[int] = []   # per schedule entry: its last node's step in plan.order
        #: segment name -> the nodes it runs, in order
        self.segment_nodes: dict[str, list[Node]] = {}

        def flush():
            if calls:
                name = f"seg{len(schedule)}"
                schedule.append(("native", emit_segment(module, name, calls)))
                self.segment_nodes[name] = list(members)
                steps.append(step_of[id(members[-1])])
                calls.clear()
            members.clear()
        step_of = {id(graph.nodes[i]): k for k, i in enumerate(plan.order)}
        for i in plan.order:
            node = graph.nodes[i]
            if all(v.name in plan.aliases for v in node.outputs):
                for v in node.outputs:   # a view: its location is static, nothing runs,
                    if v.name in at.copies:   # unless numpy's view op copies
                        calls.extend(_copy_calls(builder, at, at.copies[v.name], v, i))
                        members.append(node)
                continue
            kernel = self.kernels.get(i)
            native = kernel.calls(at) if kernel is not None else None
            if native is None:
                flush()
                schedule.append(("python", node, kernel))
                steps.append(step_of[id(node)])
            else:
                calls.extend(native)
                members.append(node)
                if _ONE_NODE_SEGMENTS or self.sanitize or profiler._ACTIVE is not None:
                    flush()
        flush()
        segments = set(self.segment_nodes)
        for f in module.functions:   # constant sizes in segments must not be inlined into
            if not f.is_declaration and f.name.split("_")[0] not in segments:  # kernels:
                f.attributes.add("noinline")   # LLVM would unroll small loops
        program = Program(at, schedule, graph.outputs,
                          [self.segment_nodes[s[1]] if s[0] == "native" else [s[1]]
                           for s in schedule])
        if self.sanitize:
            program.poison_after(steps)
        return program

    @property
    def optimized_ir(self) -> str:
        return self.module.optimized_ir if self.module is not None else ""

    @property
    def fallback_nodes(self) -> list[Node]:
        """The nodes that run in the reference interpreter."""
        return [node for kernel, node in self._steps if kernel is None]

    def __call__(self, *arrays) -> list:
        if self.check:
            self.check_inputs(arrays)
        if self.program is not None:
            return self.fresh_outputs(self.program.run(arrays, self._run_python))
        env = {id(v): a for v, a in zip(self.runtime_inputs, arrays)}
        for v in self.graph.inputs:
            if v.role == "constant":
                env[id(v)] = self.graph.constants[v.name]
        run_node = self.interpreter.run_node
        prof = profiler._ACTIVE
        for kernel, node in self._steps:
            t = perf_counter_ns() if prof is not None else 0
            if kernel is None:
                run_node(node, env, np)
            else:
                kernel.run(env)
            if prof is not None:
                prof.record(node, t, perf_counter_ns() - t)
        return self.fresh_outputs([env[id(v)] for v in self.graph.outputs])

    def _run_python(self, node: Node, kernel, env: dict) -> None:
        if kernel is None:
            self.interpreter.run_node(node, env, np)
        else:
            kernel.run(env)


def _copy_calls(builder: codegen.ModuleBuilder, at: Locations, x, v, i: int) -> list[Call]:
    """``v`` = the elements of ``x`` in C order, copied by a strided identity kernel."""
    out = at.loc[v.name]
    calls = copy_calls(builder, at.loc[x.name], Loc(out.slot, out.offset,
                                                    out.array.reshape(x.shape)), f"copy{i}")
    if calls is None:
        raise NotStatic(f"no copy kernel for %{v.name}")
    return calls
