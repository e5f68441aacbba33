"""Optimizers through the Trainer on real Parameters, against numpy implementations of the
published update rules; schedules; clip_global_norm."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphc as gc
from graphc import autograd, init, nn, optim

clip_global_norm = gc.utils.clip_global_norm  # Gluon's gluon.utils.clip_global_norm
A = np.random.default_rng(0).standard_normal((3, 4))
C = np.random.default_rng(1).standard_normal(4)
BATCH = 4


def _params(dtype="float64", seed=0):
    gc.random.seed(seed)
    w = nn.Parameter("weight", shape=(3, 4), dtype=dtype, init=init.Normal(1.0))
    s = nn.Parameter("scale", shape=(4,), dtype=dtype, init=init.Normal(1.0))
    w.initialize()
    s.initialize()
    return w, s


def _backward(w, s, use_scale=True):
    """loss = sum(A * w**2) + sum(C * s**3): grads 2*A*w and 3*C*s**2."""
    with autograd.record():
        loss = gc.sum(gc.array(A) * w.data() * w.data())
        if use_scale:
            loss = loss + gc.sum(gc.array(C) * s.data() ** 3)
    loss.backward()


def _ref_grads(ws):
    return [2 * A * ws[0], 3 * C * ws[1] ** 2]


# -- reference update rules, each in its published form (float64) --------------------------

def _pre(g, o):
    g = g * o.get("rescale_grad", 1.0) / BATCH
    c = o.get("clip_gradient")
    return np.clip(g, -c, c) if c is not None else g


def ref_sgd(ws, o, states, t):
    # heavy ball: buf = mu*buf + g; w -= lr*buf (equal to MXNet's form at a fixed lr)
    lr, mu, wd = o.get("learning_rate", 0.1), o.get("momentum", 0.0), o.get("wd", 0.0)
    for i, (w, g) in enumerate(zip(ws, _ref_grads(ws))):
        g = _pre(g, o) + wd * w
        states[i] = mu * states.get(i, 0) + g
        ws[i] = w - lr * states[i]


def ref_nag(ws, o, states, t):
    # Nesterov (Bengio et al. 2013, as MXNet 1.x): buf = mu*buf + g; w -= lr*(g + mu*buf)
    lr, mu, wd = o.get("learning_rate", 0.1), o.get("momentum", 0.9), o.get("wd", 0.0)
    for i, (w, g) in enumerate(zip(ws, _ref_grads(ws))):
        g = _pre(g, o) + wd * w
        states[i] = mu * states.get(i, 0) + g
        ws[i] = w - lr * (g + mu * states[i])


def ref_adam(ws, o, states, t):
    # Kingma & Ba 2015, Algorithm 1 with the step size alpha_t of section 2
    lr, b1, b2, eps = o.get("learning_rate", 0.001), 0.9, 0.999, 1e-8
    for i, (w, g) in enumerate(zip(ws, _ref_grads(ws))):
        g = _pre(g, o) + o.get("wd", 0.0) * w
        m, v = states.get(i, (0, 0))
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        states[i] = (m, v)
        alpha_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        ws[i] = w - alpha_t * m / (np.sqrt(v) + eps)


def ref_adamw(ws, o, states, t):
    # Loshchilov & Hutter 2019, Algorithm 2 with eta_t = lr (PyTorch's AdamW)
    lr, b1, b2, eps, wd = o.get("learning_rate", 0.001), 0.9, 0.999, 1e-8, o.get("wd", 0.0)
    bias = o.get("correct_bias", True)
    for i, (w, g) in enumerate(zip(ws, _ref_grads(ws))):
        g = _pre(g, o)
        m, v = states.get(i, (0, 0))
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        states[i] = (m, v)
        mh, vh = (m / (1 - b1 ** t), v / (1 - b2 ** t)) if bias else (m, v)
        ws[i] = w - lr * wd * w - lr * mh / (np.sqrt(vh) + eps)


def ref_rmsprop(ws, o, states, t):
    # Tieleman & Hinton 2012; centered: Graves 2013, eqs. (38)-(45)
    lr, rho, eps, wd = o.get("learning_rate", 0.001), o.get("rho", 0.9), 1e-8, o.get("wd", 0)
    for i, (w, g) in enumerate(zip(ws, _ref_grads(ws))):
        g = _pre(g, o) + wd * w
        if not o.get("centered"):
            n = rho * states.get(i, 0) + (1 - rho) * g * g
            states[i] = n
            w = w - lr * g / (np.sqrt(n) + eps)
        else:
            n, gbar, delta = states.get(i, (0, 0, 0))
            n = rho * n + (1 - rho) * g * g
            gbar = rho * gbar + (1 - rho) * g
            delta = o.get("momentum", 0.9) * delta - lr * g / np.sqrt(n - gbar ** 2 + eps)
            states[i] = (n, gbar, delta)
            w = w + delta
        cw = o.get("clip_weights")
        ws[i] = np.clip(w, -cw, cw) if cw else w


CASES = [
    ("sgd", ref_sgd, {"learning_rate": 0.05}),
    ("sgd", ref_sgd, {"learning_rate": 0.05, "momentum": 0.9, "wd": 0.01}),
    ("sgd", ref_sgd, {"learning_rate": 0.05, "momentum": 0.5, "clip_gradient": 0.3,
                      "rescale_grad": 2.0}),
    ("nag", ref_nag, {"learning_rate": 0.05, "momentum": 0.9, "wd": 0.01}),
    ("nesterov", ref_nag, {"learning_rate": 0.05, "momentum": 0.0}),
    ("adam", ref_adam, {"learning_rate": 0.05}),
    ("adam", ref_adam, {"learning_rate": 0.05, "wd": 0.1, "clip_gradient": 0.2}),
    ("adamw", ref_adamw, {"learning_rate": 0.05, "wd": 0.1}),
    ("adamw", ref_adamw, {"learning_rate": 0.05, "wd": 0.1, "correct_bias": False}),
    ("rmsprop", ref_rmsprop, {"learning_rate": 0.01, "wd": 0.01}),
    ("rmsprop", ref_rmsprop, {"learning_rate": 0.01, "centered": True, "momentum": 0.8}),
    ("rmsprop", ref_rmsprop, {"learning_rate": 0.05, "rho": 0.5, "clip_weights": 0.8}),
]


@pytest.mark.parametrize("name,ref,opts", CASES)
def test_optimizer_matches_reference(name, ref, opts):
    w, s = _params()
    values = [w.data(), s.data()]
    buffers = [v.numpy().ctypes.data for v in values]
    want, states = [w.data().numpy().copy(), s.data().numpy().copy()], {}
    trainer = gc.Trainer({"weight": w, "scale": s}, name, dict(opts))
    for t in range(1, 6):
        _backward(w, s)
        trainer.step(BATCH)
        ref(want, opts, states, t)
        np.testing.assert_allclose(w.data().numpy(), want[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(s.data().numpy(), want[1], rtol=1e-12, atol=1e-14)
    # updated in place: same Tensors, same buffers
    assert [w.data(), s.data()] == values
    assert all(a is b for a, b in zip([w.data(), s.data()], values))
    assert [v.numpy().ctypes.data for v in values] == buffers


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_float32_parameters_stay_float32(name):
    w, s = _params("float32")
    want, states = [w.data().numpy().astype(np.float64), s.data().numpy().astype(np.float64)], {}
    opts = {"learning_rate": 0.01, "wd": 0.01}
    trainer = gc.Trainer([w, s], name, opts)
    ref = {"sgd": ref_sgd, "adam": ref_adam, "adamw": ref_adamw, "rmsprop": ref_rmsprop}[name]
    for t in range(1, 4):
        _backward(w, s)
        trainer.step(BATCH)
        ref(want, opts, states, t)
    assert w.data().dtype == np.float32 and s.data().dtype == np.float32
    np.testing.assert_allclose(w.data().numpy(), want[0], rtol=2e-4, atol=1e-5)


def test_stale_gradients_and_grad_req():
    w, s = _params()
    trainer = gc.Trainer([w, s], "sgd", {"learning_rate": 0.1})
    _backward(w, s)
    trainer.step(BATCH)
    _backward(w, s, use_scale=False)
    with pytest.raises(gc.GraphcError, match="gradient of 'scale' has not been updated"):
        trainer.step(BATCH)
    before_s, before_w = s.data().numpy().copy(), w.data().numpy().copy()
    trainer.step(BATCH, ignore_stale_grad=True)
    np.testing.assert_array_equal(s.data().numpy(), before_s)
    assert not np.array_equal(w.data().numpy(), before_w)
    w.zero_grad()  # zeroing is not a new gradient
    with pytest.raises(gc.GraphcError, match="'weight'"):
        trainer.step(BATCH)
    # grad_req 'null' is never updated (and never stale)
    s.grad_req = "null"
    _backward(w, s, use_scale=False)
    trainer.step(BATCH)
    np.testing.assert_array_equal(s.data().numpy(), before_s)


def test_grad_req_add_accumulates():
    w, s = _params()
    w.grad_req = "add"
    w0 = w.data().numpy().copy()
    trainer = gc.Trainer([w], "sgd", {"learning_rate": 0.1})
    for _ in range(2):
        _backward(w, s, use_scale=False)
    trainer.step(BATCH)
    np.testing.assert_allclose(w.data().numpy(), w0 - 0.1 * 2 * (2 * A * w0) / BATCH,
                               rtol=1e-12)


def test_deferred_parameters_and_tied_parameters():
    net = nn.Dense(3)
    net.initialize()
    trainer = gc.Trainer(net.collect_params(), "sgd")
    with pytest.raises(gc.GraphcError, match="'weight'"):  # not initialized yet
        trainer.step(1)
    x = gc.array(np.ones((2, 5), np.float32))
    with autograd.record():
        y = gc.sum(net(x))
    y.backward()
    b0 = net.bias.data().numpy().copy()
    trainer.step(2)
    np.testing.assert_allclose(net.bias.data().numpy(), b0 - 0.1 * np.ones(3), rtol=1e-6)
    # the same Parameter listed twice is updated once
    w, _ = _params()
    w0 = w.data().numpy().copy()
    trainer = gc.Trainer([w, w], "sgd", {"learning_rate": 0.1})
    _backward(w, _, use_scale=False)
    trainer.step(BATCH)
    np.testing.assert_allclose(w.data().numpy(), w0 - 0.1 * 2 * A * w0 / BATCH, rtol=1e-12)


def test_trainer_errors():
    w, _ = _params()
    with pytest.raises(gc.GraphcError, match="unknown optimizer 'adamax'"):
        gc.Trainer([w], "adamax")
    with pytest.raises(gc.GraphcError, match="optimizer 'sgd'.*beta1"):
        gc.Trainer([w], "sgd", {"beta1": 0.9})
    with pytest.raises(gc.GraphcError, match="optimizer_params must be empty"):
        gc.Trainer([w], optim.SGD(), {"learning_rate": 0.1})
    with pytest.raises(gc.GraphcError, match="params must be Parameters"):
        gc.Trainer([np.zeros(3)], "sgd")
    with pytest.raises(gc.GraphcError, match="dict of Parameters"):
        gc.Trainer(w, "sgd")


def test_learning_rate_and_schedules_through_trainer():
    w, s = _params()
    trainer = gc.Trainer([w, s], "sgd", {"learning_rate": 0.2})
    assert trainer.learning_rate == 0.2 and isinstance(trainer.optimizer, optim.SGD)
    trainer.set_learning_rate(0.05)
    assert trainer.learning_rate == 0.05
    assert optim.Adam().learning_rate == 0.001 and optim.SGD().learning_rate == 0.1

    sched = optim.FactorScheduler(step=2, factor=0.5, base_lr=1.0)
    trainer = gc.Trainer([w, s], "sgd", {"learning_rate": 0.4, "lr_scheduler": sched})
    assert sched.base_lr == 0.4  # an explicit learning_rate sets the schedule's base
    with pytest.raises(gc.GraphcError, match="lr_scheduler"):
        trainer.set_learning_rate(0.1)
    want, states = [w.data().numpy().copy(), s.data().numpy().copy()], {}
    for t in range(1, 6):
        _backward(w, s)
        trainer.step(BATCH)
        lr = 0.4 * 0.5 ** ((t - 1) // 2)
        assert trainer.learning_rate == pytest.approx(lr)
        ref_sgd(want, {"learning_rate": lr}, states, t)
        np.testing.assert_allclose(w.data().numpy(), want[0], rtol=1e-12)


def _mxnet_factor(step, factor, base_lr, stop, n_max):
    """MXNet's stateful FactorScheduler loop, called with num_update = 1, 2, ..."""
    count, lr, out = 0, base_lr, []
    for n in range(1, n_max + 1):
        while n > count + step:
            count += step
            lr = max(lr * factor, stop)
        out.append(lr)
    return out


