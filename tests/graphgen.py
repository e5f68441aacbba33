"""A seeded random graph generator for testing the passes against the unoptimized run.

``random_graph(seed)`` builds a `Graph` node by node from the op registry and computes
every value eagerly (with the ops' own numpy implementations) as it goes, so each choice
is checked against real data: an op is kept only when its result is finite and of
moderate size (a few graphs, ``nonfinite``, take NaN/inf/-0.0 inputs and unguarded ops
on purpose, so the passes must keep NaN where it was; every graph's inputs may hold
signed zeros). What it draws:

- elementwise chains with broadcasting: unary and binary float ops (domain-limited ops
  such as log, sqrt, reciprocal, pow get a guard ``|x| + c`` unless the data is already
  in range), comparisons feeding ``where`` and logical ops, casts between dtypes
  (float16/32/64, int32/64, bool), integer arithmetic;
- reductions (sum, mean, max, min, prod, argmax, argmin) over random axes, keepdims;
- reshape, transpose, expand_dims, squeeze, broadcast_to, slice, concat, stack, split,
  and chains of them (reshape of a transpose, slice of a broadcast...) read by a kernel;
- matmul (vector, matrix and batched); dropout (its mask depends on a key input of role
  state and on the flat element index, so rewrites that move it across reshapes break it);
- what the simplifier looks for: x*1, x+0, x-0, x/1, x+(-0.0), neg(neg(x)), double
  transposes, reshape of reshape, cast to the same dtype, broadcast of a broadcast,
  duplicated nodes (CSE), dead nodes, constant-only subexpressions (folding), and the
  traps that are NOT identities (x*0, x-x, 0-x, x+0.0 on -0.0, NaN);
- dims drawn from 0, 1, 3, 17, 1023 and a few others (at most ~4k elements per value);
  with ``odd_sizes=True`` also 7 and 4097 (at most ~8k elements), sizes around vector
  widths and block sizes for backends' vector tails and index arithmetic;
- with ``views=True``, runtime inputs as non-contiguous or broadcast numpy views of their
  values (``Generated.layouts``: transposed, strided, reversed, stride 0 on some axes,
  whose values are then constant along those axes), drawn from a second generator;
- outputs: every sink (up to six), sometimes an older value, a graph input or constant,
  or the same value twice; graph inputs have roles data, parameter and state (dropout
  keys).

Discontinuous ops (floor, round, sign, comparisons, argmax, casts to int) only read values
computed without sums or GEMMs, whose last bits may depend on memory layout; so the
unoptimized and optimized runs may differ by rounding only, and ``Generated.tolerance``
scales it by the largest magnitude the output depends on. ``native=True`` draws graphs
for comparing a backend with its own math against numpy: transcendentals (`APPROX`) count
as inexact too (a few ulp apart from numpy's), so does the exponent of ``pow`` of a negative
base, and max/min never reduce zeros of both signs to a zero (numpy's sign of that zero
depends on its SIMD path and the length).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphc import dtypes as dt
from graphc.errors import GraphcError
from graphc.graph import Graph, Value
from graphc.ops import registry
from graphc.types import TensorType

MAX_ELEMENTS = 4096
LIMIT = 1e4                          # largest magnitude a value may take (finite graphs)
DIMS = (0, 1, 1, 2, 3, 3, 4, 5, 17, 1023)
ODD_DIMS = DIMS + (7, 7, 4097)       # odd_sizes=True: around 8-wide vectors, past 4096
ODD_MAX_ELEMENTS = 2 * 4097
TOL = {"float16": (2e-3, 1e-3), "float32": (1e-5, 1e-6), "float64": (1e-12, 1e-13)}

UNARY = ("neg", "abs", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "square",
         "reciprocal", "sin", "cos", "tanh", "sigmoid", "relu", "erf", "softplus", "gelu",
         "leaky_relu", "elu", "clip")
DISCONTINUOUS = ("sign", "floor", "ceil", "round")
BINARY = ("add", "sub", "mul", "div", "pow", "maximum", "minimum")
COMPARE = ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal")
INT_UNARY = ("neg", "abs", "square", "sign", "relu")
INT_BINARY = ("add", "sub", "mul", "maximum", "minimum")
REDUCE = ("sum", "mean", "max", "min", "prod", "argmax", "argmin")
#: ops whose float results a native backend computes with its own approximations
APPROX = ("exp", "log", "log1p", "expm1", "sin", "cos", "tanh", "sigmoid", "erf", "softplus",
          "gelu", "elu", "pow")
# positive-domain ops: the smallest argument each accepts, and the guard's offset
DOMAIN = {"log": 0.0, "sqrt": 0.0, "rsqrt": 0.0, "reciprocal": 0.0, "log1p": -1.0}


class Reject(Exception):
    """This choice does not fit the data; the generator tries another."""


@dataclass
class Generated:
    seed: int
    graph: Graph
    inputs: list[np.ndarray]             # one array per runtime input, in graph order
    expected: list[np.ndarray]           # the eager values of the outputs
    scales: list[float]                  # per output: largest magnitude it depends on
    nonfinite: bool
    features: set[str] = field(default_factory=set)
    #: per runtime input, how ``inputs`` lays out its values (see `view`): "C" unless
    #: drawn with ``views=True``
    layouts: list[str] = field(default_factory=list)

    def tolerance(self, i: int) -> tuple[float, float]:
        """(rtol, atol) for output ``i``: the dtype's, atol scaled by its magnitudes."""
        rtol, atol = TOL.get(self.graph.outputs[i].dtype, (0.0, 0.0))
        return rtol, atol * max(1.0, self.scales[i])

    def text(self) -> str:
        inputs = "\n".join(f"  %{v.name}: {a.dtype}{list(a.shape)} = "
                           f"{np.array2string(a.ravel()[:6], separator=',')}"
                           f"{'...' if a.size > 6 else ''}"
                           for v, a in zip(self.runtime_inputs, self.inputs))
        return (f"random graph seed={self.seed} (tests/graphgen.py: random_graph({self.seed}))"
                f", nonfinite={self.nonfinite}\n{self.graph}\ninputs:\n{inputs}")

    @property
    def runtime_inputs(self) -> list[Value]:
        return [v for v in self.graph.inputs if v.role != "constant"]


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


