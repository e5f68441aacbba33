"""The graph IR: SSA values with a static type, nodes that apply one op, and graphs.

A Graph has three kinds of values: graph inputs (tagged ``data``, ``parameter``, ``state``
or ``constant``; constants carry their array), node outputs, and nothing else. Nodes are
kept in a valid execution order. Passes are functions Graph -> Graph; backends compile a
Graph. ``print(graph)`` gives a text form in the spirit of a jaxpr.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from . import dtypes
from .errors import GraphcError
from .ops import registry
from .ops.fused import FUSED, KERNEL_KINDS
from .ops.registry import Kind, Op
from .types import TensorType

ROLES = ("data", "parameter", "state", "constant")
_INLINE_PRINT = 8  # constants up to this many elements print their values


class GraphError(GraphcError):
    """A graph that breaks the IR's invariants (see `Graph.validate`)."""


class Value:
    __slots__ = ("name", "type", "node", "index", "role")

    def __init__(self, name: str, type: TensorType, node: Node | None = None, index: int = 0,
                 role: str | None = None):
        self.name, self.type, self.node, self.index, self.role = name, type, node, index, role

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Node:
    """One op applied to values. A fused kernel (op ``fused``) also has ``body``: the
    sub-graph it runs, whose non-constant inputs are the node's inputs, in order."""

    __slots__ = ("op", "inputs", "attrs", "outputs", "name", "loc", "body")

    def __init__(self, op: Op, inputs: list[Value], attrs: dict, outputs: list[Value],
                 name: str = "", loc: str | None = None, body: Graph | None = None):
        self.op, self.inputs, self.attrs, self.outputs = op, inputs, attrs, outputs
        self.name, self.loc, self.body = name, loc, body

    def __repr__(self) -> str:
        return f"<node {self.name or self.op.name}: {self.op.name}>"


