"""gc.viz: DOT text of graphs (checked by a small DOT reader below, since no DOT parser is a
dependency) and rendering to .dot/.svg/.png with a clear error when Graphviz is missing."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

import graphc as gc
from graphc import viz
from graphc.errors import GraphcError
from graphc.graph import Graph
from graphc.types import TensorType

_TOKEN = re.compile(r'\s*(?:"(?:[^"\\]|\\.)*"|->|[{}\[\];=,]|[A-Za-z_][\w.]*|-?\d+(?:\.\d+)?)',
                    re.S)


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while text[pos:].strip():
        m = _TOKEN.match(text, pos)
        assert m and m.end() > pos, f"bad DOT at {text[pos:pos + 40]!r}"
        out.append(m.group(0).strip())
        pos = m.end()
    return out


def _unq(tok: str) -> str:
    if not tok.startswith('"'):
        return tok
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), tok[1:-1])


def parse_dot(text: str) -> dict:
    """A reader for the DOT subset to_dot writes: {name, nodes: {id: attrs}, edges:
    [(src, dst, attrs)], clusters: {name: (label, node ids)}}; fails on unbalanced braces,
    unknown statements or edges between undeclared nodes."""
    toks, i = _tokens(text), 0
    assert toks[:2] == ["digraph", toks[1]] and toks[2] == "{", toks[:3]
    res = {"name": _unq(toks[1]), "nodes": {}, "edges": [], "clusters": {}}
    stack, i = [None], 3  # None: the top graph; else the cluster name

    def attr_list(i):
        attrs = {}
        assert toks[i] == "["
        i += 1
        while toks[i] != "]":
            k, eq, v = toks[i:i + 3]
            assert eq == "=", toks[i:i + 3]
            attrs[_unq(k)] = _unq(v)
            i += 3 + (toks[i + 3] == ",")
        return attrs, i + 1

    while stack:
        t = toks[i]
        if t == "}":
            stack.pop()
            i += 1
        elif t == "subgraph":
            name = _unq(toks[i + 1])
            assert toks[i + 2] == "{" and name not in res["clusters"]
            res["clusters"][name] = ["", set()]
            stack.append(name)
            i += 3
        elif t == ";":
            i += 1
        elif toks[i + 1] == "=":  # graph attr: key=value
            if stack[-1] is not None and _unq(t) == "label":
                res["clusters"][stack[-1]][0] = _unq(toks[i + 2])
            i += 3
        elif t in ("node", "edge"):
            i = attr_list(i + 1)[1]
        elif toks[i + 1] == "->":
            attrs, i2 = attr_list(i + 3)
            res["edges"].append((_unq(t), _unq(toks[i + 2]), attrs))
            if stack[-1] is not None:  # as in Graphviz: an edge's ends join its cluster
                res["clusters"][stack[-1]][1].update((_unq(t), _unq(toks[i + 2])))
            i = i2
        else:
            nid = _unq(t)
            assert nid not in res["nodes"], f"node {nid} declared twice"
            res["nodes"][nid], i = attr_list(i + 1)
            if stack[-1] is not None:
                res["clusters"][stack[-1]][1].add(nid)
    assert i == len(toks), f"text after the graph: {toks[i:]}"
    for src, dst, _ in res["edges"]:
        assert src in res["nodes"] and dst in res["nodes"], (src, dst)
    return res


def _model(x, w, b):
    h = gc.exp(x) * 3.0 - 1.0
    return gc.relu(gc.matmul(h, w) + b), h


def _args():
    rng = np.random.default_rng(0)
    return [gc.array(rng.standard_normal(s).astype(np.float32)) for s in ((64, 32), (32, 10),
                                                                         (10,))]


@pytest.fixture(scope="module")
def fused_graph() -> Graph:
    g = gc.jit(_model).compiled(*_args()).graph
    kinds = sorted(n.attrs["kind"] for n in g.nodes if n.body is not None)
    assert kinds == ["elementwise", "library"], g  # the picture below needs both kinds
    return g


def _label_of(d: dict, op: str) -> list[str]:
    return [k for k, a in d["nodes"].items() if a["label"].split("\n")[0] == op]


def test_fused_graph_clusters_edges_and_outputs(fused_graph):
    d = parse_dot(viz.to_dot(fused_graph))
    assert d["name"] == fused_graph.name
    for v in fused_graph.inputs:
        assert d["nodes"][f"in:{v.name}"]["label"] == f"{v.name}\ndata {v.type}"
    fused = [n for n in fused_graph.nodes if n.body is not None]
    assert len(d["clusters"]) == len(fused) == 2
    for k, node in enumerate(fused_graph.nodes):
        label, members = d["clusters"][f"cluster_{k}"]
        assert label.startswith(f"{node.attrs['kind']} kernel")
        ops = [d["nodes"][m]["label"].split("\n")[0] for m in members
               if not m.split(".")[-1].startswith("in:")]
        assert sorted(ops) == sorted(b.op.name for b in node.body.nodes)
    # graph inputs stay outside the clusters; edges carry the types and cross into bodies
    assert not {f"in:{v.name}" for v in fused_graph.inputs} & set().union(
        *(m for _, m in d["clusters"].values()))
    edges = {(s, t): a["label"] for s, t, a in d["edges"]}
    (exp,), (mm,), (relu,) = (_label_of(d, op) for op in ("exp", "matmul", "relu"))
    assert edges[("in:x", exp)] == "f32[64,32]" and edges[("in:w", mm)] == "f32[32,10]"
    (sub,) = _label_of(d, "sub")
    assert edges[(sub, mm)] == "f32[64,32]"  # elementwise kernel's output into the GEMM
    assert edges[(relu, "out:0")] == "f32[64,10]" and edges[(sub, "out:1")] == "f32[64,32]"
    assert d["nodes"]["out:0"]["label"] == f"output 0: {fused_graph.outputs[0].name}"
    assert "constant f32[] = 3.0" in "".join(a["label"] for a in d["nodes"].values())


def test_unfused_trace_shows_attrs_and_source_lines():
    def f(x):
        return gc.sum(gc.tanh(x), axis=1)

    g = gc.trace(f, np.ones((4, 6), np.float32))
    d = parse_dot(viz.to_dot(g, name="mine"))
    assert d["name"] == "mine" and not d["clusters"]
    ops = {a["label"].split("\n")[0]: a["label"] for k, a in d["nodes"].items() if k[0] == "n"}
    assert set(ops) == {n.op.name for n in g.nodes} == {"tanh", "sum"}
    assert "axis=(1,)" in ops["sum"] and re.search(r"test_viz\.py:\d+$", ops["sum"])
    assert [a["label"] for _, t, a in d["edges"] if t == "out:0"] == ["f32[4]"]


def test_roles_and_escaping():
    g = Graph('we"ird\\name')
    x = g.add_input("x", TensorType((3,), "float32"))
    p = g.add_input("p", TensorType((3,), "float32"), "parameter")
    s = g.add_input("s", TensorType((3,), "float32"), "state")
    node = g.add_node("add", [x, p], loc='/tmp/a "q"\\b.py:7')
    g.outputs = [g.add_node("mul", [node.outputs[0], s]).outputs[0]]
    text = viz.to_dot(g)
    d = parse_dot(text)
    assert d["name"] == 'we"ird\\name'
    assert [d["nodes"][f"in:{n}"]["label"].split("\n")[1] for n in "xps"] == \
        ["data f32[3]", "parameter f32[3]", "state f32[3]"]
    assert d["nodes"]["n0"]["label"] == 'add\na "q"\\b.py:7'


def test_to_dot_rejects_non_graph():
    with pytest.raises(GraphcError, match="to_dot takes a Graph, got str"):
        viz.to_dot("graph.json")


def test_render_dot_and_errors(fused_graph, tmp_path, monkeypatch):
    text = viz.to_dot(fused_graph)
    viz.render(text, str(tmp_path / "g.dot"))
    assert (tmp_path / "g.dot").read_text() == text
    with pytest.raises(GraphcError, match=r"must end in one of \.dot, \.svg, \.png"):
        viz.render(text, str(tmp_path / "g.pdf"))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(GraphcError, match="the Graphviz `dot` program is not installed"):
        viz.render(text, str(tmp_path / "g.svg"))
    assert not (tmp_path / "g.svg").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_render_svg_with_graphviz(fused_graph, tmp_path):
    viz.render(viz.to_dot(fused_graph), str(tmp_path / "g.svg"))
    head = (tmp_path / "g.svg").read_text()[:200].lstrip()
    assert head.startswith(("<?xml", "<svg")) and "cluster_1" in (tmp_path / "g.svg").read_text()


def test_exposed_as_gc_viz():
    assert gc.viz.to_dot is viz.to_dot and gc.viz.render is viz.render
