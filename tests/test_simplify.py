"""The simplifier (dce, cse, fold_constants, algebra, simplify) and BatchNorm folding.

Each rule on a hand-built or traced graph with its node list asserted before and after,
and the graphs run on the reference backend: the exact rewrites give bit-identical
results (signed zeros included, checked with np.signbit); BatchNorm folding and graphs
where a folded constant changes a GEMM operand's memory layout agree to float rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import autograd, nn
from graphc.backends.reference import Interpreter
from graphc.graph import Graph
from graphc.ops.nn import batch_norm
from graphc.passes import simplify as S
from graphc.passes.autodiff import differentiate
from graphc.passes.batchnorm_fold import fold_batch_norm
from graphc.passes.pipeline import optimize
from graphc.types import TensorType

RNG = np.random.default_rng(0)
F32 = "float32"


def _rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def _ops(g: Graph) -> list[str]:
    return [n.op.name for n in g.nodes]


def _run(g: Graph, *arrays) -> list[np.ndarray]:
    return [np.asarray(a) for a in Interpreter(g)(*arrays)]


def _same(got: list, want: list) -> None:
    """Bit-identical results: equal values, dtypes, shapes and signs of zeros."""
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


def _close(got: list, want: list, rtol=1e-5, atol=1e-6) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def _checked(pass_fn, g: Graph, *arrays) -> Graph:
    """``pass_fn(g)``, validated, computing exactly what ``g`` does; ``g`` is unchanged."""
    before = g.structure()
    out = pass_fn(g).validate()
    assert g.structure() == before, "a pass mutated its input graph"
    _same(_run(out, *arrays), _run(g, *arrays))
    return out


def _graph(*shapes, dtype=F32) -> tuple[Graph, list]:
    g = Graph("t")
    return g, [g.add_input(f"x{i}", TensorType(s, dtype)) for i, s in enumerate(shapes)]


def _node(g: Graph, op: str, inputs, **attrs):
    node = g.add_node(op, list(inputs), attrs)
    return node.outputs[0] if len(node.outputs) == 1 else node.outputs


def _const(g: Graph, value, dtype=np.float32):
    return g.add_constant(np.asarray(value, dtype))


# -- dce --------------------------------------------------------------------------------

def test_dce_keeps_outputs_inputs_and_used_nodes():
    g, (x, unused) = _graph((4,), (4,))
    a = _node(g, "exp", [x])
    _node(g, "mul", [a, _const(g, np.full(4, 2.0))])  # dead, and so is its constant
    ones = _const(g, np.ones(4))
    b = _node(g, "add", [a, ones])
    first, _ = _node(g, "split", [b], indices_or_sections=2)  # one output used: kept
    g.outputs = [_node(g, "neg", [first]), a]
    out = _checked(S.dce, g, _rand(4), _rand(4))
    assert _ops(out) == ["exp", "add", "split", "neg"]
    assert [v.name for v in out.inputs] == ["x0", "x1", ones.name]  # unused data stays
    assert [v.role for v in out.inputs] == ["data", "data", "constant"]


def test_dce_of_a_graph_returning_its_input():
    g, (x,) = _graph((3,))
    _node(g, "exp", [x])
    g.outputs = [x, x]
    out = _checked(S.dce, g, _rand(3))
    assert out.nodes == [] and out.outputs == [out.inputs[0]] * 2


# -- cse --------------------------------------------------------------------------------

def test_cse_merges_equal_nodes_not_different_attrs():
    g, (x,) = _graph((2, 3))
    e1, e2 = _node(g, "exp", [x]), _node(g, "exp", [x])
    s0, s0b = _node(g, "sum", [e1], axis=0), _node(g, "sum", [e2], axis=(0,))
    s1 = _node(g, "sum", [e2], axis=1)
    k0, k1 = _node(g, "sum", [e1], axis=0, keepdims=True), _node(g, "sum", [e1], axis=0)
    # clip at +0.0 and at -0.0: attrs compare equal in Python, results differ for -0.0
    lo, lo_neg = _node(g, "clip", [x], min=0.0), _node(g, "clip", [x], min=-0.0)
    g.outputs = [s0, s0b, s1, k0, k1, lo, lo_neg]
    x_val = np.array([[-0.0, 1, -2], [0.0, -0.0, 3]], np.float32)
    out = _checked(S.cse, g, x_val)
    assert _ops(out) == ["exp", "sum", "sum", "sum", "clip", "clip"]
    assert out.outputs[0] is out.outputs[1] is out.outputs[4]
    lo_val, neg_val = _run(out, x_val)[5:]
    assert not np.signbit(lo_val).any() and np.signbit(neg_val).any()


def test_cse_merges_equal_constants_only():
    g, (x,) = _graph((2,))
    c1, c2 = _const(g, [1.0, 2.0]), _const(g, [1.0, 2.0])
    zero, neg_zero = _const(g, [0.0, 0.0]), _const(g, [-0.0, -0.0])
    g.outputs = [_node(g, "add", [x, c1]), _node(g, "add", [x, c2]),
                 _node(g, "mul", [x, zero]), _node(g, "mul", [x, neg_zero])]
    out = _checked(S.cse, g, np.array([1.0, -1.0], np.float32))
    assert _ops(out) == ["add", "mul", "mul"]  # the two adds merged once c2 became c1
    assert [v.name for v in out.inputs if v.role == "constant"] == \
        [c1.name, zero.name, neg_zero.name]


def test_cse_dropout_merges_only_with_the_same_key():
    g, (x,) = _graph((64,))
    k1 = g.add_input("k1", TensorType((), "int64"), "state")
    k2 = g.add_input("k2", TensorType((), "int64"), "state")
    g.outputs = [_node(g, "dropout", [x, k], p=0.5) for k in (k1, k1, k2)]
    out = _checked(S.cse, g, _rand(64), np.int64(3), np.int64(4))
    assert _ops(out) == ["dropout", "dropout"]
    assert out.outputs[0] is out.outputs[1] is not out.outputs[2]


# -- fold_constants ---------------------------------------------------------------------

def test_fold_constants_evaluates_constant_subgraphs():
    g, (x,) = _graph((3, 2))
    c = _const(g, np.arange(6).reshape(2, 3))
    e = _node(g, "exp", [_node(g, "transpose", [c], axes=None)])
    parts = _node(g, "split", [_const(g, np.arange(4)), ], indices_or_sections=2)
    g.outputs = [_node(g, "add", [x, e]), parts[1]]
    out = _checked(S.fold_constants, g, _rand(3, 2))
    assert _ops(out) == ["add"]
    np.testing.assert_array_equal(out.constants[out.nodes[0].inputs[1].name],
                                  np.exp(np.arange(6, dtype=np.float32).reshape(2, 3).T))
    assert out.outputs[1].role == "constant"


def test_fold_constants_size_cap():
    cap = S.FOLD_MAX_ELEMENTS
    assert cap == 4096
    g, (x,) = _graph(())
    zero = _const(g, 0.0)
    small = _node(g, "broadcast_to", [zero], shape=(64, cap // 64))
    big = _node(g, "broadcast_to", [zero], shape=(64, cap // 64 + 1))
    g.outputs = [_node(g, "add", [small, x]), _node(g, "add", [big, x])]
    out = _checked(S.fold_constants, g, np.float32(1.5))
    assert _ops(out) == ["broadcast_to", "add", "add"]
    assert max(a.size for a in out.constants.values()) == cap


def test_fold_constants_leaves_data_dependent_and_failing_nodes():
    g, (x,) = _graph((3,))
    gather = _node(g, "take", [_const(g, [1.0, 2.0, 3.0]), _const(g, [5], np.int64)])
    g.outputs = [_node(g, "exp", [x]), gather]
    out = S.fold_constants(g).validate()
    assert _ops(out) == ["take", "exp"]  # the index error is raised at run time
    with pytest.raises(IndexError):
        _run(out, _rand(3))


# -- algebra ----------------------------------------------------------------------------

SIGNED = np.array([-0.0, 0.0, 1.5, -2.0, np.inf, np.nan], np.float32)


def _binary(op: str, const, x_first: bool = True, shape=(6,), pre: str | None = None,
            dtype=F32, const_dtype=np.float32):
    g, (x,) = _graph(shape, dtype=dtype)
    a = x if pre is None else _node(g, pre, [x])
    c = _const(g, const, const_dtype)
    g.outputs = [_node(g, op, [a, c] if x_first else [c, a])]
    return g


@pytest.mark.parametrize("g, folds", [
    (_binary("mul", 1.0), True),
    (_binary("mul", 1.0, x_first=False), True),
    (_binary("mul", np.ones(6)), True),
    (_binary("mul", np.ones((2, 6))), False),          # broadcasting changes the shape
    (_binary("mul", [1, 1, 1, 1, 1, 2]), False),
    (_binary("mul", 1.0, const_dtype=np.float64), False),  # not of x's dtype
    (_binary("div", 1.0), True),
    (_binary("div", 1.0, x_first=False), False),       # 1 / x
    (_binary("add", -0.0), True),                      # x + -0.0 == x, -0.0 included
    (_binary("add", -0.0, x_first=False), True),
    (_binary("add", 0.0), False),                      # -0.0 + 0.0 is +0.0
    (_binary("add", [0.0, -0.0, 0, 0, 0, 0]), False),
    (_binary("add", 0.0, pre="exp"), True),            # never -0.0
    (_binary("add", 0.0, pre="abs"), True),
    (_binary("add", 0.0, pre="relu"), False),
    (_binary("sub", 0.0), True),                       # x - 0.0 == x + -0.0
    (_binary("sub", -0.0), False),                     # -0.0 - -0.0 is +0.0
    (_binary("sub", -0.0, pre="square"), True),
    (_binary("sub", 0.0, x_first=False), False),       # 0 - x
])
@pytest.mark.filterwarnings("ignore:divide by zero")
def test_arithmetic_identities(g, folds):
    out = _checked(S.simplify, g, SIGNED)
    assert _ops(out) == (_ops(g)[:-1] if folds else _ops(g))


def test_integer_identities():
    for op in ("add", "sub"):
        g = _binary(op, 0, dtype="int64", const_dtype=np.int64)
        assert _ops(_checked(S.simplify, g, np.arange(6) - 3)) == []
    g, (x,) = _graph((6,), dtype="int64")  # a float cast from an int is never -0.0
    g.outputs = [_node(g, "add", [_node(g, "cast", [x], dtype=F32), _const(g, 0.0)])]
    assert _ops(_checked(S.simplify, g, np.arange(6) - 3)) == ["cast"]


def test_signed_zeros_survive_through_jit():
    x = SIGNED

    def identities(x):
        return ((x + (-0.0)) * 1.0 - 0.0) / 1.0

    def plus_zero(x):
        return x + 0.0

    for fn, ops in ((identities, []), (plus_zero, ["add"])):
        exe = gc.jit(fn, opt_level=1).compiled(x)
        assert _ops(exe.graph) == ops
        got = gc.jit(fn, opt_level=1)(x).numpy()
        want = gc.jit(fn, opt_level=0)(x).numpy()
        _same([got], [want])
    assert np.signbit(gc.jit(identities, opt_level=1)(x).numpy()[0])
    assert not np.signbit(gc.jit(plus_zero, opt_level=1)(x).numpy()[0])


def test_neg_of_neg():
    g, (x,) = _graph((3,))
    y = x
    for _ in range(5):
        y = _node(g, "neg", [y])
    g.outputs = [_node(g, "neg", [_node(g, "neg", [x])]), y]
    out = _checked(S.simplify, g, SIGNED[:3])
    assert _ops(out) == ["neg"] and out.outputs[0] is out.inputs[0]


def test_transpose_of_transpose():
    g, (x,) = _graph((2, 3, 4))
    t = _node(g, "transpose", [x], axes=(1, 2, 0))
    g.outputs = [_node(g, "transpose", [t], axes=(2, 0, 1)),   # the inverse: nothing
                 _node(g, "transpose", [t], axes=(1, 0, 2)),   # one transpose
                 _node(g, "transpose", [x], axes=(0, 1, 2))]   # the identity
    out = _checked(S.simplify, g, _rand(2, 3, 4))
    assert _ops(out) == ["transpose"] and out.nodes[0].attrs == {"axes": (2, 1, 0)}
    assert out.outputs[0] is out.inputs[0] is out.outputs[2]


@pytest.mark.parametrize("fn, specs", [
    (lambda x: gc.reshape(gc.reshape(x, (0, -1)), (0, 2, -1)), [(0, 2, -1)]),
    (lambda x: gc.reshape(gc.reshape(x, (4, -1)), (0, 2, -1)), [(4, -1), (0, 2, -1)]),
    (lambda x: gc.reshape(gc.reshape(x, (0, -1)), (-1,)), [(-1,)]),
    (lambda x: gc.reshape(gc.reshape(x, (0, -1)), (2, 0, -1)), [(0, -1), (2, 0, -1)]),
    (lambda x: gc.reshape(x, (0, 3, -1)), []),                       # to its own shape
    (lambda x: gc.reshape(gc.reshape(x, (24,)), (4, 3, 2)), []),     # back where it started
    (lambda x: gc.reshape(gc.expand_dims(x, 0), (2, -1)), [(2, -1)]),
    (lambda x: gc.squeeze(gc.expand_dims(x, (0, 2)), (0, 2)), []),
    (lambda x: gc.expand_dims(gc.squeeze(gc.reshape(x, (4, 1, 6)), 1), 1),
     [(4, 1, 6)]),
    (lambda x: gc.squeeze(x), []),                                   # nothing to squeeze
])
def test_reshape_compositions(fn, specs):
    x = _rand(4, 3, 2)
    g = gc.trace(fn, x)
    out = _checked(S.simplify, g, x)
    assert all(n.op.name == "reshape" for n in out.nodes)
    assert [n.attrs["shape"] for n in out.nodes] == specs


def test_composed_reshape_stays_batch_agnostic():
    g = gc.trace(lambda x: gc.reshape(gc.reshape(x, (0, -1)), (0, 2, -1)), _rand(4, 3, 2))
    out = S.simplify(g)
    rebuilt = Graph("rebuilt")  # the same spec on another batch size
    x = rebuilt.add_input("x", TensorType((7, 3, 2), F32))
    rebuilt.outputs = [_node(rebuilt, "reshape", [x], **out.nodes[0].attrs)]
    assert rebuilt.outputs[0].shape == (7, 2, 3)


def test_cast_and_broadcast_identities():
    g, (x,) = _graph((3,))
    same = g.add_node("cast", [x], {"dtype": F32}).outputs[0]  # add_node allows it
    b = _node(g, "broadcast_to", [_node(g, "broadcast_to", [same], shape=(2, 3))],
              shape=(4, 2, 3))
    g.outputs = [b, _node(g, "broadcast_to", [x], shape=(3,))]
    out = _checked(S.simplify, g, SIGNED[:3])
    assert _ops(out) == ["broadcast_to"] and out.nodes[0].inputs[0] is out.inputs[0]
    assert out.nodes[0].attrs == {"shape": (4, 2, 3)} and out.outputs[1] is out.inputs[0]


def test_simplify_reaches_a_fixed_point():
    def fn(x):
        y = gc.neg(gc.neg(gc.transpose(gc.transpose(x)))) * gc.exp(gc.zeros(3))
        return gc.reshape(y, (3,)) + gc.exp(gc.zeros(3)) * 0.0 + (-0.0), gc.exp(x) + x * 1

    x = _rand(3)
    g = gc.trace(fn, x)
    out = _checked(S.simplify, g, x)
    assert S.simplify(out) == out
    # x*1, reshape to x's shape, double neg and transpose vanish; x + 0.0 stays
    assert _ops(out) == ["add", "exp", "add"]


# -- BatchNorm folding ------------------------------------------------------------------

def _bn_stats(c: int):
    return (_rand(c), _rand(c), _rand(c), np.abs(_rand(c)) + 0.5)  # gamma beta mean var


def test_fold_conv_batch_norm_constants():
    x, w, b = _rand(2, 3, 8, 8), _rand(4, 3, 3, 3), _rand(4)
    stats = _bn_stats(4)

    def f(x):
        return gc.relu(batch_norm(gc.conv2d(x, w, b, padding=1), *stats, eps=1e-3))

    g = gc.trace(f, x)
    assert _ops(g) == ["conv2d", "add", "sub", "mul", "add", "relu"]
    out = fold_batch_norm(g).validate()
    assert _ops(out) == ["conv2d", "add", "relu"]
    _close(_run(out, x), _run(g, x))
    gamma, beta, mean, var = stats
    scale = gamma / np.sqrt(var + 1e-3)
    np.testing.assert_allclose(out.constants[out.nodes[0].inputs[1].name],
                               w * scale[:, None, None, None], rtol=1e-6)
    np.testing.assert_allclose(out.constants[out.nodes[1].inputs[1].name].ravel(),
                               (b - mean) * scale + beta, rtol=1e-5, atol=1e-6)


def test_fold_dense_batch_norm_constants():
    x, w, b = _rand(5, 7), _rand(6, 7), _rand(6)
    stats = _bn_stats(6)

    def f(x):
        return batch_norm(x @ gc.transpose(w) + b, *stats)

    g = gc.trace(f, x)
    assert _ops(g) == ["matmul", "add", "sub", "mul", "add"]
    out = fold_batch_norm(g).validate()
    assert _ops(out) == ["matmul", "add"]
    _close(_run(out, x), _run(g, x))


def test_fold_reversed_links_and_scale_first():
    x, w = _rand(2, 3, 5, 5), _rand(4, 3, 3, 3)
    s, t = _rand(4, 1, 1), _rand(1, 4, 1, 1)

    def f(x):
        return t - s * gc.conv2d(x, w)  # c * y and c - y

    g = gc.trace(f, x)
    out = fold_batch_norm(g).validate()
    assert _ops(out) == ["conv2d", "add"]
    _close(_run(out, x), _run(g, x))


def test_no_fold_without_multiply_or_with_shared_intermediates():
    x, w, b = _rand(2, 3, 5, 5), _rand(4, 3, 3, 3), _rand(4)
    s = _rand(4, 1, 1)

    def bias_only(x):
        return gc.conv2d(x, w, b)

    def shared(x):
        y = gc.conv2d(x, w, b)
        return y * s, y

    def not_per_channel(x):
        return gc.conv2d(x, w) * _rand(3, 3)

    for fn in (bias_only, shared, not_per_channel):
        g = gc.trace(fn, x)
        assert fold_batch_norm(g) == g


def _bn_net() -> nn.HybridSequential:
    gc.random.seed(3)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3), nn.BatchNorm(), nn.Activation("relu"), nn.Flatten(),
            nn.Dense(5), nn.BatchNorm())
    net.initialize()
    x = _rand(2, 3, 6, 6)
    with autograd.record():  # move the running statistics away from 0 and 1
        net(x)
    return net


def test_fold_batch_norm_frozen_parameters():
    net, x = _bn_net(), _rand(2, 3, 6, 6)
    g = gc.trace(lambda x: net(x), x)
    params = [p.data().numpy() for p in net.collect_params().values()]
    assert fold_batch_norm(g) == g  # parameters may change per call: nothing folds
    g.meta = {"frozen": [v.name for v in g.inputs if v.role == "parameter"]}
    out = optimize(g, passes=["fold_batch_norm", "simplify"], validate=True)
    # no per-element BN arithmetic on the activations is left: one bias add per layer
    act_shapes = {(2, 4, 4, 4), (2, 5)}
    assert [n.op.name for n in out.nodes if n.outputs[0].shape in act_shapes] == \
        ["conv2d", "add", "relu", "matmul", "add"]
    assert out.meta == g.meta
    _close(_run(out, x, *params), _run(g, x, *params))


def test_fold_batch_norm_through_jit_with_constants():
    net = _bn_net()
    params = {k: p.data().numpy() for k, p in net.collect_params().items()}
    w1, b1, g1, be1, m1, v1, w2, b2, g2, be2, m2, v2 = params.values()

    def f(x):  # the same model with its parameters captured as constants
        y = gc.conv2d(x, w1, b1)
        y = gc.relu(batch_norm(y, g1, be1, m1, v1))
        y = gc.reshape(y, (0, -1)) @ gc.transpose(w2) + b2
        return batch_norm(y, g2, be2, m2, v2)

    x = _rand(2, 3, 6, 6)
    folded = gc.jit(f, passes=["simplify", "fold_batch_norm", "simplify"])
    assert _ops(folded.compiled(x).graph) == ["conv2d", "add", "relu", "reshape", "matmul",
                                              "add"]
    want = gc.jit(f, opt_level=0)(x).numpy()
    _close([folded(x).numpy()], [want])
    _close([net(x).numpy()], [want])


# -- whole models: opt_level=1 equals opt_level=0 ---------------------------------------

def _mlp_params():
    return [_rand(10, 16), _rand(16), _rand(16, 3), _rand(3)]


def _loss(w1, b1, w2, b2, x, y):
    h = gc.relu(x @ w1 + b1)
    return gc.mean(gc.ops.nn.softmax_cross_entropy(h @ w2 + b2, y))


def _step(w1, b1, w2, b2, x, y):
    grads = gc.grad(_loss, argnums=(0, 1, 2, 3))(w1, b1, w2, b2, x, y)
    return [p - 0.1 * g for p, g in zip((w1, b1, w2, b2), grads)]


def _jit_levels(fn, *args, rtol=1e-6, atol=1e-7):
    exe = gc.jit(fn, opt_level=1).compiled(*args)
    got = gc.jit(fn, opt_level=1)(*args)
    want = gc.jit(fn, opt_level=0)(*args)
    got, want = (got if isinstance(got, list | tuple) else [got] for got in (got, want))
    _close([np.asarray(a) for a in got], [np.asarray(a) for a in want], rtol, atol)
    return len(exe.source_graph.nodes), len(exe.graph.nodes)


def test_mlp_with_softmax_at_opt_level_1():
    w1, b1, w2, b2 = _mlp_params()

    def mlp(x):
        return gc.softmax(gc.relu(x @ w1 + b1) @ w2 + b2)

    before, after = _jit_levels(mlp, _rand(8, 10))
    assert after <= before


def test_mlp_training_step_at_opt_level_1():
    x, y = _rand(8, 10), RNG.integers(0, 3, 8)
    before, after = _jit_levels(_step, *_mlp_params(), x, y)
    assert after < before - 10, (before, after)


def test_autodiff_graphs_at_opt_level_1():
    x, y = _rand(8, 10), RNG.integers(0, 3, 8)
    args = [*_mlp_params(), x, y]
    d = differentiate(gc.trace(_loss, *args), wrt=[0, 1, 2, 3])
    outs, saved = d.run_forward(*args)
    cts = [np.ones((), np.float32)]
    for g, ins in ((d.forward, args), (d.backward, [*saved, *cts]),
                   (d.joint, [*args, *cts])):
        opt = optimize(g, opt_level=1)
        assert len(opt.nodes) <= len(g.nodes)
        assert [v.type for v in opt.outputs] == [v.type for v in g.outputs]
        _close(_run(opt, *ins), _run(g, *ins), rtol=1e-6, atol=1e-7)
    assert len(optimize(d.backward, opt_level=1).nodes) < len(d.backward.nodes)


def test_lenet_inference_and_training_step_at_opt_level_1():
    gc.random.seed(0)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, padding=1, activation="relu"), nn.MaxPool2D(2),
            nn.Conv2D(8, 3, padding=1, activation="relu"), nn.MaxPool2D(2), nn.Flatten(),
            nn.Dense(16, activation="relu"), nn.Dense(10))
    net.initialize()
    x, y = _rand(4, 1, 8, 8), RNG.integers(0, 10, 4)
    _jit_levels(lambda x: net(x), x)
    loss_fn = gc.loss.SoftmaxCrossEntropyLoss()

    def loss(x, y):
        with autograd.record():
            value = loss_fn(net(x), y)
        value.backward()
        return [value] + [p.grad() for p in net.collect_params().values()]

    before, after = _jit_levels(loss, x, y)
    assert after < before


def test_frozen_gluon_layers_get_batch_norm_folded_at_opt_level_3():
    # Gluon's way to freeze: grad_req 'null'; the tracer records such parameters as frozen
    from graphc import nn
    gc.random.seed(3)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, in_channels=2), nn.BatchNorm(in_channels=4), nn.Activation("relu"))
    net.initialize()
    for p in net.collect_params().values():
        p.grad_req = "null"
    net[1].running_mean.set_data(np.linspace(-1, 1, 4).astype(np.float32))
    net[1].running_var.set_data(np.linspace(0.5, 2, 4).astype(np.float32))
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float32)
    want = net(gc.array(x)).numpy()
    f = gc.jit(lambda x: net(x), opt_level=3)
    np.testing.assert_allclose(f(x).numpy(), want, rtol=1e-5, atol=1e-6)
    traced = f.trace(x)
    params = [v.name for v in traced.inputs_by_role("parameter")]
    assert len(params) == 6 and sorted(traced.meta["frozen"]) == sorted(params)
    folded = optimize(traced, passes=["fold_batch_norm", "dce"])
    before = [n.op.name for n in traced.nodes]
    after = [n.op.name for n in folded.nodes]
    assert "rsqrt" in before and after.count("conv2d") == 1
    # the per-activation normalization is gone: what remains scales weights, not x
    big = [n for n in folded.nodes if n.outputs[0].type.shape == (2, 4, 4, 4)]
    assert [n.op.name for n in big] == ["conv2d", "add", "relu"]
