"""The model zoo of the pass tests: the four models of issue 4 and their training steps.

Each model exists twice, with the same numbers:

- as a pure function ``fn(*data, *params)`` with ``example_args`` (numpy arrays, data
  first, then parameters in the order the block form's ``collect_params`` lists them),
  for ``gc.jit``: `mlp`, `lenet`, `lstm_lm`, `transformer_block` (inference) and
  `train_step` (loss with ``gc.value_and_grad`` over the parameters and an SGD update
  that returns the new parameters);
- as a Gluon-style block built from graphc.nn layers (`BLOCKS`), whose parameters are
  set from the same arrays, for ``hybridize`` under ``autograd.record`` + ``backward``
  (LeNet's BatchNorm then uses batch statistics and updates its running ones; the LSTM
  block adds a dropout, seeded by ``gc.random.seed``).

`lenet_constants` is LeNet as deployed, its parameters baked in as constants: the graph
where constant folding and fold_batch_norm (opt level 3) have something to fold.

Parameters are drawn from a seeded numpy generator once (the specs are cached, their arrays
read-only), so every call of a factory gives the same model: tests compare runs of fresh
copies at different opt levels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import graphc as gc
from graphc import nn
from graphc.nn import rnn

Pair = tuple[Callable, tuple[np.ndarray, ...]]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _dense_params(rng, sizes) -> list[np.ndarray]:
    """Gluon layout: weight (units, in_units) scaled by 1/sqrt(fan_in), then bias."""
    out = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        out.append((rng.standard_normal((n_out, n_in)) / math.sqrt(n_in)).astype(np.float32))
        out.append((0.1 * rng.standard_normal(n_out)).astype(np.float32))
    return out


def _dense(x, w, b):
    return gc.matmul(x, gc.transpose(w)) + b


def _mean_xent(logits, labels):
    return gc.mean(gc.softmax_cross_entropy(logits, labels))


def _mse(out, target):
    d = out - target
    return gc.mean(d * d)


# -- the models as functions -------------------------------------------------------------------

@dataclass
class Spec:
    """A model as a function: its logits, example data and parameters, and what a training
    step adds: the loss of the logits and the labels (or regression target)."""

    name: str
    logits: Callable            # logits(*data, *params)
    data: tuple[np.ndarray, ...]
    params: tuple[np.ndarray, ...]
    loss: Callable              # loss(logits, labels) -> scalar
    labels: np.ndarray
    head: Callable = lambda t: t  # the inference output from the logits (e.g. softmax)

    def __post_init__(self):
        for a in (*self.data, *self.params, self.labels):
            a.setflags(write=False)  # shared by every test (specs are cached): never written

    def inference(self) -> Pair:
        def fn(*args):
            return self.head(self.logits(*args))
        fn.__name__ = self.name
        return fn, (*self.data, *self.params)


MLP_SIZES = (784, 512, 512, 10)


@functools.cache
def mlp_spec(batch: int = 4, sizes: tuple[int, ...] = MLP_SIZES, seed: int = 0) -> Spec:
    """Dense-relu-dense-relu-dense; inference ends in softmax. 784-512-512-10 is too big
    for finite differences: use it for equality checks only."""
    rng = _rng(seed)
    n = len(sizes) - 1

    def logits(x, *params):
        for i in range(n):
            x = _dense(x, params[2 * i], params[2 * i + 1])
            x = gc.relu(x) if i < n - 1 else x
        return x

    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch).astype(np.int64)
    return Spec("mlp", logits, (x,), tuple(_dense_params(rng, sizes)), _mean_xent, y,
                head=gc.softmax)


LENET_IMAGE = (1, 12, 12)


@functools.cache
def lenet_spec(batch: int = 2, seed: int = 1) -> Spec:
    """conv5x5(6) -> batch norm (running stats) -> relu -> maxpool2 -> conv3x3(16, pad 1)
    -> relu -> maxpool2 -> flatten -> dense(32) relu -> dense(10), on 1x12x12 images."""
    rng = _rng(seed)

    def conv_w(c_out, c_in, k):
        return (rng.standard_normal((c_out, c_in, k, k)) / math.sqrt(c_in * k * k)) \
            .astype(np.float32)

    params = [conv_w(6, 1, 5), (0.1 * rng.standard_normal(6)).astype(np.float32),
              (1 + 0.1 * rng.standard_normal(6)).astype(np.float32),   # gamma
              (0.1 * rng.standard_normal(6)).astype(np.float32),       # beta
              (0.1 * rng.standard_normal(6)).astype(np.float32),       # running mean
              rng.uniform(0.5, 1.5, 6).astype(np.float32),             # running var
              conv_w(16, 6, 3), (0.1 * rng.standard_normal(16)).astype(np.float32),
              *_dense_params(rng, (64, 32, 10))]

    def logits(x, w1, b1, gamma, beta, mean, var, w2, b2, w3, b3, w4, b4):
        h = gc.conv2d(x, w1, b1)
        h = gc.relu(gc.batch_norm(h, gamma, beta, mean, var, training=False))
        h = gc.max_pool2d(h, 2)
        h = gc.max_pool2d(gc.relu(gc.conv2d(h, w2, b2, padding=1)), 2)
        h = gc.relu(_dense(gc.flatten(h), w3, b3))
        return _dense(h, w4, b4)

    x = rng.standard_normal((batch, *LENET_IMAGE)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    return Spec("lenet", logits, (x,), tuple(params), _mean_xent, y, head=gc.softmax)


@functools.cache
def lstm_lm_spec(steps: int = 5, batch: int = 2, vocab: int = 11, embed: int = 8,
                 hidden: int = 12, seed: int = 2) -> Spec:
    """Embedding -> one-layer LSTM (TNC, zero begin state, gates i, f, g, o) -> Dense(vocab)
    on every step: a small character language model on (T, N) int64 tokens."""
    rng = _rng(seed)
    s = 1 / math.sqrt(hidden)
    params = [rng.standard_normal((vocab, embed)).astype(np.float32),
              rng.uniform(-s, s, (4 * hidden, embed)).astype(np.float32),    # i2h_weight
              rng.uniform(-s, s, (4 * hidden, hidden)).astype(np.float32),   # h2h_weight
              rng.uniform(-s, s, 4 * hidden).astype(np.float32),             # i2h_bias
              rng.uniform(-s, s, 4 * hidden).astype(np.float32),             # h2h_bias
              *_dense_params(rng, (hidden, vocab))]

    def logits(tokens, emb, wi, wh, bi, bh, wd, bd):
        x = gc.embedding(tokens, emb)                       # (T, N, E)
        xw = _dense(x, wi, bi + bh)                          # all steps' input projection
        h = c = gc.zeros((tokens.shape[1], hidden))
        outs = []
        for t in range(tokens.shape[0]):
            gates = xw[t] + gc.matmul(h, gc.transpose(wh))
            i, f, g, o = gc.split(gates, 4, axis=-1)
            c = gc.sigmoid(f) * c + gc.sigmoid(i) * gc.tanh(g)
            h = gc.sigmoid(o) * gc.tanh(c)
            outs.append(h)
        return _dense(gc.stack(outs, axis=0), wd, bd)       # (T, N, vocab)

    tokens = rng.integers(0, vocab, (steps, batch)).astype(np.int64)
    y = rng.integers(0, vocab, (steps, batch)).astype(np.int64)
    return Spec("lstm_lm", logits, (tokens,), tuple(params), _mean_xent, y)


def transformer_forward(x, g1, be1, wq, bq, wk, bk, wv, bv, wo, bo, g2, be2, w1, b1, w2, b2,
                        heads: int = 4):
    """A pre-LayerNorm encoder block: x + attn(LN(x)), then + FFN(LN(.)) with tanh-GELU.
    Multi-head self-attention is written with reshape/transpose/matmul/softmax."""
    batch, seq, d = x.shape
    hd = d // heads
    h = gc.layer_norm(x, g1, be1)

    def heads_of(t):   # (B, S, D) -> (B, heads, S, hd)
        return gc.transpose(gc.reshape(t, (batch, seq, heads, hd)), (0, 2, 1, 3))

    q, k, v = (heads_of(_dense(h, w, b)) for w, b in ((wq, bq), (wk, bk), (wv, bv)))
    scores = gc.matmul(q, gc.transpose(k, (0, 1, 3, 2))) * (1 / math.sqrt(hd))
    att = gc.matmul(gc.softmax(scores, axis=-1), v)
    att = gc.reshape(gc.transpose(att, (0, 2, 1, 3)), (batch, seq, d))
    x = x + _dense(att, wo, bo)
    f = gc.gelu(_dense(gc.layer_norm(x, g2, be2), w1, b1), approximate="tanh")
    return x + _dense(f, w2, b2)


TRANSFORMER_PARAM_NAMES = ("ln1_gamma", "ln1_beta", "wq", "bq", "wk", "bk", "wv", "bv",
                           "wo", "bo", "ln2_gamma", "ln2_beta", "ffn1_weight", "ffn1_bias",
                           "ffn2_weight", "ffn2_bias")


@functools.cache
def transformer_spec(batch: int = 2, seq: int = 8, d: int = 32, ffn: int = 64,
                     seed: int = 3) -> Spec:
    """`transformer_forward` on (2, 8, 32) inputs, regressing a random target (MSE)."""
    rng = _rng(seed)

    def ln():
        return [(1 + 0.1 * rng.standard_normal(d)).astype(np.float32),
                (0.1 * rng.standard_normal(d)).astype(np.float32)]

    params = [*ln(), *_dense_params(rng, (d, d)), *_dense_params(rng, (d, d)),
              *_dense_params(rng, (d, d)), *_dense_params(rng, (d, d)), *ln(),
              *_dense_params(rng, (d, ffn)), *_dense_params(rng, (ffn, d))]
    x = rng.standard_normal((batch, seq, d)).astype(np.float32)
    target = rng.standard_normal((batch, seq, d)).astype(np.float32)
    return Spec("transformer", transformer_forward, (x,), tuple(params), _mse, target)


SPECS: dict[str, Callable[[], Spec]] = {
    "mlp": mlp_spec, "lenet": lenet_spec, "lstm_lm": lstm_lm_spec,
    "transformer": transformer_spec,
}


def mlp() -> Pair:
    return mlp_spec().inference()


def lenet() -> Pair:
    return lenet_spec().inference()


def lstm_lm() -> Pair:
    return lstm_lm_spec().inference()


def transformer_block() -> Pair:
    return transformer_spec().inference()


INFERENCE: dict[str, Callable[[], Pair]] = {
    "mlp": mlp, "lenet": lenet, "lstm_lm": lstm_lm, "transformer": transformer_block,
}


def train_step(name: str, lr: float = 0.1) -> Pair:
    """``step(*data, labels, *params) -> (loss, *new_params)``: the loss and its gradients
    over every parameter with ``gc.value_and_grad``, then one SGD update. Written for
    ``gc.jit``: one graph holds forward, backward and update."""
    spec = SPECS[name]()
    n_data, n_params = len(spec.data), len(spec.params)

    def step(*args):
        data, labels, params = args[:n_data], args[n_data], args[n_data + 1:]

        def loss(*p):
            return spec.loss(spec.logits(*data, *p), labels)

        value, grads = gc.value_and_grad(loss, argnums=tuple(range(n_params)))(*params)
        return (value, *[p - lr * g for p, g in zip(params, grads)])

    step.__name__ = f"{name}_train_step"
    return step, (*spec.data, spec.labels, *spec.params)


# -- the models as blocks -------------------------------------------------------------------

@dataclass
class BlockCase:
    """A block with its parameters set, its example data and the loss of its output."""

    block: nn.HybridBlock
    data: tuple[np.ndarray, ...]
    labels: np.ndarray
    loss: Callable
    spec: Spec


def _with_params(block: nn.HybridBlock, spec: Spec) -> nn.HybridBlock:
    params = list(block.collect_params().values())
    assert len(params) == len(spec.params), (len(params), len(spec.params))
    for p, a in zip(params, spec.params):
        p.set_data(a)
    return block


def mlp_block() -> BlockCase:
    spec = mlp_spec()
    net = nn.HybridSequential()
    sizes = MLP_SIZES
    for i, n_out in enumerate(sizes[1:]):
        net.add(nn.Dense(n_out, activation="relu" if i < len(sizes) - 2 else None,
                         in_units=sizes[i]))
    return BlockCase(_with_params(net, spec), spec.data, spec.labels, spec.loss, spec)


def lenet_block() -> BlockCase:
    spec = lenet_spec()
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, kernel_size=5, in_channels=1), nn.BatchNorm(in_channels=6),
            nn.Activation("relu"), nn.MaxPool2D(pool_size=2),
            nn.Conv2D(16, kernel_size=3, padding=1, activation="relu", in_channels=6),
            nn.MaxPool2D(pool_size=2), nn.Flatten(),
            nn.Dense(32, activation="relu", in_units=64), nn.Dense(10, in_units=32))
    return BlockCase(_with_params(net, spec), spec.data, spec.labels, spec.loss, spec)


class LSTMLM(nn.HybridBlock):
    """Embedding -> dropout -> rnn.LSTM (TNC) -> Dense(vocab) on every step. Dropout acts
    in training only (its mask follows ``gc.random.seed``), so predictions equal
    `lstm_lm_spec`'s function."""

    def __init__(self, vocab: int, embed: int, hidden: int, dropout: float = 0.2):
        super().__init__()
        self.encoder = nn.Embedding(vocab, embed)
        self.drop = nn.Dropout(dropout)
        self.rnn = rnn.LSTM(hidden, layout="TNC", input_size=embed)
        self.decoder = nn.Dense(vocab, in_units=hidden, flatten=False)

    def forward(self, tokens):
        return self.decoder(self.rnn(self.drop(self.encoder(tokens))))


