"""The reference workloads W1-W8 of WORKLOADS.md, defined once for every benchmark.

Each workload builds seeded inputs and parameters and returns a `Workload`: ``step`` is the
imperative function (graphc eager ops, or a Gluon-style model step), ``args`` its inputs.
Compiled runs wrap the same function (``gc.jit(step, backend=...)``) or hybridize the same
model, so the imperative and compiled numbers are for the same computation. Every builder
takes ``device=None``: by default the inputs are numpy arrays and the parameters live on
the CPU; given a device (``gc.gpu()``), the inputs are tensors there and the parameters are
initialized there (benchmarks/gpu.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import graphc as gc
from graphc import autograd, nn


@dataclass
class Workload:
    id: str
    what: str
    step: Callable
    args: tuple
    #: blocks to hybridize for the compiled run (None: the step itself goes through gc.jit)
    blocks: list = field(default_factory=list)
    #: trainers whose state a step updates (the compiled run must start from the same state)
    training: bool = False


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _on(device, *arrays) -> tuple:
    """The inputs as given (numpy arrays) when ``device`` is None, else tensors on it."""
    return arrays if device is None else tuple(gc.array(a, device=device) for a in arrays)


def w1(n: int = 4_194_304, device=None) -> Workload:
    r = _rng(1)
    a, b, c = (r.standard_normal(n).astype(np.float32) for _ in range(3))

    def step(a, b, c):
        return gc.relu(a * b + c) * gc.sigmoid(a) - gc.tanh(b)

    return Workload("W1", "elementwise chain, 4M floats", step, _on(device, a, b, c))


def _mlp(sizes, activation="relu") -> nn.HybridSequential:
    net = nn.HybridSequential()
    for units in sizes[1:-1]:
        net.add(nn.Dense(units, activation=activation, in_units=0))
    net.add(nn.Dense(sizes[-1]))
    return net


def _initialized(net, example, device=None) -> nn.HybridSequential:
    """Parameters initialized (seeded) on ``device`` (None: the CPU) and shapes inferred."""
    gc.random.seed(0)
    net.initialize(gc.init.Xavier(), device=device)
    net(gc.array(example, device=device))
    return net


def w2(batch: int = 64, device=None) -> Workload:
    x = _rng(2).standard_normal((batch, 784)).astype(np.float32)
    net = _initialized(_mlp([784, 512, 512, 10]), x, device)

    def step(x):
        return gc.softmax(net(x), axis=-1)

    return Workload("W2", "MLP inference 784-512-512-10, batch 64", step, _on(device, x),
                    [net])


def _train_step(net, x, y) -> Callable:
    loss_fn = gc.loss.SoftmaxCrossEntropyLoss()
    trainer = gc.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})

    def step(x, y):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(x.shape[0])
        return loss.mean()

    return step


def w3(batch: int = 64, device=None) -> Workload:
    r = _rng(3)
    x = r.standard_normal((batch, 784)).astype(np.float32)
    y = r.integers(0, 10, batch).astype(np.int64)
    net = _initialized(_mlp([784, 512, 512, 10]), x, device)
    return Workload("W3", "MLP training step (SGD)", _train_step(net, x, y), _on(device, x, y),
                    [net], training=True)


def _lenet() -> nn.HybridSequential:
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, kernel_size=5, padding=2, activation="relu"), nn.MaxPool2D(2, 2),
            nn.Conv2D(16, kernel_size=5, activation="relu"), nn.MaxPool2D(2, 2),
            nn.Flatten(), nn.Dense(120, activation="relu"), nn.Dense(84, activation="relu"),
            nn.Dense(10))
    return net


def w4(batch: int = 64, device=None) -> Workload:
    x = _rng(4).standard_normal((batch, 1, 28, 28)).astype(np.float32)
    net = _initialized(_lenet(), x, device)
    return Workload("W4", "LeNet-5 inference, batch 64", lambda x: net(x), _on(device, x),
                    [net])


def w5(batch: int = 64, device=None) -> Workload:
    r = _rng(5)
    x = r.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = r.integers(0, 10, batch).astype(np.int64)
    net = _initialized(_lenet(), x, device)
    return Workload("W5", "LeNet-5 training step (SGD)", _train_step(net, x, y),
                    _on(device, x, y), [net], training=True)


class _LSTMLM(nn.HybridBlock):
    def __init__(self, vocab: int, embed: int, hidden: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.rnn.LSTM(hidden, input_size=embed)
        self.decoder = nn.Dense(vocab, flatten=False, in_units=hidden)

    def forward(self, tokens):
        return self.decoder(self.lstm(self.embedding(tokens)))


def w6(vocab: int = 1000, embed: int = 128, hidden: int = 256, seq: int = 35,
       batch: int = 32, device=None) -> Workload:
    tokens = _rng(6).integers(0, vocab, (seq, batch)).astype(np.int64)
    net = _initialized(_LSTMLM(vocab, embed, hidden), tokens, device)
    return Workload("W6", "LSTM LM forward, seq 35 x batch 32", lambda t: net(t),
                    _on(device, tokens), [net])


def w7(device=None) -> Workload:
    x = _rng(7).standard_normal((1, 64)).astype(np.float32)
    net = _initialized(_mlp([64, 64, 64, 10]), x, device)
    return Workload("W7", "tiny MLP latency, batch 1", lambda x: net(x), _on(device, x), [net])


class _EncoderBlock(nn.HybridBlock):
    def __init__(self, d: int, heads: int, ffn: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(in_channels=d), nn.LayerNorm(in_channels=d)
        self.qkv = nn.Dense(3 * d, flatten=False, in_units=d)
        self.proj = nn.Dense(d, flatten=False, in_units=d)
        self.ff1 = nn.Dense(ffn, flatten=False, in_units=d)
        self.ff2 = nn.Dense(d, flatten=False, in_units=ffn)

    def forward(self, x):
        b, t, d = x.shape
        h, dh = self.heads, d // self.heads
        q, k, v = gc.split(self.qkv(self.ln1(x)), 3, axis=-1)

        def heads(z):
            return gc.transpose(gc.reshape(z, (b, t, h, dh)), (0, 2, 1, 3))

        att = gc.softmax(heads(q) @ gc.transpose(heads(k), (0, 1, 3, 2)) / math.sqrt(dh))
        ctx = gc.reshape(gc.transpose(att @ heads(v), (0, 2, 1, 3)), (b, t, d))
        x = x + self.proj(ctx)
        return x + self.ff2(gc.gelu(self.ff1(self.ln2(x)), approximate="tanh"))


def w8(batch: int = 8, seq: int = 128, d: int = 256, heads: int = 4,
       ffn: int = 1024, device=None) -> Workload:
    x = _rng(8).standard_normal((batch, seq, d)).astype(np.float32)
    net = _initialized(_EncoderBlock(d, heads, ffn), x, device)
    return Workload("W8", "transformer encoder block, 8 x 128 x 256", lambda x: net(x),
                    _on(device, x), [net])


WORKLOADS: dict[str, Callable[[], Workload]] = {
    "W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "W7": w7, "W8": w8}
