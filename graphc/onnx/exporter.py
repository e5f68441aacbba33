"""graphc graphs as ONNX models: `export_graph` (a Graph) and `export_block` (a Gluon
block, traced in prediction mode on example inputs).

Every graphc op maps to ONNX through ONE table, `MAPPINGS`: op name -> ``fn(ctx, node)``
that emits the ONNX nodes computing that node's outputs (an op is one ONNX op, or a few
where ONNX lacks it: ``log1p`` is Log(1 + x), ``one_hot`` an Equal against a range, and
``gelu`` before opset 20 its erf or tanh formula). A fused kernel is inlined: its body's
nodes are exported one by one. An op with no mapping raises `UnmappedOpError`, naming
every unmapped op of the graph at once.

The model is static: inputs and outputs have the graph's shapes and dtypes (reshape keeps
graphc's codes, a 0 copying a dim, which ONNX reads the same way). Values keep their graphc
names: data inputs are graph inputs, constants are initializers, parameters are
initializers when their values are given (``params=``, and always for a block) and graph
inputs otherwise; outputs are named after the graph's output values. Opsets 13 to the
installed onnx package's current one; the mappings follow the opset where ONNX changed an
op (reduce axes as inputs from 18, Gelu from 20...). onnx is imported lazily: without it,
export raises a BackendError.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .. import dtypes as dt
from ..errors import BackendError, GraphcError
from ..graph import Graph, Node, Value

__all__ = ["export_graph", "export_block", "export", "MAPPINGS", "OnnxExportError",
           "UnmappedOpError", "DEFAULT_OPSET", "MIN_OPSET"]

DEFAULT_OPSET = 17
MIN_OPSET = 13
_INT64_MIN = -(2 ** 63)


class OnnxExportError(GraphcError):
    """A graph or block graphc cannot write as an ONNX model."""


class UnmappedOpError(OnnxExportError):
    """Ops of the graph that have no ONNX mapping; ``ops`` lists them all."""

    def __init__(self, ops: dict[str, int], graph_name: str):
        self.ops = dict(sorted(ops.items()))
        listed = ", ".join(f"{k} (x{n})" for k, n in self.ops.items())
        super().__init__(f"cannot export graph '{graph_name}' to ONNX: no mapping for "
                         f"{len(self.ops)} op(s): {listed}")


def _onnx():
    try:
        import onnx
    except ImportError:
        raise BackendError("ONNX export needs the onnx package: pip install 'graphc[onnx]'") \
            from None
    return onnx


def _elem_type(dtype: str) -> int:
    from onnx import TensorProto
    return {"bool": TensorProto.BOOL, "int32": TensorProto.INT32,
            "int64": TensorProto.INT64, "float16": TensorProto.FLOAT16,
            "float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[dtype]


# -- the export context --------------------------------------------------------------------

class _Context:
    """What a mapping function emits into: ONNX nodes and initializers, and the ONNX name
    of every graphc value (``x`` for inputs, ``y`` for outputs)."""

    def __init__(self, opset: int, used: set[str]):
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self.names: dict[int, str] = {}       # id(graphc Value) -> ONNX name
        self._used = set(used)
        self._node_names: set[str] = set()
        self._consts: dict[tuple, str] = {}
        self.body_constants: dict[int, str] = {}  # id(array of a fused body) -> name
        self._counter = 0
        self.node: Node | None = None         # the graphc node being exported

    def fresh(self, hint: str) -> str:
        """A value name not used anywhere in the model."""
        if hint not in self._used:
            self._used.add(hint)
            return hint
        while True:
            self._counter += 1
            name = f"{hint}_{self._counter}"
            if name not in self._used:
                self._used.add(name)
                return name

    def _node_name(self, op_type: str) -> str:
        base = self.node.name if self.node is not None else op_type
        name, k = base, 0
        while name in self._node_names:
            k += 1
            name = f"{base}_{k}"
        self._node_names.add(name)
        return name

    # -- emitting -------------------------------------------------------------------------
    def emit(self, op_type: str, inputs: list[str], outputs: list[str] | int = 1,
             **attrs) -> list[str]:
        """Append one ONNX node; ``outputs`` are names, or a count of fresh ones."""
        from onnx import helper
        if isinstance(outputs, int):
            outputs = [self.fresh(f"{self.node.outputs[0].name if self.node else 't'}_"
                                  f"{op_type.lower()}") for _ in range(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, inputs, outputs,
                                           name=self._node_name(op_type), **attrs))
        return outputs

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        """One single-output ONNX node; its output name (``out``, or a fresh one)."""
        return self.emit(op_type, list(inputs), [out] if out else 1, **attrs)[0]

    def initializer(self, array: np.ndarray, name: str) -> str:
        from onnx import numpy_helper
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def const(self, value, dtype: str) -> str:
        """An initializer holding ``value`` (a scalar or a sequence) as ``dtype``;
        identical constants are shared."""
        array = np.asarray(value, dtype=dt.to_numpy(dtype))
        key = (dtype, array.shape, array.tobytes())
        name = self._consts.get(key)
        if name is None:
            hint = "const_" + ("_".join(str(v) for v in array.ravel()[:4])
                               if 0 < array.size <= 4 else "array")
            name = self._consts[key] = self.initializer(
                array, self.fresh(hint.replace("-", "m").replace(".", "p")))
        return name

    def ints(self, values) -> str:
        """A 1-D int64 initializer (shapes, axes, pads...)."""
        return self.const(np.asarray(list(values), np.int64).reshape(-1), "int64")

    def cast(self, name: str, src: str, dst: str) -> str:
        return name if src == dst else self.op("Cast", name, to=_elem_type(dst))

    # -- the current node's values ------------------------------------------------------
    def x(self, node: Node, i: int) -> str:
        """The ONNX name of input ``i``, cast to the dtype the op computes in (graphs built
        by tracing are already promoted; this makes hand-built ones safe)."""
        name = self.names[id(node.inputs[i])]
        if node.op.promote is not None:
            want = node.op.promote(tuple(v.dtype for v in node.inputs))[i]
            name = self.cast(name, node.inputs[i].dtype, want)
        return name

    def xs(self, node: Node) -> list[str]:
        return [self.x(node, i) for i in range(len(node.inputs))]

    def dtype_in(self, node: Node, i: int = 0) -> str:
        if node.op.promote is not None:
            return node.op.promote(tuple(v.dtype for v in node.inputs))[i]
        return node.inputs[i].dtype

    def y(self, node: Node, i: int = 0) -> str:
        return self.names[id(node.outputs[i])]


# -- mapping helpers -------------------------------------------------------------------

def _direct(op_type: str, **fixed) -> Callable:
    """An op that is one ONNX op on the same inputs."""
    def fn(ctx: _Context, node: Node):
        ctx.op(op_type, *ctx.xs(node), out=ctx.y(node), **fixed)
    fn.__name__ = f"to_{op_type}"
    return fn


def _compare(op_type: str, negate: bool = False) -> Callable:
    """A comparison; ONNX's order comparisons take no bools, so those compare as int32."""
    def fn(ctx: _Context, node: Node):
        a, b = ctx.xs(node)
        if ctx.dtype_in(node) == "bool" and op_type != "Equal":
            a, b = ctx.cast(a, "bool", "int32"), ctx.cast(b, "bool", "int32")
        if negate:
            ctx.op("Not", ctx.op(op_type, a, b), out=ctx.y(node))
        else:
            ctx.op(op_type, a, b, out=ctx.y(node))
    fn.__name__ = f"to_{op_type}"
    return fn