class Graph:
    def __init__(self, name: str = "graph"):
        self.name = name
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self.outputs: list[Value] = []
        self.constants: dict[str, np.ndarray] = {}
        #: Compile-time facts passes may use, e.g. "frozen": names of parameter inputs
        #: whose values no training changes (folding BatchNorm into them is then allowed).
        self.meta: dict = {}
        self._names: set[str] = set()
        self._counter = 0

    # -- building ---------------------------------------------------------------------
    def fresh_name(self, hint: str | None = None) -> str:
        """A value name not used in this graph: ``hint`` itself if free."""
        if hint and hint not in self._names:
            self._names.add(hint)
            return hint
        base = hint or "v"
        while True:
            name = f"{base}{self._counter}"
            self._counter += 1
            if name not in self._names:
                self._names.add(name)
                return name

    def continue_naming(self, other: Graph) -> None:
        """Number new values after ``other``'s, so a rebuilt graph keeps every old name."""
        self._counter = max(self._counter, other._counter)

    def reserve_names(self, names) -> None:
        """Keep ``names`` from being given to new values (they are used elsewhere)."""
        self._names.update(names)

    def add_input(self, name: str | None, type: TensorType, role: str = "data",
                  data: np.ndarray | None = None) -> Value:
        if role not in ROLES:
            raise GraphError(f"input role must be one of {ROLES}, got {role!r}")
        value = Value(self.fresh_name(name or ("c" if role == "constant" else "in")), type,
                      role=role)
        self.inputs.append(value)
        if role == "constant":
            if data is None:
                raise GraphError(f"constant {value.name} needs its data")
            self.constants[value.name] = data
        return value

    def add_constant(self, data: np.ndarray, name: str | None = None) -> Value:
        return self.add_input(name, TensorType(data.shape, dtypes.canonical(data.dtype)),
                              "constant", data)

    def add_node(self, op: Op | str, inputs: list[Value], attrs: dict | None = None,
                 name: str = "", loc: str | None = None,
                 output_names: list[str] | None = None) -> Node:
        """Append a node; its attrs are canonicalized and its output types inferred.

        ``output_names`` are kept where still free (a loader restores recorded names)."""
        op = registry.get(op) if isinstance(op, str) else op
        types = tuple(v.type for v in inputs)
        try:
            out_types, attrs = registry.infer(op, types, dict(attrs or {}))
        except GraphcError as e:
            raise e.with_context(op=op.name, loc=loc) from None
        node = Node(op, list(inputs), attrs, [], name or op.name, loc)
        hints = output_names or [None] * len(out_types)
        node.outputs = [Value(self.fresh_name(h), t, node, i)
                        for i, (t, h) in enumerate(zip(out_types, hints))]
        self.nodes.append(node)
        return node

    def add_fused(self, body: Graph, inputs: list[Value], kind: str, name: str = "",
                  loc: str | None = None, output_names: list[str] | None = None) -> Node:
        """Append a fused kernel that runs ``body`` (see `graphc.ops.fused`).

        ``inputs`` bind the body's non-constant inputs, in order, and must have their
        types; the outputs are typed by ``body.outputs`` and named after ``output_names``
        (default: the body's output names) where still free."""
        if kind not in KERNEL_KINDS:
            raise GraphError(f"fused kernel kind must be one of {KERNEL_KINDS}, got {kind!r}")
        problem = _fused_signature_problem(body, [v.type for v in inputs])
        if problem:
            raise GraphError(f"fused node {name or FUSED.name!r}: {problem}")
        node = Node(FUSED, list(inputs), {"kind": kind}, [], name or FUSED.name, loc, body)
        hints = list(output_names or [v.name for v in body.outputs])
        hints += [None] * (len(body.outputs) - len(hints))
        node.outputs = [Value(self.fresh_name(h), v.type, node, i)
                        for i, (v, h) in enumerate(zip(body.outputs, hints))]
        self.nodes.append(node)
        return node

    def add_like(self, node: Node, inputs: list[Value]) -> Node:
        """A copy of ``node`` (op, attrs, name, location, output names) over ``inputs``;
        a fused node's copy shares its body."""
        names = [v.name for v in node.outputs]
        if node.body is not None:
            return self.add_fused(node.body, inputs, node.attrs.get("kind"), name=node.name,
                                  loc=node.loc, output_names=names)
        return self.add_node(node.op, inputs, node.attrs, name=node.name, loc=node.loc,
                             output_names=names)

    # -- queries ----------------------------------------------------------------------
    def inputs_by_role(self, role: str) -> list[Value]:
        return [v for v in self.inputs if v.role == role]

    @property
    def data_inputs(self) -> list[Value]:
        return self.inputs_by_role("data")

    def values(self) -> Iterable[Value]:
        yield from self.inputs
        for node in self.nodes:
            yield from node.outputs

    def users(self) -> dict[Value, list[Node]]:
        users: dict[Value, list[Node]] = {v: [] for v in self.values()}
        for node in self.nodes:
            for v in node.inputs:
                users[v].append(node)
        return users

    # -- invariants -------------------------------------------------------------------
    def validate(self) -> Graph:
        """Check SSA form, execution order, roles and that every type follows its rule."""
        defined: set[int] = set()
        names: set[str] = set()

        def define(v: Value) -> None:
            if v.name in names:
                raise GraphError(f"value name %{v.name} defined twice")
            names.add(v.name)
            defined.add(id(v))

        for v in self.inputs:
            if v.role not in ROLES or v.node is not None:
                raise GraphError(f"graph input %{v.name} has role {v.role!r}")
            if v.role == "constant":
                data = self.constants.get(v.name)
                if data is None or tuple(data.shape) != v.type.shape or \
                        dtypes.canonical(data.dtype) != v.type.dtype:
                    raise GraphError(f"constant %{v.name} does not match its type {v.type}")
            define(v)
        for i, node in enumerate(self.nodes):
            for v in node.inputs:
                if id(v) not in defined:
                    raise GraphError(f"node {i} ({node.op.name}) uses %{v.name} before it is "
                                     "defined (dangling reference or cycle)")
            if node.op is FUSED or node.body is not None:
                out_types, attrs = _fused_types(i, node)
            else:
                types = tuple(v.type for v in node.inputs)
                out_types, attrs = registry.infer(node.op, types, node.attrs)
            if attrs != node.attrs:
                raise GraphError(f"node {i} ({node.op.name}) attrs are not canonical: "
                                 f"{node.attrs} vs {attrs}")
            if tuple(v.type for v in node.outputs) != out_types:
                got = ", ".join(str(v.type) for v in node.outputs)
                want = ", ".join(map(str, out_types))
                raise GraphError(f"node {i} ({node.op.name}) output types ({got}) contradict "
                                 f"its type rule ({want})")
            for j, v in enumerate(node.outputs):
                if v.node is not node or v.index != j:
                    raise GraphError(f"output %{v.name} of node {i} is not linked to it")
                define(v)
        for v in self.outputs:
            if id(v) not in defined:
                raise GraphError(f"graph output %{v.name} is not defined")
        return self

    # -- views ------------------------------------------------------------------------
    def __str__(self) -> str:
        def inp(v: Value) -> str:
            text = f"%{v.name}: {v.type}"
            if v.role == "constant":
                data = self.constants[v.name]
                if data.size <= _INLINE_PRINT:
                    return text + f" = {np.array2string(data, separator=', ')}"
            return text if v.role == "data" else f"{text} {v.role}"

        lines = [f"graph {self.name}("]
        lines += [f"    {inp(v)}," for v in self.inputs]
        lines.append(") {")
        for node in self.nodes:
            outs = ", ".join(f"%{v.name}: {v.type}" for v in node.outputs)
            args = [f"%{v.name}" for v in node.inputs]
            args += [f"{k}={_attr_text(a)}" for k, a in node.attrs.items()]
            line = f"  {outs} = {node.op.name}({', '.join(args)})"
            note = " @ ".join(x for x in (node.name if node.name != node.op.name else "",
                                          node.loc and _short_loc(node.loc)) if x)
            lines.append(f"{line:<60}  # {note}" if note else line)
            if node.body is not None:
                lines += ["    " + s for s in str(node.body).splitlines()]
        lines.append(f"  return {', '.join('%' + v.name for v in self.outputs)}")
        lines.append("}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes, "
                f"{len(self.outputs)} outputs>")

    def to_networkx(self):
        """A networkx MultiDiGraph: node ids are node indices and 'in:NAME' for inputs."""
        import networkx as nx
        g = nx.MultiDiGraph()
        producer: dict[int, object] = {}
        for v in self.inputs:
            producer[id(v)] = f"in:{v.name}"
            g.add_node(f"in:{v.name}", kind="input", role=v.role, type=v.type)
        for i, node in enumerate(self.nodes):
            g.add_node(i, kind="op", op=node.op.name, name=node.name, attrs=node.attrs)
            for v in node.inputs:
                g.add_edge(producer[id(v)], i, value=v.name, type=v.type)
            for v in node.outputs:
                producer[id(v)] = i
        return g

    def structure(self) -> tuple:
        """A hashable description independent of value names, for structural equality."""
        pos: dict[int, tuple] = {}
        ins = []
        for i, v in enumerate(self.inputs):
            pos[id(v)] = ("in", i)
            const = self.constants.get(v.name)
            ins.append((v.role, v.type, None if const is None else
                        (const.dtype.str, const.tobytes())))
        nodes = []
        for i, node in enumerate(self.nodes):
            for j, v in enumerate(node.outputs):
                pos[id(v)] = (i, j)
            nodes.append((node.op.name, tuple(pos[id(v)] for v in node.inputs),
                          _freeze(node.attrs), tuple(v.type for v in node.outputs))
                         + (() if node.body is None else (node.body.structure(),)))
        return tuple(ins), tuple(nodes), tuple(pos[id(v)] for v in self.outputs)

    def __eq__(self, other) -> bool:
        return isinstance(other, Graph) and self.structure() == other.structure()

    def summary(self) -> GraphSummary:
        """Nodes and kernels, for comparing a graph before and after fusion.

        A fused node is one kernel of its ``kind``; any other node is one kernel of its
        op's kind, except views (INJECTIVE ops that declare ``view_of``: reshape,
        transpose, broadcast_to...), which alias their input and count 0 kernels. ``ops``
        counts primitive ops, those inside fused bodies included."""
        by_kind: dict[str, int] = {}
        views = fused = ops = 0
        for node in self.nodes:
            if node.body is not None:
                kind, fused = node.attrs.get("kind", "fused"), fused + 1
                ops += node.body.summary()["ops"]
            else:
                ops += 1
                if node.op.kind is Kind.INJECTIVE and node.op.view_of is not None:
                    views += 1
                    continue
                kind = node.op.kind.value
            by_kind[kind] = by_kind.get(kind, 0) + 1
        return GraphSummary(name=self.name, nodes=len(self.nodes), ops=ops,
                            kernels=sum(by_kind.values()), fused=fused, views=views,
                            by_kind=dict(sorted(by_kind.items())))

    def summary_table(self) -> str:
        """A table with a row per node (op, output types, source line) and totals; see
        `graphc.summary.graph_table`. `summary` stays the dict of counts."""
        from .summary import graph_table
        return graph_table(self)

    __hash__ = None  # graphs are mutable while built

    def to_json(self, **kwargs) -> str:
        from .serialize import graph_to_json
        return graph_to_json(self, **kwargs)

    @staticmethod
    def from_json(text: str | bytes, **kwargs) -> Graph:
        from .serialize import graph_from_json
        return graph_from_json(text, **kwargs)


