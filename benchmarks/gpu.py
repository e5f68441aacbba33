"""graphc on the GPU against torch eager and torch.compile (issue #6, "Running on a GPU").

    python benchmarks/gpu.py [--quick] [--out DIR] [--device cuda|cpu] [--workloads W2,W4]
                             [--peers torch,torch.compile,torch.compile-ro|none] [--budget S]

Every time is the median over batches after a warm-up; a batch is N calls followed by a
device-wide synchronize, timed on the host clock and divided by N (N sized so a batch takes
about 20 ms). Measured in one run:

- copy: a device-to-device copy of a 256 MiB float32 array, bytes read + written per
  second: the ceiling W1 is held to (W1 reads 3 arrays and writes 1; target >= 80%);
- per workload of graphc/bench/workloads.py (ids of WORKLOADS.md: W2 MLP, W4 LeNet, W6 LSTM,
  W8 transformer block; W1 elementwise; W7, W3, W5 when time is left): graphc imperative
  (inputs and parameters on ``gc.gpu()``), graphc compiled (``gc.jit(step,
  backend='cuda')``, as graphc/bench/runner.py compiles every workload), compiled with
  ``cuda_graph=True``, torch eager, torch.compile (default mode and
  ``mode="reduce-overhead"``) on the same shapes: the models of graphc/bench/peers.py (which
  imports neither graphc nor torch at module level) with their parameters on the GPU,
  TF32 off as in graphc's float32 GEMMs;
- replay: a 2-layer MLP (64-64-10, batch 8) compiled with ``cuda_graph=True`` through
  ``gc.jit`` and through ``hybridize``: microseconds per call (target <= 20 us).

Every measurement is wrapped: a failure (say torch.compile without Triton) is recorded with
its error and the rest still runs. Measurements run in priority order (the targets' cells
first); once ``--budget`` seconds have passed, the rest are recorded as skipped. The JSON
(``gpu-bench.json``) and the markdown tables (``gpu-bench.md``) in ``--out`` are rewritten
after every measurement, so a run killed by a timeout still leaves what it measured (the
JSON's ``running`` names the measurement it was in).

``--device cpu`` runs the same code on the CPU: the llvm backend, numpy, the cuda_graph
variants compiled without that option, torch peers on the CPU (skipped when torch is not
installed). tests/test_gpu_bench_script.py runs it with ``--quick`` to check the plumbing.

Exit status: 0 when every graphc measurement ran and each compiled result matches the
imperative one; 1 otherwise. A peer's failure or a missed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import graphc as gc
from graphc import nn
from graphc.bench import peers as P
from graphc.bench.workloads import WORKLOADS

#: the workloads of the targets (graphc compiled at least as fast as torch.compile)
MAIN = ("W2", "W4", "W6", "W8")
#: measured after every target cell, when the budget allows (not in --quick by default)
EXTRA = ("W7", "W3", "W5")
IMPLS = ("graphc imperative", "graphc compiled", "graphc compiled + CUDA graph",
         "graphc hybridize + CUDA graph", "torch eager", "torch.compile",
         "torch.compile reduce-overhead")
PEER_IMPLS = {"torch": "torch eager", "torch.compile": "torch.compile",
              "torch.compile-ro": "torch.compile reduce-overhead"}
#: a compiled result further than this from the imperative one (relative to max(1, |ref|))
#: is a wrong result, not rounding (fast-math transcendentals, other summation orders)
MISMATCH = 1e-3
W1_TARGET, REPLAY_TARGET_S = 0.80, 20e-6
REPLAY = dict(batch=8, sizes=(64, 64, 10))


# -- where it runs ------------------------------------------------------------------------

@dataclass
class Target:
    name: str                   # "cuda" or "cpu"
    device: object              # the graphc device of inputs and parameters
    backend: str                # graphc backend of the compiled runs
    graph_options: dict         # options of the "+ CUDA graph" variants
    sync: Callable[[], None]    # waits for all work queued on the device
    torch_device: str
    info: dict = field(default_factory=dict)


def make_target(name: str) -> Target:
    if name == "cpu":
        return Target("cpu", gc.cpu(), "llvm", {}, lambda: None, "cpu",
                      {"device": f"cpu: {platform.processor() or platform.machine()}, "
                                 f"os.cpu_count()={os.cpu_count()}",
                       "note": "cpu run: the '+ CUDA graph' variants compile without "
                               "cuda_graph (a CUDA option)"})
    import cupy
    rt = cupy.cuda.runtime
    props = rt.getDeviceProperties(0)
    name_ = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    info = {"device": f"{name_} (sm_{props['major']}{props['minor']}, "
                      f"{props['totalGlobalMem'] / 2**30:.0f} GiB)",
            "cupy": cupy.__version__, "cuda_runtime": rt.runtimeGetVersion(),
            "cuda_driver": rt.driverGetVersion(),
            "cupy_tf32": os.environ.get("CUPY_TF32", "0")}
    return Target("cuda", gc.gpu(0), "cuda", {"cuda_graph": True}, rt.deviceSynchronize,
                  "cuda", info)


# -- timing -------------------------------------------------------------------------------

def time_calls(call: Callable, sync: Callable, quick: bool) -> dict:
    """Warm-up, then batches of N calls each closed by ``sync``: seconds per call."""
    for _ in range(2 if quick else 5):
        call()
    sync()
    t0 = time.perf_counter()
    call()
    sync()
    one = max(time.perf_counter() - t0, 1e-7)
    n = int(min(max((0.002 if quick else 0.02) / one, 1), 5000))
    batches = max(3, min(5 if quick else 21, int((0.5 if quick else 3.0) / (n * one))))
    times = []
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        sync()
        times.append((time.perf_counter() - t0) / n)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "calls_per_batch": n, "batches": len(times)}


def to_numpy(out) -> np.ndarray:
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, gc.Tensor):
        return out.numpy()
    if hasattr(out, "detach"):                        # torch
        return out.detach().float().cpu().numpy()
    if hasattr(out, "get") and not isinstance(out, np.ndarray):   # cupy
        return out.get()
    return np.asarray(out)


def compare(ref, got) -> dict:
    if ref is None:
        return {}
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if ref.shape != got.shape:
        return {"max_abs_diff": None, "mismatch": True,
                "note": f"shape {got.shape} != reference {ref.shape}"}
    diff = float(np.max(np.abs(ref - got))) if ref.size else 0.0
    scaled = diff / max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    return {"max_abs_diff": diff, "mismatch": not scaled <= MISMATCH}   # NaN: a mismatch


# -- the measurements ---------------------------------------------------------------------

class Skip(Exception):
    """A measurement that cannot run here (not a failure): recorded as skipped."""


class Bench:
    def __init__(self, tgt: Target, args: argparse.Namespace):
        self.tgt, self.args, self.quick = tgt, args, args.quick
        self.start = time.perf_counter()
        self.records: list[dict] = []
        self.refs: dict = {}          # (workload, "graphc" | "torch") -> first output
        self.copy_bw: float | None = None
        self.running: str | None = None
        self._torch = None
        self.info = {"argv": sys.argv[1:], "device_kind": tgt.name, "quick": args.quick,
                     "budget_s": args.budget, "python": platform.python_version(),
                     "numpy": np.__version__, "graphc": getattr(gc, "__version__", "?"),
                     "graphc_backend": tgt.backend, **tgt.info}

    # each measurement: one record, whatever happens
    def measure(self, workload: str, impl: str, fn: Callable[[], dict], what: str = "",
                required: bool = True) -> dict:
        rec = {"workload": workload, "impl": impl, "what": what, "required": required}
        elapsed = time.perf_counter() - self.start
        if elapsed > self.args.budget:
            rec.update(status="skipped", error=f"time budget ({self.args.budget:.0f} s) spent")
        else:
            self.running = f"{workload} {impl}"
            self.write()
            t0 = time.perf_counter()
            try:
                rec.update(fn())
                rec.setdefault("status", "ok")
            except Skip as e:
                rec.update(status="skipped", error=str(e))
            except Exception as e:  # noqa: BLE001 -- recorded; the other measurements go on
                rec.update(status="error", error=f"{type(e).__name__}: {e}"[:600],
                           traceback=traceback.format_exc()[-3000:])
            rec["wall_s"] = time.perf_counter() - t0
            self.running = None
        self.records.append(rec)
        self.progress(rec)
        self.write()
        return rec

    def progress(self, rec: dict) -> None:
        if rec["status"] == "ok":
            detail = _fmt(rec.get("median_s"))
            if rec.get("first_call_s") is not None:
                detail += f" (first call {_fmt(rec['first_call_s'])})"
            if rec.get("mismatch"):
                detail += f" MISMATCH: max |diff| {rec.get('max_abs_diff')}"
        else:
            detail = f"{rec['status']}: {rec.get('error', '')}"
        print(f"[{time.perf_counter() - self.start:6.1f} s] {rec['workload']:<6} "
              f"{rec['impl']:<30} {detail}", file=sys.stderr, flush=True)

    def write(self) -> None:
        report = self.report()
        os.makedirs(self.args.out, exist_ok=True)
        for name, text in (("gpu-bench.json", json.dumps(report, indent=1, default=str)),
                           ("gpu-bench.md", markdown(report))):
            tmp = os.path.join(self.args.out, name + ".tmp")
            with open(tmp, "w") as f:
                f.write(text + "\n")
            os.replace(tmp, os.path.join(self.args.out, name))

    def report(self, finished: bool = False) -> dict:
        return {"info": {**self.info, "elapsed_s": time.perf_counter() - self.start},
                "finished": finished, "running": self.running,
                "copy_bytes_per_s": self.copy_bw, "targets": targets(self),
                "records": self.records}

    # -- ceilings ---------------------------------------------------------------------
    def copy(self) -> dict:
        xp = self.tgt.device.xp
        nbytes = (32 << 20) if self.quick and self.tgt.name == "cpu" else (256 << 20)
        src = xp.ones(nbytes // 4, xp.float32)
        dst = xp.empty_like(src)
        stats = time_calls(lambda: xp.copyto(dst, src), self.tgt.sync, self.quick)
        self.copy_bw = 2 * nbytes / stats["median_s"]
        return {**stats, "bytes": nbytes, "bytes_per_s": self.copy_bw}

    # -- graphc -----------------------------------------------------------------------
    def graphc_imperative(self, wid: str) -> dict:
        w = WORKLOADS[wid](device=self.tgt.device)
        self.refs[wid, "graphc"] = to_numpy(w.step(*w.args))   # from the seeded state
        return time_calls(lambda: w.step(*w.args), self.tgt.sync, self.quick)

    def graphc_compiled(self, wid: str, options: dict) -> dict:
        w = WORKLOADS[wid](device=self.tgt.device)              # identical seeded state
        jitted = gc.jit(w.step, backend=self.tgt.backend, **options)
        return self._first_and_time(lambda: jitted(*w.args), self.refs.get((wid, "graphc")))

    def _first_and_time(self, call: Callable, ref) -> dict:
        t0 = time.perf_counter()
        out = call()
        self.tgt.sync()
        first = time.perf_counter() - t0
        rec = {"first_call_s": first, **compare(ref, to_numpy(out))}
        return {**rec, **time_calls(call, self.tgt.sync, self.quick)}

    def replay_net(self) -> tuple:
        net = nn.HybridSequential()
        sizes = REPLAY["sizes"]
        for units in sizes[1:-1]:
            net.add(nn.Dense(units, activation="relu", in_units=sizes[0]))
        net.add(nn.Dense(sizes[-1], in_units=sizes[-2]))
        gc.random.seed(0)
        net.initialize(gc.init.Xavier(), device=self.tgt.device)
        x = np.random.default_rng(9).standard_normal((REPLAY["batch"], sizes[0]))
        return net, gc.array(x.astype(np.float32), device=self.tgt.device)

    def replay(self, how: str) -> dict:
        net, x = self.replay_net()
        if how == "imperative":
            self.refs["replay", "graphc"] = to_numpy(net(x))
            return time_calls(lambda: net(x), self.tgt.sync, self.quick)
        if how == "hybridize":
            net.hybridize(backend=self.tgt.backend, **self.tgt.graph_options)
            call = lambda: net(x)
        else:
            call = gc.jit(lambda x: net(x), backend=self.tgt.backend,
                          **(self.tgt.graph_options if how == "graph" else {}))
            call = (lambda f: lambda: f(x))(call)
        return self._first_and_time(call, self.refs.get(("replay", "graphc")))

    # -- torch --------------------------------------------------------------------------
    def torch(self):
        if self._torch is None:
            try:
                import torch
            except ImportError as e:
                raise Skip(f"torch is not installed ({e})") from e
            if self.tgt.torch_device == "cuda":
                if not torch.cuda.is_available():
                    raise RuntimeError(f"torch {torch.__version__} sees no CUDA device "
                                       f"(built for CUDA {torch.version.cuda})")
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
            self._torch = torch
            self.info["torch"] = torch.__version__
            self.info["torch_cuda"] = torch.version.cuda
            self.info["torch_tf32"] = False
            try:
                import triton
                self.info["triton"] = triton.__version__
            except Exception as e:  # noqa: BLE001 -- torch.compile's records say the rest
                self.info["triton"] = f"not importable: {type(e).__name__}: {e}"[:200]
        return self._torch

    def torch_case(self, wid: str, mode: str | None) -> dict:
        """``mode`` None: eager; else torch.compile's mode ("default", "reduce-overhead")."""
        torch = self.torch()
        dev = self.tgt.torch_device
        if mode:
            torch._dynamo.reset()   # a fresh start per workload, as its own program has
        if wid == "replay":
            rng = np.random.default_rng(0)
            params = P._mlp_params(rng, REPLAY["sizes"])
            inputs = (rng.standard_normal((REPLAY["batch"], REPLAY["sizes"][0]))
                      .astype(np.float32),)
        else:
            params, inputs = P.make_inputs(wid)
        p = {k: torch.from_numpy(v.copy()).to(dev) for k, v in params.items()}
        args = tuple(torch.from_numpy(np.ascontiguousarray(a)).to(dev) for a in inputs)
        if mode == "reduce-overhead" and hasattr(torch._dynamo, "mark_static_address"):
            for v in p.values():   # parameters stay put, as in graphc's captured graph
                torch._dynamo.mark_static_address(v)
        model = P.Model(P._torch_ops(torch))
        compile_ = (lambda f: torch.compile(f, mode=None if mode == "default" else mode)) \
            if mode else (lambda f: f)
        if wid in ("W3", "W5"):
            fn = P.torch_train_step(torch, model, p, wid, compile_ if mode else None)
        else:
            f = model.mlp if wid == "replay" else P.forward(model, wid)
            fn = compile_(lambda *a: f(p, *a))
        call = lambda: fn(*args)
        t0 = time.perf_counter()
        out = call()
        self.tgt.sync()
        first = time.perf_counter() - t0
        got = to_numpy(out)
        rec = {"first_call_s": first}
        if mode is None:
            self.refs[wid, "torch"] = got
        else:
            rec.update(compare(self.refs.get((wid, "torch")), got))
        return {**rec, **time_calls(call, self.tgt.sync, self.quick)}