def _one(ctx: _Context, node: Node) -> str:
    """The constant 1 in the dtype of the node's first input."""
    return ctx.const(1, ctx.dtype_in(node))


def _log1p(ctx, node):
    x = ctx.x(node, 0)
    ctx.op("Log", ctx.op("Add", x, _one(ctx, node)), out=ctx.y(node))


def _expm1(ctx, node):
    x = ctx.x(node, 0)
    ctx.op("Sub", ctx.op("Exp", x), _one(ctx, node), out=ctx.y(node))


def _rsqrt(ctx, node):
    ctx.op("Reciprocal", ctx.op("Sqrt", ctx.x(node, 0)), out=ctx.y(node))


def _square(ctx, node):
    x = ctx.x(node, 0)
    ctx.op("Mul", x, x, out=ctx.y(node))


def _relu(ctx, node):
    x, dtype = ctx.x(node, 0), ctx.dtype_in(node)
    if dt.is_float(dtype) or ctx.opset >= 14:  # Relu takes ints from opset 14
        ctx.op("Relu", x, out=ctx.y(node))
    else:
        ctx.op("Max", x, ctx.const(0, dtype), out=ctx.y(node))


def _leaky_relu(ctx, node):
    ctx.op("LeakyRelu", ctx.x(node, 0), out=ctx.y(node), alpha=node.attrs["alpha"])


