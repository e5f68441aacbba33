"""Eager graphc on a GPU (cupy) against the same calls on the CPU (numpy).

Every case runs the same op definitions with the CPU namespace and with cupy, from the
same inputs, and compares the results (and, where the op has a gradient, the gradients
of a weighted sum of its output). Then autograd, nn blocks trained with the Trainer
(GPU vs CPU from the same seed), device moves of blocks and DLPack with cupy and torch.

Marked ``gpu``: skipped, with the reason, where cupy or a CUDA device is missing. Run on
a GPU machine with ``pytest -m gpu`` (scripts/gpu_check.sh).
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import autograd, nn
from graphc.device import as_device


def _why_no_gpu() -> str | None:
    try:
        import cupy
    except ImportError:
        return "cupy is not installed (pip install 'graphc[gpu]')"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError: no driver, no device
        return f"no usable CUDA device: {e}"
    return None if count > 0 else "no CUDA device"


_NO_GPU = _why_no_gpu()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_NO_GPU is not None, reason=_NO_GPU or "")]

GPU = gc.gpu(0)
RTOL, ATOL = 1e-4, 1e-5  # float32: reductions and GEMMs sum in another order on the GPU


def _rng():
    return np.random.default_rng(0)


def _f32(*shape, low=-2.0, high=2.0):
    return _rng().uniform(low, high, shape).astype(np.float32)


def _pos(*shape):
    return _f32(*shape, low=0.1, high=3.0)


def _ints(*shape, high=4):
    return _rng().integers(0, high, shape).astype(np.int64)


def _close(got, want, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=what,
                                   equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def _outs(out):
    return list(out) if isinstance(out, tuple | list) else [out]


X = _f32(3, 4)
Y = _f32(3, 4) + 0.5
IMG = _f32(2, 3, 8, 8)
KER = _f32(4, 3, 3, 3)

# (id, fn, inputs, differentiable input positions)
CASES = [
    # elementwise, unary
    ("neg", gc.neg, [X], (0,)), ("abs", gc.abs, [X], (0,)), ("exp", gc.exp, [X], (0,)),
    ("log", gc.log, [_pos(3, 4)], (0,)), ("log1p", gc.log1p, [_pos(3, 4)], (0,)),
    ("expm1", gc.expm1, [X], (0,)), ("sqrt", gc.sqrt, [_pos(3, 4)], (0,)),
    ("rsqrt", gc.rsqrt, [_pos(3, 4)], (0,)), ("square", gc.square, [X], (0,)),
    ("reciprocal", gc.reciprocal, [_pos(3, 4)], (0,)), ("sin", gc.sin, [X], (0,)),
    ("cos", gc.cos, [X], (0,)), ("tanh", gc.tanh, [X], (0,)),
    ("sigmoid", gc.sigmoid, [X], (0,)), ("relu", gc.relu, [X], (0,)),
    ("erf", gc.erf, [X], (0,)), ("softplus", gc.softplus, [X], (0,)),
    ("gelu", gc.gelu, [X], (0,)), ("gelu_tanh", lambda x: gc.gelu(x, "tanh"), [X], (0,)),
    ("elu", gc.elu, [X], (0,)), ("leaky_relu", lambda x: gc.leaky_relu(x, 0.1), [X], (0,)),
    ("clip", lambda x: gc.clip(x, -0.5, 0.7), [X], (0,)),
    ("sign", gc.sign, [X], ()), ("floor", gc.floor, [X], ()), ("ceil", gc.ceil, [X], ()),
    ("round", gc.round, [X], ()), ("cast_int", lambda x: gc.cast(x, "int32"), [X], ()),
    ("cast_f64", lambda x: x.astype("float64"), [X], (0,)),
    ("cast_f16", lambda x: x.astype("float16").astype("float32"), [X], ()),
    ("logical_not", lambda x: gc.logical_not(x > 0), [X], ()),
    # elementwise, binary and with Python scalars
    ("add", gc.add, [X, Y], (0, 1)), ("sub", gc.sub, [X, Y], (0, 1)),
    ("mul", gc.mul, [X, Y], (0, 1)), ("div", gc.div, [X, Y], (0, 1)),
    ("power", gc.power, [_pos(3, 4), Y], (0, 1)), ("maximum", gc.maximum, [X, Y], (0, 1)),
    ("minimum", gc.minimum, [X, Y], (0, 1)),
    ("broadcast_add", gc.add, [X, _f32(4)], (0, 1)),
    ("scalar_ops", lambda x: (2 * x - 1) / 3 + x ** 2, [X], (0,)),
    ("rsub_scalar", lambda x: 1 - x, [X], (0,)),
    ("int_scalar", lambda i: i * 3 + 1, [_ints(3, 4)], ()),
    ("compare", lambda x, y: (x < y, x >= y, x == x, x != y), [X, Y], ()),
    ("logical", lambda x, y: gc.logical_and(x > 0, y > 0) | (x < -1), [X, Y], ()),
    ("where", lambda x, y: gc.where(x > 0, x, y), [X, Y], (0, 1)),
    ("where_scalar", lambda x: gc.where(x > 0, x, 0.0), [X], (0,)),
    # reductions
    ("sum", gc.sum, [X], (0,)), ("sum0", lambda x: gc.sum(x, axis=0), [X], (0,)),
    ("sum_keep", lambda x: gc.sum(x, axis=1, keepdims=True), [X], (0,)),
    ("mean", lambda x: gc.mean(x, axis=-1), [X], (0,)),
    ("max", lambda x: gc.max(x, axis=1), [X], (0,)), ("min", gc.min, [X], (0,)),
    ("prod", lambda x: gc.prod(x, axis=0), [X], (0,)),
    ("argmax", lambda x: gc.argmax(x, axis=1), [X], ()),
    ("argmin", lambda x: gc.argmin(x, axis=0), [X], ()),
    ("logsumexp", lambda x: gc.logsumexp(x, axis=1), [X], (0,)),
    ("var", lambda x: gc.var(x, axis=0), [X], (0,)),
    ("int_sum", lambda i: gc.sum(i, axis=1), [_ints(3, 4)], ()),
    # shapes
    ("reshape", lambda x: x.reshape(4, 3), [X], (0,)),
    ("transpose", lambda x: x.T, [X], (0,)),
    ("transpose3", lambda x: gc.transpose(x, (2, 0, 1)), [_f32(2, 3, 4)], (0,)),
    ("flatten", gc.flatten, [_f32(2, 3, 4)], (0,)),
    ("squeeze", lambda x: gc.squeeze(x, axis=1), [_f32(3, 1, 4)], (0,)),
    ("expand_dims", lambda x: gc.expand_dims(x, 1), [X], (0,)),
    ("broadcast_to", lambda x: gc.broadcast_to(x, (2, 3, 4)), [X], (0,)),
    ("concat", lambda x, y: gc.concat([x, y], axis=1), [X, Y], (0, 1)),
    ("stack", lambda x, y: gc.stack([x, y], axis=0), [X, Y], (0, 1)),
    ("split", lambda x: gc.split(x, 2, axis=1), [X], (0,)),
    ("take", lambda x, i: gc.take(x, i, axis=1), [X, _ints(5)], (0,)),
    ("take_rows", lambda x, i: gc.take(x, i, axis=0), [X, _ints(2, 2, high=3)], (0,)),
    ("getitem", lambda x: x[1:, ::2], [X], (0,)),
    ("getitem_int", lambda x: x[:, 2], [X], (0,)),
    ("getitem_tensor", lambda x, i: x[i], [X, _ints(4, high=3)], (0,)),
    ("slice", lambda x: gc.slice(x, (0, 1), (2, 4)), [X], (0,)),
    ("pad", lambda x: gc.pad(x, ((1, 0), (0, 2)), 0.5), [X], (0,)),
    # linear algebra, nn
    ("matmul", gc.matmul, [X, _f32(4, 5)], (0, 1)),
    ("matvec", gc.matmul, [X, _f32(4)], (0, 1)),
    ("batched_matmul", gc.matmul, [_f32(2, 3, 4), _f32(2, 4, 5)], (0, 1)),
    ("softmax", gc.softmax, [X], (0,)), ("log_softmax", gc.log_softmax, [X], (0,)),
    ("layer_norm", lambda x, g, b: gc.layer_norm(x, g, b), [X, _f32(4), _f32(4)],
     (0, 1, 2)),
    ("conv2d", lambda x, w: gc.conv2d(x, w, padding=1), [IMG, KER], (0, 1)),
    ("conv2d_stride_bias", lambda x, w, b: gc.conv2d(x, w, b, stride=2),
     [IMG, KER, _f32(4)], (0, 1, 2)),
    ("conv2d_groups", lambda x, w: gc.conv2d(x, w, groups=3), [_f32(2, 3, 6, 6),
                                                              _f32(6, 1, 3, 3)], (0, 1)),
    ("max_pool2d", lambda x: gc.max_pool2d(x, 2), [IMG], (0,)),
    ("avg_pool2d", lambda x: gc.avg_pool2d(x, 3, 2, 1), [IMG], (0,)),
    ("global_pools", lambda x: gc.global_avg_pool2d(x) + gc.global_max_pool2d(x), [IMG],
     (0,)),
    ("embedding", lambda i, w: gc.embedding(i, w), [_ints(2, 3), _f32(4, 5)], (1,)),
    ("one_hot", lambda i: gc.one_hot(i, 5), [_ints(2, 3)], ()),
    ("cross_entropy", lambda x, y: gc.softmax_cross_entropy(x, y), [X, _ints(3)], (0,)),
    ("batch_norm_infer", lambda x, g, b, m, v: gc.batch_norm(x, g, b, m, v),
     [IMG, _f32(3), _f32(3), _f32(3), _pos(3)], (0, 1, 2)),
]


def _run(fn, arrays, device):
    tensors = [gc.array(a, device=device) for a in arrays]
    for t in tensors:
        assert t.device == as_device(device)
    return _outs(fn(*tensors))


@pytest.mark.parametrize("name, fn, arrays, wrt", CASES, ids=[c[0] for c in CASES])
def test_op_on_gpu_matches_cpu(name, fn, arrays, wrt):
    want = _run(fn, arrays, "cpu")
    got = _run(fn, arrays, GPU)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.device == GPU, f"{name}: result on {g.device}"
        _close(g.numpy(), w.numpy(), name)


def _weighted_grads(fn, arrays, wrt, device, weights):
    tensors = [gc.array(a, device=device) for a in arrays]
    for i in wrt:
        tensors[i].attach_grad()
    with autograd.record():
        outs = _outs(fn(*tensors))
        total = None
        for o, w in zip(outs, weights):
            if o.dtype.kind != "f":
                continue
            term = gc.sum(o.astype("float32") * gc.array(w, device=device))
            total = term if total is None else total + term
    total.backward()
    return [tensors[i].grad for i in wrt]


@pytest.mark.parametrize("name, fn, arrays, wrt", [c for c in CASES if c[3]],
                         ids=[c[0] for c in CASES if c[3]])
def test_gradients_on_gpu_match_cpu(name, fn, arrays, wrt):
    outs = _run(fn, arrays, "cpu")
    rng = np.random.default_rng(1)
    weights = [rng.uniform(-1, 1, o.shape).astype(np.float32) for o in outs]
    want = _weighted_grads(fn, arrays, wrt, "cpu", weights)
    got = _weighted_grads(fn, arrays, wrt, GPU, weights)
    for i, g, w in zip(wrt, got, want):
        assert g is not None and g.device == GPU, f"{name}: grad of input {i}"
        _close(g.numpy(), w.numpy(), f"{name}: grad of input {i}")


# -- tensors ----------------------------------------------------------------------------------

def test_array_to_and_back():
    import cupy
    a = _f32(3, 4)
    x = gc.array(a, device="cuda")
    assert x.device == GPU and isinstance(x._data, cupy.ndarray)
    assert x.to(GPU) is x and x.to("cuda:0") is x
    back = x.to("cpu")
    assert back.device == gc.cpu() and isinstance(back._data, np.ndarray)
    np.testing.assert_array_equal(back.numpy(), a)
    np.testing.assert_array_equal(np.asarray(x), a)
    assert x.tolist() == a.tolist() and x[0, 0].item() == a[0, 0]
    assert "device=gpu(0)" in repr(x)
    assert float(gc.sum(x)) == pytest.approx(float(a.sum()), rel=1e-5)
    assert bool(x[0, 0] == x[0, 0]) and int(gc.array(3, device=GPU)) == 3
    y = gc.array(x)  # a GPU tensor stays on the GPU
    assert y.device == GPU
    assert x.copyto(gc.cpu()).device == gc.cpu()
    dst = gc.zeros((3, 4), device=GPU)
    x.copyto(dst)
    np.testing.assert_array_equal(dst.numpy(), a)
    host = gc.zeros((3, 4))
    x.copyto(host)
    np.testing.assert_array_equal(host.numpy(), a)


def test_creation_on_gpu():
    for t, want in [(gc.zeros((2, 3), device=GPU), np.zeros((2, 3), np.float32)),
                    (gc.ones(4, dtype="int32", device="cuda"), np.ones(4, np.int32)),
                    (gc.full((2,), 2.5, device=GPU), np.full(2, 2.5, np.float32)),
                    (gc.arange(5, device=GPU), np.arange(5)),
                    (gc.zeros_like(gc.ones((2,), device=GPU)), np.zeros(2, np.float32))]:
        assert t.device == GPU
        _close(t.numpy(), want)


def test_random_is_the_same_on_every_device():
    gc.random.seed(7)
    a = gc.random.normal(shape=(5, 3), device=GPU)
    gc.random.seed(7)
    b = gc.random.normal(shape=(5, 3))
    assert a.device == GPU
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_dropout_draws_the_same_mask_on_every_device():
    x = _f32(64, 32)
    gc.random.seed(3)
    a = gc.dropout(gc.array(x, device=GPU), 0.5, training=True)
    gc.random.seed(3)
    b = gc.dropout(gc.array(x), 0.5, training=True)
    assert a.device == GPU
    _close(a.numpy(), b.numpy(), "dropout")


def test_mixed_devices_are_an_error_naming_both():
    x, y = gc.ones((3,), device=GPU), gc.ones((3,))
    with pytest.raises(gc.DeviceError) as err:
        x + y
    assert "gpu(0)" in str(err.value) and "cpu" in str(err.value)
    with pytest.raises(gc.DeviceError):
        gc.matmul(gc.ones((2, 2)), gc.ones((2, 2), device=GPU))
    # scalars and 0-d CPU tensors follow the other operand, as in PyTorch
    z = x * gc.array(2.0) + 1
    assert z.device == GPU
    np.testing.assert_array_equal(z.numpy(), [3, 3, 3])


def test_autograd_on_gpu():
    a = _f32(4, 3)
    x = gc.array(a, device=GPU)
    x.attach_grad()
    assert x.grad.device == GPU
    with autograd.record():
        y = gc.sum(gc.tanh(x) * x)
    y.backward()
    want = np.tanh(a) + a * (1 - np.tanh(a) ** 2)
    assert x.grad.device == GPU
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-5, atol=1e-6)
    g = gc.grad(lambda t: gc.sum(t * t))(x)
    assert g.device == GPU
    np.testing.assert_allclose(g.numpy(), 2 * a, rtol=1e-6)


def test_gradient_flows_back_through_a_move():
    a = _f32(3)
    x = gc.array(a)
    x.attach_grad()
    with autograd.record():
        y = gc.sum(x.to(GPU) * 2).to("cpu")
    y.backward()
    assert x.grad.device == gc.cpu()
    np.testing.assert_array_equal(x.grad.numpy(), [2, 2, 2])


# -- blocks and training ------------------------------------------------------------------------

def _mlp():
    net = nn.HybridSequential()
    net.add(nn.Dense(16, activation="relu"), nn.Dense(8, activation="tanh"), nn.Dense(4))
    return net


def _lenet():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, kernel_size=3, padding=1, activation="relu"),
            nn.MaxPool2D(pool_size=2),
            nn.Conv2D(8, kernel_size=3, activation="relu"),
            nn.BatchNorm(),
            nn.Flatten(),
            nn.Dense(16, activation="relu"),
            nn.Dropout(0.25),
            nn.Dense(4))
    return net


def _train(make, x, y, device, optimizer, steps=3, hybridize=False):
    """Losses and final parameters of ``steps`` Trainer steps from seed 0 on ``device``."""
    gc.random.seed(0)
    net = make()
    net.initialize(device=device)
    if hybridize:
        net.hybridize()
    trainer = gc.Trainer(net.collect_params(), optimizer, {"learning_rate": 0.05})
    loss_fn = gc.loss.SoftmaxCrossEntropyLoss()
    xd, yd = gc.array(x, device=device), gc.array(y, device=device)
    losses = []
    for _ in range(steps):
        with autograd.record():
            loss = loss_fn(net(xd), yd)
        loss.backward()
        trainer.step(x.shape[0])
        losses.append(float(gc.mean(loss)))
    params = {k: p.data() for k, p in net.collect_params().items()}
    for k, p in params.items():
        assert p.device == as_device(device), k
    return losses, {k: p.numpy() for k, p in params.items()}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mlp_trains_the_same_on_gpu_and_cpu(optimizer):
    x, y = _f32(8, 10), _ints(8)
    cpu_losses, cpu_params = _train(_mlp, x, y, "cpu", optimizer)
    gpu_losses, gpu_params = _train(_mlp, x, y, GPU, optimizer)
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-4, atol=1e-5)
    for k in cpu_params:
        np.testing.assert_allclose(gpu_params[k], cpu_params[k], rtol=1e-4, atol=1e-5,
                                   err_msg=k)


def test_lenet_trains_the_same_on_gpu_and_cpu():
    x, y = _f32(4, 1, 12, 12), _ints(4)
    cpu_losses, cpu_params = _train(_lenet, x, y, "cpu", "sgd")
    gpu_losses, gpu_params = _train(_lenet, x, y, GPU, "sgd")
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-4, atol=1e-5)
    for k in cpu_params:
        np.testing.assert_allclose(gpu_params[k], cpu_params[k], rtol=1e-3, atol=1e-4,
                                   err_msg=k)


def test_net_to_gpu_and_back():
    net = _mlp()
    net.initialize()
    x = _f32(2, 10)
    want = net(gc.array(x)).numpy()
    assert net.to(GPU) is net
    for p in net.collect_params().values():
        assert p.data().device == GPU and p.grad().device == GPU
    out = net(gc.array(x, device=GPU))
    assert out.device == GPU
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(gc.DeviceError):
        net(gc.array(x))  # CPU input, GPU weights
    net.reset_ctx("cpu")
    for p in net.collect_params().values():
        assert p.data().device == gc.cpu()
    np.testing.assert_allclose(net(gc.array(x)).numpy(), want, rtol=1e-6)


def test_deferred_initialization_lands_on_the_gpu():
    net = _mlp()
    net.initialize()
    net.to(GPU)  # shapes unknown yet: the first forward initializes on the GPU
    out = net(gc.array(_f32(2, 10), device=GPU))
    assert out.device == GPU
    assert all(p.data().device == GPU for p in net.collect_params().values())


def test_trainer_state_follows_a_moved_net():
    x, y = _f32(8, 10), _ints(8)
    net = _mlp()
    net.initialize()
    trainer = gc.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1,
                                                       "momentum": 0.9})
    loss_fn = gc.loss.SoftmaxCrossEntropyLoss()
    for device in ("cpu", GPU, GPU):
        net.to(device)
        with autograd.record():
            loss = loss_fn(net(gc.array(x, device=device)), gc.array(y, device=device))
        loss.backward()
        trainer.step(8)
    assert trainer.optimizer.num_update == 3


def test_save_and_load_parameters_onto_the_gpu(tmp_path):
    net = _mlp()
    net.initialize()
    x = _f32(2, 10)
    want = net(gc.array(x)).numpy()
    net.save_parameters(tmp_path / "p.safetensors")
    other = _mlp()
    other.load_parameters(tmp_path / "p.safetensors", device=GPU)
    np.testing.assert_allclose(other(gc.array(x, device=GPU)).numpy(), want, rtol=1e-5,
                               atol=1e-6)


# -- DLPack ----------------------------------------------------------------------------------

def test_dlpack_with_cupy_is_zero_copy():
    import cupy
    a = cupy.arange(6, dtype=cupy.float32).reshape(2, 3)
    t = gc.from_dlpack(a)
    assert t.device == GPU and t.__dlpack_device__()[0] == 2
    a[0, 0] = 42
    assert t.numpy()[0, 0] == 42
    b = cupy.from_dlpack(t)
    b[1, 2] = -1
    assert float(a[1, 2]) == -1
    c = cupy.asarray(t)  # through __cuda_array_interface__
    assert c.data.ptr == a.data.ptr
    assert gc.array(a).device == GPU


def test_dlpack_with_torch_cuda():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    a = torch.arange(6, dtype=torch.float32, device="cuda").reshape(2, 3)
    t = gc.from_dlpack(a)
    assert t.device == GPU and t.shape == (2, 3)
    a[0, 0] = 42
    torch.cuda.synchronize()
    assert t.numpy()[0, 0] == 42
    back = torch.from_dlpack(t)
    assert back.device.type == "cuda" and back.data_ptr() == a.data_ptr()
    np.testing.assert_array_equal(gc.array(a).numpy(), a.cpu().numpy())
