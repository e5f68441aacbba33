"""What each kernel of an optimized graph computes, independent of any backend.

A backend that generates code (LLVM IR on the CPU, CUDA C on the GPU) reads a kernel node
through these specs and never through op names: an elementwise kernel (a fused
``elementwise`` node or one ELEMENTWISE op) is a `KernelSpec` — output expressions over
typed inputs on a domain; a row-wise kernel (a fused ``reduction`` node or one REDUCTION
op) is a `RowSpec` — reductions by depth and outputs by level; a fused gemm kernel splits
into the gemm and its epilogue (`gemm_epilogue`). Whatever a spec cannot describe raises
`Unsupported`, and the backend runs that node with the reference interpreter.
"""

from __future__ import annotations

import math

from ..errors import BackendError
from ..graph import Node
from ..ops import scalar as S
from ..ops.registry import Kind
from ..types import TensorType


class Unsupported(BackendError):
    """A kernel this code generator cannot render; the runtime falls back for it."""


# -- elementwise kernels ------------------------------------------------------------

class KernelSpec:
    """What one elementwise kernel computes: output expressions over typed inputs on D."""

    def __init__(self, name: str, in_types: list[TensorType], out_types: list[TensorType],
                 exprs: list[S.Expr]):
        self.name, self.in_types, self.out_types, self.exprs = name, in_types, out_types, exprs
        self.domain = out_types[0].shape
        self.size = math.prod(self.domain)
        #: whether the flat variant exists: every input has shape D or one element
        self.flat = all(t.shape == self.domain or t.size == 1 for t in in_types)


def is_elementwise_kernel(node: Node) -> bool:
    if node.body is not None:
        return node.attrs.get("kind") == "elementwise"
    return node.op.kind is Kind.ELEMENTWISE and node.op.scalar is not None


def is_row_kernel(node: Node) -> bool:
    """A fused ``reduction`` kernel or one REDUCTION op with a combiner (`row_spec`,
    `single_spec`)."""
    if node.body is not None:
        return node.attrs.get("kind") == "reduction"
    return node.op.kind is Kind.REDUCTION and node.op.reduction is not None


def is_gemm(node: Node) -> bool:
    """A gemm op, or a fused ``library`` kernel around one (`gemm_epilogue`)."""
    if node.body is not None:
        return node.attrs.get("kind") == "library" and \
            any(n.op.library == "gemm" for n in node.body.nodes)
    return node.op.kind is Kind.LIBRARY and node.op.library == "gemm"


def kernel_spec(node: Node, name: str) -> KernelSpec:
    """The spec of an elementwise kernel node, or `Unsupported`."""
    if not is_elementwise_kernel(node):
        raise Unsupported(f"{node.op.name} is not an elementwise kernel")
    in_types = [v.type for v in node.inputs]
    args = [S.arg(j, t.dtype) for j, t in enumerate(in_types)]
    if node.body is None:
        exprs = [apply_scalar(node, args)]
    else:
        exprs = body_exprs(node, args)
    out_types = [v.type for v in node.outputs]
    if len({t.shape for t in out_types}) != 1:
        raise Unsupported("outputs of different shapes")
    if expression_depth(exprs) > MAX_DEPTH:
        raise Unsupported(f"an expression deeper than {MAX_DEPTH} primitives")
    return KernelSpec(name, in_types, out_types, exprs)


def code_key(spec: KernelSpec) -> tuple:
    """What an elementwise kernel's code depends on besides its variant and rank: dtypes,
    which inputs are one element, and the expressions' structure (primitives, dtypes,
    constants). Code generators share one function between kernels with equal keys, so
    repeated layers compile once."""
    memo: dict[int, tuple] = {}

    def key(e: S.Expr) -> tuple:
        k = memo.get(id(e))
        if k is None:
            k = memo[id(e)] = (e.fn, e.dtype, repr(e.value), tuple(key(a) for a in e.args))
        return k
    return (tuple((t.dtype, t.size == 1) for t in spec.in_types),
            tuple(t.dtype for t in spec.out_types), tuple(key(e) for e in spec.exprs))