def _elu(ctx, node):
    ctx.op("Elu", ctx.x(node, 0), out=ctx.y(node), alpha=node.attrs["alpha"])


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu(ctx, node):
    """ONNX Gelu (opset 20) takes both forms; before it, the formula graphc's op uses."""
    x, dtype, approximate = ctx.x(node, 0), ctx.dtype_in(node), node.attrs["approximate"]
    if ctx.opset >= 20:
        ctx.op("Gelu", x, out=ctx.y(node), approximate=approximate)
        return

    def c(v):
        return ctx.const(v, dtype)
    if approximate == "tanh":
        cube = ctx.op("Mul", ctx.op("Mul", x, x), x)
        inner = ctx.op("Add", x, ctx.op("Mul", cube, c(0.044715)))
        t = ctx.op("Tanh", ctx.op("Mul", inner, c(_SQRT_2_OVER_PI)))
    else:
        t = ctx.op("Erf", ctx.op("Div", x, c(math.sqrt(2.0))))
    half_x = ctx.op("Mul", x, c(0.5))
    ctx.op("Mul", half_x, ctx.op("Add", t, c(1.0)), out=ctx.y(node))


def _clip(ctx, node):
    """Bounds become constants of x's dtype as the impl converts them (ints truncate)."""
    x, dtype = ctx.x(node, 0), ctx.dtype_in(node)

    def bound(v):
        if v is None:
            return ""
        return ctx.const(v if dt.is_float(dtype) else int(v), dtype)
    lo, hi = bound(node.attrs["min"]), bound(node.attrs["max"])
    if dtype == "bool":  # Clip takes no bools: clip as int32
        x = ctx.cast(x, "bool", "int32")
        lo = "" if not lo else ctx.cast(lo, "bool", "int32")
        hi = "" if not hi else ctx.cast(hi, "bool", "int32")
        ctx.op("Cast", ctx.op("Clip", x, lo, hi), out=ctx.y(node), to=_elem_type("bool"))
        return
    inputs = [x, lo, hi]
    while inputs[-1] == "":
        inputs.pop()
    ctx.op("Clip", *inputs, out=ctx.y(node))


def _cast(ctx, node):
    ctx.op("Cast", ctx.x(node, 0), out=ctx.y(node), to=_elem_type(node.attrs["dtype"]))


def _dropout(ctx, node):
    """Prediction: dropout is the identity (its key input goes unused)."""
    ctx.op("Identity", ctx.x(node, 0), out=ctx.y(node))


def _where(ctx, node):
    """Where; onnxruntime has no bool kernel for it, so bool branches select as int32."""
    c, a, b = ctx.xs(node)
    if ctx.dtype_in(node, 1) != "bool":
        ctx.op("Where", c, a, b, out=ctx.y(node))
        return
    r = ctx.op("Where", c, ctx.cast(a, "bool", "int32"), ctx.cast(b, "bool", "int32"))
    ctx.op("Cast", r, out=ctx.y(node), to=_elem_type("bool"))


def _identity(ctx, name: str, node: Node) -> None:
    ctx.op("Identity", name, out=ctx.y(node))


# -- reductions --------------------------------------------------------------------------

