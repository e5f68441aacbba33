"""The reference workloads W1-W8 in the frameworks graphc is measured against.

numpy, torch eager, torch.compile and jax.jit, each hand-written here with the math of
graphc/bench/workloads.py, so ``benchmarks/workloads.py`` (graphc imperative vs compiled)
and this script can be read side by side. The peers are never graphc dependencies: run it
with a separate environment that has numpy, torch (CPU) and jax[cpu], e.g.

    /work/peers-venv/bin/python graphc/bench/peers.py [--threads 2] [--quick] [--json PATH]

It does not import graphc (``graphc bench --peers`` runs it by path, possibly with another
interpreter via ``--peer-python``); a peer whose framework is not installed is reported in
the JSON's ``info.missing`` and skipped, not an error. The shapes below are copied from
graphc/bench/workloads.py and WORKLOADS.md: keep them in sync by hand. The math is written
once (`Model`) over a small per-framework table of primitives (`_numpy_ops`, `_torch_ops`,
`_jax_ops`), so the peers cannot drift apart; numpy's training steps differentiate by
hand, torch's and jax's by autodiff, and before any timing every peer's first result (the
output, or the loss and the updated parameters of a training step) is asserted to match
numpy's. Each peer runs in its own process (idle-spinning thread pools of two frameworks
in one process slow each other down severalfold on two cores).

Per cell: the median time per call after the first (the same loop as
benchmarks/workloads.py: at least ``repeats`` calls and ``min_seconds``, at most ten times
``repeats``), the best call (less disturbed by other work on a shared machine) and the
first call (for torch.compile and jax.jit: trace + compile + run).
The thread count is applied before any framework is imported: the process is pinned to
that many cores (the only limit XLA's CPU client honours), OMP/OpenBLAS/MKL variables are
set, and torch.set_num_threads is called.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from types import SimpleNamespace

# -- the workloads' shapes (graphc/bench/workloads.py, WORKLOADS.md) ----------------------
W1_N = 4_194_304
MLP_SIZES, MLP_BATCH = (784, 512, 512, 10), 64          # W2, W3
LENET_BATCH = 64                                        # W4, W5: input (64, 1, 28, 28)
LSTM = dict(vocab=1000, embed=128, hidden=256, seq=35, batch=32)   # W6
TINY_SIZES = (64, 64, 64, 10)                           # W7, batch 1
ENC = dict(batch=8, seq=128, d=256, heads=4, ffn=1024)  # W8
LR = 0.1                                                # W3, W5: SGD on every parameter
PEERS = ("numpy", "torch", "torch.compile", "jax.jit", "mxnet", "mxnet.hybrid")
#: what MXNet cannot run here yet (recorded in the JSON's ``info.skipped``, not an error)
MXNET_SKIPS: dict = {}
#: outside --worker, ``--peers mxnet`` means imperative and hybridized
ALIASES = {"mxnet": ("mxnet", "mxnet.hybrid")}
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8")


def _configure_threads(threads: int, warm_cache: bool) -> None:
    """Before numpy, torch or jax load: their pools size themselves at import."""
    cpus = sorted(os.sched_getaffinity(0))
    if threads < len(cpus):
        os.sched_setaffinity(0, cpus[:threads])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "MXNET_CPU_WORKER_NTHREADS"):
        os.environ[var] = str(threads)
    if threads == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()
    if not warm_cache:  # first calls measure a cold compile, as a fresh process would
        os.environ["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"


def _args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--quick", action="store_true",
                   help="fewer repetitions, no ceilings, torch's compile caches kept")
    p.add_argument("--warm-cache", action="store_true",
                   help="keep torch.compile's on-disk caches (first calls then not cold)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    unknown = (set(a.workloads.split(",")) - set(WORKLOADS)) | \
        (set(a.peers.split(",")) - set(PEERS))
    if unknown or a.threads < 1:
        p.error(f"unknown workloads/peers {sorted(unknown)} or --threads < 1; "
                f"choose from {WORKLOADS} and {PEERS}")
    return a


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None:
    _configure_threads(ARGS.threads, ARGS.warm_cache or ARGS.quick)

import numpy as np  # noqa: E402  (after the thread settings)

# -- per-framework primitives -------------------------------------------------------------


def _np_windows(x, k: int):
    """(B, C, H, W) -> (B, C, H-k+1, W-k+1, k, k) view: im2col without the copy."""
    return np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))


def _np_conv2d(x, w, b, pad: int):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    out = np.tensordot(_np_windows(x, w.shape[-1]), w, axes=([1, 4, 5], [1, 2, 3]))
    return out.transpose(0, 3, 1, 2) + b[:, None, None]


def _np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = np.square(x - mu).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def _gelu_tanh(tanh: Callable) -> Callable:
    c = np.float32(math.sqrt(2 / math.pi))
    return lambda x: 0.5 * x * (1 + tanh(c * (x + 0.044715 * x * x * x)))


def _numpy_ops() -> SimpleNamespace:
    return SimpleNamespace(
        relu=lambda x: np.maximum(x, 0), sigmoid=lambda x: 1 / (1 + np.exp(-x)), tanh=np.tanh,
        linear=lambda x, w, b: x @ w.T + b, softmax=_np_softmax,
        conv2d=_np_conv2d,
        maxpool2=lambda x: x.reshape(x.shape[0], x.shape[1], x.shape[2] // 2, 2,
                                     x.shape[3] // 2, 2).max(axis=(3, 5)),
        layer_norm=_np_layer_norm, gelu_tanh=_gelu_tanh(np.tanh),
        permute=lambda x, axes: x.transpose(axes), split=lambda x, n: np.split(x, n, -1),
        stack=np.stack, flatten=lambda x: x.reshape(x.shape[0], -1))


def _torch_ops(torch) -> SimpleNamespace:
    F = torch.nn.functional
    return SimpleNamespace(
        relu=torch.relu, sigmoid=torch.sigmoid, tanh=torch.tanh, linear=F.linear,
        softmax=lambda z: torch.softmax(z, -1),
        conv2d=lambda x, w, b, pad: F.conv2d(x, w, b, padding=pad),
        maxpool2=lambda x: F.max_pool2d(x, 2, 2),
        layer_norm=lambda x, g, b, eps: F.layer_norm(x, x.shape[-1:], g, b, eps),
        gelu_tanh=lambda x: F.gelu(x, approximate="tanh"),
        permute=lambda x, axes: x.permute(axes), split=lambda x, n: x.chunk(n, -1),
        stack=torch.stack, flatten=lambda x: x.flatten(1))


def _jax_ops(jax) -> SimpleNamespace:
    jnp, lax = jax.numpy, jax.lax

    def layer_norm(x, g, b, eps):
        mu = x.mean(-1, keepdims=True)
        return (x - mu) * lax.rsqrt(jnp.square(x - mu).mean(-1, keepdims=True) + eps) * g + b

    return SimpleNamespace(
        relu=jax.nn.relu, sigmoid=jax.nn.sigmoid, tanh=jnp.tanh,
        linear=lambda x, w, b: x @ w.T + b, softmax=lambda z: jax.nn.softmax(z, -1),
        conv2d=lambda x, w, b, pad: lax.conv_general_dilated(
            x, w, (1, 1), [(pad, pad)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW"))
        + b[:, None, None],
        maxpool2=lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2),
                                             (1, 1, 2, 2), "VALID"),
        layer_norm=layer_norm, gelu_tanh=lambda x: jax.nn.gelu(x, approximate=True),
        permute=lambda x, axes: x.transpose(axes), split=lambda x, n: jnp.split(x, n, -1),
        stack=jnp.stack, flatten=lambda x: x.reshape(x.shape[0], -1))


def _mxnet_ops(F, shape: Callable) -> SimpleNamespace:
    """Over ``F`` = mx.nd (imperative) or mx.sym (inside a HybridBlock): symbols have no
    shapes, so Dense and Conv sizes come from ``shape(weight)`` and W6/W8 sizes from LSTM
    and ENC; mx.sym's ``+``/``*`` do not broadcast, hence the explicit broadcast_*."""
    c = float(math.sqrt(2 / math.pi))  # a python float: np.float32 * Symbol misbehaves

    def layer_norm(x, g, b, eps):
        xc = F.broadcast_sub(x, F.mean(x, axis=-1, keepdims=True))
        var = F.mean(F.square(xc), axis=-1, keepdims=True)
        return F.broadcast_add(F.broadcast_mul(F.broadcast_div(xc, F.sqrt(var + eps)), g), b)

    return SimpleNamespace(
        relu=F.relu, sigmoid=F.sigmoid, tanh=F.tanh, softmax=lambda z: F.softmax(z, axis=-1),
        linear=lambda x, w, b: F.FullyConnected(x, w, b, num_hidden=shape(w)[0],
                                                flatten=False),
        conv2d=lambda x, w, b, pad: F.Convolution(x, w, b, kernel=shape(w)[2:], pad=(pad, pad),
                                                  num_filter=shape(w)[0]),
        maxpool2=lambda x: F.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="max"),
        flatten=F.flatten, layer_norm=layer_norm,
        gelu_tanh=lambda x: 0.5 * x * (1 + F.tanh(c * (x + 0.044715 * x * x * x))),
        permute=lambda x, axes: F.transpose(x, axes=axes),
        split=lambda x, n, axis=-1, squeeze=False: list(
            F.split(x, num_outputs=n, axis=axis, squeeze_axis=squeeze)),
        stack=lambda xs, axis: F.stack(*xs, axis=axis), reshape=F.reshape,
        take=lambda table, idx: F.take(table, idx), add=F.broadcast_add,
        matmul_t=lambda x, w: F.dot(x, w, transpose_b=True),  # x @ w.T, w 2-D
        batch_dot=F.batch_dot)


