"""Imperative vs compiled on the reference workloads W1-W8 (see graphc/bench/workloads.py).

For each workload: the median time per call of the imperative step and of the same step
under ``gc.jit(step, backend=...)`` (training steps compile forward, backward and the SGD
update as one function), the first compiled call (trace + compile + run), and the largest
difference between the two results from identical initial states.

    python benchmarks/workloads.py [--backend reference] [--workloads W1,W7] [--quick]
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


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="reference")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    repeats, min_seconds = (5, 0.2) if args.quick else (21, 1.0)
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}, "
          f"os.cpu_count()={os.cpu_count()}; numpy {np.__version__}; backend {args.backend}")
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
        print(f"{wid:<4} {_fmt(t_imp):>12} {_fmt(t_comp):>12} {t_imp / t_comp:6.2f}x "
              f"{_fmt(first_call):>11} {diff:9.2e}  {imp.what}", flush=True)


if __name__ == "__main__":
    main()
