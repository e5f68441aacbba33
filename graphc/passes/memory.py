"""Memory planning: an execution order, in-place reuse, views, and one shared arena.

`plan_memory` is an analysis, not a Graph -> Graph pass: it reads the optimized graph (and
the op facts ``inplace`` / ``view_of``, never op names) and returns a `MemoryPlan` that a
backend executes literally. The steps:

1. Order. The graph's node order is valid; a greedy reorder that runs a node as soon as it
   frees at least as much memory as it allocates (a gradient consumed by its parameter
   update, an activation's last use) is tried too, and the order with the smaller arena
   is kept.
2. Buffers. Every value lives in the buffer of a *root*: a graph input, a constant, or a
   node output of its own. A view (``op.view_of``) lives in its input's buffer; an
   in-place output (``op.inplace``) takes the buffer of an input when every value in that
   buffer dies at this node, sizes and dtypes agree, the input reads the buffer in its own
   layout (no transposing view: an elementwise kernel writes element i after reading
   element i, nothing else), and the buffer is not a graph input unless it was donated. A
   buffer lives from its root's definition to the last use of any value in it. A fused
   node is one kernel with its node inputs and outputs; an ``elementwise`` kernel (one
   domain, inputs read by broadcast index) may write any output over any input it reads
   whole, under the same conditions.
3. Kinds. A buffer holding a graph output is an *output* buffer, allocated per call, so
   results handed to the user never alias the arena a later call overwrites (and no later
   node writes it: it never dies). Inputs and constants are the caller's. Everything else
   is an *arena* buffer.
4. Arena. Arena buffers get 64-byte aligned offsets in one arena such that buffers whose
   lifetimes overlap never overlap in memory: several greedy placements (largest first at
   the lowest or best fitting offset, and by breadth: the most crowded step first), the
   smallest arena wins.

Sizes are counted rounded up to the 64-byte alignment everywhere, so the numbers compare.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from .. import dtypes as dt
from ..errors import GraphcError
from ..graph import Graph, Node, Value

ALIGN = 64

#: Buffer kinds: where a buffer's memory comes from.
ARENA, OUTPUT, INPUT, CONSTANT = "arena", "output", "input", "constant"


def nbytes(v: Value) -> int:
    return math.prod(v.shape) * dt.to_numpy(v.dtype).itemsize


def aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def format_bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


@dataclass
class Buffer:
    """One piece of memory: its root value, the values living in it, and its lifetime in
    steps of the plan's order (-1: before the first node; len(order): still live at the
    end, returned to the caller)."""

    root: str
    nbytes: int
    dtype: str
    kind: str
    start: int
    end: int
    values: list[str] = field(default_factory=list)
    offset: int | None = None   # arena buffers only

    @property
    def size(self) -> int:
        return aligned(self.nbytes)


@dataclass
class MemoryPlan:
    """How to run a graph in memory. ``order``: node indices in execution order;
    ``offsets``: arena buffer (root value name) -> (offset, nbytes); ``aliases``: view value
    -> the value it views; ``inplace``: (output, input) pairs where the output took the
    input's buffer; ``buffer_of``: every value -> its buffer's root; ``buffers``: root ->
    `Buffer`. Byte counts: ``naive_bytes`` every op output of the source graph in its own
    buffer (an imperative run), ``inplace_bytes`` the arena buffers after in-place and views
    but without sharing, ``arena_bytes`` the arena, ``lower_bound_bytes`` the most arena
    bytes live at one step of ``order``; ``output_bytes`` the per-call output buffers."""

    graph: Graph = field(repr=False)
    order: list[int]
    offsets: dict[str, tuple[int, int]]
    aliases: dict[str, str]
    inplace: list[tuple[str, str]]
    buffer_of: dict[str, str]
    buffers: dict[str, Buffer] = field(repr=False)
    donated: tuple[str, ...]
    naive_bytes: int
    inplace_bytes: int
    arena_bytes: int
    lower_bound_bytes: int
    output_bytes: int
    strategy: str = ""

    def nodes(self) -> list[Node]:
        """The graph's nodes in execution order."""
        return [self.graph.nodes[i] for i in self.order]

    def summary(self) -> str:
        mb = format_bytes
        ratio = (lambda a, b: f"{a / b:.1%}" if b else "-")
        return (f"naive {mb(self.naive_bytes)}, in-place {mb(self.inplace_bytes)}, arena "
                f"{mb(self.arena_bytes)} ({ratio(self.arena_bytes, self.naive_bytes)} of "
                f"naive, {ratio(self.arena_bytes, self.lower_bound_bytes)} of the lower "
                f"bound {mb(self.lower_bound_bytes)}), outputs {mb(self.output_bytes)}")

    def __str__(self) -> str:
        lines = [f"memory plan of {self.graph.name}: {self.summary()}",
                 f"  {len(self.order)} steps, {len(self.inplace)} in-place, "
                 f"{len(self.aliases)} views, order: {self.strategy}",
                 f"  {'buffer':<24} {'kind':<8} {'bytes':>10} {'offset':>10}  "
                 f"{'live':<11} values"]
        for b in sorted(self.buffers.values(),
                        key=lambda b: ({ARENA: 0, OUTPUT: 1, INPUT: 2, CONSTANT: 3}[b.kind],
                                       b.offset or 0, b.start)):
            if b.kind in (INPUT, CONSTANT) and len(b.values) == 1:
                continue
            offset = "" if b.offset is None else str(b.offset)
            end = "end" if b.end >= len(self.order) else str(b.end)
            shared = ", ".join(v + ("@" if v in self.aliases else "")
                               for v in b.values[1:])
            lines.append(f"  %{b.root:<23} {b.kind:<8} {b.nbytes:>10} {offset:>10}  "
                         f"{b.start:>4}..{end:<5} {shared}")
        lines.append("  (@: a view; other values listed share the buffer in place)")
        return "\n".join(lines)