def test_factor_scheduler():
    s = optim.FactorScheduler(step=3, factor=0.5, base_lr=1.0, stop_factor_lr=0.1)
    want = _mxnet_factor(3, 0.5, 1.0, 0.1, 20)
    assert [s(n) for n in range(1, 21)] == pytest.approx(want)
    assert s(5) == s(5)  # asking does not change it
    w = optim.FactorScheduler(step=2, factor=0.5, base_lr=1.0, warmup_steps=4,
                              warmup_begin_lr=0.2)
    assert [w(n) for n in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    c = optim.FactorScheduler(step=2, base_lr=1.0, warmup_steps=2, warmup_begin_lr=0.3,
                              warmup_mode="constant")
    assert [c(0), c(1), c(2)] == pytest.approx([0.3, 0.3, 1.0])
    with pytest.raises(gc.GraphcError, match="step must be >= 1"):
        optim.FactorScheduler(step=0)
    with pytest.raises(gc.GraphcError, match="factor must be <= 1"):
        optim.FactorScheduler(step=1, factor=2)


def test_cosine_scheduler():
    s = optim.CosineScheduler(max_update=10, base_lr=1.0, final_lr=0.1, warmup_steps=2)
    got = [s(n) for n in range(15)]
    want = [0.0, 0.5] + [0.1 + 0.9 * (1 + math.cos(math.pi * (n - 2) / 8)) / 2
                         for n in range(2, 11)] + [0.1] * 4
    assert got == pytest.approx(want)
    assert got[2] == pytest.approx(1.0) and got[10] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(got[2:], got[3:]))
    with pytest.raises(gc.GraphcError, match="max_update"):
        optim.CosineScheduler(max_update=3, warmup_steps=3)


