"""Devices on a machine without a GPU: parsing, moves that are no-ops on the CPU, DLPack
exchange with numpy (and torch when it is importable), Gluon's device names on tensors,
parameters and blocks, and the jit/hybridize signature carrying the device.

What needs a GPU is in tests/test_gpu_eager.py (marked ``gpu``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
from graphc import autograd, nn
from graphc.device import as_device, device_of, move, to_host
from graphc.trace import backend_for, trace_device

# -- devices ----------------------------------------------------------------------------

@pytest.mark.parametrize("spec, want", [
    ("cpu", gc.cpu()), ("CPU", gc.cpu()), ("cpu:0", gc.cpu()), (None, gc.cpu()),
    ("cuda", gc.gpu(0)), ("gpu", gc.gpu(0)), ("cuda:1", gc.gpu(1)), ("gpu:2", gc.gpu(2)),
    ("gpu(1)", gc.gpu(1)), (str(gc.gpu(3)), gc.gpu(3)), (gc.gpu(1), gc.gpu(1)),
])
def test_device_parsing(spec, want):
    assert as_device(spec) == want


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "cpu:1", "gpu:-1", 3])
def test_unknown_devices_are_refused(spec):
    with pytest.raises(gc.BackendError, match="unknown device"):
        as_device(spec)


def test_import_graphc_does_not_import_cupy():
    code = "import sys, graphc; assert 'cupy' not in sys.modules, 'cupy imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gpu_namespace_without_cupy_says_how_to_install():
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(gc.BackendError, match=r"graphc\[gpu\]"):
            _ = gc.gpu().xp
    else:
        pytest.skip("cupy is installed here")


def test_device_error_is_a_graphc_error():
    assert issubclass(gc.DeviceError, gc.GraphcError)


# -- moves on the CPU -----------------------------------------------------------------------

def test_to_the_same_device_is_no_copy():
    x = gc.array(np.arange(6, dtype=np.float32))
    for spec in ("cpu", gc.cpu(), "cpu:0"):
        assert x.to(spec) is x
        assert x.as_in_context(spec) is x
    assert x.device == gc.cpu() and x.context == gc.cpu() and x.ctx == gc.cpu()
    y = x.to("cpu", copy=True)
    assert y is not x and not np.shares_memory(y.numpy(), x.numpy())
    np.testing.assert_array_equal(y.numpy(), x.numpy())


def test_copyto_a_device_copies_and_copyto_a_tensor_writes_into_it():
    x = gc.array(np.arange(4, dtype=np.float32))
    y = x.copyto(gc.cpu())
    assert y is not x and not np.shares_memory(y.numpy(), x.numpy())
    dst = gc.zeros((4,), dtype="float64")
    assert x.copyto(dst) is dst
    np.testing.assert_array_equal(dst.numpy(), [0, 1, 2, 3])
    assert dst.dtype == np.float64
    with pytest.raises(gc.ShapeError):
        x.copyto(gc.zeros((3,)))


def test_to_records_for_autograd():
    x = gc.array(np.array([1.0, 2.0], np.float32))
    x.attach_grad()
    with autograd.record():
        y = (x.to("cpu", copy=True) * 3).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3, 3])


def test_to_while_tracing_stays_on_the_trace_device():
    @gc.jit
    def f(x):
        return x.to("cpu") * 2

    np.testing.assert_array_equal(f(gc.ones((3,))).numpy(), [2, 2, 2])

    @gc.jit
    def g(x):
        return x.to("cuda") * 2

    with pytest.raises(gc.TraceError, match="one device"):
        g(gc.ones((3,)))


def test_array_and_move_on_the_cpu_do_not_copy_arrays():
    a = np.arange(3, dtype=np.float32)
    assert gc.array(a, device="cpu").numpy() is a
    assert move(a, gc.cpu()) is a and to_host(a) is a
    assert device_of(a) == gc.cpu() and device_of([1, 2]) == gc.cpu()
    assert gc.array([1.0, 2.0], device=gc.cpu()).dtype == np.float32


def test_creation_and_random_take_a_device():
    for t in (gc.zeros((2,), device="cpu"), gc.ones(2, device=gc.cpu()),
              gc.full((2,), 3, device="cpu"), gc.arange(3, device="cpu"),
              gc.random.normal(shape=(2,), device="cpu")):
        assert t.device == gc.cpu()


def test_python_scalars_and_0d_cpu_tensors_mix_with_any_tensor():
    x = gc.ones((3,))
    np.testing.assert_array_equal((2 * x + gc.array(1.0)).numpy(), [3, 3, 3])


# -- DLPack -----------------------------------------------------------------------------------

def test_dlpack_round_trip_with_numpy_shares_memory():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = gc.from_dlpack(a)
    assert isinstance(t, gc.Tensor) and t.shape == (3, 4) and t.dtype == np.float32
    assert np.shares_memory(t.numpy(), a)
    assert t.__dlpack_device__() == (1, 0)
    b = np.from_dlpack(t)
    assert np.shares_memory(b, a)
    a[0, 0] = 42
    assert t.numpy()[0, 0] == 42 and b[0, 0] == 42
    assert gc.from_dlpack(t) is t


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int64",
                                   "bool"])
def test_dlpack_round_trip_dtypes(dtype):
    a = (np.arange(6) % 2).astype(dtype)
    t = gc.from_dlpack(a)
    assert t.dtype == a.dtype
    np.testing.assert_array_equal(np.from_dlpack(t), a)


def test_dlpack_of_a_result_and_of_a_view():
    t = gc.arange(10, dtype="float32") * 2
    np.testing.assert_array_equal(np.from_dlpack(t), np.arange(10) * 2)
    v = gc.from_dlpack(np.arange(10, dtype=np.float32)[::2])
    np.testing.assert_array_equal(v.numpy(), [0, 2, 4, 6, 8])
    np.testing.assert_array_equal((v + 1).numpy(), [1, 3, 5, 7, 9])


def test_from_dlpack_refuses_dtypes_graphc_lacks():
    with pytest.raises(gc.DTypeError, match="uint8"):
        gc.from_dlpack(np.zeros(3, np.uint8))


def test_from_dlpack_refuses_objects_without_the_protocol():
    with pytest.raises(gc.DeviceError, match="__dlpack__"):
        gc.from_dlpack([1, 2, 3])


def test_dlpack_of_a_traced_tensor_is_a_trace_error():
    @gc.jit
    def f(x):
        np.from_dlpack(x)
        return x

    with pytest.raises(gc.TraceError):
        f(gc.ones((2,)))


def test_cpu_tensors_have_no_cuda_array_interface():
    assert not hasattr(gc.ones((2,)), "__cuda_array_interface__")


def test_dlpack_with_torch_on_the_cpu():
    torch = pytest.importorskip("torch", reason="torch is not installed (optional peer)")
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    t = gc.from_dlpack(a)
    assert t.shape == (2, 3) and t.dtype == np.float32
    a[0, 0] = 7
    assert t.numpy()[0, 0] == 7  # shared
    back = torch.from_dlpack(t)
    back[1, 2] = -1
    assert t.numpy()[1, 2] == -1 and a[1, 2].item() == -1
    assert gc.array(a).shape == (2, 3)


# -- parameters and blocks ----------------------------------------------------------------

def _mlp():
    net = nn.HybridSequential()
    net.add(nn.Dense(8, activation="relu"), nn.Dense(3))
    return net


def test_block_to_returns_the_block_and_keeps_cpu_parameters_in_place():
    net = _mlp()
    net.initialize(device="cpu")
    net(gc.ones((2, 5)))
    before = {k: p.data() for k, p in net.collect_params().items()}
    assert net.to("cpu") is net
    net.reset_ctx(gc.cpu())
    for k, p in net.collect_params().items():
        assert p.data() is before[k] and p.device == gc.cpu()
        assert p.list_ctx() == [gc.cpu()]


def test_deferred_parameters_remember_the_device_they_are_moved_to():
    net = _mlp()
    net.initialize()
    net.to("cpu")
    p = net.collect_params()["0.weight"]
    assert not p.initialized and p.device == gc.cpu()
    net(gc.ones((2, 5)))
    assert p.initialized and p.device == gc.cpu()


def test_parameter_data_on_a_device_and_set_data_from_a_tensor():
    p = nn.Parameter("w", shape=(2, 2), init="ones")
    p.initialize()
    assert p.data("cpu") is p.data()
    p.set_data(gc.array(np.full((2, 2), 3, np.float32)))
    np.testing.assert_array_equal(p.data().numpy(), np.full((2, 2), 3))


def test_optimizer_state_follows_the_parameters():
    net = _mlp()
    net.initialize(device=gc.cpu())
    trainer = gc.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1,
                                                       "momentum": 0.9})
    x, y = gc.ones((4, 5)), gc.array(np.array([0, 1, 2, 0]))
    loss_fn = gc.loss.SoftmaxCrossEntropyLoss()
    for _ in range(2):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(4)
        net.to("cpu")  # a no-op move between steps keeps training going
    assert trainer.optimizer.num_update == 2


# -- jit and hybridize ----------------------------------------------------------------------

def test_backend_for_device():
    assert backend_for(None, gc.cpu()) is None
    assert backend_for("reference", gc.cpu()) == "reference"
    assert backend_for(None, gc.gpu()) == "cuda"
    assert backend_for("reference", gc.gpu()) == "reference"
    with pytest.raises(gc.BackendError, match="runs on the CPU"):
        backend_for("llvm", gc.gpu())


def test_trace_device_of_signatures():
    cpu, gpu = gc.cpu(), gc.gpu()
    assert trace_device([]) is None
    assert trace_device([((), "float32", cpu)]) is None  # scalars do not decide
    assert trace_device([((2,), "float32", cpu), ((), "int64", cpu)]) == cpu
    assert trace_device([((), "float32", cpu), ((2,), "float32", gpu)]) == gpu
    with pytest.raises(gc.DeviceError, match="different devices"):
        trace_device([((2,), "float32", cpu), ((2,), "float32", gpu)])


def test_the_device_is_part_of_the_jit_signature():
    from graphc.trace import _signature_leaf
    x = gc.ones((2, 3))
    assert _signature_leaf(x) == ((2, 3), "float32", gc.cpu())
    assert _signature_leaf(np.ones((2, 3), np.float32))[2] == gc.cpu()

    @gc.jit
    def f(x):
        return x + 1

    f(x)
    f(x.to("cpu"))
    assert f.cache_size == 1


def test_traced_tensors_report_the_trace_device():
    seen = []

    @gc.jit
    def f(x):
        seen.append(x.device)
        return gc.zeros(x.shape, device=x.device) + x

    f(gc.ones((2,)))
    assert seen == [gc.cpu()]


def test_hybridized_block_on_cpu_after_to_cpu():
    net = _mlp()
    net.initialize()
    net.hybridize()
    x = gc.ones((2, 5))
    a = net(x).numpy()
    net.to("cpu")
    np.testing.assert_allclose(net(x).numpy(), a)