class _Builder:
    def __init__(self, seed: int, odd_sizes: bool = False, views: bool = False,
                 native: bool = False):
        self.seed, self.native = seed, native
        self.rng = np.random.default_rng(seed)
        self.dims, self.max_elements = (ODD_DIMS, ODD_MAX_ELEMENTS) if odd_sizes else \
            (DIMS, MAX_ELEMENTS)
        # layouts come from their own stream, so views=True keeps the graph's draws
        self.views = np.random.default_rng((seed, 1)) if views else None
        self.layouts: dict[int, str] = {}
        self.graph = Graph(f"random{seed}")
        self.val: dict[int, np.ndarray] = {}
        self.scale: dict[int, float] = {}
        self.exact: dict[int, bool] = {}     # computed without sums/GEMMs
        self.pool: list[Value] = []
        self.used: set[int] = set()
        self.features: set[str] = set()
        self.nonfinite = self.rng.random() < 0.12
        r = self.rng.random()
        self.float = "float16" if r < 0.05 else "float64" if r < 0.25 else "float32"

    # -- drawing ------------------------------------------------------------------------
    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def shape(self, max_rank: int = 4) -> tuple[int, ...]:
        while True:
            rank = int(self.choice((0, 1, 1, 2, 2, 2, 3, 3, 4)[:max_rank * 2 + 1]))
            shape = tuple(int(self.choice(self.dims)) for _ in range(rank))
            if _size(shape) <= self.max_elements:
                return shape

    def data(self, shape, dtype: str) -> np.ndarray:
        rng = self.rng
        if dtype == "bool":
            return np.asarray(rng.random(shape) < 0.5)
        if dtype in dt.INTS:
            return rng.integers(-5, 6, shape).astype(dtype)
        a = rng.standard_normal(shape) * self.choice((0.5, 1.0, 1.0, 3.0))
        specials = (np.nan, np.inf, -np.inf, -0.0, 0.0) if self.nonfinite else (-0.0, 0.0)
        if a.size and self.chance(0.6):
            flat = a.reshape(-1)
            for special in specials:
                if self.chance(0.4):
                    flat[int(rng.integers(a.size))] = special
        return a.astype(dtype)

    # -- values ---------------------------------------------------------------------------
    def add_input(self, shape, dtype: str, role: str | None = None) -> Value:
        role = role or ("parameter" if self.chance(0.2) else "data")
        v = self.graph.add_input(None, TensorType(tuple(shape), dtype), role)
        data = self.data(shape, dtype)
        if self.views is not None:
            layout = self.layouts[id(v)] = _draw_layout(self.views, data.shape)
            data = view(_constant_along(data, layout), layout)
        self._record(v, data, [])
        self.features.add(f"role:{role}")
        return v

    def constant(self, data) -> Value:
        data = np.asarray(data)
        v = self.graph.add_constant(data)
        self._record(v, data, [])
        self.features.add("constant")
        return v

    def scalar(self, x: float, dtype: str) -> Value:
        return self.constant(np.asarray(x, dtype))

    def _record(self, v: Value, a: np.ndarray, inputs: list[Value], exact: bool = True):
        self.val[id(v)] = a
        finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
        mag = float(np.max(np.abs(finite))) if finite.size and a.dtype != bool else 0.0
        self.scale[id(v)] = max([mag, *(self.scale[id(i)] for i in inputs)])
        self.exact[id(v)] = exact and all(self.exact[id(i)] for i in inputs)
        self.pool.append(v)

    def node(self, op_name: str, inputs: list[Value], exact: bool = True, **attrs):
        """Add ``op_name`` if its result is acceptable; its output value(s)."""
        op = registry.get(op_name)
        try:
            out_types, attrs = registry.infer(op, tuple(v.type for v in inputs), attrs)
        except GraphcError as e:
            raise Reject(str(e)) from None
        if any(_size(t.shape) > self.max_elements for t in out_types):
            raise Reject("too big")
        with np.errstate(all="ignore"):
            out = op.impl(np, *[self.val[id(v)] for v in inputs], **attrs)
        outs = [np.asarray(o) for o in (out if isinstance(out, tuple) else (out,))]
        for t, o in zip(out_types, outs):
            assert (o.shape, dt.name_of(o.dtype)) == (t.shape, t.dtype), \
                f"{op_name}{attrs} on {[str(v.type) for v in inputs]}: impl gave " \
                f"{o.dtype}{list(o.shape)}, type rule {t}"
            if not self.nonfinite and o.dtype.kind == "f" and o.size and (
                    not np.all(np.isfinite(o)) or np.max(np.abs(o)) > LIMIT):
                raise Reject("not finite or too large")
        if self.native:
            exact = exact and not (op_name in APPROX and outs[0].dtype.kind == "f")
            if op_name in ("max", "min") and _zero_of_either_sign(
                    self.val[id(inputs[0])], outs[0], attrs):
                raise Reject("the sign of a reduced zero is unspecified")
        n = self.graph.add_node(op, inputs, attrs)
        self.used.update(id(v) for v in inputs)
        for v, o in zip(n.outputs, outs):
            self._record(v, o, inputs, exact)
        self.features.add(f"op:{op_name}")
        return n.outputs if len(n.outputs) > 1 else n.outputs[0]

    def pick(self, pred=lambda v: True, recent: bool = True) -> Value:
        """A value from the pool, favouring recent ones (long chains) when ``recent``, and
        ones nothing reads yet (so that few values are dead and intermediates abound)."""
        cands = [v for v in self.pool if pred(v)]
        if not cands:
            raise Reject("no candidate")
        unused = [v for v in cands if id(v) not in self.used]
        if unused and self.chance(0.5):
            return unused[-1] if recent and self.chance(0.5) else self.choice(unused)
        if recent and self.chance(0.6):
            return cands[-1 - int(self.rng.integers(min(3, len(cands))))]
        return self.choice(cands)

    def is_float(self, v: Value) -> bool:
        return v.dtype in dt.FLOATS

    def partner(self, a: Value, dtype: str | None = None) -> Value:
        """A second operand broadcast-compatible with ``a``: an existing value, a new input
        or constant of a broadcastable shape, or a scalar constant."""
        dtype = dtype or a.dtype
        r = self.rng.random()
        if r < 0.3:
            try:
                return self.pick(lambda v: v.dtype == dtype and v is not a
                                 and _broadcastable(v.shape, a.shape), recent=False)
            except Reject:
                pass
        if r < 0.5:
            self.features.add("scalar-constant")
            return self.scalar(self.data((), dtype), dtype)
        shape = list(a.shape[int(self.rng.integers(len(a.shape) + 1)):])
        shape = tuple(1 if self.chance(0.4) else d for d in shape)
        if self.chance(0.15) and len(a.shape) < 4:  # the partner broadcasts the result up
            shape = (int(self.choice((2, 3))),) + tuple(a.shape)
        if shape != a.shape:
            self.features.add("broadcast")
        if self.chance(0.3):
            return self.constant(self.data(shape, dtype))
        return self.add_input(shape, dtype)

    def positive(self, v: Value, lo: float) -> Value:
        """``v`` itself if every element is > lo, else the guard ``|v| + c`` (c > lo)."""
        a = self.val[id(v)]
        if self.nonfinite or (a.size and np.all(a > lo + 0.05)) or not a.size:
            return v
        self.features.add("guard")
        return self.node("add", [self.node("abs", [v]),
                                 self.scalar(max(lo, 0) + self.choice((0.5, 1.0)), v.dtype)])

    # -- steps ----------------------------------------------------------------------------
    def step(self) -> None:
        kinds = ("unary", "binary", "compare", "cast", "reduce", "shape", "matmul",
                 "pattern", "int", "new_input", "dropout", "view_chain")
        weights = np.array((18, 18, 6, 4, 10, 12, 7, 12, 4, 3, 2, 5), float)
        getattr(self, "s_" + self.rng.choice(kinds, p=weights / weights.sum()))()

    def s_new_input(self) -> None:
        self.add_input(self.shape(), self.float)

    def s_dropout(self) -> None:
        """Dropout: elementwise, but its mask depends on the flat index and a key input."""
        a = self.pick(self.is_float)
        keys = [v for v in self.graph.inputs if v.role == "state"]
        key = self.choice(keys) if keys and self.chance(0.5) else self.graph.add_input(
            f"rng_key{len(keys)}", TensorType((), "int64"), "state")
        if id(key) not in self.val:
            self._record(key, np.asarray(self.rng.integers(0, 2**31), np.int64), [])
            self.pool.pop()  # a key feeds dropouts only
        self.node("dropout", [a, key], p=float(self.choice((0.0, 0.25, 0.5))))

    def s_unary(self) -> None:
        a = self.pick(self.is_float)
        names = UNARY + (DISCONTINUOUS if self.exact[id(a)] else ())
        name = self.choice(names)
        attrs = {}
        if name in DOMAIN:
            a = self.positive(a, DOMAIN[name])
        elif name in ("exp", "expm1") and not self.nonfinite and self.scale[id(a)] > 8:
            a = self.node("tanh", [a])
        elif name == "gelu":
            attrs = {"approximate": self.choice(("none", "tanh"))}
        elif name in ("leaky_relu", "elu"):
            attrs = {"alpha": float(self.choice((0.01, 0.2, 1.0)))}
        elif name == "clip":
            lo = self.choice((None, -1.0, 0.0))
            attrs = {"min": lo, "max": self.choice((None, 0.5, 2.0)) if lo is not None
                     else self.choice((0.5, 2.0))}
        self.node(name, [a], **attrs)

    def s_binary(self) -> None:
        a = self.pick(self.is_float)
        name = self.choice(BINARY)
        b = self.partner(a)
        if self.chance(0.3):
            a, b = b, a
        if name == "div":
            b = self.positive(b, 0.0)
        elif name == "pow":
            a = self.positive(a, 0.0)
            if self.native and not self.exact[id(b)] and np.any(self.val[id(a)] < 0):
                raise Reject("pow of a negative base is discontinuous in an inexact exponent")
            if not self.nonfinite and self.scale[id(b)] > 2:
                b = self.node("tanh", [b])
        self.node(name, [a, b])

    def s_compare(self) -> None:
        a = self.pick(lambda v: v.dtype != "bool" and self.exact[id(v)])
        b = self.partner(a)
        if self.native and not self.exact[id(b)]:
            raise Reject("comparison with an inexact value")
        c = self.node(self.choice(COMPARE), [a, b])
        r = self.rng.random()
        if r < 0.25:
            other = self.pick(lambda v: v.dtype == "bool" and _broadcastable(v.shape, c.shape))
            c = self.node(self.choice(("logical_and", "logical_or")), [c, other])
        elif r < 0.35:
            c = self.node("logical_not", [c])
        x = self.pick(self.is_float)
        y = self.partner(x)
        self.node("where", [c, x, y])

    def s_cast(self) -> None:
        a = self.pick()
        to = self.choice(sorted(dt.FLOATS | dt.INTS | {"bool"}))
        if to in dt.INTS or to == "bool":
            if not (self.exact[id(a)] and (a.dtype not in dt.FLOATS or
                                           np.all(np.isfinite(self.val[id(a)])))):
                raise Reject("cast to int of an inexact or non-finite value")
        if to == "float16" and self.scale[id(a)] > 6e4:
            raise Reject("float16 overflow")
        self.node("cast", [a], dtype=to)

    def s_int(self) -> None:
        ints = [v for v in self.pool if v.dtype in dt.INTS]
        if not ints or self.chance(0.2):
            self.add_input(self.shape(), self.choice(("int32", "int64")))
            return
        a = self.choice(ints)
        if self.chance(0.5):
            self.node(self.choice(INT_UNARY), [a])
        else:
            self.node(self.choice(INT_BINARY), [a, self.partner(a)])

    def s_reduce(self) -> None:
        a = self.pick(lambda v: v.dtype != "bool")
        name = self.choice(REDUCE)
        nd = len(a.shape)
        r = self.rng.random()
        if name in ("argmax", "argmin"):
            axis = None if r < 0.3 or nd == 0 else int(self.rng.integers(-nd, nd))
            if not self.exact[id(a)]:
                raise Reject("argmax of an inexact value")
        elif r < 0.25 or nd == 0:
            axis = None
        else:
            k = int(self.rng.integers(1, nd + 1))
            axes = sorted(int(x) for x in self.rng.choice(nd, k, replace=False))
            axis = axes[0] if k == 1 and self.chance(0.5) else tuple(
                x - nd if self.chance(0.3) else x for x in axes)
        if name == "prod" and a.dtype in dt.FLOATS and self.scale[id(a)] > 1.5:
            a = self.node("tanh", [a])
        exact = name in ("max", "min", "argmax", "argmin")
        self.node(name, [a], exact=exact, axis=axis, keepdims=self.chance(0.4))

    def s_matmul(self) -> None:
        a = self.pick(lambda v: self.is_float(v) and len(v.shape) >= 1)
        if self.scale[id(a)] > 10 and not self.nonfinite:
            a = self.node("tanh", [a])
        k = a.shape[-1]
        m = int(self.choice((1, 3, 4, 17) if k <= 17 else (1, 3)))
        r = self.rng.random()
        if r < 0.15:
            shape = (k,)                                   # matrix-vector
        elif r < 0.3 and len(a.shape) >= 3:
            shape = a.shape[:-2] + (k, m)                  # batched
        else:
            shape = (k, m)
        b = None
        if self.chance(0.2):
            try:
                b = self.pick(lambda v: v.dtype == a.dtype and v.shape == shape, recent=False)
            except Reject:
                pass
        if b is None:
            b = self.add_input(shape, a.dtype) if self.chance(0.7) else \
                self.constant(self.data(shape, a.dtype))
        self.node("matmul", [a, b], exact=False)

    def s_shape(self) -> None:
        a = self.pick()
        nd, shape = len(a.shape), a.shape
        name = self.choice(("reshape", "transpose", "expand_dims", "squeeze", "broadcast_to",
                            "slice", "concat", "stack", "split"))
        if name == "reshape":
            new = _factor(self, _size(shape)) if _size(shape) else self._zero_shape()
            if new and self.chance(0.3):
                new = list(new)
                new[int(self.rng.integers(len(new)))] = -1
            self.node("reshape", [a], shape=tuple(new))
        elif name == "transpose":
            axes = None if self.chance(0.2) else tuple(int(x) for x in self.rng.permutation(nd))
            self.node("transpose", [a], axes=axes)
        elif name == "expand_dims":
            self.node("expand_dims", [a], axis=int(self.rng.integers(-nd - 1, nd + 1)))
        elif name == "squeeze":
            ones = [i for i, d in enumerate(shape) if d == 1]
            self.node("squeeze", [a], axis=None if not ones or self.chance(0.3)
                      else self.choice(ones))
        elif name == "broadcast_to":
            lead = (int(self.choice((1, 2, 3))),) if self.chance(0.5) else ()
            new = lead + tuple(int(self.choice((2, 3))) if d == 1 and self.chance(0.6) else d
                               for d in shape)
            self.node("broadcast_to", [a], shape=new)
        elif name == "slice":
            begin, end, step = [], [], []
            for d in shape:
                s = int(self.choice((1, 1, 2, -1)))
                lo, hi = sorted(int(x) for x in self.rng.integers(0, d + 1, 2))
                begin.append(hi - 1 if s < 0 and hi > lo else lo)
                end.append(None if s < 0 else hi)
                step.append(s)
            self.node("slice", [a], begin=tuple(begin), end=tuple(end), step=tuple(step))
        elif name in ("concat", "stack"):
            if nd == 0 and name == "concat":
                raise Reject("concat of scalars")
            axis = int(self.rng.integers(0, nd + (name == "stack"))) if nd or name == "stack" \
                else 0
            other = list(shape)
            if name == "concat":
                other[axis] = int(self.choice((0, 1, 3)))
            try:
                b = self.pick(lambda v: v.dtype == a.dtype and v.shape == tuple(other),
                              recent=False)
            except Reject:
                b = self.add_input(tuple(other), a.dtype)
            self.node(name, [a, b, a][:2 + self.chance(0.3)], axis=axis)
        elif name == "split":
            if nd == 0:
                raise Reject("split of a scalar")
            axis = int(self.rng.integers(nd))
            d = shape[axis]
            sections = self.choice([n for n in (1, 2, 3) if d % n == 0] or [1]) \
                if self.chance(0.5) else tuple(sorted(int(x) for x in
                                                      self.rng.integers(0, d + 1, 2)))
            outs = self.node("split", [a], indices_or_sections=sections, axis=axis)
            if isinstance(outs, list):
                self.features.add("multi-output node")

    def s_view_chain(self) -> None:
        """Two to four shape ops in a row on one value (reshape of a transpose, slice of a
        broadcast...), then an elementwise op or a reduction that reads the result: the
        compositions the simplifier and the view planner must get right."""
        a = self.pick(lambda v: len(v.shape) >= 2 and _size(v.shape) > 1)
        self.features.add("view chain")
        first = self.chance(0.5)  # half the chains start with transpose -> reshape
        for i in range(int(self.rng.integers(2, 5))):
            nd, shape = len(a.shape), a.shape
            name = ("transpose", "reshape")[i] if first and i < 2 else self.choice(
                ("reshape", "transpose", "transpose", "slice", "expand_dims", "squeeze",
                 "broadcast_to"))
            try:
                if name == "reshape" and _size(shape):
                    a = self.node("reshape", [a], shape=_factor(self, _size(shape)))
                elif name == "transpose" and nd >= 2:
                    a = self.node("transpose", [a], axes=tuple(
                        int(x) for x in self.rng.permutation(nd)))
                elif name == "slice" and nd:
                    ax = int(self.rng.integers(nd))
                    step = int(self.choice((1, 2, -1)))
                    begin = [0] * nd
                    end: list = list(shape)
                    step_all = [1] * nd
                    begin[ax], end[ax], step_all[ax] = (shape[ax] - 1, None, -1) \
                        if step < 0 else (int(self.rng.integers(0, 2)), shape[ax], step)
                    a = self.node("slice", [a], begin=tuple(begin), end=tuple(end),
                                  step=tuple(step_all))
                elif name == "expand_dims":
                    a = self.node("expand_dims", [a], axis=int(self.rng.integers(nd + 1)))
                elif name == "squeeze" and 1 in shape:
                    a = self.node("squeeze", [a], axis=shape.index(1))
                elif name == "broadcast_to" and 1 in shape:
                    a = self.node("broadcast_to", [a], shape=tuple(
                        3 if d == 1 else d for d in shape))
            except Reject:
                pass
        if a.dtype in dt.FLOATS and self.chance(0.7):
            self.node(self.choice(("exp", "tanh", "neg", "square")), [a]) if self.chance(0.5) \
                else self.node(self.choice(("sum", "max")), [a], exact=False,
                               axis=int(self.rng.integers(len(a.shape))) if a.shape else None,
                               keepdims=False)

    def _zero_shape(self) -> tuple[int, ...]:
        return tuple(int(self.choice((0, 1, 3))) for _ in range(int(self.rng.integers(1, 4)))) \
            + (0,)

    def s_pattern(self) -> None:
        """Identities (exact ones the simplifier may apply, and traps it must not)."""
        a = self.pick()
        fl = a.dtype in dt.FLOATS
        name = self.choice(("mul1", "add0", "sub0", "div1", "addneg0", "negneg", "transpose2",
                            "reshape2", "cast_same", "broadcast2", "cse", "const_fold",
                            "mul0", "sub_self", "zero_sub", "dead", "big_const"))
        self.features.add(f"pattern:{name}")
        d = a.dtype
        if name in ("mul1", "mul0", "div1") and (fl or name != "div1"):
            c = self.scalar({"mul1": 1, "mul0": 0, "div1": 1}[name], d)
            args = [a, c] if self.chance(0.6) else [c, a]
            self.node("div" if name == "div1" else "mul", args if name != "div1" else [a, c])
        elif name in ("add0", "sub0", "addneg0", "zero_sub") and d != "bool":
            if self.chance(0.5):  # -0.0 where a <= 0: the case x + 0.0 gets wrong
                a = self.pick(lambda v: self.is_float(v) and bool(np.any(self.val[id(v)] <= 0)))
                a = self.node("neg", [self.node("relu", [a])])
                d = a.dtype
            zero = self.scalar(-0.0 if name == "addneg0" or self.chance(0.3) else 0, d)
            op = "sub" if name in ("sub0", "zero_sub") else "add"
            self.node(op, [zero, a] if name == "zero_sub" or self.chance(0.3) and op == "add"
                      else [a, zero])
        elif name == "negneg" and d != "bool":
            self.node("neg", [self.node("neg", [a])])
        elif name == "transpose2" and len(a.shape) >= 2:
            p = tuple(int(x) for x in self.rng.permutation(len(a.shape)))
            t = self.node("transpose", [a], axes=p)
            back = tuple(int(x) for x in np.argsort(p)) if self.chance(0.6) else None
            self.node("transpose", [t], axes=back)
        elif name == "reshape2" and _size(a.shape):
            r = self.node("reshape", [a], shape=_factor(self, _size(a.shape)))
            self.node("reshape", [r], shape=a.shape if self.chance(0.5)
                      else _factor(self, _size(a.shape)))
        elif name == "cast_same":
            self.node("cast", [a], dtype=d)
        elif name == "broadcast2":
            b = self.node("broadcast_to", [a], shape=(2,) + a.shape)
            self.node("broadcast_to", [b], shape=(3, 2) + a.shape)
        elif name == "cse" and self.graph.nodes:
            n = self.choice(self.graph.nodes)
            self.node(n.op.name, list(n.inputs), exact=self.exact[id(n.outputs[0])],
                      **n.attrs)
        elif name == "sub_self" and d != "bool":
            self.node("sub", [a, a])
        elif name == "const_fold":
            c = self.constant(self.data(self.shape(2), self.float))
            c2 = self.node(self.choice(("exp", "tanh", "neg", "sigmoid")), [c])
            self.node("add" if self.chance(0.5) else "mul", [c2, self.scalar(2, self.float)])
        elif name == "dead":
            self.node("neg" if d != "bool" else "logical_not", [a])
            self.pool.pop()  # never used again, never an output: DCE removes it
        elif name == "big_const":
            c = self.scalar(self.data((), self.float), self.float)
            self.node("broadcast_to", [c], shape=(int(self.choice((17, 1023))), 3))
        else:
            raise Reject("pattern does not apply")

    # -- outputs ---------------------------------------------------------------------------
    def outputs(self) -> list[Value]:
        """Every sink (up to six, the latest first) so that most nodes are live, plus
        sometimes an older value, a graph input, or the same value twice."""
        nodes_out = [v for v in self.pool if v.node is not None]
        sinks = [v for v in nodes_out if id(v) not in self.used]
        outs = sinks[::-1][:6]
        if not outs or self.chance(0.3):
            outs.append(self.choice(nodes_out) if nodes_out else self.pool[-1])
        if self.chance(0.08):
            outs.append(self.choice(self.graph.inputs))
            self.features.add("input as output")
        if self.chance(0.08):
            outs.append(outs[0])
            self.features.add("output twice")
        return outs


