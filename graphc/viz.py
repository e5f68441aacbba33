"""Pictures of graphs: Graphviz DOT text (`to_dot`) and files rendered from it (`render`).

Fused kernels are drawn as clusters holding their body's ops, so one picture shows both
what the program computes and how fusion grouped it into kernels; every edge carries its
value's type (``f32[64,10]``) because shapes are what a reader checks first. Rendering SVG
or PNG needs the Graphviz ``dot`` program, which is looked up only when asked for (so
``import graphc`` never spawns a process).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np

from .errors import GraphcError
from .graph import Graph, Node, Value, _attr_text, _short_loc

FORMATS = (".dot", ".svg", ".png")
RENDER_TIMEOUT_S = 60
_ROLE_COLOR = {"data": "lightblue", "parameter": "lightyellow", "state": "orange",
               "constant": "lightgrey"}
_KIND_COLOR = {"elementwise": "honeydew", "reduction": "lavender", "library": "mistyrose"}
_MAX_ATTRS_CHARS = 48  # attrs are a hint, not a dump: longer text is cut with "..."


def _q(text: str) -> str:
    """A quoted DOT string (ids and labels): backslashes and quotes escaped, newlines kept
    as DOT's ``\\n`` so a multi-line label stays one token."""
    text = str(text).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r", "").replace("\n", "\\n") + '"'


def _attrs(**kv) -> str:
    return "[" + ", ".join(f"{k}={_q(v)}" for k, v in kv.items()) + "]"


def _op_label(node: Node) -> str:
    lines = [node.op.name if node.name in ("", node.op.name) else f"{node.op.name} ({node.name})"]
    attrs = ", ".join(f"{k}={_attr_text(a)}" for k, a in node.attrs.items())
    if attrs:
        lines.append(attrs if len(attrs) <= _MAX_ATTRS_CHARS
                     else attrs[:_MAX_ATTRS_CHARS - 3] + "...")
    if node.loc:
        lines.append(_short_loc(node.loc))
    return "\n".join(lines)


def _input_label(graph: Graph, v: Value) -> str:
    text = f"{v.name}\n{v.role} {v.type}"
    data = graph.constants.get(v.name) if v.role == "constant" else None
    if data is not None and data.size == 1:
        text += f" = {np.asarray(data).reshape(()).item()!r}"
    return text


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.edges: list[str] = []  # emitted last, at top level: an edge written inside a
        self.clusters = 0           # cluster would pull its outside end into the cluster

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("  " * depth + text)

    def edge(self, src: str, dst: str, v: Value) -> None:
        self.edges.append(f"  {_q(src)} -> {_q(dst)} {_attrs(label=str(v.type))};")

    def graph(self, graph: Graph, prefix: str, src: dict[int, str], depth: int) -> None:
        """Nodes and edges of ``graph``; ``src`` maps id(value) to the DOT node it leaves
        (filled in for body inputs by the caller, extended here with node outputs)."""
        for v in graph.inputs:
            if id(v) in src:  # a fused body's input: the outer value's producer stands in
                continue
            nid = f"{prefix}in:{v.name}"
            src[id(v)] = nid
            look = _attrs(label=_input_label(graph, v), shape="box", style="rounded,filled",
                          fillcolor=_ROLE_COLOR.get(v.role, "white"))
            self.emit(depth, f"{_q(nid)} {look};")
        for i, node in enumerate(graph.nodes):
            nid = f"{prefix}n{i}"
            if node.body is None:
                self.emit(depth, f"{_q(nid)} {_attrs(label=_op_label(node), shape='box')};")
                for v in node.inputs:
                    self.edge(src[id(v)], nid, v)
                for v in node.outputs:
                    src[id(v)] = nid
                continue
            k, self.clusters = self.clusters, self.clusters + 1
            kind = node.attrs.get("kind", "fused")
            self.emit(depth, f"subgraph {_q(f'cluster_{k}')} {{")
            label = f"{kind} kernel" + ("" if node.name in ("", "fused") else f" {node.name}")
            label += f"\n{_short_loc(node.loc)}" if node.loc else ""
            self.emit(depth + 1, f"label={_q(label)}; style=filled; "
                                 f"fillcolor={_q(_KIND_COLOR.get(kind, 'white'))};")
            inner: dict[int, str] = {}
            params = [b for b in node.body.inputs if b.role != "constant"]
            for b, outer in zip(params, node.inputs):
                inner[id(b)] = src[id(outer)]
            self.graph(node.body, f"{nid}.", inner, depth + 1)
            self.emit(depth, "}")
            for b, v in zip(node.body.outputs, node.outputs):
                src[id(v)] = inner[id(b)]

    def outputs(self, graph: Graph, src: dict[int, str]) -> None:
        for j, v in enumerate(graph.outputs):
            nid = f"out:{j}"
            look = _attrs(label=f"output {j}: {v.name}", shape="box", style="bold,rounded",
                          color="darkgreen")
            self.emit(1, f"{_q(nid)} {look};")
            self.edge(src[id(v)], nid, v)


def to_dot(graph: Graph, name: str | None = None) -> str:
    """Graphviz DOT text of ``graph``: inputs (role, type), ops (attrs, source line),
    fused kernels as ``cluster_<k>`` subgraphs, typed edges and marked outputs."""
    if not isinstance(graph, Graph):
        raise GraphcError(f"graphc viz: to_dot takes a Graph, got {type(graph).__name__}")
    w = _Writer()
    w.emit(0, f"digraph {_q(name or graph.name)} {{")
    w.emit(1, 'rankdir=TB; node [fontname="Helvetica", fontsize=10]; '
              'edge [fontname="Helvetica", fontsize=9];')
    src: dict[int, str] = {}
    w.graph(graph, "", src, 1)
    w.outputs(graph, src)
    w.lines += w.edges
    w.emit(0, "}")
    return "\n".join(w.lines) + "\n"


def render(dot: str, path: str) -> None:
    """Write ``dot`` to ``path``: the text itself for ``.dot``; for ``.svg``/``.png`` the
    output of the Graphviz ``dot`` program, which must be on PATH."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in FORMATS:
        raise GraphcError(f"graphc viz: cannot write {path!r}: the output must end in one of "
                          f"{', '.join(FORMATS)}")
    if ext == ".dot":
        with open(path, "w", encoding="utf-8") as f:
            f.write(dot)
        return
    exe = shutil.which("dot")
    if exe is None:
        raise GraphcError("graphc viz: the Graphviz `dot` program is not installed; write a "
                          ".dot file instead or install graphviz")
    try:
        proc = subprocess.run([exe, f"-T{ext[1:]}", "-o", str(path)], input=dot.encode(),
                              capture_output=True, timeout=RENDER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise GraphcError(f"graphc viz: `dot` took over {RENDER_TIMEOUT_S}s rendering "
                          f"{path!r}; write a .dot file instead") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise GraphcError(f"graphc viz: `dot` failed ({proc.returncode}) rendering {path!r}: "
                          f"{err[0] if err else 'no message'}")
