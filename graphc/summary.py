"""Summary tables, in the spirit of Gluon's ``print_summary``: one row per layer of a
Block (output shapes, parameter counts) or per node of a Graph (op, types, source line).

`Block.summary` runs the block once, imperatively and without recording gradients, and
learns each child's output shapes by temporarily replacing its ``forward`` with a
recording wrapper (an instance attribute, removed again even when forward raises).
Hybridized blocks are switched to imperative calls for that run so that every child's
forward actually executes; compiled caches are left as they were.
"""

from __future__ import annotations

import numpy as np

from .errors import GraphcError

__all__ = ["block_summary", "graph_table"]


def _table(header: tuple, rows: list[tuple], totals: list[str], right: bool = False) -> str:
    """Left-aligned columns (the last right-aligned if ``right``: counts), ruled like
    Keras/Gluon."""
    cells = [tuple(map(str, r)) for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: tuple) -> str:
        pads = [c.ljust(w) for c, w in zip(r, widths)]
        if right:
            pads[-1] = r[-1].rjust(widths[-1])
        return "  ".join(pads).rstrip()

    rule = "=" * (sum(widths) + 2 * len(widths) - 2)
    out = [rule, line(cells[0]), rule, *(line(r) for r in cells[1:]), rule, *totals, rule]
    return "\n".join(out)


def _shapes(out) -> list[str]:
    """``f32[2,8]``-style texts of every tensor in a (nested) block output."""
    if isinstance(out, list | tuple):
        return [s for o in out for s in _shapes(o)]
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    if shape is None:
        return [type(out).__name__]
    from . import dtypes
    name = dtypes.SHORT.get(dtypes.canonical(dtype), str(dtype)) if dtype is not None else "?"
    return [f"{name}[{','.join(map(str, shape))}]"]


def _known(shape) -> bool:
    return shape is not None and all(d > 0 for d in shape)


def _tree(block, name: str, depth: int = 0):
    """(depth, structural name, block) in registration order, the root first."""
    yield depth, name, block
    for child_name, child in block._children.items():
        yield from _tree(child, child_name, depth + 1)


def block_summary(block, *inputs) -> str:
    """The layer table of ``block``: output shapes from one run on ``inputs`` (none: shapes
    are left out, and every parameter's shape must already be known)."""
    from .autograd import pause
    from .nn.block import HybridBlock
    tree = list(_tree(block, type(block).__name__))
    outputs: dict[int, list[str]] = {}
    if inputs:
        blocks = [b for _, _, b in tree]
        active = {id(b): b._active for b in blocks if isinstance(b, HybridBlock)}

        def record(b, forward):
            def wrapper(*args, **kwargs):
                out = forward(*args, **kwargs)
                outputs.setdefault(id(b), _shapes(out))
                return out
            return wrapper

        try:
            for b in blocks:
                if "forward" not in b.__dict__:  # a block listed twice is wrapped once
                    object.__setattr__(b, "forward", record(b, b.forward))
                if id(b) in active:
                    object.__setattr__(b, "_active", False)
            with pause():
                block(*inputs)
        finally:
            for b in blocks:
                b.__dict__.pop("forward", None)
                if id(b) in active:
                    object.__setattr__(b, "_active", active[id(b)])
    rows, seen = [], set()
    total = trainable = 0
    for depth, name, b in tree:
        own = 0
        for pname, p in b._reg_params.items():
            if not _known(p.shape):
                raise GraphcError(
                    f"{type(block).__name__}.summary(): parameter '{pname}' of {name} has "
                    f"unknown shape {p.shape}; pass an example input, e.g. net.summary(x)")
            n = int(np.prod(p.shape))
            own += n
            if id(p) not in seen:
                seen.add(id(p))
                total += n
                trainable += n if p.grad_req != "null" else 0
        label = "  " * depth + (name if depth == 0 else f"{name} ({type(b).__name__})")
        shapes = outputs.get(id(b), ["-"] if inputs else [""])
        rows.append((label, shapes[0], own))
        rows += [("", s, "") for s in shapes[1:]]
    header = ("Layer (type)", "Output shape", "Params")
    totals = [f"Total params: {total}", f"Trainable params: {trainable}",
              f"Non-trainable params: {total - trainable}"]
    return _table(header, rows, totals, right=True)


def graph_table(graph) -> str:
    """One row per node of ``graph``: name, op (``fused:KIND`` for a kernel), output
    types, and the user source line it was traced from."""
    from .graph import _short_loc
    rows = []
    for node in graph.nodes:
        op = f"fused:{node.attrs.get('kind', '?')}" if node.body is not None else node.op.name
        types = ", ".join(str(v.type) for v in node.outputs)
        rows.append((node.name, op, types, node.loc and _short_loc(node.loc) or ""))
    s = graph.summary()
    params = graph.inputs_by_role("parameter")
    elems = sum(v.type.size for v in params)
    totals = [f"{s['nodes']} nodes ({s['ops']} ops), {s['kernels']} kernels, "
              f"{s['fused']} fused, {s['views']} views",
              f"Parameter inputs: {len(params)} ({elems} elements)"]
    header = ("Node", "Op", "Output types", "Source")
    return f"graph {graph.name}\n" + _table(header, rows, totals)