class _MXNetModel:
    """W6/W8 over MXNet primitives, the same math as Model.lstm_lm / Model.encoder but
    without ``[]``, ``@``, ``.T`` or ``.shape`` (which mx.sym lacks)."""

    def __init__(self, F: SimpleNamespace):
        self.F = F

    def lstm_lm(self, p, tokens):
        F = self.F
        xw = F.linear(F.take(p["emb"], tokens), p["wi"], F.add(p["bi"], p["bh"]))
        h = c = None
        outs = []
        for x_t in F.split(xw, LSTM["seq"], axis=0, squeeze=True):
            h, c = _lstm_step(F, x_t if h is None else x_t + F.matmul_t(h, p["wh"]), c)
            outs.append(h)
        return F.linear(F.stack(outs, 0), p["dec.w"], p["dec.b"])

    def encoder(self, p, x):
        F, hn = self.F, ENC["heads"]
        b, t, d = ENC["batch"], ENC["seq"], ENC["d"]
        dh = d // hn
        q, k, v = F.split(F.linear(F.layer_norm(x, p["ln1.g"], p["ln1.b"], 1e-5),
                                   p["qkv.w"], p["qkv.b"]), 3)

        def heads(z):  # (b, t, d) -> (b*hn, t, dh): batch_dot is 3-D
            return F.reshape(F.permute(F.reshape(z, (b, t, hn, dh)), (0, 2, 1, 3)),
                             (b * hn, t, dh))

        att = F.softmax(F.batch_dot(heads(q), heads(k), transpose_b=True) / math.sqrt(dh))
        ctx = F.reshape(F.permute(F.reshape(F.batch_dot(att, heads(v)), (b, hn, t, dh)),
                                  (0, 2, 1, 3)), (b, t, d))
        x = x + F.linear(ctx, p["proj.w"], p["proj.b"])
        hid = F.gelu_tanh(F.linear(F.layer_norm(x, p["ln2.g"], p["ln2.b"], 1e-5),
                                   p["ff1.w"], p["ff1.b"]))
        return x + F.linear(hid, p["ff2.w"], p["ff2.b"])


