"""graphc.nn.rnn: cells and layers against an independent float64 numpy implementation
written here from the same parameters, gradients against finite differences, hybridized
against imperative runs, and the errors a user gets."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import autograd
from graphc.nn import rnn

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


# -- the numpy reference ------------------------------------------------------------------

def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_step(mode, x, states, wi, wh, bi, bh):
    """One step in float64, straight from the Gluon/cuDNN equations."""
    if mode == "lstm":
        h, c = states
        i, f, g, o = np.split(x @ wi.T + bi + h @ wh.T + bh, 4, axis=-1)
        c = _sig(f) * c + _sig(i) * np.tanh(g)
        h = _sig(o) * np.tanh(c)
        return h, [h, c]
    (h,) = states
    if mode == "gru":
        xr, xz, xn = np.split(x @ wi.T + bi, 3, axis=-1)
        hr, hz, hn = np.split(h @ wh.T + bh, 3, axis=-1)
        r, z = _sig(xr + hr), _sig(xz + hz)
        n = np.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        return h, [h]
    a = x @ wi.T + bi + h @ wh.T + bh
    h = np.tanh(a) if mode == "rnn_tanh" else np.maximum(a, 0)
    return h, [h]


def np_layer(mode, x, params, num_layers, dirs, states, layout):
    """A whole layer: returns (output in ``layout``, final states [(L*D, N, H), ...])."""
    x = np.asarray(x, np.float64)
    if layout == "NTC":
        x = x.transpose(1, 0, 2)
    steps, batch = x.shape[:2]
    n_states = 2 if mode == "lstm" else 1
    hidden = params["l0_h2h_weight"].shape[1]
    finals = [[] for _ in range(n_states)]
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            k, pre = layer * dirs + d, f"{'lr'[d]}{layer}_"
            w = [params[pre + n] for n in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")]
            st = ([np.asarray(s[k], np.float64) for s in states] if states is not None
                  else [np.zeros((batch, hidden))] * n_states)
            seq = [None] * steps
            for t in (reversed(range(steps)) if d else range(steps)):
                seq[t], st = np_step(mode, x[t], st, *w)
            outs.append(np.stack(seq))
            for i, s in enumerate(st):
                finals[i].append(s)
        x = np.concatenate(outs, axis=-1)
    if layout == "NTC":
        x = x.transpose(1, 0, 2)
    return x, [np.stack(f) for f in finals]


# -- helpers ------------------------------------------------------------------------------

def randomize(block, seed=0, scale=0.6) -> dict:
    """Give every parameter random values (biases too: their placement matters) and
    return them as float64 numpy arrays by name."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, p in block.collect_params().items():
        value = rng.uniform(-scale, scale, p.shape)
        p.set_data(value.astype(p.dtype))
        out[name] = np.asarray(p.data().numpy(), np.float64)
    return out


def make_layer(mode, hidden=3, dtype="float64", input_size=4, **kw):
    if mode.startswith("rnn"):
        kw["activation"] = mode[4:]
        cls = rnn.RNN
    else:
        cls = {"lstm": rnn.LSTM, "gru": rnn.GRU}[mode]
    layer = cls(hidden, input_size=input_size, dtype=dtype, **kw)
    layer.initialize()
    return layer


def make_cell(mode, hidden=3, dtype="float64", input_size=4):
    if mode.startswith("rnn"):
        cell = rnn.RNNCell(hidden, activation=mode[4:], input_size=input_size, dtype=dtype)
    else:
        cell = {"lstm": rnn.LSTMCell, "gru": rnn.GRUCell}[mode](
            hidden, input_size=input_size, dtype=dtype)
    cell.initialize()
    return cell


def close(got, want, dtype):
    rtol, atol = (1e-10, 1e-12) if dtype == "float64" else (2e-5, 2e-6)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=atol)


MODES = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


