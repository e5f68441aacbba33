"""Running a graph with the LLVM backend (first slice): native elementwise kernels, the
reference interpreter for everything else.

`LLVMExecutable` compiles every elementwise kernel of its graph (fused ``elementwise``
nodes and single ELEMENTWISE ops, see `codegen`) into ONE LLVM module at construction,
optimized with the host CPU's target machine (name and features) and the new pass
manager at speed level 3, and loaded with MCJIT. A call runs the nodes in order: a
compiled kernel is called through ctypes on freshly allocated outputs (a ``flat`` kernel
after copying non-contiguous inputs to contiguous ones, a ``strided`` one with an
element-stride table built per call); every other node — reductions, library ops
(GEMM, convolution), injective ops, fused reduction and library kernels, and any kernel
the code generator raised `codegen.Unsupported` for — runs with
`graphc.backends.reference.Interpreter.run_node`, so every graph runs correctly.

Not yet (issue 5): one native entry point per graph over the memory plan's arena (outputs
are allocated per call and the memory plan is not used), cached data pointers (each call
reads every array's pointer), threads, an on-disk cache, native reductions / row-wise /
GEMM kernels. ``sanitize`` is accepted and ignored.
"""

from __future__ import annotations

import ctypes

import llvmlite.binding as llvm
import numpy as np

from ... import dtypes as dt
from ...graph import Graph, Node
from ..base import Executable
from ..reference import Interpreter
from . import codegen

_HOST: tuple | None = None


def target_machine() -> llvm.TargetMachine:
    """A new target machine of the host CPU (its name and features: AVX2 and up where
    present). New each time: an MCJIT engine takes ownership of (and frees) its own."""
    global _HOST
    if _HOST is None:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _HOST = (llvm.Target.from_default_triple(), llvm.get_host_cpu_name(),
                 llvm.get_host_cpu_features().flatten())
    target, cpu, features = _HOST
    return target.create_target_machine(cpu=cpu, features=features, opt=3)


class NativeModule:
    """An LLVM IR module, optimized (O3, loop and SLP vectorization) and loaded (MCJIT)."""

    def __init__(self, module):
        tm = target_machine()
        mod = llvm.parse_assembly(str(module))
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        mod.verify()
        pto = llvm.create_pipeline_tuning_options(speed_level=3)
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
        self.optimized_ir = str(mod)
        self.engine = llvm.create_mcjit_compiler(mod, tm)
        self.engine.finalize_object()

    def function(self, name: str, argtypes: list):
        return ctypes.CFUNCTYPE(None, *argtypes)(self.engine.get_function_address(name))


class _Kernel:
    """A compiled elementwise node: its spec and entry points."""

    __slots__ = ("node", "spec", "flat", "strided", "np_in", "np_out", "full")

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

    def run(self, env: dict) -> None:
        spec = self.spec
        ins = [np.asarray(env[id(v)]) for v in self.node.inputs]
        # the code reads native-endian, aligned elements (aligned: strides are multiples
        # of the item size, which the stride table needs)
        ins = [a if a.dtype == d and a.flags.aligned else np.ascontiguousarray(a, d)
               for a, d in zip(ins, self.np_in)]
        outs = [np.empty(spec.domain, d) for d in self.np_out]
        for v, o in zip(self.node.outputs, outs):
            env[id(v)] = o
        if spec.size == 0:
            return
        if self.flat is not None:
            ins = [np.ascontiguousarray(a) if f and not a.flags.c_contiguous else a
                   for a, f in zip(ins, self.full)]
            self.flat(*[a.ctypes.data for a in ins], *[o.ctypes.data for o in outs],
                      spec.size)
        else:
            self.strided(*[a.ctypes.data for a in ins], *[o.ctypes.data for o in outs],
                         _strides(ins, spec).ctypes.data)


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


class LLVMExecutable(Executable):
    def __init__(self, graph: Graph, check: bool = True, sanitize: bool | None = None):
        super().__init__(graph)
        self.check = check
        self.interpreter = Interpreter(graph, check=False, sanitize=False)
        builder = codegen.ModuleBuilder(graph.name)
        pending = []
        for i, node in enumerate(graph.nodes):
            if not codegen.is_elementwise_kernel(node):
                continue
            try:
                spec = codegen.kernel_spec(node, f"k{i}")
                pending.append((i, node, spec, builder.add_kernel(spec)))
            except codegen.Unsupported:
                continue
        #: node index -> compiled kernel; the other nodes run in the interpreter
        self.kernels: dict[int, _Kernel] = {}
        self.module = None
        if pending:
            self.module = NativeModule(builder.module)
            self.kernels = {i: _Kernel(node, spec, self.module, names)
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