# -- the math, once -----------------------------------------------------------------------


def _lstm_step(F, gates, c):
    """One LSTM step from its gate pre-activations (order i, f, g, o): (h, c)."""
    i, f, g, o = F.split(gates, 4)
    i, f, g, o = F.sigmoid(i), F.sigmoid(f), F.tanh(g), F.sigmoid(o)
    c = i * g if c is None else f * c + i * g
    return o * F.tanh(c), c


class Model:
    """The forward functions of W1-W8 over a primitives table ``F``; parameters are a
    dict of arrays named as `make_inputs` makes them (Dense weights (out, in), as
    graphc's)."""

    def __init__(self, F: SimpleNamespace):
        self.F = F

    def w1(self, a, b, c):
        F = self.F
        return F.relu(a * b + c) * F.sigmoid(a) - F.tanh(b)

    def mlp(self, p, x, prefix: str = "fc"):
        F, n = self.F, sum(k.startswith(prefix) for k in p) // 2
        for i in range(n - 1):
            x = F.relu(F.linear(x, p[f"{prefix}{i}.w"], p[f"{prefix}{i}.b"]))
        return F.linear(x, p[f"{prefix}{n - 1}.w"], p[f"{prefix}{n - 1}.b"])

    def lenet(self, p, x):
        F = self.F
        x = F.maxpool2(F.relu(F.conv2d(x, p["c1.w"], p["c1.b"], 2)))
        x = F.maxpool2(F.relu(F.conv2d(x, p["c2.w"], p["c2.b"], 0)))
        return self.mlp(p, F.flatten(x))

    def lstm_lm(self, p, tokens):
        """Input projection of the whole sequence first, then the recurrence (gates i, f,
        g, o); the zero begin state contributes no recurrent term (as graphc's layer)."""
        F = self.F
        xw = F.linear(p["emb"][tokens], p["wi"], p["bi"] + p["bh"])
        wh_t, h, c, outs = p["wh"].T, None, None, []
        for t in range(xw.shape[0]):
            h, c = _lstm_step(F, xw[t] if h is None else xw[t] + h @ wh_t, c)
            outs.append(h)
        return F.linear(F.stack(outs, 0), p["dec.w"], p["dec.b"])

    def encoder(self, p, x):
        """Pre-LN block: 4-head self-attention and a tanh-GELU FFN, each with a residual."""
        F, (b, t, d), hn = self.F, x.shape, ENC["heads"]
        dh = d // hn
        q, k, v = F.split(F.linear(F.layer_norm(x, p["ln1.g"], p["ln1.b"], 1e-5),
                                   p["qkv.w"], p["qkv.b"]), 3)

        def heads(z):
            return F.permute(z.reshape(b, t, hn, dh), (0, 2, 1, 3))

        att = F.softmax(heads(q) @ F.permute(heads(k), (0, 1, 3, 2)) / math.sqrt(dh))
        ctx = F.permute(att @ heads(v), (0, 2, 1, 3)).reshape(b, t, d)
        x = x + F.linear(ctx, p["proj.w"], p["proj.b"])
        hid = F.gelu_tanh(F.linear(F.layer_norm(x, p["ln2.g"], p["ln2.b"], 1e-5),
                                   p["ff1.w"], p["ff1.b"]))
        return x + F.linear(hid, p["ff2.w"], p["ff2.b"])


