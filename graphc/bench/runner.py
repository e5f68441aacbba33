"""Imperative vs compiled timing of the reference workloads W1-W8, shared by ``graphc bench``
and ``benchmarks/workloads.py`` so both report the same numbers measured the same way.

Per (workload, backend) cell: median/min/max seconds per call of ``gc.jit(step, backend)``,
the imperative median, the first compiled call (trace + compile + run), the largest
|compiled - imperative| from identical seeded initial states, and the planned arena bytes.
The machine's ceilings (copy bandwidth counting reads + writes, float32 GEMM FLOP/s) are
measured in the same run, because numbers from another run are not comparable.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

import graphc as gc

from .workloads import WORKLOADS


@dataclass
class Cell:
    workload: str
    backend: str
    what: str
    median_s: float
    min_s: float
    max_s: float
    imperative_median_s: float
    first_call_s: float
    max_abs_diff: float
    speedup: float
    #: None when the compiled entry's memory plan is not reachable (see ``arena_note``)
    arena_bytes: int | None = None
    arena_note: str = ""
    #: W1 only: compiled median / bandwidth floor (1.0 = at the copy-bandwidth ceiling)
    floor_fraction: float | None = None
    #: GEMM-bound workloads: matmul + conv FLOPs per call / median / the GEMM ceiling
    gemm_fraction: float | None = None


def _times(fn: Callable, args: tuple, repeats: int, min_seconds: float) -> list[float]:
    """At least ``repeats`` timed calls and ``min_seconds`` in all (capped at 10x repeats)."""
    times, start = [], time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        np.asarray(fn(*args))  # results are materialized
        times.append(time.perf_counter() - t0)
        if len(times) >= 10 * repeats:
            break
    return times


def ceilings(quick: bool) -> tuple[float, float]:
    """(copy bandwidth in bytes/s counting reads and writes, float32 GEMM FLOP/s)."""
    n, m = ((32 << 20), 1024) if quick else ((256 << 20), 2048)
    src, dst = np.ones(n // 4, np.float32), np.empty(n // 4, np.float32)
    copy = statistics.median(_times(lambda: np.copyto(dst, src), (), 5, 0.1 if quick else 0.5))
    a = np.ones((m, m), np.float32)
    gemm = statistics.median(_times(lambda: a @ a, (), 3 if quick else 7, 0.1 if quick else 0.5))
    return 2 * n / copy, 2 * m ** 3 / gemm


def _gemm_flops(jitted, args) -> int:
    """FLOPs of the matmuls and convolutions one call of the compiled graph performs."""
    from ..profiler import _flops
    try:
        graph = jitted.compiled(*args).graph
    except Exception:  # noqa: BLE001 -- no graph, no fraction
        return 0
    return sum(_flops(n) for n in graph.nodes)


def _arena(jitted, args) -> tuple[int | None, str]:
    try:
        plan = jitted.compiled(*args).memory_plan
    except Exception as e:  # noqa: BLE001 -- the cell is omitted, with the reason
        return None, f"plan not reachable ({type(e).__name__})"
    if plan is None:
        return None, "backend made no memory plan"
    return int(plan.arena_bytes), ""


def parse_workloads(spec: str | None) -> list[str]:
    """``"W1,W7"`` -> ids; an unknown id raises ValueError naming the valid ones."""
    ids = [w.strip().upper() for w in (spec or ",".join(WORKLOADS)).split(",") if w.strip()]
    bad = [w for w in ids if w not in WORKLOADS]
    if bad or not ids:
        raise ValueError(f"unknown workload(s) {bad or [spec]}; choose from {','.join(WORKLOADS)}")
    return ids


def _progress(msg: str, i: int, total: int) -> None:
    """One line per cell; on a terminal the line is overwritten in place."""
    line = f"[{i}/{total}] {msg}"
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + line + ("\n" if i == total else ""))
    else:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run(workloads: list[str], backends: list[str], quick: bool = False,
        threads: int | None = None, progress: bool = True) -> dict:
    """Measure every (workload, backend) cell; returns a JSON-ready report
    (``machine``, ``threads``, ``ceilings``, ``cells``). ``threads`` is restored afterwards,
    since the CLI may run in-process (tests, embedders)."""
    before = gc.get_num_threads()
    if threads:
        gc.set_num_threads(threads)
    try:
        return _run(workloads, backends, quick, progress)
    finally:
        gc.set_num_threads(before)


def _run(workloads: list[str], backends: list[str], quick: bool, progress: bool) -> dict:
    repeats, min_seconds = (3, 0.05) if quick else (21, 1.0)
    bandwidth, flops = ceilings(quick)
    cells: list[Cell] = []
    total, done = len(workloads) * len(backends), 0
    for wid in workloads:
        imp = WORKLOADS[wid]()
        ref = np.array(np.asarray(imp.step(*imp.args)))   # from the seeded initial state
        t_imp = statistics.median(_times(imp.step, imp.args, repeats, min_seconds))
        for backend in backends:
            comp = WORKLOADS[wid]()                        # identical, seeded state
            jitted = gc.jit(comp.step, backend=backend)
            t0 = time.perf_counter()
            first = np.asarray(jitted(*comp.args))
            first_call = time.perf_counter() - t0
            diff = float(np.max(np.abs(ref - first))) if first.size else 0.0
            arena, note = _arena(jitted, comp.args)
            ts = _times(jitted, comp.args, repeats, min_seconds)
            med = statistics.median(ts)
            floor = 4 * first.nbytes / bandwidth if wid == "W1" else None
            gemm = _gemm_flops(jitted, comp.args)
            cells.append(Cell(wid, backend, imp.what, med, min(ts), max(ts), t_imp, first_call,
                              diff, t_imp / med, arena, note,
                              med / floor if floor else None,
                              gemm / med / flops if gemm else None))
            done += 1
            if progress:
                _progress(f"{wid} {backend}: {fmt_time(med)}", done, total)
    return {"machine": f"{platform.processor() or platform.machine()}, {platform.system()}, "
                       f"os.cpu_count()={os.cpu_count()}, numpy {np.__version__}",
            "threads": gc.get_num_threads(), "quick": quick,
            "ceilings": {"copy_bytes_per_s": bandwidth, "gemm_flops_per_s": flops},
            "cells": [asdict(c) for c in cells]}


#: ``--peers`` names -> the peer names of graphc/bench/peers.py (torch means eager and compiled)
PEERS = {"numpy": ("numpy",), "torch": ("torch", "torch.compile"),
         "torch.compile": ("torch.compile",), "jax": ("jax.jit",), "jax.jit": ("jax.jit",),
         "mxnet": ("mxnet", "mxnet.hybrid"), "mxnet.hybrid": ("mxnet.hybrid",)}
PEERS_SCRIPT = os.path.join(os.path.dirname(__file__), "peers.py")


def parse_peers(spec: str | None, pythons: list[str] | None = None) -> dict[str, str]:
    """``"numpy,torch"`` and ``["torch=/venv/bin/python"]`` -> {peer name: interpreter};
    unknown names or a missing interpreter raise ValueError (one line, actionable)."""
    names = [n.strip().lower() for n in (spec or "").split(",") if n.strip()]
    bad = [n for n in names if n not in PEERS]
    if bad:
        raise ValueError(f"unknown peer(s) {bad}; choose from {','.join(PEERS)}")
    chosen: dict[str, str] = {}
    for item in pythons or []:
        name, sep, path = item.partition("=")
        if not sep or name.strip().lower() not in PEERS:
            raise ValueError(f"--peer-python wants NAME=/path/to/python with NAME in "
                             f"{','.join(PEERS)}, got {item!r}")
        if not os.access(path, os.X_OK):
            raise ValueError(f"--peer-python {name}: {path!r} is not an executable file")
        chosen[name.strip().lower()] = path
    return {n: chosen.get(n, sys.executable) for n in names}


def run_peers(peers: dict[str, str], workloads: list[str], threads: int | None,
              quick: bool = False, timeout: float | None = None) -> tuple[list[dict], list[str]]:
    """Run peers.py once per interpreter (each peer in its own process there, as the script
    does); returns (cells with backend ``peer:<name>``, one-line notes). A peer not installed
    in its interpreter, a failure or a timeout is a note, never an exception: peers are never
    graphc dependencies."""
    groups: dict[str, list[str]] = {}
    for name, python in peers.items():
        groups.setdefault(python, []).extend(p for p in PEERS[name]
                                             if p not in groups.get(python, []))
    cells: list[dict] = []
    notes: list[str] = []
    timeout = timeout or (300.0 if quick else 3600.0)
    for python, names in groups.items():
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "peers.json")
            cmd = [python, PEERS_SCRIPT, "--peers", ",".join(names), "--workloads",
                   ",".join(workloads), "--threads", str(threads or os.cpu_count() or 1),
                   "--json", out] + ["--quick"] * quick
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                notes.append(f"peers {','.join(names)} ({python}): timed out after {timeout:.0f} s")
                continue
            if proc.returncode or not os.path.exists(out):
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                notes.append(f"peers {','.join(names)} ({python}) failed "
                             f"(exit {proc.returncode}): {last}")
                continue
            with open(out) as f:
                result = json.load(f)
        for name, err in result["info"].get("missing", {}).items():
            if name in names:
                notes.append(f"peer {name}: not installed in {python} ({err})")
        cells += [{"workload": r["workload"], "backend": f"peer:{r['peer']}",
                   "median_s": r["median_s"], "min_s": r["best_s"],
                   "first_call_s": r["first_call_s"], "calls": r["calls"],
                   "max_scaled_diff_vs_numpy": r["max_scaled_diff"], "python": python}
                  for r in result["results"] if r["peer"] in names]
    return cells, notes


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def table(report: dict) -> str:
    """The report as text: machine, threads, ceilings, one row per cell."""
    c = report["ceilings"]
    lines = [f"machine: {report['machine']}; {report['threads']} threads",
             f"ceilings: copy {c['copy_bytes_per_s'] / 1e9:.1f} GB/s (read + write), float32 "
             f"GEMM {c['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s",
             f"{'id':<4} {'backend':<10} {'imperative':>11} {'median':>10} {'min':>10} "
             f"{'max':>10} {'speedup':>8} {'first call':>11} {'max diff':>9} {'arena':>12}  what"]
    missing = []
    cells = [r for r in report["cells"] if not r["backend"].startswith("peer:")]
    for r in cells:
        arena = f"{r['arena_bytes']} B" if r["arena_bytes"] is not None else "-"
        if r["arena_bytes"] is None:
            missing.append(f"{r['workload']}/{r['backend']}: {r['arena_note']}")
        note = f" (compiled at {r['floor_fraction']:.2f}x the bandwidth floor)" \
            if r["floor_fraction"] is not None else ""
        if r.get("gemm_fraction") is not None:
            note += f" (GEMM work at {r['gemm_fraction']:.0%} of GEMM peak)"
        lines.append(f"{r['workload']:<4} {r['backend']:<10} "
                     f"{fmt_time(r['imperative_median_s']):>11} {fmt_time(r['median_s']):>10} "
                     f"{fmt_time(r['min_s']):>10} {fmt_time(r['max_s']):>10} "
                     f"{r['speedup']:7.2f}x {fmt_time(r['first_call_s']):>11} "
                     f"{r['max_abs_diff']:9.2e} {arena:>12}  {r['what']}{note}")
    if missing:
        lines.append("arena omitted: " + "; ".join(missing))
    peers = [r for r in report["cells"] if r["backend"].startswith("peer:")]
    if peers or report.get("peer_notes"):
        cols = list(dict.fromkeys(r["backend"] for r in report["cells"]))
        t = {(r["workload"], r["backend"]): r["median_s"] for r in report["cells"]}
        lines.append("median per call, graphc compiled vs peers (each peer in its own process):")
        lines.append(f"{'id':<4}" + "".join(f"{c:>20}" for c in cols))
        for wid in dict.fromkeys(r["workload"] for r in report["cells"]):
            lines.append(f"{wid:<4}" + "".join(
                f"{fmt_time(t[wid, c]) if (wid, c) in t else '-':>20}" for c in cols))
        lines += [f"note: {n}" for n in report.get("peer_notes", [])]
    return "\n".join(lines)


def plot(report: dict, path: str) -> None:
    """A PNG bar chart of imperative vs compiled medians (log scale: workloads span 1000x).
    Raises ImportError when matplotlib is missing."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cells = [r for r in report["cells"] if not r["backend"].startswith("peer:")]
    labels = [f"{r['workload']}\n{r['backend']}" for r in cells]
    x = np.arange(len(cells))
    fig, ax = plt.subplots(figsize=(max(6, len(cells) * 0.8), 4))
    ax.bar(x - 0.2, [r["imperative_median_s"] * 1e3 for r in cells], 0.4, label="imperative")
    ax.bar(x + 0.2, [r["median_s"] * 1e3 for r in cells], 0.4, label="compiled")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ms per call (median)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