# -- cells --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode", MODES)
def test_cell_matches_numpy(mode, dtype):
    cell = make_cell(mode, dtype=dtype)
    p = randomize(cell)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4)).astype(dtype)
    states = [rng.normal(size=(2, 3)).astype(dtype) for _ in range(2 if mode == "lstm" else 1)]
    out, new = cell(gc.array(x), [gc.array(s) for s in states])
    want, want_states = np_step(mode, x.astype(np.float64), [s.astype(np.float64)
                                                            for s in states],
                                p["i2h_weight"], p["h2h_weight"], p["i2h_bias"],
                                p["h2h_bias"])
    assert out.dtype == np.dtype(dtype) and isinstance(new, list)
    close(out, want, dtype)
    assert len(new) == len(want_states)
    for g, w in zip(new, want_states):
        close(g, w, dtype)
    if mode != "lstm":
        assert new[0] is out
    # states=None means zeros (not materialized)
    out0, _ = cell(gc.array(x), None)
    zeros = [np.zeros((2, 3))] * len(states)
    close(out0, np_step(mode, x.astype(np.float64), zeros, p["i2h_weight"],
                        p["h2h_weight"], p["i2h_bias"], p["h2h_bias"])[0], dtype)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_hybridized_cell_matches_imperative(mode):
    cell = make_cell(mode, dtype="float32")
    randomize(cell)
    rng = np.random.default_rng(17)
    x = gc.array(rng.normal(size=(2, 4)).astype(np.float32))
    states = [gc.array(rng.normal(size=(2, 3)).astype(np.float32))
              for _ in range(2 if mode == "lstm" else 1)]
    out, new = cell(x, states)
    cell.hybridize()
    out2, new2 = cell(x, states)
    for a, b in zip([out2, *new2], [out, *new]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_cell_parameters_and_deferred_input_size():
    cell = rnn.LSTMCell(5)
    assert list(cell.collect_params()) == ["i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias"]
    assert cell.i2h_weight.shape == (20, 0) and cell.h2h_weight.shape == (20, 5)
    assert cell.i2h_bias.shape == (20,) and cell.h2h_bias.shape == (20,)
    assert repr(cell) == "LSTMCell(None -> 5)"
    cell.initialize()
    x = gc.array(np.ones((2, 7), np.float32))
    out, (h, c) = cell(x, cell.begin_state(2))
    assert cell.i2h_weight.shape == (20, 7) and out.shape == h.shape == c.shape == (2, 5)
    assert repr(cell) == "LSTMCell(7 -> 5)"
    assert repr(rnn.RNNCell(4, "relu")) == "RNNCell(None -> 4, relu)"
    assert rnn.GRUCell(4, input_size=3).i2h_weight.shape == (12, 3)
    np.testing.assert_array_equal(cell.i2h_bias.data().numpy(), 0)  # Gluon's 'zeros'


def test_cell_begin_state():
    lstm, gru = rnn.LSTMCell(6), rnn.GRUCell(6)
    states = lstm.begin_state(batch_size=4)
    assert [s.shape for s in states] == [(4, 6), (4, 6)]
    assert all(s.dtype == np.float32 for s in states)
    assert lstm.state_info(4)[0]["shape"] == (4, 6)
    (h,) = gru.begin_state(3, func=gc.ones, dtype="float64")
    assert h.shape == (3, 6) and h.dtype == np.float64 and float(h.numpy().min()) == 1.0


@pytest.mark.parametrize("layout", ["NTC", "TNC"])
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_cell_unroll(mode, layout):
    cell = make_cell(mode)
    p = randomize(cell)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4, 4))  # (N, T, C)
    xin = x if layout == "NTC" else x.transpose(1, 0, 2)
    outs, states = cell.unroll(4, gc.array(xin), layout=layout, merge_outputs=True)
    want, _ = np_layer(mode, x.transpose(1, 0, 2), {"l0_" + k: v for k, v in p.items()},
                       1, 1, None, "TNC")
    close(outs, want if layout == "TNC" else want.transpose(1, 0, 2), "float64")
    # a list of steps in, a list out; states carried explicitly
    steps = [gc.array(x[:, t]) for t in range(4)]
    outs2, states2 = cell.unroll(4, steps, begin_state=cell.begin_state(3))
    assert isinstance(outs2, list) and len(outs2) == 4
    for t in range(4):
        close(outs2[t], want[t], "float64")
    for a, b in zip(states, states2):
        close(a, b.numpy(), "float64")
    # valid_length: states freeze after each sequence's end, outputs past it are zero
    lengths = np.array([4, 2, 1])
    outs3, states3 = cell.unroll(4, steps, layout="NTC", merge_outputs=True,
                                 valid_length=gc.array(lengths))
    for b, n in enumerate(lengths):
        ref, ref_states = np_layer(mode, x[b:b + 1, :n].transpose(1, 0, 2),
                                   {"l0_" + k: v for k, v in p.items()}, 1, 1, None, "TNC")
        close(outs3.numpy()[b, :n], ref[:, 0], "float64")
        assert np.all(outs3.numpy()[b, n:] == 0)
        for s, r in zip(states3, ref_states):
            close(s.numpy()[b], r[0, 0], "float64")