def _reduce_node(ctx, op_type: str, x: str, axes, keepdims: bool, out: str | None = None):
    """One ONNX reduce over ``axes`` (never empty); axes are an input of ReduceSum from
    opset 13 and of the others from 18."""
    axes = list(axes)
    if op_type == "ReduceSum" or ctx.opset >= 18:
        return ctx.op(op_type, x, ctx.ints(axes), out=out, keepdims=int(keepdims))
    return ctx.op(op_type, x, out=out, axes=axes, keepdims=int(keepdims))


def _reduction(op_type: str, compute: Callable[[str], str]) -> Callable:
    """A reduction computing in ``compute(input dtype)``: sum and prod accumulate ints in
    int64, mean computes in a float, max and min take bools as int32."""
    def fn(ctx, node):
        src, out_dtype = node.inputs[0].dtype, node.outputs[0].dtype
        work = compute(src)
        x = ctx.cast(ctx.x(node, 0), src, work)
        axes, keepdims = node.attrs["axis"], node.attrs["keepdims"]
        if not axes:  # graphc: an empty axis tuple reduces nothing; ONNX would reduce all
            _identity(ctx, ctx.cast(x, work, out_dtype), node)
        elif work == out_dtype:
            _reduce_node(ctx, op_type, x, axes, keepdims, out=ctx.y(node))
        else:
            r = _reduce_node(ctx, op_type, x, axes, keepdims)
            ctx.op("Cast", r, out=ctx.y(node), to=_elem_type(out_dtype))
    fn.__name__ = f"to_{op_type}"
    return fn


def _accumulating(dtype: str) -> str:
    return dtype if dt.is_float(dtype) else "int64"


def _no_bool(dtype: str) -> str:
    return "int32" if dtype == "bool" else dtype


def _arg_extreme(op_type: str) -> Callable:
    """argmax/argmin; ``axis=None`` is over the flattened tensor (numpy)."""
    def fn(ctx, node):
        src = node.inputs[0].dtype
        x = ctx.cast(ctx.x(node, 0), src, _no_bool(src))
        axis, keepdims = node.attrs["axis"], node.attrs["keepdims"]
        if axis is not None:
            ctx.op(op_type, x, out=ctx.y(node), axis=axis, keepdims=int(keepdims),
                   select_last_index=0)
            return
        flat = ctx.op("Reshape", x, ctx.ints([-1]))
        if not keepdims:
            ctx.op(op_type, flat, out=ctx.y(node), axis=0, keepdims=0)
            return
        r = ctx.op(op_type, flat, axis=0, keepdims=0)
        ctx.op("Reshape", r, ctx.ints(node.outputs[0].shape), out=ctx.y(node))
    fn.__name__ = f"to_{op_type}"
    return fn


# -- shape ops ---------------------------------------------------------------------------

def _reshape(ctx, node):
    """graphc keeps Gluon's codes (0 copies the input dim, one -1 is inferred): ONNX's own
    reading of 0 and -1. An empty input reads 0 literally in graphc: then the resolved
    shape, with allowzero."""
    x = ctx.x(node, 0)
    if math.prod(node.inputs[0].shape) or ctx.opset < 14:
        spec = node.attrs["shape"] if math.prod(node.inputs[0].shape) else \
            node.outputs[0].shape
        ctx.op("Reshape", x, ctx.ints(spec), out=ctx.y(node))
    else:
        ctx.op("Reshape", x, ctx.ints(node.outputs[0].shape), out=ctx.y(node), allowzero=1)


def _transpose(ctx, node):
    ctx.op("Transpose", ctx.x(node, 0), out=ctx.y(node), perm=list(node.attrs["axes"]))


def _broadcast_to(ctx, node):
    ctx.op("Expand", ctx.x(node, 0), ctx.ints(node.attrs["shape"]), out=ctx.y(node))


def _unsqueeze(ctx, x: str, axes, out: str | None = None) -> str:
    return ctx.op("Unsqueeze", x, ctx.ints(axes), out=out)  # axes an input from opset 13


def _expand_dims(ctx, node):
    _unsqueeze(ctx, ctx.x(node, 0), node.attrs["axis"], out=ctx.y(node))


