"""The model zoo (tests/models.py) on the llvm backend against the reference backend:
every inference function and training step at every opt level, with and without donated
arguments, and every model as a hybridized block (forward, gradients through the tape,
one SGD step through a jit-compiled Trainer).

Each llvm executable runs as one native program over its arena, so every test also calls
it twice: the second call must give the same numbers, leave undonated arguments alone and
not write into the first call's results.

Tolerances: the float32 opcheck tolerance (rtol 1e-5, atol 1e-6) scaled for the GEMMs and
sums whose summation order differs between OpenBLAS-in-native-code, our own reductions and
numpy: rtol 2e-4 / atol 2e-5 for training steps (a step's new parameters are p - lr * g,
where g is a sum over the batch of products of activations).
"""

from __future__ import annotations

import functools

import models as M
import numpy as np
import pytest

import graphc as gc
from graphc import autograd, pytree
from graphc.passes import pipeline

LEVELS = sorted(pipeline.OPT_LEVELS)
CASES = {**dict(M.INFERENCE.items()),
         **{f"{k}_step": functools.partial(M.train_step, k) for k in M.SPECS}}


def _arrays(out) -> list[np.ndarray]:
    return [np.asarray(t.numpy() if isinstance(t, gc.Tensor) else t)
            for t in pytree.flatten(out)[0]]


def _tol(case: str) -> tuple[float, float]:
    return (2e-4, 2e-5) if case.endswith("_step") else (1e-5, 1e-6)


def _compare(got: list, want: list, case: str, what: str) -> None:
    rtol, atol = _tol(case)
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want)):
        assert (g.shape, g.dtype) == (w.shape, w.dtype), f"{what} result {i}"
        if w.dtype.kind != "f":
            np.testing.assert_array_equal(g, w, err_msg=f"{what} result {i}")
        else:
            scale = max(1.0, float(np.abs(w).max(initial=0)))
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol * scale,
                                       err_msg=f"{what} result {i}")


@functools.cache
def _reference(case: str) -> list:
    fn, args = CASES[case]()
    return _arrays(gc.jit(fn, backend="reference", opt_level=0)(*args))


@pytest.mark.parametrize("donate", [False, True], ids=["", "donated"])
@pytest.mark.parametrize("level", LEVELS, ids=[f"O{lvl}" for lvl in LEVELS])
@pytest.mark.parametrize("case", sorted(CASES))
def test_jit_matches_reference(case, level, donate):
    fn, args = CASES[case]()
    donated = (tuple(range(2, len(args))) if case.endswith("_step")
               else tuple(range(len(args)))) if donate else ()
    f = gc.jit(fn, backend="llvm", opt_level=level, donate=donated)
    first_args = [a.copy() for a in args]
    raw = _arrays(f(*first_args))
    first = [a.copy() for a in raw]
    what = f"{case} O{level} donate={donate}"
    _compare(first, _reference(case), case, what)
    for i, (a, b) in enumerate(zip(first_args, args)):
        if i not in donated:
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: argument {i} overwritten")
    for a in raw:
        a[...] = np.nan
    again = _arrays(f(*[a.copy() for a in args]))
    for i, (g, w) in enumerate(zip(again, first)):
        np.testing.assert_array_equal(g, w, err_msg=f"{what}: second call, result {i}")
    assert all(np.isnan(a).all() for a in raw), f"{what}: the second call wrote into the " \
                                                "first call's results"
    exe = f.compiled(*args)
    assert exe.program is not None and exe.kernels, what


def _block_run(name: str, backend: str) -> list[np.ndarray]:
    gc.random.seed(0)   # the same dropout keys for both backends
    case = M.BLOCKS[name]()
    net = case.block
    net.hybridize(backend=backend)
    data = [gc.array(d) for d in case.data]
    with autograd.record():
        out = net(*data)
        loss = case.loss(out, gc.array(case.labels))
    loss.backward()
    params = list(net.collect_params().values())
    grads = [p.grad().numpy().copy() for p in params if p.grad_req != "null"]
    trainer = gc.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    trainer.step(1)
    return [_arrays(out)[0], np.asarray(loss.numpy()), *grads,
            *[p.data().numpy().copy() for p in params]]


@pytest.mark.parametrize("name", sorted(M.BLOCKS))
def test_hybridized_blocks_match_reference(name):
    got, want = _block_run(name, "llvm"), _block_run(name, "reference")
    _compare(got, want, "block_step", f"hybridized {name}")