def _zero_of_either_sign(a: np.ndarray, out: np.ndarray, attrs: dict) -> bool:
    """Whether a max/min reduction of ``a`` to ``out`` has a zero result whose slice holds
    zeros of both signs."""
    if a.dtype.kind != "f" or not np.any(out == 0):
        return False
    zero = a == 0
    axis, keep = attrs.get("axis"), attrs.get("keepdims", False)
    pos = np.any(zero & ~np.signbit(a), axis=axis, keepdims=keep)
    neg = np.any(zero & np.signbit(a), axis=axis, keepdims=keep)
    return bool(np.any((out == 0) & pos & neg))


def _broadcastable(a, b) -> bool:
    return all(x == y or x == 1 or y == 1 for x, y in zip(a[::-1], b[::-1]))


def _factor(b: _Builder, n: int) -> tuple[int, ...]:
    """A random shape with ``n`` elements (n > 0)."""
    dims, rest = [], n
    for p in (2, 3, 5, 7, 11, 17, 31, 1023):
        while rest % p == 0 and b.chance(0.7):
            dims.append(p)
            rest //= p
    dims.append(rest)
    b.rng.shuffle(dims)
    merged = []
    for d in dims:
        if merged and b.chance(0.5):
            merged[-1] *= d
        else:
            merged.append(d)
    if b.chance(0.3):
        merged.insert(int(b.rng.integers(len(merged) + 1)), 1)
    return tuple(int(d) for d in merged[:5])


