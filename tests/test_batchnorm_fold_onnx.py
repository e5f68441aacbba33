"""fold_batch_norm on imported ONNX models: BatchNormalization after Conv / Gemm (constant
weights and statistics) and other per-channel sub/add/mul/div chains fold into the
weight and one bias add at opt level 3, within float32 rounding of the unfolded graph;
the benchmark ResNet-50 keeps no per-channel subtract/multiply epilogue."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX tests need the onnx package (graphc[onnx])")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphc as gc  # noqa: E402
import graphc.onnx  # noqa: E402,F401
from graphc.backends.reference import Interpreter  # noqa: E402
from graphc.graph import Graph  # noqa: E402
from graphc.passes.batchnorm_fold import fold_batch_norm  # noqa: E402
from graphc.passes.pipeline import OPT_LEVELS, optimize  # noqa: E402
from graphc.types import TensorType  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(7)


def _rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _ops(g: Graph) -> list[str]:
    return [n.op.name for n in g.nodes]


def _kernels(g: Graph) -> list[str]:
    """Each node's op, a fused kernel as ``[op+op...]``."""
    return [f"[{'+'.join(_ops(n.body))}]" if n.body is not None else n.op.name
            for n in g.nodes]


def _run(g: Graph, *arrays) -> list[np.ndarray]:
    return [np.asarray(a) for a in Interpreter(g)(*arrays)]


def _close(got, want, rtol=1e-4, atol=1e-5):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


