"""ONNX neural-network ops (graphc/onnx/ops_nn.py) against onnxruntime: one-node models at
the opsets where the ops' signatures differ, on the reference and llvm backends."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX import needs the onnx package")
ort = pytest.importorskip("onnxruntime", reason="the oracle is onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

import graphc.onnx as gx  # noqa: E402

BACKENDS = ("reference", "llvm")
_ELEM = {np.dtype("float32"): TensorProto.FLOAT, np.dtype("float64"): TensorProto.DOUBLE,
         np.dtype("float16"): TensorProto.FLOAT16, np.dtype("int64"): TensorProto.INT64}


def _model(op, inputs, attrs, opset, n_out=1, consts=None, out_dtypes=None):
    """A one-node model: ``inputs`` (name -> array) are graph inputs, ``consts`` (name ->
    array) initializers; None in the input list is an omitted optional input. Outputs
    have the first input's dtype unless ``out_dtypes`` says otherwise."""
    consts = consts or {}
    names = [n if n is not None else "" for n in inputs]
    outs = [f"y{i}" for i in range(n_out)] if isinstance(n_out, int) else n_out
    node = helper.make_node(op, names, outs, **attrs)
    g_in = [helper.make_tensor_value_info(n, _ELEM[a.dtype], a.shape)
            for n, a in inputs.items() if n is not None and n not in consts]
    dtypes = out_dtypes or [next(iter(inputs.values())).dtype] * len(outs)
    g_out = [helper.make_tensor_value_info(o, _ELEM[np.dtype(d)], None)
             for o, d in zip(outs, dtypes) if o]
    inits = [onnx.numpy_helper.from_array(a, n) for n, a in consts.items()]
    graph = helper.make_graph([node], "t", g_in, g_out, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def check(op, inputs, attrs=None, opset=13, consts=(), n_out=1, rtol=1e-4, atol=1e-5,
          out_dtypes=None):
    """Run op on graphc (both backends) and onnxruntime; compare every output."""
    attrs = attrs or {}
    inputs = dict(inputs)
    model = _model(op, inputs, attrs, opset, n_out,
                   {k: inputs[k] for k in consts}, out_dtypes)
    feeds = {k: v for k, v in inputs.items() if k is not None and k not in consts}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    for backend in BACKENDS:
        got = gx.compile(model, backend=backend)(**feeds)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            g = g.numpy()
            assert g.shape == w.shape, (backend, g.shape, w.shape)
            assert g.dtype == w.dtype, (backend, g.dtype, w.dtype)
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=backend)
    return want


def rand(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape).astype(np.float32)


# -- Conv --------------------------------------------------------------------------------

CONV2D = [
    dict(),
    dict(strides=[2, 2]),
    dict(strides=[2, 1], pads=[1, 0, 1, 0]),
    dict(pads=[1, 2, 0, 1]),                      # asymmetric
    dict(dilations=[2, 1], pads=[2, 1, 2, 1]),
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 2]),
    dict(auto_pad="SAME_UPPER"),
    dict(auto_pad="VALID", strides=[2, 3]),
]


@pytest.mark.parametrize("attrs", CONV2D)
@pytest.mark.parametrize("opset", [9, 11, 22])
def test_conv2d(attrs, opset):
    x, w, b = rand(2, 4, 7, 8), rand(6, 4, 3, 3), rand(6)
    check("Conv", {"x": x, "w": w, "b": b}, attrs, opset, consts=("w", "b"))


def test_conv2d_group_no_bias_symbolic_weight():
    x, w = rand(1, 6, 9, 5), rand(9, 2, 3, 2)
    check("Conv", {"x": x, "w": w}, dict(group=3, pads=[0, 1, 2, 0], strides=[2, 1],
                                        kernel_shape=[3, 2]), 13)


def test_conv_depthwise():
    check("Conv", {"x": rand(2, 4, 6, 6), "w": rand(4, 1, 3, 3), "b": rand(4)},
          dict(group=4, pads=[1, 1, 1, 1]), 11, consts=("w", "b"))