# -- layers -------------------------------------------------------------------------------

CONFIGS = [  # (num_layers, bidirectional, layout)
    (1, False, "TNC"), (2, False, "NTC"), (2, True, "TNC"), (1, True, "NTC")]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"L{c[0]}{'-bi' if c[1] else ''}-{c[2]}")
@pytest.mark.parametrize("mode", MODES)
def test_layer_matches_numpy(mode, config):
    num_layers, bidir, layout = config
    dirs = 2 if bidir else 1
    layer = make_layer(mode, num_layers=num_layers, bidirectional=bidir, layout=layout)
    p = randomize(layer)
    rng = np.random.default_rng(3)
    shape = (4, 2, 4) if layout == "TNC" else (2, 4, 4)
    x = rng.normal(size=shape)
    n_states = 2 if mode == "lstm" else 1
    # no states: the output only
    out = layer(gc.array(x))
    assert isinstance(out, gc.Tensor)
    want, _ = np_layer(mode, x, p, num_layers, dirs, None, layout)
    assert out.shape == shape[:2] + (3 * dirs,)
    close(out, want, "float64")
    # states given: (output, new_states)
    states = [rng.normal(size=(num_layers * dirs, 2, 3)) for _ in range(n_states)]
    out, new = layer(gc.array(x), [gc.array(s) for s in states])
    want, want_states = np_layer(mode, x, p, num_layers, dirs, states, layout)
    close(out, want, "float64")
    assert isinstance(new, list) and len(new) == n_states
    for g, w in zip(new, want_states):
        assert g.shape == (num_layers * dirs, 2, 3)
        close(g, w, "float64")


def test_layer_float32_and_single_state_tensor():
    layer = make_layer("gru", dtype="float32", num_layers=2)
    p = randomize(layer)
    x = np.random.default_rng(4).normal(size=(5, 3, 4)).astype(np.float32)
    h0 = np.random.default_rng(5).normal(size=(2, 3, 3)).astype(np.float32)
    out, (h,) = layer(gc.array(x), gc.array(h0))  # one tensor accepted for RNN/GRU
    want, (want_h,) = np_layer("gru", x, p, 2, 1, [h0], "TNC")
    assert out.dtype == np.float32
    close(out, want, "float32")
    close(h, want_h, "float32")