# -- shared inputs and parameters (numpy float32) ----------------------------------------


def _dense(r, p: dict, name: str, n_in: int, n_out: int) -> None:
    a = math.sqrt(6 / (n_in + n_out))  # Xavier uniform, as graphc's initializer
    p[f"{name}.w"] = r.uniform(-a, a, (n_out, n_in)).astype(np.float32)
    p[f"{name}.b"] = (0.1 * r.standard_normal(n_out)).astype(np.float32)  # nonzero: checked


def _mlp_params(r, sizes) -> dict:
    p: dict = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        _dense(r, p, f"fc{i}", n_in, n_out)
    return p


def _conv(r, p: dict, name: str, c_in: int, c_out: int, k: int) -> None:
    a = math.sqrt(6 / ((c_in + c_out) * k * k))
    p[f"{name}.w"] = r.uniform(-a, a, (c_out, c_in, k, k)).astype(np.float32)
    p[f"{name}.b"] = (0.1 * r.standard_normal(c_out)).astype(np.float32)


def make_inputs(wid: str, seed: int = 0) -> tuple[dict, tuple]:
    """(parameters, inputs) of a workload, in numpy float32 (labels and tokens int64)."""
    r = np.random.default_rng(seed)
    f32 = lambda *shape: r.standard_normal(shape).astype(np.float32)
    if wid == "W1":
        return {}, (f32(W1_N), f32(W1_N), f32(W1_N))
    if wid in ("W2", "W3"):
        x = f32(MLP_BATCH, MLP_SIZES[0])
        y = r.integers(0, MLP_SIZES[-1], MLP_BATCH)
        return _mlp_params(r, MLP_SIZES), ((x,) if wid == "W2" else (x, y))
    if wid in ("W4", "W5"):
        p: dict = {}
        _conv(r, p, "c1", 1, 6, 5)
        _conv(r, p, "c2", 6, 16, 5)
        p.update(_mlp_params(r, (400, 120, 84, 10)))
        x = f32(LENET_BATCH, 1, 28, 28)
        return p, ((x,) if wid == "W4" else (x, r.integers(0, 10, LENET_BATCH)))
    if wid == "W6":
        v, e, h = LSTM["vocab"], LSTM["embed"], LSTM["hidden"]
        p = {"emb": f32(v, e)}
        for name, n_in in (("wi", e), ("wh", h)):
            a = math.sqrt(6 / (n_in + 4 * h))
            p[name] = r.uniform(-a, a, (4 * h, n_in)).astype(np.float32)
        p["bi"], p["bh"] = (0.1 * f32(4 * h), 0.1 * f32(4 * h))
        _dense(r, p, "dec", h, v)
        return p, (r.integers(0, v, (LSTM["seq"], LSTM["batch"])),)
    if wid == "W7":
        return _mlp_params(r, TINY_SIZES), (f32(1, TINY_SIZES[0]),)
    d, ffn = ENC["d"], ENC["ffn"]
    p = {"ln1.g": 1 + 0.1 * f32(d), "ln1.b": 0.1 * f32(d),
         "ln2.g": 1 + 0.1 * f32(d), "ln2.b": 0.1 * f32(d)}
    for name, n_in, n_out in (("qkv", d, 3 * d), ("proj", d, d), ("ff1", d, ffn),
                              ("ff2", ffn, d)):
        _dense(r, p, name, n_in, n_out)
    return p, (f32(ENC["batch"], ENC["seq"], d),)


def forward(model: Model, wid: str) -> Callable:
    """The inference function of ``wid`` as f(params, *inputs)."""
    return {"W1": lambda p, a, b, c: model.w1(a, b, c),
            "W2": lambda p, x: model.F.softmax(model.mlp(p, x)),
            "W4": model.lenet, "W6": model.lstm_lm, "W7": model.mlp,
            "W8": model.encoder}[wid]


# -- numpy: training steps differentiated by hand -----------------------------------------


