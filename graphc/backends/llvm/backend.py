"""The ``llvm`` backend: native CPU code through llvmlite (first slice, see `runtime`).

Registered on import; llvmlite is imported only when a graph is compiled, so importing
graphc stays cheap."""

from __future__ import annotations

from ...graph import Graph
from .. import register_backend
from ..base import Backend, Executable


@register_backend
class LLVMBackend(Backend):
    name = "llvm"

    def compile(self, graph: Graph, **options) -> Executable:
        from .runtime import LLVMExecutable
        return LLVMExecutable(graph, **options)
