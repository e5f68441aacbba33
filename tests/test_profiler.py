"""`gc.profiler`: per-kernel timing of compiled executables, as a table and a Chrome trace.

- one trace event per kernel per call, counted against the executable's schedule
  (executables compiled while profiling run one native segment per node);
- the trace is JSON with the Chrome "complete" event fields, durations > 0;
- profiling does not change results; nothing is recorded outside the block.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import graphc as gc

CALLS = 3


def _model(x, w, b, w2):
    h = gc.relu(gc.matmul(x, w) + b)
    return gc.tanh(gc.matmul(h, w2)).sum(axis=1), h.mean()


def _args(seed=0):
    r = np.random.default_rng(seed)
    shapes = [(8, 16), (16, 32), (32,), (32, 4)]
    return [gc.array(r.standard_normal(s).astype("float32")) for s in shapes]


def _node_name(label):
    """A one-node kernel's label without its fused ops and de-duplicating suffix."""
    return label.split("[")[0].split("#")[0]


def _outs(res):
    return [np.asarray(t.numpy()) for t in res]


def test_one_event_per_kernel_per_call_and_same_results(tmp_path):
    args = _args()
    want = _outs(gc.jit(_model, backend="llvm")(*args))
    fn = gc.jit(_model, backend="llvm")
    with gc.profiler.profile() as p:
        got = [_outs(fn(*args)) for _ in range(CALLS)]
    for g in got:
        for a, b in zip(g, want):
            np.testing.assert_array_equal(a, b)
    exe = fn.compiled(*args)
    steps = exe.program.step_nodes
    assert all(len(nodes) == 1 for nodes in steps)   # one segment per node
    assert len(steps) >= 4   # two matmul kernels, a reduction... each timed alone
    assert len(p.events) == CALLS * len(steps)
    path = p.chrome_trace(tmp_path / "trace.json")
    events = json.load(open(path))["traceEvents"]
    assert len(events) == CALLS * len(steps)
    for e in events:
        assert set(e) == {"name", "ph", "ts", "dur", "pid", "tid", "args"}
        assert e["ph"] == "X" and e["dur"] > 0 and e["ts"] >= 0
    names = [e["name"] for e in events]
    assert names == names[:len(steps)] * CALLS and len(set(names)) == len(steps)
    assert [_node_name(n) for n in names[:len(steps)]] == \
        [nodes[0].name for nodes in steps]   # in schedule order
    assert "fused[matmul+add+relu]" in names
    assert all(b["ts"] >= a["ts"] + a["dur"] for a, b in zip(events, events[1:]))
    table = p.table()
    for name in set(names):
        assert name in table
    rows = {r["name"]: r for r in p.stats()}
    assert {r["calls"] for r in rows.values()} == {CALLS}
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0)


def test_bytes_and_flops_of_a_matmul_kernel():
    args = _args(1)
    fn = gc.jit(lambda x, w: gc.matmul(x, w) * 2.0, backend="llvm")
    with gc.profiler.profile() as p:
        fn(args[0], args[1])
    (row,) = p.stats()
    assert row["bytes"] == 4 * (8 * 16 + 16 * 32 + 8 * 32)   # x, w, result (2.0 folded)
    assert row["gflops"] == pytest.approx(2 * 8 * 16 * 32 / (row["total_us"] * 1e3))
    assert p.trace_events()[0]["args"]["flops"] == 2 * 8 * 16 * 32


def test_executable_compiled_before_profiling_is_timed_per_segment():
    args = _args(2)
    fn = gc.jit(_model, backend="llvm")
    want = _outs(fn(*args))   # compiled now: segments of several nodes
    exe = fn.compiled(*args)
    with gc.profiler.profile() as p:
        got = _outs(fn(*args))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    segments = exe.program.step_nodes
    assert len(p.events) == len(segments) < len(exe.graph.nodes)
    for (label, *_), nodes in zip(p.events, segments):   # named after all their nodes
        assert all(n.name in label for n in nodes) and label.count("+") >= len(nodes) - 1
    assert any(len(nodes) > 1 for nodes in segments)


def test_reference_backend_one_event_per_node():
    args = _args(3)
    fn = gc.jit(_model, backend="reference")
    with gc.profiler.profile() as p:
        fn(*args)
        fn(*args)
    exe = fn.compiled(*args)
    assert [_node_name(e[0]) for e in p.events] == [n.name for n in exe.graph.nodes] * 2


def test_nothing_recorded_outside_and_no_nesting():
    args = _args(4)
    fn = gc.jit(_model, backend="llvm")
    with gc.profiler.profile() as p:
        fn(*args)
        with pytest.raises(RuntimeError, match="do not nest"):
            with gc.profiler.profile():
                pass
    n = len(p.events)
    fn(*args)
    assert len(p.events) == n and gc.profiler.active() is None
    assert "no kernels ran" in gc.profiler.Profile().table()


def test_profile_graph_counts_recorded_calls_only():
    args = _args(5)
    graph = gc.trace(_model, *args)
    inputs = [a.numpy() for a in args]
    p = gc.profiler.profile_graph(graph, inputs, calls=4, warmup=2)
    steps = p.executable.program.step_nodes
    assert len(p.events) == 4 * len(steps) and all(e[2] > 0 for e in p.events)
    with pytest.raises(ValueError, match="calls must be >= 1"):
        gc.profiler.profile_graph(graph, inputs, calls=0)