@pytest.mark.parametrize("attrs", [dict(), dict(strides=[2], pads=[2, 1]),
                                   dict(dilations=[2], pads=[1, 3]),
                                   dict(auto_pad="SAME_LOWER", strides=[2]),
                                   dict(group=2, auto_pad="SAME_UPPER", strides=[3])])
def test_conv1d(attrs):
    check("Conv", {"x": rand(2, 4, 11), "w": rand(6, 4 // attrs.get("group", 1), 3),
                   "b": rand(6)}, attrs, 11, consts=("w", "b"))


@pytest.mark.parametrize("attrs", [dict(), dict(strides=[2, 1, 2], pads=[1, 0, 1, 0, 1, 2],
                                                dilations=[2, 1, 1], group=2)])
def test_conv3d(attrs):
    check("Conv", {"x": rand(1, 4, 7, 6, 5), "w": rand(4, 4 // attrs.get("group", 1), 2, 3, 2),
                   "b": rand(4)}, attrs, 11, consts=("w", "b"))


def test_conv_integer_input_fails():
    model = _model("Conv", {"x": np.zeros((1, 1, 3, 3), np.int64),
                            "w": np.zeros((1, 1, 1, 1), np.int64)}, {}, 11)
    with pytest.raises(gx.OnnxImportError, match="floats only"):
        gx.load(model)


# -- ConvTranspose ---------------------------------------------------------------------

CONVT2D = [
    dict(),
    dict(strides=[2, 2]),
    dict(strides=[2, 3], pads=[1, 0, 1, 2]),
    dict(strides=[2, 2], output_padding=[1, 0], pads=[1, 1, 0, 1]),
    dict(dilations=[2, 1], strides=[3, 2], output_padding=[1, 1], pads=[2, 1, 1, 1]),
    dict(group=2, strides=[2, 1], pads=[0, 1, 1, 0]),
    dict(strides=[2, 2], output_shape=[10, 6]),           # odd padding goes first
    dict(strides=[2, 2], output_shape=[10, 6], auto_pad="SAME_UPPER"),   # ... or last
    dict(strides=[2, 2], output_shape=[12, 10]),          # larger: zeros at the end
    dict(strides=[2, 2], auto_pad="SAME_UPPER", kernel_shape=[4, 4]),
    dict(strides=[2, 3], auto_pad="SAME_LOWER"),
]


@pytest.mark.parametrize("attrs", CONVT2D)
@pytest.mark.parametrize("opset", [11, 22])
def test_conv_transpose2d(attrs, opset):
    k = attrs.get("kernel_shape", [3, 3])
    x, w, b = rand(2, 4, 5, 4), rand(4, 3, *k), rand(3 * attrs.get("group", 1))
    w = rand(4, 3, *k)
    check("ConvTranspose", {"x": x, "w": w, "b": b}, attrs, opset, consts=("w", "b"))


@pytest.mark.parametrize("attrs", [dict(), dict(strides=[3], pads=[1, 2], output_padding=[2])])
def test_conv_transpose1d(attrs):
    check("ConvTranspose", {"x": rand(2, 3, 6), "w": rand(3, 2, 4)}, attrs, 13)


def test_conv_transpose_output_padding_past_stride():
    """output_padding >= stride (onnxruntime refuses it): zeros appended to the full
    output before the pads crop it."""
    x, w = rand(1, 2, 5, 4), rand(2, 3, 3, 3)
    attrs = dict(strides=[1, 2], dilations=[2, 1])
    full = check("ConvTranspose", {"x": x, "w": w}, attrs, 13)[0]
    want = np.pad(full, ((0, 0), (0, 0), (0, 3), (0, 2)))[:, :, 1:-2, :-1]
    model = _model("ConvTranspose", {"x": x, "w": w},
                   dict(attrs, output_padding=[3, 2], pads=[1, 0, 2, 1]), 13)
    for backend in BACKENDS:
        got = gx.compile(model, backend=backend)(x, w).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# -- pooling -----------------------------------------------------------------------------

POOL2D = [
    dict(kernel_shape=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 0, 1]),        # asymmetric
    dict(kernel_shape=[3, 3], pads=[2, 1, 2, 1]),                        # > half the kernel
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, pads=[1, 1, 1, 1]),
    dict(kernel_shape=[2, 3], strides=[3, 2], ceil_mode=1, pads=[0, 1, 1, 0]),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="VALID"),
]


