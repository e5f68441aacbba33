"""Operator fusion: groups of ops become one kernel, a ``fused`` node carrying its sub-graph.

The pass reads only the ops' facts (`Kind`, the reduction's ``axis``/``keepdims`` attrs)
and forms three classes of kernel (the ``kind`` attr of the fused node, see
`graphc.ops.fused`), each with a contract a code generator can rely on:

- ``elementwise``: ELEMENTWISE ops whose outputs all have one shape D, the kernel's
  domain; each body node computes at every index of D, reading its inputs by broadcast
  index math (body inputs may have any shape that broadcasts to D, e.g. a bias or the
  stride-0 view a ``broadcast_to`` makes).
- ``reduction``: REDUCTION ops that all reduce the same axes A of the same input shape S,
  with elementwise producers at shape S ("full" values) and elementwise consumers at the
  reduced shape (keepdims or not). When a full value depends on a reduction's result
  (softmax's ``exp(x - max(x))``, layer norm's ``x - mean(x)``), A must be the trailing
  axes of S, and reduced values enter full ones with keepdims: the kernel is row-wise,
  one row per reduced element, with as many passes over the row as the chain of
  reductions needs. softmax, log_softmax and layer_norm become 1 kernel; softmax
  cross-entropy 2 (its one-hot is an INJECTIVE op, which is not fused).
- ``library``: one LIBRARY op (GEMM, convolution, pooling) whose inputs come from outside,
  and an elementwise epilogue on its output shape (bias add, activation), which a backend
  applies as the library call's results leave registers.

In every class, a body node whose output has a single element and is used only inside
the kernel may have another shape (a scalar computed per element); constants of one
element are copied into the body rather than passed in.

Legality: groups grow by merging along producer -> consumer edges, node by node in
execution order and then again until nothing changes; a merge happens only if the union
still fits its class, has at most `MAX_INPUTS` inputs, and no path leaves one group and
enters the other (so the kernel graph stays acyclic). Nothing is computed twice: a value
used outside its kernel, or returned, becomes one of the kernel's outputs. Groups of one
op stay plain nodes, and views (INJECTIVE ops that declare ``view_of``) stay outside
kernels, where `Graph.summary` counts them as 0 kernels. `inplace_inputs` is the fused
op's per-node ``inplace`` fact, for the memory planner.
"""

from __future__ import annotations

import math

from ..graph import Graph, Node, Value
from ..ops.registry import Kind
from .pipeline import register_pass
from .rewrite import Rewriter

#: A kernel reads at most this many distinct inputs (constants copied into it aside).
MAX_INPUTS = 16
#: A merge may not grow a kernel past this many intermediate outputs: all of a kernel's
#: outputs are live together when it ends, where separate kernels could reuse one buffer.
MAX_OUTPUTS = 3

_FUSABLE = (Kind.ELEMENTWISE, Kind.REDUCTION, Kind.LIBRARY)


def _size(v: Value) -> int:
    return math.prod(v.type.shape)


def _reduced_axes(node: Node) -> tuple[int, ...] | None:
    """The axes a reduction node reduces, from its canonical attrs (None: not readable)."""
    if len(node.inputs) != 1 or "axis" not in node.attrs:
        return None
    ndim, axis = len(node.inputs[0].type.shape), node.attrs["axis"]
    axes = tuple(range(ndim)) if axis is None else (axis,) if isinstance(axis, int) else axis
    if not isinstance(axes, tuple) or not axes or not all(isinstance(a, int) for a in axes):
        return None
    return tuple(sorted(axes))


def _fusable(node: Node) -> bool:
    if node.body is not None or node.op.kind not in _FUSABLE or len(node.outputs) != 1:
        return False
    if node.op.kind is Kind.REDUCTION:
        axes = _reduced_axes(node)
        if axes is None:
            return False
        shape = node.inputs[0].type.shape
        keep = tuple(1 if i in axes else d for i, d in enumerate(shape))
        drop = tuple(d for i, d in enumerate(shape) if i not in axes)
        return node.outputs[0].type.shape in (keep, drop)
    return True


