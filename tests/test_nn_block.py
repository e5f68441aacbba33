"""Blocks and parameters: registration, names, deferred init, save/load, containers."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import autograd, nn
from graphc import init as gc_init


class Lin(nn.HybridBlock):
    """A tiny Dense written with ops: the weight's in_units are known at the first call."""

    def __init__(self, units: int, in_units: int = 0, init=None):
        super().__init__()
        self.weight = nn.Parameter("weight", shape=(units, in_units), init=init)
        self.bias = nn.Parameter("bias", shape=(units,), init="zeros")

    def forward(self, x):
        self.weight.shape = (self.weight.shape[0], x.shape[1])
        return gc.matmul(x, self.weight.data().T) + self.bias.data()


class Net(nn.Block):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential()
        self.encoder.add(Lin(4), Lin(3))
        self.scale = nn.Parameter("scale", shape=(1,), init="ones")
        self.head = Lin(2)

    def forward(self, x):
        return self.head(gc.relu(self.encoder(x)) * self.scale.data())


def _x(n=5, d=6, seed=0):
    return gc.array(np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32))


def test_registration_order_and_names():
    net = Net()
    names = list(net.collect_params())
    # own parameters first, then children in assignment order (Gluon's order)
    assert names == ["scale", "encoder.0.weight", "encoder.0.bias", "encoder.1.weight",
                     "encoder.1.bias", "head.weight", "head.bias"]
    assert list(net.params) == ["scale"]
    assert list(net.collect_params("encoder.*weight")) == ["encoder.0.weight",
                                                          "encoder.1.weight"]
    assert list(net.collect_params(".*bias")) == ["encoder.0.bias", "encoder.1.bias",
                                                  "head.bias"]
    assert net.encoder[1] is net.encoder._children["1"]


def test_reassigning_replaces_and_shared_parameters_appear_once():
    a, b = Lin(3, 2), Lin(3, 2)
    b.weight = a.weight
    net = nn.Sequential()
    net.add(a, b)
    assert list(net.collect_params()) == ["0.weight", "0.bias", "1.bias"]
    tied = Lin(3, 2)
    with pytest.raises(gc.GraphcError, match="cannot share parameter 'weight' of shape"):
        Lin(4, 2, init=None).share_parameters({"weight": a.weight})
    tied.share_parameters(a.collect_params("weight"))
    assert tied.weight is a.weight


def test_gluon1_params_keyword_ties_weights():
    a = Lin(3, 2)

    class Tied(nn.HybridBlock):
        def __init__(self, params=None):
            super().__init__(params=params)
            self.weight = nn.Parameter("weight", shape=(3, 2))

    assert Tied(params=a.params).weight is a.weight


def test_deferred_initialization():
    net = Lin(3)
    net.initialize()
    assert net.weight.shape == (3, 0) and not net.weight.initialized
    assert net.bias.initialized
    with pytest.raises(nn.DeferredInitializationError, match="'weight'.*first forward"):
        net.weight.data()
    out = net(_x(d=6))
    assert out.shape == (5, 3) and net.weight.shape == (3, 6)
    assert np.all(np.abs(net.weight.data().numpy()) <= 0.07)
    with pytest.raises(gc.GraphcError, match=r"'weight'.*\(3, 7\).*known shape \(3, 6\)"):
        net.weight.shape = (3, 7)


def test_uninitialized_parameter_error():
    with pytest.raises(nn.DeferredInitializationError, match="call block.initialize"):
        Lin(3, 2)(_x(d=2))


def test_initialize_precedence_and_force_reinit():
    gc.random.seed(0)
    net = Lin(3, 4, init=gc_init.Constant(2.0))
    net.initialize(init="zeros")
    w = net.weight.data()
    assert w.numpy().min() == w.numpy().max() != 0          # own init beats the argument
    np.testing.assert_array_equal(net.bias.data().numpy(), 0)
    w._data[...] = 5.0
    net.initialize()                                        # already initialized: kept
    assert net.weight.data().numpy()[0, 0] == 5.0
    net.weight.init = None
    net.initialize(init="ones", force_reinit=True)
    np.testing.assert_array_equal(net.weight.data().numpy(), 1.0)
    other = Lin(3, 4)
    other.initialize()                                      # default Uniform(0.07)
    v = other.weight.data().numpy()
    assert v.dtype == np.float32 and 0 < np.abs(v).max() <= 0.07