# -- lifetimes and buffers --------------------------------------------------------------------

def _keeps_layout(node: Node) -> bool:
    """Whether the view ``node`` makes reads its input (C-contiguous) as a C-contiguous
    array from offset 0 with every element once, so that element i of the view is element
    i of the input. Asked of the op's own impl on an np.empty array that is never touched:
    only the strides of the view it returns are looked at."""
    if len(node.inputs) != 1 or len(node.outputs) != 1:
        return False
    x, y = node.inputs[0], node.outputs[0]
    if math.prod(x.shape) != math.prod(y.shape):
        return False
    try:
        base = np.empty(x.shape, dt.to_numpy(x.dtype))
        out = node.op.impl(np, base, **node.attrs)
    except Exception:  # noqa: BLE001  (an impl that cannot run alone: not a known view)
        return False
    if not isinstance(out, np.ndarray) or out.shape != y.shape:
        return False
    if out.size <= 1:
        return True
    start = out.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    return start == 0 and np.may_share_memory(out, base) and out.flags.c_contiguous


def _inplace_inputs(node: Node, k: int) -> tuple[int, ...]:
    """The inputs whose buffer output ``k`` of ``node`` may take, by the op's facts: the
    op's ``inplace`` for its first output; for a fused kernel, what `fusion.inplace_inputs`
    derives from its body (the inputs read only at the index each output element is
    written)."""
    if node.body is not None:
        from .fusion import inplace_inputs
        return inplace_inputs(node, k)
    return node.op.inplace if k == 0 else ()


