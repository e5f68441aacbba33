"""The LLVM backend's elementwise kernels and threads against the reference backend.

Nodes without native code run in the reference interpreter, so every graph must run and
match the reference:
floats within the dtype's tolerance with NaN in the same places (transcendentals may differ
from numpy's in the last bits), integers and bools exactly. What is checked here:

- every ELEMENTWISE op of the registry, in every dtype it takes without promotion, on
  odd sizes (0, 1, 3, 7, 17, 1023, 4097), broadcasting, 0-d, and non-contiguous inputs
  (transposed, strided and stride-0 views), with NaN, inf and signed zeros among the values;
  all cases of one op are nodes of one graph (one LLVM module), and none may fall back;
- fused kernels from ``gc.jit(..., backend='llvm')`` (the W1 chain, a bias broadcast, several
  outputs, integer and bool chains, float16), dropout masks bit-identical to the reference;
- the model suite (tests/models.py) forward at opt levels 0 and 2 (random graphs:
  tests/test_llvm_fuzz.py);
- the optimized IR of a contiguous float32 kernel uses 8-wide float vectors (AVX2);
- large kernels split across threads give the same bits on any thread count.
"""

from __future__ import annotations

import inspect
import math
import re

import models as M
import numpy as np
import pytest

import graphc as gc
from graphc import dtypes as dt
from graphc.backends import get_backend
from graphc.backends.llvm import threads
from graphc.graph import Graph
from graphc.ops import registry
from graphc.ops.registry import Kind
from graphc.types import TensorType

TOL = {"float16": (2e-3, 1e-3), "float32": (2e-5, 1e-6), "float64": (1e-12, 1e-13)}
DTYPES = ("bool", "int32", "int64", "float16", "float32", "float64")


def _compare(got, want, what: str, signs: bool = True) -> None:
    """Equal within float tolerance; NaNs in the same places; zeros of the same sign."""
    got, want = np.asarray(got), np.asarray(want)
    assert (got.shape, got.dtype) == (want.shape, want.dtype), \
        f"{what}: {got.dtype}{list(got.shape)} vs {want.dtype}{list(want.shape)}"
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaNs")
    rtol, atol = TOL[want.dtype.name]
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol,
                               atol=atol, err_msg=what)
    if signs:
        zeros = (got == 0) & (want == 0)
        np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(want[zeros]),
                                      err_msg=f"{what}: signs of zeros")


def _run_both(graph: Graph, inputs: list) -> tuple[list, list, object]:
    exe = get_backend("llvm").compile(graph)
    with np.errstate(all="ignore"):
        got = [np.asarray(o) for o in exe(*inputs)]
        want = [np.asarray(o) for o in get_backend("reference").compile(graph)(*inputs)]
    return got, want, exe


# -- every elementwise op ---------------------------------------------------------------------

ELEMENTWISE = sorted(n for n, op in registry.all_ops().items() if op.kind is Kind.ELEMENTWISE)
ATTRS = {"leaky_relu": [{"alpha": 0.1}], "elu": [{"alpha": 0.7}],
         "gelu": [{"approximate": "none"}, {"approximate": "tanh"}],
         "clip": [{"min": -0.5, "max": 0.75}, {"min": None, "max": 1.0},
                  {"min": -1.0, "max": None}],
         "cast": [{"dtype": d} for d in DTYPES], "dropout": [{"p": 0.0}, {"p": 0.3}]}

UNARY_CASES = [[(n,)] for n in (0, 1, 3, 7, 17, 1023, 4097)] + [[()], [(2, 3, 5)]]
BINARY_CASES = [[(n,), (n,)] for n in (0, 1, 7, 17, 4097)] + [
    [(), ()], [(1023,), ()], [(), (17,)], [(3, 1), (1, 4)], [(2, 3, 5), (5,)],
    [(2, 0, 3), (3,)], [(1,), (7,)], [(4, 1, 3), (1, 1)], [(3, 1, 7), (3, 17, 1)]]
TERNARY_CASES = [[(n,)] * 3 for n in (0, 1, 17, 4097)] + [
    [(3, 1), (1, 4), ()], [(17,), (), (17,)], [(), (2, 3), (3,)]]