class _Group:
    """A group of nodes and what its legality checks need, kept up to date on merges."""

    __slots__ = ("members", "kind", "inputs", "exported", "big", "libs", "reds")

    def __init__(self, members: list[int], kind: str | None, inputs: dict[int, Value],
                 exported: set[int], big: set[tuple], libs: list[int], reds: list[int]):
        self.members, self.kind = members, kind     # node indices; kernel kind if > 1
        self.inputs = inputs        # id -> value read from outside (copied constants aside)
        self.exported = exported    # members whose output is used outside or returned
        self.big = big              # the output shapes of members of more than one element
        self.libs, self.reds = libs, reds           # the LIBRARY and REDUCTION members


class _Planner:
    """Groups of node indices, merged while legal; the graph of groups stays acyclic."""

    def __init__(self, graph: Graph, max_inputs: int):
        self.graph, self.nodes, self.max_inputs = graph, graph.nodes, max_inputs
        n = len(self.nodes)
        self.producer: dict[int, int] = {}     # id(value) -> index of the node making it
        for i, node in enumerate(self.nodes):
            for v in node.outputs:
                self.producer[id(v)] = i
        self.users: dict[int, list[int]] = {}  # node index -> indices of nodes using it
        for i, node in enumerate(self.nodes):
            for v in node.inputs:
                p = self.producer.get(id(v))
                if p is not None:
                    self.users.setdefault(p, []).append(i)
        self.returned = {self.producer[id(v)] for v in graph.outputs if id(v) in self.producer}
        self.fusable = [_fusable(node) for node in self.nodes]
        self.group = list(range(n))                                   # node -> group id
        self.groups = {i: self._single(i, node) for i, node in enumerate(self.nodes)}
        self.succ: dict[int, set[int]] = {i: set(self.users.get(i, ())) for i in range(n)}
        self.pred: dict[int, set[int]] = {i: set() for i in range(n)}
        for p, users in self.users.items():
            for u in users:
                self.pred[u].add(p)
        # A topological order of the groups (merged-away ids stay as dead entries), so
        # that path searches only look between the two groups a merge would join.
        self.order = list(range(n))
        self.pos = list(range(n))

    def _single(self, i: int, node: Node) -> _Group:
        kind = node.op.kind
        return _Group([i], None, {id(v): v for v in node.inputs if not self.copied(v)},
                      {i} if self.users.get(i) or i in self.returned else set(),
                      {v.type.shape for v in node.outputs if _size(v) != 1},
                      [i] if kind is Kind.LIBRARY else [], [i] if kind is Kind.REDUCTION else [])

    def copied(self, v: Value) -> bool:
        """One-element constants are copied into kernels rather than passed in."""
        return v.role == "constant" and _size(v) == 1

    # -- growing groups -------------------------------------------------------------------
    def run(self) -> list[tuple[list[int], str | None]]:
        """The groups, in an execution order, with their kernel kinds (None: one op)."""
        changed = True
        while changed:
            changed = False
            for i, node in enumerate(self.nodes):
                if not self.fusable[i]:
                    continue
                for v in node.inputs:
                    p = self.producer.get(id(v))
                    if p is not None and self.fusable[p] and self._merge(self.group[p],
                                                                         self.group[i]):
                        changed = True
        return [(sorted(self.groups[g].members), self.groups[g].kind)
                for g in self.order if g in self.groups]

    def _merge(self, a: int, b: int) -> bool:
        """Merge groups ``a`` and ``b`` (which uses a value of ``a``, so it cannot reach
        ``a``) if the union is a legal kernel and no other path joins them."""
        if a == b:
            return False
        merged = self._union(self.groups[a], self.groups[b], {a, b})
        if merged is None:
            return False
        between = self._between(a, b)
        if between is None:
            return False
        # the union goes after whatever b waited for, before a's other users; it keeps
        # the id of the bigger group, so relabeling is cheap
        keep, drop = (a, b) if len(self.groups[a].members) >= len(self.groups[b].members) \
            else (b, a)
        lo, hi = self.pos[a], self.pos[b]
        span = self.order[lo:hi + 1]
        span = [g for g in span if g not in between and g != a and g != b] + [keep] + \
            [g for g in span if g in between] + [drop]
        self.order[lo:hi + 1] = span
        for k, g in enumerate(span, lo):
            self.pos[g] = k
        for i in self.groups[drop].members:
            self.group[i] = keep
        self.groups[keep] = merged
        del self.groups[drop]
        for s in self.succ[drop]:
            self.pred[s].discard(drop)
            self.pred[s].add(keep)
        for p in self.pred[drop]:
            self.succ[p].discard(drop)
            self.succ[p].add(keep)
        self.succ[keep] |= self.succ.pop(drop)
        self.pred[keep] |= self.pred.pop(drop)
        self.succ[keep] -= {a, b}
        self.pred[keep] -= {a, b}
        return True

    def _between(self, a: int, b: int) -> set[int] | None:
        """The groups reachable from ``a`` that come before ``b`` in the order, or None if
        one of them reaches ``b`` (merging would make a cycle through it)."""
        limit, seen, stack = self.pos[b], set(), [a]
        while stack:
            g = stack.pop()
            for h in self.succ[g]:
                if h == b:
                    if g != a:
                        return None
                elif h not in seen and self.pos[h] < limit:
                    seen.add(h)
                    stack.append(h)
        return seen

    # -- legality -------------------------------------------------------------------------
    def _union(self, ga: _Group, gb: _Group, ids: set[int]) -> _Group | None:
        """The union of two groups, or None if it is not a kernel of any kind."""
        libs, reds = ga.libs + gb.libs, ga.reds + gb.reds
        if len(libs) > 1 or (libs and reds):
            return None
        group, producer = self.group, self.producer
        inputs = {k: v for k, v in (ga.inputs | gb.inputs).items()
                  if k not in producer or group[producer[k]] not in ids}
        if len(inputs) > self.max_inputs:
            return None
        exported = {i for i in ga.exported | gb.exported if i in self.returned
                    or any(group[u] not in ids for u in self.users.get(i, ()))}
        if self._live_outputs(exported) > max(MAX_OUTPUTS, self._live_outputs(ga.exported),
                                              self._live_outputs(gb.exported)):
            return None  # all its outputs are live when a kernel ends: keep memory low
        big = ga.big | gb.big
        shapes = big | {self.nodes[i].outputs[0].type.shape for i in exported}
        members = ga.members + gb.members
        if libs:
            lib = self.nodes[libs[0]]
            if any(id(v) in producer and group[producer[id(v)]] in ids for v in lib.inputs):
                return None  # a prologue: the library call would wait for its own kernel
            kind, ok = "library", shapes <= {lib.outputs[0].type.shape}
        elif reds:
            kind, ok = "reduction", self._reduction(sorted(members), reds, exported)
        else:
            kind, ok = "elementwise", len(shapes) <= 1
        return _Group(members, kind, inputs, exported, big, libs, reds) if ok else None

    def _live_outputs(self, exported: set[int]) -> int:
        """Kernel outputs that live in the arena (graph outputs have their own buffers)."""
        return sum(1 for i in exported if i not in self.returned)

    def _reduction(self, members: list[int], reds: list[int], exported: set[int]) -> bool:
        """Whether ``members`` (in order) form a row-wise or plain reduction kernel."""
        first = self.nodes[reds[0]]
        shape, axes = first.inputs[0].type.shape, _reduced_axes(first)
        if any(self.nodes[r].inputs[0].type.shape != shape or
               _reduced_axes(self.nodes[r]) != axes for r in reds):
            return False
        keep = tuple(1 if i in axes else d for i, d in enumerate(shape))
        drop = tuple(d for i, d in enumerate(shape) if i not in axes)
        trailing = axes == tuple(range(len(shape) - len(axes), len(shape)))
        inside = set(members)
        level: dict[int, str] = {}
        after_reduction: set[int] = set()  # nodes that depend on a reduction in the group
        for i in members:
            node = self.nodes[i]
            out = node.outputs[0]
            reduction = node.op.kind is Kind.REDUCTION
            if reduction:
                level[i] = "reduced"
            elif out.type.shape == shape:
                level[i] = "full"
            elif out.type.shape in (keep, drop):
                level[i] = "reduced"
            elif _size(out) == 1 and i not in exported:
                level[i] = "tiny"
            else:
                return False
            internal = [self.producer[id(v)] for v in node.inputs
                        if self.producer.get(id(v)) in inside]
            if reduction or any(p in after_reduction for p in internal):
                after_reduction.add(i)
            for p in internal:
                pv = self.nodes[p].outputs[0]
                if reduction:
                    if level[p] != "full":
                        return False
                elif level[i] == "full":
                    if level[p] == "reduced" and pv.type.shape != keep and _size(pv) != 1:
                        return False  # a reduced value without keepdims read across columns
                    if p in after_reduction and not trailing:
                        return False  # broadcast back: only row-wise (trailing axes)
                elif level[i] == "reduced" and level[p] == "full":
                    return False
        return True

    def exported(self, i: int, inside: set[int]) -> bool:
        """Whether node ``i``'s output is needed outside the group ``inside``."""
        return i in self.returned or any(u not in inside for u in self.users.get(i, ()))

    def external_inputs(self, members: list[int]) -> list[Value]:
        """The values a group reads from outside (first use first), one-element constants
        (copied into the body) included."""
        inside, seen, out = set(members), set(), []
        for i in members:
            for v in self.nodes[i].inputs:
                if self.producer.get(id(v)) not in inside and id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out


