"""batch_norm, dropout, embedding, one_hot and softmax_cross_entropy against float64 numpy
references written here; dropout's mask against an independent pure-Python hash."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import check_op, vjp

import graphc as gc
from graphc.ops import nn as gnn
from graphc.ops import registry
from graphc.ops import scalar as S

RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float32, low=-1.0, high=1.0):
    return RNG.uniform(low, high, shape).astype(dtype)


def _bcast(t, axis, ndim):
    shape = [1] * ndim
    shape[axis] = -1
    return t.reshape(shape)


# -- batch_norm -------------------------------------------------------------------------

def np_bn_infer(x, gamma, beta, rm, rv, axis, eps):
    r = lambda t: _bcast(t, axis % x.ndim, x.ndim)
    return (x - r(rm)) / np.sqrt(r(rv) + eps) * r(gamma) + r(beta)


def np_bn_train(x, gamma, beta, axis, eps):
    axis = axis % x.ndim
    axes = tuple(i for i in range(x.ndim) if i != axis)
    m, v = x.mean(axis=axes), x.var(axis=axes)
    r = lambda t: _bcast(t, axis, x.ndim)
    return (x - r(m)) / np.sqrt(r(v) + eps) * r(gamma) + r(beta), m, v


BN_CASES = [((2, 3, 4), 1), ((4, 3), 1), ((4, 3), -1), ((2, 3, 2, 2), 1), ((2, 2, 3), 2),
            ((3, 2, 2), 0), ((1, 3), 1)]


def _bn_args(shape, axis, dtype):
    c = shape[axis]
    return [rand(*shape, dtype=dtype, low=-2, high=2), rand(c, dtype=dtype, low=0.5, high=2),
            rand(c, dtype=dtype), rand(c, dtype=dtype), rand(c, dtype=dtype, low=0.5, high=2)]


@pytest.mark.parametrize("shape,axis", BN_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_inference(shape, axis, dtype):
    args = _bn_args(shape, axis, dtype)
    check_op(lambda x, g, b, m, v: gc.batch_norm(x, g, b, m, v, axis=axis, eps=1e-3), args,
             reference=lambda x, g, b, m, v: np_bn_infer(x, g, b, m, v, axis, 1e-3))


@pytest.mark.parametrize("shape,axis", BN_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_training(shape, axis, dtype):
    args = _bn_args(shape, axis, dtype)
    outs = check_op(
        lambda x, g, b, m, v: gc.batch_norm(x, g, b, m, v, axis=axis, training=True),
        args, reference=lambda x, g, b, m, v: np_bn_train(x, g, b, axis, 1e-5),
        grad_argnums=[0, 1, 2])
    assert [o.shape for o in outs] == [shape, (shape[axis],), (shape[axis],)]


def test_batch_norm_non_contiguous():
    x = rand(4, 2, 3).transpose(1, 0, 2)  # (2, 4, 3), strided; channels on axis 1
    _, g, b, m, v = _bn_args((2, 4, 3), 1, np.float32)
    for training in (False, True):
        ref = (lambda x, g, b, m, v: np_bn_train(x, g, b, 1, 1e-5)) if training else (
            lambda x, g, b, m, v: np_bn_infer(x, g, b, m, v, 1, 1e-5))
        check_op(lambda x, g, b, m, v, t=training: gc.batch_norm(x, g, b, m, v, training=t),
                 [x, g, b, m, v], reference=ref)


def test_batch_norm_modes():
    x, g, b, m, v = _bn_args((3, 2, 4), 1, np.float64)
    infer = np_bn_infer(x, g, b, m, v, 1, 1e-5)
    with gc.autograd.train_mode():
        y, bm, bv = gc.batch_norm(x, g, b, m, v, training=None)       # follows the mode
        np.testing.assert_allclose(y.numpy(), np_bn_train(x, g, b, 1, 1e-5)[0], rtol=1e-12)
        glob = gc.batch_norm(x, g, b, m, v, training=True, use_global_stats=True)
        np.testing.assert_allclose(glob.numpy(), infer, rtol=1e-12)
    np.testing.assert_allclose(gc.batch_norm(x, g, b, m, v, training=None).numpy(), infer,
                               rtol=1e-12)
    plain = gc.batch_norm(x, None, None, m, v)          # gamma 1, beta 0
    np.testing.assert_allclose(plain.numpy(), np_bn_infer(x, np.ones(2), np.zeros(2), m, v,
                                                          1, 1e-5), rtol=1e-12)


def test_batch_norm_update_matches_mxnet():
    rm, rv = np.array([0.0, 1.0]), np.array([1.0, 2.0])
    x = rand(5, 2, 3, dtype=np.float64)
    _, bm, bv = gc.batch_norm(x, None, None, rm, rv, training=True)
    np.testing.assert_allclose(bv.numpy(), x.var(axis=(0, 2)), rtol=1e-12)  # biased
    nm, nv = gnn.batch_norm_update(rm, rv, bm, bv, momentum=0.9)
    np.testing.assert_allclose(nm.numpy(), 0.9 * rm + 0.1 * x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(nv.numpy(), 0.9 * rv + 0.1 * x.var(axis=(0, 2)), rtol=1e-12)


def test_batch_norm_errors():
    x, g, b, m, v = _bn_args((2, 3, 4), 1, np.float32)
    with pytest.raises(gc.ShapeError, match=r"batch_norm: gamma has shape \(4,\), expected "
                                            r"\(3,\).*3 channels on axis 1"):
        gc.batch_norm(x, np.ones(4, np.float32), b, m, v)
    with pytest.raises(gc.ShapeError, match=r"batch_norm: running_var has shape \(3, 1\)"):
        gc.batch_norm(x, g, b, m, v.reshape(3, 1))
    with pytest.raises(gc.ShapeError, match="batch_norm: axis 3 is out of range"):
        gc.batch_norm(x, g, b, m, v, axis=3)
    with pytest.raises(gc.ShapeError, match=r"batch_norm: momentum must be in \[0, 1\]"):
        gc.batch_norm(x, g, b, m, v, momentum=1.5)
    with pytest.raises(gc.ShapeError, match="batch_norm: x must have at least one dim"):
        gc.batch_norm(np.float32(1), g, b, m, v)


# -- dropout ----------------------------------------------------------------------------

_M32 = 0xFFFFFFFF


def py_lowbias32(v: int) -> int:
    v &= _M32
    v = ((v ^ (v >> 16)) * 0x7FEB352D) & _M32
    v = ((v ^ (v >> 15)) * 0x846CA68B) & _M32
    return v ^ (v >> 16)


def py_keep(key: int, n: int, p: float) -> np.ndarray:
    """Independent mask: u = top 24 bits / 2**24 (exact in double), kept iff u >= p."""
    hk = py_lowbias32(key)
    return np.array([(py_lowbias32(i ^ hk) >> 8) / 2 ** 24 >= p for i in range(n)], bool)


DROPOUT = registry.get("dropout")


def dropout_with_key(p):
    return lambda x, key: gc.tensor.apply(DROPOUT, x, key, p=p)


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4), (), (1,), (0, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_dropout_op(shape, dtype):
    p, key = 0.3, 123456789
    x = rand(*shape, low=-3, high=3).astype(dtype) if dtype is not np.int32 else \
        RNG.integers(-5, 6, shape).astype(np.int32)
    keep = py_keep(key, int(np.prod(shape)), p).reshape(shape)
    outs = check_op(dropout_with_key(p), [x, np.asarray(key, np.int64)],
                    reference=lambda x, k: np.where(keep, x / (1 - p), 0.0))
    assert outs[0].dtype == (np.float32 if dtype is np.int32 else dtype)


def test_dropout_op_non_contiguous():
    p, key = 0.5, 99
    x = rand(4, 6)[:, ::2].T  # (3, 4) strided view; flat index is the C order of the output
    keep = py_keep(key, 12, p).reshape(3, 4)
    check_op(dropout_with_key(p), [x, np.asarray(key, np.int64)],
             reference=lambda x, k: np.where(keep, x / (1 - p), 0.0))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("key", [0, 1, 987654321, 2 ** 31 - 1, -7])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_is_its_scalar_expression(dtype, key, p):
    shape = (7, 33)
    x = rand(*shape, low=0.5, high=2).astype(dtype)
    k = np.asarray(key, np.int64)
    got = DROPOUT.impl(np, x, k, p=p)
    expr = DROPOUT.scalar(S.arg(0, dtype), S.arg(1, "int64"), p=p)
    want = S.evaluate(expr, [x, k], shape)
    assert got.dtype == want.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)  # bit for bit, scaling included
    mask = S.evaluate(gnn._keep_expr(S.arg(0, "int64"), p), [k], shape)
    np.testing.assert_array_equal(got != 0, mask)
    np.testing.assert_array_equal(mask.ravel(), py_keep(key, x.size, p))


def test_dropout_eager_equals_jit_with_same_seed():
    x = rand(50, 40, low=1, high=2)
    f = gc.jit(lambda x: (gc.dropout(x, 0.4), gc.dropout(x * 2, 0.25)), backend="reference")
    with gc.autograd.train_mode():
        gc.random.seed(7)
        eager = [(gc.dropout(x, 0.4).numpy(), gc.dropout(gc.array(x) * 2, 0.25).numpy())
                 for _ in range(2)]
        gc.random.seed(7)
        traced = [tuple(np.asarray(o) for o in f(x)) for _ in range(2)]
    for e, t in zip(eager, traced):
        np.testing.assert_array_equal(e[0], t[0])
        np.testing.assert_array_equal(e[1], t[1])
    assert not np.array_equal(eager[0][0] != 0, eager[1][0] != 0)  # the stream moves on
    assert not np.array_equal(eager[0][0] != 0, eager[0][1] != 0)  # two calls, two keys


def test_dropout_keep_rate_and_exact_scaling():
    p = 0.3
    x = rand(100_000, low=0.5, high=2)
    with gc.autograd.train_mode():
        out = gc.dropout(x, p).numpy()
    kept = out != 0
    assert abs(kept.mean() - (1 - p)) < 0.008   # ~5.5 standard deviations
    np.testing.assert_array_equal(out[kept], x[kept] / np.float32(1 - p))


def test_dropout_identity_when_not_training():
    x = rand(4, 5)
    for y in (gc.dropout(x, 0.5), gc.dropout(x, 0.5, training=False)):
        np.testing.assert_array_equal(y.numpy(), x)
    with gc.autograd.train_mode():
        np.testing.assert_array_equal(gc.dropout(x, 0.5, training=False).numpy(), x)
        np.testing.assert_array_equal(gc.dropout(x, 0.0).numpy(), x)
        g = gc.trace(lambda x: gc.dropout(x, 0.0), x)
        assert not g.nodes
    assert gc.dropout(x, 0.5, training=True).numpy().tolist() != x.tolist()


def test_dropout_vjp_uses_the_same_mask():
    p = 0.5
    x = rand(6, 7, dtype=np.float64, low=1, high=2)
    cot = rand(6, 7, dtype=np.float64)
    with gc.autograd.train_mode():
        gc.random.seed(3)
        (gx,) = vjp(lambda x: gc.dropout(x, p), [x], [cot], [0])
        gc.random.seed(3)
        out = gc.dropout(x, p).numpy()
    np.testing.assert_array_equal(gx.numpy(), np.where(out != 0, cot / (1 - p), 0.0))


def test_dropout_traced_key_is_a_state_input():
    with gc.autograd.train_mode():
        g = gc.trace(lambda x: gc.dropout(x, 0.5), rand(3))
    keys = g.inputs_by_role("state")
    assert len(keys) == 1 and keys[0].type.shape == () and keys[0].type.dtype == "int64"
    assert [n.op.name for n in g.nodes] == ["dropout"]


def test_dropout_symbolic_api_and_json():
    x = rand(5, 6, low=1, high=2)
    with gc.autograd.train_mode():
        f = gc.compile(gc.dropout(gc.Variable("A"), 0.5), backend="reference")
        gc.random.seed(11)
        compiled = np.asarray(f(A=x))
        gc.random.seed(11)
        eager = gc.dropout(x, 0.5).numpy()
        g = gc.trace(lambda x: gc.dropout(x, 0.5), x)
    np.testing.assert_array_equal(compiled, eager)
    assert gc.Graph.from_json(g.to_json()) == g


def test_dropout_errors():
    x = rand(3)
    for p in (1.0, -0.1, 1.5, float("nan"), "a", True):
        with pytest.raises(gc.ShapeError, match=r"dropout: p must be a number in \[0, 1\)"):
            gc.dropout(x, p, training=True)
    with pytest.raises(gc.ShapeError, match="dropout: key must be a 0-d int64 tensor"):
        dropout_with_key(0.5)(gc.array(x), gc.array(np.zeros(2, np.int64)))


# -- embedding --------------------------------------------------------------------------

@pytest.mark.parametrize("ishape", [(2, 3), (4,), (), (0,), (1, 1)])
@pytest.mark.parametrize("idtype", [np.int64, np.int32])
@pytest.mark.parametrize("wdtype", [np.float32, np.float64])
def test_embedding(ishape, idtype, wdtype):
    weight = rand(5, 3, dtype=wdtype)
    indices = RNG.integers(-5, 5, ishape).astype(idtype)  # negative indices wrap, as numpy
    out = check_op(gc.embedding, [indices, weight], reference=lambda i, w: w[i])
    assert out[0].shape == ishape + (3,)


def test_embedding_non_contiguous_and_repeats():
    weight = rand(3, 6)[:, ::2].T  # (3, 3) strided
    indices = np.array([[0, 2, 0], [2, 2, 1]], np.int64)
    check_op(gc.embedding, [indices, weight], reference=lambda i, w: w[i])


def test_embedding_errors():
    w = rand(5, 3)
    with pytest.raises(gc.ShapeError, match=r"embedding: weight must be 2-D.*\(5,\)"):
        gc.embedding(np.array([0]), rand(5))
    with pytest.raises(gc.DTypeError, match="embedding: indices must be integers, got float32"):
        gc.embedding(np.array([0.0], np.float32), w)
    with pytest.raises(gc.ShapeError, match="take: index 5 is out of bounds"):
        gc.embedding(np.array([5]), w)
    with pytest.raises(gc.ShapeError, match="take: index -6 is out of bounds"):
        gc.embedding(np.array([[1, -6]]), w)


# -- one_hot ----------------------------------------------------------------------------

def np_one_hot(i, depth, axis=-1, on=1.0, off=0.0, dtype=np.float64):
    out = np.where(i[..., None] == np.arange(depth), on, off).astype(dtype)
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("ishape", [(4,), (2, 3), (), (0,)])
@pytest.mark.parametrize("idtype", [np.int64, np.int32])
def test_one_hot(ishape, idtype):
    i = RNG.integers(-1, 6, ishape).astype(idtype)  # -1 and 5 are out of range
    outs = check_op(lambda i: gc.one_hot(i, 5), [i], reference=lambda i: np_one_hot(i, 5))
    assert outs[0].dtype == np.float32


@pytest.mark.parametrize("dtype,on,off", [("int32", 7, -1), ("bool", True, False),
                                          ("float64", 0.9, 0.025)])
@pytest.mark.parametrize("axis", [0, 1, -1, -2])
def test_one_hot_dtype_values_axis(dtype, on, off, axis):
    i = np.array([[0, 2, 9], [1, 1, -3]], np.int64)
    outs = check_op(lambda i: gc.one_hot(i, 4, dtype=dtype, on_value=on, off_value=off,
                                         axis=axis),
                    [i], reference=lambda i: np_one_hot(i, 4, axis, on, off, dtype))
    assert outs[0].dtype == np.dtype(dtype)


def test_one_hot_no_gradient():
    i = np.array([1, 0], np.int64)
    x = rand(2, 3, dtype=np.float64)
    check_op(lambda x, i: gc.sum(x * gc.one_hot(i, 3, dtype="float64"), axis=-1), [x, i],
             reference=lambda x, i: (x * np_one_hot(i, 3)).sum(-1))


def test_one_hot_errors():
    with pytest.raises(gc.DTypeError, match="one_hot: indices must be integers, got float32"):
        gc.one_hot(np.array([1.0], np.float32), 3)
    with pytest.raises(gc.ShapeError, match="one_hot: depth must be a non-negative int"):
        gc.one_hot(np.array([1]), -1)
    with pytest.raises(gc.ShapeError, match="one_hot: depth must be a non-negative int"):
        gc.one_hot(np.array([1]), 2.5)
    with pytest.raises(gc.ShapeError, match="one_hot: axis 2 is out of range"):
        gc.one_hot(np.array([1]), 3, axis=2)


# -- softmax_cross_entropy --------------------------------------------------------------

def np_log_softmax(x, axis):
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def np_sce_sparse(x, labels, axis=-1, from_logits=False):
    logp = x if from_logits else np_log_softmax(x, axis)
    axis = axis % x.ndim
    picked = np.take_along_axis(logp, np.expand_dims(labels.astype(np.int64), axis), axis)
    return -np.squeeze(picked, axis)


def np_sce_dense(x, labels, axis=-1):
    return -(labels * np_log_softmax(x, axis)).sum(axis=axis)


@pytest.mark.parametrize("shape,axis", [((4, 5), -1), ((2, 4, 3), 1), ((3, 4), 0), ((5,), 0),
                                        ((1, 2), -1), ((0, 3), -1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sce_sparse(shape, axis, dtype):
    x = rand(*shape, dtype=dtype, low=-3, high=3)
    lshape = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    labels = RNG.integers(0, shape[axis], lshape).astype(np.int64)
    out = check_op(lambda x, y: gc.softmax_cross_entropy(x, y, axis=axis), [x, labels],
                   reference=lambda x, y: np_sce_sparse(x, y, axis))
    assert out[0].shape == lshape and out[0].dtype == dtype


@pytest.mark.parametrize("shape,axis", [((4, 5), -1), ((2, 4, 3), 1), ((3, 4), 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sce_dense(shape, axis, dtype):
    x = rand(*shape, dtype=dtype, low=-3, high=3)
    e = np.exp(rand(*shape, dtype=np.float64))
    labels = (e / e.sum(axis=axis, keepdims=True)).astype(dtype)
    check_op(lambda x, y: gc.softmax_cross_entropy(x, y, axis=axis, sparse_label=False),
             [x, labels], reference=lambda x, y: np_sce_dense(x, y, axis))


def test_sce_float_labels_non_contiguous_from_logits():
    x = rand(5, 4).T  # (4, 5) strided
    labels = np.array([0.0, 4.0, 2.0, 1.0], np.float32)  # Gluon-style float labels
    check_op(lambda x, y: gc.softmax_cross_entropy(x, y), [x, labels],
             reference=lambda x, y: np_sce_sparse(x, y), grad_argnums=[0])
    logp = np_log_softmax(rand(4, 5, dtype=np.float64), -1)
    check_op(lambda x, y: gc.softmax_cross_entropy(x, y, from_logits=True),
             [logp, labels.astype(np.int64)],
             reference=lambda x, y: np_sce_sparse(x, y, from_logits=True))


def test_sce_large_logits_are_stable():
    x = (rand(6, 10, low=-1, high=1) * 1000).astype(np.float32)
    labels = RNG.integers(0, 10, 6)
    for sparse, y in ((True, labels), (False, np_one_hot(labels, 10).astype(np.float32))):
        out = gc.softmax_cross_entropy(x, y, sparse_label=sparse).numpy()
        assert np.all(np.isfinite(out))
        want = np_sce_sparse(x.astype(np.float64), labels)
        np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-3)
    check_op(lambda x, y: gc.softmax_cross_entropy(x, y), [x.astype(np.float64), labels],
             reference=np_sce_sparse)


def test_sce_out_of_range_label_is_ignored():
    x = rand(3, 4, dtype=np.float64)
    out = gc.softmax_cross_entropy(x, np.array([1, -1, 4])).numpy()
    assert out[1] == 0 and out[2] == 0
    np.testing.assert_allclose(out[0], -np_log_softmax(x, -1)[0, 1], rtol=1e-12)


def test_sce_errors():
    x = rand(3, 4)
    with pytest.raises(gc.ShapeError, match=r"softmax_cross_entropy: sparse labels must have "
                                            r"shape \(3,\).*got \(3, 4\)"):
        gc.softmax_cross_entropy(x, np.zeros((3, 4), np.int64))
    with pytest.raises(gc.ShapeError, match=r"softmax_cross_entropy: dense labels must have "
                                            r"the logits' shape \(3, 4\), got \(3,\)"):
        gc.softmax_cross_entropy(x, np.zeros(3, np.float32), sparse_label=False)
    with pytest.raises(gc.ShapeError, match="softmax_cross_entropy: axis 2 is out of range"):
        gc.softmax_cross_entropy(x, np.zeros(3, np.int64), axis=2)