#: non-contiguous first inputs: a transposed view, a ::2 view, a stride-0 broadcast view,
#: in a kernel without broadcasting (flat) and in one with (strided)
LAYOUTS = ("T", "step", "bcast")
LAYOUT_CASES = {1: [[(5, 7)]], 2: [[(5, 7), (5, 7)], [(5, 7), (1, 7)]],
                3: [[(5, 7)] * 3, [(5, 7), (7,), (5, 1)]]}


def _arity(op) -> int:
    attrs = ATTRS.get(op.name, [{}])[0]
    return len(inspect.signature(op.scalar).parameters) - len(attrs)


def _values(rng, shape, dtype: str, role: str = "x") -> np.ndarray:
    n = math.prod(shape)
    if role == "key":
        return np.asarray(rng.integers(0, 2**40), np.int64)
    if dtype == "bool":
        v = rng.random(n) < 0.5
    elif dtype in dt.INTS:
        v = rng.integers(0, 6, n) if role == "exponent" else rng.integers(-100, 100, n)
    else:
        v = rng.standard_normal(n) * 2.5
        special = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 80.0, -80.0]
        k = min(n, len(special))
        v[rng.permutation(n)[:k]] = rng.permutation(special)[:k]
    return v.astype(dt.to_numpy(dtype)).reshape(shape)


def _layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as a non-contiguous view."""
    if a.ndim == 0 or a.size == 0:
        return a
    if layout == "T":
        return np.ascontiguousarray(a.T).T
    if layout == "step":
        big = np.empty((2 * a.shape[0], *a.shape[1:]), a.dtype)
        big[::2] = a
        return big[::2]
    first = a.reshape(-1)[:1]   # broadcast: a stride-0 view of one value
    return np.broadcast_to(first.reshape((1,) * a.ndim), a.shape)


def _dtypes_of(op, dtype: str, arity: int) -> tuple[str, ...] | None:
    """The input dtypes if ``op`` takes ``dtype`` without promoting it, else None."""
    want = (dtype,) * arity
    if op.name == "dropout":
        want = (dtype, "int64")
    elif op.name == "where":
        want = ("bool", dtype, dtype)
    got = tuple(op.promote(want)) if op.promote is not None else want
    return want if got == want else None


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_every_elementwise_op_matches_reference(name):
    op = registry.get(name)
    arity = _arity(op)
    cases = {1: UNARY_CASES, 2: BINARY_CASES, 3: TERNARY_CASES}[arity]
    cases = [(c, None) for c in cases] + [(c, lay) for c in LAYOUT_CASES[arity]
                                          for lay in LAYOUTS]
    if name == "dropout":
        cases = [([c[0], ()], None) for c in UNARY_CASES] + [([(5, 7), ()], lay)
                                                             for lay in LAYOUTS]
    rng = np.random.default_rng(sum(map(ord, name)))
    graph = Graph(f"op_{name}")
    inputs, labels = [], []
    for dtype in DTYPES:
        types = _dtypes_of(op, dtype, arity)
        if types is None:
            continue
        for attrs in ATTRS.get(name, [{}]):
            for shapes, layout in cases:
                args = []
                for j, (shape, t) in enumerate(zip(shapes, types)):
                    role = "key" if name == "dropout" and j == 1 else \
                        "exponent" if name == "pow" and j == 1 else "x"
                    a = _values(rng, shape, t, role)
                    args.append(_layout(a, layout) if j == 0 and layout else a)
                vals = [graph.add_input(f"in{len(inputs) + j}", TensorType(a.shape, t))
                        for j, (a, t) in enumerate(zip(args, types))]
                node = graph.add_node(op, vals, attrs)
                graph.outputs.append(node.outputs[0])
                inputs += args
                labels.append(f"{name}{attrs} {types} {shapes} layout={layout}")
    assert labels, f"{name} takes none of {DTYPES}"
    got, want, exe = _run_both(graph, inputs)
    assert not exe.fallback_nodes, f"fell back: {exe.fallback_nodes[:3]}"
    for g, w, label in zip(got, want, labels):
        _compare(g, w, label)


def test_every_primitive_is_rendered():
    """The ops' scalar expressions use only primitives the code generator renders."""
    from graphc.backends.llvm import codegen
    from graphc.ops import scalar as S
    for fn in S.UNARY + S.BINARY + ("select",):
        assert hasattr(codegen._Emitter, f"_p_{fn}"), fn


# -- fused kernels through gc.jit ------------------------------------------------------------

