"""Block.summary / Graph.summary_table (issue 7): layer rows with output shapes and exact
parameter counts, totals split by grad_req, and a summary run that leaves forward as it was."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn, serialize
from graphc.errors import GraphcError

C_IN, C, K, UNITS, HW = 3, 4, 3, 5, 8


def _net():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(C, K), nn.BatchNorm(), nn.Dense(UNITS))
    net.initialize()
    return net


def _x():
    return gc.array(np.random.default_rng(0).random((2, C_IN, HW, HW), dtype=np.float32))


def _rows(table: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in table.splitlines()
            if line.startswith("  ")}


@pytest.mark.parametrize("hybrid", [False, True])
def test_block_summary_rows_and_totals(hybrid, capsys):
    net, x = _net(), _x()
    if hybrid:
        net.hybridize()
    before = net(x).numpy() if hybrid else None
    table = net.summary(x)
    assert capsys.readouterr().out.strip() == table.strip()
    o = HW - K + 1
    conv, bn_train, bn_stats = C * C_IN * K * K + C, 2 * C, 2 * C
    dense = C * o * o * UNITS + UNITS
    rows = _rows(table)
    assert rows["0"] == ["0", "(Conv2D)", f"f32[2,{C},{o},{o}]", str(conv)]
    assert rows["1"] == ["1", "(BatchNorm)", f"f32[2,{C},{o},{o}]", str(bn_train + bn_stats)]
    assert rows["2"] == ["2", "(Dense)", f"f32[2,{UNITS}]", str(dense)]
    total = conv + bn_train + bn_stats + dense
    assert f"Total params: {total}\n" in table
    assert f"Trainable params: {total - bn_stats}\n" in table
    assert f"Non-trainable params: {bn_stats}\n" in table
    assert "forward" not in net.__dict__ and all("forward" not in b.__dict__ for b in net)
    after = net(x).numpy()
    if hybrid:
        assert net._active and net._cached  # still hybridized, cache kept
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(after, net(x).numpy())


def test_nested_blocks_indented_and_shared_param_counted_once():
    shared = nn.Dense(3, in_units=3)
    inner = nn.HybridSequential()
    inner.add(nn.Dense(3, in_units=2), shared, shared)  # one block called twice
    net = nn.HybridSequential()
    net.add(inner, nn.Dense(1, in_units=3))
    net.initialize()
    table = net.summary(gc.array(np.ones((4, 2), np.float32)))
    lines = table.splitlines()
    assert any(line.startswith("    0 (Dense)") for line in lines)  # depth 2
    assert any(line.startswith("  0 (HybridSequential)") for line in lines)
    assert "Total params: 25\n" in table  # 2*3+3 + 3*3+3 (once) + 3+1


def test_summary_without_input():
    net = nn.Dense(4, in_units=3)
    net.initialize()
    table = net.summary()
    assert "Total params: 16\n" in table and "Dense" in table
    with pytest.raises(GraphcError, match=r"unknown shape.*pass an example input"):
        _net().summary()


def test_summary_restores_forward_on_error():
    net = _net()
    with pytest.raises(GraphcError):
        net.summary(gc.array(np.ones((2, 7), np.float32)))  # conv needs 4-d input
    assert all("forward" not in b.__dict__ for b in [net, *net])
    assert net(_x()).shape == (2, UNITS)


def test_graph_summary_table(tmp_path):
    net, x = _net(), _x()
    net.hybridize()
    net(x)
    net.export(str(tmp_path / "m"))
    graph, params = serialize.load_graph(tmp_path / "m")
    table = graph.summary_table()
    for node in graph.nodes:
        assert node.name in table
        assert str(node.outputs[0].type) in table
    s = graph.summary()  # the dict API is unchanged
    assert isinstance(s, dict) and f"{s['nodes']} nodes" in table
    n = len(graph.inputs_by_role("parameter"))
    elems = sum(int(np.prod(v.shape)) for v in graph.inputs_by_role("parameter"))
    assert n > 0 and f"Parameter inputs: {n} ({elems} elements)" in table
    assert elems == sum(a.size for a in params.values())
