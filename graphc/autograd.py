"""Reverse-mode autodiff on the eager tape, and the training/prediction mode.

While recording, every op call whose inputs need gradients leaves an `Entry` on its
outputs (``tensor._node``); the entries form the tape. ``y.backward()`` walks the entries
reachable from ``y`` newest first and applies each op's VJP rule, the same rules the
graph-level autodiff pass uses. Because the tape is built through `tensor.apply`, which
also runs while tracing, `grad` and `value_and_grad` work inside `gc.jit`: the backward
ops simply become more graph nodes.

The mode (training or prediction) decides how Dropout and BatchNorm behave; compiled
functions key their cache on it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable

import numpy as np

from . import tensor as _tensor
from .errors import GraphcError
from .tensor import Tensor, _wrap, symbolic

_mode = {"training": False, "recording": False}
_seq = itertools.count()


class Leaf:
    """The ``_node`` of a tensor that collects a gradient (``attach_grad``)."""

    __slots__ = ("grad_req",)

    def __init__(self, grad_req: str):
        self.grad_req = grad_req


class Entry:
    """One recorded computation: ``vjp(cotangents) -> input cotangents``."""

    __slots__ = ("vjp", "inputs", "outputs", "seq", "name", "freed")

    def __init__(self, vjp: Callable, inputs, outputs: tuple, name: str):
        self.vjp, self.inputs, self.outputs, self.name = vjp, inputs, outputs, name
        self.seq = next(_seq)
        self.freed = False


def _needs_grad(t) -> bool:
    return isinstance(t, Tensor) and t._node is not None


def record_entry(vjp: Callable, inputs, outputs, name: str) -> None:
    """Put a computation on the tape if any input needs a gradient (used by ops and by
    hybridized blocks, whose VJP runs a compiled backward graph)."""
    if not any(_needs_grad(t) for t in inputs):
        return
    outs = outputs if isinstance(outputs, tuple) else (outputs,)
    entry = Entry(vjp, tuple(inputs), outs, name)
    for o in outs:
        o._node = entry


def _op_hook(op, inputs, attrs, outputs) -> None:
    if op.vjp is None or not any(_needs_grad(t) for t in inputs):
        return
    multi = isinstance(outputs, tuple)

    def vjp(gs):
        return op.vjp(gs if multi else gs[0], *inputs, outputs, **attrs)

    record_entry(vjp, inputs, outputs, op.name)


# -- modes ------------------------------------------------------------------------------

def is_training() -> bool:
    return _mode["training"]


def is_recording() -> bool:
    return _mode["recording"]


@contextlib.contextmanager
def mode(recording: bool | None = None, training: bool | None = None):
    """Set recording and/or training (None leaves one as it is) for a ``with`` block."""
    old = dict(_mode)
    if recording is not None:
        _mode["recording"] = recording
    if training is not None:
        _mode["training"] = training
    _tensor.autograd_hook = _op_hook if _mode["recording"] else None
    try:
        yield
    finally:
        _mode.update(old)
        _tensor.autograd_hook = _op_hook if _mode["recording"] else None


def record(train_mode: bool = True):
    """Record ops for ``backward`` (and switch to training mode, as Gluon does)."""
    return mode(recording=True, training=train_mode)


def pause(train_mode: bool = False):
    """Stop recording inside a ``record()`` block."""
    return mode(recording=False, training=train_mode)


def train_mode():
    return mode(training=True)


def predict_mode():
    return mode(training=False)


# -- gradients ----------------------------------------------------------------------------

def attach_grad(x: Tensor, grad_req: str = "write") -> Tensor:
    """Make ``x`` collect a gradient in ``x.grad`` (``grad_req``: 'write', 'add', 'null')."""
    if grad_req not in ("write", "add", "null"):
        raise GraphcError(f"grad_req must be 'write', 'add' or 'null', got {grad_req!r}")
    from .creation import zeros
    x._grad = None if grad_req == "null" else zeros(x.shape, x.dtype, x.device)
    x._node = Leaf(grad_req)
    return x


def _filled_like(t: Tensor, value: float) -> Tensor:
    """``value`` in ``t``'s shape and dtype. While tracing, a broadcast node of a scalar
    constant: folding it into a full-size constant would bake the shape into the graph."""
    from .creation import full
    if t._sym is not None and hasattr(t._sym.tracer, "constant"):
        from .ops.shape import broadcast_to
        return broadcast_to(t._sym.tracer.constant(np.asarray(value, t.dtype)), t.shape)
    return full(t.shape, value, t.dtype, t.device)


def _zeros_like(t: Tensor) -> Tensor:
    return _filled_like(t, 0)


def _accumulate(cts: dict, t: Tensor, g) -> None:
    if g is None:
        return
    prev = cts.get(id(t))
    cts[id(t)] = (t, g if prev is None else prev[1] + g)


def _reachable(heads) -> list[Entry]:
    entries, seen = [], set()
    stack = [h._node for h in heads if isinstance(h._node, Entry)]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if e.freed:
            raise GraphcError(
                f"backward through '{e.name}' a second time: its tape was freed by the first "
                "backward; pass retain_graph=True to the first one")
        entries.append(e)
        stack.extend(t._node for t in e.inputs if isinstance(t, Tensor)
                     and isinstance(t._node, Entry))
    entries.sort(key=lambda e: e.seq, reverse=True)
    return entries


def run_backward(heads, head_grads, retain_graph: bool) -> dict:
    """Cotangents of every tensor on the tape behind ``heads``: id -> (tensor, cotangent).
    The graph autodiff pass and `value_and_grad` build on this, as `backward` does."""
    cts: dict[int, tuple] = {}
    for h, g in zip(heads, head_grads):
        _accumulate(cts, h, g)
    entries = _reachable(heads)
    with mode(recording=False):
        for e in entries:
            gs = [cts.pop(id(o), (None, None))[1] for o in e.outputs]
            if all(g is None for g in gs):
                continue
            gs = tuple(g if g is not None else _zeros_like(o) for g, o in zip(gs, e.outputs))
            for t, g in zip(e.inputs, e.vjp(gs)):
                if _needs_grad(t):
                    _accumulate(cts, t, g)
            if not retain_graph:
                e.freed = True
    return cts


def _ones_like(t: Tensor) -> Tensor:
    return _filled_like(t, 1)


def backward(heads, head_grads=None, retain_graph: bool = False) -> None:
    """Fill ``x.grad`` of every attached tensor that ``heads`` depend on.

    A head without a head gradient gets ones (also when it is not a scalar, as Gluon)."""
    heads = list(heads) if isinstance(heads, list | tuple) else [heads]
    if head_grads is None:
        head_grads = [None] * len(heads)
    elif not isinstance(head_grads, list | tuple):
        head_grads = [head_grads]
    head_grads = [_ones_like(h) if g is None else _as_tensor(g) for h, g in
                  zip(heads, head_grads)]
    if not any(_needs_grad(h) for h in heads):
        raise GraphcError("backward: the head does not depend on any tensor with "
                          "attach_grad() recorded under autograd.record()")
    cts = run_backward(heads, head_grads, retain_graph)
    for t, g in cts.values():
        leaf = t._node
        if isinstance(leaf, Leaf) and leaf.grad_req != "null":
            g = g.astype(t.dtype) if g.dtype != t.dtype else g
            t._grad = g if leaf.grad_req == "write" or t._grad is None else t._grad + g


def _as_tensor(x) -> Tensor:
    from .tensor import array
    return x if isinstance(x, Tensor) else array(x)


def _fresh_leaf(x) -> Tensor:
    """A new tensor for the same value, so marking it does not touch the caller's."""
    x = _as_tensor(x)
    t = _wrap(x._data) if x._sym is None else symbolic(x._sym)
    t._node = Leaf("write")
    return t