@pytest.mark.parametrize("attrs", POOL2D)
def test_max_pool2d(attrs):
    check("MaxPool", {"x": rand(2, 3, 7, 8)}, attrs, 12)


@pytest.mark.parametrize("attrs", [dict(kernel_shape=[2, 2], dilations=[2, 1]),
                                   dict(kernel_shape=[3, 2], dilations=[2, 2], strides=[2, 1],
                                        pads=[1, 0, 2, 1], ceil_mode=1)])
def test_max_pool2d_dilated(attrs):
    check("MaxPool", {"x": rand(1, 2, 9, 8)}, attrs, 12)


@pytest.mark.parametrize("opset", [8, 10, 11, 22])
def test_max_pool_opsets(opset):
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    if opset >= 10:
        attrs["ceil_mode"] = 1
    check("MaxPool", {"x": rand(1, 2, 8, 8)}, attrs, opset)


def test_max_pool_1d_and_3d():
    check("MaxPool", {"x": rand(2, 3, 10)}, dict(kernel_shape=[3], strides=[2], pads=[1, 0],
                                                 ceil_mode=1), 12)
    check("MaxPool", {"x": rand(1, 2, 5, 6, 4)}, dict(kernel_shape=[2, 3, 2], strides=[2, 2, 1],
                                                      pads=[0, 1, 1, 1, 1, 0]), 12)


def test_max_pool_indices_output_fails():
    model = _model("MaxPool", {"x": rand(1, 1, 4, 4)}, dict(kernel_shape=[2, 2]), 12, 2)
    with pytest.raises(gx.OnnxImportError, match="Indices"):
        gx.load(model)


@pytest.mark.parametrize("include", [0, 1])
@pytest.mark.parametrize("attrs", POOL2D)
def test_avg_pool2d(attrs, include):
    check("AveragePool", {"x": rand(2, 3, 7, 8)}, dict(attrs, count_include_pad=include), 11)


@pytest.mark.parametrize("opset", [7, 10, 19, 22])
def test_avg_pool_opsets(opset):
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
    if opset >= 10:
        attrs["ceil_mode"] = 1
    if opset >= 19:
        attrs["dilations"] = [2, 1]
    check("AveragePool", {"x": rand(1, 2, 9, 8)}, attrs, opset)


@pytest.mark.parametrize("include", [0, 1])
def test_avg_pool_1d_and_3d(include):
    check("AveragePool", {"x": rand(2, 3, 10)},
          dict(kernel_shape=[3], strides=[2], pads=[1, 0], ceil_mode=1,
               count_include_pad=include), 12)
    check("AveragePool", {"x": rand(1, 2, 5, 6, 4)},
          dict(kernel_shape=[2, 3, 2], strides=[2, 2, 1], pads=[0, 1, 1, 1, 1, 0],
               count_include_pad=include), 12)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 4, 5)])
def test_global_pools(op, shape):
    check(op, {"x": rand(*shape)}, {}, 13)


# -- normalization -----------------------------------------------------------------------


def _bn_inputs(c):
    rng = np.random.default_rng(c)
    return {"s": rng.standard_normal(c).astype(np.float32),
            "b": rng.standard_normal(c).astype(np.float32),
            "m": rng.standard_normal(c).astype(np.float32),
            "v": rng.uniform(0.5, 2, c).astype(np.float32)}


@pytest.mark.parametrize("opset", [7, 9, 14, 15])
@pytest.mark.parametrize("shape", [(3, 4), (2, 4, 5), (2, 4, 3, 5)])
def test_batch_norm(opset, shape):
    ins = {"x": rand(*shape), **_bn_inputs(4)}
    check("BatchNormalization", ins, dict(epsilon=1e-3), opset, consts=("s", "b", "m", "v"))