#: Deeper expressions (a traced loop of 3000 adds) would overflow the recursive
#: renderers; such kernels run in the interpreter.
MAX_DEPTH = 400


def expression_depth(exprs: list[S.Expr]) -> int:
    """The longest primitive chain in ``exprs`` (iterative: the trees may be deep)."""
    depth: dict[int, int] = {}
    for root in exprs:
        stack = [(root, False)]
        while stack:
            e, done = stack.pop()
            if id(e) in depth:
                continue
            if done or not e.args:
                depth[id(e)] = 1 + max((depth[id(a)] for a in e.args), default=0)
            else:
                stack.append((e, True))
                stack.extend((a, False) for a in e.args if id(a) not in depth)
    return max((depth[id(e)] for e in exprs), default=0)


def apply_scalar(node: Node, args: list[S.Expr]) -> S.Expr:
    if node.op.kind is not Kind.ELEMENTWISE or node.op.scalar is None or \
            len(node.outputs) != 1:
        raise Unsupported(f"{node.op.name} has no scalar expression")
    e = node.op.scalar(*args, **node.attrs)
    e = S._lift(e, node.outputs[0].dtype)
    return S.cast(e, node.outputs[0].dtype)


def body_exprs(node: Node, args: list[S.Expr]) -> list[S.Expr]:
    body = node.body
    domain = node.outputs[0].type.shape
    env: dict[int, S.Expr] = {}
    params = iter(args)
    for v in body.inputs:
        if v.role != "constant":
            env[id(v)] = next(params)
            continue
        data = body.constants[v.name]
        if data.size != 1:
            raise Unsupported(f"constant %{v.name} of {data.size} elements inside a kernel")
        env[id(v)] = S.const(data.reshape(()).item(), v.dtype)
    for n in body.nodes:
        e = apply_scalar(n, [env[id(v)] for v in n.inputs])
        out = n.outputs[0].type
        if out.shape != domain:
            if out.size != 1:
                raise Unsupported(f"body value of shape {out.shape} in a kernel over {domain}")
            e = index_at_zero(e)  # a one-element value: computed at its own index 0
        env[id(n.outputs[0])] = e
    return [env[id(v)] for v in body.outputs]


def index_at_zero(e: S.Expr, memo: dict | None = None) -> S.Expr:
    memo = {} if memo is None else memo
    if id(e) in memo:
        return memo[id(e)]
    if e.fn == "index":
        r = S.const(0, "int64")
    elif e.args:
        r = S.Expr(e.fn, tuple(index_at_zero(a, memo) for a in e.args), e.value, e.dtype)
    else:
        r = e
    memo[id(e)] = r
    return r


# -- row-wise kernels and reductions ------------------------------------------------

#: What row kernels fold natively: combiners, finalizers, dtypes.
COMBINERS = ("add", "mul", "max", "min")
FINALIZERS = (None, "mean")
FLOATS = ("float32", "float64")


class Reduce:
    """One reduction of a kernel: its full-level input expression and result placeholder."""

    __slots__ = ("expr", "out", "combiner", "identity", "finalize", "dtype", "depth")

    def __init__(self, node: Node, expr: S.Expr, k: int, depth: int):
        r = node.op.reduction
        if r is None or r.combiner not in COMBINERS or r.finalize not in FINALIZERS:
            raise Unsupported(f"{node.op.name}: no native combiner")
        dtype = node.outputs[0].dtype
        if dtype not in FLOATS or node.inputs[0].dtype != dtype:
            raise Unsupported(f"{node.op.name} of {node.inputs[0].dtype} -> {dtype}")
        self.expr, self.dtype, self.depth = expr, dtype, depth
        self.combiner, self.identity, self.finalize = r.combiner, r.identity, r.finalize
        self.out = S.Expr("reduced", (), k, dtype)  # rendered only through the memo