def random_graph(seed: int, steps: int | None = None, *, odd_sizes: bool = False,
                 views: bool = False, native: bool = False) -> Generated:
    """The graph of ``seed``: the same graph, inputs and expected outputs every time.
    ``odd_sizes``, ``views`` and ``native`` draw other graphs (see the module docstring)."""
    b = _Builder(seed, odd_sizes, views, native)
    for _ in range(int(b.rng.integers(1, 3))):
        b.add_input(b.shape(), b.float, "data")
    n_steps = steps or int(b.rng.integers(4, 32))
    done = tries = 0
    while done < n_steps and tries < 20 * n_steps:
        tries += 1
        try:
            b.step()
            done += 1
        except Reject:
            pass
    outputs = b.outputs()
    b.graph.outputs = outputs
    b.graph.validate()
    dims = {d for v in b.graph.values() for d in v.shape}
    b.features |= {f"dim:{d}" for d in dims if d in (0, 1, 3, 7, 17, 1023, 4097)}
    b.features |= {f"dtype:{v.dtype}" for v in b.graph.values()}
    if len(outputs) > 1:
        b.features.add("several outputs")
    users = b.graph.users()
    if any(len(u) > 1 for u in users.values()):
        b.features.add("shared value")
    runtime = [v for v in b.graph.inputs if v.role != "constant"]
    layouts = [b.layouts.get(id(v), "C") for v in runtime]
    b.features |= {f"layout:{lay.split(':')[0]}" for lay in layouts if lay != "C"}
    return Generated(seed, b.graph, [b.val[id(v)] for v in runtime],
                     [b.val[id(v)] for v in outputs], [b.scale[id(v)] for v in outputs],
                     b.nonfinite, b.features, layouts)


