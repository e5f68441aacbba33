"""The ``graphc`` command: inspect, run and diagnose exported models without writing Python.

Subcommands: ``info`` (what a graph holds and what compiling it gives), ``run`` (an exported
model on .npy inputs), ``doctor`` (which backends work on this machine, and why not), ``viz``
(Graphviz output through `graphc.viz`), ``bench`` (workloads W1-W8 imperative vs compiled).
Every failure the user can fix (bad argument, missing or corrupt file) exits 2 with one
``graphc CMD: ...`` line on stderr instead of a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

import numpy as np

from .errors import GraphcError

FLOPS_HELP = ("FLOPs counted: 2*M*N*K per matmul, 2*MACs per conv2d, 1 per output element of "
              "elementwise ops, 1 per input element of reductions; pools, shape/data-movement "
              "ops and other library calls count 0.")


class _Fail(Exception):
    """A user-fixable error, reported as one stderr line."""


# -- loading ----------------------------------------------------------------------------------

def _prefix_of(path: str) -> str | None:
    """The export prefix ``path`` names (``P`` or ``P-graph.json`` with ``P-params`` beside)."""
    if os.path.exists(f"{path}-graph.json"):
        return path
    if path.endswith("-graph.json"):
        prefix = path[:-len("-graph.json")]
        if os.path.exists(f"{prefix}-params.safetensors"):
            return prefix
    return None


def _onnx_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``NAME=1,3,224,224`` options as {name: shape}."""
    shapes = {}
    for spec in specs or []:
        name, sep, dims = spec.partition("=")
        try:
            shapes[name] = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            sep = ""
        if not sep or not name:
            raise _Fail(f"--shape wants NAME=D,D,..., got {spec!r}")
    return shapes


def _load(path: str, shapes: list[str] | None = None):
    """(graph, params) from an exported prefix, a standalone graph JSON or an ONNX model
    (``shapes``: NAME=D,D,... for its symbolic input dims)."""
    from .serialize import graph_from_json, load_graph
    if path.endswith(".onnx"):
        from . import onnx
        return onnx.load(path, input_shapes=_onnx_shapes(shapes)), {}
    prefix = _prefix_of(path)
    if prefix is not None:
        return load_graph(prefix)
    if not os.path.exists(path):
        raise _Fail(f"{path}: no such file (nor {path}-graph.json)")
    with open(path, "rb") as f:
        return graph_from_json(f.read()), {}


# -- info -------------------------------------------------------------------------------------

def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _flops(graph) -> int:
    """Estimated FLOPs of one call (see FLOPS_HELP); fused bodies are counted op by op."""
    from .ops.registry import Kind
    total = 0
    for n in graph.nodes:
        if n.body is not None:
            total += _flops(n.body)
        elif n.op.name == "matmul":
            total += 2 * _size(n.outputs[0].shape) * n.inputs[0].shape[-1]
        elif n.op.name == "conv2d":
            total += 2 * _size(n.outputs[0].shape) * _size(n.inputs[1].shape[1:])
        elif n.op.kind is Kind.ELEMENTWISE:
            total += sum(_size(v.shape) for v in n.outputs)
        elif n.op.kind is Kind.REDUCTION:
            total += _size(n.inputs[0].shape)
    return total


def _histogram(graph) -> Counter:
    return Counter(n.op.name for n in graph.nodes)


def _nbytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return ""