class RowSpec:
    """A row-wise kernel: typed inputs by kind, reductions by depth, outputs by level."""

    def __init__(self, name: str, in_types: list[TensorType], in_kinds: list[str],
                 reds: list[Reduce], outs: list[tuple[str, str, S.Expr]],
                 unit_rows: bool = False):
        self.name, self.in_types, self.in_kinds, self.reds, self.outs = \
            name, in_types, in_kinds, reds, outs
        self.unit_rows = unit_rows  # rows of one element: full and per-row values coincide
        self.depth = max((r.depth for r in reds), default=0)

    def key(self) -> tuple:
        memo: dict[int, tuple] = {}

        def key(e):
            k = memo.get(id(e))
            if k is None:
                k = memo[id(e)] = (e.fn, e.dtype, repr(e.value), tuple(key(a) for a in e.args))
            return k
        return (self.unit_rows, tuple(t.dtype for t in self.in_types), tuple(self.in_kinds),
                tuple((key(r.expr), r.combiner, r.identity, r.finalize, r.depth)
                      for r in self.reds),
                tuple((lv, d, key(e)) for lv, d, e in self.outs))


def uses_index(e: S.Expr, seen: set) -> bool:
    if id(e) in seen:
        return False
    seen.add(id(e))
    return e.fn == "index" or any(uses_index(a, seen) for a in e.args)


def row_spec(node: Node, name: str) -> tuple[RowSpec, tuple, tuple[int, ...]]:
    """The spec of a fused ``reduction`` kernel, with its full shape S and reduced axes;
    `Unsupported` for anything else. Reduced axes that are not trailing (kernels where no
    full value reads a reduction) are made trailing by the runtime, which transposes the
    full inputs and outputs; rows of one element are full and reduced at once."""
    body = node.body
    if body is None or node.attrs.get("kind") != "reduction":
        raise Unsupported("not a fused reduction kernel")
    reds = [n for n in body.nodes if n.op.kind is Kind.REDUCTION]
    first = reds[0]
    shape = first.inputs[0].type.shape
    axes = first.attrs.get("axis")
    axes = tuple(range(len(shape))) if axes is None else \
        (axes,) if isinstance(axes, int) else tuple(axes)
    axes = tuple(sorted(axes))
    ndim, k = len(shape), len(shape) - len(axes)
    trailing = axes == tuple(range(k, ndim))
    keep = tuple(1 if i in axes else d for i, d in enumerate(shape))
    drop = tuple(d for i, d in enumerate(shape) if i not in axes)
    for r in reds:
        if r.inputs[0].type.shape != shape or r.attrs.get("axis") != first.attrs.get("axis"):
            raise Unsupported("reductions over different axes or shapes")

    def level(t: TensorType) -> str:
        if t.shape == shape:
            return "full"
        if t.shape in (keep, drop):
            return "row"
        if math.prod(t.shape) == 1:
            return "scalar"
        pad = (1,) * (ndim - len(t.shape)) + t.shape
        if len(t.shape) <= ndim and all(a in (1, b) for a, b in zip(pad, shape)):
            # one row broadcast to every row, or materialized at S by the runtime
            return "col" if trailing and all(d == 1 for d in pad[:k]) else "full"
        raise Unsupported(f"input of shape {t.shape} in a row-wise kernel over {shape}")

    uses = _read_as(body, shape, keep, drop, trailing, k)
    env: dict[int, S.Expr] = {}
    depth: dict[int, int] = {}  # id(value) -> how many reduction passes it waits for
    in_types, in_kinds = [], []
    for v in body.inputs:
        if v.role == "constant":
            data = body.constants[v.name]
            if data.size != 1:
                raise Unsupported(f"constant %{v.name} of {data.size} elements")
            env[id(v)] = S.const(data.reshape(()).item(), v.dtype)
        else:
            env[id(v)] = S.arg(len(in_types), v.dtype)
            in_types.append(v.type)
            # read an input as its uses need (fuzzer: on square shapes, an input of shape
            # `drop` that numpy broadcasts along the reduced axes, e.g. layer norm's gamma
            # on (n, n), was read per row)
            kinds = uses.get(id(v), set()) - {"scalar"}
            if len(kinds) > 1:
                raise Unsupported(f"input %{v.name} read both as {' and '.join(kinds)}")
            in_kinds.append(kinds.pop() if kinds and v.type.shape != shape and
                            math.prod(v.type.shape) != 1 else level(v.type))
        depth[id(v)] = 0
    out_reds: list[Reduce] = []
    for n in body.nodes:
        d = max((depth[id(v)] for v in n.inputs), default=0)
        if n.op.kind is Kind.REDUCTION:
            red = Reduce(n, env[id(n.inputs[0])], len(out_reds), d + 1)
            out_reds.append(red)
            e, d = red.out, d + 1
        else:
            e = apply_scalar(n, [env[id(v)] for v in n.inputs])
        env[id(n.outputs[0])], depth[id(n.outputs[0])] = e, d
    outs = []
    for v in body.outputs:
        lv = level(v.type)
        if lv not in ("full", "row"):
            raise Unsupported(f"kernel output of shape {v.type.shape}")
        outs.append((lv, v.dtype, env[id(v)]))
    seen: set = set()
    if any(uses_index(e, seen) for e in [r.expr for r in out_reds] + [o[2] for o in outs]):
        raise Unsupported("the flat index inside a row-wise kernel")
    return RowSpec(name, in_types, in_kinds, out_reds, outs, keep == shape), shape, axes


