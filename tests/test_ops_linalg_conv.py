"""matmul, convolutions and pools against independent float64 numpy references.

The conv and pool references are direct loops over output positions and kernel taps, written
from the definitions, so they share nothing with the im2col implementation under test.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from opcheck import check_op

import graphc as gc
from graphc.ops import conv as C
from graphc.ops.linalg import matmul

rng = np.random.default_rng(0)


def rand(*shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# -- matmul ------------------------------------------------------------------------------

MATMUL_SHAPES = [
    ((3, 4), (4, 5)), ((1, 4), (4, 1)),                       # matrix
    ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),             # vectors
    ((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)),  # batched
    ((2, 1, 3, 4), (3, 4, 2)), ((1, 3, 4), (2, 4, 5)),        # broadcast batch dims
    ((4,), (2, 4, 3)), ((2, 3, 4), (4,)),                     # vector with a batch
    ((0, 4), (4, 5)), ((3, 0), (0, 5)), ((3, 4), (4, 0)),     # zero-size
    ((0, 3, 4), (4, 2)), ((2, 3, 0), (2, 0, 4)), ((0,), (0,)),
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matmul(sa, sb, dtype):
    check_op(matmul, [rand(*sa, dtype=dtype), rand(*sb, dtype=dtype)], reference=np.matmul,
             grad=dtype == np.float64)


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((4,), (4,)), ((2, 3, 4), (4,))])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_matmul_ints(sa, sb, dtype):
    a, b = (rng.integers(-5, 5, s).astype(dtype) for s in (sa, sb))
    (out,) = check_op(matmul, [a, b], reference=np.matmul)
    assert out.dtype == dtype


def test_matmul_float16_and_mixed_dtypes():
    check_op(matmul, [rand(3, 4, dtype=np.float16), rand(4, 2, dtype=np.float16)],
             reference=np.matmul, grad=False, rtol=1e-2, atol=1e-2)
    out = matmul(rng.integers(0, 3, (2, 3)).astype(np.int32), rand(3, 2, dtype=np.float32))
    assert out.dtype == np.float32


def test_matmul_non_contiguous():
    a = rand(5, 3).T                     # (3, 5), Fortran order
    b = rand(5, 8)[:, ::2]               # (5, 4), strided
    check_op(matmul, [a, b], reference=np.matmul)
    c = np.swapaxes(rand(4, 2, 3), 0, 1)  # (2, 4, 3)
    check_op(matmul, [c, rand(6, 3)[::2].T[None]], reference=np.matmul)


def test_matmul_operator():
    a, b = rand(2, 3), rand(3, 4)
    np.testing.assert_allclose((gc.array(a) @ gc.array(b)).numpy(), a @ b)
    np.testing.assert_allclose((a @ gc.array(b)).numpy(), a @ b)


def test_matmul_is_gemm():
    g = gc.trace(matmul, rand(2, 3, 4), rand(4, 5))
    (node,) = g.nodes
    assert node.op.library == "gemm" and node.op.kind is gc.ops.registry.Kind.LIBRARY


def test_matmul_errors():
    with pytest.raises(gc.ShapeError, match=r"matmul: inner dimensions differ: \(3, 4\) @ "
                                            r"\(5, 6\)"):
        matmul(rand(3, 4), rand(5, 6))
    with pytest.raises(gc.ShapeError, match=r"matmul: inner dimensions differ: \(4,\) @ "
                                            r"\(3,\)"):
        matmul(rand(4), rand(3))
    with pytest.raises(gc.ShapeError, match=r"matmul: batch dimensions do not broadcast: "
                                            r"\(2, 3, 4\) @ \(3, 4, 5\)"):
        matmul(rand(2, 3, 4), rand(3, 4, 5))
    with pytest.raises(gc.ShapeError, match="matmul: operands must be at least 1-D"):
        matmul(rand(3), np.float64(2.0))
    with pytest.raises(gc.DTypeError, match="matmul: bool operands"):
        matmul(np.ones((2, 2), bool), np.ones((2, 2), bool))
    with pytest.raises(gc.ShapeError, match=r"matmul: inner dimensions differ"):
        gc.trace(matmul, rand(3, 4), rand(5, 6))


# -- conv2d references -------------------------------------------------------------------

def _padded(x, padding, fill=0.0):
    ph, pw = pair(padding)
    n, c, h, w = x.shape
    out = np.full((n, c, h + 2 * ph, w + 2 * pw), fill)
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


def _out_hw(hw, kernel, stride, padding, dilation):
    return tuple((hw[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
                 for i in range(2))


def _taps(w_shape, groups, out_hw, stride, dilation):
    """Every (out channel, in channel of x, in channel of w, a, b, p, q, row, col)."""
    o, i, kh, kw = w_shape
    og = o // groups
    for oc, ic, a, b, p, q in itertools.product(range(o), range(i), range(out_hw[0]),
                                                range(out_hw[1]), range(kh), range(kw)):
        yield (oc, (oc // og) * i + ic, ic, a, b, p, q,
               a * stride[0] + p * dilation[0], b * stride[1] + q * dilation[1])


def ref_conv2d(x, w, stride=1, padding=0, dilation=1, groups=1):
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    xp = _padded(x, padding)
    ho, wo = _out_hw(x.shape[2:], w.shape[2:], stride, padding, dilation)
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for oc, xc, ic, a, b, p, q, r, s in _taps(w.shape, groups, (ho, wo), stride, dilation):
        out[:, oc, a, b] += w[oc, ic, p, q] * xp[:, xc, r, s]
    return out


def ref_conv2d_input_grad(g, w, input_size, stride=1, padding=0, dilation=1, groups=1):
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    (h, wd), (ph, pw) = input_size, padding
    dx = np.zeros((g.shape[0], w.shape[1] * groups, h + 2 * ph, wd + 2 * pw))
    for oc, xc, ic, a, b, p, q, r, s in _taps(w.shape, groups, g.shape[2:], stride, dilation):
        dx[:, xc, r, s] += w[oc, ic, p, q] * g[:, oc, a, b]
    return dx[:, :, ph:ph + h, pw:pw + wd]


def ref_conv2d_weight_grad(x, g, kernel_size, stride=1, padding=0, dilation=1, groups=1):
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    xp = _padded(x, padding)
    w_shape = (g.shape[1], x.shape[1] // groups, *kernel_size)
    dw = np.zeros(w_shape)
    for oc, xc, ic, a, b, p, q, r, s in _taps(w_shape, groups, g.shape[2:], stride, dilation):
        dw[oc, ic, p, q] += np.sum(g[:, oc, a, b] * xp[:, xc, r, s])
    return dw


CONV_CASES = list(itertools.product([1, 2], [0, 1, (1, 2)], [1, 2], [1, 2]))


@pytest.mark.parametrize("stride,padding,dilation,groups", CONV_CASES)
def test_conv2d(stride, padding, dilation, groups):
    x, w = rand(2, 4, 6, 5), rand(4, 4 // groups, 3, 2)
    attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    check_op(lambda x, w: C.conv2d(x, w, **attrs), [x, w],
             reference=lambda x, w: ref_conv2d(x, w, **attrs))


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((2, 3, 5, 5), (2, 3, 1, 1), {}),                          # 1x1
    ((2, 3, 7, 6), (4, 3, 3, 3), {"padding": 1}),               # same padding
    ((1, 4, 7, 7), (4, 1, 3, 3), {"groups": 4, "stride": 2}),   # depthwise
    ((2, 3, 5, 7), (2, 3, 2, 3), {"stride": (2, 1), "dilation": (1, 2)}),
    ((2, 3, 3, 3), (2, 3, 3, 3), {}),                          # 1x1 output
    ((0, 3, 5, 5), (2, 3, 3, 3), {}),                          # empty batch
])
def test_conv2d_shapes(x_shape, w_shape, attrs):
    check_op(lambda x, w: C.conv2d(x, w, **attrs), [rand(*x_shape), rand(*w_shape)],
             reference=lambda x, w: ref_conv2d(x, w, **attrs))


def test_conv2d_bias_float32_and_non_contiguous():
    x = np.swapaxes(rand(2, 3, 6, 5, dtype=np.float32), 2, 3)  # (2, 3, 5, 6), a view
    w, b = rand(4, 3, 3, 3, dtype=np.float32)[:, :, ::-1], rand(4, dtype=np.float32)
    fn = lambda x, w, b: C.conv2d(x, w, b, padding=1)
    ref = lambda x, w, b: ref_conv2d(x, w, padding=1) + b[None, :, None, None]
    (out,) = check_op(fn, [x, w, b], reference=ref, rtol=1e-5, atol=1e-5)
    assert out.dtype == np.float32
    check_op(fn, [rand(1, 3, 4, 4), rand(2, 3, 3, 3), rand(2)], reference=ref)


def test_conv2d_int_inputs_compute_in_float32():
    x, w = rng.integers(-3, 3, (1, 2, 4, 4)), rng.integers(-3, 3, (3, 2, 2, 2))
    out = C.conv2d(x, w)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.numpy(), ref_conv2d(x, w))


def test_conv2d_graph_facts():
    g = gc.trace(lambda x, w, b: C.conv2d(x, w, b, stride=2), rand(1, 3, 5, 5),
                 rand(2, 3, 3, 3), rand(2))
    conv = g.nodes[0]
    assert conv.op.name == "conv2d" and conv.op.library == "conv2d"
    assert conv.attrs == {"stride": (2, 2), "padding": (0, 0), "dilation": (1, 1), "groups": 1}
    assert g.nodes[-1].op.name == "add"  # the bias is an epilogue, not part of the call


@pytest.mark.parametrize("stride,padding,dilation,groups", [
    (1, 0, 1, 1), (2, 1, 1, 2), (2, (1, 2), 2, 1), (1, 1, 2, 2), (3, 0, 1, 1)])
def test_conv2d_grad_ops(stride, padding, dilation, groups):
    """The gradient ops on their own (their VJPs are checked by FD too)."""
    attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    x, w = rand(2, 4, 7, 6), rand(4, 4 // groups, 2, 3)
    ho_wo = _out_hw((7, 6), (2, 3), pair(stride), pair(padding), pair(dilation))
    g = rand(2, 4, *ho_wo)
    check_op(lambda g, w: C.conv2d_input_grad(g, w, (7, 6), **attrs), [g, w],
             reference=lambda g, w: ref_conv2d_input_grad(g, w, (7, 6), **attrs))
    check_op(lambda x, g: C.conv2d_weight_grad(x, g, (2, 3), **attrs), [x, g],
             reference=lambda x, g: ref_conv2d_weight_grad(x, g, (2, 3), **attrs))


def test_conv2d_errors():
    with pytest.raises(gc.ShapeError, match=r"conv2d: input has 3 channels but weight expects "
                                            r"4 \(groups=1\): x \(2, 3, 8, 8\), weight "
                                            r"\(5, 4, 3, 3\)"):
        C.conv2d(rand(2, 3, 8, 8), rand(5, 4, 3, 3))
    with pytest.raises(gc.ShapeError, match=r"conv2d: input has 4 channels but weight expects "
                                            r"6 \(groups=2\)"):
        C.conv2d(rand(1, 4, 5, 5), rand(4, 3, 3, 3), groups=2)
    with pytest.raises(gc.ShapeError, match="conv2d: weight has 5 output channels, which "
                                            "groups=2 does not divide"):
        C.conv2d(rand(1, 4, 5, 5), rand(5, 2, 3, 3), groups=2)
    with pytest.raises(gc.ShapeError, match=r"conv2d: the output would be empty.*kernel "
                                            r"\(5, 5\) with dilation \(1, 1\).*padding"):
        C.conv2d(rand(1, 1, 4, 4), rand(1, 1, 5, 5))
    with pytest.raises(gc.ShapeError, match=r"conv2d: the output would be empty.*dilation "
                                            r"\(3, 3\), which spans 7x7"):
        C.conv2d(rand(1, 1, 6, 6), rand(1, 1, 3, 3), dilation=3, padding=0)
    with pytest.raises(gc.ShapeError, match=r"conv2d: x must be 4-D \(NCHW\), got shape "
                                            r"\(3, 8, 8\)"):
        C.conv2d(rand(3, 8, 8), rand(5, 3, 3, 3))
    with pytest.raises(gc.ShapeError, match="conv2d: stride must be at least 1"):
        C.conv2d(rand(1, 1, 4, 4), rand(1, 1, 2, 2), stride=0)
    with pytest.raises(gc.ShapeError, match="conv2d: padding must be an int or a pair"):
        C.conv2d(rand(1, 1, 4, 4), rand(1, 1, 2, 2), padding=(1, 1, 1))
    with pytest.raises(gc.ShapeError, match="conv2d: input has 3 channels"):
        gc.trace(lambda x, w: C.conv2d(x, w), rand(2, 3, 8, 8), rand(5, 4, 3, 3))


# -- conv1d ------------------------------------------------------------------------------

def ref_conv1d(x, w, stride=1, padding=0, dilation=1, groups=1):
    return ref_conv2d(x[:, :, None], w[:, :, None], (1, stride), (0, padding),
                      (1, dilation), groups)[:, :, 0]


@pytest.mark.parametrize("stride,padding,dilation,groups",
                         [(1, 0, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1), (2, 0, 2, 2)])
def test_conv1d(stride, padding, dilation, groups):
    attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    x, w, b = rand(2, 4, 9), rand(6, 4 // groups, 3), rand(6)
    check_op(lambda x, w: C.conv1d(x, w, **attrs), [x, w],
             reference=lambda x, w: ref_conv1d(x, w, **attrs))
    check_op(lambda x, w, b: C.conv1d(x, w, b, **attrs), [x, w, b],
             reference=lambda x, w, b: ref_conv1d(x, w, **attrs) + b[None, :, None])


def test_conv1d_errors():
    with pytest.raises(gc.ShapeError, match=r"conv1d: x must be 3-D \(NCW\), got shape "
                                            r"\(2, 3, 4, 4\)"):
        C.conv1d(rand(2, 3, 4, 4), rand(2, 3, 3))
    with pytest.raises(gc.ShapeError, match="conv1d: stride must be an int"):
        C.conv1d(rand(2, 3, 8), rand(2, 3, 3), stride=(1, 2))
    with pytest.raises(gc.ShapeError, match="input has 3 channels but weight expects 2"):
        C.conv1d(rand(2, 3, 8), rand(2, 2, 3))


# -- pools -------------------------------------------------------------------------------

def _windows_ref(x, kernel, stride, padding, fill):
    """Yield (a, b, window view of the padded input, number of non-pad elements)."""
    kernel, padding = pair(kernel), pair(padding)
    stride = kernel if stride is None else pair(stride)
    xp = _padded(x, padding, fill)
    ho, wo = _out_hw(x.shape[2:], kernel, stride, padding, (1, 1))
    for a, b in itertools.product(range(ho), range(wo)):
        r, s = a * stride[0], b * stride[1]
        rows = min(r + kernel[0], padding[0] + x.shape[2]) - max(r, padding[0])
        cols = min(s + kernel[1], padding[1] + x.shape[3]) - max(s, padding[1])
        yield a, b, (r, s), xp[:, :, r:r + kernel[0], s:s + kernel[1]], rows * cols


def _pool_ref(x, kernel, stride, padding, fn, fill):
    results = list(_windows_ref(x, kernel, stride, padding, fill))
    ho, wo = results[-1][0] + 1, results[-1][1] + 1
    out = np.zeros(x.shape[:2] + (ho, wo))
    for a, b, _, win, count in results:
        out[:, :, a, b] = fn(win, count)
    return out


def ref_max_pool(x, kernel, stride=None, padding=0):
    return _pool_ref(x, kernel, stride, padding, lambda win, n: win.max(axis=(2, 3)), -np.inf)


def ref_avg_pool(x, kernel, stride=None, padding=0, count_include_pad=True):
    k = np.prod(pair(kernel))
    return _pool_ref(x, kernel, stride, padding,
                     lambda win, n: win.sum(axis=(2, 3)) / (k if count_include_pad else n), 0.0)


def ref_max_pool_grad(x, g, kernel, stride=None, padding=0):
    ph, pw = pair(padding)
    kh, kw = pair(kernel)
    dx = np.zeros(_padded(x, padding).shape)
    for a, b, (r, s), win, _ in _windows_ref(x, kernel, stride, padding, -np.inf):
        for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
            i, j = divmod(int(np.argmax(win[n, c])), kw)   # first max in row-major order
            dx[n, c, r + i, s + j] += g[n, c, a, b]
    return dx[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]


POOL_CASES = [(2, None, 0), (3, 1, 1), (3, 2, 1), ((2, 3), (1, 2), (1, 1)), (2, 1, 0),
              (3, None, 1)]


@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
def test_max_pool2d(kernel, stride, padding):
    attrs = dict(kernel_size=kernel, stride=stride, padding=padding)
    check_op(lambda x: C.max_pool2d(x, **attrs), [rand(2, 3, 5, 6)],
             reference=lambda x: ref_max_pool(x, kernel, stride, padding))


@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d(kernel, stride, padding, count_include_pad):
    attrs = dict(kernel_size=kernel, stride=stride, padding=padding,
                 count_include_pad=count_include_pad)
    check_op(lambda x: C.avg_pool2d(x, **attrs), [rand(2, 3, 5, 6)],
             reference=lambda x: ref_avg_pool(x, kernel, stride, padding, count_include_pad))


def test_pools_float32_non_contiguous():
    x = rand(2, 3, 8, 6, dtype=np.float32)[:, :, ::2]  # (2, 3, 4, 6), strided
    (out,) = check_op(lambda x: C.max_pool2d(x, 2, 1, 1), [x], grad=False,
                      reference=lambda x: ref_max_pool(x, 2, 1, 1))
    assert out.dtype == np.float32
    check_op(lambda x: C.avg_pool2d(x, 3, 2, 1, count_include_pad=False), [x], grad=False,
             reference=lambda x: ref_avg_pool(x, 3, 2, 1, False))


@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
def test_max_pool2d_grad(kernel, stride, padding):
    x = rand(2, 3, 5, 6)
    out_shape = ref_max_pool(x, kernel, stride, padding).shape
    check_op(lambda x, g: C.max_pool2d_grad(x, g, kernel, stride, padding),
             [x, rand(*out_shape)], grad=False,
             reference=lambda x, g: ref_max_pool_grad(x, g, kernel, stride, padding))


def test_max_pool2d_grad_ties_go_to_first_max():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, 2:] = 5.0  # right window: ties in its bottom row
    dx = C.max_pool2d_grad(x, np.ones((1, 1, 1, 2)), 2).numpy()
    np.testing.assert_array_equal(dx[0, 0], [[1, 0, 0, 0], [0, 0, 1, 0]])


@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_grad(kernel, stride, padding, count_include_pad):
    """The transpose of avg_pool2d: <avg_pool2d_grad(g), x> == <g, avg_pool2d(x)>."""
    x = rand(2, 3, 5, 6)
    g = rand(*ref_avg_pool(x, kernel, stride, padding).shape)
    attrs = dict(kernel_size=kernel, stride=stride, padding=padding,
                 count_include_pad=count_include_pad)
    dx = C.avg_pool2d_grad(g, (5, 6), **attrs).numpy()
    want = np.sum(g * ref_avg_pool(x, kernel, stride, padding, count_include_pad))
    np.testing.assert_allclose(np.sum(dx * x), want, rtol=1e-12)
    check_op(lambda g: C.avg_pool2d_grad(g, (5, 6), **attrs), [g])


def test_global_pools():
    x = rand(2, 3, 4, 5)
    check_op(C.global_avg_pool2d, [x], reference=lambda x: x.mean(axis=(2, 3), keepdims=True))
    check_op(C.global_max_pool2d, [x], reference=lambda x: x.max(axis=(2, 3), keepdims=True))
    assert C.global_avg_pool2d(rand(2, 3, 1, 1)).shape == (2, 3, 1, 1)


def test_pool_errors():
    with pytest.raises(gc.ShapeError, match=r"max_pool2d: padding \(2, 2\) must be at most "
                                            r"half of kernel_size \(3, 3\)"):
        C.max_pool2d(rand(1, 1, 6, 6), 3, padding=2)
    with pytest.raises(gc.ShapeError, match=r"avg_pool2d: the output would be empty.*kernel "
                                            r"\(4, 4\)"):
        C.avg_pool2d(rand(1, 1, 3, 3), 4)
    with pytest.raises(gc.ShapeError, match=r"max_pool2d: x must be 4-D"):
        C.max_pool2d(rand(3, 6, 6), 2)
    with pytest.raises(gc.ShapeError, match="avg_pool2d: kernel_size must be at least 1"):
        C.avg_pool2d(rand(1, 1, 3, 3), 0)
