"""Injective nodes that copy (concat, stack, slice...) as a few native block copies.

Which input element lands where is found the way `graphc.backends.locations` finds where
views point: by running the op's own implementation once, at construction, on probe
inputs whose every element is a distinct code (input j, flat position k). The output then
reads as runs: maximal stretches copied from consecutive positions of one input. A node
whose output is at most `MAX_RUNS` runs of contiguous inputs becomes that many flat copy
calls in the native program (a concat of two NCHW maps at batch 1: two copies), so no
op name appears here and every injective op that moves whole blocks gets this for free.
Anything else (a transpose: runs of one element; inputs in a strided layout; a cast
hidden in the op) stays with the interpreter.
"""

from __future__ import annotations

import numpy as np

from ...graph import Node
from ...ops import scalar as S
from ...ops.registry import Kind
from ...types import TensorType
from ..kernel_specs import KernelSpec
from ..locations import Loc
from .program import elementwise_calls

#: More runs than this: the per-call overhead beats a strided kernel or numpy's copy.
MAX_RUNS = 64
_STRIDE = float(2 ** 32)   # probe code of input j, position k: j * 2**32 + k + 1


def handles(node: Node) -> bool:
    """An injective node whose inputs and outputs all have one dtype (so a byte copy is
    the op)."""
    return node.body is None and node.op.kind is Kind.INJECTIVE and node.op.view_of is None \
        and bool(node.inputs) and \
        len({v.dtype for v in [*node.inputs, *node.outputs]}) == 1


class InjectiveKernel:
    def __init__(self, node: Node, name: str):
        self.node, self.name = node, name
        self.runs = _runs(node)

    def bind(self, module) -> InjectiveKernel:
        return self

    def calls(self, at) -> list | None:
        """One flat copy per run, from contiguous inputs into the contiguous outputs."""
        if self.runs is None:
            return None
        ins = [at.loc[v.name] for v in self.node.inputs]
        outs = [at.loc[v.name] for v in self.node.outputs]
        if not all(a.contiguous for a in ins + outs):
            return None
        calls: list = []
        dtype = self.node.outputs[0].dtype
        for out, runs in zip(outs, self.runs):
            flat_out = out.array.reshape(-1)
            item = flat_out.itemsize
            for j, k, p, n in runs:
                src = ins[j]
                dst = Loc(out.slot, out.offset + p * item, flat_out[p:p + n])
                src = Loc(src.slot, src.offset + k * item, src.array.reshape(-1)[k:k + n])
                copy = elementwise_calls(self.spec(n, dtype), self.names(at.builder, n, dtype),
                                         [src], [dst])
                if copy is None:
                    return None
                calls += copy
        return calls

    def spec(self, n: int, dtype: str) -> KernelSpec:
        t = TensorType((n,), dtype)
        # (a one-element copy reads its input as a scalar: another function, another name)
        return KernelSpec(f"{self.name}_{'one' if n == 1 else 'run'}", [t], [t],
                          [S.arg(0, dtype)])

    def names(self, builder, n: int, dtype: str) -> dict:
        """The flat copy function (one per dtype in the module: sizes are arguments)."""
        return builder.add_kernel(self.spec(n, dtype))

    def run(self, env: dict) -> None:
        node = self.node
        for v, out in zip(node.outputs, _results(node, [env[id(v)] for v in node.inputs])):
            env[id(v)] = out


def _results(node: Node, arrays: list) -> list[np.ndarray]:
    """The op's outputs (ops like split return a tuple, even of one)."""
    out = node.op.impl(np, *arrays, **node.attrs)
    return [np.asarray(o) for o in (out if isinstance(out, tuple | list) else (out,))]


def _runs(node: Node) -> list[list[tuple[int, int, int, int]]] | None:
    """Per output, (input, its first flat position, output flat position, length) per run;
    None unless every output is made of input elements in at most `MAX_RUNS` runs in all."""
    if any(v.type.size >= 2 ** 32 for v in node.inputs) or len(node.inputs) >= 2 ** 20:
        return None
    probes = [(np.arange(v.type.size, dtype=np.float64) + (j * _STRIDE + 1)).reshape(v.shape)
              for j, v in enumerate(node.inputs)]
    try:
        outs = _results(node, probes)
        # run again on probes shifted by a half: copied elements shift, constants (a pad
        # value) do not
        shifted = _results(node, [p + 0.5 for p in probes])
    except Exception:   # an op whose impl needs real values (indices): not for probing
        return None
    if len(outs) != len(node.outputs) or len(shifted) != len(outs):
        return None
    runs, total = [], 0
    for v, out, moved in zip(node.outputs, outs, shifted):
        out = np.asarray(out, np.float64).reshape(-1)
        moved = np.asarray(moved, np.float64).reshape(-1)
        if out.size != v.type.size or moved.shape != out.shape:
            return None
        with np.errstate(invalid="ignore"):   # a fill of -inf: inf - inf
            if not ((moved - out == 0.5) & (out >= 1)).all():
                return None   # an element not copied from an input (padding)
        if out.size == 0:
            runs.append([])
            continue
        code = out - 1
        j = np.floor(code / _STRIDE).astype(np.int64)
        k = (code - j * _STRIDE).astype(np.int64)
        if (j >= len(node.inputs)).any():
            return None
        breaks = np.flatnonzero((np.diff(j) != 0) | (np.diff(k) != 1)) + 1
        total += len(breaks) + 1
        if total > MAX_RUNS:
            return None
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [out.size]))
        runs.append([(int(j[s]), int(k[s]), int(s), int(e - s)) for s, e in zip(starts, ends)])
    return runs