def _read_as(body, shape, keep, drop, trailing, k) -> dict[int, set]:
    """id(value) -> the kinds (full, row, col, scalar) its uses read it as, by numpy's
    broadcasting: an operand of a node of the full shape S as its shape broadcasts to S;
    an operand of a smaller node as that node's value is read, per row where the node
    depends on a reduction. `Unsupported` where one reading cannot serve (a reduced value
    that numpy broadcasts along the reduced axes, ``x - max(x, axis=1)`` on (n, n))."""
    def bcast(t: tuple) -> str:
        if t == shape:
            return "full"
        if math.prod(t) == 1:
            return "scalar"
        pad = (1,) * (len(shape) - len(t)) + t
        if len(t) > len(shape) or not all(a in (1, b) for a, b in zip(pad, shape)):
            raise Unsupported(f"value of shape {t} in a row-wise kernel over {shape}")
        if pad == keep:
            return "row"
        return "col" if trailing and all(d == 1 for d in pad[:k]) else "full"

    reduced: set[int] = set()
    for n in body.nodes:
        if n.op.kind is Kind.REDUCTION or any(id(v) in reduced for v in n.inputs):
            reduced.update(id(v) for v in n.outputs)
    need: dict[int, set] = {id(v): {"full" if v.type.shape == shape else "row"}
                            for v in body.outputs}
    for n in reversed(body.nodes):
        out = n.outputs[0]
        ctx = need.get(id(out), set()) | ({"row"} if id(out) in reduced else set())
        if id(out) in reduced and out.type.shape != shape and ctx - {"row", "scalar"}:
            raise Unsupported(f"reduced value %{out.name} broadcast along the reduced axes")
        for u in n.inputs:
            t = u.type.shape
            if n.op.kind is Kind.REDUCTION or t == shape or out.type.shape == shape or \
                    math.prod(t) == 1:
                kinds = {bcast(t)}
            elif (1,) * (len(out.type.shape) - len(t)) + t != out.type.shape:
                raise Unsupported(f"%{u.name} of shape {t} in a per-row value")
            else:
                kinds = ctx
            if "row" in kinds and t not in (keep, drop) and \
                    (1,) * (len(shape) - len(t)) + t != keep:
                raise Unsupported(f"%{u.name} of shape {t} read per row")
            need.setdefault(id(u), set()).update(kinds)
    return need


