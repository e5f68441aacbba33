"""hybridize(): compiled calls agree with imperative ones; retracing; tape; export and load."""

from __future__ import annotations

import json

import numpy as np
import pytest

import graphc as gc
from graphc import autograd, nn
from graphc.ops.nn import batch_norm_update


class Lin(nn.HybridBlock):
    def __init__(self, units: int, in_units: int = 0):
        super().__init__()
        self.weight = nn.Parameter("weight", shape=(units, in_units))
        self.bias = nn.Parameter("bias", shape=(units,), init="zeros")

    def forward(self, x):
        self.weight.shape = (self.weight.shape[0], x.shape[-1])
        return gc.matmul(x, self.weight.data().T) + self.bias.data()


class BN(nn.HybridBlock):
    """BatchNorm from ops: running statistics are updated with set_data in training."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter("gamma", shape=(channels,), init="ones")
        self.beta = nn.Parameter("beta", shape=(channels,), init="zeros")
        self.running_mean = nn.Parameter("running_mean", shape=(channels,), init="zeros",
                                         grad_req="null")
        self.running_var = nn.Parameter("running_var", shape=(channels,), init="ones",
                                        grad_req="null")

    def forward(self, x):
        args = (x, self.gamma.data(), self.beta.data(), self.running_mean.data(),
                self.running_var.data())
        if not autograd.is_training():
            return gc.batch_norm(*args, training=False)
        y, mean, var = gc.batch_norm(*args, training=True)
        new_mean, new_var = batch_norm_update(self.running_mean.data(),
                                              self.running_var.data(), mean, var)
        self.running_mean.set_data(new_mean)
        self.running_var.set_data(new_var)
        return y


class Model(nn.HybridBlock):
    """flatten -> dense -> batch norm -> relu -> dropout -> dense."""

    def __init__(self, p: float = 0.3):
        super().__init__()
        self.fc1 = Lin(8)
        self.bn = BN(8)
        self.fc2 = Lin(3)
        self.p = p

    def forward(self, x):
        h = gc.relu(self.bn(self.fc1(gc.flatten(x))))
        return self.fc2(gc.dropout(h, self.p))


def _data(*shape, seed=0):
    return gc.array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _twins(block_fn, x):
    """Two blocks with the same parameters: one stays imperative, one is hybridized."""
    gc.random.seed(1)
    a, b = block_fn(), block_fn()
    a.initialize()
    b.initialize()
    a(x)
    b(x)
    for p, q in zip(a.collect_params().values(), b.collect_params().values()):
        q.set_data(p.data().numpy())
    b.hybridize()
    return a, b


def _run(block, x, seed=7):
    gc.random.seed(seed)
    x = gc.array(x.numpy())
    x.attach_grad()
    with autograd.record():
        out = block(x)
        loss = gc.sum(out * out)
    loss.backward()
    grads = {k: p.grad().numpy().copy() for k, p in block.collect_params().items()
             if p.grad_req != "null"}
    return out.numpy(), x.grad.numpy(), grads


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_outputs_and_gradients_match_in_training_with_dropout():
    x = _data(6, 2, 3)
    eager, hybrid = _twins(Model, x)
    for step in range(3):
        oe, xe, ge = _run(eager, x, seed=step)
        oh, xh, gh = _run(hybrid, x, seed=step)
        _close(oe, oh)
        _close(xe, xh)
        assert ge.keys() == gh.keys() and len(ge) == 6
        for k in ge:
            _close(ge[k], gh[k])
        # BatchNorm running statistics written back from the compiled run, as eagerly
        for name in ("bn.running_mean", "bn.running_var"):
            _close(eager.collect_params()[name].data().numpy(),
                   hybrid.collect_params()[name].data().numpy())
    assert hybrid.bn.running_mean.data().numpy().any()
    (entry,) = hybrid._cached.values()        # one trace, in training mode
    assert [v.role for v in entry.graph.inputs].count("state") == 1   # the dropout key
    assert len(entry.traced.updates) == 2 and len(entry.diffs) == 1


def test_dropout_masks_follow_the_seed():
    class Drop(nn.HybridBlock):
        def forward(self, x):
            return gc.dropout(x, 0.5)

    x = gc.ones((64,))
    eager, hybrid = Drop(), Drop()
    hybrid.hybridize()
    with autograd.train_mode():
        gc.random.seed(3)
        a, a2 = eager(x).numpy(), eager(x).numpy()
        gc.random.seed(3)
        b, b2 = hybrid(x).numpy(), hybrid(x).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a2, b2)
    assert (a != a2).any() and (a == 0).any()
    np.testing.assert_array_equal(hybrid(x).numpy(), x.numpy())   # predict mode: identity


def test_predict_mode_matches():
    x = _data(5, 2, 3)
    eager, hybrid = _twins(Model, x)
    _close(eager(x).numpy(), hybrid(x).numpy())


def test_retrace_on_batch_size_and_training_flag_only():
    x = _data(4, 6)
    net = Lin(3)
    net.initialize()
    net.hybridize()
    net(x)
    net(_data(4, 6, seed=1))
    assert len(net._cached) == 1
    net(_data(2, 6))
    assert len(net._cached) == 2
    with autograd.train_mode():
        net(x)
    assert len(net._cached) == 3
    net(x.numpy())                  # a numpy array of the same signature: no retrace
    net(x.astype("float64"))        # another dtype: retrace (params promote)
    assert len(net._cached) == 4
    net.hybridize()                 # hybridize again: a fresh cache
    assert len(net._cached) == 0


def test_set_data_and_in_place_updates_are_seen_without_retrace():
    x = _data(4, 6)
    net = Lin(3, 6)
    net.initialize()
    net.hybridize()
    before = net(x).numpy()
    net.bias.set_data(np.full(3, 2.0))
    _close(net(x).numpy(), before + 2.0)
    net.weight.data()._data[...] *= 0     # an optimizer's in-place update
    _close(net(x).numpy(), np.full((4, 3), 2.0))
    assert len(net._cached) == 1


def test_deferred_init_at_first_hybridized_call():
    net = nn.HybridSequential()
    net.add(Lin(5), Lin(2))
    net.initialize()
    net.hybridize()
    out = net(_data(3, 4))
    assert out.shape == (3, 2) and net[0].weight.shape == (5, 4)
    assert net[1].weight.shape == (2, 5)


def test_nested_blocks_trace_into_one_graph_with_parameter_inputs():
    net = nn.HybridSequential()
    net.add(Lin(5), Lin(2))
    net[0].hybridize()              # a hybridized child inlines into its parent's trace
    net.initialize()
    net.hybridize()
    net(_data(3, 4))
    (entry,) = net._cached.values()
    graph = entry.graph
    assert [(v.name, v.role) for v in graph.inputs if v.role != "constant"] == [
        ("data", "data"), ("0.weight", "parameter"), ("0.bias", "parameter"),
        ("1.weight", "parameter"), ("1.bias", "parameter")]
    assert len(net[0]._cached) == 0


def test_gradients_to_inputs_only_and_several_inputs_and_outputs():
    class Two(nn.HybridBlock):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter("w", shape=(3,), grad_req="null")

        def forward(self, a, b):
            s = a * self.w.data() + gc.exp(b)
            return s, gc.sum(s * a, axis=0), gc.argmax(s, axis=1)

    def run(block):
        a, b = _data(2, 3), _data(2, 3, seed=1)
        a.attach_grad()
        b.attach_grad()
        with autograd.record():
            s, t, i = block(a, b)
            loss = gc.sum(s) + gc.sum(t * t)
        loss.backward()
        return s.numpy(), t.numpy(), i.numpy(), a.grad.numpy(), b.grad.numpy()

    eager, hybrid = Two(), Two()
    for blk in (eager, hybrid):
        blk.initialize(init="ones")
    hybrid.hybridize()
    for u, v in zip(run(eager), run(hybrid)):
        _close(u, v)
    (entry,) = hybrid._cached.values()
    assert [v.name for v in entry.graph.data_inputs] == ["data0", "data1"]
    assert list(entry.diffs) == [(0, 1)]     # w has grad_req 'null': not differentiated


def test_one_tape_entry_and_backward_twice_with_retain_graph():
    net = Model()
    net.initialize()
    net.hybridize()
    x = _data(4, 6)
    with autograd.record():
        out = net(x)
    entry = out._node
    assert isinstance(entry, autograd.Entry) and entry.name == "Model"
    assert all(t._node.__class__ is autograd.Leaf for t in entry.inputs)
    out.backward(retain_graph=True)
    first = net.fc1.weight.grad().numpy().copy()
    out.backward()
    _close(net.fc1.weight.grad().numpy(), first)


def test_hybridized_block_prints_once_at_trace(capsys):
    class Loud(nn.HybridBlock):
        def forward(self, x):
            print("tracing", x.shape)
            return x * 2

    net = Loud()
    net.hybridize()
    for _ in range(3):
        net(_data(2))
    assert capsys.readouterr().out.count("tracing") == 1
    with pytest.raises(gc.TraceError, match="needs the value of a traced tensor"):
        class Branch(nn.HybridBlock):
            def forward(self, x):
                return x if float(gc.sum(x)) > 0 else -x

        b = Branch()
        b.hybridize()
        b(_data(2))


def test_export_then_load_runs_at_other_batch_sizes(tmp_path):
    x64 = _data(64, 2, 3)
    net = Model()
    net.initialize()
    with autograd.record():            # train a little so running stats are not trivial
        net(x64)
    net.hybridize()
    net(x64)
    prefix = tmp_path / "model"
    net.export(prefix)
    doc = json.loads((tmp_path / "model-graph.json").read_text())
    roles = {r["name"]: r["role"] for r in doc["inputs"]}
    assert roles["data"] == "data"
    assert {k for k, r in roles.items() if r == "parameter"} == set(net.collect_params())
    loaded = gc.load(prefix)
    assert isinstance(loaded, nn.SymbolBlock)
    assert list(loaded.collect_params()) == [k for k in net.collect_params()
                                             if k in loaded.collect_params()]
    net.hybridize(False)
    for n in (1, 64, 100):
        x = _data(n, 2, 3, seed=n)
        _close(loaded(x).numpy(), net(x).numpy())
        assert loaded(x.numpy()).shape == (n, 3)
    also = nn.SymbolBlock.imports(str(prefix) + "-graph.json", ["data"],
                                  str(prefix) + "-params.safetensors")
    _close(also(x).numpy(), net(x).numpy())


def test_export_names_several_inputs_and_gradients_flow_through_loaded_block(tmp_path):
    class Pair(nn.HybridBlock):
        def __init__(self):
            super().__init__()
            self.fc = Lin(2)

        def forward(self, a, b):
            return self.fc(a) - gc.sum(b, axis=1, keepdims=True)

    net = Pair()
    net.initialize()
    net.hybridize()
    a, b = _data(4, 3), _data(4, 5)
    want = net(a, b).numpy()
    net.export(tmp_path / "pair")
    loaded = gc.load(tmp_path / "pair")
    assert [v.name for v in loaded.graph.data_inputs] == ["data0", "data1"]
    _close(loaded(a, b).numpy(), want)
    with autograd.record():
        loss = gc.sum(loaded(a, b))
    loss.backward()
    _close(loaded.collect_params()["fc.bias"].grad().numpy(), np.full(2, 4.0))


def test_export_and_load_errors(tmp_path):
    net = Lin(3)
    net.initialize()
    with pytest.raises(gc.GraphcError, match="Lin.export: call hybridize"):
        net.export(tmp_path / "x")
    net.hybridize()
    net(_data(2, 4))
    net.export(tmp_path / "x")
    with pytest.raises(gc.GraphcError, match=r"input_names \['x'\] do not match.*\['data'\]"):
        nn.SymbolBlock.imports(str(tmp_path / "x-graph.json"), ["x"],
                               str(tmp_path / "x-params.safetensors"))
    other = nn.HybridSequential()
    other.add(Lin(3, 4))
    other.initialize()
    other.save_parameters(tmp_path / "other.safetensors")
    with pytest.raises(gc.GraphcError, match="parameter 'weight'.*missing"):
        nn.SymbolBlock.imports(str(tmp_path / "x-graph.json"), ["data"],
                               str(tmp_path / "other.safetensors"))
    loaded = gc.load(tmp_path / "x")
    with pytest.raises(gc.GraphcError, match="SymbolBlock: input 'data' has shape \\(4,\\)"):
        loaded(np.ones(4, np.float32))
    with pytest.raises(gc.ShapeError, match="matmul"):
        loaded(np.ones((2, 5), np.float32))