# -- clip_global_norm ----------------------------------------------------------------------

def test_clip_global_norm_scales_in_place():
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((3, 4)), rng.standard_normal(5).astype(np.float32)]
    ts = [gc.array(x) for x in xs]
    norm = clip_global_norm(ts, 1.0)
    want = math.sqrt(sum(float((x.astype(np.float64) ** 2).sum()) for x in xs))
    assert isinstance(norm, float) and norm == pytest.approx(want, rel=1e-12)
    scale = 1.0 / (want + 1e-8)
    for t, x in zip(ts, xs):
        assert t.dtype == x.dtype
        np.testing.assert_allclose(t.numpy(), x * scale, rtol=1e-6)
    assert math.sqrt(sum(float((t.numpy().astype(np.float64) ** 2).sum()) for t in ts)) \
        == pytest.approx(1.0, rel=1e-6)
    small = [gc.array(x * 1e-3) for x in xs]
    clip_global_norm(small, 10.0)
    np.testing.assert_array_equal(small[0].numpy(), xs[0] * 1e-3)


def test_clip_global_norm_shared_nan_and_gradients():
    assert callable(gc.clip) and gc.clip(gc.array([2.0]), 0, 1).item() == 1  # op not shadowed
    t = gc.array(np.array([3.0, 4.0]))
    assert clip_global_norm([t, t], 1.0) == pytest.approx(math.sqrt(50))
    np.testing.assert_allclose(t.numpy(), np.array([3.0, 4.0]) / (math.sqrt(50) + 1e-8))
    bad = gc.array(np.array([np.nan, 1.0]))
    with pytest.warns(RuntimeWarning, match="nan or inf"):
        assert math.isnan(clip_global_norm([bad], 1.0))
    # on parameter gradients: the Trainer then steps with the clipped gradient
    w, s = _params()
    w0 = w.data().numpy().copy()
    _backward(w, s, use_scale=False)
    g = 2 * A * w0
    norm = clip_global_norm([w.grad()], 0.5)
    assert norm == pytest.approx(np.linalg.norm(g))
    trainer = gc.Trainer([w], "sgd", {"learning_rate": 1.0})
    trainer.step(1)
    np.testing.assert_allclose(w.data().numpy(), w0 - g * 0.5 / (norm + 1e-8), rtol=1e-12)


