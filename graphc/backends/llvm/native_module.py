"""Turning generated LLVM IR into machine code in this process.

`NativeModule` optimizes a module with the host CPU's target machine (its name and
features, so AVX2/AVX-512 vectors where present) and llvmlite's new pass manager at speed
level 3, then loads it with MCJIT; kernels are looked up by name as ctypes functions.
"""

from __future__ import annotations

import ctypes

import llvmlite.binding as llvm

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
