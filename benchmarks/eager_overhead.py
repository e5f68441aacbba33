"""What an eager graphc op costs on top of the numpy call it makes.

Each case times a graphc call on tiny tensors next to the bare numpy call its eager
implementation ends in, so the difference is graphc's dispatch (dtype promotion, scalar
wrapping, the type rule where attrs need it, Tensor wrapping). Tiny inputs keep the
numpy work negligible; threads play no part. The last row is the per-call cost of a
`gc.jit` function on the same add (reference and llvm backends), and of a 10-node graph
(opt level 0: ten kernels in one native segment) called as an llvm executable and through
`gc.jit`, next to the ten numpy calls it replaces. Medians over ``--repeat`` runs of ``--number``
calls each (fewer for the slow jit row), both sides in the same process.

    python benchmarks/eager_overhead.py [--repeat 21] [--number 20000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import timeit

import numpy as np

import graphc as gc


def cases():
    """(name, graphc call, the numpy call it makes, fraction of --number to run)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(10).astype(np.float32) for _ in range(2))
    m = rng.standard_normal((10, 10)).astype(np.float32)
    q = rng.standard_normal((4, 4)).astype(np.float32)
    ta, tb, tm, tq = map(gc.array, (a, b, m, q))
    jit_add = gc.jit(lambda x, y: x + y, backend="reference")
    llvm_add = gc.jit(lambda x, y: x + y, backend="llvm")

    def ten(x, y):   # ten nodes
        for _ in range(5):
            x = gc.tanh(x * y)
        return x

    def ten_numpy():
        x = a
        for _ in range(5):
            x = np.tanh(x * b)
        return x
    llvm_ten = gc.jit(ten, backend="llvm", opt_level=0)
    exe_ten = llvm_ten.compiled(ta, tb)
    assert len(exe_ten.graph.nodes) == 10 and exe_ten.program.python_steps == 0
    out = [
        ("add f32[10]", lambda: ta + tb, lambda: np.add(a, b), 1),
        ("exp f32[10]", lambda: gc.exp(ta), lambda: np.exp(a), 1),
        ("sum(axis=0) f32[10,10]", lambda: gc.sum(tm, axis=0),
         lambda: np.sum(m, axis=(0,), keepdims=False, dtype="float32"), 1),
        ("x * 2.5 f32[10]", lambda: ta * 2.5, lambda: np.multiply(a, 2.5), 1),
        # Not eager: the per-call cost of a compiled function (cache lookup, input
        # checks, the reference interpreter), to read the eager rows against.
        ("gc.jit(a + b) f32[10]", lambda: jit_add(ta, tb), lambda: np.add(a, b), 1 / 20),
        ("llvm jit(a + b) f32[10]", lambda: llvm_add(ta, tb), lambda: np.add(a, b), 1 / 20),
        ("llvm exe, 10 nodes", lambda: exe_ten(a, b), ten_numpy, 1 / 20),
        ("llvm jit, 10 nodes", lambda: llvm_ten(ta, tb), ten_numpy, 1 / 20),
    ]
    try:
        tq @ tq
    except NotImplementedError:
        print("(matmul not implemented yet: skipped)")
    else:
        out.insert(3, ("matmul f32[4,4]", lambda: tq @ tq, lambda: np.matmul(q, q), 1))
    return out


def cpu_name() -> str:
    """The CPU model (platform.processor() is empty on Linux), else the architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def per_call_us(fn, repeat: int, number: int) -> float:
    return statistics.median(timeit.repeat(fn, repeat=repeat, number=number)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--number", type=int, default=20000)
    opts = parser.parse_args()

    table = cases()
    print(f"machine: {cpu_name()}, {platform.system()} {platform.machine()}, "
          f"os.cpu_count()={os.cpu_count()}; Python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"median of {opts.repeat} runs x {opts.number} calls\n")
    print(f"| {'op':<24} | {'graphc us':>9} | {'numpy us':>8} | {'overhead us':>11} |")
    print(f"|{'-' * 26}|{'-' * 10}:|{'-' * 9}:|{'-' * 12}:|")
    for name, graphc_call, numpy_call, fraction in table:
        number = max(1, round(opts.number * fraction))
        ours = per_call_us(graphc_call, opts.repeat, number)
        base = per_call_us(numpy_call, opts.repeat, number)
        print(f"| {name:<24} | {ours:9.2f} | {base:8.2f} | {ours - base:11.2f} |")


if __name__ == "__main__":
    main()