def lstm_lm_block() -> BlockCase:
    spec = lstm_lm_spec()
    vocab, embed = spec.params[0].shape
    block = LSTMLM(vocab, embed, spec.params[2].shape[1])
    return BlockCase(_with_params(block, spec), spec.data, spec.labels, spec.loss, spec)


class TransformerBlock(nn.HybridBlock):
    """`transformer_forward` over this block's parameters."""

    def __init__(self, d: int, ffn: int):
        super().__init__()
        shapes = {"ln1_gamma": (d,), "ln1_beta": (d,), "wq": (d, d), "bq": (d,),
                  "wk": (d, d), "bk": (d,), "wv": (d, d), "bv": (d,), "wo": (d, d),
                  "bo": (d,), "ln2_gamma": (d,), "ln2_beta": (d,), "ffn1_weight": (ffn, d),
                  "ffn1_bias": (ffn,), "ffn2_weight": (d, ffn), "ffn2_bias": (d,)}
        for name in TRANSFORMER_PARAM_NAMES:
            setattr(self, name, nn.Parameter(name, shape=shapes[name]))

    def forward(self, x):
        return transformer_forward(x, *[getattr(self, n).data()
                                        for n in TRANSFORMER_PARAM_NAMES])


def transformer_block_block() -> BlockCase:
    spec = transformer_spec()
    d, ffn = spec.params[0].shape[0], spec.params[12].shape[0]
    block = TransformerBlock(d, ffn)
    return BlockCase(_with_params(block, spec), spec.data, spec.labels, spec.loss, spec)


BLOCKS: dict[str, Callable[[], BlockCase]] = {
    "mlp": mlp_block, "lenet": lenet_block, "lstm_lm": lstm_lm_block,
    "transformer": transformer_block_block,
}


def lenet_constants() -> Pair:
    """The deployed LeNet: parameters baked into the graph as constants, so the simplifier
    can fold the batch norm's constant arithmetic and fold_batch_norm can fold it into the
    convolution before it (opt level 3)."""
    spec = lenet_spec()

    def lenet_constants(x):
        return gc.softmax(spec.logits(x, *spec.params))

    return lenet_constants, spec.data


INFERENCE["lenet_constants"] = lenet_constants
