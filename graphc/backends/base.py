"""The backend interface: a Backend compiles a Graph into an Executable.

An Executable is called with one array per runtime input of its graph (every input that
is not a constant, in graph order) and returns the list of output arrays. It checks each
input's shape and dtype, so a stale or mistaken call fails loudly instead of computing
garbage.
"""

from __future__ import annotations

from .. import dtypes as dt
from ..errors import BackendError, ShapeError
from ..graph import Graph


class Executable:
    #: The memory plan the executable runs by (set by backends that plan memory).
    memory_plan = None
    #: The graph before optimization (set by `passes.pipeline.compile_graph`).
    source_graph = None

    def __init__(self, graph: Graph):
        self.graph = graph
        self.runtime_inputs = [v for v in graph.inputs if v.role != "constant"]
        self.copied_outputs = _outputs_over_constants(graph)
        self._expected = [(v.type.shape, dt.to_numpy(v.type.dtype)) for v in
                          self.runtime_inputs]

    def fresh_outputs(self, outs: list) -> list:
        """Copy the outputs that are (views of) the graph's constants, so that writing
        into a result never changes what later calls return."""
        for i in self.copied_outputs:
            outs[i] = outs[i].copy()
        return outs

    @property
    def num_kernels(self) -> int:
        """Kernels launched per call: fused nodes count once, aliasing views not at all."""
        return self.graph.summary()["kernels"]

    def check_inputs(self, arrays: tuple) -> None:
        if len(arrays) == len(self._expected):   # the fast path of every good call
            for a, (shape, dtype) in zip(arrays, self._expected):
                if a.shape != shape or a.dtype != dtype:
                    break
            else:
                return
        if len(arrays) != len(self.runtime_inputs):
            names = [v.name for v in self.runtime_inputs]
            raise BackendError(f"{self.graph.name} takes {len(names)} inputs {names}, "
                               f"got {len(arrays)}")
        for v, a in zip(self.runtime_inputs, arrays):
            if a.shape != v.type.shape or dt.name_of(a.dtype) != v.type.dtype:
                raise ShapeError(f"input %{v.name} expects {v.type}, got shape "
                                 f"{tuple(a.shape)} dtype {a.dtype}")

    def __call__(self, *arrays) -> list:
        raise NotImplementedError


def _outputs_over_constants(graph: Graph) -> list[int]:
    """Indices of outputs whose buffer is a constant's, directly or through views."""
    def base(v):
        while v.node is not None and v.node.op.view_of is not None:
            v = v.node.inputs[v.node.op.view_of]
        return v
    return [i for i, v in enumerate(graph.outputs) if base(v).role == "constant"]


class Backend:
    name = "abstract"

    def compile(self, graph: Graph, **options) -> Executable:
        raise NotImplementedError