def test_layer_parameter_names_and_shapes_as_gluon():
    lstm = rnn.LSTM(5, num_layers=2, bidirectional=True)
    names = [f"{d}{i}_{k}" for i in range(2) for d in "lr"
             for k in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")]
    params = lstm.collect_params()
    assert list(params) == names
    assert params["l0_i2h_weight"].shape == (20, 0) and params["r0_h2h_weight"].shape == (20, 5)
    assert params["l1_i2h_weight"].shape == (20, 10) and params["r1_i2h_bias"].shape == (20,)
    assert repr(lstm) == "LSTM(None -> 5, TNC, num_layers=2, bidirectional)"
    lstm.initialize()
    lstm(gc.array(np.zeros((3, 2, 7), np.float32)))
    assert params["l0_i2h_weight"].shape == params["r0_i2h_weight"].shape == (20, 7)
    assert repr(lstm) == "LSTM(7 -> 5, TNC, num_layers=2, bidirectional)"
    gru = rnn.GRU(4, input_size=6, layout="NTC", dropout=0.5)
    assert list(gru.collect_params())[:2] == ["l0_i2h_weight", "l0_h2h_weight"]
    assert gru.l0_i2h_weight.shape == (12, 6) and gru.l0_h2h_bias.shape == (12,)
    assert repr(gru) == "GRU(6 -> 4, NTC, dropout=0.5)"
    assert rnn.RNN(3).l0_i2h_weight.shape == (3, 0)
    assert rnn.RNN(3)._mode == "rnn_relu"  # Gluon's default activation for the RNN layer


def test_layer_begin_state():
    lstm = rnn.LSTM(6, num_layers=3, bidirectional=True)
    h, c = lstm.begin_state(batch_size=4)
    assert h.shape == c.shape == (6, 4, 6) and h.dtype == np.float32
    assert lstm.state_info(4)[0] == {"shape": (6, 4, 6), "__layout__": "LNC",
                                     "dtype": "float32"}
    (h,) = rnn.GRU(5, num_layers=2).begin_state(3, func=gc.ones)
    assert h.shape == (2, 3, 5) and float(h.numpy().min()) == 1.0
    (h,) = rnn.RNN(5, dtype="float64").begin_state(2)
    assert h.dtype == np.float64 and h.shape == (1, 2, 5)
    lstm.initialize()
    lstm.cast("float64")  # states follow the parameters' dtype
    assert all(s.dtype == np.float64 for s in lstm.begin_state(2, ctx=gc.cpu()))
    # begin_state(func=gc.zeros) is the same as passing no states
    layer = make_layer("lstm", num_layers=2)
    randomize(layer)
    x = gc.array(np.random.default_rng(6).normal(size=(3, 2, 4)))
    out, _ = layer(x, layer.begin_state(2))
    np.testing.assert_allclose(out.numpy(), layer(x).numpy(), rtol=1e-12, atol=1e-14)


def test_dropout_between_layers_only_in_training():
    p_drop = 0.5
    net = make_layer("lstm", num_layers=2, dropout=p_drop)
    first, second = make_layer("lstm"), make_layer("lstm", input_size=3)
    params = randomize(net)
    for name, v in params.items():  # the same weights as two 1-layer LSTMs
        target = first if name.startswith("l0") else second
        getattr(target, "l0" + name[2:]).set_data(v)
    x = gc.array(np.random.default_rng(7).normal(size=(3, 2, 4)))
    # prediction: no dropout
    np.testing.assert_allclose(net(x).numpy(), second(first(x)).numpy(), rtol=1e-12)
    # training: the one random draw is the dropout on layer 0's output
    with autograd.train_mode():
        gc.random.seed(11)
        got = net(x).numpy()
        gc.random.seed(11)
        want = second(gc.dropout(first(x), p_drop)).numpy()
        assert not np.allclose(got, second(first(x)).numpy())
        # a single layer has no dropout at all (none after the last layer)
        one = make_layer("lstm", dropout=p_drop)
        randomize(one)
        np.testing.assert_array_equal(one(x).numpy(), one(x).numpy())
    np.testing.assert_allclose(got, want, rtol=1e-12)


# -- gradients vs finite differences --------------------------------------------------------

def _fd_check(layer, x, states, eps=1e-6):
    rng = np.random.default_rng(8)
    out_w = None

    def loss_of(xv, sv):
        out = layer(gc.array(xv), [gc.array(s) for s in sv])
        nonlocal out_w
        if out_w is None:
            out_w = [rng.normal(size=out[0].shape)] + [rng.normal(size=s.shape)
                                                       for s in out[1]]
        total = (out[0] * gc.array(out_w[0])).sum()
        for s, w in zip(out[1], out_w[1:]):
            total = total + (s * gc.array(w)).sum()
        return total

    xt = gc.array(x)
    xt.attach_grad()
    st = [gc.array(s) for s in states]
    for s in st:
        s.attach_grad()
    loss_of(x, states)  # fixes out_w
    with autograd.record():
        out = layer(xt, st)
        total = (out[0] * gc.array(out_w[0])).sum()
        for s, w in zip(out[1], out_w[1:]):
            total = total + (s * gc.array(w)).sum()
    total.backward()

    def fd(array, evaluate):
        g = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            old = array[i]
            array[i] = old + eps
            up = evaluate()
            array[i] = old - eps
            down = evaluate()
            array[i] = old
            g[i] = (up - down) / (2 * eps)
        return g

    def evaluate():
        return float(loss_of(x, states).numpy())

    for name, p in layer.collect_params().items():
        want = fd(p.data()._data, evaluate)
        np.testing.assert_allclose(p.grad().numpy(), want, rtol=1e-6, atol=1e-8, err_msg=name)
    np.testing.assert_allclose(xt.grad.numpy(), fd(x, evaluate), rtol=1e-6, atol=1e-8)
    for s, sv in zip(st, states):
        np.testing.assert_allclose(s.grad.numpy(), fd(sv, evaluate), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode,kw", [("lstm", {"bidirectional": True}),
                                     ("gru", {"num_layers": 2, "layout": "NTC"})])