def _np_pool_backward(x, y, dy):
    """Max pool 2x2 backward; ties only occur at relu's zeros, where relu's own backward
    zeroes the gradient anyway."""
    b, c, h, w = x.shape
    mask = x.reshape(b, c, h // 2, 2, w // 2, 2) == y[:, :, :, None, :, None]
    return (mask * dy[:, :, :, None, :, None]).reshape(x.shape)


def _np_conv_backward(x, w, dy, pad: int, need_dx: bool):
    """(dx, dw, db) of _np_conv2d; dx is the full correlation of dy with the flipped
    kernel."""
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    dw = np.tensordot(dy, _np_windows(xp, k), axes=([0, 2, 3], [0, 2, 3]))
    dx = None
    if need_dx:
        q = k - 1 - pad
        dyp = np.pad(dy, ((0, 0), (0, 0), (q, q), (q, q)))
        dx = np.tensordot(_np_windows(dyp, k), w[:, :, ::-1, ::-1],
                          axes=([1, 4, 5], [0, 2, 3])).transpose(0, 3, 1, 2)
    return dx, dw, dy.sum((0, 2, 3))


def _np_dense_backward(p: dict, g: dict, xs: list, dz, prefix: str = "fc"):
    """Backward through the relu MLP whose layer inputs are ``xs``; returns d(input)."""
    for i in range(len(xs) - 1, -1, -1):
        w = p[f"{prefix}{i}.w"]
        g[f"{prefix}{i}.w"], g[f"{prefix}{i}.b"] = dz.T @ xs[i], dz.sum(0)
        dz = dz @ w
        if i:
            dz = dz * (xs[i] > 0)
    return dz


def _np_xent_grad(z, y):
    """Mean softmax cross-entropy and its gradient w.r.t. the logits."""
    n = z.shape[0]
    s = _np_softmax(z)
    loss = -np.log(s[np.arange(n), y]).mean(dtype=np.float32)
    s[np.arange(n), y] -= 1
    return loss, s / n


def numpy_train_step(wid: str) -> Callable:
    """step(params, x, y) -> loss before the update; updates params in place (SGD)."""
    F = _numpy_ops()

    def mlp_acts(p, x, n):
        xs = [x]
        for i in range(n - 1):
            xs.append(F.relu(F.linear(xs[-1], p[f"fc{i}.w"], p[f"fc{i}.b"])))
        return xs, F.linear(xs[-1], p[f"fc{n - 1}.w"], p[f"fc{n - 1}.b"])

    def w3(p, x, y):
        xs, z = mlp_acts(p, x, len(MLP_SIZES) - 1)
        loss, dz = _np_xent_grad(z, y)
        g: dict = {}
        _np_dense_backward(p, g, xs, dz)
        return loss, g

    def w5(p, x, y):
        a1 = F.conv2d(x, p["c1.w"], p["c1.b"], 2)
        r1 = F.relu(a1)
        p1 = F.maxpool2(r1)
        a2 = F.conv2d(p1, p["c2.w"], p["c2.b"], 0)
        r2 = F.relu(a2)
        p2 = F.maxpool2(r2)
        xs, z = mlp_acts(p, p2.reshape(p2.shape[0], -1), 3)
        loss, dz = _np_xent_grad(z, y)
        g: dict = {}
        df = _np_dense_backward(p, g, xs, dz).reshape(p2.shape)
        da2 = _np_pool_backward(r2, p2, df) * (a2 > 0)
        dp1, g["c2.w"], g["c2.b"] = _np_conv_backward(p1, p["c2.w"], da2, 0, True)
        da1 = _np_pool_backward(r1, p1, dp1) * (a1 > 0)
        _, g["c1.w"], g["c1.b"] = _np_conv_backward(x, p["c1.w"], da1, 2, False)
        return loss, g

    grads = {"W3": w3, "W5": w5}[wid]

    def step(p, x, y):
        loss, g = grads(p, x, y)
        for k, w in p.items():
            w -= np.float32(LR) * g[k]
        return loss

    return step


# -- the peers ----------------------------------------------------------------------------


class Peer:
    """One framework: ``build(wid, params, inputs)`` returns (call, args, state) where
    ``call(*args)`` runs one step and ``state()`` the parameters as numpy arrays."""

    name = ""

    def sync(self, out):
        return np.asarray(out)


class NumpyPeer(Peer):
    name = "numpy"

    def build(self, wid, params, inputs):
        p = {k: v.copy() for k, v in params.items()}
        if wid in ("W3", "W5"):
            step = numpy_train_step(wid)
            return (lambda *a: step(p, *a)), inputs, lambda: p
        f = forward(Model(_numpy_ops()), wid)
        return (lambda *a: f(p, *a)), inputs, lambda: p


class TorchPeer(Peer):
    """Eager: autograd's backward() then an SGD update of every parameter. Compiled
    (``compile=True``): the whole step, forward, backward (torch.func) and the in-place
    update, is one torch.compile'd function; inference functions are compiled whole."""

    def __init__(self, torch, compile: bool):
        self.torch, self.compile = torch, compile
        self.name = "torch.compile" if compile else "torch"
        self.model = Model(_torch_ops(torch))

    def sync(self, out):
        return out.detach().numpy()

    def build(self, wid, params, inputs):
        torch = self.torch
        if self.compile:  # a fresh start per workload, as its own program would have
            torch._dynamo.reset()
        p = {k: torch.from_numpy(v.copy()) for k, v in params.items()}
        args = tuple(torch.from_numpy(a) for a in inputs)
        state = lambda: {k: v.detach().numpy() for k, v in p.items()}
        if wid not in ("W3", "W5"):
            f = forward(self.model, wid)
            fn = lambda *a: f(p, *a)
            if self.compile:
                fn = torch.compile(fn)
            return fn, args, state
        return torch_train_step(torch, self.model, p, wid,
                                torch.compile if self.compile else None), args, state


def torch_train_step(torch, model: Model, p: dict, wid: str,
                     compile_: Callable | None = None) -> Callable:
    """The torch peers' W3/W5 step ``(x, y) -> loss``: cross-entropy, backward, SGD on the
    tensors of ``p`` in place; with ``compile_`` (torch.compile or one of its modes), the
    gradient and the update as one compiled function."""
    net = model.mlp if wid == "W3" else model.lenet
    loss_fn = lambda q, x, y: torch.nn.functional.cross_entropy(net(q, x), y)
    if compile_ is not None:
        def whole(x, y):
            g, loss = torch.func.grad_and_value(loss_fn)(p, x, y)
            torch._foreach_add_(list(p.values()), [g[k] for k in p], alpha=-LR)
            return loss
        return compile_(whole)
    for v in p.values():
        v.requires_grad_(True)

    def eager(x, y):
        loss = loss_fn(p, x, y)
        loss.backward()
        with torch.no_grad():
            torch._foreach_add_(list(p.values()), [v.grad for v in p.values()], alpha=-LR)
        for v in p.values():
            v.grad = None
        return loss.detach()
    return eager


class JaxPeer(Peer):
    """jax.jit of the whole step; training steps take and return the parameters
    (donated, so the update reuses their buffers)."""

    name = "jax.jit"

    def __init__(self, jax):
        self.jax, self.model = jax, Model(_jax_ops(jax))

    def sync(self, out):
        return np.asarray(out.block_until_ready())

    def build(self, wid, params, inputs):
        jax = self.jax
        state = [{k: jax.device_put(v) for k, v in params.items()}]
        args = tuple(jax.device_put(a) for a in inputs)
        get = lambda: {k: np.asarray(v) for k, v in state[0].items()}
        if wid not in ("W3", "W5"):
            f = jax.jit(forward(self.model, wid))
            return (lambda *a: f(state[0], *a)), args, get
        net = self.model.mlp if wid == "W3" else self.model.lenet

        def loss_fn(q, x, y):
            logp = jax.nn.log_softmax(net(q, x), -1)
            return -jax.numpy.take_along_axis(logp, y[:, None], -1).mean()

        def step(q, x, y):
            loss, g = jax.value_and_grad(loss_fn)(q, x, y)
            return jax.tree.map(lambda w, d: w - LR * d, q, g), loss

        step = jax.jit(step, donate_argnums=0)

        def call(x, y):
            state[0], loss = step(state[0], x, y)
            return loss
        return call, args, get


class MXNetPeer(Peer):
    """Imperative: mx.nd ops, training steps under autograd.record, backward() and an
    in-place sgd_update per parameter. Hybridized (``hybrid=True``): the same function as a
    HybridBlock, hybridize(static_alloc, static_shape) (one cached graph; backward and the
    update stay imperative, as with gluon.Trainer). Parameters are passed as inputs so the
    Model's dict-of-arrays math is shared. sync() waits for all async work (the updates
    too)."""

    def __init__(self, mx, hybrid: bool):
        self.mx, self.hybrid = mx, hybrid
        self.name = "mxnet.hybrid" if hybrid else "mxnet"

    def sync(self, out):
        self.mx.nd.waitall()
        return out.asnumpy()

    def build(self, wid, params, inputs):
        mx = self.mx
        nd, train = mx.nd, wid in ("W3", "W5")
        if wid in MXNET_SKIPS:
            raise NotImplementedError(MXNET_SKIPS[wid])
        keys, shapes = list(params), {k: v.shape for k, v in params.items()}
        p = {k: nd.array(v, dtype="float32") for k, v in params.items()}
        args = tuple(nd.array(a, dtype="float32") for a in inputs)  # labels: pick's float
        net = {"W3": "mlp", "W5": "lenet"}.get(wid)

        def fn(F, q, *xs, shape=lambda a: a.shape):
            model = Model(_mxnet_ops(F, shape))
            if wid in ("W6", "W8"):  # expressed without indexing, @ or .shape
                return getattr(_MXNetModel(model.F), {"W6": "lstm_lm", "W8": "encoder"}[wid])(
                    q, *xs)
            if not train:
                return forward(model, wid)(q, *xs)
            z = getattr(model, net)(q, xs[0])
            return F.mean(-F.pick(F.log_softmax(z, axis=-1), xs[1], axis=-1))

        if self.hybrid:
            class Block(mx.gluon.HybridBlock):
                def hybrid_forward(self, F, *a):
                    q = dict(zip(keys, a[:len(keys)]))
                    ids = {id(v): shapes[k] for k, v in q.items()}
                    return fn(F, q, *a[len(keys):], shape=lambda w: ids[id(w)])
            block = Block()
            block.hybridize(static_alloc=True, static_shape=True)
            run = lambda *a: block(*p.values(), *a)
        else:
            run = lambda *a: fn(nd, p, *a)
        state = lambda: {k: v.asnumpy() for k, v in p.items()}
        if not train:
            return run, args, state
        for v in p.values():
            v.attach_grad()

        def step(x, y):
            with mx.autograd.record():
                loss = run(x, y)
            loss.backward()
            for v in p.values():
                nd.sgd_update(v, v.grad, lr=LR, wd=0.0, out=v)
            return loss
        return step, args, state


# -- measuring ----------------------------------------------------------------------------


def _times(call, args, sync, repeats: int, min_seconds: float) -> list[float]:
    times, start = [], time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        sync(call(*args))
        times.append(time.perf_counter() - t0)
        if len(times) >= 10 * repeats:
            break
    return times


def _fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


#: max |peer - numpy| allowed, relative to max(1, max |numpy|): float32 results of one
#: function computed with different summation orders and transcendental approximations
TOLERANCE = {"W1": 1e-5, "W2": 1e-5, "W3": 1e-5, "W4": 1e-4, "W5": 1e-4, "W6": 1e-4,
             "W7": 1e-5, "W8": 1e-4}


def _check(wid: str, peer: str, got: dict, want: dict) -> float:
    """Largest scaled difference over the output (and trained parameters); asserts it is
    within TOLERANCE."""
    worst = 0.0
    for k, ref in want.items():
        ref = np.asarray(ref, np.float64)
        scale = max(1.0, float(np.max(np.abs(ref))))
        diff = float(np.max(np.abs(np.asarray(got[k], np.float64) - ref)))
        assert diff <= TOLERANCE[wid] * scale, \
            f"{wid} {peer}: '{k}' differs from numpy's by {diff:.3g} (scale {scale:.3g})"
        worst = max(worst, diff / scale)
    return worst


def ceilings() -> dict:
    """Copy bandwidth (256 MB, bytes read + written) and numpy's float32 GEMM 2048^3."""
    src = np.ones(64 << 20, np.float32)
    dst = np.empty_like(src)
    copy = statistics.median(_times(lambda: np.copyto(dst, src), (), lambda o: o, 5, 0.5))
    a = np.ones((2048, 2048), np.float32)
    gemm = statistics.median(_times(lambda: a @ a, (), lambda o: o, 3, 0.5))
    bw = 2 * src.nbytes / copy
    return {"copy_GBps": bw / 1e9, "w1_floor_s": 4 * W1_N * 4 / bw,
            "gemm_GFLOPs": 2 * 2048 ** 3 / gemm / 1e9}


def _peer(name: str, threads: int) -> Peer:
    if name == "numpy":
        return NumpyPeer()
    if name.startswith("mxnet"):
        import mxnet
        return MXNetPeer(mxnet, name == "mxnet.hybrid")
    if name == "jax.jit":
        import jax
        jax.config.update("jax_platforms", "cpu")
        return JaxPeer(jax)
    import torch
    torch.set_num_threads(threads)
    return TorchPeer(torch, name == "torch.compile")


def run_worker(args: argparse.Namespace) -> None:
    """One peer over the workloads: its rows (JSON lines on stdout) and, in ``--out``, its
    first results for the parent's check."""
    repeats, min_seconds = (5, 0.2) if args.quick else (21, 1.0)
    try:
        peer = _peer(args.peers, args.threads)
    except ImportError as e:  # not installed here: the parent notes it and goes on
        print(json.dumps({"missing": args.peers, "error": str(e)}), flush=True)
        return
    results = {}
    for wid in args.workloads.split(","):
        params, inputs = make_inputs(wid)
        try:
            call, cargs, state = peer.build(wid, params, inputs)
        except NotImplementedError as e:  # not expressible in this peer yet: noted, not run
            print(json.dumps({"skipped": wid, "peer": peer.name, "reason": str(e)}), flush=True)
            continue
        t0 = time.perf_counter()
        results[f"{wid}/out"] = peer.sync(call(*cargs))
        first = time.perf_counter() - t0
        if wid in ("W3", "W5"):  # copies: the timed steps go on updating in place
            results.update({f"{wid}/{k}": np.array(v) for k, v in state().items()})
        times = _times(call, cargs, peer.sync, repeats, min_seconds)
        print(json.dumps({"workload": wid, "peer": peer.name,
                          "median_s": statistics.median(times), "best_s": min(times),
                          "first_call_s": first, "calls": len(times)}), flush=True)
    info = {"torch_threads": sys.modules["torch"].get_num_threads()
            if "torch" in sys.modules else None,
            "versions": {m: sys.modules[m].__version__ for m in ("numpy", "torch", "jax",
                                                                  "mxnet")
                         if m in sys.modules}}
    print(json.dumps({"info": info}), flush=True)
    np.savez(args.out, **results)


def _spawn(args: argparse.Namespace, peer: str, out: str):
    """Run one peer in its own process: thread pools of different frameworks spinning
    in one process slow each other down severalfold on two cores."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--peers", peer,
           "--workloads", args.workloads, "--threads", str(args.threads), "--out", out]
    cmd += ["--quick"] * args.quick + ["--warm-cache"] * args.warm_cache
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            yield json.loads(line)
    if proc.returncode:
        raise SystemExit(f"the {peer} worker failed (exit {proc.returncode})")


def main(args: argparse.Namespace) -> None:
    asked = [m for n in args.peers.split(",") for m in ALIASES.get(n, (n,))]
    names = ["numpy"] + [n for n in dict.fromkeys(asked) if n != "numpy"]  # numpy: oracle
    wids = args.workloads.split(",")
    info = {"machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
            "cpu_count": os.cpu_count(), "threads": args.threads,
            "affinity": sorted(os.sched_getaffinity(0)), "python": platform.python_version(),
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                   "MKL_NUM_THREADS", "XLA_FLAGS",
                                                   "MXNET_CPU_WORKER_NTHREADS",
                                                   "TORCHINDUCTOR_FORCE_DISABLE_CACHES")},
            "quick": args.quick, "load_before": os.getloadavg()}
    print(" ".join(f"{k}={v}" for k, v in info.items() if k != "env"))
    print("env:", " ".join(f"{k}={v}" for k, v in info["env"].items() if v))
    if not args.quick:
        info["ceilings"] = c = ceilings()
        print(f"ceilings: copy {c['copy_GBps']:.1f} GB/s (W1 floor {_fmt(c['w1_floor_s'])}), "
              f"float32 GEMM {c['gemm_GFLOPs']:.0f} GFLOP/s")
    print(f"{'id':<4} {'peer':<14} {'median':>10} {'best':>10} {'first call':>11} "
          f"{'calls':>6}")
    rows, outs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = os.path.join(tmp, f"{name}.npz")
            for row in _spawn(args, name, path):
                if "info" in row:
                    info[name] = row["info"]
                    continue
                if "skipped" in row:
                    info.setdefault("skipped", {}).setdefault(name, {})[row["skipped"]] = \
                        row["reason"]
                    print(f"{row['skipped']:<4} {name:<14} skipped: {row['reason']}", flush=True)
                    continue
                if "missing" in row:
                    info.setdefault("missing", {})[name] = row["error"]
                    print(f"{name:<19} not installed: {row['error']}", flush=True)
                    continue
                rows.append(row)
                print(f"{row['workload']:<4} {name:<14} {_fmt(row['median_s']):>10} "
                      f"{_fmt(row['best_s']):>10} {_fmt(row['first_call_s']):>11} "
                      f"{row['calls']:>6}", flush=True)
            if name not in info.get("missing", {}):
                with np.load(path) as f:
                    outs[name] = dict(f)
    if "numpy" not in outs:
        raise SystemExit("numpy is not installed in this interpreter: it is every peer's oracle")
    names = [n for n in names if n in outs]
    info["load_after"] = os.getloadavg()
    for row in rows:  # every peer computes numpy's function (asserts)
        wid, name = row["workload"], row["peer"]
        keys = [k for k in outs["numpy"] if k.startswith(wid + "/")]
        row["max_scaled_diff"] = _check(wid, name, {k: outs[name][k] for k in keys},
                                        {k: outs["numpy"][k] for k in keys})
    print(f"\nmedian per call; every peer's result matches numpy's (max scaled difference "
          f"{max((r['max_scaled_diff'] for r in rows), default=0):.1e}). "
          f"Load average before/after: "
          f"{info['load_before'][0]:.1f}/{info['load_after'][0]:.1f} on {os.cpu_count()} "
          f"cores: under ~1.3x is noise")
    table = {(r["workload"], r["peer"]): r["median_s"] for r in rows}
    print(f"{'id':<4}" + "".join(f"{n:>15}" for n in names))
    for wid in wids:
        print(f"{wid:<4}" + "".join(f"{_fmt(table[wid, n]) if (wid, n) in table else '-':>15}"
                                    for n in names))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"info": info, "results": rows}, fh, indent=1)


if __name__ == "__main__":
    (run_worker if ARGS.worker else main)(ARGS)