def _squeeze(ctx, node):
    axes = node.attrs["axis"]
    if not axes:  # ONNX Squeeze without axes would drop every unit dim
        _identity(ctx, ctx.x(node, 0), node)
    else:
        ctx.op("Squeeze", ctx.x(node, 0), ctx.ints(axes), out=ctx.y(node))


def _concat(ctx, node):
    ctx.op("Concat", *ctx.xs(node), out=ctx.y(node), axis=node.attrs["axis"])


def _stack(ctx, node):
    axis = node.attrs["axis"]
    parts = [_unsqueeze(ctx, x, [axis]) for x in ctx.xs(node)]
    ctx.op("Concat", *parts, out=ctx.y(node), axis=axis)


def _split(ctx, node):
    axis = node.attrs["axis"]
    sizes = [v.shape[axis] for v in node.outputs]
    outs = [ctx.y(node, i) for i in range(len(node.outputs))]
    if len(outs) == 1:
        _identity(ctx, ctx.x(node, 0), node)
        return
    ctx.emit("Split", [ctx.x(node, 0), ctx.ints(sizes)], outs, axis=axis)


def _slice(ctx, node):
    """One (start, stop, step) per axis; a stop of None (a negative step through index 0)
    is INT64_MIN, which ONNX clamps to before the first element."""
    a = node.attrs
    axes = [i for i, (b, e, s) in enumerate(zip(a["begin"], a["end"], a["step"]))
            if not (b == 0 and e == node.inputs[0].shape[i] and s == 1)]
    if not axes:
        _identity(ctx, ctx.x(node, 0), node)
        return
    starts = [a["begin"][i] for i in axes]
    ends = [_INT64_MIN if a["end"][i] is None else a["end"][i] for i in axes]
    steps = [a["step"][i] for i in axes]
    ctx.op("Slice", ctx.x(node, 0), ctx.ints(starts), ctx.ints(ends), ctx.ints(axes),
           ctx.ints(steps), out=ctx.y(node))


def _take(ctx, node):
    ctx.op("Gather", *ctx.xs(node), out=ctx.y(node), axis=node.attrs["axis"])


def _pad(ctx, node):
    """Constant padding; the value as the impl converts it to x's dtype."""
    widths, dtype = node.attrs["pad_width"], ctx.dtype_in(node)
    pads = [b for b, _ in widths] + [e for _, e in widths]
    if not any(pads):
        _identity(ctx, ctx.x(node, 0), node)
        return
    value = np.asarray(node.attrs["value"]).astype(dt.to_numpy(dtype))
    ctx.op("Pad", ctx.x(node, 0), ctx.ints(pads), ctx.const(value, dtype), out=ctx.y(node),
           mode="constant")


def _one_hot(ctx, node):
    """graphc's own definition (ONNX OneHot counts negative indices from the end, graphc
    gives them a row of off values): indices == range(depth) along the new axis."""
    a, ix = node.attrs, node.inputs[0]
    axis, depth = a["axis"], a["depth"]
    shape = [1] * (len(ix.shape) + 1)
    shape[axis] = depth
    classes = ctx.initializer(np.arange(depth, dtype=dt.to_numpy(ix.dtype)).reshape(shape),
                              ctx.fresh(f"{ctx.y(node)}_classes"))
    hit = ctx.op("Equal", _unsqueeze(ctx, ctx.x(node, 0), [axis]), classes)
    dtype = _no_bool(a["dtype"])  # (onnxruntime's Where has no bool kernel)
    picked = ctx.op("Where", hit, ctx.const(a["on_value"], dtype),
                    ctx.const(a["off_value"], dtype), out=None if dtype != a["dtype"]
                    else ctx.y(node))
    if dtype != a["dtype"]:
        ctx.op("Cast", picked, out=ctx.y(node), to=_elem_type(a["dtype"]))


# -- library ops -------------------------------------------------------------------------

def _window_attrs(kernel, stride, padding, dilation=None) -> dict:
    attrs = {"kernel_shape": list(kernel), "strides": list(stride),
             "pads": [padding[0], padding[1], padding[0], padding[1]]}
    if dilation is not None:
        attrs["dilations"] = list(dilation)
    return attrs