def test_gradients_match_finite_differences(mode, kw):
    layer = make_layer(mode, hidden=2, input_size=2, **kw)
    randomize(layer)
    rng = np.random.default_rng(9)
    ld = 2  # num_layers * directions in both cases
    x = rng.normal(size=(3, 2, 2) if kw.get("layout", "TNC") == "TNC" else (2, 3, 2))
    states = [rng.normal(size=(ld, 2, 2)) for _ in range(2 if mode == "lstm" else 1)]
    _fd_check(layer, x, states)


def test_cell_gradient_matches_finite_differences():
    cell = make_cell("gru", hidden=2, input_size=3)
    randomize(cell)
    x = np.random.default_rng(10).normal(size=(2, 3))
    h = np.random.default_rng(11).normal(size=(2, 2))
    xt, ht = gc.array(x), gc.array(h)
    ht.attach_grad()
    with autograd.record():
        out, _ = cell(xt, [ht])
        loss = (out * out).sum()
    loss.backward()

    def f():
        o, _ = cell(gc.array(x), [gc.array(h)])
        return float((o * o).sum().numpy())

    for name, p in list(cell.collect_params().items()) + [("h", None)]:
        arr = h if p is None else p.data()._data
        want = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + 1e-6
            up = f()
            arr[i] = old - 1e-6
            want[i] = (up - f()) / 2e-6
            arr[i] = old
        got = ht.grad if p is None else p.grad()
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-8, err_msg=name)


# -- hybridized == imperative ------------------------------------------------------------------

@pytest.mark.parametrize("mode,kw", [("lstm", {"num_layers": 2, "bidirectional": True}),
                                     ("gru", {"layout": "NTC"}),
                                     ("rnn_tanh", {"num_layers": 2})])
