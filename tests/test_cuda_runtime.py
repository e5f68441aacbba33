"""The CUDA executable against the reference backend: the model zoo and random graphs,
CUDA-graph mode, the sanitizer, and the error a user without cupy gets.

Every test runs twice: on a stand-in device (tests/emulated_device.py: the generated CUDA
C compiled for the CPU, host memory as device memory, numpy as cuBLAS), which checks the
executable's layouts, kernel choice, launch arguments and buffers and the kernels' values
on any machine; and on a real GPU (marked ``gpu``, skipped where there is none; run by
scripts/gpu_check.sh).
"""

from __future__ import annotations

import shutil

import models as M
import numpy as np
import pytest
import test_llvm_fuzz as F
from emulated_device import EmulatedDriver
from test_llvm_models import CASES, _compare, _reference

import graphc as gc
from graphc import pytree
from graphc.backends import get_backend
from graphc.backends.cuda import compiler
from graphc.errors import BackendError
from graphc.passes.pipeline import compile_graph


@pytest.fixture(params=["emulated", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request):
    """A driver factory: the emulated device, or None (the real GPU's default driver)."""
    if request.param == "gpu":
        from graphc.backends.cuda.driver import cuda_available
        if not cuda_available():
            pytest.skip("no CUDA device (cupy missing, or no GPU)")
        return lambda: None
    if shutil.which("g++") is None:
        pytest.skip("the emulated device needs g++")
    return EmulatedDriver


def _host(a) -> np.ndarray:
    a = a.numpy() if isinstance(a, gc.Tensor) else a
    return np.asarray(a.get() if hasattr(a, "get") else a)

def _arrays(out) -> list[np.ndarray]:
    return [_host(t) for t in pytree.flatten(out)[0]]


@pytest.mark.parametrize("mode", ["plain", "donated", "cuda_graph", "sanitize"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_models_match_reference(case, mode, device):
    fn, args = CASES[case]()
    driver = device()
    donate = (tuple(range(2, len(args))) if case.endswith("_step") else
              tuple(range(len(args)))) if mode == "donated" else ()
    f = gc.jit(fn, backend="cuda", opt_level=3, driver=driver, donate=donate,
               cuda_graph=mode == "cuda_graph", sanitize=mode == "sanitize")
    first = [a.copy() for a in _arrays(f(*[a.copy() for a in args]))]
    _compare(first, _reference(case), case, f"{case} {mode}")
    # a second call (the graph replay, in graph mode) on new values of the same inputs
    scaled = [a * 0.5 if a.dtype.kind == "f" else a for a in args]
    want = _arrays(gc.jit(fn, backend="reference", opt_level=0)(*scaled))
    _compare(_arrays(f(*[a.copy() for a in scaled])), want, case,
             f"{case} {mode}, second call")
    exe = f.compiled(*args)
    if driver is not None:
        assert driver.launches > 0, "no generated kernel ran"
        if mode == "cuda_graph":
            assert (driver.captures, driver.replays) == (1, 1)
    kinds = {type(s).__name__ for s in exe.steps}
    assert kinds & {"_Elementwise", "_Launch", "_Gemm"}, kinds


def test_mlp_runs_without_python_steps(device):
    fn, args = M.INFERENCE["mlp"]()
    exe = gc.jit(fn, backend="cuda", driver=device()).compiled(*args)
    assert exe.fallback_nodes == [], [n.op.name for n in exe.fallback_nodes]
    assert exe.num_launches <= exe.num_kernels + 3   # GEMM + epilogue per layer


def test_results_are_fresh_and_arguments_untouched(device):
    fn, args = M.INFERENCE["transformer"]()
    f = gc.jit(fn, backend="cuda", driver=device())
    kept = [a.copy() for a in args]
    first = pytree.flatten(f(*args))[0]
    snapshot = [_host(a).copy() for a in first]
    for a in first:
        a = a._data if isinstance(a, gc.Tensor) else a
        a[...] = np.nan
    again = _arrays(f(*args))
    for g, w in zip(again, snapshot):
        np.testing.assert_array_equal(g, w)
    for a, b in zip(args, kept):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("level", [0, 3])
def test_random_graph_union_matches_reference(level, device):
    """40 random graphs (odd sizes, broadcasting, transposed/strided/reversed/stride-0 input
    views, zero-size dims) in one executable, against the reference backend."""
    cases = [F.seed_case(seed, level) for seed in range(40)]
    case, spans = F.union(cases)
    exe = compile_graph(case.graph, "cuda", opt_level=level, driver=device())
    ref = get_backend("reference").compile(case.graph)
    inputs = case.arrays()
    with np.errstate(all="ignore"):
        want = ref(*inputs)
        got = [_host(a) for a in exe(*inputs)]
        again = [_host(a) for a in exe(*inputs)]
    for k, span in enumerate(spans):
        for i in span:
            why = F._mismatch(got[i], want[i], case.tolerances[i])
            assert why is None, f"seed {k} output {i}: {why}"
            assert F._same(again[i], got[i]), f"seed {k} output {i}: second call differs"


def test_sanitizer_catches_a_lifetime_that_ends_too_early(device):
    """Poisoning is real: a plan that frees a buffer before its last reader turns the
    result into NaN on the emulated device."""
    from graphc.passes import memory
    fn, args = M.INFERENCE["mlp"]()
    g = gc.trace(fn, *args)
    from graphc.passes.pipeline import optimize
    opt = optimize(g, 3)
    plan = memory.plan_memory(opt)
    victim = next(b for b in plan.buffers.values() if b.kind == memory.ARENA and b.end > 0)
    victim.end = victim.start   # dies right after it is written
    exe = get_backend("cuda").compile(opt, memory_plan=plan, sanitize=True,
                                      driver=device())
    out = exe(*args)
    assert any(np.isnan(_host(o)).any() for o in out)


def test_cuda_without_cupy_says_how_to_install():
    try:
        import cupy  # noqa: F401
        pytest.skip("cupy is installed here")
    except ImportError:
        pass
    f = gc.jit(lambda a: a * 2, backend="cuda")
    with pytest.raises(BackendError, match=r"graphc\[gpu\]"):
        f(np.ones(3, np.float32))


def _block_run(name: str, backend: str, driver=None, gpu: bool = False) -> list[np.ndarray]:
    """A hybridized block's forward, tape gradients and one jit-compiled SGD step."""
    gc.random.seed(0)   # the same dropout keys for both backends
    case = M.BLOCKS[name]()
    net = case.block
    options = {} if driver is None else {"driver": driver}
    device = gc.gpu() if gpu else gc.cpu()
    net.to(device)
    net.hybridize(backend=backend, **options)
    data = [gc.array(d, device=device) for d in case.data]
    with gc.autograd.record():
        out = net(*data)
        loss = case.loss(out, gc.array(case.labels, device=device))
    loss.backward()
    params = list(net.collect_params().values())
    grads = [_host(p.grad()).copy() for p in params if p.grad_req != "null"]
    trainer = gc.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    trainer.step(1)
    return [_arrays(out)[0], _host(loss), *grads, *[_host(p.data()).copy() for p in params]]


@pytest.mark.parametrize("name", sorted(M.BLOCKS))
def test_hybridized_blocks_match_reference(name, device):
    driver = device()
    got = _block_run(name, "cuda", driver, gpu=driver is None)
    _compare(got, _block_run(name, "reference"), "block_step", f"hybridized {name}")


@pytest.mark.skipif(shutil.which("g++") is None or not compiler.nvcc_available(),
                    reason="needs g++ (the emulated device) and nvcc")
def test_runtime_modules_compile_for_sm90():
    """Every module the executable builds (its choice of variants, the copy kernels that
    move reduced axes last) for the model zoo and random graphs compiles with nvcc."""
    driver = EmulatedDriver()
    for case in sorted(CASES):
        fn, args = CASES[case]()
        gc.jit(fn, backend="cuda", driver=driver).compiled(*args)
    union, _ = F.union([F.seed_case(seed, 3) for seed in range(40)])
    compile_graph(union.graph, "cuda", opt_level=3, driver=driver)
    assert len(driver.sources) >= len(CASES)
    for source in driver.sources:
        compiler.ptx(source, "sm_90", optimize=False, options=("-Werror", "all-warnings"))


def test_cuda_graph_pins_inputs_that_stay_and_stages_the_rest(device):
    """Parameters passed as the same arrays every call are read in place by the captured
    graph (in-place updates are seen); new data arrays are staged; a parameter replaced
    by another array makes the graph be captured again. Every call matches numpy."""
    driver = device()
    xp = np if driver is not None else __import__("cupy")
    rng = np.random.default_rng(0)
    w = xp.asarray(rng.standard_normal((8, 4)).astype(np.float32))
    b = xp.asarray(rng.standard_normal(4).astype(np.float32))
    f = gc.jit(lambda x, w, b: gc.tanh(x @ w + b), backend="cuda", driver=driver,
               cuda_graph=True)

    def check(x):
        got = _host(f(xp.asarray(x), w, b))
        want = np.tanh(x @ _host(w) + _host(b))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    for _ in range(3):
        check(rng.standard_normal((5, 8)).astype(np.float32))
    exe = f.compiled(xp.asarray(np.zeros((5, 8), np.float32)), w, b)
    assert exe.captures == 1 and sorted(exe._staged) == [0]
    w *= 2   # in place: the pinned array is read where it is
    check(rng.standard_normal((5, 8)).astype(np.float32))
    b = b + 1   # another array: staged from now on, captured again
    check(rng.standard_normal((5, 8)).astype(np.float32))
    check(rng.standard_normal((5, 8)).astype(np.float32))
    assert exe.captures == 2 and sorted(exe._staged) == [0, 2]


def test_block_copies_run_as_copy_launches(device):
    """split pieces and slices are strided copies of their input, a batch-1 concat two
    flat copies: kernel launches, not Python steps; a stack of many rows stays in Python.
    Every result matches numpy."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    a = rng.standard_normal((1, 2, 5)).astype(np.float32)
    b = rng.standard_normal((1, 3, 5)).astype(np.float32)

    def fn(x, a, b):
        p, q = gc.split(x * 2, [3], axis=1)
        return p + 1, q * 3, gc.concat([a * 1, b * 1], axis=1) + 0, gc.stack([x, x], axis=2)
    f = gc.jit(fn, backend="cuda", driver=device())
    got = [_host(t) for t in f(x, a, b)]
    want = [x[:, :3] * 2 + 1, x[:, 3:] * 6, np.concatenate([a, b], axis=1),
            np.stack([x, x], axis=2)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)
    exe = f.compiled(x, a, b)
    python = sorted(n.op.name for n in exe.fallback_nodes)
    assert "split" not in python and "concat" not in python, python