# -- the plan -----------------------------------------------------------------------------

def plan(bench: Bench, workloads: list[str], peers: list[str]) -> list[tuple]:
    """(phase, workload, impl, fn, required) in the order they run: the targets' cells first
    (W1 and the replay, then graphc, torch and torch.compile on the MAIN workloads), then
    reduce-overhead and the torch replay, then the EXTRA workloads."""
    tasks = []
    opts = bench.tgt.graph_options

    def graphc(phase, wid):
        tasks.append((phase, wid, "graphc imperative",
                      lambda: bench.graphc_imperative(wid), True))
        tasks.append((phase, wid, "graphc compiled",
                      lambda: bench.graphc_compiled(wid, {}), True))
        tasks.append((phase, wid, "graphc compiled + CUDA graph",
                      lambda: bench.graphc_compiled(wid, opts), True))

    def torch(phase, wid, which):
        for peer in which:
            if peer in peers:
                mode = {"torch": None, "torch.compile": "default",
                        "torch.compile-ro": "reduce-overhead"}[peer]
                tasks.append((phase, wid, PEER_IMPLS[peer],
                              (lambda m: lambda: bench.torch_case(wid, m))(mode), False))

    if "W1" in workloads:
        graphc(1, "W1")
    if "replay" in workloads:
        for how, impl in (("imperative", "graphc imperative"), ("plain", "graphc compiled"),
                          ("graph", "graphc compiled + CUDA graph"),
                          ("hybridize", "graphc hybridize + CUDA graph")):
            tasks.append((1, "replay", impl, (lambda h: lambda: bench.replay(h))(how), True))
    for wid in [w for w in ("W1", *MAIN) if w in workloads]:
        if wid != "W1":
            graphc(2, wid)
        torch(2, wid, ("torch", "torch.compile"))
    for wid in [w for w in ("replay", "W1", *MAIN) if w in workloads]:
        torch(3, wid, ("torch", "torch.compile-ro") if wid == "replay" else
              ("torch.compile-ro",))
    for wid in [w for w in workloads if w in EXTRA]:
        graphc(4, wid)
        torch(4, wid, ("torch", "torch.compile", "torch.compile-ro"))
    return sorted(tasks, key=lambda t: t[0])   # stable: the order above within a phase