def test_batch_norm_symbolic_params():
    check("BatchNormalization", {"x": rand(2, 3, 4, 4), **_bn_inputs(3)}, {}, 15)


def test_batch_norm_training_fails():
    ins = {"x": rand(2, 3, 4), **_bn_inputs(3)}
    with pytest.raises(gx.OnnxImportError, match="training_mode"):
        gx.load(_model("BatchNormalization", ins, dict(training_mode=1), 15))
    with pytest.raises(gx.OnnxImportError, match="training"):
        gx.load(_model("BatchNormalization", ins, {}, 9, 5))


@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 3, 4, 5), (1, 3, 2, 3, 4)])
def test_instance_norm(shape):
    rng = np.random.default_rng(1)
    check("InstanceNormalization", {"x": rand(*shape) * 3 + 1,
                                    "s": rng.standard_normal(3).astype(np.float32),
                                    "b": rng.standard_normal(3).astype(np.float32)},
          dict(epsilon=1e-4), 6, consts=("s", "b"))


@pytest.mark.parametrize("axis,bias", [(-1, True), (1, True), (-2, False), (0, True)])
def test_layer_norm(axis, bias):
    x = rand(2, 3, 4, 5) * 2 + 0.5
    norm_shape = x.shape[axis:]
    ins = {"x": x, "s": rand(*norm_shape, seed=1)}
    if bias:
        ins["b"] = rand(*norm_shape[-1:], seed=2)    # broadcast over the normalized axes
    check("LayerNormalization", ins, dict(axis=axis, epsilon=1e-3), 17, n_out=3)
    check("LayerNormalization", ins, dict(axis=axis), 17, consts=("s",))


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_layer_norm_stash_type(dtype):
    """Mean and InvStdDev have the stash type (float32); a float64 input keeps float64
    statistics inside (onnxruntime computes it so)."""
    x, s, b = rand(2, 3, 4).astype(dtype), rand(4).astype(dtype), rand(4).astype(dtype)
    tol = 1e-2 if dtype == "float16" else 1e-6
    check("LayerNormalization", {"x": x, "s": s, "b": b}, dict(axis=1), 17, n_out=3,
          out_dtypes=[dtype, "float32", "float32"], rtol=tol, atol=tol)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_lrn(size):
    for opset in (1, 13):
        check("LRN", {"x": rand(2, 6, 3, 4)}, dict(size=size, alpha=0.01, beta=0.6, bias=1.5),
              opset)


@pytest.mark.parametrize("shape,size", [((2, 6, 3, 4), 4), ((2, 5, 7), 3), ((1, 4, 2, 2, 3), 2)])
def test_lrn_numpy(shape, size):
    """Even sizes and ranks other than 4, which onnxruntime refuses, against numpy."""
    x = rand(*shape)
    alpha, beta, bias = 0.02, 0.7, 2.0
    x64, c = x.astype(np.float64), shape[1]
    sq = np.zeros_like(x64)
    for ch in range(c):
        lo, hi = max(0, ch - (size - 1) // 2), min(c - 1, ch + size // 2)
        sq[:, ch] = (x64[:, lo:hi + 1] ** 2).sum(axis=1)
    want = x64 / (bias + alpha / size * sq) ** beta
    model = _model("LRN", {"x": x}, dict(size=size, alpha=alpha, beta=beta, bias=bias), 13)
    for backend in BACKENDS:
        np.testing.assert_allclose(gx.compile(model, backend=backend)(x).numpy(), want,
                                   rtol=1e-5, atol=1e-6)


# -- softmax -----------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset,axis", [(11, None), (11, 2), (11, -1), (11, 0), (1, None),
                                        (13, None), (13, 1), (13, -3), (13, 0)])
def test_softmax(op, opset, axis):
    attrs = {} if axis is None else {"axis": axis}
    check(op, {"x": rand(2, 3, 4, 5) * 3}, attrs, opset)


# -- activations -------------------------------------------------------------------------


@pytest.mark.parametrize("approximate", [None, "none", "tanh"])
def test_gelu(approximate):
    attrs = {} if approximate is None else {"approximate": approximate}
    check("Gelu", {"x": rand(3, 5) * 3}, attrs, 20)