def test_initializer_names_apply_to_global_not_own_initializers():
    own = nn.Parameter("bias", shape=(50,), init=gc_init.Normal(1.0))
    own.initialize(init="zeros")
    assert own.data().numpy().std() > 0.5           # its own rule, though named 'bias'
    glob = nn.Parameter("bias", shape=(3,))
    glob.initialize(init=gc_init.Xavier())          # a global one: 'bias' gets zeros
    np.testing.assert_array_equal(glob.data().numpy(), 0)
    const = nn.Parameter("w", shape=(2,), init=3)   # a number is a Constant
    const.initialize()
    np.testing.assert_array_equal(const.data().numpy(), 3)
    with pytest.raises(gc.GraphcError, match="unknown initializer 'nope'"):
        nn.Parameter("w", shape=(2,)).initialize("nope")


def test_parameter_set_data_grad_and_identity():
    p = nn.Parameter("w", shape=(2, 3))
    p.initialize(init="zeros")
    t = p.data()
    p.set_data(np.arange(6.0).reshape(2, 3))
    assert p.data() is t and t.dtype == np.float32
    np.testing.assert_array_equal(t.numpy(), np.arange(6.0).reshape(2, 3))
    with pytest.raises(gc.GraphcError, match=r"'w': set_data got shape \(3, 2\), expected "
                                             r"\(2, 3\)"):
        p.set_data(np.zeros((3, 2)))
    np.testing.assert_array_equal(p.grad().numpy(), np.zeros((2, 3)))
    null = nn.Parameter("running_mean", shape=(2,), grad_req="null")
    null.initialize()
    with pytest.raises(gc.GraphcError, match="'running_mean' has no gradient"):
        null.grad()


def test_imperative_backward_fills_parameter_grads_and_zero_grad():
    net = Net()
    net.initialize()
    x = _x()
    with autograd.record():
        loss = gc.sum(net(x) ** 2)
    loss.backward()
    grads = {k: p.grad().numpy() for k, p in net.collect_params().items()}
    assert all(g.shape == p.shape for g, p in zip(grads.values(),
                                                  net.collect_params().values()))
    assert np.abs(grads["head.weight"]).sum() > 0
    net.zero_grad()
    assert all(np.all(p.grad().numpy() == 0) for p in net.collect_params().values())


def test_grad_req_add_accumulates():
    net = Lin(2, 3)
    net.initialize()
    net.collect_params().setattr("grad_req", "add")
    x = _x(d=3)
    for _ in range(2):
        with autograd.record():
            loss = gc.sum(net(x))
        loss.backward()
    np.testing.assert_allclose(net.bias.grad().numpy(), 2 * 5 * np.ones(2))


def test_save_load_round_trip_is_exact(tmp_path):
    net = Net()
    net.initialize()
    x = _x()
    want = net(x).numpy()
    path = tmp_path / "net.safetensors"
    net.save_parameters(path)
    other = Net()
    other.load_parameters(path)             # deferred shapes come from the file
    for (k, p), (k2, q) in zip(net.collect_params().items(), other.collect_params().items()):
        assert k == k2 and p.shape == q.shape
        np.testing.assert_array_equal(p.data().numpy(), q.data().numpy())
    np.testing.assert_array_equal(other(x).numpy(), want)
    initialized = Net()
    initialized.initialize()
    initialized(x)
    initialized.load_parameters(path)       # into existing tensors, in place
    np.testing.assert_array_equal(initialized(x).numpy(), want)


def test_load_errors_name_parameters_and_shapes(tmp_path):
    net = Lin(3, 4)
    net.initialize()
    path = tmp_path / "lin.safetensors"
    net.save_parameters(path)
    with pytest.raises(gc.GraphcError, match=r"parameter 'weight' has shape \(3, 5\) in the "
                                             r"model but shape \(3, 4\)"):
        Lin(3, 5).load_parameters(path)
    seq = nn.Sequential()
    seq.add(Lin(3, 4))
    with pytest.raises(gc.GraphcError, match="parameter '0.weight' is missing.*'bias', "
                                             "'weight'"):
        seq.load_parameters(path)
    big = Net()
    with pytest.raises(gc.GraphcError, match="parameter 'scale' is missing"):
        big.load_parameters(path)
    small = nn.Sequential()
    small.add(Lin(3, 4))
    small.initialize()
    small.save_parameters(tmp_path / "seq.safetensors")
    with pytest.raises(gc.GraphcError, match="has parameter '0.bias' that the model does "
                                             "not have"):
        Lin(3, 4).load_parameters(tmp_path / "seq.safetensors", allow_missing=True)
    partial = Net()
    partial.load_parameters(tmp_path / "seq.safetensors", allow_missing=True,
                            ignore_extra=True)
    assert not partial.scale.initialized


