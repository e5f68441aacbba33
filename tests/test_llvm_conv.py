"""Native convolution and pooling in the LLVM backend (`graphc.backends.llvm.conv_codegen`).

Every case runs through ``gc.jit(..., backend='llvm')`` and must not fall back to the
interpreter for its conv/pool node; results are checked against the reference backend and,
for the forward ops, against float64 loops over kernel taps written here from the
definitions. Shapes: LeNet's, ResNet-style (3x3 pad 1, stride 2, 1x1, 7x7 stride 2,
groups, depthwise, dilation), odd and non-square sizes, batch 0 and 1, float32 and float64;
fused epilogues (bias, relu, a second mask output), the blocked gemm path and the
per-image one, the single native program and the Python path.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.backends.llvm import conv_codegen, library_codegen, runtime
from graphc.ops import conv as C

pytestmark = pytest.mark.skipif(library_codegen.blas() is None,
                                reason="no BLAS gemm symbol in numpy's libraries")
TOL = {"float32": 3e-5, "float64": 1e-12}


@pytest.fixture(params=["program", "python"])
def path(request, monkeypatch):
    """The kernel runs inside the executable's native program, or called from Python."""
    monkeypatch.setattr(runtime, "PROGRAM", request.param == "program")
    return request.param


@pytest.fixture(params=["direct", "gemm_blocked", "gemm_per_image"])
def strategy(request, monkeypatch):
    """Stride-1 convolutions and input gradients run as the direct kernel where its rule
    allows, or always through im2col + BLAS, several images per gemm or one."""
    if request.param != "direct":
        monkeypatch.setattr(conv_codegen, "DIRECT_MAX_K", 0)
    monkeypatch.setattr(conv_codegen, "COLS_PER_GEMM", 1 << 12 if request.param ==
                        "gemm_blocked" else 1)
    return request.param


