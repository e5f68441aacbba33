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
`codegen.Unsupported` for — runs with `graphc.backends.reference.Interpreter.run_node`, so
every graph runs correctly.

Not yet (issue 5): one native entry point per graph over the memory plan's arena (outputs
are allocated per call and the memory plan is not used), cached data pointers (each call
reads every array's pointer), threads, an on-disk cache, native GEMM kernels.
``sanitize`` is accepted and ignored.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np

from ... import dtypes as dt
from ...graph import Graph, Node
from ...ops.registry import Kind
from ..base import Executable
from ..reference import Interpreter
from . import codegen, conv_codegen, library_codegen, reduce_codegen
from .native_module import NativeModule


class _Kernel:
    """A compiled elementwise node: its spec and entry points."""

    __slots__ = ("node", "spec", "flat", "strided", "np_in", "np_out", "full", "tables")

    def __init__(self, node: Node, spec: codegen.KernelSpec, module: NativeModule,
                 names: dict[str, str]):
        n = len(spec.in_types) + len(spec.out_types)
        self.node, self.spec = node, spec
        ptrs = [ctypes.c_void_p] * n
        self.flat = module.function(names["flat"], ptrs + [ctypes.c_int64]) \
            if "flat" in names else None
        self.strided = module.function(names["strided"], ptrs + [ctypes.c_void_p]) \
            if "strided" in names else None
        self.np_in = [dt.to_numpy(t.dtype) for t in spec.in_types]
        self.np_out = [dt.to_numpy(t.dtype) for t in spec.out_types]
        self.full = [t.shape == spec.domain and t.size != 1 for t in spec.in_types]
        self.tables: dict[tuple, tuple] = {}

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
            arr = _strides(ins, spec)
            table = self.tables[key] = (arr, arr.ctypes.data)
        self.strided(*[a.ctypes.data for a in ins], *[o.ctypes.data for o in outs], table[1])
        return outs


def _strides(ins: list[np.ndarray], spec: codegen.KernelSpec) -> np.ndarray:
    """The strided variant's table: the domain's dims, then each input's element strides
    broadcast to the domain (0 on broadcast axes)."""
    ndim = len(spec.domain)
    table = np.zeros((len(ins) + 1, ndim), np.int64)
    table[0] = spec.domain
    for j, a in enumerate(ins, 1):
        if a.size == 1:
            continue
        lead = ndim - a.ndim
        for k, (n, s) in enumerate(zip(a.shape, a.strides)):
            if n != 1:
                table[j, lead + k] = s // a.itemsize
    return table


#: Whether REDUCTION nodes and fused ``reduction`` kernels run natively (`reduce_codegen`).
NATIVE_REDUCTIONS = True
#: Whether gemm nodes and fused gemm ``library`` kernels run as BLAS + a native epilogue
#: (`library_codegen`, tested in tests/test_llvm_library.py). Off until
#: tests/test_llvm_backend.py stops asserting that ``x @ w`` falls back.
NATIVE_GEMM = True


def _is_reduction(node: Node) -> bool:
    if node.body is not None:
        return node.attrs.get("kind") == "reduction"
    return node.op.kind is Kind.REDUCTION and node.op.reduction is not None


def _reduction_kernel(node: Node, name: str, reducer) -> _RowKernel:
    """A fused row-wise kernel or a single reduction node, emitted into ``reducer``."""
    if node.body is not None:
        spec, shape, axes = reduce_codegen.row_spec(node, name)
        return _RowKernel(node, spec, reducer.add_rows(spec), None, shape, axes)
    spec = reduce_codegen.single_spec(node, name)
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


class LLVMExecutable(Executable):
    def __init__(self, graph: Graph, check: bool = True, sanitize: bool | None = None):
        super().__init__(graph)
        self.check = check
        self.interpreter = Interpreter(graph, check=False, sanitize=False)
        builder = codegen.ModuleBuilder(graph.name)
        reducer = reduce_codegen.ReduceModuleBuilder(builder)
        pending = []
        for i, node in enumerate(graph.nodes):
            try:
                if codegen.is_elementwise_kernel(node):
                    spec = codegen.kernel_spec(node, f"k{i}")
                    pending.append((i, node, spec, builder.add_kernel(spec)))
                elif NATIVE_REDUCTIONS and _is_reduction(node):
                    pending.append((i, node, None, _reduction_kernel(node, f"k{i}", reducer)))
                elif NATIVE_GEMM and library_codegen.is_gemm(node):
                    pending.append((i, node, None, library_codegen.LibraryKernel(
                        node, f"k{i}", builder, _Kernel)))
                elif conv_codegen.handles(node):
                    pending.append((i, node, None, conv_codegen.ConvKernel(
                        node, f"k{i}", builder, _Kernel)))
            except codegen.Unsupported:
                continue
        #: node index -> compiled kernel; the other nodes run in the interpreter
        self.kernels: dict = {}
        self.module = None
        if pending:
            self.module = NativeModule(builder.module)
            self.kernels = {i: _Kernel(node, spec, self.module, names) if spec is not None
                            else names.bind(self.module)
                            for i, node, spec, names in pending}
        self._steps = [(self.kernels.get(i), node) for i, node in enumerate(graph.nodes)]

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
        env = {id(v): a for v, a in zip(self.runtime_inputs, arrays)}
        for v in self.graph.inputs:
            if v.role == "constant":
                env[id(v)] = self.graph.constants[v.name]
        run_node = self.interpreter.run_node
        for kernel, node in self._steps:
            if kernel is None:
                run_node(node, env, np)
            else:
                kernel.run(env)
        return self.fresh_outputs([env[id(v)] for v in self.graph.outputs])