def test_imperative_and_hybridized_training_agree():
    x = gc.array(np.random.default_rng(4).standard_normal((8, 6)).astype(np.float32))
    y = gc.array(np.random.default_rng(5).integers(0, 3, 8))
    results = []
    for hybrid in (False, True):
        gc.random.seed(11)
        net = nn.HybridSequential()
        net.add(nn.Dense(16, activation="relu"), nn.Dense(3))
        net.initialize(init.Xavier())
        loss_fn = gc.loss.SoftmaxCrossEntropyLoss()
        if hybrid:
            net.hybridize()
        trainer = gc.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01})
        losses = []
        for _ in range(3):
            with autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(8)
            losses.append(float(loss.numpy().mean()))
        results.append((losses, [p.data().numpy() for p in net.collect_params().values()]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert results[0][0][-1] < results[0][0][0]


# -- one implementation for eager and jit: pure rules, schedules on tensors, state params --

@pytest.mark.parametrize("sched", [
    optim.FactorScheduler(step=3, factor=0.5, base_lr=1.0, stop_factor_lr=0.1),
    optim.FactorScheduler(step=2, factor=0.5, base_lr=1.0, warmup_steps=4,
                          warmup_begin_lr=0.2),
    optim.CosineScheduler(max_update=10, base_lr=1.0, final_lr=0.1, warmup_steps=2),
    optim.CosineScheduler(max_update=10, base_lr=1.0, warmup_steps=3, warmup_begin_lr=0.3,
                          warmup_mode="constant"),
])
def test_schedules_are_graphc_functions_of_the_count(sched):
    counts = np.arange(15, dtype=np.float64)
    eager = sched(gc.array(counts))  # a Tensor in, a Tensor out (elementwise ops)
    assert isinstance(eager, gc.Tensor) and eager.dtype == np.float64
    floats = [sched(n) for n in range(15)]
    assert all(isinstance(v, float) for v in floats)
    np.testing.assert_allclose(eager.numpy(), floats, rtol=1e-15)
    traced = gc.jit(lambda t: sched(t))
    np.testing.assert_allclose(traced(counts).numpy(), floats, rtol=1e-15)
    assert sched(np.int64(4)) == floats[4]


@pytest.mark.parametrize("name,opts", [(n, o) for n, _, o in CASES])
def test_step_is_a_pure_graphc_function(name, opts):
    """``step`` returns new tensors and leaves its inputs alone; traced, it computes the
    same update."""
    opt = optim.create(name, **{k: v for k, v in opts.items()
                                if k not in ("rescale_grad", "clip_gradient")})
    rng = np.random.default_rng(2)
    w, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    states = tuple(np.abs(rng.standard_normal((3, 4))) * (1.0 if n == "var" else 0.1)
                   + (n == "var") for n in opt.state_names())  # var > mean**2
    lr, t = np.float64(0.05), np.float64(3.0)
    args = [gc.array(a) for a in (w, g, *states, lr, t)]
    before = [a.numpy().copy() for a in args]

    def rule(w, g, *rest):
        new_w, new_states = opt.step(w, g, tuple(rest[:-2]), rest[-2], rest[-1])
        return (new_w, *new_states)

    eager = rule(*args)
    assert len(eager) == 1 + len(states) and all(np.isfinite(e.numpy()).all() for e in eager)
    for a, b in zip(args, before):
        np.testing.assert_array_equal(a.numpy(), b)
    traced = gc.jit(rule)(*[a.numpy() for a in args])
    for e, c in zip(eager, traced):
        np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-14)


def test_optimizer_state_lives_in_parameters():
    w, s = _params()
    trainer = gc.Trainer({"net.weight": w, "net.scale": s}, "adam", {"learning_rate": 0.1})
    _backward(w, s)
    trainer.step(BATCH)
    st = trainer._states[0]
    assert [p.name for p in st.tensors] == ["net.weight.mean", "net.weight.var"]
    assert st.count.name == "net.weight.count" and st.count.data().shape == ()
    for p in (st.count, *st.tensors):
        assert isinstance(p, nn.Parameter) and p.grad_req == "null"
    assert st.tensors[0].data().dtype == np.float64 and st.tensors[0].data().shape == (3, 4)
    np.testing.assert_allclose(st.tensors[0].data().numpy(), 0.1 * 2 * A * _params()[0]
                               .data().numpy() / BATCH, rtol=1e-12)
    assert st.count.data().item() == 1.0 and trainer.optimizer.num_update == 1
    # set_learning_rate writes the optimizer's lr state (read by every step, eager or jit)
    trainer.set_learning_rate(0.25)
    assert trainer.optimizer._lr.data().item() == 0.25 and trainer.learning_rate == 0.25
    assert optim.SGD().state_names() == () and optim.SGD(momentum=0.9).state_names() == ("mom",)


def test_counts_are_per_parameter_and_num_update_is_their_max():
    w, s = _params()
    trainer = gc.Trainer([w, s], "adam", {"learning_rate": 0.05})
    _backward(w, s)
    trainer.step(BATCH)
    for _ in range(2):  # only w
        _backward(w, s, use_scale=False)
        trainer.step(BATCH, ignore_stale_grad=True)
    assert [trainer._states[i].count.data().item() for i in (0, 1)] == [3.0, 1.0]
    assert trainer.optimizer.num_update == 3
    # scale's second update uses its own count (2) in Adam's bias correction
    want, states = [s.data().numpy().copy()], {0: tuple(p.data().numpy().copy()
                                                        for p in trainer._states[1].tensors)}
    _backward(w, s)
    trainer.step(BATCH)
    g = _pre(3 * C * want[0] ** 2, {})
    m, v = 0.9 * states[0][0] + 0.1 * g, 0.999 * states[0][1] + 0.001 * g * g
    want = want[0] - 0.05 * math.sqrt(1 - 0.999 ** 2) / (1 - 0.9 ** 2) * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(s.data().numpy(), want, rtol=1e-12)
