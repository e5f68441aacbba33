"""Rebuilding a graph: the one way passes make a new graph from an old one.

Passes never mutate their input (a compiled function keeps its traced graph, and the
memory report compares against it). A `Rewriter` starts a new graph with the same
inputs and constants, then the pass copies, replaces or drops nodes, mapping each old
value to its new stand-in; nodes are re-added through `Graph.add_node`, so their types
are re-inferred and checked.
"""

from __future__ import annotations

import numpy as np

from ..graph import Graph, Node, Value


class Rewriter:
    def __init__(self, source: Graph, name: str | None = None):
        self.source = source
        self.graph = Graph(name or source.name)
        self.graph.meta = dict(source.meta)
        self.graph.continue_naming(source)  # new values never take an old value's name
        self._map: dict[int, Value] = {}
        for v in source.inputs:
            self._map[id(v)] = self.graph.add_input(v.name, v.type, v.role,
                                                    source.constants.get(v.name))

    def __getitem__(self, old: Value) -> Value:
        """The new value standing for ``old``."""
        return self._map[id(old)]

    def __contains__(self, old: Value) -> bool:
        return id(old) in self._map

    def bind(self, old: Value, new: Value) -> None:
        """From now on ``old`` is replaced by ``new`` (same type, checked)."""
        if old.type != new.type:
            raise ValueError(f"cannot replace %{old.name}: {old.type} by %{new.name}: "
                             f"{new.type}")
        self._map[id(old)] = new

    def constant(self, data: np.ndarray, name: str | None = None) -> Value:
        return self.graph.add_constant(np.asarray(data), name)

    def copy(self, node: Node) -> Node:
        """``node`` re-added over the mapped inputs, its outputs keeping their names."""
        new = self.graph.add_like(node, [self[v] for v in node.inputs])
        for old, out in zip(node.outputs, new.outputs):
            self._map[id(old)] = out
        return new

    def finish(self, outputs: list[Value] | None = None) -> Graph:
        """The new graph returning the stand-ins of ``outputs`` (default: the source's),
        with graph inputs kept as they were (a graph's signature never changes) and
        constants no node uses any more dropped."""
        g = self.graph
        g.outputs = [self[v] for v in (self.source.outputs if outputs is None else outputs)]
        used = {id(v) for n in g.nodes for v in n.inputs} | {id(v) for v in g.outputs}
        g.inputs = [v for v in g.inputs if v.role != "constant" or id(v) in used]
        g.constants = {v.name: g.constants[v.name] for v in g.inputs if v.role == "constant"}
        return g