def _what(wid: str) -> str:
    if wid == "replay":
        b, s = REPLAY["batch"], REPLAY["sizes"]
        return f"{len(s) - 1}-layer MLP {'-'.join(map(str, s))}, batch {b} (CUDA graph replay)"
    return {"W1": "elementwise chain, 4M floats", "W2": "MLP inference 784-512-512-10, b 64",
            "W3": "MLP training step (SGD), b 64", "W4": "LeNet-5 inference, b 64",
            "W5": "LeNet-5 training step (SGD), b 64", "W6": "LSTM LM forward, 35 x 32",
            "W7": "tiny MLP latency, b 1",
            "W8": "transformer encoder block, 8 x 128 x 256"}[wid]


# -- the targets and the tables -----------------------------------------------------------

def _cell(report_or_bench, wid: str, impl: str) -> dict | None:
    records = report_or_bench.records if isinstance(report_or_bench, Bench) \
        else report_or_bench["records"]
    for r in records:
        if r["workload"] == wid and r["impl"] == impl:
            return r
    return None


def _median(rec: dict | None) -> float | None:
    return rec["median_s"] if rec and rec.get("status") == "ok" and not rec.get("mismatch") \
        else None


def targets(bench: Bench) -> list[dict]:
    """The issue's targets from the records so far: measured value, goal, met (None: not
    measured)."""
    out = []
    graph_impls = ("graphc compiled", "graphc compiled + CUDA graph")
    w1 = [t for t in (_median(_cell(bench, "W1", i)) for i in graph_impls) if t]
    frac = 16 * 4_194_304 / min(w1) / bench.copy_bw if w1 and bench.copy_bw else None
    out.append({"target": "W1 graphc compiled, fraction of the copy bandwidth",
                "value": frac, "unit": "fraction", "goal": f">= {W1_TARGET:.0%}",
                "met": None if frac is None else frac >= W1_TARGET})
    rp = [t for t in (_median(_cell(bench, "replay", i)) for i in
                      ("graphc compiled + CUDA graph", "graphc hybridize + CUDA graph")) if t]
    us = min(rp) if rp else None
    out.append({"target": f"CUDA graph replay, {_what('replay').split(' (')[0]}",
                "value": us, "unit": "s", "goal": f"<= {REPLAY_TARGET_S * 1e6:.0f} us",
                "met": None if us is None or bench.tgt.name != "cuda" else us <= REPLAY_TARGET_S})
    for wid in MAIN:
        ours = [t for t in (_median(_cell(bench, wid, i)) for i in graph_impls) if t]
        for peer in ("torch.compile", "torch.compile reduce-overhead"):
            theirs = _median(_cell(bench, wid, peer))
            if _cell(bench, wid, peer) is None and _cell(bench, wid, graph_impls[0]) is None:
                continue
            ratio = min(ours) / theirs if ours and theirs else None
            out.append({"target": f"{wid} graphc compiled / {peer}", "value": ratio,
                        "unit": "ratio", "goal": "<= 1.0",
                        "met": None if ratio is None else ratio <= 1.0})
    return out


