"""The CUDA code generator (graphc/backends/cuda/codegen.py) without a GPU.

Every kernel that the test graphs produce is generated into one translation unit per
group, and each group is
- compiled with ``nvcc --ptx -arch=sm_90`` (skipped, with the reason, where nvcc is
  missing): a compile error fails the test;
- run on the CPU by tests/cuda_emulator.py (g++ over the same source) against the
  reference interpreter's per-node results: each kernel node gets the reference values
  of its inputs, so errors do not accumulate along a graph.

Groups: every ELEMENTWISE op of the registry in every dtype it takes without promotion
(test_llvm_backend's cases: sizes 0, 1, 3, 7, 17, 1023, 4097, broadcasting, 0-d), each
model of tests/models.py (inference and training step, after the opt level 3 passes:
fused elementwise and row-wise kernels, single reductions, gemm epilogues), random graphs
of tests/graphgen.py (``native=True, odd_sizes=True``), and row-wise kernels on odd and
zero-size rows. Variants run: ``flat`` on contiguous inputs, ``flat4`` on 16-byte-aligned
copies, ``strided`` on the inputs as they broadcast and again with full-size inputs as
transposed or reversed views, ``rows`` (reduced axes moved last as the runtime does) and,
for single reductions over a middle block of axes, ``cols``.

Floats are compared within the dtype's tolerance (transcendentals are glibc's here, CUDA's
on a GPU, numpy's in the reference), scaled for sums by the magnitudes involved (and the
loosest float dtype a kernel computes in), with NaN in the same places; integers and bools
exactly. Kernels with barriers run as cooperative threads (see tests/cuda_emulator.py).

Cost (2 cores): about 28 s cold, 18 s with the emulator's compiled libraries cached; the
nvcc checks skip the device optimizer (``-Xcicc -O0``, warnings are errors), and the ops
group (about 2300 functions) dominates both compiles.
"""

from __future__ import annotations

import contextlib
import functools
import math
import shutil

import cuda_emulator
import graphgen
import models as M
import numpy as np
import pytest
import test_llvm_backend as LB

import graphc as gc
from graphc import dtypes as dt
from graphc.backends import kernel_specs as KS
from graphc.backends.cuda import codegen, compiler
from graphc.backends.kernel_specs import is_gemm
from graphc.backends.llvm.program import strides_table
from graphc.backends.reference import Interpreter
from graphc.graph import Graph
from graphc.ops import registry
from graphc.ops.registry import Kind
from graphc.passes import pipeline
from graphc.types import TensorType

TOL = {"float16": (2e-3, 1e-3), "float32": (2e-5, 1e-6), "float64": (1e-12, 1e-13)}
GRID, BLOCK = (7,), (128,)      # what a launcher might ask for (the emulator shrinks it)
N_RANDOM = 100
RANDOM_CHUNK = 25


# -- collecting kernels -----------------------------------------------------------------------

class Case:
    """One kernel node: its spec, entry points, reference inputs and outputs."""

    def __init__(self, kind, label, node, spec, names, ins, outs, extra=None):
        self.kind, self.label, self.node, self.spec, self.names = kind, label, node, spec, names
        self.ins, self.outs, self.extra = ins, outs, extra


