"""Registers the ``cuda`` backend. cupy is imported only when a graph is compiled, so
``import graphc`` works without it; compiling without it raises a BackendError that says
how to install the ``gpu`` extra."""

from __future__ import annotations

from ...graph import Graph
from .. import register_backend
from ..base import Backend, Executable


@register_backend
class CudaBackend(Backend):
    name = "cuda"

    def compile(self, graph: Graph, **options) -> Executable:
        """Options: ``cuda_graph`` (capture the whole call as one CUDA graph), ``sanitize``,
        ``check``, ``driver`` (a stand-in device, for tests)."""
        from .runtime import CudaExecutable
        return CudaExecutable(graph, **options)
