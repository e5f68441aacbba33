"""The eager tape and the functional gradients, against finite differences and numpy."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import finite_difference

import graphc as gc
from graphc import autograd


def _model(x, w):
    return gc.sum(gc.softmax(gc.tanh(x @ w), axis=-1) * gc.arange(3.0))


def test_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    xv, wv = rng.standard_normal((4, 5)), rng.standard_normal((5, 3))
    x, w = gc.array(xv), gc.array(wv)
    x.attach_grad()
    w.attach_grad()
    with autograd.record():
        y = _model(x, w)
    y.backward()
    f = lambda a, b: float(_model(gc.array(a), gc.array(b)).numpy())
    np.testing.assert_allclose(x.grad.numpy(), finite_difference(lambda a: f(a, wv), xv), rtol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), finite_difference(lambda b: f(xv, b), wv), rtol=1e-6)


def test_non_scalar_head_gets_ones_and_head_grad_is_used():
    x = gc.array([1.0, 2.0, 3.0])
    x.attach_grad()
    with autograd.record():
        y = x * x
    y.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad.numpy(), [2, 4, 6])
    y.backward(gc.array([1.0, 0.0, 2.0]))
    np.testing.assert_allclose(x.grad.numpy(), [2, 0, 12])


def test_second_backward_without_retain_graph_raises():
    x = gc.array([1.0])
    x.attach_grad()
    with autograd.record():
        y = gc.exp(x)
    y.backward()
    with pytest.raises(gc.GraphcError, match="retain_graph"):
        y.backward()


def test_grad_req_add_accumulates_and_null_ignores():
    x = gc.array([1.0, 2.0])
    x.attach_grad(grad_req="add")
    for _ in range(2):
        with autograd.record():
            y = gc.sum(x * 3)
        y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [6, 6])
    z, w = gc.array([1.0]), gc.array([5.0])
    z.attach_grad("null")
    w.attach_grad()
    with autograd.record():
        y = z * w
    y.backward()
    assert z.grad is None
    np.testing.assert_allclose(w.grad.numpy(), [1.0])


def test_record_pause_and_modes():
    assert not autograd.is_recording() and not autograd.is_training()
    x = gc.array([2.0])
    x.attach_grad()
    with autograd.record():
        assert autograd.is_recording() and autograd.is_training()
        with autograd.pause():
            assert not autograd.is_recording()
            frozen = x * 10           # not recorded
        y = x * x + frozen
    assert not autograd.is_recording()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0])
    with autograd.record(train_mode=False):
        assert not autograd.is_training()


def test_detach_stops_gradient():
    x = gc.array([3.0])
    x.attach_grad()
    with autograd.record():
        y = x * x.detach()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0])


def test_backward_without_recorded_inputs_is_an_error():
    with pytest.raises(gc.GraphcError, match="attach_grad"):
        gc.array([1.0]).backward()


def test_grad_and_value_and_grad():
    f = lambda x, y: gc.sum(gc.sin(x) * y)
    x, y = np.array([0.1, 0.7]), np.array([2.0, -1.0])
    gx = gc.grad(f)(x, y)
    np.testing.assert_allclose(gx.numpy(), np.cos(x) * y)
    gx, gy = gc.grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gy.numpy(), np.sin(x))
    value, g = gc.value_and_grad(f, argnums=1)(x, y)
    np.testing.assert_allclose(value.numpy(), np.sum(np.sin(x) * y))
    (value, aux), g = gc.value_and_grad(lambda x: (gc.sum(x * x), x + 1), has_aux=True)(x)
    np.testing.assert_allclose(aux.numpy(), x + 1)
    np.testing.assert_allclose(g.numpy(), 2 * x)
    with pytest.raises(gc.GraphcError, match="scalar"):
        gc.grad(lambda x: x * 2)(x)


def test_grad_inside_jit_equals_eager():
    rng = np.random.default_rng(1)
    xv, wv = rng.standard_normal((4, 5)), rng.standard_normal((5, 3))
    eager = gc.grad(_model, argnums=(0, 1))(xv, wv)
    jitted = gc.jit(gc.grad(_model, argnums=(0, 1)))
    compiled = jitted(xv, wv)
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)
    g = jitted.trace(xv, wv)
    assert [v.name for v in g.data_inputs] == ["x", "w"]


def test_integer_paths_get_no_gradient():
    x = gc.array([1.5, -2.0])
    x.attach_grad()
    with autograd.record():
        y = gc.sum(x * gc.cast(x > 0, "float64")) + gc.sum(gc.argmax(x))
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 0.0])
