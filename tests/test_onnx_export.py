"""ONNX export: every op, layer and test model round-trips through onnxruntime.

Each case is traced, exported to a file, read back with ``onnx.load``, checked with
``onnx.checker.check_model(full_check=True)`` (which runs strict shape inference against
the types graphc declares), run on onnxruntime's CPU provider and compared with graphc's
reference backend.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export tests need the onnx package "
                           "(pip install 'graphc[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="ONNX export tests run the exported models "
                          "on onnxruntime")

import models as M  # noqa: E402

import graphc as gc  # noqa: E402
from graphc import autograd, nn  # noqa: E402
from graphc.errors import GraphcError  # noqa: E402
from graphc.graph import Graph  # noqa: E402
from graphc.nn import rnn  # noqa: E402
from graphc.onnx.exporter import (  # noqa: E402
    MAPPINGS,
    OnnxExportError,
    UnmappedOpError,
    export_block,
    export_graph,
)
from graphc.ops import registry  # noqa: E402
from graphc.types import TensorType  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
_rng = np.random.default_rng(0)


def _f(*shape, low=-2.0, high=2.0, dtype=np.float32):
    return _rng.uniform(low, high, shape).astype(dtype)


def _i(*shape, low=-5, high=6, dtype=np.int64):
    return _rng.integers(low, high, shape).astype(dtype)


def _b(*shape):
    return _rng.random(shape) < 0.5


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _outputs(out) -> list[np.ndarray]:
    out = out if isinstance(out, tuple | list) else (out,)
    return [np.asarray(o) for o in out]


def _check(model, path):
    """The file is protobuf onnx reads back to the same model, and the checker passes."""
    loaded = onnx.load(str(path))
    assert loaded.SerializeToString() == model.SerializeToString()
    onnx.checker.check_model(loaded, full_check=True)
    return loaded


def _compare(got: list, want: list, rtol=RTOL, atol=ATOL):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape, (g.shape, w.shape)
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(g, w)


def roundtrip(fn, *args, tmp_path, opset=17, graph: Graph | None = None, **tol):
    """Export ``fn``'s graph (or ``graph``), run it on onnxruntime, compare with graphc."""
    graph = graph if graph is not None else gc.trace(fn, *args)
    path = tmp_path / f"{graph.name}-{opset}.onnx"
    model = _check(export_graph(graph, path, opset=opset), path)
    sess = _session(model)
    names = [i.name for i in sess.get_inputs()]
    assert names == [v.name for v in graph.data_inputs]
    got = sess.run(None, dict(zip(names, args)))
    want = _outputs(gc.jit(fn, backend="reference")(*args))
    _compare(got, want, **tol)
    return model


# -- one small graph per op -------------------------------------------------------------

_X = _f(3, 4)
_POS = _f(3, 4, low=0.1, high=3.0)
_Y = _f(4)

UNARY = {
    "neg": gc.neg, "abs": gc.abs, "exp": gc.exp, "log": (gc.log, _POS),
    "log1p": (gc.log1p, _POS), "expm1": gc.expm1, "sqrt": (gc.sqrt, _POS),
    "rsqrt": (gc.rsqrt, _POS), "reciprocal": (gc.reciprocal, _POS), "square": gc.square,
    "sin": gc.sin, "cos": gc.cos, "tanh": gc.tanh, "sigmoid": gc.sigmoid, "relu": gc.relu,
    "erf": gc.erf, "softplus": gc.softplus, "sign": gc.sign, "floor": gc.floor,
    "ceil": gc.ceil, "round": (gc.round, np.array([[-2.5, -1.5, -0.5, 0.5], [1.5, 2.5, 0.4,
                                                                            -0.6]], np.float32)),
    "leaky_relu": lambda x: gc.leaky_relu(x, 0.2), "elu": lambda x: gc.elu(x, 0.7),
    "gelu": gc.gelu, "gelu_tanh": lambda x: gc.gelu(x, approximate="tanh"),
    "clip": lambda x: gc.clip(x, -0.5, 1.0), "clip_min": lambda x: gc.clip(x, min=0.2),
    "clip_max": lambda x: gc.clip(x, max=0.3),
    "cast_int32": lambda x: gc.cast(x, "int32"), "cast_bool": lambda x: gc.cast(x, "bool"),
    "cast_float64": lambda x: gc.cast(x, "float64"),
    "logical_not": (gc.logical_not, _b(3, 4)),
    "relu_int": (gc.relu, _i(3, 4, dtype=np.int32)), "abs_int": (gc.abs, _i(5)),
    "neg_int": (gc.neg, _i(5, dtype=np.int32)), "sign_int": (gc.sign, _i(6)),
    "square_int": (gc.square, _i(5)), "clip_int": (lambda x: gc.clip(x, -2.7, 3.9), _i(8)),
    "exp_float64": (gc.exp, _f(3, 4, dtype=np.float64)),
    "cast_from_int": (lambda x: gc.cast(x, "float32"), _i(5, dtype=np.int32)),
}

