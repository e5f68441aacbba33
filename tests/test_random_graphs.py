"""Hundreds of random graphs (tests/graphgen.py) through the full pass pipeline.

Each graph runs unoptimized (opt_level=0, which must reproduce the generator's own eager
values exactly), then at opt levels 1-3 and under the sanitizer at each level; every run
must match the unoptimized one: same shapes and dtypes, NaN and inf in the same places,
zeros of the same sign, floats within the dtype's tolerance (atol scaled by the largest
magnitude the output depends on: the only differences allowed are rounding), integers and
bools exactly. (Zero signs are not compared at levels with fold_batch_norm, which
re-associates by contract.) The sanitizer runs donate a seeded half of the inputs, so the
plan may reuse those buffers too. The call must leave its other input arrays alone; a
second call on other inputs must be right too and leave the first call's results alone;
the optimized graph must survive a JSON round trip.

A failure prints the seed and the graph text; ``graphgen.random_graph(seed)`` rebuilds it.
"""

from __future__ import annotations

import collections
import functools

import graphgen
import numpy as np
import pytest

import graphc as gc
from graphc.backends import get_backend
from graphc.graph import Graph
from graphc.passes import pipeline

N_GRAPHS = 300
SEEDS = range(N_GRAPHS)
LEVELS = (1, 2, 3)
LEVEL_PARAMS = [pytest.param(lvl, id=f"O{lvl}") for lvl in LEVELS]


@functools.cache
def _generated(seed: int) -> graphgen.Generated:
    return graphgen.random_graph(seed)