def _conv2d(ctx, node):
    a, w = node.attrs, node.inputs[1]
    ctx.op("Conv", *ctx.xs(node), out=ctx.y(node), group=a["groups"],
           **_window_attrs(w.shape[2:], a["stride"], a["padding"], a["dilation"]))


def _conv2d_input_grad(ctx, node):
    """The transposed convolution (Gluon's Conv2DTranspose); output_padding makes up the
    rows a strided convolution of ``input_size`` never reached."""
    a, g, w = node.attrs, node.inputs[0], node.inputs[1]
    k = w.shape[2:]
    extra = [a["input_size"][i] - ((g.shape[2 + i] - 1) * a["stride"][i]
                                   - 2 * a["padding"][i] + a["dilation"][i] * (k[i] - 1) + 1)
             for i in range(2)]
    ctx.op("ConvTranspose", *ctx.xs(node), out=ctx.y(node), group=a["groups"],
           output_padding=extra if any(extra) else None,
           **_window_attrs(k, a["stride"], a["padding"], a["dilation"]))


def _max_pool2d(ctx, node):
    a = node.attrs
    ctx.op("MaxPool", ctx.x(node, 0), out=ctx.y(node),
           **_window_attrs(a["kernel_size"], a["stride"], a["padding"]))


def _avg_pool2d(ctx, node):
    a = node.attrs
    ctx.op("AveragePool", ctx.x(node, 0), out=ctx.y(node),
           count_include_pad=int(a.get("count_include_pad", True)),
           **_window_attrs(a["kernel_size"], a["stride"], a["padding"]))


def _fused(ctx, node):
    """A fusion kernel: its body's nodes, inlined (their mappings emit the ONNX nodes)."""
    body = node.body
    params = [v for v in body.inputs if v.role != "constant"]
    for v, outer in zip(params, node.inputs):
        ctx.names[id(v)] = ctx.names[id(outer)]
    for v in body.inputs:
        if v.role == "constant":  # (copies of a kernel share its body: one initializer)
            data = body.constants[v.name]
            name = ctx.body_constants.get(id(data))
            if name is None:
                name = ctx.body_constants[id(data)] = ctx.initializer(
                    data, ctx.fresh(f"{node.name}/{v.name}"))
            ctx.names[id(v)] = name
    # body outputs computed by body nodes take the outer output names directly; every
    # other body value gets a fresh name each time the body is inlined
    direct: dict[int, int] = {}
    for j, v in enumerate(body.outputs):
        if v.node is not None and id(v) not in direct:
            direct[id(v)] = j
    for inner in body.nodes:
        for v in inner.outputs:
            ctx.names[id(v)] = ctx.y(node, direct[id(v)]) if id(v) in direct else \
                ctx.fresh(f"{node.name}/{v.name}")
    outer_node = ctx.node
    for inner in body.nodes:
        ctx.node = inner
        MAPPINGS[inner.op.name](ctx, inner)
    ctx.node = outer_node
    for j, v in enumerate(body.outputs):
        if direct.get(id(v)) != j:
            ctx.op("Identity", ctx.names[id(v)], out=ctx.y(node, j))


