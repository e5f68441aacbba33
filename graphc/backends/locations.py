"""Static locations: where every value of a planned graph lives, for backends that run a
graph as one program over the memory plan's arena.

Every value gets a *location* — a slot of a pointer table plus a byte offset, with the
layout (shape, strides) the value has there. Slot 0 is the arena (laid out by
`graphc.passes.memory.plan_memory`), then per-call slots (runtime inputs, output buffers),
then fixed ones (constants, buffers for view ops that copy). Views cost nothing: a view's
location is its base's slot and an offset, with strides, found by running the view op once
at construction on real host memory (numpy views and device views have the same layout
rules, so the same locations serve the LLVM program and the CUDA executable).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dtypes as dt
from ..graph import Graph, Node, Value
from ..passes.memory import ARENA, OUTPUT, MemoryPlan


class NotStatic(Exception):
    """The graph cannot run as a program (a view op that copies, a location outside its
    buffer...): the executable runs node by node instead."""


def run_on_host(node: Node, arrays: list) -> tuple:
    """A node's outputs computed by its op's numpy implementation (views stay views):
    how locations find where views point, and how block copies are probed."""
    out = node.op.impl(np, *arrays, **node.attrs)
    return tuple(np.asarray(o) for o in (out if isinstance(out, tuple | list) else (out,)))


@dataclass(frozen=True)
class Loc:
    """Where a value lives: ``slot`` of the pointer table, ``offset`` bytes in, laid out
    as ``array`` (a real numpy array at construction time: its shape, strides, dtype and
    flags are the value's layout, its memory a stand-in for per-call slots)."""

    slot: int
    offset: int
    array: np.ndarray

    @property
    def contiguous(self) -> bool:
        return bool(self.array.flags.c_contiguous)

    def at(self, extra: int) -> Ptr:
        return Ptr(self.slot, self.offset + extra)


def overlap(a: Loc, b: Loc) -> bool:
    """Whether two locations may share bytes (same slot, intersecting byte ranges)."""
    if a.slot != b.slot:
        return False
    def span(x: Loc) -> tuple[int, int]:
        lo = hi = x.offset
        for n, s in zip(x.array.shape, x.array.strides):
            lo, hi = (lo + (n - 1) * s, hi) if s < 0 else (lo, hi + (n - 1) * s)
        return lo, hi + x.array.itemsize
    (alo, ahi), (blo, bhi) = span(a), span(b)
    return a.array.size > 0 and b.array.size > 0 and alo < bhi and blo < ahi


@dataclass(frozen=True)
class Ptr:
    slot: int
    offset: int


def address(a: np.ndarray) -> int:
    """A host array's data pointer (cheaper than ``a.ctypes.data``)."""
    return a.__array_interface__["data"][0]


class Locations:
    """Static locations of every value of ``graph`` under ``plan``."""

    def __init__(self, graph: Graph, plan: MemoryPlan, stage_bytes: int = 0,
                 any_copy: bool = False):
        """View ops run on host arrays (`run_on_host`); output buffers of at
        most ``stage_bytes`` get a fixed slot (computed there, copied out per call). A view
        op that copies in an order other than C's raises `NotStatic`, unless ``any_copy``
        (a backend that runs such a node itself, into the buffer given to it)."""
        self.any_copy = any_copy
        self.graph, self.plan = graph, plan
        self.arena = np.empty(max(plan.arena_bytes, 64), np.uint8)
        self.fixed: dict[int, np.ndarray] = {0: self.arena}   # slot -> array held
        self.slot_of: dict[str, int] = {}   # buffer root -> slot
        self.inputs: list[tuple[int, Value]] = []   # runtime input slots, in order
        self.outputs: list[tuple[int, str]] = []    # (slot, root) of output buffers
        self.loc: dict[str, Loc] = {}
        #: view values numpy computes as copies -> the value copied (in C order)
        self.copies: dict[str, Value] = {}
        self.home: dict[str, np.ndarray] = {}  # value -> real array (arena/constants) or
        #                                        stand-in (per-call buffers)
        values = {v.name: v for v in graph.values()}
        self.values = values
        n = 1
        runtime = [v for v in graph.inputs if v.role != "constant"]
        for v in runtime:
            self.slot_of[v.name] = n
            self.inputs.append((n, v))
            self.home[v.name] = np.empty(v.shape, dt.to_numpy(v.dtype))
            n += 1
        for b in plan.buffers.values():
            if b.kind == OUTPUT:
                self.slot_of[b.root] = n
                self.outputs.append((n, b.root))
                home = self.home[b.root] = np.empty(values[b.root].shape,
                                                    dt.to_numpy(values[b.root].dtype))
                if home.nbytes <= stage_bytes:
                    self.fixed[n] = home   # computed here, copied out per call
                n += 1
        for v in graph.inputs:
            if v.role == "constant":
                data = np.asarray(graph.constants[v.name])
                if not (data.flags.c_contiguous and data.flags.aligned and
                        data.dtype.isnative):   # (ascontiguousarray makes 0-d arrays 1-d)
                    data = np.array(data, data.dtype.newbyteorder("="), order="C")
                self.slot_of[v.name] = n
                self.fixed[n] = self.home[v.name] = data
                n += 1
        self.n_slots = n
        #: the module builder, where calls may add kernel variants (set by the runtime)
        self.builder = None
        for root in plan.offsets:
            self.slot_of[root] = 0
        for name in [v.name for v in graph.inputs] + [o.name for i in plan.order
                                                      for o in graph.nodes[i].outputs]:
            self._locate(values[name])

    def new_slot(self, array: np.ndarray) -> int:
        """A fixed slot holding ``array`` (kept alive by the executable)."""
        self.fixed[self.n_slots] = array
        self.n_slots += 1
        return self.n_slots - 1

    def _locate(self, v: Value) -> None:
        plan = self.plan
        if v.name in plan.aliases:
            node = v.node
            view = run_on_host(node, [self.home[i.name] for i in node.inputs])[
                node.outputs.index(v)]
            base = self.loc[node.inputs[node.op.view_of].name]
            if not self._inside(view, base):   # numpy copied (a reshape of a transpose)
                self._copied(v, node)
                return
            self.home[v.name] = view
            self.loc[v.name] = Loc(base.slot, base.offset + address(view) -
                                   address(base.array), view)
            return
        root = plan.buffer_of[v.name]
        slot = self.slot_of[root]
        kind = plan.buffers[root].kind
        np_dtype = dt.to_numpy(v.dtype)
        if kind == ARENA:
            offset = plan.offsets[root][0]
            size = v.type.size * np_dtype.itemsize
            home = self.arena[offset:offset + size].view(np_dtype).reshape(v.shape)
            self.loc[v.name] = Loc(0, offset, home)
        else:   # input, output or constant buffer: the value fills it from byte 0
            base = self.home[root]
            home = base if v.name == root else \
                base.reshape(-1).view(np.uint8)[:v.type.size * np_dtype.itemsize] \
                .view(np_dtype).reshape(v.shape)
            self.loc[v.name] = Loc(slot, 0, home)
        self.home[v.name] = home

    def _copied(self, v: Value, node) -> None:
        """A view op that copies: its value gets a buffer of its own, filled by a copy of
        its input in C order (`copies`) — which must be what the op computes."""
        x = node.inputs[node.op.view_of]
        probe = np.arange(x.type.size, dtype=np.float64).reshape(x.shape)
        out = run_on_host(node, [probe if i is x else self.home[i.name]
                              for i in node.inputs])[node.outputs.index(v)]
        if (out.shape != v.shape or not np.array_equal(np.ravel(out), probe.ravel())) and \
                not self.any_copy:
            raise NotStatic(f"view op {node.op.name} copies, and not in C order")
        home = np.empty(v.shape, dt.to_numpy(v.dtype))
        self.home[v.name] = home
        self.loc[v.name] = Loc(self.new_slot(home), 0, home)
        self.copies[v.name] = x

    def _inside(self, view: np.ndarray, base: Loc) -> bool:
        b = base.array
        if view.size == 0:
            return True
        lo = hi = address(view)
        for n, s in zip(view.shape, view.strides):
            lo, hi = (lo + (n - 1) * s, hi) if s < 0 else (lo, hi + (n - 1) * s)
        blo = address(b)
        bhi = blo + max(b.size, 1) * b.itemsize
        return blo <= lo and hi + view.itemsize <= bhi


def strides_table(domain: tuple, ins: list[np.ndarray]) -> np.ndarray:
    """The strided elementwise variant's table: the domain's dims, then each input's
    element strides broadcast to the domain (0 on broadcast axes)."""
    ndim = len(domain)
    table = np.zeros((len(ins) + 1, ndim), np.int64)
    table[0] = domain
    for j, a in enumerate(ins, 1):
        if a.size == 1:
            continue
        lead = ndim - a.ndim
        for k, (n, s) in enumerate(zip(a.shape, a.strides)):
            if n != 1:
                table[j, lead + k] = s // a.itemsize
    return table
