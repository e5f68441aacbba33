"""graphc.nn layers against float64 numpy references written here (from the layers'
own parameters), Gluon's parameter layouts, deferred shapes, gradients of every layer vs
finite differences, BatchNorm/Dropout modes, the Gluon crash-course LeNet, and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphc as gc
from graphc import autograd, nn

RNG = np.random.default_rng(0)


def rand(*shape, low=-1.0, high=1.0):
    return RNG.uniform(low, high, shape)


def run(layer, x, train=False):
    with autograd.train_mode() if train else autograd.predict_mode():
        return layer(gc.array(x)).numpy()


def build(layer, x, **values):
    """Initialize ``layer``, complete deferred shapes with one forward on ``x``, then set
    parameters by name to ``values`` (float64 arrays, cast to each parameter's dtype)."""
    layer.initialize()
    run(layer, x)
    params = layer.collect_params()
    for name, v in values.items():
        params[name].set_data(np.asarray(v, params[name].dtype))
    return layer


# -- numpy references ---------------------------------------------------------------------

def np_conv2d(x, w, b=None, stride=(1, 1), pad=(0, 0), dil=(1, 1), groups=1):
    """Direct cross-correlation: one output position at a time, per group."""
    n, c, h, wd = x.shape
    o, i, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    ho = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out, og = np.zeros((n, o, ho, wo)), o // groups
    for g in range(groups):
        xs, ws = xp[:, g * i:(g + 1) * i], w[g * og:(g + 1) * og]
        for r in range(ho):
            for s in range(wo):
                r0, s0 = r * stride[0], s * stride[1]
                patch = xs[:, :, r0:r0 + dil[0] * (kh - 1) + 1:dil[0],
                           s0:s0 + dil[1] * (kw - 1) + 1:dil[1]]
                out[:, g * og:(g + 1) * og, r, s] = np.einsum("nijk,oijk->no", patch, ws)
    return out if b is None else out + b.reshape(1, -1, 1, 1)


def np_conv1d(x, w, b=None, stride=1, pad=0, dil=1, groups=1):
    n, c, wd = x.shape
    o, i, k = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
    wo = (wd + 2 * pad - dil * (k - 1) - 1) // stride + 1
    out, og = np.zeros((n, o, wo)), o // groups
    for g in range(groups):
        for s in range(wo):
            patch = xp[:, g * i:(g + 1) * i, s * stride:s * stride + dil * (k - 1) + 1:dil]
            out[:, g * og:(g + 1) * og, s] = np.einsum("nik,oik->no", patch,
                                                       w[g * og:(g + 1) * og])
    return out if b is None else out + b.reshape(1, -1, 1)


def np_pool(x, size, stride, pad, kind, count_include_pad=True):
    n, c, h, w = x.shape
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=fill)
    valid = np.pad(np.ones((h, w)), ((pad[0], pad[0]), (pad[1], pad[1])))
    ho = (h + 2 * pad[0] - size[0]) // stride[0] + 1
    wo = (w + 2 * pad[1] - size[1]) // stride[1] + 1
    out = np.zeros((n, c, ho, wo))
    for r in range(ho):
        for s in range(wo):
            win = (slice(r * stride[0], r * stride[0] + size[0]),
                   slice(s * stride[1], s * stride[1] + size[1]))
            patch = xp[:, :, win[0], win[1]]
            if kind == "max":
                out[:, :, r, s] = patch.max(axis=(2, 3))
            else:
                count = size[0] * size[1] if count_include_pad else valid[win].sum()
                out[:, :, r, s] = patch.sum(axis=(2, 3)) / count
    return out


def _erf(x):
    return np.vectorize(math.erf)(x)


NP_ACT = {
    None: lambda x: x, "relu": lambda x: np.maximum(x, 0),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh, "softrelu": lambda x: np.log1p(np.exp(x)),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))),
}


def per_channel(t, axis, ndim):
    shape = [1] * ndim
    shape[axis] = -1
    return t.reshape(shape)


# -- gradients vs finite differences ----------------------------------------------------------

def check_grads(layer, x, train=False, x_grad=True, eps=1e-6, rtol=1e-6, atol=1e-8):
    """Eager autograd gradients of sum(layer(x) * c), for a random cotangent c, w.r.t. the
    input and every parameter with a gradient, against central finite differences (the
    layer must be float64)."""
    x = np.asarray(x)
    c = RNG.standard_normal(run(layer, x, train).shape)
    params = {k: p for k, p in layer.collect_params().items() if p.grad_req != "null"}
    xt = gc.array(x)
    if x_grad:
        xt.attach_grad()
    with autograd.record(train_mode=train):
        loss = gc.sum(layer(xt) * gc.array(c))
    loss.backward()

    state = {"x": x}

    def fd(get, put):
        base = get().copy()
        g = np.zeros_like(base)
        for i in range(base.size):
            for sign in (1, -1):
                v = base.copy()
                v.reshape(-1)[i] += sign * eps
                put(v)
                g.reshape(-1)[i] += sign * np.sum(run(layer, state["x"], train) * c) / (2 * eps)
        put(base)
        return g

    if x_grad:
        want = fd(lambda: x, lambda v: state.update(x=v))
        np.testing.assert_allclose(xt.grad.numpy(), want, rtol=rtol, atol=atol, err_msg="x")
    for name, p in params.items():
        want = fd(lambda p=p: p.data().numpy(), lambda v, p=p: p.set_data(v))
        np.testing.assert_allclose(p.grad().numpy(), want, rtol=rtol, atol=atol, err_msg=name)
    return params


# -- Dense --------------------------------------------------------------------------------