# -- input layouts ----------------------------------------------------------------------------

LAYOUTS = ("C", "T", "step", "neg", "bcast")


def _draw_layout(rng: np.random.Generator, shape: tuple[int, ...]) -> str:
    """A layout for an input of ``shape``: "C" about half the time."""
    kind = LAYOUTS[int(rng.choice(len(LAYOUTS), p=(0.45, 0.15, 0.15, 0.1, 0.15)))]
    if kind == "C" or not shape or (kind == "T" and len(shape) < 2):
        return "C"
    if kind == "T":
        return "T"
    if kind == "bcast":  # stride 0 on a random non-empty set of axes (all, sometimes)
        axes = [i for i in range(len(shape)) if rng.random() < 0.5] or [len(shape) - 1]
        return "bcast:" + ",".join(map(str, axes))
    return f"{kind}:{int(rng.integers(len(shape)))}"


def _constant_along(a: np.ndarray, layout: str) -> np.ndarray:
    """``a`` with the values of a "bcast:<axes>" layout: its first entry along those axes,
    repeated (other layouts keep the values)."""
    if not layout.startswith("bcast:"):
        return a
    index = tuple(slice(0, 1) if str(i) in layout[6:].split(",") else slice(None)
                  for i in range(a.ndim))
    return np.ascontiguousarray(np.broadcast_to(a[index], a.shape))