def single_spec(node: Node, name: str) -> RowSpec:
    """A single REDUCTION node as a one-pass row kernel over (rows, n) of its input."""
    if node.body is not None or node.op.kind is not Kind.REDUCTION or len(node.inputs) != 1:
        raise Unsupported("not a single reduction")
    x = node.inputs[0]
    red = Reduce(node, S.arg(0, x.dtype), 0, 1)
    return RowSpec(name, [TensorType((1,), x.dtype)], ["full"], [red],
                   [("row", red.dtype, red.out)])


# -- library kernels with an epilogue -------------------------------------------------

def gemm_epilogue(node: Node, name: str) -> tuple[Node, list, KernelSpec, list]:
    """A fused gemm kernel split into its gemm node, the gemm's two operands (outer
    values), and the epilogue: an elementwise spec over the outer inputs it reads plus
    the gemm result (its last input), with those outer inputs. `Unsupported` unless the
    body is one gemm whose operands are kernel inputs, followed by elementwise ops."""
    body = node.body
    libs = [n for n in body.nodes if n.op.kind is Kind.LIBRARY]
    if len(libs) != 1 or libs[0].op.library != "gemm" or len(libs[0].outputs) != 1:
        raise Unsupported("not one gemm library op")
    lib = libs[0]
    outer = {}  # body param -> outer value
    params = iter(node.inputs)
    for v in body.inputs:
        if v.role != "constant":
            outer[id(v)] = next(params)
    operands = []
    for v in lib.inputs:
        if id(v) not in outer:
            raise Unsupported("a gemm operand computed or constant in the kernel")
        operands.append(outer[id(v)])
    domain = lib.outputs[0].type.shape
    env: dict[int, S.Expr] = {}
    ins: list = []
    in_types = []

    def read(v):
        if id(v) in env:
            return env[id(v)]
        if id(v) in outer:
            e = S.arg(len(ins), v.dtype)
            ins.append(outer[id(v)])
            in_types.append(v.type)
        else:
            data = body.constants[v.name]
            if data.size != 1:
                raise Unsupported(f"constant %{v.name} of {data.size} elements")
            e = S.const(data.reshape(()).item(), v.dtype)
        env[id(v)] = e
        return e
    late = []  # the gemm result's arg index is only known once every input is read
    for n in body.nodes:
        if n is lib:
            env[id(n.outputs[0])] = res = S.Expr("arg", (), None, n.outputs[0].dtype)
            late.append(res)
            continue
        e = apply_scalar(n, [read(v) for v in n.inputs])
        if n.outputs[0].type.shape != domain:
            if n.outputs[0].type.size != 1:
                raise Unsupported(f"epilogue value of shape {n.outputs[0].shape}")
            e = index_at_zero(e)
        env[id(n.outputs[0])] = e
    exprs = [read(v) for v in body.outputs]
    arg = S.arg(len(ins), lib.outputs[0].dtype)
    exprs = [_substitute(e, late[0], arg, {}) for e in exprs]
    out_types = [v.type for v in node.outputs]
    if any(t.shape != domain for t in out_types):
        raise Unsupported("an epilogue output not at the gemm's shape")
    spec = KernelSpec(name, in_types + [lib.outputs[0].type], out_types, exprs)
    return lib, operands, spec, ins


def _substitute(e: S.Expr, old: S.Expr, new: S.Expr, memo: dict) -> S.Expr:
    """``e`` with node ``old`` (by identity) replaced by ``new``."""
    if e is old:
        return new
    if id(e) in memo:
        return memo[id(e)]
    r = S.Expr(e.fn, tuple(_substitute(a, old, new, memo) for a in e.args), e.value,
               e.dtype) if e.args else e
    memo[id(e)] = r
    return r
