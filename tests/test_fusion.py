"""Operator fusion: which ops fuse into which kernels, that fused graphs compute what the
unfused ones did (reference backend), the fused node in the IR, printing and JSON."""

from __future__ import annotations

import copy
import json

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_serialize import _slots

import graphc as gc
from graphc import nn
from graphc import serialize as S
from graphc.backends.reference import Interpreter
from graphc.graph import Graph, GraphError
from graphc.ops.registry import Kind
from graphc.passes import fusion
from graphc.passes.fusion import fuse
from graphc.passes.rewrite import Rewriter
from graphc.types import TensorType

F32 = "float32"
RNG = np.random.default_rng(0)


def _rand(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _t(*shape, dtype=F32) -> TensorType:
    return TensorType(shape, dtype)


def _run(graph: Graph, *arrays) -> list[np.ndarray]:
    return [np.asarray(a) for a in Interpreter(graph)(*arrays)]


def _kernels(graph: Graph) -> list[list[str]]:
    """Each fused kernel's op names, in order."""
    return [[m.op.name for m in n.body.nodes] for n in graph.nodes if n.body is not None]


def _fused_and_checked(graph: Graph, *arrays, **options) -> Graph:
    """``fuse(graph)``, checked: valid, acyclic, and bit-for-bit the unfused results."""
    graph.validate()
    fused = fuse(graph, **options).validate()
    assert nx.is_directed_acyclic_graph(fused.to_networkx())
    for a, b in zip(_run(graph, *arrays), _run(fused, *arrays), strict=True):
        np.testing.assert_array_equal(a, b)
    return fused


def _flat(result) -> list[np.ndarray]:
    return [np.asarray(r) for r in (result if isinstance(result, tuple | list) else [result])]


def _jit_counts(fn, *args) -> tuple[int, int, Graph]:
    """(kernels before, kernels after, optimized graph) of ``fn`` at opt_level 2, whose
    results must equal opt_level 0's on the reference backend."""
    f0 = gc.jit(fn, opt_level=0, backend="reference")
    f2 = gc.jit(fn, opt_level=2, backend="reference")
    for a, b in zip(_flat(f0(*args)), _flat(f2(*args)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    before = f0.compiled(*args).graph.summary()["kernels"]
    exe = f2.compiled(*args)
    assert exe.graph.summary()["kernels"] <= before
    return before, exe.graph.summary()["kernels"], exe.graph


# -- the row-wise family: softmax, log_softmax, layer_norm, cross-entropy --------------------

X = _rand(6, 10)
GAMMA, BETA = _rand(10), _rand(10)
LABELS = np.array([0, 3, 9, 1, 1, 5])
ROWWISE = {
    # name: (fn, args, kernels before, kernels after)
    "softmax": (gc.softmax, (X,), 8, 1),
    "log_softmax": (gc.log_softmax, (X,), 9, 1),
    "layer_norm": (lambda x, g, b: gc.layer_norm(x, g, b), (X, GAMMA, BETA), 9, 1),
    # one_hot is INJECTIVE (not fused): the one-hot kernel and one row-wise kernel
    "softmax_cross_entropy": (gc.softmax_cross_entropy, (X, LABELS), 14, 1),
    # float labels add a cast before the one-hot: cast -> one_hot -> row kernel, so the
    # cast cannot join the row kernel without a cycle through the one-hot
    "softmax_cross_entropy_float_labels":
        (gc.softmax_cross_entropy, (X, LABELS.astype(np.float32)), 15, 2),
}


@pytest.mark.parametrize("name", sorted(ROWWISE))
def test_rowwise_family_kernel_counts(name):
    fn, args, before, after = ROWWISE[name]
    got_before, got_after, graph = _jit_counts(fn, *args)
    assert (got_before, got_after) == (before, after)
    assert [n.attrs["kind"] for n in graph.nodes if n.body is not None] == ["reduction"]
    exact = fuse(gc.trace(fn, *args))
    assert exact.summary()["kernels"] == after
    _fused_and_checked(gc.trace(fn, *args), *args)


def test_softmax_is_one_row_kernel():
    g = fuse(gc.trace(gc.softmax, X))
    assert _kernels(g) == [["max", "abs", "less", "where", "sub", "exp", "sum", "div"]]
    (node,) = g.nodes
    assert [v.name for v in node.inputs] == ["x"]
    # the scalar constants inf and 0 were copied into the body, not passed in
    assert [v.role for v in node.body.inputs] == ["data", "constant", "constant"]
    assert not g.constants


def test_logsumexp_over_all_axes_and_layer_norm_over_two_axes():
    x = _rand(3, 4, 5)
    g = _fused_and_checked(gc.trace(lambda x: gc.logsumexp(x, axis=(1, 2)), x), x)
    assert g.summary()["kernels"] == 1
    g = _fused_and_checked(gc.trace(lambda x: gc.layer_norm(x, axis=(1, 2)), x), x)
    assert g.summary()["kernels"] == 1


# -- elementwise groups ------------------------------------------------------------------------

def test_elementwise_chain_with_broadcast_and_scalar_constants():
    x, b = _rand(3, 4), _rand(4)
    g = gc.trace(lambda x, b: gc.relu(x * 2.0 + b) - 1.0, x, b)
    f = _fused_and_checked(g, x, b)
    assert _kernels(f) == [["mul", "add", "relu", "sub"]]
    (node,) = f.nodes
    assert node.attrs == {"kind": "elementwise"}
    assert [v.name for v in node.inputs] == ["x", "b"]
    assert sum(v.role == "constant" for v in node.body.inputs) == 2


def test_broadcast_views_are_kernel_inputs():
    """broadcast_to is a view (0 kernels): the kernel reads it by index math."""
    x, b = _rand(3, 4), _rand(4)
    g = gc.trace(lambda x, b: gc.exp(gc.broadcast_to(b, (3, 4)) * x) + 1.0, x, b)
    f = _fused_and_checked(g, x, b)
    assert [n.op.name for n in f.nodes] == ["broadcast_to", "fused"]
    assert f.summary()["kernels"] == 1 and f.summary()["views"] == 1


def test_elementwise_kernels_have_one_shape():
    """exp(b) at b's shape does not join the (3, 4) kernel: it would be computed 3 times."""
    x, b = _rand(3, 4), _rand(4)
    g = gc.trace(lambda x, b: gc.tanh(x + gc.exp(b * 3.0)), x, b)
    f = _fused_and_checked(g, x, b)
    assert _kernels(f) == [["mul", "exp"], ["add", "tanh"]]


def test_one_element_values_join_as_scalars():
    x, s = _rand(3, 4), _rand()
    g = gc.trace(lambda x, s: gc.exp(x * gc.sqrt(s * s + 1.0)) + x, x, s)
    f = _fused_and_checked(g, x, s)
    assert f.summary()["kernels"] == 1


def test_values_used_outside_become_kernel_outputs():
    x = _rand(5)

    def fn(x):
        y = gc.exp(x)
        z = y * 2.0
        return y, gc.matmul(gc.reshape(z, (1, 5)), gc.reshape(x, (5, 1))), z + 1.0

    g = gc.trace(fn, x)
    f = _fused_and_checked(g, x)
    kernels = [n for n in f.nodes if n.body is not None]
    assert len(kernels) == 1 and [v.name for v in kernels[0].body.outputs] == \
        [v.name for v in kernels[0].outputs]
    assert len(kernels[0].outputs) == 3  # y (returned), z (used by the reshape), z + 1


def test_no_work_is_duplicated():
    """Every op of the unfused graph appears exactly once in the fused one."""
    x, b = _rand(4, 6), _rand(6)

    def fn(x, b):
        e = gc.exp(x + b)
        return gc.softmax(e) * gc.sum(e, axis=0), gc.tanh(e)

    g = gc.trace(fn, x, b)
    f = _fused_and_checked(g, x, b)
    assert f.summary()["ops"] == g.summary()["ops"]


def test_input_cap():
    xs = [_rand(3) for _ in range(20)]

    def fn(*xs):
        acc = xs[0]
        for x in xs[1:]:
            acc = acc * 0.5 + x
        return acc

    g = gc.trace(fn, *xs)
    f = _fused_and_checked(g, *xs)
    assert all(len(n.inputs) <= fusion.MAX_INPUTS for n in f.nodes)
    assert max(len(n.inputs) for n in f.nodes) == fusion.MAX_INPUTS
    f = _fused_and_checked(g, *xs, max_inputs=4)
    assert max(len(n.inputs) for n in f.nodes) == 4
    assert f.summary()["kernels"] == 7  # 19 adds, groups of 3 new inputs after the first


# -- reductions ---------------------------------------------------------------------------------

def test_producers_fuse_into_any_reduction_and_reduced_consumers_follow():
    """Batch-norm style statistics over axis 0: the square and the epilogue at the reduced
    shape join the reduction; broadcasting the result back does not (not row-wise)."""
    x = _rand(8, 3)

    def fn(x):
        m = gc.mean(x, axis=0)
        inv = gc.rsqrt(gc.mean(x * x, axis=0) - m * m + 1e-5)
        return (x - m) * inv

    f = _fused_and_checked(gc.trace(fn, x), x)
    assert _kernels(f) == [["mean", "mul", "mean", "mul", "sub", "add", "rsqrt"],
                           ["sub", "mul"]]
    assert [n.attrs["kind"] for n in f.nodes] == ["reduction", "elementwise"]
    assert [v.shape for v in f.nodes[0].outputs] == [(3,), (3,)]  # the mean and the scale


def test_reductions_over_different_axes_stay_apart():
    x = _rand(4, 5)
    g = gc.trace(lambda x: gc.sum(gc.exp(x), axis=0) * 2.0 + gc.sum(gc.exp(x), axis=1)[:1],
                 x)
    f = _fused_and_checked(g, x)
    assert _kernels(f) == [["exp", "sum"], ["exp", "sum", "mul", "add"]]
    assert [n.body.nodes[1].attrs["axis"] for n in f.nodes if n.body] == [(1,), (0,)]


def test_diamond_value_used_inside_and_after_a_reduction():
    """y feeds the reduction and, with the reduction's result, a later op: one row kernel
    for trailing axes; for a leading axis the later op stays outside, without a cycle."""
    x = _rand(4, 6)
    g = gc.trace(lambda x: (lambda y: y - gc.max(y, axis=1, keepdims=True) + y)(gc.exp(x)), x)
    f = _fused_and_checked(g, x)
    assert f.summary()["kernels"] == 1
    g = gc.trace(lambda x: (lambda y: y - gc.max(y, axis=0, keepdims=True) + y)(gc.exp(x)), x)
    f = _fused_and_checked(g, x)
    assert _kernels(f) == [["exp", "max"], ["sub", "add"]]
    assert len(f.nodes[0].outputs) == 2  # y and its max both leave the first kernel


def test_reduced_value_without_keepdims_is_not_read_across_columns():
    """x + sum(x, axis=1) on a square x broadcasts the row sums along the columns: that is
    not a row-wise read, so the add is a kernel of its own."""
    x = _rand(4, 4)
    f = _fused_and_checked(gc.trace(lambda x: x + gc.sum(gc.exp(x), axis=1), x), x)
    assert _kernels(f) == [["exp", "sum"]]
    assert [n.op.name for n in f.nodes] == ["fused", "add"]


def test_path_through_an_unfused_op_blocks_the_merge():
    """exp -> transpose (a view, not fused) -> add, and exp -> add: fusing the add into the
    exp's kernel would make kernel -> transpose -> kernel, a cycle."""
    x = _rand(3, 3)
    f = _fused_and_checked(gc.trace(lambda x: (lambda y: y + gc.transpose(y))(gc.exp(x)), x),
                           x)
    assert [n.op.name for n in f.nodes] == ["exp", "transpose", "add"]


# -- library epilogues ------------------------------------------------------------------------

def test_matmul_bias_relu_is_one_library_kernel():
    x, w, b = _rand(4, 8), _rand(8, 5), _rand(5)
    f = _fused_and_checked(gc.trace(lambda x, w, b: gc.relu(x @ w + b), x, w, b), x, w, b)
    assert _kernels(f) == [["matmul", "add", "relu"]]
    assert f.nodes[0].attrs["kind"] == "library"


def test_conv_bias_relu_is_one_library_kernel():
    x, w, b = _rand(2, 3, 6, 6), _rand(4, 3, 3, 3), _rand(4)
    f = _fused_and_checked(gc.trace(lambda x, w, b: gc.relu(gc.conv2d(x, w, b, padding=1)),
                                    x, w, b), x, w, b)
    assert _kernels(f) == [["conv2d", "add", "relu"]]
    assert [n.op.name for n in f.nodes] == ["reshape", "fused"]  # the bias view stays out


def test_library_prologues_and_second_libraries_stay_apart():
    x, w = _rand(4, 4), _rand(4, 4)
    f = _fused_and_checked(gc.trace(lambda x, w: gc.tanh(gc.exp(x) @ w + x @ w), x, w), x, w)
    assert f.summary()["by_kind"] == {"elementwise": 1, "library": 2}
    assert sorted(map(tuple, _kernels(f))) == [("matmul", "add", "tanh")]


def test_epilogue_reading_a_value_the_library_depends_on():
    """exp(x) feeds the matmul and the epilogue: the epilogue reads it as an input."""
    x, w = _rand(3, 3), _rand(3, 3)
    f = _fused_and_checked(gc.trace(lambda x, w: (lambda e: e @ w + e)(gc.exp(x)), x, w), x, w)
    assert [n.op.name for n in f.nodes] == ["exp", "fused"]
    assert _kernels(f) == [["matmul", "add"]]


# -- models ----------------------------------------------------------------------------------

def _mlp():
    net = nn.HybridSequential()
    net.add(nn.Dense(32, activation="relu"), nn.Dense(16, activation="relu"), nn.Dense(10))
    net.initialize()
    return net


def _lenet():
    """The LeNet of examples/lenet_digits.py."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, kernel_size=3, padding=1, activation="relu"), nn.MaxPool2D(2),
            nn.Conv2D(32, kernel_size=3, padding=1, activation="relu"), nn.MaxPool2D(2),
            nn.Flatten(), nn.Dense(64, activation="relu"), nn.Dense(10))
    net.initialize()
    return net


MODELS = {
    # name: (net factory, input, kernels before, kernels after); views count 0 kernels
    "mlp": (_mlp, _rand(4, 20), 8, 3),
    "mlp_softmax": (_mlp, _rand(4, 20), 16, 4),
    "lenet": (_lenet, _rand(2, 1, 8, 8), 13, 6),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_kernel_counts(name):
    factory, x, before, after = MODELS[name]
    net = factory()
    net(x)
    fn = (lambda x: gc.softmax(net(x))) if name.endswith("softmax") else (lambda x: net(x))
    got_before, got_after, graph = _jit_counts(fn, x)
    assert (got_before, got_after) == (before, after)
    kinds = [n.attrs["kind"] for n in graph.nodes if n.body is not None]
    assert kinds.count("library") == (3 if name.startswith("mlp") else 4)


def test_training_step_fuses_and_matches():
    net = _mlp()
    x, y = _rand(4, 20), np.array([1, 2, 3, 4])
    net(x)
    loss_fn = gc.loss.SoftmaxCrossEntropyLoss()
    params = list(net.collect_params().values())

    def step(x, y):
        with gc.autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        return (loss, *[p.grad() for p in params])

    before, after, _ = _jit_counts(step, x, y)
    assert after < before / 2


# -- randomly built graphs ---------------------------------------------------------------------

_UNARY = ("exp", "tanh", "neg", "relu", "abs", "sigmoid")
_BINARY = ("add", "mul", "sub", "maximum")


def _random_graph(seed: int) -> tuple[Graph, list[np.ndarray]]:
    """Elementwise chains with broadcasting, reductions (keepdims or not, leading or
    trailing axes), matmuls, views: a fusion stress test."""
    rng = np.random.default_rng(seed)
    g = Graph(f"random{seed}")
    shapes = [(3, 4), (3, 1), (4,), (), (3, 4), (4, 4)]
    arrays, pool = [], []
    for j, shape in enumerate(shapes):
        pool.append(g.add_input(f"x{j}", _t(*shape)))
        arrays.append(rng.standard_normal(shape).astype(np.float32))
    pool.append(g.add_constant(np.array(0.5, np.float32)))

    def pick(pred=lambda v: True):
        cands = [v for v in pool if pred(v)]
        return cands[int(rng.integers(len(cands)))] if cands else None

    for _ in range(int(rng.integers(8, 30))):
        r = rng.random()
        try:
            if r < 0.3:
                node = g.add_node(_UNARY[int(rng.integers(len(_UNARY)))], [pick()])
            elif r < 0.65:
                a = pick()
                b = pick(lambda v, a=a: _broadcasts(a.shape, v.shape))
                node = g.add_node(_BINARY[int(rng.integers(len(_BINARY)))], [a, b])
            elif r < 0.82:
                a = pick(lambda v: len(v.shape) >= 1)
                axis = int(rng.integers(len(a.shape)))
                op = ("sum", "max", "mean")[int(rng.integers(3))]
                node = g.add_node(op, [a], {"axis": axis, "keepdims": bool(rng.random() < .6)})
            elif r < 0.92:
                a = pick(lambda v: len(v.shape) == 2)
                b = pick(lambda v, a=a: len(v.shape) == 2 and v.shape[0] == a.shape[1])
                node = g.add_node("matmul", [a, b])
            else:
                a = pick(lambda v: len(v.shape) == 2)
                node = g.add_node("transpose", [a])
        except (AttributeError, TypeError, gc.GraphcError):
            continue
        pool.extend(node.outputs)
    made = [v for n in g.nodes for v in n.outputs]
    k = int(rng.integers(1, 4))
    g.outputs = [made[-1]] + [made[int(i)] for i in rng.integers(len(made), size=k)]
    return g, arrays


def _broadcasts(a, b) -> bool:
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


def _check_contract(graph: Graph) -> None:
    """Each kernel is what its kind promises a code generator."""
    for node in graph.nodes:
        if node.body is None:
            continue
        ops = node.body.nodes
        kinds = [m.op.kind for m in ops]
        assert len(ops) >= 2 and len(node.inputs) <= fusion.MAX_INPUTS
        assert set(kinds) <= {Kind.ELEMENTWISE, Kind.REDUCTION, Kind.LIBRARY}
        if node.attrs["kind"] == "library":
            (lib,) = [m for m in ops if m.op.kind is Kind.LIBRARY]
            assert all(v.node is None for v in lib.inputs)  # body inputs
            assert Kind.REDUCTION not in kinds
        elif node.attrs["kind"] == "reduction":
            reds = [m for m in ops if m.op.kind is Kind.REDUCTION]
            assert len({(r.inputs[0].shape, r.attrs["axis"]) for r in reds}) == 1
            assert Kind.LIBRARY not in kinds
        else:
            assert set(kinds) == {Kind.ELEMENTWISE}
            assert len({v.shape for v in node.outputs}) == 1


@pytest.mark.parametrize("chunk", range(4))
def test_random_graphs(chunk):
    fused_any = 0
    for seed in range(chunk * 60, (chunk + 1) * 60):
        g, arrays = _random_graph(seed)
        f = _fused_and_checked(g, *arrays)
        _check_contract(f)
        assert f.summary()["ops"] == g.summary()["ops"]
        assert Graph.from_json(f.to_json()) == f
        fused_any += f.summary()["fused"]
    assert fused_any > 30


# -- the fused node in the IR -----------------------------------------------------------------

def _body(shape=(2, 3), op="exp") -> Graph:
    b = Graph("body")
    x = b.add_input("x", _t(*shape))
    c = b.add_constant(np.array(2.0, np.float32))
    y = b.add_node(op, [x]).outputs[0]
    b.outputs = [y, b.add_node("mul", [y, c]).outputs[0]]
    return b


def _outer(body: Graph) -> Graph:
    g = Graph("outer")
    x = g.add_input("x", _t(2, 3))
    node = g.add_fused(body, [x], "elementwise", name="block/k", loc="/m/model.py:3")
    g.outputs = [node.outputs[1], node.outputs[0]]
    return g.validate()


def test_add_fused_types_outputs_from_the_body():
    g = _outer(_body())
    (node,) = g.nodes
    assert node.op.name == "fused" and node.attrs == {"kind": "elementwise"}
    assert [v.type for v in node.outputs] == [_t(2, 3)] * 2
    assert [v.name for v in node.outputs] == [v.name for v in node.body.outputs]
    x = np.ones((2, 3), np.float32)
    a, b = _run(g, x)
    np.testing.assert_array_equal(a, 2 * np.exp(x))
    np.testing.assert_array_equal(b, np.exp(x))


@pytest.mark.parametrize("make,match", [
    (lambda g, x: g.add_fused(_body(), [x], "bogus"), "kind must be one of"),
    (lambda g, x: g.add_fused(_body(), [x, x], "elementwise"), "takes 2 inputs, but its body"),
    (lambda g, x: g.add_fused(_body((3, 2)), [x], "elementwise"), r"input 0 is f32\[2,3\]"),
    (lambda g, x: g.add_fused("body", [x], "elementwise"), "body must be a Graph"),
])
def test_add_fused_rejects(make, match):
    g = Graph()
    x = g.add_input("x", _t(2, 3))
    with pytest.raises(GraphError, match=match):
        make(g, x)


def test_add_fused_rejects_parameter_inputs_in_the_body():
    b = Graph()
    b.outputs = [b.add_node("exp", [b.add_input("w", _t(3), "parameter")]).outputs[0]]
    g = Graph()
    with pytest.raises(GraphError, match="role 'parameter'"):
        g.add_fused(b, [g.add_input("x", _t(3))], "elementwise")


def test_validate_checks_bodies():
    g = _outer(_body())
    g.nodes[0].body.nodes.pop(0)
    with pytest.raises(GraphError, match=r"node 0 \(fused block/k\).*uses %\w+ before"):
        g.validate()
    g = _outer(_body())
    g.nodes[0].body = None
    with pytest.raises(GraphError, match="every fused node needs one"):
        g.validate()
    g = _outer(_body())
    g.nodes[0].attrs = {"kind": "elementwise", "extra": 1}
    with pytest.raises(GraphError, match="take one attr"):
        g.validate()
    g = _small()
    g.nodes[0].body = _body()
    with pytest.raises(GraphError, match="only fused nodes have a body"):
        g.validate()


def _small() -> Graph:
    g = Graph()
    g.outputs = [g.add_node("exp", [g.add_input("x", _t(2, 3))]).outputs[0]]
    return g


def test_nested_fused_bodies_run():
    inner = _outer(_body())
    inner.outputs = [inner.outputs[0]]
    mid = Graph("mid")
    x = mid.add_input("x", _t(2, 3))
    mid.outputs = [mid.add_fused(inner, [x], "elementwise").outputs[0]]
    g = _outer_of(mid)
    x = np.full((2, 3), 0.5, np.float32)
    np.testing.assert_array_equal(_run(g, x)[0], 2 * np.exp(x))
    assert Graph.from_json(g.to_json()) == g


def _outer_of(body: Graph) -> Graph:
    g = Graph("outer")
    g.outputs = [g.add_fused(body, [g.add_input("x", _t(2, 3))], "elementwise").outputs[0]]
    return g.validate()


def test_copies_share_the_body_and_equality_sees_bodies():
    g = _outer(_body())
    rw = Rewriter(g)
    copy_ = rw.copy(g.nodes[0])
    assert copy_.body is g.nodes[0].body
    assert rw.finish() == g
    assert _outer(_body()) == g
    assert _outer(_body(op="tanh")) != g
    nxg = g.to_networkx()
    assert nxg.nodes[0]["op"] == "fused" and nxg.number_of_edges() == 1


def test_text_form_prints_the_body_under_the_node():
    g = fuse(gc.trace(gc.softmax, X))
    lines = str(g).splitlines()
    i = next(j for j, line in enumerate(lines) if "= fused(%x, kind=reduction)" in line)
    assert lines[i + 1] == "    graph reduction0("
    assert lines[i + 2].startswith("        %x: f32[6,10],")
    assert any(line.startswith("      %v0: f32[6,1] = max(%x") for line in lines)
    assert lines[-2] == "  return %v8" and lines[-3] == "    }"


def test_summary():
    g = gc.trace(lambda x, w: gc.softmax(gc.reshape(x, (4, 6)) @ w), _rand(2, 12), _rand(6, 3))
    s = g.summary()
    assert s == {"name": "<lambda>", "nodes": 10, "ops": 10, "kernels": 9, "fused": 0,
                 "views": 1, "by_kind": {"elementwise": 6, "library": 1, "reduction": 2}}
    f = fuse(g)
    assert f.summary() == {"name": "<lambda>", "nodes": 3, "ops": 10, "kernels": 2,
                           "fused": 1, "views": 1, "by_kind": {"library": 1, "reduction": 1}}
    assert str(f.summary()) == ("<lambda>: 3 nodes (10 ops), 2 kernels (1 library, "
                                "1 reduction), 1 fused, 1 views")


def test_fusing_twice_changes_nothing_more():
    g = gc.trace(lambda x, w, b: gc.log_softmax(gc.relu(x @ w + b)), _rand(4, 5), _rand(5, 3),
                 _rand(3))
    once = fuse(g)
    assert fuse(once) == once


# -- JSON ----------------------------------------------------------------------------------

def _fused_example() -> Graph:
    x, w, b = _rand(4, 6), _rand(6, 5), _rand(5)
    big = RNG.standard_normal((40, 30)).astype(np.float32)
    return fuse(gc.trace(lambda x, w, b: (gc.softmax(gc.relu(x @ w + b)),
                                          gc.tanh(gc.matmul(gc.reshape(x, (1, 24)),
                                                            gc.reshape(big[:24], (24, 30))))
                                          * big[0]), x, w, b))


def test_json_round_trip_of_fused_graphs(tmp_path):
    g = _fused_example()
    assert g.summary()["fused"] == 3
    text = g.to_json()
    back = Graph.from_json(text)
    assert back == g and back.to_json() == text and str(back) == str(g)
    json.loads(text)  # valid JSON
    assert '"body": {' in text
    S.save_graph(g, tmp_path / "m")
    loaded, params = S.load_graph(tmp_path / "m")
    assert loaded == g and params == {}
    x, w, b = _rand(4, 6), _rand(6, 5), _rand(5)
    for a, c in zip(_run(g, x, w, b), _run(loaded, x, w, b), strict=True):
        np.testing.assert_array_equal(a, c)


def _doc() -> dict:
    return json.loads(fuse(gc.trace(gc.softmax, X)).to_json())


def _edited(edit) -> str:
    doc = _doc()
    edit(doc)
    return json.dumps(doc)


def _body_doc(doc):
    return doc["nodes"][0]["body"]


BAD_FUSED = [
    (lambda d: d["nodes"][0].pop("body"), r"nodes\[0\]: a fused node needs a 'body'"),
    (lambda d: d["nodes"][0].update(op="exp"), r"nodes\[0\]: a fused node needs a 'body'"),
    (lambda d: d["nodes"][0].update(attrs={"kind": "bogus"}), r"node 0 \(fused\): .*one attr"),
    (lambda d: d["nodes"][0].update(attrs={}), r"node 0 \(fused\): .*one attr"),
    (lambda d: d["nodes"][0].update(attrs={"kind": "reduction", "x": 1}), "one attr"),
    (lambda d: d["inputs"][0].update(shape=[6, 11]),
     r"node 0 \(fused\): .*input 0 is f32\[6,11\], but body input %x is f32\[6,10\]"),
    (lambda d: _body_doc(d)["inputs"][0].update(shape=[6, 11]),
     r"nodes\[0\]\.body: node 4 \(sub\): recorded output type"),
    (lambda d: _body_doc(d)["nodes"][4].update(inputs=["x", "nope"]),
     r"nodes\[0\]\.body: nodes\[4\]\.inputs\[1\]: unknown value 'nope'"),
    (lambda d: _body_doc(d).update(extra=1), r"nodes\[0\]\.body: unknown field 'extra'"),
    (lambda d: _body_doc(d).update(format="graphc.graph"), r"nodes\[0\]\.body: unknown field"),
    (lambda d: _body_doc(d).pop("outputs"), r"nodes\[0\]\.body: missing field 'outputs'"),
    (lambda d: _body_doc(d).update(outputs=[]), "its body has no outputs"),
    (lambda d: _body_doc(d)["constants"].update(c={"external": "c"}),
     r"nodes\[0\]\.body: constants\['c'\]: external tensor 'c' was not given"),
    (lambda d: d["nodes"][0]["outputs"][0].update(shape=[6, 9]),
     r"node 0 \(fused\): recorded output type f32\[6,9\] contradicts"),
    (lambda d: d["nodes"][0].update(body=[]), r"nodes\[0\]\.body: expected a JSON object"),
]


@pytest.mark.parametrize("edit,match", BAD_FUSED)
def test_fused_json_rejects(edit, match):
    with pytest.raises(gc.SerializationError, match=match):
        Graph.from_json(_edited(edit))


def test_fused_body_nesting_limit(monkeypatch):
    g = _outer(_body())
    for _ in range(S.MAX_BODY_DEPTH):
        g = _outer_of(g if len(g.outputs) == 1 else _single(g))
    with pytest.raises(gc.SerializationError, match="nested more than 8 deep"):
        g.to_json()
    monkeypatch.setattr(S, "MAX_BODY_DEPTH", 20)
    text = g.to_json()
    assert Graph.from_json(text) == g
    monkeypatch.setattr(S, "MAX_BODY_DEPTH", 8)
    with pytest.raises(gc.SerializationError, match=r"(nodes\[0\]\.body: ){8}.*nested more"):
        Graph.from_json(text)


def _single(g: Graph) -> Graph:
    g.outputs = g.outputs[:1]
    return g


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_fuzz_fused_json(data):
    doc = _doc()
    for _ in range(data.draw(st.integers(1, 3))):
        parent, key = data.draw(st.sampled_from(_slots(doc["nodes"][0], [])))
        how = data.draw(st.sampled_from(["delete", "replace", "dup"]))
        if how == "delete":
            del parent[key]
        elif how == "dup" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        else:
            parent[key] = data.draw(st.none() | st.integers(-2, 12) | st.sampled_from(
                ["x", "v0", "v5", "c", "exp", "fused", "data", "constant"])
                | st.lists(st.integers(0, 10), max_size=3))
    try:
        g = Graph.from_json(json.dumps(doc))
    except gc.SerializationError:
        return
    g.validate()
    assert Graph.from_json(g.to_json()) == g


def test_inplace_inputs_for_the_memory_planner():
    x, y, w, b = _rand(4, 4), _rand(4, 4), _rand(4, 4), _rand(4)
    f = fuse(gc.trace(lambda x, y, b: gc.exp(x) * y + b, x, y, b))
    assert fusion.inplace_inputs(f.nodes[0]) == (0, 1)   # x and y, not the bias
    f = fuse(gc.trace(lambda x, w, y: gc.relu(x @ w + y) + x, x, w, y))
    assert [v.name for v in f.nodes[0].inputs] == ["x", "w", "y"]
    assert fusion.inplace_inputs(f.nodes[0]) == (2,)     # x and w feed the matmul
    f = fuse(gc.trace(gc.softmax, x))
    assert fusion.inplace_inputs(f.nodes[0]) == ()      # full rows are read in passes
    assert fusion.inplace_inputs(gc.trace(gc.exp, x).nodes[0]) == ()
    # a bias update after its gradient's reduction: the bias, read at the reduced shape
    f = fuse(gc.trace(lambda g, b: (gc.exp(g), b - 0.1 * gc.sum(gc.exp(g), axis=0)), x, b))
    (red,) = [n for n in f.nodes if n.attrs.get("kind") == "reduction"]
    assert [v.name for v in red.inputs] == ["g", "b"] and red.outputs[-1].shape == (4,)
    assert fusion.inplace_inputs(red, len(red.outputs) - 1) == (1,)
    f = fuse(gc.trace(lambda x, b: b - gc.sum(x * b, axis=0), x, b))
    assert fusion.inplace_inputs(f.nodes[0]) == ()      # b is also read across the rows
