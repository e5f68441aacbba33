"""The ``fused`` op: a kernel that the fusion pass made out of a sub-graph.

A fused node carries its sub-graph as ``node.body`` (a `graphc.graph.Graph`) and one attr,
``kind``: the class of kernel a backend generates for it (see `graphc.passes.fusion`):

- ``"elementwise"``: elementwise ops over one output shape;
- ``"reduction"``: reductions of one input shape over the same axes, with elementwise
  producers and consumers (a row-wise kernel when results are broadcast back);
- ``"library"``: one library call (GEMM, convolution...) and an elementwise epilogue.

Its types come from its body, not from a type rule, so the rule here refuses to run: a
fused node is built with `Graph.add_fused`, checked by `Graph.validate`, and run by the
backends' ``run_fused`` (the reference backend interprets the body).
"""

from __future__ import annotations

from ..errors import GraphcError, ShapeError
from .registry import Kind, Op, register

KERNEL_KINDS = ("elementwise", "reduction", "library")


def _canonical(types, attrs):
    kind = attrs.get("kind")
    if set(attrs) != {"kind"} or kind not in KERNEL_KINDS:
        raise ShapeError(f"fused nodes take one attr, kind, one of {', '.join(KERNEL_KINDS)}; "
                         f"got {attrs}")
    return {"kind": kind}


def _rule(types, kind):
    raise GraphcError("a fused node is typed by its body: build it with Graph.add_fused")


def _impl(xp, *arrays, kind):
    raise GraphcError("a fused node runs its body: backends call run_fused")


FUSED = register(Op("fused", Kind.OPAQUE, _rule, _impl, canonical=_canonical,
                    doc="A kernel made by the fusion pass; see graphc.ops.fused."))