class _Builder:
    """Buffers, lifetimes and in-place decisions for one execution order."""

    def __init__(self, graph: Graph, order: list[int], donated: set[str]):
        n = len(order)
        self.last: dict[str, int] = {v.name: -1 for v in graph.inputs}
        for step, i in enumerate(order):
            node = graph.nodes[i]
            for v in node.inputs:
                self.last[v.name] = step
            for v in node.outputs:
                self.last[v.name] = step
        for v in graph.outputs:
            self.last[v.name] = n
        self.buffer_of: dict[str, str] = {}
        self.buffers: dict[str, Buffer] = {}
        self.aliases: dict[str, str] = {}
        self.view_node: dict[str, Node] = {}
        self.inplace: list[tuple[str, str]] = []
        for v in graph.inputs:
            kind = CONSTANT if v.role == "constant" else INPUT
            self._new(v, kind, -1)
        self.donated = donated
        for step, i in enumerate(order):
            self._node(graph.nodes[i], step)
        outputs = {v.name for v in graph.outputs}
        for b in self.buffers.values():
            if b.kind == ARENA and outputs.intersection(b.values):
                b.kind = OUTPUT

    def _new(self, v: Value, kind: str, step: int) -> None:
        self.buffers[v.name] = Buffer(v.name, nbytes(v), v.dtype, kind, step,
                                      self.last[v.name], [v.name])
        self.buffer_of[v.name] = v.name

    def _join(self, v: Value, root: str) -> None:
        b = self.buffers[root]
        b.values.append(v.name)
        b.end = max(b.end, self.last[v.name])
        self.buffer_of[v.name] = root

    def _node(self, node: Node, step: int) -> None:
        op = node.op
        view_of = op.view_of
        if view_of is not None:
            base = node.inputs[view_of]
            for v in node.outputs:
                self.aliases[v.name] = base.name
                self.view_node[v.name] = node
                self._join(v, self.buffer_of[base.name])
            return
        taken: set[str] = set()
        for k, v in enumerate(node.outputs):
            for idx in _inplace_inputs(node, k):
                u = node.inputs[idx]
                root = self.buffer_of[u.name]
                if root not in taken and self._can_take(node, idx, v, step):
                    taken.add(root)
                    self.inplace.append((v.name, u.name))
                    self._join(v, root)
                    break
            else:
                self._new(v, ARENA, step)

    def _chain(self, name: str) -> list[Node]:
        """The view nodes between ``name`` and its buffer's root."""
        chain = []
        while name in self.aliases:
            chain.append(self.view_node[name])
            name = self.aliases[name]
        return chain

    def _can_take(self, node: Node, idx: int, out: Value, step: int) -> bool:
        u = node.inputs[idx]
        b = self.buffers[self.buffer_of[u.name]]
        if b.kind == CONSTANT or (b.kind == INPUT and b.root not in self.donated):
            return False
        if b.end != step or nbytes(out) == 0:
            return False  # still read later (or a graph output, live to the end)
        if not (nbytes(out) == nbytes(u) == b.nbytes and out.dtype == u.dtype == b.dtype):
            return False
        # every input read from this buffer must read it in the buffer's own layout
        for v in node.inputs:
            if self.buffer_of[v.name] == b.root:
                if not all(map(_keeps_layout, self._chain(v.name))):
                    return False
        return True


# -- the arena --------------------------------------------------------------------------------

def _place(order: list[Buffer], best_fit: bool) -> dict[str, int]:
    """Offsets for buffers placed in ``order``: each at the lowest (or the tightest) gap
    left by the already placed buffers whose lifetimes overlap its own."""
    n = len(order)
    start = np.array([b.start for b in order], np.int64)
    end = np.array([b.end for b in order], np.int64)
    size = np.array([b.size for b in order], np.int64)
    offset = np.zeros(n, np.int64)
    for k in range(n):
        if size[k] == 0:
            continue
        hit = np.nonzero((start[:k] <= end[k]) & (end[:k] >= start[k]) & (size[:k] > 0))[0]
        if not hit.size:
            continue
        lo = offset[hit]
        by_lo = np.argsort(lo, kind="stable")
        lo, hi = lo[by_lo], lo[by_lo] + size[hit][by_lo]
        reach = np.maximum.accumulate(hi)
        cursor = np.concatenate(([0], reach[:-1]))     # where the gap before each begins
        gap = lo - cursor
        fits = np.nonzero(gap >= size[k])[0]
        if not fits.size:
            offset[k] = reach[-1]
        elif best_fit:
            offset[k] = cursor[fits[np.argmin(gap[fits])]]
        else:
            offset[k] = cursor[fits[0]]
    return {b.root: int(o) for b, o in zip(order, offset)}