#: graphc op name -> fn(ctx, node) emitting the ONNX nodes for that node.
MAPPINGS: dict[str, Callable[[_Context, Node], None]] = {
    # elementwise, unary
    "neg": _direct("Neg"), "abs": _direct("Abs"), "exp": _direct("Exp"),
    "log": _direct("Log"), "log1p": _log1p, "expm1": _expm1, "sqrt": _direct("Sqrt"),
    "rsqrt": _rsqrt, "square": _square, "reciprocal": _direct("Reciprocal"),
    "sin": _direct("Sin"), "cos": _direct("Cos"), "tanh": _direct("Tanh"),
    "sigmoid": _direct("Sigmoid"), "relu": _relu, "erf": _direct("Erf"),
    "softplus": _direct("Softplus"), "sign": _direct("Sign"), "floor": _direct("Floor"),
    "ceil": _direct("Ceil"), "round": _direct("Round"), "logical_not": _direct("Not"),
    "leaky_relu": _leaky_relu, "elu": _elu, "gelu": _gelu, "clip": _clip, "cast": _cast,
    "dropout": _dropout,
    # elementwise, binary and ternary
    "add": _direct("Add"), "sub": _direct("Sub"), "mul": _direct("Mul"),
    "div": _direct("Div"), "pow": _direct("Pow"), "maximum": _direct("Max"),
    "minimum": _direct("Min"), "equal": _compare("Equal"),
    "not_equal": _compare("Equal", negate=True), "less": _compare("Less"),
    "less_equal": _compare("LessOrEqual"), "greater": _compare("Greater"),
    "greater_equal": _compare("GreaterOrEqual"), "logical_and": _direct("And"),
    "logical_or": _direct("Or"), "where": _where,
    # reductions
    "sum": _reduction("ReduceSum", _accumulating),
    "mean": _reduction("ReduceMean", dt.float_of),
    "max": _reduction("ReduceMax", _no_bool), "min": _reduction("ReduceMin", _no_bool),
    "prod": _reduction("ReduceProd", _accumulating),
    "argmax": _arg_extreme("ArgMax"), "argmin": _arg_extreme("ArgMin"),
    # shape and data movement
    "reshape": _reshape, "transpose": _transpose, "broadcast_to": _broadcast_to,
    "expand_dims": _expand_dims, "squeeze": _squeeze, "concat": _concat, "stack": _stack,
    "split": _split, "slice": _slice, "take": _take, "pad": _pad, "one_hot": _one_hot,
    # library calls
    "matmul": _direct("MatMul"), "conv2d": _conv2d, "conv2d_input_grad": _conv2d_input_grad,
    "max_pool2d": _max_pool2d, "avg_pool2d": _avg_pool2d,
    # fusion kernels
    "fused": _fused,
}


# -- the model -----------------------------------------------------------------------------

def unmapped_ops(graph: Graph) -> dict[str, int]:
    """Ops of ``graph`` (fused bodies included) with no mapping, and how often each occurs."""
    found: dict[str, int] = {}

    def walk(g: Graph):
        for node in g.nodes:
            if node.body is not None:
                walk(node.body)
            elif node.op.name not in MAPPINGS:
                found[node.op.name] = found.get(node.op.name, 0) + 1
    walk(graph)
    return found


def _all_names(graph: Graph) -> set[str]:
    names = set()

    def walk(g: Graph):
        for v in g.values():
            names.add(v.name)
        for node in g.nodes:
            if node.body is not None:
                walk(node.body)
    walk(graph)
    return names


def _check_opset(onnx, opset) -> int:
    current = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or \
            not MIN_OPSET <= opset <= current:
        raise OnnxExportError(f"opset must be an int from {MIN_OPSET} to {current} (the "
                              f"installed onnx package's newest), got {opset!r}")
    return opset


def build_model(graph: Graph, opset: int = DEFAULT_OPSET, producer: str = "graphc",
                params: dict | None = None):
    """The ONNX ModelProto of ``graph`` (see `export_graph`), not written anywhere."""
    onnx = _onnx()
    from onnx import helper
    opset = _check_opset(onnx, opset)
    graph.validate()
    missing = unmapped_ops(graph)
    if missing:
        raise UnmappedOpError(missing, graph.name)
    params = dict(params or {})
    ctx = _Context(opset, _all_names(graph))

    def info(name: str, v: Value):
        return helper.make_tensor_value_info(name, _elem_type(v.dtype), list(v.shape))

    inputs = []
    for v in graph.inputs:
        ctx.names[id(v)] = v.name
        if v.role == "constant":
            ctx.initializer(graph.constants[v.name], v.name)
        elif v.role == "parameter" and v.name in params:
            value = np.asarray(params.pop(v.name))
            if tuple(value.shape) != v.shape:
                raise OnnxExportError(f"parameter '{v.name}' is {v.type} in the graph, but "
                                      f"its value has shape {tuple(value.shape)}")
            ctx.initializer(value.astype(dt.to_numpy(v.dtype), copy=False), v.name)
        else:
            inputs.append(v)
    if params:
        raise OnnxExportError(f"params names {sorted(params)}, which are not parameter "
                              "inputs of the graph")
    for node in graph.nodes:
        for v in node.outputs:
            ctx.names[id(v)] = v.name
    for node in graph.nodes:
        ctx.node = node
        MAPPINGS[node.op.name](ctx, node)
    ctx.node = None

    # outputs: named after their values; an input, constant or repeated value gets an
    # Identity of its own, since ONNX names each output once and by a node
    outputs, seen = [], set()
    for i, v in enumerate(graph.outputs):
        name = ctx.names[id(v)]
        if v.node is None or name in seen:
            name = ctx.op("Identity", name, out=ctx.fresh(f"output{i}"))
        seen.add(name)
        outputs.append(info(name, v))
    used = {n for node in ctx.nodes for n in node.input} | seen
    # dropout keys (state inputs) that nothing reads any more are not model inputs
    inputs = [info(v.name, v) for v in inputs if v.role != "state" or v.name in used]
    value_info = [info(v.name, v) for node in graph.nodes for v in node.outputs
                  if v.name not in seen]
    g = helper.make_graph(ctx.nodes, graph.name, inputs, outputs,
                          initializer=ctx.initializers, value_info=value_info)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(g, opset_imports=opsets, producer_name=producer,
                              ir_version=helper.find_min_ir_version_for(opsets))
    from .. import __version__
    model.producer_version = __version__
    return model