def _w1(a, b, c):
    return gc.relu(a * b + c) * gc.sigmoid(a) - gc.tanh(b)


def _jit_both(fn, *args, **options):
    f = gc.jit(fn, backend="llvm", **options)
    r = gc.jit(fn, backend="reference", **options)
    with np.errstate(all="ignore"):
        got, want = f(*args), r(*args)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    return [t.numpy() for t in got], [t.numpy() for t in want], f.compiled(*args)


CHAINS = {
    "w1": (_w1, lambda rng, n: [rng.standard_normal(n).astype(np.float32) for _ in range(3)]),
    "bias_tanh": (lambda x, w, b: gc.tanh(x * w + b) * 0.5,
                  lambda rng, n: [rng.standard_normal((3, n)).astype(np.float32),
                                  rng.standard_normal((3, 1)).astype(np.float32),
                                  rng.standard_normal(n).astype(np.float32)]),
    "two_outputs": (lambda x, y: (x * 2 + 1, gc.exp(x) - gc.abs(y)),
                    lambda rng, n: [rng.standard_normal(n), rng.standard_normal(n)]),
    "int_chain": (lambda i, j: gc.where(i > j, i - j * 3, gc.maximum(i, j) * i),
                  lambda rng, n: [rng.integers(-50, 50, n).astype(np.int32),
                                  rng.integers(-50, 50, n).astype(np.int32)]),
    "cast_chain": (lambda x, i: gc.cast(x * 2.5, "int64") + i,
                   lambda rng, n: [rng.standard_normal(n).astype(np.float32) * 10,
                                   rng.integers(-9, 9, n)]),
    "bool_chain": (lambda x, y: gc.logical_and(x > 0, gc.logical_not(y < 0.5)),
                   lambda rng, n: [rng.standard_normal(n), rng.standard_normal(n)]),
    "float16": (lambda x, y: gc.gelu(x * y + 1) - gc.clip(y, -1, 1),
                lambda rng, n: [rng.standard_normal(n).astype(np.float16),
                                rng.standard_normal(n).astype(np.float16)]),
}


@pytest.mark.parametrize("n", (1, 7, 1023, 4097))
@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_fused_chains_match_reference(chain, n):
    fn, make = CHAINS[chain]
    args = make(np.random.default_rng(n), n)
    got, want, exe = _jit_both(fn, *args)
    fused = [node for node in exe.graph.nodes if node.body is not None]
    assert fused and not exe.fallback_nodes, exe.graph
    for i, (g, w) in enumerate(zip(got, want)):
        _compare(g, w, f"{chain} n={n} output {i}")


def test_fused_kernel_on_non_contiguous_and_broadcast_inputs():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((17, 9)).astype(np.float32).T          # transposed
    b = rng.standard_normal((9, 34)).astype(np.float32)[:, ::2]    # strided
    c = np.broadcast_to(rng.standard_normal(17).astype(np.float32), (9, 17))  # stride 0
    got, want, _ = _jit_both(_w1, a, b, c)
    _compare(got[0], want[0], "w1 on views")
    got, want, _ = _jit_both(lambda x, y: gc.tanh(x) * y + 1, a, c[:1])  # broadcast kernel
    _compare(got[0], want[0], "broadcast kernel on views")


def test_byte_swapped_and_unaligned_inputs():
    graph = Graph("odd")
    x, y = (graph.add_input(n, TensorType(s, "float32")) for n, s in (("x", (3, 4)),
                                                                      ("y", (4,))))
    graph.outputs = [graph.add_node("add", [x, y]).outputs[0],
                     graph.add_node("mul", [x, x]).outputs[0]]
    xs = np.arange(12, dtype=">f4").reshape(3, 4)
    ys = np.zeros(17, np.uint8)[1:].view(np.float32)  # misaligned by one byte
    ys[:] = [1.5, 2, 3, -4]
    got, want, _ = _run_both(graph, [xs, ys])
    for i, (g, w) in enumerate(zip(got, want)):
        _compare(g, w, f"output {i}")


def test_nan_and_inf_propagate_as_numpy():
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 3e38], np.float32)
    x, y = np.meshgrid(special, special)
    x, y = x.ravel(), y.ravel()
    fn = lambda x, y: (gc.maximum(x, y), gc.minimum(x, y), x * y - x / y, gc.relu(x),  # noqa: E731
                       gc.exp(x) + gc.tanh(y), gc.cast(x, "int32"), gc.cast(y, "bool"),
                       gc.sign(x), gc.where(x < y, x, y), gc.clip(x, -1, 1))
    got, want, _ = _jit_both(fn, x, y, opt_level=0)
    for i, (g, w) in enumerate(zip(got, want)):
        _compare(g, w, f"output {i}")