def cmd_info(args) -> int:
    from .passes.pipeline import compile_graph
    graph, params = _load(args.file, args.shape)
    print(f"graph {graph.name}")
    print("inputs:")
    for v in graph.inputs:
        if v.role != "constant":
            print(f"  {v.name:24s} {str(v.shape):20s} {v.dtype:8s} {v.role}")
    print("outputs:")
    for v in graph.outputs:
        print(f"  {v.name:24s} {str(v.shape):20s} {v.dtype}")
    print("ops:")
    for op, count in sorted(_histogram(graph).items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {op:24s} {count}")
    pv = [v for v in graph.inputs if v.role in ("parameter", "state")]
    nbytes = sum(_size(v.shape) * np.dtype(_np_dtype(v.dtype)).itemsize for v in pv)
    print(f"parameters: {sum(_size(v.shape) for v in pv)} ({_nbytes(nbytes)}, {len(pv)} tensors)")
    cv = [v for v in graph.inputs if v.role == "constant"]
    if cv:   # an imported ONNX model's initializers, a frozen export's weights
        cbytes = sum(graph.constants[v.name].nbytes for v in cv)
        print(f"constants: {sum(_size(v.shape) for v in cv)} ({_nbytes(cbytes)}, "
              f"{len(cv)} tensors)")
    print(f"flops: {_flops(graph)}")
    exe = compile_graph(graph, "reference")
    print(f"kernels after fusion: {exe.num_kernels} (from {len(graph.nodes)} nodes)")
    plan = exe.memory_plan
    if plan is not None:
        print(f"memory: naive {plan.naive_bytes} B, arena {plan.arena_bytes} B, "
              f"lower bound {plan.lower_bound_bytes} B")
    return 0


def _np_dtype(name: str):
    from . import dtypes
    return dtypes.to_numpy(name)


# -- run --------------------------------------------------------------------------------------

def _parse_inputs(specs: list[str], graph) -> dict[str, np.ndarray]:
    names = [v.name for v in graph.data_inputs]
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise _Fail(f"--input wants NAME=FILE.npy, got {spec!r}")
        if name not in names:
            raise _Fail(f"unknown input {name!r}; the model takes {names}")
        feeds[name] = np.load(path, allow_pickle=False)
    missing = [n for n in names if n not in feeds]
    if missing:
        raise _Fail(f"missing --input for {missing} (the model takes {names})")
    return feeds


def _run(graph, params: dict, feeds: dict, backend: str) -> list[np.ndarray]:
    from .passes.pipeline import compile_graph
    exe = compile_graph(graph, backend)
    return [np.asarray(o) for o in exe(*_arrays(exe.runtime_inputs, params, feeds))]


def _arrays(runtime_inputs, params: dict, feeds: dict) -> list[np.ndarray]:
    """One array per runtime input: from ``feeds`` (.npy files) or the params file."""
    arrays = []
    for v in runtime_inputs:
        a = feeds[v.name] if v.name in feeds else params.get(v.name)
        if a is None:
            raise _Fail(f"no value for {v.role} input {v.name!r} in the params file")
        want = _np_dtype(v.dtype)
        if a.dtype != want and v.name in feeds and np.can_cast(a.dtype, want, "same_kind"):
            a = a.astype(want)   # float64 .npy files are common; the graph's dtype wins
        arrays.append(np.ascontiguousarray(a))
    return arrays


def _run_onnx(path: str, specs: list[str], backend: str) -> list[np.ndarray]:
    """An ONNX model on .npy inputs named after the model's inputs."""
    from . import onnx
    from .tensor import Tensor
    model = onnx.compile(path, backend=backend)
    feeds = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise _Fail(f"--input wants NAME=FILE.npy, got {spec!r}")
        feeds[name] = np.load(file, allow_pickle=False)
    outs = model(**feeds)
    outs = outs if isinstance(outs, tuple) else (outs,)
    return [np.asarray(o.numpy() if isinstance(o, Tensor) else o) for o in outs]


def cmd_run(args) -> int:
    from .serialize import load_graph
    if args.prefix.endswith(".onnx"):
        outs = _run_onnx(args.prefix, args.input or [], args.backend)
    else:
        if not os.path.exists(f"{args.prefix}-graph.json"):
            raise _Fail(f"{args.prefix}-graph.json not found (PREFIX is what export() was "
                        "given, or an .onnx file)")
        graph, params = load_graph(args.prefix)
        outs = _run(graph, params, _parse_inputs(args.input or [], graph), args.backend)
    paths = args.out or []
    dest = [""] * len(outs)
    if len(paths) == 1 and paths[0].endswith(".npz"):
        np.savez(paths[0], **{f"output{i}": o for i, o in enumerate(outs)})
        dest = [f" -> {paths[0]}[output{i}]" for i in range(len(outs))]
    elif paths:
        if len(paths) > len(outs):
            raise _Fail(f"{len(paths)} --out paths for {len(outs)} outputs")
        for i, (p, o) in enumerate(zip(paths, outs)):
            np.save(p, o)
            dest[i] = f" -> {p}"
    for i, o in enumerate(outs):
        stats = (f" min {o.min():.6g} max {o.max():.6g} mean {o.mean():.6g}"
                 if o.size and o.dtype.kind in "fiu" else "")
        print(f"output{i}: shape {o.shape} dtype {o.dtype}{stats}{dest[i]}")
    return 0


# -- doctor -----------------------------------------------------------------------------------

KEY_FEATURES = ("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vnni", "neon")


def cmd_doctor(args) -> int:
    import graphc as gc
    try:
        from .backends.llvm import library_codegen, native_module
        target, cpu, features, _ = native_module._host()
        on = {f[1:] for f in features.split(",") if f.startswith("+")}
        have = [f for f in KEY_FEATURES if f in on]
        print(f"llvm: ok  triple {target.triple}, cpu {cpu}, features {' '.join(have) or '-'}")
        blas = library_codegen.blas()
        print(f"  blas: {'found (' + ', '.join(sorted(blas)) + ')' if blas else 'not found'}"
              f"{'' if blas else ' -- gemm falls back to generated loops'}")
        cache = native_module.cache_dir()
        print(f"  compile cache: {cache if cache is not None else 'off (GRAPHC_CACHE=0)'}")
    except Exception as e:  # noqa: BLE001 -- doctor reports any failure instead of dying
        print(f"llvm: unavailable ({type(e).__name__}: {e})")
    print(f"reference: ok  numpy {np.__version__}")
    try:
        from .backends.cuda.driver import default_driver
        d = default_driver()
        print(f"cuda: ok  cupy {d.xp.__version__}, {d.arch}, {d.sm_count} SMs")
    except Exception as e:  # noqa: BLE001
        print(f"cuda: unavailable ({e})")
    from .backends.cuda import compiler
    nvcc = compiler.nvcc_path()
    print(f"  nvcc: {nvcc} (kernels can be checked with nvcc --ptx without a GPU)" if nvcc
          else "  nvcc: not found")
    print(f"threads: {gc.get_num_threads()}")
    return 0


# -- viz --------------------------------------------------------------------------------------

def cmd_viz(args) -> int:
    try:
        from . import viz
    except ImportError as e:
        raise _Fail(f"graphc.viz is not available ({e})") from None
    graph, _ = _load(args.file)
    viz.render(viz.to_dot(graph), args.output)   # .dot as text; .svg/.png need Graphviz
    print(f"wrote {args.output}")
    return 0


# -- bench ------------------------------------------------------------------------------------

def cmd_bench(args) -> int:
    """Time W1-W8 imperative vs compiled (see graphc.bench.runner); --plot is checked before the
    (slow) run so a missing matplotlib fails at once."""
    import json

    from .backends import get_backend
    from .bench import runner
    workloads = runner.parse_workloads(args.workloads)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends:
        raise _Fail("--backends is empty; e.g. --backends reference,llvm")
    for b in backends:
        get_backend(b)   # unknown names fail here, before any timing
    if args.threads is not None and args.threads < 1:
        raise _Fail(f"--threads must be >= 1, got {args.threads}")
    try:
        peers = runner.parse_peers(args.peers, args.peer_python)
    except ValueError as e:
        raise _Fail(str(e)) from None
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise _Fail("--plot needs matplotlib: pip install 'graphc[plot]'") from None
    report = runner.run(workloads, backends, quick=args.quick, threads=args.threads)
    if peers:
        cells, notes = runner.run_peers(peers, workloads, args.threads or report["threads"],
                                        quick=args.quick)
        report["cells"] += cells
        report["peer_notes"] = notes
        for n in notes:
            print(f"graphc bench: {n}", file=sys.stderr)
    print(runner.table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.plot:
        runner.plot(report, args.plot)
    return 0


# -- entry point ------------------------------------------------------------------------------

def cmd_profile(args) -> int:
    """Per-kernel times of an exported model or a reference workload."""
    import time

    from .bench.workloads import WORKLOADS
    from .profiler import profile, profile_graph
    if args.calls < 1 or args.warmup < 0:
        raise _Fail("--calls must be >= 1 and --warmup >= 0")
    if args.target in WORKLOADS:
        from . import jit
        w = WORKLOADS[args.target]()
        with profile() as p:
            f = jit(w.step, backend=args.backend)
            for _ in range(args.warmup):
                f(*w.args)
            p.events.clear()
            p.t0 = time.perf_counter_ns()
            for _ in range(args.calls):
                f(*w.args)
        what = f"{args.target} ({w.what})"
    else:
        from .serialize import load_graph
        if not os.path.exists(f"{args.target}-graph.json"):
            raise _Fail(f"{args.target!r} is neither a workload ({', '.join(WORKLOADS)}) nor "
                        f"an export prefix ({args.target}-graph.json not found)")
        graph, params = load_graph(args.target)
        feeds = _parse_inputs(args.input or [], graph)
        runtime = [v for v in graph.inputs if v.role != "constant"]
        rng = np.random.default_rng(0)
        for v in runtime:   # data inputs not given: seeded random values of their type
            if v.name not in feeds and v.name not in params:
                a = rng.standard_normal(v.shape) if v.dtype.startswith("float") else \
                    np.zeros(v.shape)
                feeds[v.name] = a.astype(_np_dtype(v.dtype))
        p = profile_graph(graph, _arrays(runtime, params, feeds), args.backend, args.calls,
                          args.warmup)
        what = args.target
    print(f"profile of {what}, backend {args.backend}, {args.calls} calls")
    print(p.table())
    if args.trace:
        p.chrome_trace(args.trace)
        print(f"Chrome trace: {args.trace} (open in https://ui.perfetto.dev or "
              "chrome://tracing)")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphc", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="inputs, ops, parameters, FLOPs, kernels, memory plan",
                          description="Summarize a graph. " + FLOPS_HELP + " Kernels and the "
                          "memory plan come from compiling at the default opt level.")
    info.add_argument("file", help="graph JSON, an export PREFIX (PREFIX-graph.json), or an "
                                   ".onnx model")
    info.add_argument("--shape", action="append", metavar="NAME=D,D,...",
                      help="an ONNX input's shape where the model leaves dims symbolic")
    info.set_defaults(fn=cmd_info)
    run = sub.add_parser("run", help="run an exported model on .npy inputs",
                         description="Run PREFIX-graph.json + PREFIX-params.safetensors, "
                         "or an .onnx model.")
    run.add_argument("prefix", help="the path HybridBlock.export was given, or a .onnx file")
    run.add_argument("--input", action="append", metavar="NAME=FILE.npy",
                     help="one per data input (repeat)")
    run.add_argument("--backend", choices=("llvm", "reference"), default="llvm")
    run.add_argument("--out", action="append", metavar="PATH",
                     help="a .npy per output (repeat), or one .npz for all; omitted: print a "
                          "summary")
    run.set_defaults(fn=cmd_run)
    doc = sub.add_parser("doctor", help="which backends work here, and why not",
                         description="Report the llvm, reference and cuda backends' status.")
    doc.set_defaults(fn=cmd_doctor)
    viz = sub.add_parser("viz", help="draw a graph with Graphviz",
                         description="Write a .dot file, or .svg/.png (needs the dot program).")
    viz.add_argument("file", help="graph JSON, or an export PREFIX")
    viz.add_argument("-o", "--output", required=True, help="out.dot, out.svg or out.png")
    viz.set_defaults(fn=cmd_viz)
    bench = sub.add_parser("bench", help="time workloads W1-W8, imperative vs compiled",
                           description="Time the reference workloads W1-W8 imperative vs "
                           "compiled, with the machine's copy and GEMM ceilings measured in "
                           "the same run. Progress goes to stderr, the table to stdout.")
    bench.add_argument("--quick", action="store_true",
                       help="fewer repetitions and small ceilings (all of W1-W8 in < 1 min)")
    bench.add_argument("--workloads", default=None, metavar="W1,W7",
                       help="comma-separated ids (default: all)")
    bench.add_argument("--backends", default="llvm", metavar="reference,llvm",
                       help="comma-separated backends (default: llvm)")
    bench.add_argument("--threads", type=int, default=None,
                       help="threads for native kernels and BLAS (default: all CPUs)")
    bench.add_argument("--json", metavar="PATH", help="write every cell as JSON")
    bench.add_argument("--plot", metavar="PATH", help="write a PNG bar chart (needs matplotlib)")
    bench.add_argument("--peers", default=None, metavar="numpy,torch,jax",
                       help="also time these frameworks (graphc/bench/peers.py, one process "
                       "each); one not installed is a note, not an error")
    bench.add_argument("--peer-python", action="append", default=[], metavar="NAME=PYTHON",
                       help="run peer NAME with this interpreter (repeatable), e.g. "
                       "torch=/venvs/torch/bin/python")
    bench.set_defaults(fn=cmd_bench)
    prof = sub.add_parser("profile", help="per-kernel time table and a Chrome trace",
                          description="Profile an exported model (PREFIX; data inputs not "
                          "given with --input get seeded random values) or a reference "
                          "workload (W1-W8): each kernel timed alone (one native segment "
                          "per node).")
    prof.add_argument("target", help="an export PREFIX, or a workload id such as W2")
    prof.add_argument("--input", action="append", metavar="NAME=x.npy",
                      help="an input from a .npy file (repeatable)")
    prof.add_argument("--backend", default="llvm", choices=("llvm", "reference"))
    prof.add_argument("--calls", type=int, default=10, help="recorded calls (default 10)")
    prof.add_argument("--warmup", type=int, default=1, help="unrecorded calls first")
    prof.add_argument("--trace", metavar="PATH", help="write a Chrome trace JSON")
    prof.set_defaults(fn=cmd_profile)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: sys.argv[1:]); the exit status is returned,
    not raised, so tests and embedders can call it in-process."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, message already printed)
        return int(e.code or 0)
    try:
        return args.fn(args)
    except (_Fail, GraphcError, OSError, ValueError) as e:
        msg, head = " ".join(str(e).split()) or type(e).__name__, f"graphc {args.command}: "
        print(msg if msg.startswith(head) else head + msg, file=sys.stderr)
        return 2
