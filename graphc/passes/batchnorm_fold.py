"""Folding inference BatchNorm into the weights of the convolution or Dense before it.

`graphc.ops.nn.batch_norm` in inference is ``(x - mean) * (gamma * rsqrt(var + eps)) +
beta`` on per-channel vectors (reshaped to broadcast along the channel axis). After a
conv2d, or a matmul ``x @ B`` (Dense: ``B = transpose(W)``), with a bias add in between,
that is a chain of per-channel ``add``/``sub``/``mul`` on the library call's result, so

    chain(lib(x, W)) == lib(x, W * S) + T        (S, T per output channel)

with S the product of the multipliers and T the folded shifts (``(b - mean) * scale +
beta`` for a BatchNorm). The chain need not come from graphc's own layer: an imported
ONNX BatchNormalization, ``(x - mean) * (scale * rsqrt(var + eps)) + b`` on (C, 1, 1)
constants, is the same chain, and so is any run of ``y + c``, ``c + y``, ``y - c``,
``c - y``, ``y * c``, ``c * y`` and ``y / c`` with ``c`` per output channel ((C, 1, 1),
(1, C, 1, 1), (C,) after a matmul, or a scalar); the steps compose. ``fold_batch_norm``
finds such chains (at least one multiply or divide, every intermediate used only by the
next link) whose weight and per-channel operands are
*static*: computed from constants alone, or also from parameter inputs named in
``graph.meta["frozen"]`` (the tracer lists parameters with grad_req 'null' that the graph
does not write: Gluon's way to freeze a layer). With constants, W * S and T
are computed here in float64 and rounded once to the weight's dtype; with frozen
parameters, whose values only arrive per call, the same arithmetic is emitted as nodes on
the (small) weight and channel vectors, in place of the per-element work on activations.
The result equals the unfolded graph within float rounding, not bit for bit (``x @ (W * s)``
rounds differently from ``(x @ W) * s``), which is why the pass runs at opt level 3 only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dtypes as dt
from ..graph import Graph, Node, Value
from .pipeline import register_pass
from .rewrite import Rewriter
from .simplify import dce, evaluate


@dataclass(frozen=True)
class _Layout:
    weight: int       # which input is the weight
    out_axis: int     # the output's channel axis (negative: from the end)
    weight_axis: int  # the weight's axis that indexes output channels


#: The library ops a chain folds into, by name: where their output channels live.
_LINEAR = {
    "conv2d": _Layout(weight=1, out_axis=1, weight_axis=0),     # W: (O, C/groups, kh, kw)
    "matmul": _Layout(weight=1, out_axis=-1, weight_axis=-1),   # B: (..., k, O)
}
#: The per-channel links of a chain: y * c, y + c, y - c, c - y, y / c (and c * y, c + y).
_LINKS = ("mul", "add", "sub", "div")
#: The links that scale (a chain needs one to have something to fold into the weight).
_SCALES = ("mul", "div")


def _static_values(graph: Graph) -> set[int]:
    """Ids of values computed from constants and frozen parameters only."""
    frozen = set(graph.meta.get("frozen", ()))
    static = {id(v) for v in graph.inputs
              if v.role == "constant" or (v.role == "parameter" and v.name in frozen)}
    for node in graph.nodes:
        if node.inputs and all(id(v) in static for v in node.inputs):
            static.update(id(v) for v in node.outputs)
    return static


@dataclass
class _Chain:
    lib: Node
    layout: _Layout
    links: list[tuple[Node, int]]  # (node, position of the chain's value among its inputs)

    @property
    def last(self) -> Node:
        return self.links[-1][0]


def _per_channel(c: Value, y: Value, axis: int) -> bool:
    """``c`` broadcasts against ``y`` along ``axis`` only and changes neither its shape
    nor its dtype."""
    if c.dtype != y.dtype or c.type.ndim > y.type.ndim:
        return False
    shape = (1,) * (y.type.ndim - c.type.ndim) + c.shape
    return all(d == 1 or (i == axis and d == y.shape[i]) for i, d in enumerate(shape))


def _find_chains(graph: Graph, static: set[int]) -> list[_Chain]:
    users = graph.users()
    outputs = {id(v) for v in graph.outputs}
    chains = []
    for node in graph.nodes:
        layout = _LINEAR.get(node.op.name)
        if layout is None:
            continue
        y, w = node.outputs[0], node.inputs[layout.weight]
        # a static weight on non-static data (all static is fold_constants' work)
        if id(w) not in static or w.type.ndim < 2 or w.dtype != y.dtype \
                or not dt.is_float(y.dtype) or y.type.ndim == 0 \
                or all(id(v) in static for v in node.inputs):
            continue
        axis = layout.out_axis % y.type.ndim
        links = []
        while id(y) not in outputs and len(users[y]) == 1:
            user = users[y][0]
            if user.op.name not in _LINKS or len(user.inputs) != 2 \
                    or user.inputs[0] is user.inputs[1]:
                break
            pos = user.inputs.index(y)
            c = user.inputs[1 - pos]
            if id(c) not in static or not _per_channel(c, y, axis) \
                    or (user.op.name == "div" and pos != 0):  # c / y is not affine in y
                break
            links.append((user, pos))
            y = user.outputs[0]
        # a chain without a multiply or divide has nothing to fold into the weight
        if any(n.op.name in _SCALES for n, _ in links):
            chains.append(_Chain(node, layout, links))
    return chains


class _Folder:
    """Per-channel arithmetic on numpy arrays (float64, when everything is constant) or
    on new-graph values (when a frozen parameter is involved)."""

    def __init__(self, graph: Graph, rw, dtype: str, like: Node):
        self.graph, self.rw, self.dtype, self.like = graph, rw, dtype, like
        self._memo: dict[int, np.ndarray | None] = {}

    def value(self, v: Value):
        """The numpy value of static ``v`` if it is computed from constants alone (its
        nodes are evaluated with the ops' numpy implementations), else None."""
        if id(v) in self._memo:
            return self._memo[id(v)]
        out = None
        if v.role == "constant":
            out = self.graph.constants[v.name]
        elif v.node is not None:
            ins = [self.value(u) for u in v.node.inputs]
            if all(a is not None for a in ins):
                outs = evaluate(v.node, ins)
                out = None if outs is None else outs[v.index]
        self._memo[id(v)] = out
        return out

    def node(self, op: str, inputs: list, attrs: dict | None = None) -> Value:
        """A new node (at the folded library call's line) on values or numpy arrays."""
        inputs = [self.as_value(a) for a in inputs]
        return self.rw.graph.add_node(op, inputs, attrs, name=f"{self.like.name}.fold_bn",
                                      loc=self.like.loc).outputs[0]

    def as_value(self, a, dtype: str | None = None) -> Value:
        if isinstance(a, Value):
            return a
        return self.rw.constant(np.asarray(a, dt.to_numpy(dtype or self.dtype)))

    def channels(self, c: Value, n: int, axis: int, ndim: int):
        """Per-channel operand ``c`` (aligned to rank ``ndim``) as a vector of ``n``."""
        data = self.value(c)
        if data is not None:
            aligned = data.reshape((1,) * (ndim - data.ndim) + data.shape)
            one = tuple(n if i == axis else 1 for i in range(ndim))
            return np.broadcast_to(aligned, one).reshape(n).astype(np.float64)
        v = self.rw[c]
        if v.shape == (n,):
            return v
        if v.type.size == n:
            return self.node("reshape", [v], {"shape": (n,)})
        return self.node("broadcast_to", [self.node("reshape", [v], {"shape": ()})],
                         {"shape": (n,)})

    def combine(self, op: str, a, b):
        """``a op b`` for op in mul/div/add/sub; None stands for the identity of the role the
        operand plays (1 for a scale, 0 for a shift) and is never passed for both."""
        if a is None:
            return {"sub": self.neg, "div": self.recip}.get(op, lambda v: v)(b)
        if b is None:
            return a
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            return {"mul": np.multiply, "div": np.divide, "add": np.add,
                    "sub": np.subtract}[op](a, b)
        return self.node(op, [a, b])

    def neg(self, a):
        return -a if isinstance(a, np.ndarray) else self.node("neg", [a])

    def recip(self, a):
        return 1.0 / a if isinstance(a, np.ndarray) else self.node("div", [np.ones(()), a])

    def shaped(self, vec, shape: tuple[int, ...]):
        """A vector reshaped to ``shape`` (to broadcast along an axis), as a new value."""
        if isinstance(vec, np.ndarray):
            return self.as_value(vec.reshape(shape))
        return vec if vec.shape == shape else self.node("reshape", [vec], {"shape": shape})


def _fold(chain: _Chain, graph: Graph, rw) -> Value:
    """The new value standing for the chain's last value: lib(x, W * S) (+ T)."""
    lib, layout = chain.lib, chain.layout
    y = lib.outputs[0]
    ndim, axis = y.type.ndim, layout.out_axis % y.type.ndim
    n = y.shape[axis]
    f = _Folder(graph, rw, y.dtype, lib)
    scale = shift = None  # 1 and 0
    for node, pos in chain.links:
        c = f.channels(node.inputs[1 - pos], n, axis, ndim)
        op = node.op.name
        if op in _SCALES:  # y * c, c * y, y / c
            scale = f.combine(op, scale, c)
            shift = None if shift is None else f.combine(op, shift, c)
        elif op == "add" or pos == 0:  # y + c, c + y, y - c
            shift = f.combine(op, shift, c)
        else:  # c - y == -y + c
            scale = f.neg(np.ones(n) if scale is None else scale)
            shift = f.combine("sub", c, shift)
    w_old = lib.inputs[layout.weight]
    w_axis = layout.weight_axis % w_old.type.ndim
    w_shape = tuple(n if i == w_axis else 1 for i in range(w_axis, w_old.type.ndim))
    w_data = f.value(w_old)
    if w_data is not None and isinstance(scale, np.ndarray):
        weight = f.as_value(w_data.astype(np.float64) * scale.reshape(w_shape), w_old.dtype)
    else:
        weight = f.node("mul", [rw[w_old], f.shaped(scale, w_shape)])
    inputs = [rw[v] for v in lib.inputs]
    inputs[layout.weight] = weight
    last = chain.last.outputs[0]
    out = rw.graph.add_node(lib.op, inputs, lib.attrs, name=lib.name, loc=lib.loc,
                            output_names=[y.name]).outputs[0]
    if shift is not None:
        t = f.shaped(shift, tuple(n if i == axis else 1 for i in range(axis, ndim)))
        out = rw.graph.add_node("add", [out, t], name=chain.last.name, loc=chain.last.loc,
                                output_names=[last.name]).outputs[0]
    return out


@register_pass("fold_batch_norm")
def fold_batch_norm(graph: Graph) -> Graph:
    """Per-channel scale/shift chains after conv2d or matmul with static weights folded
    into new weights and one bias add (see the module docstring)."""
    chains = _find_chains(graph, _static_values(graph))
    if not chains:
        return graph
    skip = {id(c.lib) for c in chains} | {id(n) for c in chains for n, _ in c.links[:-1]}
    at_last = {id(c.last): c for c in chains}
    rw = Rewriter(graph)
    for node in graph.nodes:
        if id(node) in at_last:
            chain = at_last[id(node)]
            rw.bind(node.outputs[0], _fold(chain, graph, rw))
        elif id(node) not in skip:
            rw.copy(node)
    return dce(rw.finish())