@pytest.mark.parametrize("act", [None, "relu", "tanh"])
@pytest.mark.parametrize("shape,flatten", [((4, 5), True), ((3, 2, 2, 2), True),
                                           ((2, 3, 5), False), ((5,), False)])
def test_dense_forward(act, shape, flatten):
    x = rand(*shape)
    feat = int(np.prod(shape[1:])) if flatten else shape[-1]
    w, b = rand(3, feat), rand(3)
    layer = build(nn.Dense(3, activation=act, flatten=flatten, dtype="float64"), x,
                  weight=w, bias=b)
    assert layer.weight.shape == (3, feat) and layer.bias.shape == (3,)
    xf = x.reshape(shape[0], -1) if flatten else x
    np.testing.assert_allclose(run(layer, x), NP_ACT[act](xf @ w.T + b), rtol=1e-12)


def test_dense_float32_no_bias():
    x, w = rand(4, 6).astype(np.float32), rand(2, 6)
    layer = build(nn.Dense(2, use_bias=False), x, weight=w)
    assert layer.bias is None and list(layer.collect_params()) == ["weight"]
    out = layer(gc.array(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), x.astype(np.float64) @ w.astype(np.float32).T,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("flatten,shape", [(True, (2, 2, 3)), (False, (2, 2, 3))])
def test_dense_grad(flatten, shape):
    layer = build(nn.Dense(3, activation="tanh", flatten=flatten, dtype="float64"),
                  rand(*shape))
    assert set(check_grads(layer, rand(*shape))) == {"weight", "bias"}


def test_dense_deferred_init_and_repr():
    layer = nn.Dense(4, activation="relu")
    assert repr(layer) == "Dense(None -> 4, relu)"
    layer.initialize()
    assert layer.weight.shape == (4, 0)
    with pytest.raises(gc.GraphcError, match="forward"):
        layer.weight.data()
    out = layer(gc.array(rand(2, 3, 5).astype(np.float32)))
    assert out.shape == (2, 4) and layer.weight.shape == (4, 15)
    assert layer.weight.data().shape == (4, 15)
    assert repr(layer) == "Dense(15 -> 4, relu)"
    assert repr(nn.Dense(256, in_units=784)) == "Dense(784 -> 256, linear)"


def test_weight_tying_by_parameter_assignment():
    """A decoder Dense(vocab, in_units=dim) sharing an Embedding's (vocab, dim) weight."""
    emb, dec = nn.Embedding(7, 4, dtype="float64"), nn.Dense(7, flatten=False, in_units=4,
                                                             dtype="float64")
    dec.weight = emb.weight
    net = nn.HybridSequential()
    net.add(emb, dec)
    assert list(net.collect_params()) == ["0.weight", "1.bias"]
    idx = np.array([[1, 6, 0], [3, 3, 2]])
    net.initialize()
    e, b = rand(7, 4), rand(7)
    emb.weight.set_data(e)
    dec.bias.set_data(b)
    np.testing.assert_allclose(run(net, idx), e[idx] @ e.T + b, rtol=1e-12)
    params = check_grads(net, idx, x_grad=False)  # both uses add to the shared gradient
    assert list(params) == ["0.weight", "1.bias"]
    c = gc.array(RNG.standard_normal((2, 3, 7)))

    def grads():
        with autograd.record():
            loss = gc.sum(net(gc.array(idx)) * c)
        loss.backward()
        return emb.weight.grad().numpy().copy(), dec.bias.grad().numpy().copy()

    want = grads()
    net.hybridize()
    for got, w in zip(grads(), want):
        np.testing.assert_allclose(got, w, rtol=1e-12)
    np.testing.assert_allclose(run(net, idx), e[idx] @ e.T + b, rtol=1e-12)


def test_weight_tying_through_params():
    emb = nn.Embedding(7, 4)
    dec = nn.Dense(7, in_units=4, params=emb.params)
    assert dec.weight is emb.weight


# -- Conv1D / Conv2D ----------------------------------------------------------------------

CONV2D_CASES = [
    dict(),
    dict(strides=2, padding=1),
    dict(strides=(1, 2), padding=(2, 0), dilation=(2, 1)),
    dict(groups=2, padding=1),
]


@pytest.mark.parametrize("kw", CONV2D_CASES)
def test_conv2d_forward(kw):
    groups = kw.get("groups", 1)
    x = rand(2, 4, 7, 6)
    w, b = rand(6, 4 // groups, 3, 2), rand(6)
    layer = build(nn.Conv2D(6, (3, 2), dtype="float64", **kw), x, weight=w, bias=b)
    assert layer.weight.shape == (6, 4 // groups, 3, 2)
    pair = lambda v, d: (v, v) if isinstance(v, int) else v
    ref = np_conv2d(x, w, b, pair(kw.get("strides", 1), 1), pair(kw.get("padding", 0), 0),
                    pair(kw.get("dilation", 1), 1), groups)
    np.testing.assert_allclose(run(layer, x), ref, rtol=1e-12, atol=1e-12)


def test_conv2d_activation_float32():
    x, w, b = rand(1, 2, 5, 5).astype(np.float32), rand(3, 2, 3, 3), rand(3)
    layer = build(nn.Conv2D(3, 3, activation="relu", in_channels=2), x, weight=w, bias=b)
    ref = np.maximum(np_conv2d(x.astype(np.float64), w.astype(np.float32), b.astype(
        np.float32)), 0)
    np.testing.assert_allclose(run(layer, x), ref, rtol=1e-5, atol=1e-6)


def test_conv2d_grad():
    layer = build(nn.Conv2D(3, 2, strides=(2, 1), padding=1, groups=1, activation="tanh",
                            dtype="float64"), rand(2, 2, 4, 4))
    assert set(check_grads(layer, rand(2, 2, 4, 4))) == {"weight", "bias"}


def test_conv2d_grouped_grad_no_bias():
    layer = build(nn.Conv2D(4, 2, groups=2, use_bias=False, dilation=2, dtype="float64"),
                  rand(1, 2, 5, 5))
    assert layer.weight.shape == (4, 1, 2, 2)
    assert set(check_grads(layer, rand(1, 2, 5, 5))) == {"weight"}


def test_conv2d_deferred_and_repr():
    layer = nn.Conv2D(6, kernel_size=5, activation="relu")
    assert repr(layer) == "Conv2D(None -> 6, kernel_size=(5, 5), stride=(1, 1), relu)"
    layer.initialize()
    assert layer.weight.shape == (6, 0, 5, 5)
    assert layer(gc.ones((1, 3, 8, 8))).shape == (1, 6, 4, 4)
    assert layer.weight.shape == (6, 3, 5, 5) and layer.bias.shape == (6,)
    assert repr(layer) == "Conv2D(3 -> 6, kernel_size=(5, 5), stride=(1, 1), relu)"
    g = nn.Conv2D(4, 3, strides=2, padding=1, groups=2, use_bias=False, in_channels=6)
    assert g.weight.shape == (4, 3, 3, 3)
    assert repr(g) == ("Conv2D(6 -> 4, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
                       "groups=2, bias=False)")


@pytest.mark.parametrize("kw", [dict(), dict(strides=2, padding=1, dilation=2),
                                dict(groups=3)])
def test_conv1d_forward_and_grad(kw):
    groups = kw.get("groups", 1)
    x, w, b = rand(2, 3, 9), rand(6, 3 // groups, 3), rand(6)
    layer = build(nn.Conv1D(6, 3, dtype="float64", **kw), x, weight=w, bias=b)
    assert layer.weight.shape == (6, 3 // groups, 3)
    ref = np_conv1d(x, w, b, kw.get("strides", 1), kw.get("padding", 0),
                    kw.get("dilation", 1), groups)
    np.testing.assert_allclose(run(layer, x), ref, rtol=1e-12, atol=1e-12)
    check_grads(layer, rand(1, 3, 7))


# -- pooling ------------------------------------------------------------------------------

POOL_CASES = [dict(), dict(pool_size=3, strides=1, padding=1), dict(pool_size=(2, 3),
                                                                  strides=(1, 2))]


@pytest.mark.parametrize("kw", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg", "avg_exclude_pad"])
def test_pool_forward_and_grad(kw, kind):
    size = kw.get("pool_size", (2, 2))
    size = (size, size) if isinstance(size, int) else size
    stride = kw.get("strides", size)
    stride = (stride, stride) if isinstance(stride, int) else stride
    pad = kw.get("padding", 0)
    pad = (pad, pad)
    x = rand(2, 2, 5, 6)
    if kind == "max":
        layer = nn.MaxPool2D(**kw)
    else:
        layer = nn.AvgPool2D(**kw, count_include_pad=kind == "avg")
    ref = np_pool(x, size, stride, pad, kind[:3], count_include_pad=kind == "avg")
    np.testing.assert_allclose(run(layer, x), ref, rtol=1e-12)
    check_grads(layer, rand(1, 2, 5, 6))


@pytest.mark.parametrize("cls,ref", [(nn.GlobalAvgPool2D, np.mean), (nn.GlobalMaxPool2D, np.max)])
def test_global_pool(cls, ref):
    x = rand(2, 3, 4, 5)
    np.testing.assert_allclose(run(cls(), x), ref(x, axis=(2, 3), keepdims=True), rtol=1e-12)
    check_grads(cls(), rand(2, 2, 3, 3))


def test_pool_repr():
    assert repr(nn.MaxPool2D(2, 2)) == "MaxPool2D(size=(2, 2), stride=(2, 2), padding=(0, 0))"
    assert repr(nn.AvgPool2D(3, 1, 1)) == "AvgPool2D(size=(3, 3), stride=(1, 1), padding=(1, 1))"


# -- BatchNorm ----------------------------------------------------------------------------

def np_bn(x, gamma, beta, mean, var, axis, eps=1e-5):
    r = lambda t: per_channel(t, axis, x.ndim)
    return (x - r(mean)) / np.sqrt(r(var) + eps) * r(gamma) + r(beta)


def _stats(x, axis):
    axes = tuple(i for i in range(x.ndim) if i != axis)
    return x.mean(axis=axes), x.var(axis=axes)


@pytest.mark.parametrize("shape,axis", [((4, 3, 2, 2), 1), ((5, 3), 1), ((2, 3, 4), -1)])
def test_batchnorm_train_predict_and_running_stats(shape, axis):
    x = rand(*shape, low=-2, high=3)
    ax = axis % len(shape)
    c = shape[ax]
    g, b, m, v = rand(c, low=0.5, high=2), rand(c), rand(c), rand(c, low=0.5, high=2)
    bn = build(nn.BatchNorm(axis=axis, dtype="float64"), x, gamma=g, beta=b, running_mean=m,
               running_var=v)
    assert [(k, p.shape) for k, p in bn.collect_params().items()] == [
        ("gamma", (c,)), ("beta", (c,)), ("running_mean", (c,)), ("running_var", (c,))]
    assert [p.grad_req for p in bn.collect_params().values()] == ["write", "write", "null",
                                                                  "null"]
    # predict: running stats, nothing updated
    np.testing.assert_allclose(run(bn, x), np_bn(x, g, b, m, v, ax), rtol=1e-12)
    np.testing.assert_array_equal(bn.running_mean.data().numpy(), m)
    # training (under record, as Gluon): batch stats, running stats folded with momentum 0.9
    bm, bv = _stats(x, ax)
    xt = gc.array(x)
    with autograd.record():
        y = bn(xt)
    np.testing.assert_allclose(y.numpy(), np_bn(x, g, b, bm, bv, ax), rtol=1e-12, atol=1e-12)
    m1, v1 = 0.9 * m + 0.1 * bm, 0.9 * v + 0.1 * bv
    np.testing.assert_allclose(bn.running_mean.data().numpy(), m1, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.data().numpy(), v1, rtol=1e-12)
    # train_mode without recording updates too; predict then uses the new stats
    x2 = rand(*shape)
    run(bn, x2, train=True)
    bm2, bv2 = _stats(x2, ax)
    m2, v2 = 0.9 * m1 + 0.1 * bm2, 0.9 * v1 + 0.1 * bv2
    np.testing.assert_allclose(bn.running_var.data().numpy(), v2, rtol=1e-12)
    np.testing.assert_allclose(run(bn, x), np_bn(x, g, b, m2, v2, ax), rtol=1e-12)


def test_batchnorm_momentum_global_stats_center_scale():
    x = rand(6, 2)
    bn = build(nn.BatchNorm(momentum=0.5, in_channels=2, dtype="float64"), x)
    run(bn, x, train=True)
    bm, bv = _stats(x, 1)
    np.testing.assert_allclose(bn.running_mean.data().numpy(), 0.5 * bm, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.data().numpy(), 0.5 + 0.5 * bv, rtol=1e-12)

    fixed = build(nn.BatchNorm(use_global_stats=True, dtype="float64"), x,
                  running_mean=[0.5, -1.0], running_var=[2.0, 0.5])
    want = np_bn(x, np.ones(2), np.zeros(2), np.array([0.5, -1.0]), np.array([2.0, 0.5]), 1)
    np.testing.assert_allclose(run(fixed, x, train=True), want, rtol=1e-12)
    np.testing.assert_array_equal(fixed.running_mean.data().numpy(), [0.5, -1.0])

    plain = build(nn.BatchNorm(center=False, scale=False, dtype="float64"), x,
                  gamma=[3.0, 3.0], beta=[1.0, 1.0])  # ignored: fixed at 1 and 0
    assert [p.grad_req for p in plain.collect_params().values()] == ["null"] * 4
    np.testing.assert_allclose(run(plain, x, train=True),
                               np_bn(x, np.ones(2), np.zeros(2), bm, bv, 1), rtol=1e-12)


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_grad(train):
    x = rand(3, 2, 2, 2)
    bn = build(nn.BatchNorm(dtype="float64"), x, gamma=rand(2, low=0.5, high=2), beta=rand(2),
               running_mean=rand(2), running_var=rand(2, low=0.5, high=2))
    assert set(check_grads(bn, x, train=train)) == {"gamma", "beta"}


def test_batchnorm_repr():
    assert repr(nn.BatchNorm()) == ("BatchNorm(axis=1, eps=1e-05, momentum=0.9, "
                                    "fix_gamma=False, use_global_stats=False, in_channels=None)")


# -- LayerNorm ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axis", [((3, 5), -1), ((2, 3, 4), -1), ((2, 3, 4), 1)])
def test_layernorm_forward_and_grad(shape, axis):
    x = rand(*shape, low=-2, high=2)
    ax = axis % len(shape)
    c = shape[ax]
    g, b = rand(c, low=0.5, high=2), rand(c)
    ln = build(nn.LayerNorm(axis=axis, dtype="float64"), x, gamma=g, beta=b)
    assert ln.gamma.shape == (c,) and ln.beta.shape == (c,)
    mu, var = x.mean(axis=ax, keepdims=True), x.var(axis=ax, keepdims=True)
    ref = (x - mu) / np.sqrt(var + 1e-5) * per_channel(g, ax, x.ndim) + per_channel(b, ax,
                                                                                   x.ndim)
    np.testing.assert_allclose(run(ln, x), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(run(ln, x, train=True), ref, rtol=1e-12, atol=1e-12)
    assert set(check_grads(ln, x)) == {"gamma", "beta"}


# -- Embedding ----------------------------------------------------------------------------

def test_embedding_forward_and_grad():
    emb = nn.Embedding(6, 3, dtype="float64")
    emb.initialize()
    assert emb.weight.shape == (6, 3)
    w = rand(6, 3)
    emb.weight.set_data(w)
    idx = np.array([[0, 5, 2], [2, 2, 1]])
    np.testing.assert_allclose(run(emb, idx), w[idx], rtol=0)
    np.testing.assert_allclose(run(emb, idx.astype(np.float32)), w[idx], rtol=0)  # Gluon habit
    check_grads(emb, idx, x_grad=False)  # repeated rows add up
    assert repr(emb) == "Embedding(6 -> 3, float64)"


# -- Dropout ------------------------------------------------------------------------------

def test_dropout_predict_is_identity_and_train_masks():
    x = rand(50, 40) + 2.0  # no zeros in x
    drop = nn.Dropout(0.3)
    np.testing.assert_array_equal(run(drop, x), x)
    with autograd.record(train_mode=False):
        np.testing.assert_array_equal(drop(gc.array(x)).numpy(), x)
    gc.random.seed(7)
    xt = gc.array(x)
    xt.attach_grad()
    with autograd.record():
        y = drop(xt)
    y.backward()
    out = y.numpy()
    kept = out != 0
    assert abs(kept.mean() - 0.7) < 0.05
    np.testing.assert_allclose(out[kept], x[kept] / 0.7, rtol=1e-15)
    np.testing.assert_allclose(xt.grad.numpy(), kept / 0.7, rtol=1e-15)  # the same mask
    gc.random.seed(7)
    np.testing.assert_array_equal(run(drop, x, train=True), out)  # seeded: reproducible
    np.testing.assert_array_equal(run(nn.Dropout(0.0), x, train=True), x)
    assert repr(drop) == "Dropout(p = 0.3, axes=())"


# -- Flatten / Activation / LeakyReLU -------------------------------------------------------

def test_flatten():
    x = rand(2, 3, 4)
    np.testing.assert_array_equal(run(nn.Flatten(), x), x.reshape(2, 12))
    assert run(nn.Flatten(), rand(3, 4)).shape == (3, 4)
    assert run(nn.Flatten(), rand(5)).shape == (5, 1)
    check_grads(nn.Flatten(), rand(2, 2, 3))


@pytest.mark.parametrize("name", [k for k in NP_ACT if k])
def test_activation(name):
    x = rand(3, 4, low=-3, high=3)
    np.testing.assert_allclose(run(nn.Activation(name), x), NP_ACT[name](x), rtol=1e-7,
                               atol=1e-12)
    check_grads(nn.Activation(name), x)
    assert repr(nn.Activation(name)) == f"Activation({name})"


def test_leaky_relu():
    x = rand(3, 4)
    layer = nn.LeakyReLU(0.1)
    np.testing.assert_allclose(run(layer, x), np.where(x > 0, x, 0.1 * x), rtol=1e-15)
    check_grads(layer, x)
    assert repr(layer) == "LeakyReLU(0.1)"


# -- Conv2DTranspose, 1-D pools, InstanceNorm, GroupNorm ---------------------------------------

def np_conv2d_transpose(x, w, b, stride, pad, out_pad, dil, groups):
    """Each input pixel scatters ``x * w`` into the output (then the padding is cut)."""
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    full = np.zeros((n, og * groups, (h - 1) * stride[0] + dil[0] * (kh - 1) + 1 + out_pad[0],
                     (wd - 1) * stride[1] + dil[1] * (kw - 1) + 1 + out_pad[1]))
    ig = c // groups
    for g in range(groups):
        for r in range(h):
            for s in range(wd):
                contrib = np.einsum("ni,iojk->nojk", x[:, g * ig:(g + 1) * ig, r, s],
                                    w[g * ig:(g + 1) * ig])
                full[:, g * og:(g + 1) * og,
                     r * stride[0]:r * stride[0] + dil[0] * (kh - 1) + 1:dil[0],
                     s * stride[1]:s * stride[1] + dil[1] * (kw - 1) + 1:dil[1]] += contrib
    out = full[:, :, pad[0]:full.shape[2] - pad[0], pad[1]:full.shape[3] - pad[1]]
    return out + b.reshape(1, -1, 1, 1)


@pytest.mark.parametrize("kw", [dict(), dict(strides=2, padding=1, output_padding=1),
                                dict(strides=(2, 1), dilation=(1, 2), groups=2)])
def test_conv2d_transpose(kw):
    groups = kw.get("groups", 1)
    x, w, b = rand(2, 4, 3, 4), rand(4, 6 // groups, 3, 2), rand(6)
    layer = build(nn.Conv2DTranspose(6, (3, 2), dtype="float64", **kw), x, weight=w, bias=b)
    assert layer.weight.shape == (4, 6 // groups, 3, 2)  # Gluon: (in, out / groups, kh, kw)
    pair = lambda v: (v, v) if isinstance(v, int) else v
    ref = np_conv2d_transpose(x, w, b, pair(kw.get("strides", 1)), pair(kw.get("padding", 0)),
                              pair(kw.get("output_padding", 0)), pair(kw.get("dilation", 1)),
                              groups)
    np.testing.assert_allclose(run(layer, x), ref, rtol=1e-12, atol=1e-12)
    check_grads(layer, rand(1, 4, 2, 3))
    assert repr(nn.Conv2DTranspose(3, 2, strides=2, output_padding=1, in_channels=5)) == (
        "Conv2DTranspose(5 -> 3, kernel_size=(2, 2), stride=(2, 2), output_padding=(1, 1))")


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool1d(kind):
    x = rand(2, 3, 7)
    cls = nn.MaxPool1D if kind == "max" else nn.AvgPool1D
    for kw, (k, s, p) in [(dict(), (2, 2, 0)), (dict(pool_size=3, strides=2, padding=1),
                                                (3, 2, 1))]:
        layer = cls(**kw)
        ref = np_pool(x[:, :, None], (1, k), (1, s), (0, p), kind)[:, :, 0]
        np.testing.assert_allclose(run(layer, x), ref, rtol=1e-12)
        check_grads(layer, rand(1, 2, 5))
    assert repr(cls(3)) == f"{cls.__name__}(size=(3,), stride=(3,), padding=(0,))"


def test_instance_norm():
    x = rand(2, 3, 4, 2, low=-2, high=2)
    g, b = rand(3, low=0.5, high=2), rand(3)
    layer = build(nn.InstanceNorm(scale=True, dtype="float64"), x, gamma=g, beta=b)
    mu, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    ref = (x - mu) / np.sqrt(var + 1e-5) * g.reshape(1, 3, 1, 1) + b.reshape(1, 3, 1, 1)
    np.testing.assert_allclose(run(layer, x), ref, rtol=1e-12, atol=1e-12)
    assert set(check_grads(layer, x)) == {"gamma", "beta"}
    assert nn.InstanceNorm().gamma.grad_req == "null"  # Gluon's default: scale=False


def test_group_norm():
    x = rand(2, 4, 3, low=-2, high=2)
    g, b = rand(4, low=0.5, high=2), rand(4)
    layer = build(nn.GroupNorm(num_groups=2, dtype="float64"), x, gamma=g, beta=b)
    xg = x.reshape(2, 2, 6)
    y = ((xg - xg.mean(axis=2, keepdims=True)) / np.sqrt(xg.var(axis=2, keepdims=True) + 1e-5))
    ref = y.reshape(x.shape) * g.reshape(1, 4, 1) + b.reshape(1, 4, 1)
    np.testing.assert_allclose(run(layer, x), ref, rtol=1e-12, atol=1e-12)
    assert set(check_grads(layer, x)) == {"gamma", "beta"}
    with pytest.raises(gc.ShapeError, match=r"GroupNorm\(num_groups=2\): expected an input "
                       r"\(N, C, ...\) with C divisible by 2 groups, got shape \(2, 3\)"):
        layer(gc.ones((2, 3), dtype="float64"))


# -- Identity, Lambda, Concatenate -------------------------------------------------------------

def test_identity_lambda_concatenate():
    x = rand(2, 3)
    np.testing.assert_array_equal(run(nn.Identity(), x), x)
    np.testing.assert_allclose(run(nn.Lambda("tanh"), x), np.tanh(x), rtol=1e-15)
    np.testing.assert_allclose(run(nn.HybridLambda(lambda v: v * 2), x), 2 * x, rtol=0)
    np.testing.assert_allclose(run(nn.HybridLambda(lambda F, v: F.relu(v)), x),
                               np.maximum(x, 0), rtol=0)  # Gluon 1 style: F is graphc
    assert repr(nn.Lambda("tanh")) == "Lambda(tanh)"
    with pytest.raises(gc.GraphcError, match=r"Lambda\(tanhh\): graphc has no function 'tanhh'"):
        nn.Lambda("tanhh")
    for cls in (nn.Concatenate, nn.HybridConcatenate):
        net = cls(axis=1)
        net.add(nn.Identity(), nn.HybridLambda("exp"))
        np.testing.assert_allclose(run(net, x), np.concatenate([x, np.exp(x)], axis=1),
                                   rtol=1e-15)


# -- a float64 network built in float32 and cast ---------------------------------------------

def test_cast_network_grads_in_training():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(2, 3), nn.BatchNorm(), nn.Activation("tanh"), nn.MaxPool2D(),
            nn.Flatten(), nn.Dense(3))
    x = rand(2, 1, 6, 6)
    net.initialize()
    run(net, x.astype(np.float32))
    net.cast("float64")
    assert all(p.data().dtype == np.float64 for p in net.collect_params().values())
    assert run(net, x).dtype == np.float64
    assert list(check_grads(net, x, train=True)) == [
        "0.weight", "0.bias", "1.gamma", "1.beta", "5.weight", "5.bias"]


# -- the Gluon crash-course LeNet ------------------------------------------------------------

def lenet():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(channels=6, kernel_size=5, activation="relu"),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Conv2D(channels=16, kernel_size=3, activation="relu"),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Flatten(),
            nn.Dense(120, activation="relu"),
            nn.Dense(84, activation="relu"),
            nn.Dense(10))
    return net


def test_lenet_shapes_and_reference():
    net = lenet()
    net.initialize()
    x = RNG.uniform(0, 1, (3, 1, 28, 28)).astype(np.float32)
    out = net(gc.array(x))
    assert out.shape == (3, 10) and out.dtype == np.float32
    assert [(k, p.shape) for k, p in net.collect_params().items()] == [
        ("0.weight", (6, 1, 5, 5)), ("0.bias", (6,)), ("2.weight", (16, 6, 3, 3)),
        ("2.bias", (16,)), ("5.weight", (120, 400)), ("5.bias", (120,)),
        ("6.weight", (84, 120)), ("6.bias", (84,)), ("7.weight", (10, 84)), ("7.bias", (10,))]
    p = {k: v.data().numpy().astype(np.float64) for k, v in net.collect_params().items()}
    relu = NP_ACT["relu"]
    h = np_pool(relu(np_conv2d(x.astype(np.float64), p["0.weight"], p["0.bias"])), (2, 2),
                (2, 2), (0, 0), "max")
    h = np_pool(relu(np_conv2d(h, p["2.weight"], p["2.bias"])), (2, 2), (2, 2), (0, 0), "max")
    h = relu(h.reshape(3, -1) @ p["5.weight"].T + p["5.bias"])
    h = relu(h @ p["6.weight"].T + p["6.bias"])
    np.testing.assert_allclose(out.numpy(), h @ p["7.weight"].T + p["7.bias"], rtol=1e-4,
                               atol=1e-6)
    assert repr(net).startswith("HybridSequential(\n  (0): Conv2D(1 -> 6, kernel_size=(5, 5)")


def test_lenet_hybridized_matches_imperative():
    net = lenet()
    net.initialize()
    x = gc.array(RNG.uniform(0, 1, (4, 1, 28, 28)).astype(np.float32))
    params = list(net.collect_params().values())

    def step():
        with autograd.record():
            out = net(x)
            loss = gc.sum(out * out)
        loss.backward()
        return out.numpy(), [p.grad().numpy().copy() for p in params]

    out, grads = step()
    net.hybridize()
    for _ in range(2):  # the first call traces, the second reuses the compiled graph
        out_h, grads_h = step()
        np.testing.assert_allclose(out_h, out, rtol=1e-5, atol=1e-6)
        for g_h, g in zip(grads_h, grads):
            np.testing.assert_allclose(g_h, g, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(net(gc.array(x.numpy()[:1])).numpy(), out[:1], rtol=1e-5,
                               atol=1e-6)


def test_hybridized_batchnorm_dropout_and_deferred_shapes():
    """A never-run net hybridized at once: shapes are completed inside the trace; running
    stats and dropout masks come out as in the imperative run."""
    def make():
        net = nn.HybridSequential()
        net.add(nn.Dense(5, activation="relu"), nn.BatchNorm(), nn.Dropout(0.5),
                nn.LayerNorm(), nn.Dense(2))
        return net
    x = rand(6, 4).astype(np.float32)
    a, b = make(), make()
    a.initialize()
    b.initialize()
    b.hybridize()
    run(a, x)
    run(b, x)  # b's deferred shapes are completed inside its first trace
    pa = a.collect_params()
    for k, p in b.collect_params().items():
        assert p.shape == pa[k].shape
        p.set_data(pa[k].data().numpy())
    res = []
    for net in (a, b):
        gc.random.seed(5)
        res.append((run(net, x, train=True), net[1].running_mean.data().numpy().copy(),
                    net[1].running_var.data().numpy().copy(), run(net, x)))
    for got, want in zip(res[1], res[0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.any(res[0][1] != 0) and np.any(res[0][0] == 0)  # stats moved, units dropped


def all_layers_net():
    """Every hybridizable layer once, on an image batch (N, 2, 8, 8)."""
    net = nn.HybridSequential()
    branch, pools = nn.HybridConcatenate(axis=1), nn.HybridConcatenate(axis=1)
    branch.add(nn.Identity(), nn.Conv2D(2, 3, padding=1, groups=2, activation="tanh"))
    pools.add(nn.GlobalAvgPool2D(), nn.GlobalMaxPool2D())
    net.add(nn.Conv2D(4, 3, padding=1), nn.BatchNorm(), nn.LeakyReLU(0.1), branch,
            nn.InstanceNorm(scale=True), nn.GroupNorm(2), nn.Conv2DTranspose(3, 2, strides=2),
            nn.AvgPool2D(3, 2, 1, count_include_pad=False), nn.MaxPool2D(), nn.Dropout(0.3),
            pools, nn.Flatten(), nn.Dense(6, activation="softrelu"), nn.LayerNorm(),
            nn.HybridLambda(lambda v: gc.expand_dims(v, 1)), nn.Conv1D(2, 3, padding=1),
            nn.MaxPool1D(2), nn.AvgPool1D(3, 1, 1), nn.Activation("gelu"), nn.Dense(3))
    return net


def test_all_layers_hybridized_match_imperative_and_export(tmp_path):
    net = all_layers_net()
    net.initialize()
    x = rand(4, 2, 8, 8).astype(np.float32)
    assert run(net, x).shape == (4, 3)  # completes the deferred shapes
    params = list(net.collect_params().values())

    def step(xv):
        xt = gc.array(xv)
        xt.attach_grad()
        gc.random.seed(11)
        with autograd.record():
            out = net(xt)
            loss = gc.sum(out * out)
        loss.backward()
        stats = [p.data().numpy().copy() for p in params if p.grad_req == "null"]
        return out.numpy(), [xt.grad.numpy()] + [p.grad().numpy().copy() for p in params
                                                 if p.grad_req != "null"], stats

    snapshot = [p.data().numpy().copy() for p in params]
    want = step(x)
    for p, v in zip(params, snapshot):  # undo the running-stat update of the eager step
        p.set_data(v)
    net.hybridize()
    got = step(x)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    for g, w in zip(got[1] + got[2], want[1] + want[2]):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    with autograd.predict_mode():
        pred = net(gc.array(x)).numpy()
    net.export(str(tmp_path / "all"))
    loaded = gc.load(str(tmp_path / "all"))
    np.testing.assert_allclose(loaded(gc.array(x)).numpy(), pred, rtol=1e-5, atol=1e-6)
    for n in (1, 7):  # batch-agnostic: the exported graph runs at other batch sizes
        xn = rand(n, 2, 8, 8).astype(np.float32)
        with autograd.predict_mode():
            ref = net(gc.array(xn)).numpy()
        np.testing.assert_allclose(loaded(gc.array(xn)).numpy(), ref, rtol=1e-5, atol=1e-6)


# -- errors -------------------------------------------------------------------------------

def test_input_errors_name_the_layer_and_shapes():
    conv = nn.Conv2D(6, kernel_size=(5, 5))
    conv.initialize()
    with pytest.raises(gc.ShapeError, match=r"Conv2D\(6, kernel_size=\(5, 5\)\): expected a "
                       r"4-D NCHW input, got shape \(28, 28\)"):
        conv(gc.ones((28, 28)))
    conv(gc.ones((1, 3, 8, 8)))
    with pytest.raises(gc.ShapeError, match=r"Conv2D\(6, kernel_size=\(5, 5\)\): input of "
                       r"shape \(1, 1, 8, 8\) has 1 channels but weight of shape "
                       r"\(6, 3, 5, 5\) expects 3"):
        conv(gc.ones((1, 1, 8, 8)))
    with pytest.raises(gc.ShapeError, match=r"Conv2D\(6, kernel_size=\(5, 5\)\): conv2d: the "
                       r"output would be empty: input \(1, 3, 3, 3\)"):
        conv(gc.ones((1, 3, 3, 3)))
    with pytest.raises(gc.ShapeError, match=r"Conv1D\(2, kernel_size=3\): expected a 3-D NCW "
                       r"input, got shape \(1, 2, 5, 5\)"):
        nn.Conv1D(2, 3)(gc.ones((1, 2, 5, 5)))

    hybrid = nn.HybridSequential()  # the same message from inside a hybridized trace
    hybrid.add(nn.Dense(3), nn.Conv2D(6, kernel_size=(5, 5)))
    hybrid.initialize()
    hybrid.hybridize()
    with pytest.raises(gc.ShapeError, match=r"Conv2D\(6, kernel_size=\(5, 5\)\): expected "
                       r"a 4-D NCHW input, got shape \(2, 3\)"):
        hybrid(gc.ones((2, 4)))
    dense = nn.Dense(10, in_units=5)
    dense.initialize()
    with pytest.raises(gc.DTypeError, match=r"Dense\(10\): expected a floating-point input, "
                       r"got int64"):
        dense(gc.array(np.ones((2, 5), np.int64)))
    with pytest.raises(gc.ShapeError, match=r"Dense\(10\): input of shape \(2, 2, 2\) "
                       r"\(flattened to \(2, 4\)\) has 4 features but weight has shape "
                       r"\(10, 5\)"):
        dense(gc.ones((2, 2, 2)))
    with pytest.raises(gc.ShapeError, match=r"Dense\(10\): expected an input with a batch "
                       r"axis.*got shape \(5,\)"):
        dense(gc.ones(5))
    with pytest.raises(gc.DTypeError, match=r"Conv2D\(6, kernel_size=\(5, 5\)\): expected a "
                       "floating-point input, got int64"):
        conv(gc.array(np.ones((1, 3, 8, 8), np.int64)))

    bn = nn.BatchNorm(in_channels=3)
    bn.initialize()
    with pytest.raises(gc.ShapeError, match=r"BatchNorm\(axis=1\): input of shape \(2, 4\) has "
                       r"4 channels on axis 1 but gamma has shape \(3,\)"):
        bn(gc.ones((2, 4)))
    with pytest.raises(gc.ShapeError, match=r"BatchNorm\(axis=1\): axis 1 is out of range "
                       r"for an input of shape \(3,\)"):
        bn(gc.ones(3))
    with pytest.raises(gc.ShapeError, match=r"MaxPool2D\(pool_size=\(2, 2\)\): expected a 4-D "
                       r"NCHW input, got shape \(2, 8, 8\)"):
        nn.MaxPool2D()(gc.ones((2, 8, 8)))
    with pytest.raises(gc.ShapeError, match=r"GlobalAvgPool2D: expected a 4-D NCHW input"):
        nn.GlobalAvgPool2D()(gc.ones((2, 8)))
    emb = nn.Embedding(4, 2)
    emb.initialize()
    with pytest.raises(gc.GraphcError, match=r"Embedding\(4 -> 2\): take"):
        emb(gc.array(np.array([0, 4])))
    with pytest.raises(gc.DTypeError, match=r"Embedding\(4 -> 2\): expected integer"):
        emb(gc.array(np.array([True])))


def test_option_errors():
    with pytest.raises(gc.GraphcError, match=r"Activation\(swish\): unknown activation "
                       r"'swish'; valid names: relu, sigmoid, tanh, softrelu, softsign, gelu, "
                       r"gelu_tanh"):
        nn.Activation("swish")
    with pytest.raises(gc.GraphcError, match=r"Activation\(None\): needs an activation name"):
        nn.Activation(None)
    with pytest.raises(gc.GraphcError, match=r"Dropout: axes=\(1,\) .* not supported"):
        nn.Dropout(0.5, axes=(1,))
    with pytest.raises(gc.GraphcError, match=r"Dense\(10\): unknown activation 'rellu'"):
        nn.Dense(10, activation="rellu")
    with pytest.raises(gc.GraphcError, match=r"Dense: unknown option 'activaton'; did you mean "
                       "'activation'"):
        nn.Dense(10, activaton="relu")
    with pytest.raises(gc.GraphcError, match=r"MaxPool2D: unknown option 'stride'; did you "
                       "mean 'strides'"):
        nn.MaxPool2D(2, stride=2)
    with pytest.raises(gc.GraphcError, match=r"Conv2D\(6, kernel_size=\(3, 3\)\): layout "
                       r"'NHWC' is not supported; only 'NCHW' is"):
        nn.Conv2D(6, 3, layout="NHWC")
    with pytest.raises(gc.GraphcError, match=r"Conv2D\(6, kernel_size=\(3, 3\)\): "
                       r"in_channels=5 is not divisible by groups=2"):
        nn.Conv2D(6, 3, groups=2, in_channels=5)
    with pytest.raises(gc.GraphcError, match=r"Conv2D: kernel_size must be an int >= 1 or a "
                       r"tuple of 2 such ints, got \(3, 3, 3\)"):
        nn.Conv2D(6, (3, 3, 3))
    with pytest.raises(gc.GraphcError, match=r"Dropout: rate must be a number in \[0, 1\), "
                       r"got 1.5"):
        nn.Dropout(1.5)
    with pytest.raises(gc.GraphcError, match=r"Dense: units must be an int >= 1, got 0"):
        nn.Dense(0)
    with pytest.raises(gc.GraphcError, match=r"MaxPool2D\(pool_size=\(2, 2\)\): ceil_mode"):
        nn.MaxPool2D(ceil_mode=True)
    with pytest.raises(gc.GraphcError, match=r"BatchNorm: momentum must be a number in "
                       r"\[0, 1\], got 2"):
        nn.BatchNorm(momentum=2)
