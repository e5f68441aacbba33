"""The reference backend: a numpy interpreter over the graph, one method per node kind.

It runs each node with its op's eager implementation, so it is as trustworthy as the
ops' own tests; every other backend is checked against it.
"""

from __future__ import annotations

import numpy as np

from ..device import device_of
from ..graph import Graph, Node
from . import register_backend
from .base import Backend, Executable


class Interpreter(Executable):
    def __init__(self, graph: Graph, check: bool = True):
        super().__init__(graph)
        self.check = check

    def __call__(self, *arrays) -> list:
        if self.check:
            self.check_inputs(arrays)
        xp = device_of(arrays[0]).xp if arrays else np
        env = {id(v): a for v, a in zip(self.runtime_inputs, arrays)}
        for v in self.graph.inputs:
            if v.role == "constant":
                env[id(v)] = xp.asarray(self.graph.constants[v.name])
        for node in self.graph.nodes:
            self.run_op(node, env, xp)
        return [env[id(v)] for v in self.graph.outputs]

    def run_op(self, node: Node, env: dict, xp) -> None:
        out = node.op.impl(xp, *[env[id(v)] for v in node.inputs], **node.attrs)
        outs = out if isinstance(out, tuple) else (out,)
        for v, o in zip(node.outputs, outs):
            env[id(v)] = xp.asarray(o)


@register_backend
class ReferenceBackend(Backend):
    name = "reference"

    def compile(self, graph: Graph, **options) -> Executable:
        return Interpreter(graph, **options)