@pytest.mark.parametrize("n", (1, 3, 17, 1023, 4097))
def test_dropout_masks_identical_to_reference(n):
    x = np.random.default_rng(n).standard_normal((n, 3)).astype(np.float32)

    def fn(x):
        return gc.dropout(x * 2, 0.3, training=True) + 1

    for backend_runs in range(2):
        gc.random.seed(42 + backend_runs)
        got = gc.jit(fn, backend="llvm")(x).numpy()
        gc.random.seed(42 + backend_runs)
        want = gc.jit(fn, backend="reference")(x).numpy()
        np.testing.assert_array_equal(got, want)
        assert 0 < (got == 1).sum() < got.size or n < 5


# -- models and random graphs ----------------------------------------------------------------

@pytest.mark.parametrize("level", (0, 2))
@pytest.mark.parametrize("case", sorted(M.INFERENCE))
def test_models_forward_match_reference(case, level):
    fn, args = M.INFERENCE[case]()
    got, want, exe = _jit_both(fn, *args, opt_level=level)
    assert exe.kernels or level > 0, "no kernel was compiled"  # O2 may fuse all into
    # reduction and library kernels, which this slice runs in the interpreter
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=f"{case} output {i}")


# -- generated code --------------------------------------------------------------------------

def test_contiguous_float32_kernel_is_vectorized_8_wide():
    x = np.ones(4096, np.float32)
    f = gc.jit(lambda a, b, c: gc.relu(a * b + c) - gc.minimum(a, c), backend="llvm")
    exe = f.compiled(x, x, x)
    assert len(exe.kernels) == 1
    vectors = set(re.findall(r"<(\d+) x float>", exe.optimized_ir))
    assert "8" in vectors or "16" in vectors, sorted(vectors)


def test_nodes_without_native_code_fall_back_but_run():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    fn = lambda x, w: gc.argmax(gc.softmax(gc.relu(gc.conv2d(x, w) + 1), axis=1), axis=1)  # noqa: E731
    got, want, exe = _jit_both(fn, x, w)
    # argmax has no native code yet: its (fused) kernel is interpreted
    ops = {n.op.name for k in exe.fallback_nodes
           for n in (k.body.nodes if k.body is not None else [k])}
    assert "argmax" in ops, ops
    _compare(got[0], want[0], "argmax(softmax(relu(conv2d(x, w) + 1)))")


# -- threads -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [threads.PARALLEL_MIN * 2 + 17, threads.PARALLEL_MIN + 1])
def test_split_kernels_give_the_same_bits_on_any_thread_count(n):
    """Large flat and row-wise kernels run in one chunk per thread; a result must not
    depend on the count (chunks are disjoint; a row never crosses chunks)."""
    rng = np.random.default_rng(n)
    a, b = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
    x = rng.standard_normal((n // 129, 129)).astype(np.float32)
    f = gc.jit(lambda a, b, x: (gc.tanh(a) * b + 1.0, gc.softmax(x, axis=-1), x.sum(axis=1)),
               backend="llvm")
    want = [o.numpy() for o in gc.jit(f.fn, backend="reference")(a, b, x)]
    before = threads.get_num_threads()
    try:
        runs = []
        for t in (1, 2, 3):
            threads.set_num_threads(t)
            runs.append([o.numpy() for o in f(a, b, x)])
    finally:
        threads.set_num_threads(before)
    for got in runs[1:]:
        for g, r in zip(got, runs[0]):
            np.testing.assert_array_equal(g, r)
    for g, w in zip(runs[0][:2], want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    # a float32 sum of 129 terms: rounding scales with the sum of magnitudes
    np.testing.assert_allclose(runs[0][2], x.astype(np.float64).sum(axis=1), rtol=0,
                               atol=2e-7 * np.abs(x).sum(axis=1).max())
    exe = f.compiled(a, b, x)
    assert "pthread_create" in str(exe.module.optimized_ir)


def test_thread_count_is_validated():
    with pytest.raises(gc.GraphcError, match="positive integer"):
        threads.set_num_threads(0)