@pytest.mark.parametrize("slope_shape", [(1,), (5,), (3, 1, 1), (4, 5), (2, 3, 4, 5)])
def test_prelu(slope_shape):
    for opset in (9, 16):
        check("PRelu", {"x": rand(2, 3, 4, 5), "s": rand(*slope_shape, seed=3)}, {}, opset,
              consts=("s",))
    check("PRelu", {"x": rand(2, 3, 4, 5), "s": rand(*slope_shape, seed=3)}, {}, 16)


@pytest.mark.parametrize("op,attrs,opset", [
    ("HardSwish", {}, 14), ("HardSwish", {}, 22), ("Selu", {}, 6),
    ("Selu", dict(alpha=2.0, gamma=0.5), 22), ("Celu", {}, 12), ("Celu", dict(alpha=0.7), 12)])
def test_activations(op, attrs, opset):
    want = check(op, {"x": rand(4, 7) * 4}, attrs, opset)[0]
    x = (rand(4, 7) * 4).astype(np.float64)
    if op == "HardSwish":
        ref = x * np.clip(x / 6 + 0.5, 0, 1)
    elif op == "Selu":
        a, g = attrs.get("alpha", 1.6732632423543772), attrs.get("gamma", 1.0507009873554805)
        ref = g * np.where(x > 0, x, a * np.expm1(x))
    else:
        a = attrs.get("alpha", 1.0)
        ref = np.maximum(x, 0) + np.minimum(0, a * np.expm1(x / a))
    np.testing.assert_allclose(want, ref, rtol=1e-5, atol=1e-6)


# -- dtypes ------------------------------------------------------------------------------

DTYPE_CASES = [
    ("Conv", lambda: {"x": rand(1, 2, 5, 5), "w": rand(3, 2, 3, 3)}, dict(pads=[1, 0, 1, 1]), 13),
    ("ConvTranspose", lambda: {"x": rand(1, 2, 4, 3), "w": rand(2, 3, 3, 3)},
     dict(strides=[2, 2], pads=[1, 0, 0, 1]), 13),
    ("AveragePool", lambda: {"x": rand(1, 2, 7, 7)},
     dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, pads=[1, 1, 0, 0]), 13),
    ("MaxPool", lambda: {"x": rand(1, 2, 7, 7)},
     dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), 13),
    ("LayerNormalization", lambda: {"x": rand(2, 3, 4), "s": rand(4), "b": rand(4)}, {}, 17),
    ("InstanceNormalization", lambda: {"x": rand(2, 3, 4), "s": rand(3), "b": rand(3)}, {}, 6),
    ("LRN", lambda: {"x": rand(1, 3, 4, 4)}, dict(size=3), 13),
    ("Softmax", lambda: {"x": rand(2, 3, 4)}, {}, 13),
    ("Gelu", lambda: {"x": rand(2, 3, 4)}, {}, 20),
    ("HardSwish", lambda: {"x": rand(2, 3, 4)}, {}, 14),
]


@pytest.mark.parametrize("op,inputs,attrs,opset", DTYPE_CASES, ids=[c[0] for c in DTYPE_CASES])
def test_float16_and_float64(op, inputs, attrs, opset):
    """float16 against onnxruntime; float64 (which its CPU kernels mostly lack) against
    onnxruntime's float32 result, keeping the dtype."""
    ins = inputs()
    check(op, {k: v.astype(np.float16) for k, v in ins.items()}, attrs, opset,
          rtol=1e-2, atol=1e-2)
    want = check(op, ins, attrs, opset)
    ins64 = {k: v.astype(np.float64) for k, v in ins.items()}
    model = _model(op, ins64, attrs, opset)
    for backend in BACKENDS:
        got = gx.compile(model, backend=backend)(**ins64)
        got = got if isinstance(got, tuple) else (got,)
        for g, w in zip(got, want):
            assert g.dtype.name == "float64"
            np.testing.assert_allclose(g.numpy(), w, rtol=1e-4, atol=1e-5)