BINARY = {
    "add": gc.add, "sub": gc.subtract, "mul": gc.multiply, "div": gc.divide,
    "pow": (gc.power, (_POS, _Y)), "maximum": gc.maximum, "minimum": gc.minimum,
    "equal": (gc.equal, (_i(3, 4, low=0, high=3), _i(4, low=0, high=3))),
    "not_equal": (gc.not_equal, (_i(3, 4, low=0, high=3), _i(4, low=0, high=3))),
    "less": gc.less, "less_equal": gc.less_equal, "greater": gc.greater,
    "greater_equal": gc.greater_equal,
    "less_bool": (gc.less, (_b(3, 4), _b(4))), "equal_bool": (gc.equal, (_b(3, 4), _b(4))),
    "logical_and": (gc.logical_and, (_b(3, 4), _b(4))),
    "logical_or": (gc.logical_or, (_b(3, 4), _b(4))),
    "add_int32": (gc.add, (_i(3, 4, dtype=np.int32), _i(4, dtype=np.int32))),
    "mul_int64": (gc.multiply, (_i(3, 4), _i(4))),
    "pow_int": (gc.power, (_i(3, 4, low=0, high=4), _i(4, low=0, high=3))),
    "maximum_int": (gc.maximum, (_i(3, 4), _i(4))),
    "div_int": (gc.divide, (_i(3, 4), _i(4, low=1, high=5))),
    "add_float64": (gc.add, (_f(3, 4, dtype=np.float64), _f(4, dtype=np.float64))),
    "add_scalar": (lambda x, y: x * 2.5 + 1 - y, (_X, _Y)),
    "bool_plus_int": (lambda b, y: b + 1 + y, (_b(3, 4), _i(4))),
}


def _unary_case(name):
    spec = UNARY[name]
    fn, x = spec if isinstance(spec, tuple) else (spec, _X)
    return fn, (x,)


def _binary_case(name):
    spec = BINARY[name]
    fn, xy = spec if isinstance(spec, tuple) else (spec, (_X, _Y))
    return fn, xy


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name, tmp_path):
    fn, args = _unary_case(name)
    roundtrip(fn, *args, tmp_path=tmp_path)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary(name, tmp_path):
    fn, args = _binary_case(name)
    roundtrip(fn, *args, tmp_path=tmp_path)


def test_float16(tmp_path):
    x = _f(3, 4, dtype=np.float16)
    roundtrip(lambda a: (gc.exp(a) + a * 2, gc.sum(a, axis=1), gc.matmul(a, gc.transpose(a)),
                         gc.where(a > 0.5, a, 0), gc.cast(a, "float32")),
              x, tmp_path=tmp_path, rtol=1e-2, atol=1e-2)


def test_where(tmp_path):
    roundtrip(gc.where, _b(3, 4), _X, _Y, tmp_path=tmp_path)
    roundtrip(gc.where, _b(3, 4), _b(3, 4), _b(4), tmp_path=tmp_path)
    roundtrip(gc.where, _b(3, 4), _i(3, 4, dtype=np.int32), _i(4, dtype=np.int32),
              tmp_path=tmp_path)