class Group:
    """The kernels of some graphs in one `codegen.ModuleSource`."""

    def __init__(self, name: str):
        self.name = name
        self.module = codegen.ModuleSource(name)
        self.cases: list[Case] = []
        self.unsupported: list[str] = []
        self.kinds: dict[str, int] = {}

    def add_node(self, node, ins: list, outs: list, prefix: str, label: str) -> None:
        name = f"{prefix}"
        try:
            if KS.is_elementwise_kernel(node):
                spec = KS.kernel_spec(node, name)
                case = Case("elementwise", label, node, spec, self.module.add_elementwise(spec),
                            ins, outs)
            elif node.body is not None and node.attrs.get("kind") == "reduction":
                spec, shape, axes = KS.row_spec(node, name)
                case = Case("rows", label, node, spec, {"rows": self.module.add_rows(spec)},
                            ins, outs, (shape, axes))
            elif node.body is None and node.op.kind is Kind.REDUCTION and \
                    node.op.reduction is not None:
                spec = KS.single_spec(node, name)
                case = Case("single", label, node, spec,
                            {"rows": self.module.add_rows(spec),
                             "cols": self.module.add_cols(spec)}, ins, outs)
            elif node.body is not None and is_gemm(node):
                lib, operands, spec, outer = KS.gemm_epilogue(node, name)
                env = {id(v): a for v, a in zip(node.inputs, ins)}
                gemm = np.asarray(lib.op.impl(np, *[env[id(v)] for v in operands],
                                              **lib.attrs))
                case = Case("epilogue", label, node, spec, self.module.add_elementwise(spec),
                            [env[id(v)] for v in outer] + [gemm], outs)
            else:
                return
        except KS.Unsupported as e:
            self.unsupported.append(f"{label}: {e}")
            return
        self.kinds[case.kind] = self.kinds.get(case.kind, 0) + 1
        self.cases.append(case)

    def add_graph(self, graph: Graph, inputs: list, prefix: str) -> None:
        """Every kernel node of ``graph``, with the reference values of ``inputs``."""
        interp = Interpreter(graph, check=False, sanitize=False)
        env = {id(v): np.asarray(a) for v, a in zip(interp.runtime_inputs, inputs)}
        for v in graph.inputs:
            if v.role == "constant":
                env[id(v)] = np.asarray(graph.constants[v.name])
        with np.errstate(all="ignore"):
            for i, node in enumerate(graph.nodes):
                ins = [env[id(v)] for v in node.inputs]
                interp.run_node(node, env, np)
                outs = [np.asarray(env[id(v)]) for v in node.outputs]
                self.add_node(node, ins, outs, f"{prefix}k{i}", f"{graph.name} node {i} "
                              f"({node.op.name}{'[fused]' if node.body else ''})")


@contextlib.contextmanager
def _recording(records: list):
    """Record (graph, node, inputs, outputs) of every top-level node the reference
    interpreter runs."""
    original = Interpreter.run_node

    def run_node(self, node, env, xp):
        top = any(node is n for n in self.graph.nodes)
        ins = [env[id(v)] for v in node.inputs] if top else None
        original(self, node, env, xp)
        if top:
            records.append((self.graph, node, ins, [np.asarray(env[id(v)])
                                                    for v in node.outputs]))
    Interpreter.run_node = run_node
    try:
        yield
    finally:
        Interpreter.run_node = original


# -- the groups -------------------------------------------------------------------------------

def _ops_group() -> Group:
    """test_llvm_backend's cases of every elementwise op, one node per case."""
    group = Group("ops")
    for name in LB.ELEMENTWISE:
        op = registry.get(name)
        arity = LB._arity(op)
        cases = {1: LB.UNARY_CASES, 2: LB.BINARY_CASES, 3: LB.TERNARY_CASES}[arity]
        cases = cases + LB.LAYOUT_CASES[arity]
        if name == "dropout":
            cases = [[c[0], ()] for c in LB.UNARY_CASES] + [[(5, 7), ()]]
        rng = np.random.default_rng(sum(map(ord, name)))
        n = 0
        for dtype in LB.DTYPES:
            types = LB._dtypes_of(op, dtype, arity)
            if types is None:
                continue
            for attrs in LB.ATTRS.get(name, [{}]):
                for shapes in cases:
                    graph = Graph(f"op_{name}")
                    args = []
                    for j, (shape, t) in enumerate(zip(shapes, types)):
                        role = "key" if name == "dropout" and j == 1 else \
                            "exponent" if name == "pow" and j == 1 else "x"
                        args.append(LB._values(rng, shape, t, role))
                    vals = [graph.add_input(f"in{j}", TensorType(a.shape, t))
                            for j, (a, t) in enumerate(zip(args, types))]
                    node = graph.add_node(op, vals, attrs)
                    graph.outputs.append(node.outputs[0])
                    group.add_graph(graph, args, f"{name}{n}_")
                    n += 1
    return group


def _model_group(case: str) -> Group:
    fn, args = (M.INFERENCE[case] if not case.endswith("_step")
                else functools.partial(M.train_step, case[:-5]))()
    records: list = []
    with _recording(records), np.errstate(all="ignore"):
        gc.jit(fn, backend="reference", opt_level=3)(*args)
    group = Group(case)
    for i, (_, node, ins, outs) in enumerate(records):
        group.add_node(node, ins, outs, f"k{i}", f"{case} node {i} ({node.op.name}"
                       f"{'[fused]' if node.body else ''})")
    return group


def _random_group(chunk: int) -> Group:
    group = Group(f"random{chunk}")
    for seed in range(chunk * RANDOM_CHUNK, (chunk + 1) * RANDOM_CHUNK):
        gen = graphgen.random_graph(seed, native=True, odd_sizes=True)
        graph = pipeline.optimize(gen.graph, 3)
        group.add_graph(graph, gen.inputs, f"g{seed}_")
    return group