def test_batch_norm_float16_with_float32_statistics():
    """From opset 15 the scale, bias and statistics may be float32 for a float16 input."""
    x = rand(2, 3, 4, 5).astype(np.float16)
    check("BatchNormalization", {"x": x, **_bn_inputs(3)}, {}, 15, consts=("s", "b", "m", "v"),
          rtol=1e-2, atol=1e-2)


# -- more ops ----------------------------------------------------------------------------


@pytest.mark.parametrize("lambd,bias", [(0.5, 0.0), (1.0, 0.3)])
def test_shrink(lambd, bias):
    check("Shrink", {"x": rand(3, 7) * 2}, dict(lambd=lambd, bias=bias), 9)
    special = np.array([np.nan, np.inf, -np.inf, lambd, -lambd, 0], np.float32)
    check("Shrink", {"x": special}, dict(lambd=lambd, bias=bias), 9)


@pytest.mark.parametrize("opset,axis", [(11, None), (11, 2), (13, None), (13, 1), (13, -3)])
def test_hardmax(opset, axis):
    x = np.round(rand(2, 3, 4, 5) * 2)          # ties: the first maximum wins
    check("Hardmax", {"x": x}, {} if axis is None else {"axis": axis}, opset)


@pytest.mark.parametrize("opset", [18, 21])
@pytest.mark.parametrize("shape,groups", [((2, 6, 5), 3), ((2, 4, 3, 3), 2), ((1, 4, 3, 2), 4)])
def test_group_norm(opset, shape, groups):
    c = shape[1] if opset >= 21 else groups
    ins = {"x": rand(*shape) * 2 + 1, "s": rand(c, seed=1), "b": rand(c, seed=2)}
    check("GroupNormalization", ins, dict(num_groups=groups, epsilon=1e-3), opset,
          consts=("s", "b"))


@pytest.mark.parametrize("axes", [None, [0, 2, 3], [1], [-1, -2]])
def test_mean_variance_norm(axes):
    check("MeanVarianceNormalization", {"x": rand(2, 3, 4, 5) * 3 + 1},
          {} if axes is None else {"axes": axes}, 13)


@pytest.mark.parametrize("p,axis", [(1, -1), (2, -1), (2, 1), (1, 0)])
def test_lp_norm(p, axis):
    check("LpNormalization", {"x": rand(3, 4, 5)}, dict(p=p, axis=axis), 11)


@pytest.mark.parametrize("attrs,opset", [
    (dict(kernel_shape=[2, 2]), 11),
    (dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], p=3), 11),
    (dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 0, 1], p=1), 11),
    (dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, dilations=[1, 2]), 18),
    (dict(kernel_shape=[3], strides=[2], auto_pad="SAME_UPPER"), 18),
])
def test_lp_pool(attrs, opset):
    shape = (2, 3, 7, 8) if len(attrs["kernel_shape"]) == 2 else (2, 3, 9)
    check("LpPool", {"x": rand(*shape)}, attrs, opset, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_global_lp_pool(p):
    check("GlobalLpPool", {"x": rand(2, 3, 4, 5)}, dict(p=p), 2, rtol=1e-4, atol=1e-4)


def test_small_cnn_end_to_end():
    """Conv -> BatchNormalization -> Relu -> MaxPool -> Conv -> GlobalAveragePool ->
    Flatten -> Gemm -> Softmax, weights as initializers, against onnxruntime."""
    rng = np.random.default_rng(7)

    def init(name, *shape):
        return onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32),
                                            name)
    inits = [init("w1", 8, 3, 3, 3), init("b1", 8), init("s", 8), init("bb", 8), init("m", 8),
             onnx.numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), "v"),
             init("w2", 16, 8, 3, 3), init("fc", 10, 16), init("fcb", 10)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2],
                         ceil_mode=1),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 15, 15])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    x = rand(2, 3, 15, 15)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for backend in BACKENDS:
        np.testing.assert_allclose(gx.compile(model, backend=backend)(x).numpy(), want,
                                   rtol=1e-4, atol=1e-6)