def view(a: np.ndarray, layout: str) -> np.ndarray:
    """The values of ``a`` as a numpy view of ``layout``, with the same shape and dtype:
    "C" contiguous (``a`` itself), "T" the transpose of a C array of the reversed shape,
    "step:<axis>" every other element of a twice-as-long buffer along axis, "neg:<axis>"
    reversed along axis, "bcast:<axes>" stride 0 on those axes (the values must be
    constant along them)."""
    a = np.asarray(a)
    kind, _, arg = layout.partition(":")
    if kind == "C":
        return a
    if kind == "T":
        return np.ascontiguousarray(a.T).T
    if kind == "bcast":
        axes = {int(i) for i in arg.split(",")}
        first = a[tuple(slice(0, 1) if i in axes else slice(None) for i in range(a.ndim))]
        if not np.array_equal(np.broadcast_to(first, a.shape), a, equal_nan=a.dtype.kind in "fc"):
            raise ValueError(f"values are not constant along axes {sorted(axes)}")
        return np.broadcast_to(first, a.shape)
    axis = int(arg)
    index = [slice(None)] * a.ndim
    if kind == "step":
        shape = list(a.shape)
        shape[axis] *= 2
        big = np.zeros(shape, a.dtype)
        index[axis] = slice(None, None, 2)
        big[tuple(index)] = a
        return big[tuple(index)]
    if kind == "neg":
        index[axis] = slice(None, None, -1)
        return np.ascontiguousarray(a[tuple(index)])[tuple(index)]
    raise ValueError(f"unknown layout {layout!r}")
