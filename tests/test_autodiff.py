"""The graph-level autodiff pass: joint graph, forward/backward split, saved values.

Gradients from the forward+backward graphs on the reference backend must equal the eager
tape's (same VJP rules, so to rounding) and central finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import finite_difference

import graphc as gc
from graphc import dtypes as dt
from graphc.backends.reference import Interpreter
from graphc.passes.autodiff import Differentiated, differentiate

RNG = np.random.default_rng(0)


def _rand(*shape):
    return RNG.standard_normal(shape)


def _used(graph: gc.Graph) -> set[int]:
    used = {id(v) for n in graph.nodes for v in n.inputs}
    return used | {id(v) for v in graph.outputs}


def _check_structure(d: Differentiated, graph: gc.Graph) -> None:
    """Signatures, saved values exactly what backward reads, validity and JSON."""
    n_out = len(graph.outputs)
    runtime = [v for v in graph.inputs if v.role != "constant"]
    fwd_in = [v for v in d.forward.inputs if v.role != "constant"]
    assert [(v.name, v.type, v.role) for v in fwd_in] == \
        [(v.name, v.type, v.role) for v in runtime]
    assert [v.type for v in d.forward.outputs[:n_out]] == [v.type for v in graph.outputs]
    assert [v.name for v in d.forward.outputs[n_out:]] == d.saved
    bwd_in = [v for v in d.backward.inputs if v.role != "constant"]
    n_saved = len(d.saved)
    assert [v.name for v in bwd_in[:n_saved]] == d.saved
    assert all(v.role == "data" for v in bwd_in)
    cts = bwd_in[n_saved:]
    assert [v.type for v in cts] == [graph.outputs[i].type for i in d.cotangent_outputs]
    assert all(dt.is_float(graph.outputs[i].dtype) for i in d.cotangent_outputs)
    assert [v.type for v in d.backward.outputs] == [graph.inputs[i].type for i in d.wrt]
    # Backward reads every saved value; forward outputs nothing else beyond the user's.
    used = _used(d.backward)
    assert all(id(v) in used for v in bwd_in[:n_saved]), d.backward
    assert len(set(d.saved)) == len(d.saved)
    # No dead nodes in any of the three graphs.
    for g in (d.joint, d.forward, d.backward):
        used = _used(g)
        assert all(any(id(o) in used for o in n.outputs) for n in g.nodes), g
        assert all(id(v) in used for v in g.inputs if v.role == "constant"), g
    # The joint graph: runtime inputs + cotangents -> outputs + grads.
    joint_in = [v for v in d.joint.inputs if v.role != "constant"]
    assert [v.type for v in joint_in] == [v.type for v in runtime] + [v.type for v in cts]
    assert len(d.joint.outputs) == n_out + len(d.wrt)
    for g in (d.joint, d.forward, d.backward):
        g.validate()
        text = g.to_json()
        again = gc.Graph.from_json(text)
        assert again == g and again.to_json() == text
        assert [v.name for v in again.inputs] == [v.name for v in g.inputs]


def check(fn, args: list, wrt=None, argnums=None, cotangents=None, fd_rtol=1e-6):
    """Differentiate gc.trace(fn, *args) and check it against the tape and FD.

    ``argnums``: the positions of ``wrt`` among fn's arguments (default: same as wrt, as
    every argument is one graph input); ``cotangents``: for the float outputs (default
    ones)."""
    graph = gc.trace(fn, *args)
    d = differentiate(graph, wrt)
    _check_structure(d, graph)
    argnums = tuple(d.wrt if argnums is None else argnums)
    float_outs = [graph.outputs[i] for i in d.cotangent_outputs]
    if cotangents is None:
        cotangents = [np.ones(v.shape, dt.to_numpy(v.dtype)) for v in float_outs]

    # the reference backend: these are exact identities of the pass (tested on the llvm
    # backend, within float tolerance, in test_llvm_models.py)
    outs, saved = d.run_forward(*args, backend="reference")
    grads = d.run_backward(saved, cotangents, backend="reference")
    want_outs = Interpreter(graph)(*args)
    for a, b in zip(outs, want_outs):
        np.testing.assert_array_equal(a, b)
    joint = Interpreter(d.joint)(*args, *cotangents)
    for a, b in zip(joint, outs + grads):
        np.testing.assert_array_equal(a, b)

    def scalar(*xs):  # sum(out * cotangent) over the float outputs
        out = fn(*xs)
        out = list(out) if isinstance(out, tuple) else [out]
        return sum(gc.sum(out[i] * ct) for i, ct in zip(d.cotangent_outputs, cotangents))

    eager = gc.grad(scalar, argnums=argnums)(*[gc.array(a) for a in args])
    for g, e in zip(grads, eager):
        np.testing.assert_allclose(g, e.numpy(), rtol=1e-12, atol=1e-12)

    run = Interpreter(graph)
    for k, i in zip(argnums, d.wrt):
        def f(x, k=k):
            xs = list(args)
            xs[k] = x
            out = run(*xs)
            return sum(float(np.sum(out[j] * ct)) for j, ct in
                       zip(d.cotangent_outputs, cotangents))
        np.testing.assert_allclose(grads[d.wrt.index(i)], finite_difference(f, args[k]),
                                   rtol=fd_rtol, atol=1e-7)
    return d


def test_mlp_softmax_cross_entropy():
    def mlp(x, w1, b1, w2, b2, y):
        h = gc.relu(x @ gc.transpose(w1) + b1)
        return gc.mean(gc.softmax_cross_entropy(h @ gc.transpose(w2) + b2, y))

    args = [_rand(4, 5), _rand(6, 5), _rand(6), _rand(3, 6), _rand(3),
            np.array([0, 2, 1, 2])]
    d = check(mlp, args)
    assert d.wrt == [0, 1, 2, 3, 4]  # labels are integers: no gradient
    assert d.cotangent_outputs == [0]
    text = str(d.backward)
    assert "graph mlp_backward(" in text and "matmul.vjp/matmul" in text
    assert "graph mlp_forward(" in str(d.forward) and "%d_w1" in text
    assert "# " in text.splitlines()[-3]  # nodes keep their user line


def test_conv_pool_relu():
    c = _rand(2, 3, 2, 2)

    def net(x, w, b):
        y = gc.max_pool2d(gc.relu(gc.conv2d(x, w, b, padding=1)), 2)
        return gc.sum(y * c)

    d = check(net, [_rand(2, 2, 5, 5), _rand(3, 2, 3, 3), _rand(3)])
    ops = {n.op.name for n in d.backward.nodes}
    assert not ops & {"conv2d", "max_pool2d", "relu"}  # forward ops stay in forward
    assert any(v.role == "constant" for v in d.forward.inputs)  # c copied across


def test_layer_norm():
    c = _rand(3, 4)
    check(lambda x, gamma, beta: gc.sum(gc.layer_norm(x, gamma, beta) * c),
          [_rand(3, 4), _rand(4), _rand(4)])


def test_integer_outputs_get_no_cotangent():
    def f(x, w):
        z = x @ w
        return gc.sum(gc.tanh(z)), gc.argmax(z, axis=1), gc.max(z, axis=1)

    args = [_rand(3, 4), _rand(4, 5)]
    d = check(f, args, cotangents=[np.array(1.0), _rand(3)])
    assert d.cotangent_outputs == [0, 2]
    assert [v.name for v in d.backward.inputs if v.role == "data"][-2:] == \
        [f"d_{v.name}" for v in (d.joint.outputs[0], d.joint.outputs[2])]
    outs, _ = d.run_forward(*args)
    np.testing.assert_array_equal(outs[1], np.argmax(args[0] @ args[1], axis=1))


def test_unused_wrt_input_gets_zeros():
    d = check(lambda x, w, unused: gc.sum(gc.sin(x) * w), [_rand(2, 3), _rand(3), _rand(4)],
              wrt=[0, 2], argnums=(0, 2))
    _, saved = d.run_forward(*[_rand(2, 3), _rand(3), _rand(4)])
    grads = d.run_backward(saved, [np.array(1.0)])
    np.testing.assert_array_equal(grads[1], np.zeros(4))
    assert grads[1].dtype == np.float64
    assert "w" in d.saved and "unused" not in d.saved


def test_broadcasting_with_cotangents():
    def f(a, b, s):
        return a * b + a, gc.exp(b) / s, gc.sum(a, axis=0)

    args = [_rand(3, 1), _rand(4), np.array(1.5)]
    check(f, args, cotangents=[_rand(3, 4), _rand(4), _rand(1)])


def test_output_independent_of_wrt_keeps_its_cotangent():
    def f(x, y):
        return gc.sum(x * x), y * 2

    args = [_rand(3), _rand(2)]
    d = check(f, args, wrt=[0], argnums=(0,), cotangents=[np.array(1.0), _rand(2)])
    cts = [v for v in d.backward.inputs if v.role == "data"][len(d.saved):]
    assert len(cts) == 2 and id(cts[1]) not in _used(d.backward)  # documented: unused


def test_constant_exponent_gradient_is_dead():
    d = check(lambda x: gc.sum(x ** 3.0), [np.abs(_rand(5)) + 0.5])
    for g in (d.joint, d.forward, d.backward):
        assert "log" not in {n.op.name for n in g.nodes}


def test_float32_and_forward_inputs_as_outputs():
    def f(x, w):
        return x, gc.sum(x * w)

    args = [_rand(3).astype(np.float32), _rand(3).astype(np.float32)]
    graph = gc.trace(f, *args)
    d = differentiate(graph)
    _check_structure(d, graph)
    outs, grads = d.run(args, [np.ones(3, np.float32), np.float32(2.0) * np.ones((),
                                                                          np.float32)])
    assert [g.dtype for g in grads] == [np.float32, np.float32]
    np.testing.assert_allclose(grads[0], 1 + 2 * args[1], rtol=1e-6)
    np.testing.assert_allclose(grads[1], 2 * args[0], rtol=1e-6)
    np.testing.assert_array_equal(outs[0], args[0])


def test_dropout_key_is_saved_as_data():
    def f(x):
        return gc.sum(gc.dropout(x * 2, 0.5, training=True))

    x = _rand(8)
    graph = gc.trace(f, x)
    d = differentiate(graph)
    _check_structure(d, graph)
    assert d.wrt == [0]  # the key (role 'state', int64) takes no gradient
    key = graph.inputs_by_role("state")[0]
    assert key.role == "state" and key.name in d.saved  # backward reuses forward's mask
    assert {v.name: v.role for v in d.backward.inputs}[key.name] == "data"
    k = np.asarray(7, np.int64)
    _, grads = d.run([x, k], [np.array(1.0)])
    run = Interpreter(graph)
    fd = finite_difference(lambda v: float(run(v, k)[0]), x)
    np.testing.assert_allclose(grads[0], fd, rtol=1e-6, atol=1e-8)


def test_backward_nodes_name_their_forward_op_and_line():
    def f(x, w):
        return gc.sum(gc.tanh(x @ w))  # the line every node here records

    d = differentiate(gc.trace(f, _rand(2, 3), _rand(3, 4)))
    line = f.__code__.co_firstlineno + 1
    for node in d.backward.nodes:
        assert node.loc.endswith(f"test_autodiff.py:{line}")
    assert {n.name for n in d.backward.nodes} >= {"tanh.vjp/mul", "matmul.vjp/matmul"}
    assert f"test_autodiff.py:{line}" in str(d.backward)


def test_multi_output_op_and_repeated_output():
    def f(x, w):
        a, b = gc.split(x * w, 2, axis=1)
        return gc.sum(a * b), gc.concat([b, a], axis=0), a

    d = check(f, [_rand(3, 4), _rand(4)], cotangents=[np.array(1.0), _rand(6, 2), _rand(3, 2)])
    assert "split" in {n.op.name for n in d.forward.nodes}


def test_graph_loaded_from_json():
    graph = gc.trace(lambda x, w: gc.sum(gc.sigmoid(x @ w) ** 2), _rand(2, 3), _rand(3, 2))
    loaded = gc.Graph.from_json(graph.to_json())
    a, b = differentiate(graph), differentiate(loaded)
    assert a.joint == b.joint and a.forward == b.forward and a.backward == b.backward
    assert a.saved == b.saved and str(a.backward) == str(b.backward)


def test_wrt_errors():
    graph = gc.trace(lambda x, i: gc.sum(x) + gc.sum(i), _rand(2), np.arange(2))
    with pytest.raises(gc.GraphcError, match="input 1 .*i64.*cannot take a gradient"):
        differentiate(graph, [1])
    with pytest.raises(gc.GraphcError, match="wrt index 5 out of range"):
        differentiate(graph, [5])
    with pytest.raises(gc.GraphcError, match="twice"):
        differentiate(graph, [0, 0])
    assert differentiate(graph).wrt == [0]
