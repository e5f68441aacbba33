"""Losses against float64 numpy references; gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import autograd, loss

RNG = np.random.default_rng(0)


def _per_sample(x, batch_axis=0):
    """Gluon's reduction: mean over every axis but the batch axis."""
    return x.mean(axis=tuple(i for i in range(x.ndim) if i != batch_axis % x.ndim))


def _log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _fd_check(fn, pred, eps=1e-6):
    """gc.grad of sum(fn(pred) * cot) vs central finite differences, in float64."""
    cot = RNG.standard_normal(np.asarray(fn(gc.array(pred))).shape)
    g = gc.grad(lambda p: gc.sum(fn(p) * gc.array(cot)))(gc.array(pred)).numpy()
    fd = np.zeros_like(pred)
    for i in range(pred.size):
        hi, lo = pred.copy(), pred.copy()
        hi.reshape(-1)[i] += eps
        lo.reshape(-1)[i] -= eps
        f = lambda p: float(np.sum(np.asarray(fn(gc.array(p))) * cot))  # noqa: E731
        fd.reshape(-1)[i] = (f(hi) - f(lo)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)


def _check(lossfn, pred, label, want, **kwargs):
    got = lossfn(gc.array(pred), gc.array(label), **kwargs)
    assert got.dtype == pred.dtype
    tol = 1e-12 if pred.dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got.numpy(), want, rtol=tol, atol=tol)


# -- softmax cross-entropy --------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_ce_sparse(dtype):
    pred = RNG.standard_normal((5, 4)).astype(dtype)
    label = np.array([0, 3, 1, 2, 3])
    want = -_log_softmax(pred.astype(np.float64), 1)[np.arange(5), label]
    L = loss.SoftmaxCrossEntropyLoss()
    _check(L, pred, label, want)
    _check(L, pred, label.astype(dtype), want)  # float labels, as Gluon passes them
    _check(L, pred, label.reshape(5, 1), want)  # (N, 1) labels
    sw = RNG.random(5)
    _check(L, pred, label, want * sw, sample_weight=sw.reshape(5, 1).astype(dtype))
    _check(L, pred, label, want * sw, sample_weight=sw.astype(dtype))
    _check(loss.SoftmaxCrossEntropyLoss(weight=0.3), pred, label, 0.3 * want)


def test_softmax_ce_dense_from_logits_and_axis():
    pred = RNG.standard_normal((3, 4, 5))  # (N, C, T) with axis=1
    label = RNG.integers(0, 4, (3, 5))
    logp = _log_softmax(pred, 1)
    want = -np.take_along_axis(logp, label[:, None, :], 1)[:, 0, :].mean(axis=1)
    _check(loss.SoftmaxCrossEntropyLoss(axis=1), pred, label, want)
    _check(loss.SoftmaxCrossEntropyLoss(axis=1, from_logits=True), logp, label, want)
    dist = np.exp(_log_softmax(RNG.standard_normal((3, 4, 5)), 1))
    want = -(dist * logp).sum(axis=1).mean(axis=1)
    _check(loss.SoftmaxCrossEntropyLoss(axis=1, sparse_label=False), pred, dist, want)
    # 'TNC' layout, batch_axis=1: the loss is averaged over the other axes
    tnc, lab = pred.transpose(2, 0, 1), label.T
    want = -np.take_along_axis(_log_softmax(tnc, 2), lab[..., None], 2)[..., 0].mean(axis=0)
    _check(loss.SoftmaxCrossEntropyLoss(batch_axis=1), tnc, lab, want)


def test_softmax_ce_gradients():
    pred = RNG.standard_normal((4, 3))
    label = gc.array(np.array([2, 0, 1, 1]))
    _fd_check(lambda p: loss.SoftmaxCrossEntropyLoss()(p, label), pred)
    dist = gc.array(np.exp(_log_softmax(RNG.standard_normal((4, 3)), 1)))
    sw = gc.array(RNG.random((4, 1)))
    _fd_check(lambda p: loss.SoftmaxCrossEntropyLoss(sparse_label=False)(p, dist, sw), pred)
    lab3 = gc.array(RNG.integers(0, 3, (2, 4)))
    _fd_check(lambda p: loss.SoftmaxCrossEntropyLoss(axis=1)(p, lab3),
              RNG.standard_normal((2, 3, 4)))


# -- regression losses ------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(6,), (4, 3), (2, 3, 2)])
def test_l2_l1_huber(shape):
    pred, label = RNG.standard_normal(shape), RNG.standard_normal(shape)
    d = pred - label
    _check(loss.L2Loss(), pred, label, _per_sample(0.5 * d ** 2))
    _check(loss.L2Loss(weight=3.0), pred, label, _per_sample(1.5 * d ** 2))
    _check(loss.L1Loss(), pred, label, _per_sample(np.abs(d)))
    _check(loss.L1Loss(weight=0.5), pred, label, _per_sample(0.5 * np.abs(d)))
    for rho in (1.0, 0.5):
        a = np.abs(d)
        huber = np.where(a > rho, a - 0.5 * rho, 0.5 / rho * a ** 2)
        _check(loss.HuberLoss(rho=rho), pred, label, _per_sample(huber))
    sw = RNG.random(shape[0])
    _check(loss.L1Loss(), pred, label, _per_sample(np.abs(d)) * sw, sample_weight=sw)


