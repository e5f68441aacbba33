"""Per-kernel timing of compiled executables: a table and a Chrome trace.

    with gc.profiler.profile() as p:
        model(x)
    print(p.table())
    p.chrome_trace("trace.json")   # open in Perfetto or chrome://tracing

While a profile is active, the llvm backend's `Program.run` (and the interpreter) time
every step with `time.perf_counter_ns` and report it here. Executables compiled while
profiling get one native segment per node, so each kernel is timed alone; one compiled
before (a jit cache hit) is timed per segment, a segment being named after all its nodes.
Outside a profile the executables pay one global lookup per call (`active`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from . import dtypes as dt

_ACTIVE: Profile | None = None


def active() -> Profile | None:
    """The profile being recorded, or None (the executables' one check per call)."""
    return _ACTIVE


def _nbytes(v) -> int:
    return int(v.type.size) * dt.to_numpy(v.dtype).itemsize


def _flops(node) -> int:
    """Multiply-adds x 2 of the matmuls and forward convolutions in ``node`` (fused
    bodies included); 0 where they cannot be counted (GB/s is reported instead)."""
    if node.body is not None:
        return sum(_flops(n) for n in node.body.nodes)
    name = node.op.name
    if name == "matmul":
        return 2 * int(node.outputs[0].type.size) * int(node.inputs[0].shape[-1])
    if name in ("conv1d", "conv2d"):
        w = node.inputs[1].shape   # (out channels, in channels / groups, *kernel)
        return 2 * int(node.outputs[0].type.size) * int(np.prod(w[1:]))
    return 0


def _ops(node) -> str:
    return "+".join(n.op.name for n in node.body.nodes) if node.body is not None \
        else node.op.name


class Profile:
    """The steps timed while active: per kernel (a node, or a segment's nodes) its
    calls, time, bytes moved (inputs + outputs) and flops."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter_ns()
        #: (kernel label, start ns, duration ns, thread id)
        self.events: list[tuple[str, int, int, int]] = []
        #: kernel label -> (ops, bytes, flops) per call
        self.kernels: dict[str, tuple[str, int, int]] = {}
        self._labels: dict[int, str] = {}   # id(nodes) -> label (nodes kept alive below)
        self._keep: list = []
        self.executable = None   # set by `profile_graph`

    def record(self, nodes, start_ns: int, dur_ns: int) -> None:
        """One step that ran ``nodes`` (a segment's list, or one `Node`), keyed by the
        object's id: callers pass the same object every call."""
        label = self._labels.get(id(nodes))
        if label is None:
            label = self._label(nodes)
        self.events.append((label, start_ns, dur_ns, threading.get_ident()))

    def _label(self, key) -> str:
        nodes = key if isinstance(key, (list, tuple)) else [key]
        label = "+".join((n.name or n.op.name) + (f"[{_ops(n)}]" if n.body else "")
                         for n in nodes) or "(empty)"
        ops = ", ".join(_ops(n) for n in nodes)
        # nodes of different graphs may share a name: tell apart kernels that differ
        info = (ops, sum(_nbytes(v) for n in nodes for v in (*n.inputs, *n.outputs)),
                sum(_flops(n) for n in nodes))
        base, k = label, 1
        while label in self.kernels and self.kernels[label] != info:
            k += 1
            label = f"{base}#{k}"
        self.kernels[label] = info
        self._labels[id(key)] = label
        self._keep.append(key)
        return label

    def stats(self) -> list[dict]:
        """Per kernel, slowest total first: name, ops, calls, total_us, mean_us, share,
        bytes, gbps, gflops (None where no flops are counted)."""
        total: dict[str, list[int]] = {}
        for label, _, dur, _ in self.events:
            t = total.setdefault(label, [0, 0])
            t[0] += 1
            t[1] += dur
        all_ns = sum(t[1] for t in total.values()) or 1
        rows = []
        for label, (calls, ns) in sorted(total.items(), key=lambda kv: -kv[1][1]):
            ops, nbytes, flops = self.kernels[label]
            sec = max(ns, 1) / 1e9
            rows.append(dict(name=label, ops=ops, calls=calls, total_us=ns / 1e3,
                             mean_us=ns / 1e3 / calls, share=ns / all_ns, bytes=nbytes,
                             gbps=nbytes * calls / sec / 1e9,
                             gflops=flops * calls / sec / 1e9 if flops else None))
        return rows

    def table(self) -> str:
        """The per-kernel time table, slowest first."""
        rows = self.stats()
        if not rows:
            return "no kernels ran while profiling (was the model called inside `with`?)"
        w = max(12, *(len(r["name"]) for r in rows))
        head = f"{'kernel':<{w}} {'calls':>6} {'total us':>10} {'mean us':>9} {'share':>6} " \
               f"{'bytes':>10} {'GB/s':>7} {'GFLOP/s':>8}  ops"
        lines = [head, "-" * len(head)]
        for r in rows:
            gf = f"{r['gflops']:8.2f}" if r["gflops"] is not None else f"{'-':>8}"
            lines.append(f"{r['name']:<{w}} {r['calls']:>6} {r['total_us']:>10.1f} "
                         f"{r['mean_us']:>9.2f} {r['share']:>6.1%} {r['bytes']:>10} "
                         f"{r['gbps']:>7.2f} {gf}  {r['ops']}")
        lines.append(f"{'total':<{w}} {sum(r['calls'] for r in rows):>6} "
                     f"{sum(r['total_us'] for r in rows):>10.1f}")
        return "\n".join(lines)

    def trace_events(self) -> list[dict]:
        """Chrome trace "complete" events (microseconds since the profile started)."""
        pid = os.getpid()
        out = []
        for label, start, dur, tid in self.events:
            ops, nbytes, flops = self.kernels[label]
            out.append({"name": label, "ph": "X", "ts": (start - self.t0) / 1e3,
                        "dur": dur / 1e3, "pid": pid, "tid": tid,
                        "args": {"ops": ops, "bytes": nbytes, "flops": flops}})
        return out

    def chrome_trace(self, path: str | os.PathLike) -> str:
        """Write the trace JSON that Perfetto / chrome://tracing open; returns ``path``."""
        with open(path, "w") as f:
            json.dump({"traceEvents": self.trace_events(), "displayTimeUnit": "ms"}, f)
        return str(path)


@contextmanager
def profile() -> Iterator[Profile]:
    """Record every kernel the executables run inside the block (not nestable)."""
    global _ACTIVE
    if _ACTIVE is not None:
        raise RuntimeError("gc.profiler.profile() is already active: profiles do not nest")
    p = _ACTIVE = Profile()
    try:
        yield p
    finally:
        _ACTIVE = None


def profile_graph(graph, inputs: list, backend: str = "llvm", calls: int = 10,
                  warmup: int = 1) -> Profile:
    """Compile ``graph`` while profiling (one segment per node), run it ``warmup`` times
    unrecorded, then ``calls`` times recorded: what ``graphc profile`` reports."""
    from .passes.pipeline import compile_graph
    if calls < 1:
        raise ValueError(f"profile_graph: calls must be >= 1, got {calls}")
    with profile() as p:
        exe = compile_graph(graph, backend)
        for _ in range(warmup):
            exe(*inputs)
        p.events.clear()
        p.t0 = time.perf_counter_ns()
        for _ in range(calls):
            exe(*inputs)
    p.executable = exe
    return p