def _live_bytes(buffers: list[Buffer], steps: int) -> np.ndarray:
    """Arena bytes live at each step (inclusive lifetimes)."""
    live = np.zeros(steps + 2, np.int64)
    for b in buffers:
        live[b.start + 1] += b.size
        live[b.end + 2] -= b.size
    return np.cumsum(live)[:-1]


def _assign(buffers: list[Buffer], steps: int) -> tuple[dict[str, int], int, str]:
    """The smallest arena among a few greedy placements: (offsets, arena bytes, name)."""
    if not buffers:
        return {}, 0, "empty"
    live = _live_bytes(buffers, steps)

    def breadth(b: Buffer) -> int:
        return int(live[b.start + 1:b.end + 2].max())

    orders = {
        "size": sorted(buffers, key=lambda b: (-b.size, b.start, b.root)),
        "size*time": sorted(buffers, key=lambda b: (-b.size * (b.end - b.start + 1),
                                                    b.start, b.root)),
        "breadth": sorted(buffers, key=lambda b: (-breadth(b), -b.size, b.start, b.root)),
    }
    best = None
    for name, order in orders.items():
        for best_fit in (False, True):
            offsets = _place(order, best_fit)
            total = max(offsets[b.root] + b.size for b in buffers)
            if best is None or total < best[1]:
                best = (offsets, total, f"{name}{'/best-fit' if best_fit else ''}")
    return best


# -- execution order --------------------------------------------------------------------------

def _memory_order(graph: Graph) -> list[int]:
    """A topological order that runs a node as soon as it frees at least as many bytes as it
    allocates (judged at the buffer level: views share their input's buffer), the most
    freeing first; otherwise the graph's own order. Moving such a node earlier never raises
    the memory in between."""
    n = len(graph.nodes)
    root: dict[str, str] = {v.name: v.name for v in graph.inputs}
    size: dict[str, int] = {}
    producer: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        view_of = node.op.view_of
        for v in node.outputs:
            root[v.name] = root[node.inputs[view_of].name] if view_of is not None else v.name
            size[v.name] = aligned(nbytes(v))
            producer[v.name] = i
    external = {v.name for v in graph.inputs} | {root[v.name] for v in graph.outputs}
    uses: dict[str, int] = {}
    reads: list[dict[str, int]] = []         # per node: buffer root -> times read
    readers: dict[str, list[int]] = {}       # buffer root -> nodes reading it
    waiting = [0] * n
    consumers: list[list[int]] = [[] for _ in range(n)]
    for i, node in enumerate(graph.nodes):
        mine: dict[str, int] = {}
        for v in node.inputs:
            mine[root[v.name]] = mine.get(root[v.name], 0) + 1
        reads.append(mine)
        for r, k in mine.items():
            uses[r] = uses.get(r, 0) + k
            readers.setdefault(r, []).append(i)
        deps = {producer[v.name] for v in node.inputs if v.name in producer}
        waiting[i] = len(deps)
        for d in deps:
            consumers[d].append(i)
    alloc = [sum(size[v.name] for v in node.outputs
                 if root[v.name] == v.name and v.name not in external)
             for node in graph.nodes]

    def net(i: int) -> int:
        return alloc[i] - sum(size.get(r, 0) for r, k in reads[i].items()
                              if uses[r] == k and r not in external)

    ready: set[int] = set()
    in_order: list[int] = []                 # heap of ready nodes by graph position
    freeing: list[tuple[int, int]] = []      # heap of (net, node) with net <= 0 (lazy)
    current: dict[int, int] = {}

    def consider(i: int) -> None:
        d = net(i)
        if current.get(i) != d:
            current[i] = d
            if d <= 0:
                heapq.heappush(freeing, (d, i))

    for i in range(n):
        if waiting[i] == 0:
            ready.add(i)
            heapq.heappush(in_order, i)
            consider(i)
    order: list[int] = []
    while ready:
        pick = None
        while freeing:
            d, i = heapq.heappop(freeing)
            if i in ready and current[i] == d:
                pick = i
                break
        while pick is None:
            i = heapq.heappop(in_order)
            if i in ready:
                pick = i
        ready.discard(pick)
        order.append(pick)
        for r, k in reads[pick].items():
            uses[r] -= k
            for j in readers[r]:
                if j in ready:
                    consider(j)
        for c in consumers[pick]:
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.add(c)
                heapq.heappush(in_order, c)
                consider(c)
    return order