def test_regression_label_reshaped_and_mismatch():
    pred = RNG.standard_normal((4, 1))
    label = RNG.standard_normal(4)  # Gluon reshapes a label of the same size
    _check(loss.L2Loss(), pred, label, 0.5 * (pred[:, 0] - label) ** 2)
    with pytest.raises(gc.ShapeError, match=r"L2Loss: label shape \(5,\) does not match "
                                            r"prediction shape \(4, 1\)"):
        loss.L2Loss()(gc.array(pred), gc.array(np.zeros(5)))


def test_regression_gradients():
    pred, label = RNG.standard_normal((3, 4)), gc.array(RNG.standard_normal((3, 4)))
    sw = gc.array(RNG.random(3))
    _fd_check(lambda p: loss.L2Loss()(p, label, sw), pred)
    _fd_check(lambda p: loss.L1Loss()(p, label), pred)
    _fd_check(lambda p: loss.HuberLoss(rho=0.7)(p, label), pred)


# -- sigmoid binary cross-entropy -------------------------------------------------------

def _bce_ref(x, z, pos_weight=1.0):
    # -(pw * z * log(sigmoid(x)) + (1 - z) * log(1 - sigmoid(x))), stably
    return pos_weight * z * np.logaddexp(0, -x) + (1 - z) * np.logaddexp(0, x)


def test_sigmoid_bce():
    pred = RNG.standard_normal((4, 3)) * 3
    label = (RNG.random((4, 3)) > 0.5).astype(np.float64)
    L = loss.SigmoidBinaryCrossEntropyLoss()
    _check(L, pred, label, _per_sample(_bce_ref(pred, label)))
    soft = RNG.random((4, 3))  # soft labels
    _check(L, pred, soft, _per_sample(_bce_ref(pred, soft)))
    pw = np.array([1.0, 2.0, 0.5])
    got = L(gc.array(pred), gc.array(label), None, gc.array(pw))
    np.testing.assert_allclose(got.numpy(), _per_sample(_bce_ref(pred, label, pw)), rtol=1e-12)
    prob = 1 / (1 + np.exp(-pred))  # probabilities (log(p + 1e-12) inside: rtol 1e-9)
    got = loss.SigmoidBCELoss(from_sigmoid=True)(gc.array(prob), gc.array(label))
    np.testing.assert_allclose(got.numpy(), _per_sample(_bce_ref(pred, label)), rtol=1e-9)


# gc.sigmoid's eager kernel (1 / (1 + exp(-x))) warns on exp overflow; its value (0) is right
@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
def test_sigmoid_bce_is_stable_for_large_logits():
    pred = np.array([[-200.0, -30.0, 0.0, 30.0, 200.0]], np.float32)
    label = np.array([[1.0, 0.0, 1.0, 1.0, 0.0]], np.float32)
    got = loss.SigmoidBinaryCrossEntropyLoss()(gc.array(pred), gc.array(label)).numpy()
    want = _per_sample(_bce_ref(pred.astype(np.float64), label.astype(np.float64)))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    g = gc.grad(lambda p: gc.sum(loss.SigmoidBCELoss()(p, gc.array(label))))(gc.array(pred))
    np.testing.assert_allclose(g.numpy(), (1 / (1 + np.exp(-pred.astype(np.float64))) - label)
                               / 5, rtol=1e-6, atol=1e-12)


def test_sigmoid_bce_gradients():
    label = gc.array((RNG.random((3, 4)) > 0.5).astype(np.float64))
    pred = RNG.standard_normal((3, 4))
    _fd_check(lambda p: loss.SigmoidBCELoss()(p, label), pred)
    pw = gc.array(np.array([0.5, 1.0, 2.0, 3.0]))
    _fd_check(lambda p: loss.SigmoidBCELoss()(p, label, None, pw), pred)
    _fd_check(lambda p: loss.SigmoidBCELoss(from_sigmoid=True)(p, label),
              RNG.uniform(0.1, 0.9, (3, 4)))


# -- as blocks --------------------------------------------------------------------------

def test_losses_are_hybrid_blocks_and_train():
    assert isinstance(loss.L2Loss(), gc.nn.HybridBlock)
    pred = gc.array(RNG.standard_normal((4, 3)).astype(np.float32))
    label = gc.array(np.array([0, 2, 1, 1]))
    L = loss.SoftmaxCrossEntropyLoss()
    eager = L(pred, label).numpy()
    L.hybridize()
    np.testing.assert_allclose(L(pred, label).numpy(), eager, rtol=1e-6)
    pred.attach_grad()
    with autograd.record():
        out = L(pred, label)
    out.backward()
    p = np.exp(_log_softmax(pred.numpy().astype(np.float64), 1))
    p[np.arange(4), label.numpy()] -= 1
    np.testing.assert_allclose(pred.grad.numpy(), p, rtol=1e-5, atol=1e-7)
