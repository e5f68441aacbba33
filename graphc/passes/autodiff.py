"""Graph-level reverse-mode autodiff: a graph -> a joint graph -> forward and backward graphs.

`differentiate` does not have VJP rules of its own. It replays the graph node by node
under a `Tracer` while the eager tape records (`graphc.autograd`), then runs the tape's
backward on symbolic cotangents: the ops' VJP rules add the backward nodes, exactly as
`gc.grad` does inside `gc.jit`. The result is the JOINT graph::

    (runtime inputs..., one cotangent per float output) -> (outputs..., grads for wrt...)

which is then PARTITIONED at the cotangents. Every value that does not depend on a
cotangent belongs to the forward graph (including VJP arithmetic on forward values only,
e.g. relu's ``x > 0`` mask); every value that does belongs to the backward graph. Forward
values the backward graph reads are the SAVED values: the forward graph returns them after
the original outputs and the backward graph takes them before the cotangents, so saved
activations are ordinary graph values that the memory planner sees. Values computed from
constants alone are duplicated into each graph that uses them, like the constants.

Saved values have role ``data`` in the backward graph whatever their role in forward
(a parameter, an rng key): backward owns none of them, its caller passes back exactly what
forward returned. Backward takes one cotangent per float output, in output order, even
where an output does not depend on any ``wrt`` input (then that cotangent is unused), so
its signature follows from the forward graph's outputs alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import autograd
from .. import dtypes as dt
from ..errors import GraphcError
from ..graph import Graph, Value
from ..tensor import Tensor, apply, symbolic
from ..trace import TracedValue, Tracer, name_scope

_FWD, _BWD, _CONST = "forward", "backward", "constant"


@dataclass(eq=False)
class Differentiated:
    """The result of `differentiate`: the joint graph and its forward/backward split.

    ``forward``: the original runtime inputs -> the original outputs, then ``saved``.
    ``backward``: ``saved``, then one cotangent per output in ``cotangent_outputs`` ->
    one gradient per ``wrt`` input (indices into the original graph's inputs)."""

    joint: Graph
    forward: Graph
    backward: Graph
    saved: list[str]
    wrt: list[int]
    cotangent_outputs: list[int]
    options: dict = field(default_factory=dict)   # compile options (opt_level...)
    _executables: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def num_outputs(self) -> int:
        return len(self.forward.outputs) - len(self.saved)

    def _exe(self, which: str, backend: str | None):
        from .pipeline import compile_graph
        key = (which, backend)
        if key not in self._executables:
            self._executables[key] = compile_graph(getattr(self, which), backend,
                                                   **self.options)
        return self._executables[key]

    def run_forward(self, *inputs, backend: str | None = None) -> tuple[list, list]:
        """(outputs, saved) for the original graph's runtime inputs (arrays)."""
        outs = self._exe("forward", backend)(*inputs)
        return outs[:self.num_outputs], outs[self.num_outputs:]

    def run_backward(self, saved, cotangents, backend: str | None = None) -> list:
        """Gradients for ``wrt`` from what forward saved and the outputs' cotangents."""
        return self._exe("backward", backend)(*saved, *cotangents)

    def run(self, inputs, cotangents, backend: str | None = None) -> tuple[list, list]:
        """(outputs, grads): forward then backward."""
        outs, saved = self.run_forward(*inputs, backend=backend)
        return outs, self.run_backward(saved, cotangents, backend=backend)


def differentiate(graph: Graph, wrt: list[int] | None = None) -> Differentiated:
    """Forward and backward graphs of ``graph`` for the gradients of its ``wrt`` inputs.

    ``wrt``: indices into ``graph.inputs``; by default every float input whose role is
    'data' or 'parameter'. See the module docstring for the graphs' signatures."""
    graph.validate()
    wrt = _check_wrt(graph, wrt)
    joint = _joint(graph, wrt)
    n_out = len(graph.outputs)
    runtime = [v for v in joint.inputs if v.role != "constant"]
    n_in = sum(v.role != "constant" for v in graph.inputs)
    fwd_inputs, cts = runtime[:n_in], runtime[n_in:]
    kind = _classify(joint, set(map(id, cts)))
    saved = _saved(joint, kind, joint.outputs[n_out:])
    forward = _extract(joint, f"{graph.name}_forward", [(v, v.role) for v in fwd_inputs],
                       joint.outputs[:n_out] + saved)
    backward = _extract(joint, f"{graph.name}_backward",
                        [(v, "data") for v in saved] + [(v, "data") for v in cts],
                        joint.outputs[n_out:])
    return Differentiated(joint, forward, backward, [v.name for v in saved], wrt,
                          [i for i, v in enumerate(graph.outputs) if dt.is_float(v.dtype)])


def _check_wrt(graph: Graph, wrt) -> list[int]:
    if wrt is None:
        return [i for i, v in enumerate(graph.inputs)
                if v.role in ("data", "parameter") and dt.is_float(v.dtype)]
    wrt = [int(i) for i in wrt]
    for i in wrt:
        if not 0 <= i < len(graph.inputs):
            raise GraphcError(f"differentiate: wrt index {i} out of range for "
                              f"{len(graph.inputs)} graph inputs")
        v = graph.inputs[i]
        if v.role == "constant" or not dt.is_float(v.dtype):
            raise GraphcError(f"differentiate: input {i} (%{v.name}: {v.type}, role "
                              f"{v.role}) cannot take a gradient; it must be a float, "
                              "non-constant input")
    if len(set(wrt)) != len(wrt):
        raise GraphcError(f"differentiate: wrt lists an input twice: {wrt}")
    return wrt


# -- the joint graph ---------------------------------------------------------------------

def _joint(graph: Graph, wrt: list[int]) -> Graph:
    """Replay ``graph`` on a recording tape and trace the tape's backward pass."""
    tracer = Tracer(f"{graph.name}_joint")
    g = tracer.graph
    env: dict[int, Tensor] = {}
    for v in graph.inputs:  # runtime inputs keep their names, roles and order
        if v.role != "constant":
            env[id(v)] = tracer.input(v.name, v.type, v.role)
    for v in graph.inputs:
        if v.role == "constant":
            env[id(v)] = symbolic(TracedValue(
                g.add_input(v.name, v.type, "constant", graph.constants[v.name]), tracer))
    # Reserve the forward value names, so that backward values never take one of them.
    g.reserve_names(v.name for n in graph.nodes for v in n.outputs)
    float_outs = [v for v in graph.outputs if dt.is_float(v.dtype)]
    cts = [tracer.input(f"d_{v.name}", v.type) for v in float_outs]
    leaves = [env[id(graph.inputs[i])] for i in wrt]
    for t in leaves:
        t._node = autograd.Leaf("write")

    with autograd.mode(recording=True):
        for node in graph.nodes:
            tracer.loc = node.loc
            outs = apply(node.op, *[env[id(v)] for v in node.inputs], **node.attrs)
            outs = outs if isinstance(outs, tuple) else (outs,)
            new = g.nodes[-1]  # the op's own node comes last (after any input casts)
            new.name, new.loc = node.name, node.loc
            for v, o in zip(node.outputs, outs):
                o._sym.value.name = v.name
                env[id(v)] = o
            entry = outs[0]._node
            if isinstance(entry, autograd.Entry):
                entry.vjp = _located(entry.vjp, tracer, node)
    outputs = [env[id(v)] for v in graph.outputs]
    heads = [env[id(v)] for v in float_outs]
    cts_by_leaf = autograd.run_backward(heads, cts, retain_graph=False)
    grads = []
    for i, t in zip(wrt, leaves):
        want = graph.inputs[i].type
        hit = cts_by_leaf.get(id(t))
        if hit is None:  # no output depends on this input: zeros, as a node on a scalar
            from ..ops.shape import broadcast_to
            tracer.loc = None
            zero = g.add_constant(np.zeros((), dt.to_numpy(want.dtype)))
            grads.append(broadcast_to(symbolic(TracedValue(zero, tracer)), want.shape))
            g.nodes[-1].loc = None  # no user line made it
            continue
        gt = hit[1]
        if gt.dtype != t.dtype:
            gt = gt.astype(t.dtype)
        if tuple(gt.shape) != want.shape:
            raise GraphcError(f"differentiate: the gradient of %{graph.inputs[i].name} has "
                              f"shape {tuple(gt.shape)}, expected {want.shape} (a VJP rule "
                              "returned the wrong shape)")
        grads.append(gt)
    for t in leaves:
        t._node = None
    tracer.loc = None
    g.outputs = [tracer.lift(t) for t in outputs + grads]
    forward_names = {v.name for v in graph.values()}
    for i, v in zip(wrt, g.outputs[len(outputs):]):  # name each gradient d_<input>
        if v.node is not None and v.name not in forward_names:
            forward_names.add(v.name)
            v.name = g.fresh_name(f"d_{graph.inputs[i].name}")
            forward_names.add(v.name)
    runtime = [(v, v.role) for v in g.inputs if v.role != "constant"]  # inputs, cotangents
    return _extract(g, g.name, runtime, g.outputs)


def _located(vjp, tracer: Tracer, node):
    """``vjp`` adding its nodes at the forward node's line, named after it."""
    def run(gs):
        tracer.loc = node.loc
        with name_scope(f"{node.name}.vjp"):
            return vjp(gs)
    return run


# -- partitioning ------------------------------------------------------------------------

def _classify(g: Graph, cotangents: set[int]) -> dict[int, str]:
    """Each value: backward if it depends on a cotangent, else forward if it depends on a
    runtime input, else constant."""
    kind = {id(v): _CONST if v.role == "constant" else _BWD if id(v) in cotangents else _FWD
            for v in g.inputs}
    for node in g.nodes:
        ks = {kind[id(v)] for v in node.inputs}
        k = _BWD if _BWD in ks else _FWD if _FWD in ks else _CONST
        for v in node.outputs:
            kind[id(v)] = k
    return kind


def _saved(g: Graph, kind: dict, grads: list[Value]) -> list[Value]:
    """Forward values the backward part of ``g`` reads, in ``g``'s value order."""
    hit: set[int] = set()
    seen: set[int] = set()
    stack = list(grads)
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if kind[id(v)] == _FWD:
            hit.add(id(v))
        elif v.node is not None:
            stack.extend(v.node.inputs)
    return [v for v in g.values() if id(v) in hit]


def _extract(src: Graph, name: str, inputs: list[tuple[Value, str]],
             outputs: list[Value]) -> Graph:
    """A new graph of ``src``'s nodes that compute ``outputs`` from ``inputs`` (given with
    the role each takes), pulling in the constants used; names, attrs and locations
    are kept. Nodes nothing needs are left out."""
    given = {id(v) for v, _ in inputs}
    needed: set[int] = set()  # values, and the nodes that compute them
    stack = list(outputs)
    while stack:
        v = stack.pop()
        if id(v) in needed:
            continue
        needed.add(id(v))
        if id(v) in given or v.role == "constant":
            continue
        if v.node is None:
            raise GraphcError(f"autodiff: %{v.name} is needed by {name} but is not one of "
                              "its inputs (a partitioning bug)")
        needed.add(id(v.node))
        stack.extend(v.node.inputs)
    out = Graph(name)
    new: dict[int, Value] = {}
    for v, role in inputs:
        new[id(v)] = out.add_input(v.name, v.type, role)
    for v in src.inputs:
        if v.role == "constant" and id(v) in needed:
            new[id(v)] = out.add_input(v.name, v.type, "constant", src.constants[v.name])
    for node in src.nodes:
        if id(node) not in needed:
            continue
        copy = out.add_node(node.op, [new[id(v)] for v in node.inputs], node.attrs,
                            node.name, node.loc, [v.name for v in node.outputs])
        for v, c in zip(node.outputs, copy.outputs):
            new[id(v)] = c
    out.outputs = [new[id(v)] for v in outputs]
    return out.validate()
