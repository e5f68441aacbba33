"""The pass pipeline: explicit pass lists, opt levels, IR dumps, validation after passes."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.graph import Graph
from graphc.passes import pipeline


def _f(x):
    return gc.exp(x) * 2


def _drop_last_node(g: Graph) -> Graph:
    """A deliberately broken pass: leaves the output undefined."""
    g.nodes.pop()
    return g


def test_explicit_passes_run_in_order_and_dump_numbered_ir(tmp_path):
    seen = []

    def spy(g: Graph) -> Graph:
        seen.append(len(g.nodes))
        return g

    f = gc.jit(_f, passes=[spy, spy], dump_ir=str(tmp_path))
    np.testing.assert_allclose(f(np.ones(3)).numpy(), 2 * np.e)
    assert seen == [2, 2]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["_f-00-traced.txt", "_f-01-spy.txt", "_f-02-spy.txt"]
    assert "exp(%x)" in (tmp_path / "_f-01-spy.txt").read_text()


def test_env_var_dumps_ir(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_DUMP_IR", str(tmp_path))
    gc.jit(_f, passes=[])(np.ones(2))
    assert (tmp_path / "_f-00-traced.txt").exists()


def test_invalid_graph_from_a_pass_is_caught():
    with pytest.raises(gc.GraphcError, match="pass '_drop_last_node' produced an invalid"):
        gc.jit(_f, passes=[_drop_last_node])(np.ones(2))


def test_unknown_pass_and_opt_level():
    with pytest.raises(gc.GraphcError, match="unknown pass 'nope'"):
        gc.jit(_f, passes=["nope"])(np.ones(2))
    with pytest.raises(gc.GraphcError, match="opt_level must be one of"):
        gc.jit(_f, opt_level=7)(np.ones(2))


def test_executable_keeps_source_and_optimized_graph():
    exe = gc.jit(_f, opt_level=0).compiled(np.ones(2))
    assert exe.source_graph is exe.graph  # opt_level 0 changes nothing
    A = gc.Variable("A")
    exe2 = gc.compile(gc.exp(A)).compiled(A=np.ones(3))
    assert [n.op.name for n in exe2.graph.nodes] == ["exp"]
    assert pipeline.passes_for(0) == ()
