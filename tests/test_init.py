"""Initializers: shapes, dtypes, statistics, fans, name rules and seeding."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import init, nn


def _draw(ini, shape, name="weight", dtype="float64"):
    return ini(name, shape, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_shape_and_dtype(dtype):
    for ini in (init.Uniform(), init.Normal(), init.Xavier(), init.Zero(), init.One(),
                init.Constant(2.5), init.Orthogonal()):
        out = ini("weight", (3, 4), dtype)
        assert isinstance(out, np.ndarray) and out.shape == (3, 4) and out.dtype == dtype
    assert init.Uniform()("weight", 5, "float32").shape == (5,)


def test_constants():
    np.testing.assert_array_equal(_draw(init.Zero(), (2, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(_draw(init.One(), (2, 3)), np.ones((2, 3)))
    np.testing.assert_array_equal(_draw(init.Constant(-1.5), (2, 3)), np.full((2, 3), -1.5))
    np.testing.assert_array_equal(_draw(init.Constant([1.0, 2.0, 3.0]), (2, 3)),
                                  np.tile([1.0, 2.0, 3.0], (2, 1)))


def test_uniform_and_normal_statistics():
    gc.random.seed(0)
    u = _draw(init.Uniform(0.5), (300, 300))
    assert u.min() >= -0.5 and u.max() <= 0.5
    assert abs(u.mean()) < 0.005 and u.std() == pytest.approx(0.5 / np.sqrt(3), rel=0.01)
    d = _draw(init.Uniform(), (300, 300))  # Gluon's default scale 0.07
    assert d.max() <= 0.07 and d.max() > 0.069
    n = _draw(init.Normal(0.2), (300, 300))
    assert abs(n.mean()) < 0.002 and n.std() == pytest.approx(0.2, rel=0.01)
    assert _draw(init.Normal(), (300, 300)).std() == pytest.approx(0.01, rel=0.01)


def test_fans_follow_mxnet():
    assert init.fans((10, 20)) == (20.0, 10.0)  # Dense (units, in_units)
    assert init.fans((8, 3, 5, 5)) == (75.0, 200.0)  # Conv2D (C_out, C_in, kh, kw)
    assert init.fans((8, 3, 5)) == (15.0, 40.0)  # Conv1D
    with pytest.raises(gc.GraphcError, match="at least 2 dims"):
        init.fans((4,))


@pytest.mark.parametrize("shape", [(64, 128), (32, 16, 3, 3)])
@pytest.mark.parametrize("factor_type", ["avg", "in", "out"])
def test_xavier_scale(shape, factor_type):
    gc.random.seed(1)
    field = np.prod(shape[2:])
    fan_in, fan_out = shape[1] * field, shape[0] * field
    factor = {"avg": (fan_in + fan_out) / 2, "in": fan_in, "out": fan_out}[factor_type]
    for magnitude in (3, 2):
        scale = np.sqrt(magnitude / factor)
        u = _draw(init.Xavier("uniform", factor_type, magnitude), shape)
        assert np.abs(u).max() <= scale and np.abs(u).max() > 0.98 * scale
        assert u.std() == pytest.approx(scale / np.sqrt(3), rel=0.03)
        g = _draw(init.Xavier("gaussian", factor_type, magnitude), shape)
        assert g.std() == pytest.approx(scale, rel=0.03)


def test_xavier_rejects_vectors_and_bad_options():
    with pytest.raises(gc.GraphcError, match="Xavier cannot initialize 'scale' of shape"):
        init.Xavier()("scale", (5,), "float32")
    with pytest.raises(gc.GraphcError, match="rnd_type"):
        init.Xavier(rnd_type="normal")
    with pytest.raises(gc.GraphcError, match="factor_type"):
        init.Xavier(factor_type="mean")


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 2, 2, 2), (6, 6)])
@pytest.mark.parametrize("rand_type", ["uniform", "normal"])
def test_orthogonal(shape, rand_type):
    gc.random.seed(2)
    w = _draw(init.Orthogonal(scale=1.5, rand_type=rand_type), shape).reshape(shape[0], -1)
    small = min(w.shape)
    gram = w @ w.T if w.shape[0] == small else w.T @ w
    np.testing.assert_allclose(gram, 1.5 ** 2 * np.eye(small), atol=1e-10)
    assert init.Orthogonal().scale == 1.414


def test_name_rules_of_a_global_initializer():
    x = init.Xavier()
    for name, value in [("bias", 0), ("0.bias", 0), ("i2h_bias", 0), ("beta", 0),
                        ("running_mean", 0), ("gamma", 1), ("running_var", 1)]:
        np.testing.assert_array_equal(x(name, (4,), "float32"), np.full(4, value), name)
    np.testing.assert_array_equal(init.Normal(1.0)("bias", (2, 3)), np.zeros((2, 3)))
    # a parameter's own initializer is applied as is
    assert np.abs(init.Normal(1.0)("bias", (50,), by_name=False)).max() > 0
    np.testing.assert_array_equal(init.Constant(3)("gamma", (2,), by_name=False), [3, 3])


def test_seeded_and_reproducible():
    gc.random.seed(7)
    a = _draw(init.Xavier(), (4, 5))
    b = _draw(init.Xavier(), (4, 5))
    gc.random.seed(7)
    np.testing.assert_array_equal(a, _draw(init.Xavier(), (4, 5)))
    assert not np.array_equal(a, b)


def test_create():
    assert isinstance(init.create("zeros"), init.Zero)
    assert isinstance(init.create("ones"), init.One)
    assert isinstance(init.create("Xavier"), init.Xavier)
    assert isinstance(init.create("uniform"), init.Uniform)
    assert isinstance(init.create("normal"), init.Normal)
    c = init.create(0.5)
    assert isinstance(c, init.Constant) and c.value == 0.5
    x = init.Xavier(magnitude=2)
    assert init.create(x) is x and init.create(None) is None
    with pytest.raises(gc.GraphcError, match="unknown initializer 'glorot'"):
        init.create("glorot")
    assert repr(init.Uniform(0.1)) == "Uniform(scale=0.1)"


def test_block_initialize_uses_global_and_own_initializers():
    gc.random.seed(3)
    net = nn.HybridSequential()
    net.add(nn.Dense(40, in_units=30), nn.BatchNorm(in_channels=40))
    net.initialize(init.Xavier(magnitude=3))
    params = net.collect_params()
    w = params["0.weight"].data().numpy()
    bound = np.sqrt(3 / 35)
    assert w.dtype == np.float32 and np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    np.testing.assert_array_equal(params["0.bias"].data().numpy(), np.zeros(40))
    np.testing.assert_array_equal(params["1.gamma"].data().numpy(), np.ones(40))
    np.testing.assert_array_equal(params["1.running_var"].data().numpy(), np.ones(40))
    np.testing.assert_array_equal(params["1.beta"].data().numpy(), np.zeros(40))
    # a parameter without its own init gets the name rule from the global one
    p = nn.Parameter("gamma", shape=(3,))
    p.initialize(init.Normal(1.0))
    np.testing.assert_array_equal(p.data().numpy(), np.ones(3))