_A = _f(2, 3, 4)
REDUCTIONS = {
    "sum": lambda x: gc.sum(x), "sum_scalar_math": lambda x: gc.sum(x) * 2 + 1,
    "sum_axis": lambda x: gc.sum(x, axis=1),
    "sum_keep": lambda x: gc.sum(x, axis=(0, 2), keepdims=True),
    "sum_none": lambda x: gc.sum(x, axis=()),
    "mean": lambda x: gc.mean(x, axis=-1), "mean_all_keep": lambda x: gc.mean(x, keepdims=True),
    "max": lambda x: gc.max(x, axis=(1, 2)), "min": lambda x: gc.min(x, axis=0, keepdims=True),
    "prod": lambda x: gc.prod(x, axis=2), "argmax": lambda x: gc.argmax(x, axis=1),
    "argmin_keep": lambda x: gc.argmin(x, axis=-1, keepdims=True),
    "argmax_flat": lambda x: gc.argmax(x), "argmin_flat_keep": lambda x: gc.argmin(
        x, keepdims=True),
    "logsumexp": lambda x: gc.logsumexp(x, axis=1), "softmax": lambda x: gc.softmax(x, 1),
    "log_softmax": gc.log_softmax, "var": lambda x: gc.var(x, axis=(0, 2)),
    "layer_norm": lambda x: gc.layer_norm(x, axis=(1, 2)),
}
INT_REDUCTIONS = {
    "sum_int32": (lambda x: gc.sum(x, axis=0), _i(3, 4, dtype=np.int32)),
    "sum_bool": (lambda x: gc.sum(x, axis=1), _b(3, 4)),
    "mean_int": (lambda x: gc.mean(x, axis=1), _i(3, 4)),
    "max_int": (lambda x: gc.max(x, axis=1), _i(3, 4)),
    "max_bool": (lambda x: gc.max(x, axis=1), _b(3, 4)),
    "prod_int32": (lambda x: gc.prod(x, axis=1), _i(3, 4, low=-3, high=4, dtype=np.int32)),
    "argmax_bool": (lambda x: gc.argmax(x, axis=1), _b(3, 4)),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction(name, tmp_path):
    roundtrip(REDUCTIONS[name], _A, tmp_path=tmp_path)


@pytest.mark.parametrize("name", sorted(INT_REDUCTIONS))
def test_reduction_dtypes(name, tmp_path):
    fn, x = INT_REDUCTIONS[name]
    roundtrip(fn, x, tmp_path=tmp_path)


SHAPE = {
    "reshape": lambda x: gc.reshape(x, (0, -1)), "reshape_full": lambda x: gc.reshape(
        x, (4, 6)),
    "flatten": gc.flatten, "transpose": lambda x: gc.transpose(x, (2, 0, 1)),
    "transpose_default": gc.transpose,
    "broadcast_to": lambda x: gc.broadcast_to(x[:, :1], (5, 2, 3, 4)),
    "expand_dims": lambda x: gc.expand_dims(x, (0, 3)),
    "squeeze": lambda x: gc.squeeze(x[:, :1], axis=1),
    "squeeze_all": lambda x: gc.squeeze(gc.reshape(x, (1, 2, 1, 12))),
    "squeeze_none": lambda x: gc.squeeze(x),
    "concat": lambda x: gc.concat([x, x * 2, x[:, :1]], axis=1),
    "stack": lambda x: gc.stack([x, x + 1], axis=-1),
    "split": lambda x: gc.split(x, 2, axis=0), "split_points": lambda x: gc.split(
        x, [1, 1, 3], axis=2),
    "slice": lambda x: gc.slice(x, (0, 1), (2, None), (1, 2)),
    "slice_negative": lambda x: x[::-1, 2:0:-1, ::-2],
    "getitem": lambda x: x[1, :, 2], "take": lambda x: gc.take(x, [2, 0, -1, 1], axis=2),
    "take_2d": lambda x: gc.take(x, np.array([[0, 1], [1, 0]]), axis=0),
    "pad": lambda x: gc.pad(x, ((0, 1), (2, 0), (1, 1)), value=1.5),
    "pad_zero": lambda x: gc.pad(x, 0),
    "one_hot": lambda x: gc.one_hot(gc.cast(x * 3, "int64"), 4),
}


@pytest.mark.parametrize("name", sorted(SHAPE))
def test_shape_op(name, tmp_path):
    roundtrip(SHAPE[name], _A, tmp_path=tmp_path)


def test_one_hot_attributes(tmp_path):
    """Negative and out-of-range indices give off rows (ONNX OneHot would wrap them)."""
    ix = np.array([[0, -1, 3], [5, 2, -4]], np.int32)
    roundtrip(lambda i: gc.one_hot(i, 4, dtype="int32", on_value=7, off_value=-1, axis=0),
              ix, tmp_path=tmp_path)
    roundtrip(lambda i: gc.one_hot(i, 3, dtype="bool"), ix, tmp_path=tmp_path)


def test_integer_and_bool_shape_ops(tmp_path):
    roundtrip(lambda i, b: (gc.concat([i, i], 0), gc.transpose(b), gc.pad(i, 1, value=2.7),
                            gc.take(b, [1, 0], axis=1), gc.reshape(i, (-1,))),
              _i(3, 4, dtype=np.int32), _b(3, 4), tmp_path=tmp_path)


LIBRARY = {
    "matmul": (gc.matmul, (_f(3, 4), _f(4, 5))),
    "matmul_batched": (gc.matmul, (_f(2, 1, 3, 4), _f(3, 4, 5))),
    "matmul_vec_mat": (gc.matmul, (_f(4), _f(2, 4, 5))),
    "matmul_mat_vec": (gc.matmul, (_f(3, 4), _f(4))),
    "matmul_vec_vec": (gc.matmul, (_f(4), _f(4))),
    "conv2d": (lambda x, w: gc.conv2d(x, w), (_f(2, 3, 9, 9), _f(4, 3, 3, 3))),
    "conv2d_attrs": (lambda x, w, b: gc.conv2d(x, w, b, stride=(2, 1), padding=(1, 2),
                                               dilation=(1, 2), groups=3),
                     (_f(2, 6, 9, 10), _f(9, 2, 3, 3), _f(9))),
    "conv1d": (lambda x, w: gc.conv1d(x, w, stride=2, padding=1), (_f(2, 3, 11),
                                                                   _f(4, 3, 3))),
    "max_pool2d": (lambda x: gc.max_pool2d(x, 2), (_f(2, 3, 8, 8),)),
    "max_pool2d_attrs": (lambda x: gc.max_pool2d(x, (3, 2), stride=(2, 1), padding=(1, 1)),
                         (_f(2, 3, 9, 8),)),
    "avg_pool2d": (lambda x: gc.avg_pool2d(x, 3, stride=2, padding=1), (_f(2, 3, 9, 9),)),
    "avg_pool2d_exclude_pad": (lambda x: gc.avg_pool2d(x, 3, stride=2, padding=1,
                                                       count_include_pad=False),
                               (_f(2, 3, 9, 9),)),
    "global_pools": (lambda x: (gc.ops.conv.global_avg_pool2d(x),
                                gc.ops.conv.global_max_pool2d(x)), (_f(2, 3, 5, 5),)),
    "conv2d_input_grad": (lambda g, w: gc.ops.conv.conv2d_input_grad(
        g, w, (10, 9), stride=2, padding=1, dilation=(1, 2), groups=2),
        (_f(2, 4, 5, 4), _f(4, 3, 3, 3))),
}


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_library_op(name, tmp_path):
    fn, args = LIBRARY[name]
    roundtrip(fn, *args, tmp_path=tmp_path)


def test_deep_learning_compositions(tmp_path):
    x, labels = _f(4, 6), np.array([0, 5, 2, -1])
    gamma, beta, mean, var = _f(3), _f(3), _f(3), _f(3, low=0.5, high=1.5)
    roundtrip(lambda z, g, b, m, v: gc.batch_norm(z, g, b, m, v, training=False),
              _f(2, 3, 4, 4), gamma, beta, mean, var, tmp_path=tmp_path)
    roundtrip(lambda z, y: gc.softmax_cross_entropy(z, y), x, labels, tmp_path=tmp_path)
    roundtrip(lambda i, w: gc.embedding(i, w), _i(2, 3, low=0, high=7), _f(7, 5),
              tmp_path=tmp_path)


def test_dropout_exports_as_identity(tmp_path):
    """A graph traced in training keeps its dropout node: exported for prediction, it is
    the identity, and its key input is no model input."""
    x = _f(3, 4)
    with autograd.train_mode():
        graph = gc.trace(lambda z: gc.dropout(z, 0.5) * 2, x)
    assert "dropout" in {n.op.name for n in graph.nodes}
    model = _check(export_graph(graph, tmp_path / "d.onnx"), tmp_path / "d.onnx")
    assert [i.name for i in model.graph.input] == [graph.data_inputs[0].name]
    (got,) = _session(model).run(None, {graph.data_inputs[0].name: x})
    np.testing.assert_allclose(got, x * 2)


@pytest.mark.parametrize("opset", [13, 14, 18, 20, 21])
def test_opsets(opset, tmp_path):
    """Ops whose ONNX form changed with the opset: reduce axes, Split, Squeeze/Unsqueeze,
    Relu on ints, Gelu."""
    def fn(x, i):
        parts = gc.split(x, [1, 3], axis=2)
        return (gc.mean(x, axis=(0, 2), keepdims=True), gc.max(x, axis=1), gc.sum(x, axis=2),
                gc.prod(x, axis=0), gc.min(x, axis=(1, 2)), *parts,
                gc.squeeze(gc.expand_dims(x, 1), 1), gc.relu(i), gc.gelu(x),
                gc.gelu(x, approximate="tanh"), gc.reshape(x, (0, -1)), gc.stack([x, x], 1))
    roundtrip(fn, _A, _i(5, dtype=np.int32), tmp_path=tmp_path, opset=opset)


def test_current_opset_checks(tmp_path):
    """The newest opset the onnx package knows: checker and shape inference pass."""
    fn, args = M.transformer_block()
    current = onnx.defs.onnx_opset_version()
    path = tmp_path / "t.onnx"
    model = _check(export_graph(gc.trace(fn, *args), path, opset=current), path)
    assert model.opset_import[0].version == current


def test_bad_opset():
    graph = gc.trace(gc.exp, _X)
    for opset in (12, onnx.defs.onnx_opset_version() + 1, "17"):
        with pytest.raises(OnnxExportError, match="opset"):
            export_graph(graph, None, opset=opset)


# -- models -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(M.INFERENCE))
def test_inference_model(name, tmp_path):
    fn, args = M.INFERENCE[name]()
    model = roundtrip(fn, *args, tmp_path=tmp_path)
    if name == "lenet_constants":  # the baked-in parameters are initializers
        assert len(model.graph.initializer) >= 12
        assert len(model.graph.input) == 1


@pytest.mark.parametrize("name", sorted(M.INFERENCE))
def test_optimized_model_inlines_fused_kernels(name, tmp_path):
    """The graph after the optimization passes: fused kernels are exported as their bodies."""
    from graphc.passes.pipeline import optimize
    fn, args = M.INFERENCE[name]()
    graph = optimize(gc.trace(fn, *args))
    assert any(n.body is not None for n in graph.nodes)
    roundtrip(fn, *args, tmp_path=tmp_path, graph=graph)


def test_fused_copies_share_a_body(tmp_path):
    """Two kernels that run the same body object (``Graph.add_like`` shares it), with a
    constant, an output that passes an input through and one output listed twice."""
    body = Graph("k")
    a = body.add_input("a", TensorType((2, 3), "float32"))
    c = body.add_constant(np.full((3,), 0.5, np.float32))
    e = body.add_node("mul", [body.add_node("exp", [a]).outputs[0], c]).outputs[0]
    body.outputs = [e, a, e]
    g = Graph("shared")
    x = g.add_input("x", TensorType((2, 3), "float32"))
    first = g.add_fused(body, [x], "elementwise")
    second = g.add_like(first, [first.outputs[0]])
    g.outputs = [*first.outputs, *second.outputs]
    g.validate()
    path = tmp_path / "shared.onnx"
    model = _check(export_graph(g, path), path)
    xv = _f(2, 3)
    y1 = np.exp(xv) * 0.5
    y2 = np.exp(y1) * 0.5
    got = _session(model).run(None, {"x": xv})
    _compare(got, [y1, xv, y1, y2, y1, y2])
    assert len(model.graph.initializer) == 1


def _block_reference(block, data):
    with autograd.predict_mode():
        return _outputs(block(*[gc.array(d) for d in data]))


def _block_roundtrip(block, data, tmp_path):
    """Export ``block`` on ``data`` (numpy arrays, given to graphc as Tensors)."""
    path = tmp_path / "block.onnx"
    model = _check(export_block(block, path, *[gc.array(d) for d in data]), path)
    params = block.collect_params()
    inits = {t.name for t in model.graph.initializer}
    assert set(params) <= inits
    names = [i.name for i in model.graph.input]
    assert names == (["data"] if len(data) == 1 else [f"data{i}" for i in range(len(data))])
    got = _session(model).run(None, dict(zip(names, data)))
    _compare(got, _block_reference(block, data))
    return model


@pytest.mark.parametrize("name", sorted(M.BLOCKS))
def test_block_model(name, tmp_path):
    case = M.BLOCKS[name]()
    case.block.hybridize()
    _block_roundtrip(case.block, case.data, tmp_path)


def test_block_after_call_needs_no_inputs(tmp_path):
    """Without example inputs, export_block uses the hybridized block's last call."""
    case = M.mlp_block()
    with pytest.raises(OnnxExportError, match="example inputs"):
        export_block(case.block, None)
    case.block.hybridize()
    want = case.block(*case.data).numpy()
    model = export_block(case.block, None)
    (got,) = _session(model).run(None, {"data": case.data[0]})
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def _layer(make, *shape, dtype=np.float32):
    def build():
        block = make()
        block.initialize()
        if dtype == np.int64:
            data = _i(*shape, low=0, high=10)
        else:
            data = _f(*shape)
        block(gc.array(data))  # completes deferred shapes
        return block, (data,)
    return build


LAYERS = {
    "dense": _layer(lambda: nn.Dense(5, activation="tanh"), 3, 2, 4),
    "dense_no_flatten": _layer(lambda: nn.Dense(5, flatten=False, use_bias=False), 3, 2, 4),
    "conv2d": _layer(lambda: nn.Conv2D(4, 3, strides=2, padding=1, activation="relu"),
                     2, 3, 8, 8),
    "conv2d_groups": _layer(lambda: nn.Conv2D(6, 3, groups=3, dilation=2), 2, 3, 9, 9),
    "conv1d": _layer(lambda: nn.Conv1D(4, 3, padding=1), 2, 3, 7),
    "conv2d_transpose": _layer(lambda: nn.Conv2DTranspose(4, 3, strides=2, padding=1,
                                                          output_padding=1), 2, 3, 5, 5),
    "max_pool": _layer(lambda: nn.MaxPool2D(3, 2, 1), 2, 3, 8, 8),
    "avg_pool": _layer(lambda: nn.AvgPool2D(2), 2, 3, 8, 8),
    "max_pool1d": _layer(lambda: nn.MaxPool1D(2), 2, 3, 8),
    "avg_pool1d": _layer(lambda: nn.AvgPool1D(3, 1, 1), 2, 3, 8),
    "global_avg": _layer(nn.GlobalAvgPool2D, 2, 3, 5, 5),
    "global_max": _layer(nn.GlobalMaxPool2D, 2, 3, 5, 5),
    "batch_norm": _layer(nn.BatchNorm, 2, 3, 4, 4),
    "layer_norm": _layer(nn.LayerNorm, 2, 5, 6),
    "instance_norm": _layer(lambda: nn.InstanceNorm(scale=True), 2, 3, 4, 4),
    "group_norm": _layer(lambda: nn.GroupNorm(2), 2, 4, 3, 3),
    "embedding": _layer(lambda: nn.Embedding(10, 4), 2, 3, dtype=np.int64),
    "flatten": _layer(nn.Flatten, 2, 3, 4),
    "dropout": _layer(lambda: nn.Dropout(0.5), 2, 3),
    "activations": _layer(lambda: _seq(*[nn.Activation(a) for a in (
        "softrelu", "softsign", "sigmoid", "gelu", "gelu_tanh", "relu")]), 3, 4),
    "leaky_relu": _layer(lambda: nn.LeakyReLU(0.1), 3, 4),
    "rnn_relu": _layer(lambda: rnn.RNN(5, activation="relu"), 4, 2, 3),
    "gru": _layer(lambda: rnn.GRU(5, num_layers=2, layout="NTC"), 2, 4, 3),
    "lstm_bidirectional": _layer(lambda: rnn.LSTM(4, bidirectional=True), 3, 2, 3),
}


def _seq(*blocks):
    net = nn.HybridSequential()
    net.add(*blocks)
    return net


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer(name, tmp_path):
    block, data = LAYERS[name]()
    _block_roundtrip(block, data, tmp_path)


# -- errors and the file ------------------------------------------------------------------

def test_unmapped_ops_are_listed_at_once():
    g = Graph("grads")
    x = g.add_input("x", TensorType((1, 1, 4, 4), "float32"))
    gy = g.add_input("gy", TensorType((1, 1, 2, 2), "float32"))
    idx = g.add_input("idx", TensorType((4,), "int64"))
    a = g.add_node("max_pool2d_grad", [x, gy], {"kernel_size": 2}).outputs[0]
    b = g.add_node("take_grad", [g.add_node("exp", [a]).outputs[0], idx],
                   {"axis": 3, "size": 5}).outputs[0]
    c = g.add_node("take_grad", [b, idx], {"axis": 2, "size": 6}).outputs[0]
    g.outputs = [c]
    with pytest.raises(UnmappedOpError) as info:
        export_graph(g, None)
    err = info.value
    assert isinstance(err, GraphcError)
    assert err.ops == {"max_pool2d_grad": 1, "take_grad": 2}
    assert "max_pool2d_grad" in str(err) and "take_grad (x2)" in str(err)


def test_every_forward_op_is_mapped():
    """Every registered op but the gradient-only ones has a mapping."""
    gradient_only = {"avg_pool2d_grad", "conv2d_weight_grad", "max_pool2d_grad",
                     "slice_grad", "take_grad"}
    assert set(registry.all_ops()) - gradient_only <= set(MAPPINGS)


def test_parameters_and_outputs(tmp_path):
    """Parameters without values are model inputs, with values initializers; an output that
    is an input or repeats another gets its own name."""
    g = Graph("p")
    x = g.add_input("x", TensorType((2, 3), "float32"))
    p = g.add_input("w", TensorType((3,), "float32"), role="parameter")
    y = g.add_node("mul", [x, p]).outputs[0]
    g.outputs = [y, y, x]
    value = _f(3)
    model = export_graph(g, None, params={"w": value})
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["x"]
    outs = [o.name for o in model.graph.output]
    assert outs[0] == y.name and len(set(outs)) == 3
    xv = _f(2, 3)
    got = _session(model).run(None, {"x": xv})
    _compare(got, [xv * value, xv * value, xv])
    free = export_graph(g, None)
    assert [i.name for i in free.graph.input] == ["x", "w"]
    with pytest.raises(OnnxExportError, match="not parameter"):
        export_graph(g, None, params={"nope": value})


def test_model_metadata(tmp_path):
    fn, args = M.mlp()
    path = tmp_path / "mlp.onnx"
    model = export_graph(gc.trace(fn, *args), path)
    loaded = onnx.load(str(path))
    assert loaded.producer_name == "graphc"
    assert loaded.opset_import[0].version == 17
    assert loaded.graph.name == model.graph.name == "mlp"
    assert [i.name for i in loaded.graph.input][:2] == ["args", "arg1"]