def test_hybridized_matches_imperative(mode, kw):
    layer = make_layer(mode, dtype="float32", **kw)
    randomize(layer)
    rng = np.random.default_rng(12)
    x = rng.normal(size=(4, 3, 4) if kw.get("layout", "TNC") == "TNC" else (3, 4, 4))
    x = x.astype(np.float32)
    ld = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    states = [rng.normal(size=(ld, 3, 3)).astype(np.float32)
              for _ in range(2 if mode == "lstm" else 1)]

    def run():
        xt = gc.array(x)
        xt.attach_grad()
        with autograd.record():
            out, new = layer(xt, [gc.array(s) for s in states])
            loss = (out * out).sum() + sum((s * s).sum() for s in new)
        loss.backward()
        grads = {k: p.grad().numpy().copy() for k, p in layer.collect_params().items()}
        return out.numpy(), [s.numpy() for s in new], xt.grad.numpy(), grads

    plain = run()
    plain_out = layer(gc.array(x)).numpy()
    layer.hybridize()
    hybrid = run()
    hybrid_out = layer(gc.array(x)).numpy()  # states=None: another signature
    np.testing.assert_allclose(hybrid_out, plain_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hybrid[0], plain[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(hybrid[1], plain[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hybrid[2], plain[2], rtol=1e-5, atol=1e-6)
    for k in plain[3]:
        np.testing.assert_allclose(hybrid[3][k], plain[3][k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_hybridized_training_dropout_matches_imperative():
    layer = make_layer("lstm", dtype="float32", num_layers=2, dropout=0.3)
    randomize(layer)
    x = gc.array(np.random.default_rng(13).normal(size=(3, 2, 4)).astype(np.float32))
    with autograd.train_mode():
        gc.random.seed(5)
        plain = layer(x).numpy()
        layer.hybridize()
        gc.random.seed(5)
        hybrid = layer(x).numpy()
    np.testing.assert_allclose(hybrid, plain, rtol=1e-5, atol=1e-6)


class CountingGRU(rnn.GRU):
    calls = 0

    def forward(self, *args):
        CountingGRU.calls += 1
        return super().forward(*args)


def test_hybridized_traces_once_with_deferred_input_size():
    layer = CountingGRU(3, num_layers=2, bidirectional=True)
    layer.initialize()
    layer.hybridize()
    x = gc.array(np.random.default_rng(14).normal(size=(2, 2, 5)).astype(np.float32))
    out = layer(x)
    assert out.shape == (2, 2, 6) and layer.l0_i2h_weight.shape == (9, 5)
    assert CountingGRU.calls == 1
    np.testing.assert_array_equal(layer(x).numpy(), out.numpy())
    assert CountingGRU.calls == 1  # the second call ran the compiled graph
    layer.hybridize(False)
    np.testing.assert_allclose(layer(x).numpy(), out.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("with_states", [False, True])
def test_export_runs_at_other_batch_sizes(tmp_path, with_states):
    layer = make_layer("lstm", dtype="float32", num_layers=2, bidirectional=True,
                       layout="NTC")
    randomize(layer)
    layer.hybridize()
    rng = np.random.default_rng(15)

    def inputs(batch):
        x = gc.array(rng.normal(size=(batch, 3, 4)).astype(np.float32))
        states = [gc.array(rng.normal(size=(4, batch, 3)).astype(np.float32))
                  for _ in range(2)]
        return (x, states) if with_states else (x,)

    layer(*inputs(5))
    layer.export(str(tmp_path / "lstm"))
    loaded = gc.load(str(tmp_path / "lstm"))
    layer.hybridize(False)
    for batch in (1, 5, 7):
        args = inputs(batch)
        want = layer(*args)
        got = loaded(*args[:1], *(args[1] if with_states else ()))
        want = [want[0], *want[1]] if with_states else [want]
        got = list(got) if with_states else [got]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)


class WordLM(gc.nn.HybridBlock):
    """The Gluon crash course's RNN language model, ported by changing imports."""

    def __init__(self, vocab, embed, hidden, layers, dropout):
        super().__init__()
        self.encoder = gc.nn.Embedding(vocab, embed)
        self.rnn = rnn.LSTM(hidden, layers, dropout=dropout, input_size=embed)
        self.decoder = gc.nn.Dense(vocab, in_units=hidden, flatten=False)

    def forward(self, inputs, hidden):
        output, hidden = self.rnn(self.encoder(inputs), hidden)
        return self.decoder(output), hidden

    def begin_state(self, *args, **kwargs):
        return self.rnn.begin_state(*args, **kwargs)


def test_word_language_model_hybridized_matches_imperative():
    model = WordLM(vocab=11, embed=5, hidden=6, layers=2, dropout=0.2)
    model.initialize()
    data = gc.array(np.random.default_rng(16).integers(0, 11, size=(4, 3)))  # (T, N)

    def step():
        hidden = model.begin_state(func=gc.zeros, batch_size=3, ctx=gc.cpu())
        gc.random.seed(3)
        with autograd.record():
            out, hidden = model(data, hidden)
            loss = gc.softmax_cross_entropy(out.reshape(-1, 11), data.reshape(-1)).mean()
        loss.backward()
        hidden = [h.detach() for h in hidden]
        return (float(loss.numpy()), [h.numpy() for h in hidden],
                {k: p.grad().numpy().copy() for k, p in model.collect_params().items()})

    plain = step()
    model.hybridize()
    hybrid = step()
    np.testing.assert_allclose(hybrid[0], plain[0], rtol=1e-5)
    for a, b in zip(hybrid[1], plain[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for k in plain[2]:
        np.testing.assert_allclose(hybrid[2][k], plain[2][k], rtol=1e-4, atol=1e-6, err_msg=k)


# -- errors -----------------------------------------------------------------------------------

def test_layer_errors_name_the_layer_and_shapes():
    lstm = rnn.LSTM(8)
    lstm.initialize()
    with pytest.raises(gc.ShapeError, match=r"LSTM\(None -> 8, TNC\).*3-d.*\(4, 5\)"):
        lstm(gc.zeros((4, 5)))
    with pytest.raises(gc.DTypeError, match=r"LSTM.*floating.*int64"):
        lstm(gc.array(np.zeros((2, 3, 4), np.int64)))
    lstm(gc.zeros((2, 3, 4)))
    with pytest.raises(gc.ShapeError, match=r"LSTM\(4 -> 8, TNC\).*5 features.*\(2, 3, 5\)"):
        lstm(gc.zeros((2, 3, 5)))
    with pytest.raises(gc.ShapeError, match=r"LSTM\(4 -> 8.*state 1 has shape \(1, 2, 8\), "
                                            r"expected \(1, 3, 8\)"):
        lstm(gc.zeros((2, 3, 4)), [gc.zeros((1, 3, 8)), gc.zeros((1, 2, 8))])
    with pytest.raises(gc.GraphcError, match=r"LSTM.*list of 2 state tensors, got 1 states"):
        lstm(gc.zeros((2, 3, 4)), [gc.zeros((1, 3, 8))])
    gru = rnn.GRU(2)
    gru.initialize()
    with pytest.raises(gc.ShapeError, match=r"GRU\(None -> 2, TNC\).*sequence is empty.*"
                                            r"\(0, 2, 3\)"):
        gru(gc.zeros((0, 2, 3)))
    with pytest.raises(gc.GraphcError, match=r"GRU: layout must be 'TNC' or 'NTC', got 'NCT'"):
        rnn.GRU(2, layout="NCT")
    with pytest.raises(gc.GraphcError, match=r"RNN: activation must be 'relu' or 'tanh'"):
        rnn.RNN(2, activation="gelu")
    with pytest.raises(gc.GraphcError, match=r"LSTM: dropout must be a number in \[0, 1\)"):
        rnn.LSTM(2, dropout=1.5)
    with pytest.raises(gc.GraphcError, match=r"LSTM: num_layers must be a positive int"):
        rnn.LSTM(2, num_layers=0)
    with pytest.raises(gc.GraphcError, match=r"GRU: hidden_size must be a positive int"):
        rnn.GRU(0)


def test_cell_errors_name_the_cell_and_shapes():
    cell = rnn.GRUCell(4, input_size=3)
    cell.initialize()
    with pytest.raises(gc.ShapeError, match=r"GRUCell\(3 -> 4\).*2-d.*\(2, 5, 3\)"):
        cell(gc.zeros((2, 5, 3)), cell.begin_state(2))
    with pytest.raises(gc.ShapeError, match=r"GRUCell\(3 -> 4\).*2 features.*\(5, 2\)"):
        cell(gc.zeros((5, 2)), cell.begin_state(5))
    with pytest.raises(gc.ShapeError, match=r"GRUCell.*state 0 has shape \(3, 4\), "
                                            r"expected \(2, 4\)"):
        cell(gc.zeros((2, 3)), cell.begin_state(3))
    with pytest.raises(gc.GraphcError, match=r"LSTMCell.*list of 2 state tensors"):
        lstm = rnn.LSTMCell(4, input_size=3)
        lstm.initialize()
        lstm(gc.zeros((2, 3)), gc.zeros((2, 4)))
    with pytest.raises(gc.GraphcError, match=r"RNNCell: unknown activation 'swish'"):
        rnn.RNNCell(3, activation="swish")
    with pytest.raises(gc.ShapeError, match=r"unroll length 5 but the input has 4 steps"):
        cell.unroll(5, gc.zeros((2, 4, 3)))