def test_save_uninitialized_names_the_parameter(tmp_path):
    net = Lin(3)
    net.initialize()
    with pytest.raises(nn.DeferredInitializationError, match="cannot save parameter 'weight'"):
        net.save_parameters(tmp_path / "x.safetensors")


def test_sequential_indexing_len_iter_and_slices():
    seq = nn.HybridSequential()
    blocks = [Lin(4), Lin(3), Lin(2)]
    seq.add(*blocks)
    assert len(seq) == 3 and list(seq) == blocks and seq[-1] is blocks[2]
    head = seq[:2]
    assert isinstance(head, nn.HybridSequential) and list(head) == blocks[:2]
    seq.initialize()
    x = _x()
    np.testing.assert_array_equal(seq(x).numpy(), seq[2](head(x)).numpy())
    assert "(0): Lin()" in repr(seq) and repr(seq).startswith("HybridSequential(")


def test_sequential_passes_extra_outputs_on():
    class Two(nn.Block):
        def forward(self, x):
            return x + 1, x * 2

    class Add(nn.Block):
        def forward(self, x, y):
            return x + y

    seq = nn.Sequential()
    seq.add(Two(), Add())
    np.testing.assert_array_equal(seq(gc.array([1.0, 2.0])).numpy(), [4.0, 7.0])


def test_cast():
    net = Lin(3, 4)
    net.initialize()
    x = _x(d=4)
    want = net(x).numpy()
    net.cast("float64")
    assert all(p.data().dtype == np.float64 for p in net.collect_params().values())
    out = net(x.astype("float64"))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)
    net.hybridize()
    assert net(x.astype("float64")).dtype == np.float64
    net.cast("float32")
    assert net(x).dtype == np.float32


def test_plain_block_may_print_and_branch(capsys):
    class Debug(nn.Block):
        def __init__(self):
            super().__init__()
            self.lin = Lin(2, 3)

        def forward(self, x):
            y = self.lin(x)
            print("mean", float(gc.mean(y).numpy()))
            return y if float(gc.sum(y)) > -1e9 else -y

    net = Debug()
    net.initialize()
    net.hybridize()                          # a plain Block stays imperative
    net(_x(d=3))
    assert "mean" in capsys.readouterr().out
    assert net.lin._active


def test_name_scope_hybrid_forward_and_errors():
    class Old(nn.HybridBlock):
        def __init__(self):
            super().__init__()
            with self.name_scope():
                self.weight = nn.Parameter("weight", shape=(2,), init="ones")

        def hybrid_forward(self, F, x, weight):
            return F.relu(x) * weight

    net = Old()
    net.initialize()
    np.testing.assert_array_equal(net(gc.array([-1.0, 3.0])).numpy(), [0.0, 3.0])

    class Early(nn.Block):
        def __init__(self):
            self.w = 1
            super().__init__()

    with pytest.raises(gc.GraphcError, match=r"Early: call super\(\).__init__\(\) before"):
        Early()
    with pytest.raises(gc.GraphcError, match="grad_req must be"):
        nn.Parameter("w", grad_req="sometimes")
    with pytest.raises(NotImplementedError, match="must define forward"):
        nn.Block()(1)


def test_apply_and_collect_params_helpers():
    net = Net()
    seen = []
    net.apply(lambda b: seen.append(type(b).__name__))
    assert seen[-1] == "Net" and seen.count("Lin") == 3
    params = net.collect_params()
    params.initialize(init="ones")
    net(_x())
    assert net.head.weight.initialized


def test_lazy_layer_names():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchLayer'"):
        nn.NoSuchLayer  # noqa: B018
    assert gc.load is nn.load


def test_set_data_before_initialization_copies():
    # regression: the first set_data wrapped the caller's array, so in-place optimizer
    # updates wrote into it
    user = np.ones((2, 2), np.float32)
    p = nn.Parameter("w", (2, 2))
    p.set_data(user)
    p.data()._data[...] = 5
    np.testing.assert_array_equal(user, np.ones((2, 2), np.float32))
