"""Injective nodes that only move whole blocks of their inputs (concat, stack, slice,
split), for backends that run them as a few flat copies.

Which input element lands where is found the way `graphc.backends.locations` finds where
views point: by running the op's own implementation once, at construction, on probe
inputs whose every element is a distinct code (input j, flat position k). The output then
reads as runs: maximal stretches copied from consecutive positions of one input. A node
whose outputs are at most `MAX_RUNS` runs in all becomes that many flat copies (a concat
of two NCHW maps at batch 1: two), so no op name is involved and every injective op that
moves whole blocks gets this for free. Anything else (a transpose: runs of one element; a
pad's fill value; a cast hidden in the op) is not a block copy.
"""

from __future__ import annotations

import numpy as np

from ..graph import Node
from ..ops import scalar as S
from ..ops.registry import Kind
from ..types import TensorType
from .kernel_specs import KernelSpec
from .locations import run_on_host

#: More runs than this: the per-copy overhead beats a strided kernel or numpy's copy.
MAX_RUNS = 64
_STRIDE = float(2 ** 32)   # probe code of input j, position k: j * 2**32 + k + 1


def is_block_copy(node: Node) -> bool:
    """An injective node whose inputs and outputs all have one dtype (so a byte copy is
    the op); `runs` says whether its copies are few enough."""
    return node.body is None and node.op.kind is Kind.INJECTIVE and node.op.view_of is None \
        and bool(node.inputs) and \
        len({v.dtype for v in [*node.inputs, *node.outputs]}) == 1


def copy_spec(name: str, n: int, dtype: str) -> KernelSpec:
    """A flat copy of ``n`` elements (one element: read as a scalar, so named apart)."""
    t = TensorType((n,), dtype)
    return KernelSpec(f"{name}_{'one' if n == 1 else 'run'}", [t], [t], [S.arg(0, dtype)])


def sources(node: Node) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Per output, shaped like it: which input (j) and which flat position of that input
    (k) each element is copied from; None when some element is not a copy of an input
    element (a pad's fill value) or the op cannot be probed."""
    if any(v.type.size >= 2 ** 32 for v in node.inputs) or len(node.inputs) >= 2 ** 20:
        return None
    probes = [(np.arange(v.type.size, dtype=np.float64) + (j * _STRIDE + 1)).reshape(v.shape)
              for j, v in enumerate(node.inputs)]
    try:
        outs = run_on_host(node, probes)
        # run again on probes shifted by a half: copied elements shift, constants (a pad
        # value) do not
        shifted = run_on_host(node, [p + 0.5 for p in probes])
    except Exception:   # an op whose impl needs real values (indices): not for probing
        return None
    if len(outs) != len(node.outputs) or len(shifted) != len(outs):
        return None
    found = []
    for v, out, moved in zip(node.outputs, outs, shifted):
        out = np.asarray(out, np.float64)
        moved = np.asarray(moved, np.float64)
        if out.shape != v.shape or moved.shape != out.shape:
            return None
        with np.errstate(invalid="ignore"):   # a fill of -inf: inf - inf
            if not ((moved - out == 0.5) & (out >= 1)).all():
                return None
        code = out - 1
        j = np.floor(code / _STRIDE).astype(np.int64)
        k = (code - j * _STRIDE).astype(np.int64)
        if (j >= len(node.inputs)).any():
            return None
        found.append((j, k))
    return found


def runs(node: Node) -> list[list[tuple[int, int, int, int]]] | None:
    """Per output, (input, its first flat position, output flat position, length) per run;
    None unless every output is made of input elements in at most `MAX_RUNS` runs in all."""
    found = sources(node)
    if found is None:
        return None
    out_runs = [runs_of(j.reshape(-1), k.reshape(-1)) for j, k in found]
    return out_runs if sum(map(len, out_runs)) <= MAX_RUNS else None


def runs_of(j: np.ndarray, k: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The runs of flat source arrays ``j``, ``k`` (see `runs`)."""
    if j.size == 0:
        return []
    breaks = np.flatnonzero((np.diff(j) != 0) | (np.diff(k) != 1)) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [j.size]))
    return [(int(j[s]), int(k[s]), int(s), int(e - s)) for s, e in zip(starts, ends)]


def strided_source(j: np.ndarray, k: np.ndarray) -> tuple[int, int, tuple] | None:
    """(input, first flat position, element strides) when an output is a strided view of
    one input (a slice, a split piece: one strided copy), else None."""
    if j.size == 0 or (j != j.flat[0]).any():
        return None
    base = int(k.flat[0])
    strides = tuple(int(np.take(k, 1, axis=d).flat[0]) - base if n > 1 else 0
                    for d, n in enumerate(k.shape))
    grid = base + sum(np.arange(n).reshape([-1 if e == d else 1 for e in range(k.ndim)]) * s
                      for d, (n, s) in enumerate(zip(k.shape, strides)))
    if not np.array_equal(np.broadcast_to(grid, k.shape), k):
        return None
    return int(j.flat[0]), base, strides