def _fmt(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def markdown(report: dict) -> str:
    info = report["info"]
    lines = ["# graphc GPU benchmark", "",
             f"- device: {info.get('device')}; graphc backend `{info.get('graphc_backend')}`",
             "- versions: " + ", ".join(f"{k} {info[k]}" for k in
                                        ("python", "numpy", "cupy", "cuda_runtime",
                                         "cuda_driver", "torch", "torch_cuda", "triton")
                                        if k in info),
             f"- quick: {info.get('quick')}; elapsed {info.get('elapsed_s', 0):.0f} s of a "
             f"{info.get('budget_s', 0):.0f} s budget; finished: {report['finished']}"
             + (f"; was running: {report['running']}" if report.get("running") else "")]
    if info.get("note"):
        lines.append(f"- note: {info['note']}")
    if report["copy_bytes_per_s"]:
        lines.append(f"- copy bandwidth (read + write): {report['copy_bytes_per_s'] / 1e9:.1f} "
                     f"GB/s; W1 floor {_fmt(16 * 4_194_304 / report['copy_bytes_per_s'])}")
    lines += ["", "## Targets", "", "| target | measured | goal | met |", "|---|---|---|---|"]
    for t in report["targets"]:
        v = t["value"]
        shown = "-" if v is None else f"{v:.0%}" if t["unit"] == "fraction" else \
            _fmt(v) if t["unit"] == "s" else f"{v:.2f}x"
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['target']} | {shown} | {t['goal']} | {met} |")
    wids = list(dict.fromkeys(r["workload"] for r in report["records"] if r["workload"] != "copy"))
    impls = [i for i in IMPLS if any(r["impl"] == i for r in report["records"])]
    for title, key in (("Median time per call", "median_s"),
                       ("First call (trace + compile + run)", "first_call_s")):
        cols = impls if key == "median_s" else \
            [i for i in impls if i != "graphc imperative" and i != "torch eager"]
        lines += ["", f"## {title}", "", "| id | what | " + " | ".join(cols) + " |",
                  "|---|---|" + "---|" * len(cols)]
        for wid in wids:
            cells = []
            for impl in cols:
                r = _cell(report, wid, impl)
                if r is None:
                    cells.append("")
                elif r["status"] != "ok":
                    cells.append(r["status"])
                else:
                    cells.append(_fmt(r.get(key)) + (" (wrong result)" if r.get("mismatch")
                                                      else ""))
            lines.append(f"| {wid} | {_what(wid)} | " + " | ".join(cells) + " |")
        if key == "first_call_s":
            lines += ["", "A later variant of a workload may reuse what an earlier one compiled "
                      "(graphc's kernel cache, torch's inductor cache)."]
    problems = [r for r in report["records"] if r["status"] != "ok" or r.get("mismatch")]
    if problems:
        lines += ["", "## Errors, skips and wrong results", ""]
        for r in problems:
            why = r.get("error") or f"max |compiled - imperative| = {r.get('max_abs_diff')}" \
                f" {r.get('note', '')}"
            lines.append(f"- {r['workload']} / {r['impl']}: {r['status']}"
                         f"{' (wrong result)' if r.get('mismatch') else ''}: "
                         + why.replace("\n", " "))
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--quick", action="store_true", help="fewer timed calls; no extra workloads")
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-results",
                   help="results folder (default $OUT, else ./gpu-results)")
    p.add_argument("--workloads", default=None,
                   help=f"comma-separated from W1..W8 and 'replay' (default W1,replay,"
                        f"{','.join(MAIN)} and, without --quick, {','.join(EXTRA)})")
    p.add_argument("--peers", default="torch,torch.compile,torch.compile-ro",
                   help="comma-separated from torch, torch.compile, torch.compile-ro "
                        "(mode='reduce-overhead'), or 'none'")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds after which remaining measurements are skipped "
                        "(default 240, 90 with --quick)")
    a = p.parse_args(argv)
    known = {*WORKLOADS, "replay"}
    a.workloads = [w.strip() if w.strip() == "replay" else w.strip().upper()
                   for w in (a.workloads or ",".join(
                       ["W1", "replay", *MAIN, *(() if a.quick else EXTRA)])).split(",")
                   if w.strip()]
    a.peers = [] if a.peers.strip() == "none" else [x.strip() for x in a.peers.split(",")
                                                      if x.strip()]
    bad = [w for w in a.workloads if w not in known] + \
        [x for x in a.peers if x not in PEER_IMPLS]
    if bad:
        p.error(f"unknown workloads/peers {bad}; workloads from {sorted(known)}, peers from "
                f"{sorted(PEER_IMPLS)} or 'none'")
    if a.budget is None:
        a.budget = 90.0 if a.quick else 240.0
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        tgt = make_target(args.device)
    except Exception as e:  # noqa: BLE001 -- no device: the report says why
        os.makedirs(args.out, exist_ok=True)
        msg = f"no {args.device} device: {type(e).__name__}: {e}"
        with open(os.path.join(args.out, "gpu-bench.json"), "w") as f:
            json.dump({"info": {"device_kind": args.device}, "finished": False,
                       "error": msg, "records": []}, f, indent=1)
        with open(os.path.join(args.out, "gpu-bench.md"), "w") as f:
            f.write(f"# graphc GPU benchmark\n\n{msg}\n")
        print(msg, file=sys.stderr)
        return 1
    bench = Bench(tgt, args)
    print(f"device: {tgt.info.get('device')}; results in {os.path.abspath(args.out)}",
          file=sys.stderr, flush=True)
    bench.measure("copy", f"{'cupy' if tgt.name == 'cuda' else 'numpy'} copy", bench.copy,
                  "device-to-device copy, 256 MiB float32 (read + write bytes)")
    for _, wid, impl, fn, required in plan(bench, args.workloads, args.peers):
        bench.measure(wid, impl, fn, _what(wid), required)
    final = bench.report(finished=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu-bench.json"), "w") as f:
        json.dump(final, f, indent=1, default=str)
    with open(os.path.join(args.out, "gpu-bench.md"), "w") as f:
        f.write(markdown(final) + "\n")
    print(markdown(final))
    failed = [r for r in bench.records if r["required"] and
              (r["status"] == "error" or r.get("mismatch"))]
    if failed:
        print(f"\n{len(failed)} graphc measurement(s) failed or gave wrong results: "
              + ", ".join(f"{r['workload']}/{r['impl']}" for r in failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