def _rand(shape, dtype="float32", seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _padded(x, pad, fill):
    p0, p1 = pad
    return np.pad(x, ((0, 0), (0, 0), (p0, p0), (p1, p1)), constant_values=fill)


def _taps(x, k, stride, pad, dil, fill, out):
    """(i, j, view of the padded input under tap (i, j) for every output)."""
    xp = _padded(x, pad, fill)
    for i in range(k[0]):
        for j in range(k[1]):
            h0, w0 = i * dil[0], j * dil[1]
            yield i, j, xp[:, :, h0:h0 + stride[0] * (out[0] - 1) + 1:stride[0],
                           w0:w0 + stride[1] * (out[1] - 1) + 1:stride[1]]


def _out_size(hw, k, stride, pad, dil):
    return tuple((hw[a] + 2 * pad[a] - dil[a] * (k[a] - 1) - 1) // stride[a] + 1
                 for a in range(2))


def conv_oracle(x, w, stride=1, padding=0, dilation=1, groups=1):
    """float64 cross-correlation, one kernel tap at a time, per group."""
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    x, w = x.astype(np.float64), w.astype(np.float64)
    o, cg, kh, kw = w.shape
    out = _out_size(x.shape[2:], (kh, kw), s, p, d)
    y = np.zeros((x.shape[0], o, *out))
    og = o // groups
    for i, j, v in _taps(x, (kh, kw), s, p, d, 0.0, out):
        for g in range(groups):
            y[:, g * og:(g + 1) * og] += np.einsum(
                "nchw,oc->nohw", v[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og, :, i, j])
    return y


def pool_oracle(x, k, stride, padding, mode, include_pad=True):
    k, s, p = _pair(k), _pair(stride), _pair(padding)
    x = x.astype(np.float64)
    out = _out_size(x.shape[2:], k, s, p, (1, 1))
    vals = [v for _, _, v in _taps(x, k, s, p, (1, 1), -np.inf if mode == "max" else 0.0,
                                   out)]
    if mode == "max":
        return np.max(vals, axis=0)
    total = np.sum(vals, axis=0)
    if include_pad:
        return total / (k[0] * k[1])
    ones = np.ones((1, 1) + x.shape[2:])
    count = np.sum([v for _, _, v in _taps(ones, k, s, p, (1, 1), 0.0, out)], axis=0)
    return total / count


def _run(fn, *args):
    """(llvm results, reference results, llvm executable)."""
    f, r = gc.jit(fn, backend="llvm"), gc.jit(fn, backend="reference")
    got, want = f(*args), r(*args)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    return [g.numpy() for g in got], [w.numpy() for w in want], f.compiled(*args)


def _assert_native(exe):
    libs = [n for n in exe.graph.nodes if conv_codegen.handles(n)]
    assert libs, "no conv/pool node in the graph"
    assert not [n for n in exe.fallback_nodes if conv_codegen.handles(n)]


def _close(got, want, dtype, scale=1.0):
    tol = TOL[str(dtype)] * scale
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def _check(fn, *args, oracle=None, scale=1.0):
    got, want, exe = _run(fn, *args)
    _assert_native(exe)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        if g.dtype == np.bool_:   # seeded data: no value within rounding of the threshold
            np.testing.assert_array_equal(g, w)
        else:
            _close(g, w, g.dtype, scale)
    if oracle is not None:
        _close(got[0], oracle, got[0].dtype, scale)
    return got, exe


# -- conv2d forward -----------------------------------------------------------------------

CONVS = {  # name: (x shape, w shape, attrs)
    "lenet1": ((3, 1, 28, 28), (6, 1, 5, 5), dict(padding=2)),
    "lenet2": ((3, 6, 14, 14), (16, 6, 5, 5), {}),
    "3x3_pad1": ((2, 8, 9, 9), (12, 8, 3, 3), dict(padding=1)),
    "3x3_stride2": ((2, 8, 10, 10), (16, 8, 3, 3), dict(padding=1, stride=2)),
    "1x1": ((2, 16, 7, 7), (8, 16, 1, 1), {}),
    "1x1_stride2": ((2, 16, 7, 7), (8, 16, 1, 1), dict(stride=2)),
    "7x7_stride2_pad3": ((1, 3, 17, 15), (8, 3, 7, 7), dict(stride=2, padding=3)),
    "groups2": ((2, 8, 6, 7), (6, 4, 3, 3), dict(padding=1, groups=2)),
    "groups2_1x1": ((2, 8, 6, 7), (6, 4, 1, 1), dict(groups=2)),
    "depthwise": ((2, 6, 8, 8), (6, 1, 3, 3), dict(padding=1, groups=6)),
    "depthwise_stride2": ((2, 6, 9, 9), (12, 1, 3, 3), dict(padding=1, stride=2, groups=6)),
    "dw_s2_odd_pad0": ((3, 5, 11, 9), (5, 1, 3, 3), dict(stride=2, groups=5)),
    "dw_s2_odd_pad1": ((1, 7, 13, 15), (7, 1, 3, 3), dict(padding=1, stride=2, groups=7)),
    "dw_s2_dilation2": ((3, 4, 12, 11), (4, 1, 3, 3), dict(padding=2, stride=2, dilation=2,
                                                           groups=4)),
    "dw_s2_dil3_pad1": ((1, 3, 14, 13), (3, 1, 3, 3), dict(padding=1, stride=2, dilation=3,
                                                           groups=3)),
    "dw_s3_5x5": ((3, 4, 17, 16), (4, 1, 5, 5), dict(padding=2, stride=3, groups=4)),
    "dw_s21_rect": ((1, 6, 10, 9), (6, 1, 3, 2), dict(padding=(1, 0), stride=(2, 1),
                                                      groups=6)),
    "grouped2_s2": ((3, 6, 9, 10), (9, 2, 3, 3), dict(padding=1, stride=2, groups=3)),
    "rgb_stem_s2": ((3, 3, 15, 14), (8, 3, 3, 3), dict(padding=1, stride=2)),
    "rgb_stem_7x7_s2": ((1, 3, 19, 17), (5, 3, 7, 7), dict(padding=3, stride=2)),
    "dw_1x1_s2": ((3, 4, 7, 8), (4, 1, 1, 1), dict(stride=2, groups=4)),
    "dilation2": ((2, 3, 11, 10), (4, 3, 3, 3), dict(padding=2, dilation=2)),
    "odd_rect": ((3, 5, 7, 5), (7, 5, 3, 2), dict(padding=(1, 0), stride=(2, 1))),
    "pad_exceeds_kernel": ((1, 2, 3, 4), (3, 2, 2, 2), dict(padding=3, stride=(1, 3))),
    "kernel_is_image": ((2, 3, 5, 5), (4, 3, 5, 5), {}),
    "batch1": ((1, 4, 6, 6), (5, 4, 3, 3), dict(padding=1)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CONVS))
def test_conv2d_matches_oracle_and_reference(case, dtype, path, strategy):
    xs, ws, attrs = CONVS[case]
    x, w = _rand(xs, dtype), _rand(ws, dtype, 1)
    _check(lambda x, w: C.conv2d(x, w, **attrs), x, w,
           oracle=conv_oracle(x, w, **attrs), scale=ws[1] * ws[2] * ws[3] / 8 + 1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv2d_batch0(dtype, path):
    x, w = _rand((0, 3, 8, 8), dtype), _rand((4, 3, 3, 3), dtype)
    got, _ = _check(lambda x, w: gc.relu(C.conv2d(x, w, padding=1)), x, w)
    assert got[0].shape == (0, 4, 8, 8)


EPILOGUES = {
    "bias": lambda x, w, b: C.conv2d(x, w, b, padding=1),
    "bias_relu": lambda x, w, b: gc.relu(C.conv2d(x, w, b, padding=1)),
    "tanh_no_bias": lambda x, w, b: gc.tanh(C.conv2d(x, w, stride=2)),
    "relu_and_mask": lambda x, w, b: (lambda y: (gc.relu(y), y > 0))(C.conv2d(x, w, b)),
    "result_and_scaled": lambda x, w, b: (lambda y: (y, y * b.reshape(1, -1, 1, 1) - 1.0))(
        C.conv2d(x, w, padding=1)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(EPILOGUES))
def test_conv2d_epilogues_fuse(case, dtype, path, strategy):
    x, w, b = _rand((3, 4, 9, 7), dtype), _rand((5, 4, 3, 3), dtype, 1), _rand(5, dtype, 2)
    got, exe = _check(EPILOGUES[case], x, w, b, scale=4)
    kernels = [n for n in exe.graph.nodes if conv_codegen.handles(n)]
    assert [n.attrs.get("kind") for n in kernels] == ["library"]  # one fused kernel
    if case == "bias_relu":
        ref = np.maximum(conv_oracle(x, w, padding=1) + b.reshape(1, -1, 1, 1), 0)
        _close(got[0], ref, dtype, 4)
    if case == "relu_and_mask":
        assert got[1].dtype == np.bool_
        np.testing.assert_array_equal(got[1], got[0] > 0)


def test_conv2d_non_contiguous_and_nan(path):
    x = _rand((6, 6, 3, 2)).transpose(3, 2, 0, 1)   # (2, 3, 6, 6), not C-contiguous
    w = _rand((4, 6, 3, 3), seed=1)[:, ::2]          # (4, 3, 3, 3), strided
    x = x.copy() if path == "python" else x
    x[0, 1, 2, 3] = np.nan
    got, _ = _check(lambda x, w: C.conv2d(x, w, padding=1), x, w)
    nan = np.isnan(got[0])
    assert nan[0].any() and not nan[1].any()


def test_conv1d_runs_natively(path):
    x, w = _rand((2, 3, 17)), _rand((4, 3, 5), seed=1)
    _check(lambda x, w: gc.conv1d(x, w, padding=2, stride=2), x, w)


def test_other_dtypes_fall_back_but_run():
    x, w = _rand((1, 2, 5, 5), "float16"), _rand((3, 2, 3, 3), "float16", 1)
    got, want, exe = _run(lambda x, w: C.conv2d(x, w), x, w)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-2, atol=1e-2)
    assert [n.op.name for n in exe.fallback_nodes] == ["conv2d"]


# -- pooling ------------------------------------------------------------------------------

POOLS = {  # name: (x shape, kernel, stride, padding)
    "lenet": ((3, 6, 28, 28), 2, 2, 0),
    "resnet_3s2p1": ((2, 4, 11, 11), 3, 2, 1),
    "overlap_3s1": ((2, 3, 7, 6), 3, 1, 0),
    "rect": ((1, 3, 9, 7), (3, 2), (2, 1), (1, 0)),
    "odd_floor": ((2, 2, 7, 9), 2, 2, 0),
    "window_is_image": ((2, 3, 4, 5), (4, 5), 1, 0),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["max", "avg", "avg_exclude_pad"])
@pytest.mark.parametrize("case", sorted(POOLS))
def test_pools_match_oracle(case, mode, dtype, path):
    shape, k, s, p = POOLS[case]
    x = _rand(shape, dtype)
    if mode == "max":
        fn = lambda x: gc.max_pool2d(x, k, s, p)   # noqa: E731
    else:
        inc = mode == "avg"
        fn = lambda x: gc.avg_pool2d(x, k, s, p, count_include_pad=inc)   # noqa: E731
    got, _ = _check(fn, x, oracle=pool_oracle(x, k, s, p, mode[:3], mode == "avg"))
    if mode == "max":   # a max is one of the inputs: exact
        np.testing.assert_array_equal(got[0], pool_oracle(x, k, s, p, "max").astype(dtype))


def test_max_pool_nan_inf_and_epilogue(path):
    x = _rand((2, 3, 6, 6))
    x[0, 0, 0, 0], x[0, 1, 3, 3], x[1, 2, :2, :2] = np.nan, np.inf, -np.inf
    got, exe = _check(lambda x: gc.relu(gc.max_pool2d(x, 2) + 1.0), x)
    assert np.isnan(got[0][0, 0, 0, 0]) and got[0][0, 1, 1, 1] == np.inf
    assert got[0][1, 2, 0, 0] == 0.0
    assert [n.attrs.get("kind") for n in exe.graph.nodes if conv_codegen.handles(n)] == \
        ["library"]


# -- gradients ----------------------------------------------------------------------------

GRADS = ["lenet1", "lenet2", "3x3_stride2", "1x1", "1x1_stride2", "groups2", "depthwise",
         "dilation2", "odd_rect", "pad_exceeds_kernel", "batch1"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", GRADS)
def test_conv2d_gradient_ops(case, dtype, path, strategy):
    xs, ws, attrs = CONVS[case]
    x, w = _rand(xs, dtype), _rand(ws, dtype, 1)
    full = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **attrs}
    g = _rand(conv_oracle(x[:1], w, **attrs).shape[1:], dtype, 2)[None].repeat(xs[0], 0)
    g += _rand(g.shape, dtype, 3)
    scale = max(ws[0], xs[0] * g.shape[2] * g.shape[3] / 16) + 1
    _check(lambda g, w: C.conv2d_input_grad(g, w, xs[2:], **full), g, w, scale=scale)
    _check(lambda x, g: C.conv2d_weight_grad(x, g, ws[2:], **full), x, g, scale=scale)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(POOLS))
def test_pool_gradient_ops(case, dtype, path):
    shape, k, s, p = POOLS[case]
    x = _rand(shape, dtype)
    x[0, 0, :2, :2] = 1.5   # ties: the first maximum takes the gradient
    g = _rand(pool_oracle(x, k, s, p, "max").shape, dtype, 1)
    _check(lambda x, g: C.max_pool2d_grad(x, g, k, s, p), x, g, scale=4)
    for inc in (True, False):
        _check(lambda g, inc=inc: C.avg_pool2d_grad(g, shape[2:], k, s, p, inc), g, scale=4)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")   # the reference's 0*inf
def test_max_pool_grad_follows_reference_on_nan_and_padding(path):
    x = np.full((1, 1, 3, 3), -np.inf, np.float32)   # every tap is -inf: padding comes first
    x[0, 0, 2, 2] = np.nan
    g = _rand((1, 1, 2, 2), "float32")
    g[0, 0, 1, 0] = np.inf   # the reference gives 0 * inf = nan to non-maximal taps
    _check(lambda x, g: C.max_pool2d_grad(x, g, 3, 2, 1), x, g)
    got, _ = _check(lambda x, g: C.max_pool2d_grad(x, g, 2, 1), x, g)  # first -inf tap wins
    assert got[0][0, 0, 0, 0] == g[0, 0, 0, 0]


def _lenet(x, w1, b1, w2, b2, w3, b3):
    h = gc.max_pool2d(gc.relu(C.conv2d(x, w1, b1, padding=2)), 2)
    h = gc.max_pool2d(gc.relu(C.conv2d(h, w2, b2)), 2)
    return gc.reshape(h, (h.shape[0], -1)) @ w3 + b3


def _lenet_params(dtype):
    shapes = [(6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (400, 10), (10,)]
    return [0.3 * _rand(s, dtype, i + 1) for i, s in enumerate(shapes)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lenet_training_step_runs_natively(dtype, path, strategy):
    """W5's shape at batch 3: the forward, every gradient op and the SGD epilogues."""
    x, params = _rand((3, 1, 28, 28), dtype), _lenet_params(dtype)

    def step(x, *params):
        loss, grads = gc.value_and_grad(lambda *p: gc.sum(gc.tanh(_lenet(x, *p))),
                                        argnums=tuple(range(6)))(*params)
        return (loss,) + tuple(p - 0.1 * g for p, g in zip(params, grads))
    got, exe = _check(step, x, *params, scale=30)
    ops = {conv_codegen._library(n).op.library for n in exe.graph.nodes
           if conv_codegen.handles(n)}
    assert ops >= {"conv2d", "conv2d_input_grad", "conv2d_weight_grad", "max_pool2d",
                   "max_pool2d_grad"}


@pytest.mark.parametrize("xs,ws,attrs,direct", [
    ((2, 1, 28, 28), (6, 1, 5, 5), dict(padding=2), True),         # LeNet: tiny products
    ((2, 64, 8, 8), (64, 64, 3, 3), dict(padding=1), True),
    ((2, 128, 8, 8), (128, 128, 3, 3), dict(padding=1), False),    # long dot products
    ((2, 256, 4, 4), (1024, 256, 1, 1), {}, False),                # wide 1x1
    ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1, stride=2), False),
    ((2, 8, 9, 9), (8, 1, 3, 3), dict(padding=1, stride=2, groups=8), True),   # depthwise
    ((2, 3, 9, 9), (16, 3, 3, 3), dict(padding=1, stride=2), True),            # RGB stem
])
def test_direct_or_gemm_choice(xs, ws, attrs, direct):
    x, w = _rand(xs), _rand(ws, seed=1)
    exe = gc.jit(lambda x, w: C.conv2d(x, w, **attrs), backend="llvm").compiled(x, w)
    (kernel,) = exe.kernels.values()
    assert (kernel.dg is not None) == direct


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("geom", [dict(padding=1), dict(padding=0),
                                  dict(padding=2, dilation=2), dict(padding=1, dilation=(1, 2))])
@pytest.mark.parametrize("item_outputs", [1, 1 << 20])
def test_depthwise_stride2_bn_relu(dtype, batch, geom, item_outputs, path, monkeypatch):
    """MobileNet's strided depthwise layer with its BatchNorm + ReLU epilogue, odd sizes:
    the direct kernel over stride phases, one item per (image, channel) or per image."""
    monkeypatch.setattr(conv_codegen, "ITEM_OUTPUTS", item_outputs)
    c = 5
    x, w = _rand((batch, c, 13, 11), dtype), _rand((c, 1, 3, 3), dtype, 1)
    sc, sh = _rand(c, dtype, 2), _rand(c, dtype, 3)
    attrs = dict(stride=2, groups=c, **geom)

    def fn(x, w, sc, sh):
        return gc.relu(C.conv2d(x, w, **attrs) * sc.reshape(-1, 1, 1) + sh.reshape(-1, 1, 1))
    got, exe = _check(fn, x, w, sc, sh, scale=2)
    (kernel,) = [k for k in exe.kernels.values() if isinstance(k, conv_codegen.ConvKernel)]
    assert kernel.dg is not None and kernel.per_image == (c if item_outputs == 1 else 1)
    ref = np.maximum(conv_oracle(x, w, **attrs) * sc.reshape(-1, 1, 1) +
                     sh.reshape(-1, 1, 1), 0)
    _close(got[0], ref, dtype, 2)


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_threads_share_one_image(stride, monkeypatch):
    """At batch 1 the direct forward convolution splits over blocks of channels across
    threads (the program's split), with the result of one thread."""
    from graphc.backends.llvm import threads
    monkeypatch.setattr(threads, "PARALLEL_MIN", 1)
    monkeypatch.setattr(conv_codegen, "ITEM_OUTPUTS", 64)
    x, w, b = _rand((1, 12, 29, 27)), _rand((12, 1, 3, 3), seed=1), _rand(12, seed=2)

    def fn(x, w, b):
        return gc.relu(C.conv2d(x, w, b, stride=stride, padding=1, groups=12))
    before = gc.get_num_threads()
    try:
        gc.set_num_threads(3)
        got, exe = _check(fn, x, w, b, scale=2)
    finally:
        gc.set_num_threads(before)
    (kernel,) = [k for k in exe.kernels.values() if isinstance(k, conv_codegen.ConvKernel)]
    assert kernel.items > 3 and kernel.advances() is not None
    _close(got[0], np.maximum(conv_oracle(x, w, stride, 1, groups=12) +
                              b.reshape(-1, 1, 1), 0), "float32", 2)


def test_depthwise_epilogue_with_flat_index_runs_whole_images(path, monkeypatch):
    """An epilogue reading the flat index (dropout's mask) keeps whole-image items, so the
    mask matches the reference's bit for bit."""
    monkeypatch.setattr(conv_codegen, "ITEM_OUTPUTS", 1)
    x, w = _rand((3, 4, 11, 9)), _rand((4, 1, 3, 3), seed=1)

    def fn(x, w):
        return gc.dropout(gc.relu(C.conv2d(x, w, stride=2, padding=1, groups=4)), 0.4,
                             training=True)
    outs = []
    for backend in ("llvm", "reference"):
        gc.random.seed(7)
        outs.append(gc.jit(fn, backend=backend)(x, w).numpy())
    exe = gc.jit(fn, backend="llvm").compiled(x, w)
    _assert_native(exe)
    (kernel,) = [k for k in exe.kernels.values() if isinstance(k, conv_codegen.ConvKernel)]
    assert kernel.dg is not None and kernel.per_image == 1
    np.testing.assert_array_equal(outs[0] == 0, outs[1] == 0)
    _close(outs[0], outs[1], "float32", 2)


SPLITS = {
    "direct_bias_relu_mask": (lambda x, w, b: (lambda y: (gc.relu(y), y > 0))(
        C.conv2d(x, w, b, padding=1)), [(5, 3, 7, 6), (4, 3, 3, 3), (4,)]),
    "depthwise_stride2_bn_relu": (lambda x, w, s, t: gc.relu(C.conv2d(
        x, w, stride=2, padding=1, groups=6) * s.reshape(-1, 1, 1) + t.reshape(-1, 1, 1)),
        [(5, 6, 9, 7), (6, 1, 3, 3), (6,), (6,)]),
    "direct_input_grad": (lambda g, w: C.conv2d_input_grad(g, w, (7, 6), padding=1),
                          [(5, 4, 7, 6), (4, 3, 3, 3)]),
    "max_pool_relu": (lambda x: gc.relu(gc.max_pool2d(x, 3, 2, 1)), [(5, 3, 7, 6)]),
    "max_pool_grad": (lambda x, g: C.max_pool2d_grad(x, g, 2, 2, 0),
                      [(5, 3, 8, 6), (5, 3, 4, 3)]),
    "avg_pool_grad": (lambda g: C.avg_pool2d_grad(g, (7, 6), 3, 2, 1, False),
                      [(5, 3, 4, 3)]),
}


@pytest.mark.parametrize("case", sorted(SPLITS))
@pytest.mark.parametrize("item_outputs", [1, 1 << 20])
def test_split_over_images_matches_one_call(case, item_outputs, monkeypatch):
    """The contract a threaded program relies on: the call run in chunks of images (of
    (image, block of groups) items for the direct forward convolution), each with its
    pointers advanced by `advances` per item (its own scratch region; the item index as
    the distance between the last two pointers), gives the one-call result."""
    monkeypatch.setattr(conv_codegen, "ITEM_OUTPUTS", item_outputs)
    fn, shapes = SPLITS[case]
    args = [_rand(s, seed=i) for i, s in enumerate(shapes)]
    exe = gc.jit(fn, backend="llvm").compiled(*args)
    (kernel,) = exe.kernels.values()
    adv = kernel.advances()
    assert adv is not None
    ins = [np.ascontiguousarray(a) for a in args]
    consts = [np.ascontiguousarray(v) if isinstance(v, np.ndarray) else None
              for v in kernel.operands + kernel.sources]
    assert all(c is None for c in consts)
    n = kernel.items
    assert n == kernel.geo.N * kernel.per_image
    if case.startswith("depthwise") and item_outputs == 1:
        assert kernel.indexed and n == 5 * 6
    outs = [[np.empty(s, d) for s, d in zip(kernel.out_shapes, kernel.out_np)]
            for _ in range(2)]
    scratch = [np.zeros(max(1, k) * n, kernel.np_dtype) for k in (kernel.cols, kernel.tmp)]
    base = [a.ctypes.data for a in ins]
    index = [scratch[0].ctypes.data] * 2 if kernel.indexed else []
    split = [(0, 2), (2, 1), (3, n - 3)] if n == 5 else [(0, 7), (7, 1), (8, n - 8)]
    for run, chunks in enumerate([[(0, n)], split]):
        ptrs = base + [o.ctypes.data for o in outs[run]] + \
            [a.ctypes.data for a in scratch] + index
        for start, count in chunks:
            kernel.fn(*[p + start * a for p, a in zip(ptrs, adv)], count)
    for one, split in zip(*outs):
        np.testing.assert_array_equal(one, split)
    want = gc.jit(fn, backend="reference")(*args)
    want = want if isinstance(want, tuple) else (want,)
    for got, w in zip(outs[1], want):
        np.testing.assert_allclose(got, w.numpy(), rtol=1e-5, atol=1e-5)


def test_weight_grad_and_blas_kernels_do_not_split():
    x, g = _rand((3, 4, 6, 6)), _rand((3, 5, 4, 4), seed=1)
    exe = gc.jit(lambda x, g: C.conv2d_weight_grad(x, g, (3, 3)), backend="llvm") \
        .compiled(x, g)
    assert next(iter(exe.kernels.values())).advances() is None
    exe = gc.jit(lambda x, w: C.conv2d(x, w, stride=2), backend="llvm").compiled(x, g[:, :4])
    assert next(iter(exe.kernels.values())).advances() is None


def test_epilogue_output_in_place_over_a_later_outputs_input(path):
    """Regression: the memory plan put the first epilogue output in the buffer of ``y2``,
    which the second output reads at the same index; storing each output as soon as it
    was computed made the second read the first's value (LeNet's training step)."""
    def fn(x, g, m, y):
        y2 = y - gc.max(y, axis=3, keepdims=True)   # a separate kernel; dead after
        d = gc.where(m, C.max_pool2d_grad(x, g, 2), 0.0)
        return d * 3.0, d * y2
    x, g, y = _rand((2, 3, 4, 4)), _rand((2, 3, 2, 2), seed=1), _rand((2, 3, 4, 4), seed=2)
    m = _rand((2, 3, 4, 4), seed=3) > 0
    _, exe = _check(fn, x, g, m, y)
    if path == "program":
        kernel = next(n for n in exe.graph.nodes if conv_codegen.handles(n))
        plan = exe.memory_plan
        assert plan.buffer_of[kernel.outputs[0].name] == plan.buffer_of[kernel.inputs[3].name]


def test_weight_grad_inf_input_only_where_the_reference_has_it(path, strategy):
    """The direct weight gradient also multiplies inputs at grid points that are not
    outputs (by g = 0); an inf there must not turn a finite tap's gradient into nan."""
    x, g = _rand((2, 3, 6, 7)), _rand((2, 4, 4, 5), seed=1)
    x[1, 2, 3, 6] = np.inf   # last column: only the last kernel column's taps read it
    got, _ = _check(lambda x, g: C.conv2d_weight_grad(x, g, (3, 3)), x, g, scale=4)
    assert np.isfinite(got[0][:, :, :, :2]).all() and not np.isfinite(got[0][:, 2, :, 2]).all()


def test_unsupported_midway_leaves_a_valid_module(monkeypatch):
    """A code generator giving up halfway (here: the direct kernel) must leave no
    half-built function behind: the node is interpreted, the other kernels still run."""
    def give_up(*args):
        raise conv_codegen.Unsupported("for the test")
    monkeypatch.setattr(conv_codegen, "_direct", give_up)
    monkeypatch.setattr(conv_codegen, "DIRECT_STRIDED_MAX_CIN", 0)   # stride 2: BLAS
    x, w, b = _rand((2, 3, 8, 8)), _rand((4, 3, 3, 3), seed=1), _rand(4, seed=2)

    def fn(x, w, b):   # the second conv reuses the first's epilogue and intrinsics
        y = gc.relu(C.conv2d(x, w, b, padding=1))
        return gc.max_pool2d(y, 2), gc.relu(C.conv2d(x, w, b, padding=1, stride=2))
    got, want, exe = _run(fn, x, w, b)
    for g, w_ in zip(got, want):
        _close(g, w_, "float32", 4)
    assert [n.attrs.get("kind") for n in exe.fallback_nodes if conv_codegen.handles(n)] == \
        ["library"]
    assert len(exe.kernels) >= 2
