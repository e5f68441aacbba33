"""Simplification: dead code, common subexpressions, constant folding, exact algebra.

Four small passes and their fixed point, ``simplify`` (cse, fold_constants, algebra, dce,
repeated until the graph stops changing, at most `MAX_ROUNDS` times):

- ``dce`` drops nodes none of whose outputs is used (graph outputs count as uses).
- ``cse`` merges nodes with the same op, the same inputs and equal attrs, and equal
  constants (same dtype, shape and bytes, so -0.0 and 0.0 stay apart). Every graphc op is
  a pure function of its inputs and attrs: randomness enters as a per-call key input
  (dropout), so two dropouts merge only when they share that key, and then they draw the
  same mask.
- ``fold_constants`` evaluates a node whose inputs are all constants with its op's numpy
  implementation, when each result has at most `FOLD_MAX_ELEMENTS` elements: graphs never
  grow large constants (a zero gradient stays ``broadcast_to(0, shape)``). Per-call inputs
  (data, parameters, rng keys) are never constants, so nothing that depends on them folds.
- ``algebra`` applies identities that are exact in floating point, one rule per op in
  `_RULES`; each replaces a value by one of exactly the same type.

Simplified graphs are specialized to their input signature (a reshape whose result has
its input's shape is dropped), which is what a compiled executable is for; export the
traced graph for a batch-agnostic model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import dtypes as dt
from ..errors import GraphcError
from ..graph import Graph, Node, Value
from ..ops import registry
from .pipeline import register_pass
from .rewrite import Rewriter

#: Constant folding keeps a result only up to this many elements (per output).
FOLD_MAX_ELEMENTS = 4096
#: Constants up to this many elements are compared by value for merging (bigger ones are
#: model weights, which are practically never equal; hashing them each round costs time).
CSE_CONST_MAX_ELEMENTS = 1 << 16
#: At most this many rounds of the four passes in ``simplify``.
MAX_ROUNDS = 8


# -- dead code --------------------------------------------------------------------------

@register_pass("dce")
def dce(graph: Graph) -> Graph:
    """``graph`` without nodes whose outputs nothing uses; inputs are kept (the signature)
    and constants no node reads any more are dropped."""
    live = {id(v) for v in graph.outputs}
    keep: set[int] = set()
    for node in reversed(graph.nodes):
        if any(id(v) in live for v in node.outputs):
            keep.add(id(node))
            live.update(id(v) for v in node.inputs)
    rw = Rewriter(graph)
    for node in graph.nodes:
        if id(node) in keep:
            rw.copy(node)
    return rw.finish()


# -- common subexpressions --------------------------------------------------------------

def _attr_key(x):
    """A hashable key under which two attrs are equal exactly when they mean the same:
    1, 1.0 and True differ, so do 0.0 and -0.0; NaN equals NaN."""
    if isinstance(x, dict):
        return tuple((k, _attr_key(v)) for k, v in sorted(x.items()))
    if isinstance(x, list | tuple):
        return (type(x).__name__, *map(_attr_key, x))
    if isinstance(x, float):
        return ("float", repr(x))
    return (type(x).__name__, x)


@register_pass("cse")
def cse(graph: Graph) -> Graph:
    """One node per (op, inputs, attrs) and one constant per (dtype, shape, bytes)."""
    rw = Rewriter(graph)
    constants: dict[tuple, Value] = {}
    for v in graph.inputs:
        data = graph.constants.get(v.name) if v.role == "constant" else None
        if data is not None and data.size <= CSE_CONST_MAX_ELEMENTS:
            first = constants.setdefault((v.type, data.dtype.str, data.tobytes()), v)
            if first is not v:
                rw.bind(v, rw[first])
    seen: dict[tuple, Node] = {}
    for node in graph.nodes:
        body = getattr(node, "body", None)  # a fused kernel's sub-graph
        key = (node.op.name, tuple(id(rw[v]) for v in node.inputs), _attr_key(node.attrs),
               None if body is None else body.structure())
        hit = seen.get(key)
        if hit is None:
            seen[key] = rw.copy(node)
        else:
            for old, new in zip(node.outputs, hit.outputs):
                rw.bind(old, new)
    return rw.finish()


# -- constant folding -------------------------------------------------------------------

def evaluate(node: Node, arrays: list[np.ndarray]) -> list[np.ndarray] | None:
    """``node``'s outputs on constant ``arrays`` with its numpy implementation, as fresh
    C-ordered arrays; None when the implementation fails (the node is then left to fail
    at run time, where the error names the user's line) or returns other types than the
    node's (a broken impl must not turn into a silently different graph)."""
    try:
        with np.errstate(all="ignore"):  # inf/NaN results are values like any other
            out = node.op.impl(np, *arrays, **node.attrs)
    except Exception:  # whatever the op raises, folding just does not happen
        return None
    outs = [np.array(o, order="C", copy=True)
            for o in (out if isinstance(out, tuple) else (out,))]
    if len(outs) != len(node.outputs) or any(
            a.shape != v.shape or a.dtype != dt.to_numpy(v.dtype)
            for a, v in zip(outs, node.outputs)):
        return None
    return outs


@register_pass("fold_constants")
def fold_constants(graph: Graph) -> Graph:
    """Nodes on constants only, with results of at most FOLD_MAX_ELEMENTS elements each,
    replaced by constants holding their values."""
    rw = Rewriter(graph)
    for node in graph.nodes:
        ins = [rw[v] for v in node.inputs]
        # (a node without inputs would be a source such as a random draw: never folded)
        if ins and getattr(node, "body", None) is None and \
                all(v.role == "constant" for v in ins) and \
                all(v.type.size <= FOLD_MAX_ELEMENTS for v in node.outputs):
            outs = evaluate(node, [rw.graph.constants[v.name] for v in ins])
            if outs is not None:
                for old, data in zip(node.outputs, outs):
                    rw.bind(old, rw.constant(data, old.name))
                continue
        rw.copy(node)
    return rw.finish()


# -- algebraic identities ---------------------------------------------------------------
#
# A rule gets the old node, its inputs already mapped into the new graph (so a rule sees
# what earlier rules made of its producers, and chains like neg(neg(neg(neg(x)))) vanish in
# one pass) and the Rewriter; it returns the new value standing for the node's output, or
# None to keep the node.

Rule = Callable[[Node, list[Value], Rewriter], Value | None]


def _const(rw: Rewriter, v: Value) -> np.ndarray | None:
    return rw.graph.constants.get(v.name) if v.role == "constant" else None


def _all(rw: Rewriter, v: Value, value: float, negative: bool | None = None) -> bool:
    """``v`` is a constant whose every element equals ``value`` (with the sign bit
    ``negative``, when given: it tells -0.0 from 0.0)."""
    data = _const(rw, v)
    return data is not None and bool(np.all(data == value)) and (
        negative is None or bool(np.all(np.signbit(data) == negative)))


#: Ops whose result is never -0.0 (NaN aside): |x|, e**x, x*x, 1/(1+e**-x).
_NEVER_NEGATIVE_ZERO = frozenset({"abs", "exp", "square", "sigmoid"})


def _never_negative_zero(x: Value) -> bool:
    if not dt.is_float(x.dtype):
        return True
    node = x.node
    return node is not None and (node.op.name in _NEVER_NEGATIVE_ZERO or (
        node.op.name == "cast" and not dt.is_float(node.inputs[0].dtype)))


def _is_zero_to_add(rw: Rewriter, c: Value, x: Value) -> bool:
    """``x + c == x`` for every x: c is -0.0 (x + -0.0 is x, -0.0 included), or +0.0 where
    x is never -0.0 (-0.0 + 0.0 is +0.0), or an integer 0."""
    if not dt.is_float(c.dtype):
        return _all(rw, c, 0)
    return _all(rw, c, 0, negative=True) or (_all(rw, c, 0, negative=False)
                                             and _never_negative_zero(x))


def _operand_pairs(node: Node, ins: list[Value], commutative: bool):
    """(x, c) pairs where x has the output's type, so dropping c changes no shape."""
    out = node.outputs[0].type
    pairs = [(ins[0], ins[1]), (ins[1], ins[0])] if commutative else [(ins[0], ins[1])]
    return [(x, c) for x, c in pairs if x.type == out and c.dtype == out.dtype]


def _mul(node, ins, rw):
    for x, c in _operand_pairs(node, ins, commutative=True):
        if _all(rw, c, 1):
            return x


def _div(node, ins, rw):
    for x, c in _operand_pairs(node, ins, commutative=False):
        if _all(rw, c, 1):
            return x


def _add(node, ins, rw):
    for x, c in _operand_pairs(node, ins, commutative=True):
        if _is_zero_to_add(rw, c, x):
            return x


def _sub(node, ins, rw):
    # x - c == x + (-c): c = +0.0 always, c = -0.0 where x + 0.0 would be exact.
    for x, c in _operand_pairs(node, ins, commutative=False):
        if not dt.is_float(c.dtype):
            if _all(rw, c, 0):
                return x
        elif _all(rw, c, 0, negative=False) or (_all(rw, c, 0, negative=True)
                                                and _never_negative_zero(x)):
            return x


def _producer(v: Value, *ops: str) -> Node | None:
    return v.node if v.node is not None and v.node.op.name in ops else None


def _emit(rw: Rewriter, node: Node, op: str, inputs: list[Value], attrs: dict) -> Value | None:
    """A new node standing for ``node``'s output (its name, location and output name),
    or None where its type would differ from the output's."""
    try:
        types, _ = registry.infer(registry.get(op), tuple(v.type for v in inputs), attrs)
    except GraphcError:
        return None
    if types != (node.outputs[0].type,):
        return None
    return rw.graph.add_node(op, inputs, attrs, name=node.name, loc=node.loc,
                             output_names=[node.outputs[0].name]).outputs[0]


def _neg(node, ins, rw):
    inner = _producer(ins[0], "neg")
    return inner.inputs[0] if inner is not None else None


def _same_type(node, ins, rw):
    """The op is the identity when its result has its input's type (cast to the same
    dtype, broadcast_to its own shape)."""
    return ins[0] if ins[0].type == node.outputs[0].type else None


def _transpose(node, ins, rw):
    x, axes = ins[0], node.attrs["axes"]
    inner = _producer(x, "transpose")
    if inner is not None:
        x, axes = inner.inputs[0], tuple(inner.attrs["axes"][a] for a in axes)
    if axes == tuple(range(len(axes))):
        return x
    return _emit(rw, node, "transpose", [x], {"axes": axes}) if inner is not None else None


_RESHAPES = ("reshape", "squeeze", "expand_dims")  # they keep the row-major element order


def _reshape_like(node, ins, rw):
    """A reshape, squeeze or expand_dims whose result has its input's shape is dropped,
    and so is a chain of them that ends where it started."""
    x, out = ins[0], node.outputs[0].type
    if x.type == out:
        return x
    inner = _producer(x, *_RESHAPES)
    if inner is None:
        return None
    if inner.inputs[0].type == out:
        return inner.inputs[0]
    if node.op.name == "reshape":
        # reshape(y, b) of a reshaped y = reshape(x, a) is reshape(x, b) when b's 0 codes
        # (copy the dim at that position) refer to dims that a copied from x with 0 codes
        # too: the composed spec then stays as batch-agnostic as the two were. A -1 is
        # inferred from the size, which y and x share.
        spec = node.attrs["shape"]
        first = inner.attrs["shape"] if inner.op.name == "reshape" else ()
        if all(i < len(first) and first[i] == 0 for i, d in enumerate(spec) if d == 0):
            return _emit(rw, node, "reshape", [inner.inputs[0]], {"shape": spec})
    return None


def _broadcast_to(node, ins, rw):
    if ins[0].type == node.outputs[0].type:
        return ins[0]
    inner = _producer(ins[0], "broadcast_to")
    if inner is not None:  # broadcasting composes: x -> s1 -> s2 is x -> s2
        return _emit(rw, node, "broadcast_to", [inner.inputs[0]], node.attrs)
    return None


#: The identities, by op name: the one place where the simplifier knows specific ops.
_RULES: dict[str, Rule] = {
    "mul": _mul,              # x * 1, 1 * x
    "div": _div,              # x / 1
    "add": _add,              # x + -0.0 (x + 0.0 where x is never -0.0; ints: x + 0)
    "sub": _sub,              # x - 0.0 (x - -0.0 where x is never -0.0; ints: x - 0)
    "neg": _neg,              # -(-x)
    "cast": _same_type,       # cast to x's own dtype
    "transpose": _transpose,  # identity permutation; transpose of transpose
    "reshape": _reshape_like,  # to the same shape; reshape of reshape
    "squeeze": _reshape_like,  # squeeze(expand_dims(x)) and the like
    "expand_dims": _reshape_like,
    "broadcast_to": _broadcast_to,  # to its own shape; broadcast of a broadcast
}


@register_pass("algebra")
def algebra(graph: Graph) -> Graph:
    """``graph`` with the identities of `_RULES` applied (unused producers are left for
    dce)."""
    rw = Rewriter(graph)
    for node in graph.nodes:
        rule = _RULES.get(node.op.name)
        new = rule(node, [rw[v] for v in node.inputs], rw) if rule is not None else None
        if new is None:
            rw.copy(node)
        else:
            rw.bind(node.outputs[0], new)
    return rw.finish()


# -- all of them ------------------------------------------------------------------------

@register_pass("simplify")
def simplify(graph: Graph) -> Graph:
    """cse, fold_constants, algebra and dce, repeated until nothing changes (each round
    can expose work for the next: a folded constant merges, a dropped cast dedups)."""
    for _ in range(MAX_ROUNDS):
        new = dce(algebra(fold_constants(cse(graph))))
        if new == graph:
            return new
        graph = new
    return graph
