"""The llvm executable's call path (`graphc.backends.llvm.program`) against the reference
backend: what a call may assume about its arguments and what it hands back.

- argument pointers are cached per array object, so an array changed in place between
  calls must be read again, and a new array each call must work (it is staged: copied
  into a fixed buffer once the cache keeps missing);
- any layout of an argument: non-contiguous, byte-swapped, a numpy scalar, 0-d;
- results: fresh arrays, except an input returned as is and a view of an input, which
  alias the caller's array as in numpy and the reference backend (a donated buffer is
  returned in place);
- one native segment for a graph whose nodes all have native code, Python steps in
  between for the others;
- the sanitizer poisons a buffer when the plan says it dies: a plan that ends a lifetime
  too early gives NaN under the sanitizer.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.backends.llvm import program


def _both(fn, *args, **options):
    got = gc.jit(fn, backend="llvm", **options)(*args)
    want = gc.jit(fn, backend="reference")(*args)
    return got, want


def _close(got, want):
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):
        g, w = np.asarray(g.numpy()), np.asarray(w.numpy())
        assert (g.shape, g.dtype) == (w.shape, w.dtype)
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [5, program.STAGE_BYTES])   # staged and not
def test_arrays_changed_in_place_and_new_arrays_are_read_again(n):
    f = gc.jit(lambda a, b: gc.tanh(a) * b + 1.0, backend="llvm")
    a, b = np.linspace(-2, 2, n, dtype=np.float32), np.ones(n, np.float32)
    first = f(a, b).numpy().copy()
    a *= 2   # same object, new contents: its cached pointer must be read through
    np.testing.assert_allclose(f(a, b).numpy(), np.tanh(a) + 1.0, rtol=1e-6, atol=1e-6)
    assert not np.array_equal(first, f(a, b).numpy())
    for k in range(4):   # a new array every call: cache misses, then staging
        x = np.full(n, k / 4, np.float32)
        np.testing.assert_allclose(f(x, b).numpy(), np.tanh(x) + 1.0, rtol=1e-6, atol=1e-6)


def test_any_argument_layout():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((6, 8)).astype(np.float32)
    fn = lambda x, s: gc.exp(x) * s  # noqa: E731
    s = np.float32(0.5)
    for x in (base, base.T.copy().T, base[:, ::2].repeat(2, 1), base.astype(">f4"),
              np.asfortranarray(base)):
        _close(*_both(fn, x, s))
    _close(*_both(fn, np.array(2.0, np.float32), np.array(3.0, np.float32)))


def test_results_are_fresh_and_inputs_come_back_as_given():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    fn = lambda x: (x, gc.transpose(x), x * 2.0)  # noqa: E731
    f, r = gc.jit(fn, backend="llvm"), gc.jit(fn, backend="reference")
    for backend in (f, r):
        same, t, _ = backend(x)
        assert same.numpy() is x and np.shares_memory(t.numpy(), x)   # as numpy's x.T
    for k in range(3):   # new arguments each call: staged, so the view must be a copy
        y = x + k
        _, t, doubled = f(y)
        np.testing.assert_array_equal(t.numpy(), y.T)
        doubled.numpy()[...] = -1   # the caller owns a result: writing into it ...
        _, t2, d2 = f(y)
        np.testing.assert_array_equal(d2.numpy(), y * 2)   # ... changes no later call
        assert (doubled.numpy() == -1).all(), "a later call wrote into an earlier result"
        np.testing.assert_array_equal(t2.numpy(), y.T)


def test_donated_argument_holds_the_result():
    w, g = np.ones(1 << 16, np.float32), np.full(1 << 16, 2, np.float32)
    f = gc.jit(lambda w, g: w - 0.5 * g, backend="llvm", donate="w")
    out = f(w, g).numpy()
    np.testing.assert_array_equal(out, np.zeros(1 << 16, np.float32))
    assert np.shares_memory(out, w)


def test_one_segment_when_every_node_is_native_and_python_steps_otherwise():
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    f = gc.jit(lambda x: gc.softmax(gc.relu(x) * 2.0, axis=-1).sum(axis=0), backend="llvm",
               sanitize=False)   # (the sanitizer makes one segment per node)
    exe = f.compiled(x)
    assert [s[0] for s in exe.program.schedule] == ["native"]
    g = gc.jit(lambda x: gc.exp(x) + gc.argmax(x, axis=1).astype("float32")[:, None],
               backend="llvm")
    _close(g(x), gc.jit(g.fn, backend="reference")(x))
    kinds = [s[0] for s in g.compiled(x).program.schedule]
    assert "python" in kinds and "native" in kinds


def test_sanitizer_poisons_a_buffer_whose_plan_lifetime_ends_too_early(monkeypatch):
    from graphc.passes import memory
    x = np.linspace(0.1, 1, 64).astype(np.float32)
    fn = lambda x: gc.log(x) + gc.sum(gc.exp(x) * 3.0)  # noqa: E731
    real = memory.plan_memory

    def early(graph, *args, **kwargs):
        plan = real(graph, *args, **kwargs)
        for b in plan.buffers.values():   # claim every arena buffer dies at its birth
            if b.kind == memory.ARENA:
                b.end = b.start
        return plan
    monkeypatch.setattr(memory, "plan_memory", early)
    good = gc.jit(fn, backend="llvm", opt_level=0, sanitize=False)(x).numpy()
    np.testing.assert_allclose(good, np.log(x) + np.sum(np.exp(x) * 3), rtol=1e-5)
    bad = gc.jit(fn, backend="llvm", opt_level=0, sanitize=True)(x).numpy()
    assert np.isnan(bad).any()


@pytest.mark.parametrize("shape", [(17, 33), (1023, 5), (3, 4097), (16, 16), (1, 7),
                                   (0, 5), (2, 17, 31)])
def test_transposed_reads_use_tiled_loops(shape):
    """An input read across its rows (through a transpose view) makes the strided kernel
    walk the last two axes in tiles; partial tiles at every edge must be covered once."""
    rng = np.random.default_rng(sum(shape))
    w = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape[:-2] + shape[-2:][::-1]).astype(np.float32)
    perm = tuple(range(len(shape) - 2)) + (len(shape) - 1, len(shape) - 2)
    fn = lambda w, g: w - 0.1 * gc.transpose(g, perm)  # noqa: E731
    f = gc.jit(fn, backend="llvm")
    np.testing.assert_allclose(f(w, g).numpy(), w - 0.1 * np.transpose(g, perm),
                               rtol=1e-6, atol=1e-6)
    if min(shape[-2:]) > 1:   # (a transpose of a (n, 1) array is contiguous)
        assert "_tiled" in f.compiled(w, g).optimized_ir


def test_injective_nodes_run_as_native_block_copies():
    """concat / stack / slice / split move whole blocks: native copies, no Python step;
    runs of one element (a scalar read) and of many share the node (regression: both were
    named k<i>_flat)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 3, 4)).astype(np.float32)
    b = rng.standard_normal((1, 1, 4)).astype(np.float32)
    c = rng.standard_normal(1).astype(np.float32)
    d = rng.standard_normal(5).astype(np.float32)

    def fn(a, b, c, d):
        return (gc.concat([a, b], axis=1), gc.concat([c, d]), gc.stack([d, d * 2]),
                a[:, 1:3], gc.split(d, [2], axis=0)[1])
    f = gc.jit(fn)
    got = [np.asarray(t) for t in f(a, b, c, d)]
    want = [np.concatenate([a, b], 1), np.concatenate([c, d]), np.stack([d, d * 2]),
            a[:, 1:3], d[2:]]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    exe = f.compiled(a, b, c, d)
    assert exe.program.python_steps == 0, exe.program.schedule
    # a pad's fill value is not an input element, whatever its value (regression: a fill
    # of 7 probed as input element 6)
    x = np.arange(12, dtype=np.int64).reshape(3, 4) - 5
    g = gc.jit(lambda x: gc.pad(x, ((1, 1), (0, 2)), value=7))
    np.testing.assert_array_equal(np.asarray(g(x)), np.pad(x, ((1, 1), (0, 2)),
                                                           constant_values=7))