def _save(model, path) -> None:
    if path is None:
        return
    onnx = _onnx()
    try:
        onnx.save_model(model, str(path) if not hasattr(path, "write") else path)
    except ValueError as e:  # protobuf's 2 GiB limit
        raise OnnxExportError(f"cannot write the ONNX model to {path}: {e}") from None


def export_graph(graph: Graph, path, opset: int = DEFAULT_OPSET, producer: str = "graphc",
                 *, params: dict | None = None):
    """Write ``graph`` as an ONNX model at ``path`` (None: write nothing); returns the
    ModelProto.

    Data inputs are model inputs; constants, and parameters given in ``params`` (name ->
    array), are initializers; parameters without a value stay model inputs. Raises
    `UnmappedOpError` listing every op with no ONNX mapping."""
    model = build_model(graph, opset, producer, params)
    _save(model, path)
    return model


def export_block(block, path, *example_inputs, opset: int = DEFAULT_OPSET,
                 producer: str = "graphc"):
    """Trace ``block`` in prediction mode on ``example_inputs`` (default: its last call's,
    as `HybridBlock.export`) and write it as an ONNX model at ``path``; returns the
    ModelProto. Inputs are ``data`` (or ``data0, data1...``), parameters initializers named
    as `collect_params`."""
    from ..nn import hybrid
    if example_inputs:
        args, kwargs = tuple(example_inputs), {}
    else:
        last = getattr(block, "_last_call", None)
        if last is None:
            raise OnnxExportError(f"{type(block).__name__}: give example inputs to export "
                                  "(or call the hybridized block once first); the model is "
                                  "recorded at their shapes")
        args, kwargs = last
    entry = hybrid._trace_block(block, args, kwargs, False, None, {})
    graph = entry.graph
    if entry.traced.updates:  # state writes are a training effect; prediction has none
        graph.outputs = graph.outputs[:entry.num_outputs]
    params = {v.name: obj.value().numpy() for obj, v in hybrid._state_inputs(entry)}
    return export_graph(graph, path, opset, producer, params=params)


def export(obj, path, *example_inputs, opset: int = DEFAULT_OPSET):
    """`export_graph` for a Graph, `export_block` for a block, and for a plain function
    its `graphc.trace` on ``example_inputs``."""
    if isinstance(obj, Graph):
        if example_inputs:
            raise OnnxExportError("a Graph has its own input types; example inputs are for "
                                  "blocks and functions")
        return export_graph(obj, path, opset)
    from ..nn.block import Block
    if isinstance(obj, Block):
        return export_block(obj, path, *example_inputs, opset=opset)
    if callable(obj):
        from ..trace import trace
        return export_graph(trace(obj, *example_inputs), path, opset)
    raise OnnxExportError(f"cannot export a {type(obj).__name__}: expected a Graph, a "
                          "block or a function")