def value_and_grad(fn: Callable, argnums: int | tuple[int, ...] = 0,
                   has_aux: bool = False) -> Callable:
    """``fn`` returning ``(value, grads)``; works eagerly and inside ``gc.jit``.

    ``fn`` must return a scalar (or ``(scalar, aux)`` with ``has_aux``); ``grads`` has one
    entry per ``argnums`` (a single one when ``argnums`` is an int)."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        args = list(args)
        leaves = {}
        for i in nums:
            if i >= len(args):
                raise GraphcError(f"grad: argnums {i} but only {len(args)} arguments")
            args[i] = leaves[i] = _fresh_leaf(args[i])
        with mode(recording=True):
            out = fn(*args, **kwargs)
        value, aux = out if has_aux else (out, None)
        if not isinstance(value, Tensor) or value.shape != ():
            raise GraphcError("grad: the function must return a scalar tensor, got "
                              f"{getattr(value, 'shape', type(value).__name__)}")
        cts = run_backward([value], [_ones_like(value)], retain_graph=False)
        grads = tuple(cts[id(leaves[i])][1] if id(leaves[i]) in cts
                      else _zeros_like(leaves[i]) for i in nums)
        grads = grads[0] if isinstance(argnums, int) else grads
        return ((value, aux), grads) if has_aux else (value, grads)

    return wrapped


def grad(fn: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False) -> Callable:
    """The gradient of scalar-valued ``fn`` with respect to the arguments ``argnums``."""
    vg = value_and_grad(fn, argnums, has_aux)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        value, grads = vg(*args, **kwargs)
        return (grads, value[1]) if has_aux else grads

    return wrapped