def _rows_group() -> Group:
    """Row-wise kernels on odd row lengths, zero-size rows and reductions over leading,
    middle and trailing axes."""
    group = Group("rows")
    fns = {
        "softmax": lambda x: gc.softmax(x, axis=-1),
        "log_softmax": lambda x: gc.log_softmax(x, axis=-1),
        "logsumexp": lambda x: gc.logsumexp(x, axis=-1, keepdims=True),
        "layer_norm": lambda x: gc.layer_norm(x, gc.ones(x.shape[-1]) * 1.5,
                                              gc.zeros(x.shape[-1]) + 0.25, axis=-1),
        "var": lambda x: gc.mean((x - gc.mean(x, axis=-1, keepdims=True)) ** 2, axis=-1),
        "sum0": lambda x: gc.sum(x * 2.0, axis=0),
        "max1": lambda x: gc.max(x, axis=-1),
        "min": lambda x: gc.min(x, axis=0, keepdims=True),
        "prod": lambda x: gc.prod(x * 0.5 + 0.75, axis=-1) if hasattr(gc, "prod")
        else gc.sum(x, axis=-1),
        "mean_all": lambda x: gc.mean(x),
    }
    rng = np.random.default_rng(7)
    k = 0
    for n in (0, 1, 3, 7, 17, 1023, 4097):
        for rows in (1, 3):
            for dtype in ("float32", "float64"):
                x = rng.standard_normal((rows, n)).astype(dtype)
                for fname, fn in fns.items():
                    if fname == "prod" and n > 17:
                        continue
                    try:
                        graph = pipeline.optimize(gc.trace(fn, x), 3)
                    except gc.errors.ShapeError:
                        continue  # max over an empty row
                    group.add_graph(graph, [x], f"r{k}_")
                    k += 1
    for shape, axis in (((3, 5, 7), 1), ((2, 3, 4, 5), (1, 2)), ((4, 0, 3), 1),
                        ((3, 17, 2), (0, 2))):
        x = rng.standard_normal(shape).astype(np.float32)
        for fn in (lambda x, a=axis: gc.sum(x, axis=a), lambda x, a=axis: gc.max(x, axis=a),
                   lambda x, a=axis: gc.mean(x, axis=a, keepdims=True)):
            try:
                graph = pipeline.optimize(gc.trace(fn, x), 3)
            except gc.errors.ShapeError:
                continue
            group.add_graph(graph, [x], f"r{k}_")
            k += 1
    return group


