"""Imperative vs compiled on the reference workloads W1-W8 (see graphc/bench/workloads.py).

For each workload: the median time per call of the imperative step and of the same step
under ``gc.jit(step, backend=...)`` (training steps compile forward, backward and the SGD
update as one function), the first compiled call (trace + compile + run), and the largest
difference between the two results from identical initial states. First, the machine's
ceilings measured in the same run: copy bandwidth (bytes read + written by a 256 MB copy)
and float32 GEMM throughput (numpy's BLAS, 2048^3); W1 is also given as a fraction of its
bandwidth floor (three 16.8 MB inputs read, one output written).

    python benchmarks/workloads.py [--backend llvm] [--workloads W1,W7] [--quick]
                                   [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

import graphc as gc
from graphc.bench.workloads import WORKLOADS


def _median_time(fn, args, repeats: int, min_seconds: float) -> float:
    times, start = [], time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        out = fn(*args)
        np.asarray(out)  # results are materialized
        times.append(time.perf_counter() - t0)
        if len(times) >= 10 * repeats:
            break
    return statistics.median(times)


def ceilings(quick: bool) -> tuple[float, float]:
    """(copy bandwidth in bytes/s counting reads and writes, float32 GEMM FLOP/s)."""
    n = (64 if quick else 256) << 20
    src, dst = np.ones(n // 4, np.float32), np.empty(n // 4, np.float32)
    copy = _median_time(lambda: np.copyto(dst, src), (), 5, 0.5)
    a = np.ones((2048, 2048), np.float32)
    gemm = _median_time(lambda: a @ a, (), 3 if quick else 7, 0.5)
    return 2 * n / copy, 2 * 2048 ** 3 / gemm


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="llvm")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for native kernels and BLAS (default: all CPUs)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    repeats, min_seconds = (5, 0.2) if args.quick else (21, 1.0)
    if args.threads:
        gc.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}, "
          f"os.cpu_count()={os.cpu_count()}; numpy {np.__version__}; backend {args.backend}; "
          f"{gc.get_num_threads()} threads")
    bandwidth, flops = ceilings(args.quick)
    print(f"ceilings: copy {bandwidth / 1e9:.1f} GB/s (read + write), float32 GEMM "
          f"{flops / 1e9:.0f} GFLOP/s")
    print(f"{'id':<4} {'imperative':>12} {'compiled':>12} {'ratio':>7} {'first call':>11} "
          f"{'max diff':>9}  what")
    for wid in args.workloads.split(","):
        imp, comp = WORKLOADS[wid](), WORKLOADS[wid]()   # identical, seeded states
        jitted = gc.jit(comp.step, backend=args.backend)
        t0 = time.perf_counter()
        first = np.asarray(jitted(*comp.args))
        first_call = time.perf_counter() - t0
        diff = float(np.max(np.abs(np.asarray(imp.step(*imp.args)) - first))) \
            if first.size else 0.0
        t_imp = _median_time(imp.step, imp.args, repeats, min_seconds)
        t_comp = _median_time(jitted, comp.args, repeats, min_seconds)
        note = ""
        if wid == "W1":
            floor = 4 * first.nbytes / bandwidth
            note = f" (floor {_fmt(floor)}: compiled at {t_comp / floor:.2f}x the floor)"
        print(f"{wid:<4} {_fmt(t_imp):>12} {_fmt(t_comp):>12} {t_imp / t_comp:6.2f}x "
              f"{_fmt(first_call):>11} {diff:9.2e}  {imp.what}{note}", flush=True)


if __name__ == "__main__":
    main()