class _Model:
    """A one-input ONNX model under construction (seeded constant initializers)."""

    def __init__(self):
        self.nodes, self.inits = [], []

    def const(self, data) -> str:
        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(data, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = f"{op.lower()}{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def bn(self, x: str, c: int, eps=1e-5) -> str:
        stats = [_rand(c), _rand(c), _rand(c), np.abs(_rand(c)) + 0.5]  # scale b mean var
        return self.node("BatchNormalization", [x, *map(self.const, stats)], epsilon=eps)

    def proto(self, out: str, in_shape, out_shape, opset=13):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))
        y = helper.make_tensor_value_info(out, TensorProto.FLOAT, list(out_shape))
        graph = helper.make_graph(self.nodes, "m", [x], [y], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _folded(proto, shape):
    """(traced graph, the graph after opt level 3's passes up to fusion, input)."""
    g = gc.onnx.load(proto, input_shapes={"x": shape})
    before_fuse = [p for p in OPT_LEVELS[3] if p != "fuse"]
    return g, optimize(g, passes=before_fuse, validate=True), _rand(*shape)


def test_opt_level_3_is_where_folding_runs():
    # folding re-rounds (x conv (W * s) vs (x conv W) * s): only the level that folds BN
    assert "fold_batch_norm" in OPT_LEVELS[3]
    assert all("fold_batch_norm" not in OPT_LEVELS[lv] for lv in (0, 1, 2))


@pytest.mark.parametrize("conv_bias", [False, True])
@pytest.mark.parametrize("groups", [1, 4])
def test_conv_batchnorm_relu_folds_to_conv_add_relu(conv_bias, groups):
    m = _Model()
    ins = ["x", m.const(_rand(8, 4 // groups, 3, 3, scale=0.3))]
    if conv_bias:
        ins.append(m.const(_rand(8)))
    y = m.node("Conv", ins, kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=groups)
    y = m.node("Relu", [m.bn(y, 8)])
    g, out, x = _folded(m.proto(y, (2, 4, 6, 6), (2, 8, 6, 6)), (2, 4, 6, 6))
    assert {"sub", "mul"} <= set(_ops(g))
    assert _ops(out) == ["conv2d", "add", "relu"]
    _close(_run(out, x), _run(g, x))
    # compiled: one conv kernel with a bias-add + relu epilogue, same numbers
    f3 = gc.onnx.compile(m.proto(y, (2, 4, 6, 6), (2, 8, 6, 6)), backend="llvm", opt_level=3)
    assert _kernels(f3.compiled(x).graph) == ["[conv2d+add+relu]"]
    want = gc.onnx.compile(m.proto(y, (2, 4, 6, 6), (2, 8, 6, 6)), backend="llvm",
                           opt_level=2)(x)
    _close([np.asarray(f3(x))], [np.asarray(want)])


def test_gemm_batchnorm_folds_to_matmul_add():
    m = _Model()
    y = m.node("Gemm", ["x", m.const(_rand(6, 5)), m.const(_rand(6))], transB=1, alpha=0.5)
    y = m.bn(y, 6)
    g, out, x = _folded(m.proto(y, (3, 5), (3, 6)), (3, 5))
    assert _ops(out) == ["matmul", "add"]
    _close(_run(out, x), _run(g, x))


def test_div_scalar_and_reversed_links_compose():
    # conv / d * 0.5 - t then t2 - y: divides, a scalar and c - y all fold
    m = _Model()
    y = m.node("Conv", ["x", m.const(_rand(4, 3, 3, 3))], kernel_shape=[3, 3])
    y = m.node("Div", [y, m.const(np.abs(_rand(4, 1, 1)) + 0.5)])
    y = m.node("Mul", [y, m.const(np.float32(0.5))])
    y = m.node("Sub", [y, m.const(_rand(1, 4, 1, 1))])
    y = m.node("Sub", [m.const(_rand(4, 1, 1)), y])
    g, out, x = _folded(m.proto(y, (2, 3, 5, 5), (2, 4, 3, 3)), (2, 3, 5, 5))
    assert _ops(g) == ["conv2d", "div", "mul", "sub", "sub"]
    assert _ops(out) == ["conv2d", "add"]
    _close(_run(out, x), _run(g, x))


def test_what_is_not_affine_per_channel_stays():
    def model(op, c, reverse=False):
        m = _Model()
        y = m.node("Conv", ["x", m.const(_rand(4, 3, 1, 1))], kernel_shape=[1, 1])
        c = m.const(c)
        return m.proto(m.node(op, [c, y] if reverse else [y, c]), (1, 3, 4, 4), (1, 4, 4, 4))

    for proto in (model("Div", np.abs(_rand(4, 1, 1)) + 0.5, reverse=True),  # c / y
                  model("Mul", _rand(4, 4)),          # varies along W, not channels
                  model("Add", _rand(4, 1, 1))):      # a shift only: nothing to scale
        g = gc.onnx.load(proto, input_shapes={"x": (1, 3, 4, 4)})
        assert fold_batch_norm(g) == g


def test_frozen_divisor_folds_as_nodes_on_the_weight():
    g = Graph("frozen")
    x = g.add_input("x", TensorType((2, 3, 5, 5), "float32"))
    w = g.add_input("w", TensorType((4, 3, 3, 3), "float32"), role="parameter")
    d = g.add_input("d", TensorType((4, 1, 1), "float32"), role="parameter")
    t = g.add_constant(_rand(4, 1, 1))
    y = g.add_node("conv2d", [x, w]).outputs[0]
    y = g.add_node("div", [y, d]).outputs[0]
    g.outputs = [g.add_node("add", [y, t]).outputs[0]]
    g.validate()
    assert fold_batch_norm(g) == g  # parameters may change per call
    g.meta = {"frozen": ["w", "d"]}
    out = fold_batch_norm(g).validate()
    big = [n.op.name for n in out.nodes if n.outputs[0].shape == (2, 4, 3, 3)]
    assert big == ["conv2d", "add"]
    args = [_rand(2, 3, 5, 5), _rand(4, 3, 3, 3), np.abs(_rand(4, 1, 1)) + 0.5]
    _close(_run(out, *args), _run(g, *args))


def _bench_models():
    name = "graphc_bench_onnx_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(ROOT, "benchmarks", "onnx_models.py"))
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


@pytest.mark.parametrize("model, convs", [("resnet50", 53), ("mobilenet_v1", 27)])
def test_benchmark_models_keep_no_per_channel_epilogue(model, convs):
    proto = _bench_models().MODELS[model]()
    g = gc.onnx.load(proto, input_shapes={"data": (1, 3, 224, 224)})
    kernels = _kernels(optimize(g, opt_level=3))
    conv_kernels = [k for k in kernels if "conv2d" in k]
    assert len(conv_kernels) == convs
    left = {op for k in kernels for op in k.strip("[]").split("+")}
    assert not left & {"sub", "mul", "div"}, sorted(set(kernels))
    # at level 2 (no folding) every conv still pays the BN arithmetic
    assert all("sub+mul+add" in k for k in _kernels(optimize(g, opt_level=2))
               if "conv2d" in k)


def test_folded_mobilenet_matches_unfolded():
    # whole network: depthwise + pointwise convs, 27 folds, within float32 rounding
    proto = _bench_models().MODELS["mobilenet_v1"]()
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    got = np.asarray(gc.onnx.compile(proto, backend="llvm", opt_level=3)(x))
    want = np.asarray(gc.onnx.compile(proto, backend="llvm", opt_level=2)(x))
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= 1e-4 * scale