def _run(exe, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The arrays the executable returns, as they are (not copies)."""
    with np.errstate(all="ignore"):
        return [np.asarray(o) for o in exe(*inputs)]


def _fail(gen: graphgen.Generated, what: str, err: BaseException, graph: Graph | None = None):
    extra = f"\noptimized graph:\n{graph}" if graph is not None else ""
    pytest.fail(f"seed={gen.seed}: {what}: {type(err).__name__}: {err}\n{gen.text()}{extra}",
                pytrace=False)


def _compare(gen: graphgen.Generated, got: list, want: list, exact: bool = False,
             zero_signs: bool = True) -> None:
    assert len(got) == len(want), f"{len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        msg = f"output {i} (%{gen.graph.outputs[i].name})"
        assert (g.shape, g.dtype) == (w.shape, w.dtype), \
            f"{msg}: {g.dtype}{list(g.shape)}, expected {w.dtype}{list(w.shape)}"
        if w.dtype.kind != "f" or exact:
            np.testing.assert_array_equal(g, w, err_msg=msg, strict=True)
            continue
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{msg}: NaN positions")
        rtol, atol = gen.tolerance(i)
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol,
                                   atol=atol, equal_nan=True, err_msg=msg)
        if not zero_signs:
            continue
        zeros = (g == 0) & (w == 0)
        np.testing.assert_array_equal(np.signbit(g[zeros]), np.signbit(w[zeros]),
                                      err_msg=f"{msg}: signs of zeros")


@functools.cache
def _unoptimized(seed: int) -> list[np.ndarray]:
    gen = _generated(seed)
    exe = pipeline.compile_graph(gen.graph, "reference", opt_level=0)
    outs = _run(exe, gen.inputs)
    _compare(gen, outs, gen.expected, exact=True)
    return outs


def _check_level(seed: int, level: int, sanitize: bool) -> None:
    gen = _generated(seed)
    try:
        want = _unoptimized(seed)
    except Exception as e:  # noqa: BLE001
        _fail(gen, "unoptimized run vs the generator's eager values", e)
    donate = _donated(gen) if sanitize else ()
    what = f"opt_level={level}{f', sanitize=True, donate={donate}' if sanitize else ''}"
    graph = None
    try:
        options = {"sanitize": True, "donate": donate} if sanitize else {}
        exe = pipeline.compile_graph(gen.graph, "reference", opt_level=level, **options)
        graph = exe.graph
        inputs = [a.copy() for a in gen.inputs]
        raw = _run(exe, inputs)
        got = [a.copy() for a in raw]
        signs = _exact_passes(level)
        _compare(gen, got, want, zero_signs=signs)
        runtime = [v.name for v in gen.runtime_inputs]
        for name, a, b in zip(runtime, inputs, gen.inputs):
            if name not in donate:
                np.testing.assert_array_equal(a, b, err_msg=f"the call overwrote input %{name}")
        # The caller owns the results: none is a graph constant's array, and scribbling over
        # them must not change a second call, whose results must be right, and which must
        # leave the scribbles alone.
        constants = [*graph.constants.values(), *gen.graph.constants.values()]
        for i, r in enumerate(raw):
            assert not any(np.shares_memory(r, c) for c in constants), \
                f"output {i} is (a view of) a constant of the graph"
            if r.flags.writeable and r.size:
                r[...] = np.nan if r.dtype.kind == "f" else 1
        scribbled = [r.copy() for r in raw]
        other = [_other(a) for a in gen.inputs]
        _compare(gen, _run(exe, [a.copy() for a in other]), _unoptimized_on(seed, other),
                 zero_signs=signs)
        for i, (r, k) in enumerate(zip(raw, scribbled)):
            np.testing.assert_array_equal(r, k, err_msg=f"a second call overwrote output {i} "
                                          "of the first")
        if not sanitize:
            back = Graph.from_json(graph.to_json())
            assert back == graph, "JSON round trip changed the optimized graph"
            _compare(gen, _run(get_backend("reference").compile(back), gen.inputs), got)
    except Exception as e:  # noqa: BLE001  (a crash in a pass is a failure too)
        _fail(gen, what, e, graph)


def _unoptimized_on(seed: int, inputs: list[np.ndarray]) -> list[np.ndarray]:
    exe = pipeline.compile_graph(_generated(seed).graph, "reference", opt_level=0)
    return _run(exe, inputs)


def _donated(gen: graphgen.Generated) -> tuple[str, ...]:
    """A seeded choice of runtime inputs to donate (their buffers may be reused)."""
    rng = np.random.default_rng(gen.seed)
    return tuple(v.name for v in gen.runtime_inputs if rng.random() < 0.5)


def _exact_passes(level: int) -> bool:
    """Whether every pass of ``level`` keeps results exact (signs of zeros included):
    fold_batch_norm re-associates by contract (``(x @ W) * s`` becomes ``x @ (W * s)``,
    so ``(x @ W) * 0`` loses the signs of its zeros), the others may not."""
    return "fold_batch_norm" not in pipeline.OPT_LEVELS[level]


def _other(a: np.ndarray) -> np.ndarray:
    """Different values of the same type, for a second call."""
    if a.dtype == bool:
        return ~a
    return (-a if a.dtype.kind == "f" else a + 1).astype(a.dtype)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("level", LEVEL_PARAMS)
def test_random_graph_optimized_matches_unoptimized(level, seed):
    _check_level(seed, level, False)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("level", LEVEL_PARAMS)
def test_random_graph_sanitizer_matches_unoptimized(level, seed):
    _check_level(seed, level, True)


@pytest.mark.parametrize("level", (0, *LEVELS))
def test_outputs_never_alias_graph_constants(level):
    """Writing into a result must not change what later calls return. Here the second
    output is constant (folded while tracing, or by the simplifier)."""
    f = gc.jit(lambda x: (x * 2, gc.ones((3,)) + 1), backend="reference", opt_level=level)
    x = np.ones(3, np.float32)
    np.asarray(f(x)[1])[...] = 100.0
    np.testing.assert_array_equal(f(x)[1].numpy(), [2.0, 2.0, 2.0])


def test_generator_covers_what_it_promises():
    """Over all seeds: the generator is deterministic and draws every feature it claims."""
    assert graphgen.random_graph(7).graph == graphgen.random_graph(7).graph
    counts = collections.Counter(f for s in SEEDS for f in _generated(s).features)
    wanted = ["dim:0", "dim:1", "dim:3", "dim:17", "dim:1023", "broadcast", "several outputs",
              "shared value", "multi-output node", "input as output", "output twice",
              "op:matmul", "op:reshape", "op:transpose", "op:where", "op:cast", "guard",
              "dtype:float16", "dtype:float64", "dtype:int32", "dtype:int64", "dtype:bool",
              "role:parameter", "op:dropout", "view chain", *(f"op:{n}" for n in graphgen.REDUCE),
              *(f"op:{n}" for n in graphgen.UNARY + graphgen.BINARY + graphgen.COMPARE),
              *(f"pattern:{n}" for n in ("mul1", "add0", "sub0", "div1", "addneg0",
                                         "negneg", "transpose2", "reshape2", "cast_same",
                                         "broadcast2", "cse", "const_fold", "mul0",
                                         "sub_self", "zero_sub", "dead", "big_const"))]
    rare = {f: counts[f] for f in wanted if counts[f] < 10}
    assert not rare, f"features drawn fewer than 10 times in {N_GRAPHS} graphs: {rare}"
    assert sum(_generated(s).nonfinite for s in SEEDS) >= 10