GROUPS = ["ops", "rows", *sorted(M.INFERENCE), *[f"{k}_step" for k in sorted(M.SPECS)],
          *[f"random{c}" for c in range(N_RANDOM // RANDOM_CHUNK)]]


@functools.cache
def group(name: str) -> Group:
    if name == "ops":
        return _ops_group()
    if name == "rows":
        return _rows_group()
    if name.startswith("random"):
        return _random_group(int(name[6:]))
    return _model_group(name)


@functools.cache
def emulated(name: str):
    return cuda_emulator.load(group(name).module.source())


# -- running a case in the emulator ------------------------------------------------------------

def _ptr(a: np.ndarray) -> np.uint64:
    return np.uint64(a.ctypes.data)


def _aligned(shape, dtype, offset: int = 0) -> np.ndarray:
    """An empty C-contiguous array whose data starts ``offset`` bytes past 64-byte
    alignment."""
    dtype = np.dtype(dtype)
    n = math.prod(shape) * dtype.itemsize
    buf = np.empty(n + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    return buf[start:start + n].view(dtype).reshape(shape)


def _native(a, dtype: str) -> np.ndarray:
    return np.asarray(a).astype(dt.to_numpy(dtype), copy=False)


def _run_elementwise(mod, case: Case) -> list[tuple[str, list]]:
    """[(variant, outputs)] of every variant of an elementwise case."""
    spec = case.spec
    if spec.size == 0:
        return []
    ins = [_native(a, t.dtype) for a, t in zip(case.ins, spec.in_types)]
    results = []
    np_out = [dt.to_numpy(t.dtype) for t in spec.out_types]
    if "flat" in case.names:
        flat = [np.ascontiguousarray(a).reshape(-1) for a in ins]
        outs = [np.empty(spec.domain, d) for d in np_out]
        mod.get_function(case.names["flat"])(GRID, BLOCK, (*map(_ptr, flat), *map(_ptr, outs),
                                                           np.int64(spec.size)))
        results.append(("flat", outs))
        aligned = []
        for a in flat:
            if a.size == 1:
                aligned.append(a)
                continue
            b = _aligned(a.shape, a.dtype)
            b[...] = a
            aligned.append(b)
        outs = [_aligned(spec.domain, d) for d in np_out]
        mod.get_function(case.names["flat4"])(GRID, BLOCK, (*map(_ptr, aligned),
                                                            *map(_ptr, outs),
                                                            np.int64(spec.size)))
        results.append(("flat4", outs))
    if "strided" in case.names:
        fn = mod.get_function(case.names["strided"])
        for layout in ("as given", "views"):
            arrays = [np.ascontiguousarray(a) for a in ins]
            if layout == "views":
                arrays = [_view(a) for a in arrays]
            table = strides_table(spec.domain, arrays)
            outs = [np.empty(spec.domain, d) for d in np_out]
            fn(GRID, BLOCK, (*map(_ptr, arrays), *map(_ptr, outs), _ptr(table)))
            results.append((f"strided {layout}", outs))
    return results


def _view(a: np.ndarray) -> np.ndarray:
    """The same values as a transposed (rank >= 2) or reversed (rank 1) view."""
    if a.size <= 1:
        return a
    if a.ndim >= 2:
        return np.ascontiguousarray(a.T).T
    return np.ascontiguousarray(a[::-1])[::-1]


def _run_rows(mod, case: Case) -> list[tuple[str, list]]:
    """The fused row kernel, inputs laid out as `llvm.runtime._RowKernel.run` does."""
    spec = case.spec
    shape, axes = case.extra
    keep = [i for i in range(len(shape)) if i not in axes]
    perm = keep + list(axes)
    tshape = tuple(shape[i] for i in perm)
    rows, n = math.prod(tshape[:len(keep)]), math.prod(tshape[len(keep):])
    node = case.node
    outs = [np.zeros(tshape if lv == "full" else v.type.shape, dt.to_numpy(v.dtype))
            for v, (lv, _, _) in zip(node.outputs, spec.outs)]
    if rows and outs:
        args = []
        for a, kind, t in zip(case.ins, spec.in_kinds, spec.in_types):
            a = np.asarray(a)
            if kind == "col":
                a = a.reshape((1,) * (len(shape) - a.ndim) + a.shape)[(0,) * len(keep)]
                a = np.broadcast_to(a, tshape[len(keep):])
            elif kind == "full":
                a = np.broadcast_to(a, shape).transpose(perm)
            args.append(np.ascontiguousarray(_native(a, t.dtype)))
        mod.get_function(case.names["rows"])(GRID, BLOCK, (*map(_ptr, args), *map(_ptr, outs),
                                                           np.int64(rows), np.int64(n)))
    inverse = list(np.argsort(perm))
    return [("rows", [np.ascontiguousarray(o.transpose(inverse)) if lv == "full" else o
                      for o, (lv, _, _) in zip(outs, spec.outs)])]


def _run_single(mod, case: Case) -> list[tuple[str, list]]:
    """A single reduction: the row kernel over the reduced axes moved last, and the
    column kernel where they are one block of axes with kept axes after them."""
    x = np.ascontiguousarray(_native(case.ins[0], case.spec.in_types[0].dtype))
    v = case.node.outputs[0]
    axis = case.node.attrs.get("axis")
    axes = set(range(x.ndim)) if axis is None else \
        {axis % x.ndim} if isinstance(axis, int) else {a % x.ndim for a in axis}
    results = []
    out = np.zeros(v.type.shape, dt.to_numpy(v.dtype))
    if out.size:
        keep = [i for i in range(x.ndim) if i not in axes]
        red = sorted(axes)
        xt = np.ascontiguousarray(x.transpose(keep + red))
        mod.get_function(case.names["rows"])(GRID, BLOCK, (
            _ptr(xt), _ptr(out), np.int64(math.prod(x.shape[i] for i in keep)),
            np.int64(math.prod(x.shape[i] for i in red))))
    results.append(("rows", [out]))
    dims = [(d, i in axes) for i, d in enumerate(x.shape) if d != 1]
    flags = [r for _, r in dims]
    lo = flags.index(True) if True in flags else 0
    hi = len(flags) - flags[::-1].index(True) if True in flags else 0
    if out.size and lo < hi < len(flags) and all(flags[lo:hi]):
        sizes = [d for d, _ in dims]
        out = np.zeros(v.type.shape, dt.to_numpy(v.dtype))
        mod.get_function(case.names["cols"])(GRID, BLOCK, (
            _ptr(x), _ptr(out), np.int64(math.prod(sizes[:lo])),
            np.int64(math.prod(sizes[lo:hi])), np.int64(math.prod(sizes[hi:]))))
        results.append(("cols", [out]))
    return results


def _compare(got, want, what: str, scale: float = 1.0, signs: bool = True,
             tol: tuple[float, float] = (0.0, 0.0)) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert (got.shape, got.dtype) == (want.shape, want.dtype), \
        f"{what}: {got.dtype}{list(got.shape)} vs {want.dtype}{list(want.shape)}"
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaNs")
    rtol, atol = (max(a, b) for a, b in zip(TOL[want.dtype.name], tol))
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol,
                               atol=atol * scale, err_msg=what)
    if signs:
        zeros = (got == 0) & (want == 0)
        np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(want[zeros]),
                                      err_msg=f"{what}: signs of zeros")


def _magnitude(arrays) -> float:
    m = 1.0
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind == "f" and a.size:
            finite = np.abs(a[np.isfinite(a)].astype(np.float64))
            if finite.size:
                m = max(m, float(finite.max()))
    return m


def _loosest(node) -> tuple[float, float]:
    """The tolerance of the loosest float dtype a kernel computes in (a float64 output
    may be a cast of float32 math)."""
    values = list(node.inputs) + list(node.outputs)
    if node.body is not None:
        values += list(node.body.values())
    floats = {v.dtype for v in values if dt.is_float(v.dtype)}
    return max((TOL[d] for d in floats), default=(0.0, 0.0))


def check_case(mod, case: Case, loose: bool) -> int:
    """Run every variant of ``case``; returns how many ran. ``loose``: a graph's
    tolerance (atol scaled by the magnitudes around, sums scaled by their length) rather
    than an op's."""
    runs = {"elementwise": _run_elementwise, "epilogue": _run_elementwise,
            "rows": _run_rows, "single": _run_single}[case.kind](mod, case)
    scale = 1.0
    reduction = case.kind in ("rows", "single")
    if loose or reduction:
        scale = _magnitude(list(case.ins) + list(case.outs))
        if reduction:
            n = max(1, math.prod(np.shape(case.ins[0])))
            scale *= math.sqrt(n)
    for variant, outs in runs:
        for j, (got, want) in enumerate(zip(outs, case.outs)):
            want = np.asarray(want)
            _compare(got.reshape(want.shape), want, f"{case.label} {variant} output {j}",
                     scale, signs=not reduction and not loose,
                     tol=_loosest(case.node) if loose else (0.0, 0.0))
    return len(runs)


# -- tests --------------------------------------------------------------------------------------

nvcc = pytest.mark.skipif(not compiler.nvcc_available(),
                          reason="nvcc is not on PATH: generated CUDA C is not compiled "
                                 "(the emulator tests still run)")


@nvcc
@pytest.mark.parametrize("name", GROUPS)
def test_nvcc_compiles(name):
    g = group(name)
    assert g.cases, f"{name}: no kernel generated"
    ptx = compiler.ptx(g.module.source(), "sm_90", optimize=False,
                       options=("-Werror", "all-warnings"))
    for names in (c.names for c in g.cases):
        for fn in names.values():
            assert f".entry {fn}(" in ptx, fn


gxx = pytest.mark.skipif(shutil.which("g++") is None,
                         reason="g++ is not on PATH: the CUDA emulator cannot run")


@gxx
@pytest.mark.parametrize("name", GROUPS)
def test_emulated_kernels_match_reference(name):
    g = group(name)
    mod = emulated(name)
    loose = name != "ops"
    ran = 0
    for case in g.cases:
        ran += check_case(mod, case, loose)
    assert ran, name


def test_groups_cover_every_kind():
    """Elementwise, flat4, fused rows, single reductions (rows and cols) and gemm
    epilogues are all generated and run somewhere; nothing a model needs falls back."""
    kinds: dict[str, int] = {}
    for name in ("ops", "rows", "mlp_step", "transformer_step"):
        for k, v in group(name).kinds.items():
            kinds[k] = kinds.get(k, 0) + v
    assert {"elementwise", "rows", "single", "epilogue"} <= set(kinds), kinds
    for name in [*sorted(M.INFERENCE), *[f"{k}_step" for k in sorted(M.SPECS)]]:
        assert not group(name).unsupported, group(name).unsupported[:5]
    assert not group("ops").unsupported, group("ops").unsupported[:5]


def test_ptx_reports_compile_errors():
    if not compiler.nvcc_available():
        pytest.skip("nvcc is not on PATH")
    with pytest.raises(gc.errors.BackendError, match="error"):
        compiler.ptx('extern "C" __global__ void f() { undefined_thing(); }')


def test_source_key_depends_on_source_and_arch():
    a = compiler.source_key("x", "sm_90")
    assert a == compiler.source_key("x", "sm_90")
    assert a != compiler.source_key("y", "sm_90") != compiler.source_key("x", "sm_80")


def test_identical_kernels_are_shared():
    """Repeated layers share one function per variant: the same expression under another
    kernel name adds nothing."""
    x = np.ones((4, 8), np.float32)
    w = np.ones((8, 8), np.float32)

    def f(x, w):
        for _ in range(3):
            x = gc.softmax(gc.tanh(x @ w + 1.0), axis=-1) * 0.5 + x
        return x
    graph = pipeline.optimize(gc.trace(f, x, w), 3)
    module = codegen.ModuleSource()
    names = []
    for i, node in enumerate(graph.nodes):
        if KS.is_elementwise_kernel(node):
            names.append(tuple(module.add_elementwise(KS.kernel_spec(node, f"k{i}")).values()))
        elif node.body is not None and node.attrs.get("kind") == "reduction":
            names.append(module.add_rows(KS.row_spec(node, f"k{i}")[0]))
        elif node.body is not None and is_gemm(node):
            spec = KS.gemm_epilogue(node, f"k{i}")[2]
            names.append(tuple(module.add_elementwise(spec).values()))
    assert len(names) >= 6 and len(set(names)) <= len(names) // 3, names
    assert len(module.kernels) == sum(len(n) if isinstance(n, tuple) else 1
                                      for n in set(names))


def test_unsupported_leaves_module_unchanged():
    from graphc.ops import scalar as S
    module = codegen.ModuleSource()
    spec = KS.KernelSpec("bad", [TensorType((3,), "int32")], [TensorType((3,), "int32")],
                         [S.call("div", S.arg(0, "int32"), S.arg(0, "int32"))])
    with pytest.raises(KS.Unsupported):
        module.add_elementwise(spec)
    assert module.kernels == [] and module.functions == {}


@gxx
def test_emulator_checks_launch_arguments():
    module = codegen.ModuleSource()
    from graphc.ops import scalar as S
    spec = KS.KernelSpec("neg", [TensorType((5,), "float32")], [TensorType((5,), "float32")],
                         [S.call("neg", S.arg(0, "float32"))])
    names = module.add_elementwise(spec)
    mod = cuda_emulator.load(module.source())
    a = np.arange(5, dtype=np.float32)
    out = np.empty(5, np.float32)
    fn = mod.get_function(names["flat"])
    with pytest.raises(TypeError):
        fn((1,), (32,), (_ptr(a), _ptr(out), 5))  # a Python int, not np.int64
    fn((1,), (32,), (_ptr(a), _ptr(out), np.int64(5)))
    np.testing.assert_array_equal(out, -a)


@gxx
def test_emulator_block_reduction_modes():
    """A row kernel gives the same sums with cooperative threads in warps of 4 (the
    default), with 32-lane warps, and serially (one thread per block, warpSize 1); a kernel
    whose threads meet different numbers of barriers is an error."""
    x = np.random.default_rng(3).standard_normal((5, 300)).astype(np.float32)
    graph = pipeline.optimize(gc.trace(lambda x: gc.softmax(x, axis=-1), x), 3)
    (node,) = graph.nodes
    module = codegen.ModuleSource()
    name = module.add_rows(KS.row_spec(node, "sm")[0])
    src = module.source()
    want = np.exp(x - x.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    for sync_block, warp in ((8, 4), (64, 32), (1, 1)):
        mod = cuda_emulator.load(src, sync_block=sync_block, warp=warp)
        out = np.empty_like(x)
        mod.get_function(name)(GRID, BLOCK, (_ptr(x), _ptr(out), np.int64(5), np.int64(300)))
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-7)
    bad = 'extern "C" __global__ void bad(float* p) { if (threadIdx.x) __syncthreads(); }'
    mod = cuda_emulator.load(codegen.PRELUDE + bad)
    with pytest.raises(RuntimeError, match="barriers"):
        mod.get_function("bad")((1,), (8,), (_ptr(x),))