# -- the plan ---------------------------------------------------------------------------------

def _donated_names(graph: Graph, donate) -> set[str]:
    runtime = [v for v in graph.inputs if v.role != "constant"]
    names = {v.name for v in runtime}
    out = set()
    for d in donate or ():
        if isinstance(d, int | np.integer) and not isinstance(d, bool):
            if not 0 <= d < len(runtime):
                raise GraphcError(f"donate: input index {d} out of range for "
                                  f"{len(runtime)} runtime inputs")
            out.add(runtime[d].name)
        elif isinstance(d, str) and d in names:
            out.add(d)
        else:
            raise GraphcError(f"donate: {d!r} is not a runtime input of {graph.name} "
                              f"(inputs: {sorted(names)})")
    return out


def naive_bytes(graph: Graph) -> int:
    """Every op output in its own buffer: what an imperative run allocates."""
    return sum(aligned(nbytes(v)) for node in graph.nodes for v in node.outputs)


def _plan_for(graph: Graph, order: list[int], donated: set[str], naive: int,
              strategy: str) -> MemoryPlan:
    b = _Builder(graph, order, donated)
    arena = [x for x in b.buffers.values() if x.kind == ARENA]
    offsets, total, placement = _assign(arena, len(order))
    for x in arena:
        x.offset = offsets[x.root]
    live = _live_bytes(arena, len(order))
    return MemoryPlan(
        graph=graph, order=order,
        offsets={x.root: (x.offset, x.nbytes) for x in arena},
        aliases=b.aliases, inplace=b.inplace, buffer_of=b.buffer_of, buffers=b.buffers,
        donated=tuple(sorted(donated)), naive_bytes=naive,
        inplace_bytes=sum(x.size for x in arena), arena_bytes=total,
        lower_bound_bytes=int(live.max()) if len(live) else 0,
        output_bytes=sum(x.size for x in b.buffers.values() if x.kind == OUTPUT),
        strategy=f"{strategy}, placement {placement}")


def plan_memory(graph: Graph, source: Graph | None = None, donate=()) -> MemoryPlan:
    """The memory plan of ``graph`` (see the module docstring).

    ``source``: the unoptimized graph, for ``naive_bytes`` (default ``graph``). ``donate``:
    runtime inputs (names, or indices among the non-constant inputs) whose buffers the
    plan may overwrite in place."""
    donated = _donated_names(graph, donate)
    naive = naive_bytes(source if source is not None else graph)
    plans = [_plan_for(graph, list(range(len(graph.nodes))), donated, naive, "graph order")]
    order = _memory_order(graph)
    if order != plans[0].order:
        plans.append(_plan_for(graph, order, donated, naive, "memory-greedy order"))
    return min(plans, key=lambda p: (p.arena_bytes, p.lower_bound_bytes))


def check_plan(plan: MemoryPlan) -> None:
    """Raise if two arena buffers whose lifetimes overlap overlap in memory, or an offset is
    misaligned: the invariant every plan keeps (tests call it on random graphs)."""
    arena = sorted((b for b in plan.buffers.values() if b.kind == ARENA and b.nbytes),
                   key=lambda b: b.start)
    for b in arena:
        off, n = plan.offsets[b.root]
        if off % ALIGN or off + n > plan.arena_bytes:
            raise GraphcError(f"buffer %{b.root} at {off}+{n} is misaligned or outside the "
                              f"arena of {plan.arena_bytes} bytes")
    for i, a in enumerate(arena):
        oa, na = plan.offsets[a.root]
        for b in arena[i + 1:]:
            if b.start > a.end:
                break
            ob, nb = plan.offsets[b.root]
            if oa < ob + nb and ob < oa + na:
                raise GraphcError(f"buffers %{a.root} (steps {a.start}..{a.end}) and "
                                  f"%{b.root} (steps {b.start}..{b.end}) are live together "
                                  f"and overlap in memory")