def _anchor(nodes: list[Node]) -> Node:
    for kind in (Kind.LIBRARY, Kind.REDUCTION):
        for n in nodes:
            if n.op.kind is kind:
                return n
    return nodes[0]


def _emit(rw: Rewriter, planner: _Planner, members: list[int], kind: str, k: int) -> None:
    """Add the fused node for ``members`` to the new graph."""
    nodes = [planner.nodes[i] for i in members]
    inside = set(members)
    body = Graph(f"{kind}{k}")
    local: dict[int, Value] = {}
    outer: list[Value] = []
    for v in planner.external_inputs(members):
        if planner.copied(v):
            local[id(v)] = body.add_input(v.name, v.type, "constant",
                                          planner.graph.constants[v.name])
        else:
            local[id(v)] = body.add_input(v.name, v.type, "data")
            outer.append(rw[v])
    exported = []
    for i, node in zip(members, nodes):
        new = body.add_like(node, [local[id(v)] for v in node.inputs])
        for old, value in zip(node.outputs, new.outputs):
            local[id(old)] = value
        if planner.exported(i, inside):
            exported.append(node.outputs[0])
    body.outputs = [local[id(v)] for v in exported]
    anchor = _anchor(nodes)  # a scoped name ("dense0/matmul") names the kernel
    name = anchor.name if anchor.name != anchor.op.name else ""
    fused = rw.graph.add_fused(body, outer, kind, name=name, loc=anchor.loc,
                               output_names=[v.name for v in exported])
    for old, new in zip(exported, fused.outputs):
        rw.bind(old, new)


