"""A whole training step (forward, loss, backward, Trainer.step) compiled with gc.jit: the
same numbers as the imperative loop, one trace, state written back in place."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import autograd, init, nn, optim

STEPS, BATCH, FEATURES, CLASSES = 20, 16, 10, 3
_rng = np.random.default_rng(7)
X = _rng.standard_normal((STEPS, BATCH, FEATURES)).astype(np.float32)
Y = np.argmax(X @ _rng.standard_normal((FEATURES, CLASSES)), axis=-1)  # learnable labels
loss_fn = gc.loss.SoftmaxCrossEntropyLoss()


def _net(in_units: int = FEATURES, hybridize: bool = False) -> nn.HybridSequential:
    gc.random.seed(5)  # identical initial parameters in every run
    net = nn.HybridSequential()
    net.add(nn.Dense(16, activation="relu", in_units=in_units),
            nn.Dense(CLASSES, in_units=16 if in_units else 0))
    net.initialize(init.Xavier())
    if hybridize:
        net.hybridize()
    return net


def _step_fn(net, trainer):
    def train_step(x, y):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(BATCH)
        return loss.mean()
    return train_step


def _train(step, steps: int = STEPS) -> list[float]:
    return [float(step(gc.array(X[i]), gc.array(Y[i])).numpy()) for i in range(steps)]


def _params(net) -> list[np.ndarray]:
    return [p.data().numpy().copy() for p in net.collect_params().values()]


def _max_rel_err(got, want) -> float:
    """max |got - want| relative to the largest |want| (so near-zero entries of a weight
    do not turn rounding into a large relative error)."""
    want = np.asarray(want, np.float64)
    return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(np.abs(want)))


def _assert_same_run(got, want):
    (losses, params), (want_losses, want_params) = got, want
    assert max(abs(a - b) / abs(b) for a, b in zip(losses, want_losses)) <= 1e-5
    assert len(params) == len(want_params)
    for p, q in zip(params, want_params):
        assert p.dtype == np.float32 and _max_rel_err(p, q) <= 1e-5


CONFIGS = {
    "sgd-momentum": lambda: ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4}),
    "adam-cosine": lambda: ("adam", {"learning_rate": 0.02, "lr_scheduler":
                                     optim.CosineScheduler(STEPS, final_lr=0.002,
                                                           warmup_steps=3)}),
    "rmsprop-factor-clip": lambda: ("rmsprop", {"learning_rate": 0.01, "centered": True,
                                                "clip_gradient": 0.05, "lr_scheduler":
                                                optim.FactorScheduler(step=5, factor=0.5)}),
}


@pytest.mark.parametrize("config", CONFIGS)
def test_jit_training_step_matches_imperative(config):
    runs = {}
    for mode in ("eager", "jit"):
        net = _net()
        trainer = gc.Trainer(net.collect_params(), *CONFIGS[config]())
        step = _step_fn(net, trainer)
        if mode == "jit":
            step = gc.jit(step)
        values = [p.data() for p in net.collect_params().values()]
        runs[mode] = (_train(step), _params(net))
        # updated in place: the parameters' Tensors are the ones they started with
        assert all(a is p.data() for a, p in zip(values, net.collect_params().values()))
        assert trainer.optimizer.num_update == STEPS
        runs[mode + "_lr"] = trainer.learning_rate
    assert step.cache_size == 1  # traced once for the 20 steps
    _assert_same_run(runs["jit"], runs["eager"])
    assert runs["jit_lr"] == runs["eager_lr"]
    losses = runs["eager"][0]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])  # it does train


def test_hybridized_net_trains_like_the_plain_one():
    runs = []
    for hybridize in (False, True):
        net = _net(hybridize=hybridize)
        trainer = gc.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1,
                                                            "momentum": 0.9})
        runs.append((_train(_step_fn(net, trainer)), _params(net)))
    _assert_same_run(runs[1], runs[0])


def test_eager_and_jit_steps_share_the_optimizer_state():
    """10 eager steps then 10 compiled ones continue the same run (counts, moments)."""
    runs = []
    for switch in (False, True):
        net = _net()
        trainer = gc.Trainer(net.collect_params(), "adam", {"learning_rate": 0.02})
        eager = _step_fn(net, trainer)
        compiled = gc.jit(eager) if switch else eager
        losses = [float(eager(gc.array(X[i]), gc.array(Y[i])).numpy()) for i in range(10)]
        losses += [float(compiled(gc.array(X[i]), gc.array(Y[i])).numpy())
                   for i in range(10, STEPS)]
        runs.append((losses, _params(net)))
    _assert_same_run(runs[1], runs[0])


def test_jit_step_reads_state_per_call():
    """The learning rate, the counts and the momentum are graph inputs: setting the rate
    between calls takes effect without a retrace, and the counts advance in the graph."""
    net = _net()
    trainer = gc.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.5})
    step = gc.jit(_step_fn(net, trainer))
    _train(step, 2)
    graph = step.trace(gc.array(X[0]), gc.array(Y[0]))
    state = {v.name for v in graph.inputs if v.role == "parameter"}
    assert {"optimizer.lr", "optimizer.num_update", "0.weight.mom", "0.weight.count",
            "1.bias.mom", "1.bias.count"} <= state
    trainer.set_learning_rate(0.0)
    mom = trainer._states[0].tensors[0].data().numpy().copy()
    before = _params(net)
    step(gc.array(X[2]), gc.array(Y[2]))  # lr 0: w += 0.5 * mom, the momentum decays
    np.testing.assert_allclose(_params(net)[0], before[0] + 0.5 * mom, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(trainer._states[0].tensors[0].data().numpy(), 0.5 * mom)
    assert step.cache_size == 1
    assert trainer.optimizer.num_update == 3
    assert trainer._states[0].count.data().numpy() == 3.0


def test_jit_step_with_deferred_initialization():
    """Shapes inferred at the first forward, inside the trace; the optimizer state is
    created there too."""
    runs = []
    for jit in (False, True):
        net = _net(in_units=0)
        trainer = gc.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01})
        step = gc.jit(_step_fn(net, trainer)) if jit else _step_fn(net, trainer)
        runs.append((_train(step, 5), _params(net)))
    _assert_same_run(runs[1], runs[0])


def test_stale_gradient_inside_jit():
    """While tracing, 'stale' means that no backward in the trace reached the parameter."""
    net = _net()
    unused = nn.Dense(2, in_units=FEATURES)
    unused.initialize()
    params = {**net.collect_params(), "unused.weight": unused.weight}

    def train_step(x, y, trainer, ignore):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(BATCH, ignore_stale_grad=ignore)
        return loss.mean()

    trainer = gc.Trainer(params, "sgd")
    step = gc.jit(lambda x, y: train_step(x, y, trainer, False))
    with pytest.raises(gc.GraphcError, match="gradient of 'unused.weight' has not"):
        step(gc.array(X[0]), gc.array(Y[0]))
    step = gc.jit(lambda x, y: train_step(x, y, trainer, True))
    w0, b0 = unused.weight.data().numpy().copy(), _params(net)
    step(gc.array(X[0]), gc.array(Y[0]))
    np.testing.assert_array_equal(unused.weight.data().numpy(), w0)
    assert not np.array_equal(_params(net)[0], b0[0])


@pytest.mark.parametrize("backend", ["reference", "llvm"])
def test_donated_state_may_hold_another_states_update(backend):
    # regression: with a weight and its momentum both donated, the plan wrote the new
    # momentum into the weight's buffer and the new weight into the momentum's; writing
    # the updates back one after the other then copied a clobbered value
    runs = []
    for jit in (False, True):
        net = _net()
        trainer = gc.Trainer(net.collect_params(), *CONFIGS["sgd-momentum"]())
        step = _step_fn(net, trainer)
        if jit:
            step = gc.jit(step, backend=backend, donate=("weight", "0.weight.mom"),
                          sanitize=True)
        runs.append((_train(step, 3), _params(net)))
    _assert_same_run(runs[1], runs[0])