class GraphSummary(dict):
    """`Graph.summary`'s counts (a dict) that print as one line."""

    def __str__(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in self["by_kind"].items())
        return (f"{self['name']}: {self['nodes']} nodes ({self['ops']} ops), "
                f"{self['kernels']} kernels ({kinds or 'none'}), {self['fused']} fused, "
                f"{self['views']} views")


def _fused_signature_problem(body, in_types: list) -> str | None:
    """What is wrong with running ``body`` on inputs of ``in_types``, if anything."""
    if not isinstance(body, Graph):
        return f"body must be a Graph, got {type(body).__name__}"
    params = [v for v in body.inputs if v.role != "constant"]
    for v in params:
        if v.role != "data":
            return f"body input %{v.name} has role {v.role!r}; body inputs are data or constants"
    if len(params) != len(in_types):
        return f"takes {len(in_types)} inputs, but its body has {len(params)}"
    for j, (v, t) in enumerate(zip(params, in_types)):
        if v.type != t:
            return f"input {j} is {t}, but body input %{v.name} is {v.type}"
    if not body.outputs:
        return "its body has no outputs"
    return None


def _fused_types(i: int, node: Node) -> tuple[tuple, dict]:
    """A fused node's (output types, canonical attrs), once its body validates."""
    if node.op is not FUSED or node.body is None:
        raise GraphError(f"node {i} ({node.op.name}): only fused nodes have a body, and "
                         "every fused node needs one")
    problem = _fused_signature_problem(node.body, [v.type for v in node.inputs])
    if problem:
        raise GraphError(f"node {i} (fused {node.name}): {problem}")
    try:
        node.body.validate()
        attrs = FUSED.canonical((), dict(node.attrs))
    except GraphcError as e:
        raise GraphError(f"node {i} (fused {node.name}): {e}") from None
    return tuple(v.type for v in node.body.outputs), attrs


def _freeze(x):
    if isinstance(x, float) and x != x:
        return "<nan>"  # NaN != NaN, but two NaN attrs mean the same thing
    if isinstance(x, dict):
        return tuple((k, _freeze(v)) for k, v in sorted(x.items()))
    if isinstance(x, list | tuple):
        return tuple(_freeze(v) for v in x)
    return x


def _attr_text(a) -> str:
    if isinstance(a, float):
        return repr(a)
    return str(a).replace(" ", "")


def _short_loc(loc: str) -> str:
    path, _, line = loc.rpartition(":")
    return f"{path.rsplit('/', 1)[-1]}:{line}"