def inplace_inputs(node: Node, output: int = 0) -> tuple[int, ...]:
    """The inputs of fused kernel ``node`` whose buffer its output ``output`` may take:
    the per-node ``inplace`` fact of a fused op, for the memory planner.

    An input qualifies if it has the output's type and the kernel reads it only at the
    index it writes: only elementwise body nodes of its own shape read it. That is any such
    input of an elementwise kernel, those only the epilogue reads in a library kernel (the
    library call reads whole rows), and in a reduction kernel those only the epilogue at
    the reduced shape reads, when the output has that shape (the passes over a row re-read
    full-shape values)."""
    if node.body is None or not 0 <= output < len(node.outputs):
        return ()
    body, out = node.body, node.outputs[output].type
    if any(n.op.kind is Kind.REDUCTION and n.inputs[0].type.shape == out.shape
           for n in body.nodes):
        return ()
    params = [v for v in body.inputs if v.role != "constant"]
    bad = {id(v) for n in body.nodes for v in n.inputs
           if n.op.kind is not Kind.ELEMENTWISE or n.outputs[0].type.shape != v.type.shape}
    return tuple(j for j, (v, b) in enumerate(zip(node.inputs, params))
                 if v.type == out and id(b) not in bad)


@register_pass("fuse")
def fuse(graph: Graph, max_inputs: int = MAX_INPUTS) -> Graph:
    """``graph`` with its elementwise, reduction and library-epilogue groups fused into
    kernels (see the module docstring for the rules)."""
    planner = _Planner(graph, max_inputs)
    rw = Rewriter(graph)
    if hasattr(graph, "meta"):
        rw.graph.meta = graph.meta
    k = 0
    for members, kind in planner.run():
        inside = set(members)
        if len(members) == 1 or not any(planner.exported(i, inside) for i in members):
            for i in members:  # a single op, or dead code (left to dce)
                rw.copy(planner.nodes[i])
        else:
            _emit(rw, planner, members, kind, k)
            k += 1
    return rw.finish()
