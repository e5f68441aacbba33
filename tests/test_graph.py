"""The graph IR: building, validation, text form, networkx view, structural equality."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.graph import Graph, GraphError
from graphc.types import TensorType

F32 = "float32"


def _small_graph() -> Graph:
    g = Graph("small")
    x = g.add_input("x", TensorType((2, 3), F32))
    w = g.add_input("w", TensorType((3,), F32), role="parameter")
    c = g.add_constant(np.array(2.0, np.float32))
    m = g.add_node("mul", [x, w]).outputs[0]
    a = g.add_node("add", [m, c], name="block/add", loc="/tmp/model.py:7").outputs[0]
    s = g.add_node("sum", [a], {"axis": -1}).outputs[0]
    g.outputs = [s, a]
    return g


def test_build_infers_types_and_canonical_attrs():
    g = _small_graph().validate()
    assert [n.op.name for n in g.nodes] == ["mul", "add", "sum"]
    assert g.nodes[2].attrs == {"axis": (1,), "keepdims": False}
    assert g.outputs[0].type == TensorType((2,), F32)
    assert [v.role for v in g.inputs] == ["data", "parameter", "constant"]
    assert g.data_inputs == [g.inputs[0]]


def test_text_form_reads_like_a_jaxpr():
    text = str(_small_graph())
    assert text.startswith("graph small(")
    assert "%x: f32[2,3]," in text
    assert "%w: f32[3] parameter," in text
    assert "= 2." in text  # small constants print their value
    assert "mul(%x, %w)" in text
    assert "sum(%v" in text and "axis=(1,)" in text and "keepdims=False" in text
    assert "# block/add @ model.py:7" in text
    assert text.rstrip().endswith("}")


def test_add_node_reports_type_errors_with_op_and_location():
    g = Graph()
    x = g.add_input("x", TensorType((3,), F32))
    y = g.add_input("y", TensorType((4,), F32))
    with pytest.raises(gc.ShapeError) as err:
        g.add_node("add", [x, y], loc="/m/model.py:12")
    msg = str(err.value)
    assert "add" in msg and "(3,)" in msg and "(4,)" in msg and "model.py:12" in msg


def test_unknown_op():
    g = Graph()
    x = g.add_input("x", TensorType((3,), F32))
    with pytest.raises(gc.GraphcError, match="unknown op 'frob'"):
        g.add_node("frob", [x])


def test_validate_catches_broken_invariants():
    g = _small_graph()
    g.nodes[0], g.nodes[1] = g.nodes[1], g.nodes[0]      # use before definition
    with pytest.raises(GraphError, match="before it is defined"):
        g.validate()

    g = _small_graph()
    g.nodes[2].outputs[0].type = TensorType((5,), F32)   # type contradicts the rule
    with pytest.raises(GraphError, match="contradict"):
        g.validate()

    g = _small_graph()
    g.nodes[2].attrs = {"axis": -1, "keepdims": False}   # not canonical
    with pytest.raises(GraphError, match="not canonical"):
        g.validate()

    g = _small_graph()
    g.constants[g.inputs[2].name] = np.zeros(3, np.float32)
    with pytest.raises(GraphError, match="does not match"):
        g.validate()

    g = _small_graph()
    g.outputs.append(_small_graph().outputs[0])          # a value of another graph
    with pytest.raises(GraphError, match="not defined"):
        g.validate()

    with pytest.raises(GraphError, match="role"):
        Graph().add_input("x", TensorType((), F32), role="weird")


def test_structural_equality_ignores_names_not_structure():
    a, b = _small_graph(), _small_graph()
    assert a == b
    b.inputs[0].name = "renamed"
    assert a == b
    b.nodes[2].attrs = {"axis": (0,), "keepdims": False}
    assert a != b
    c = _small_graph()
    c.constants[c.inputs[2].name] = np.array(3.0, np.float32)
    assert a != c


def test_networkx_view():
    nxg = _small_graph().to_networkx()
    ops = {n: d["op"] for n, d in nxg.nodes(data=True) if d["kind"] == "op"}
    assert ops == {0: "mul", 1: "add", 2: "sum"}
    assert nxg.has_edge("in:x", 0) and nxg.has_edge(0, 1) and nxg.has_edge(1, 2)
    import networkx as nx
    assert nx.is_directed_acyclic_graph(nxg)


def test_users_map():
    g = _small_graph()
    users = g.users()
    add_out = g.nodes[1].outputs[0]
    assert users[add_out] == [g.nodes[2]]
    assert users[g.inputs[0]] == [g.nodes[0]]


def test_traced_graph_validates_and_carries_user_locations():
    def model(x):
        return gc.tanh(x) * 3

    g = gc.trace(model, np.ones(4, np.float32))
    g.validate()
    assert all(n.loc and n.loc.split(":")[0].endswith("test_graph.py") for n in g.nodes)
