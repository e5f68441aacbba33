"""The reference backend: a numpy interpreter over the graph, one method per node kind.

It runs each node with its op's eager implementation, so it is as trustworthy as the
ops' own tests; every other backend is checked against it.

Sanitizer mode (``sanitize=True``, or ``GRAPHC_SANITIZE=1``) executes the executable's
memory plan literally: one arena (a uint8 array) shared by every intermediate at its planned
offset, in-place outputs written into their input's buffer, views left aliasing their
base, and every buffer poisoned (NaN in floats, a garbage pattern in ints and bools) when
its lifetime ends, so a wrong plan shows up as a wrong result.
"""

from __future__ import annotations

import os
from time import perf_counter_ns

import numpy as np

from .. import dtypes as dt
from .. import profiler
from ..device import device_of
from ..graph import Graph, Node
from . import register_backend
from .base import Backend, Executable


class Interpreter(Executable):
    def __init__(self, graph: Graph, check: bool = True, sanitize: bool | None = None,
                 memory_plan=None):
        super().__init__(graph)
        self.memory_plan = memory_plan
        self.check = check
        if sanitize is None:
            sanitize = os.environ.get("GRAPHC_SANITIZE", "") not in ("", "0")
        self.sanitize = bool(sanitize)
        self._arena = None
        #: (id(graph), constant name) -> its device copy (uploaded once: a GPU run must not
        #: copy from the host per call, nor at all while a CUDA graph is being captured)
        self._device_constants: dict = {}

    def __call__(self, *arrays) -> list:
        if self.check:
            self.check_inputs(arrays)
        xp = device_of(arrays[0]).xp if arrays else np
        env = {id(v): a for v, a in zip(self.runtime_inputs, arrays)}
        for v in self.graph.inputs:
            if v.role == "constant":
                env[id(v)] = self.constant(self.graph, v, xp)
        if self.sanitize:
            return self.fresh_outputs(self.run_planned(env, xp))
        prof = profiler._ACTIVE
        for node in self.graph.nodes:
            t = perf_counter_ns() if prof is not None else 0
            self.run_node(node, env, xp)
            if prof is not None:
                prof.record(node, t, perf_counter_ns() - t)
        return self.fresh_outputs([env[id(v)] for v in self.graph.outputs])

    def run_node(self, node: Node, env: dict, xp) -> None:
        """Run one node, whatever its kind: a fused kernel or a single op."""
        (self.run_op if node.body is None else self.run_fused)(node, env, xp)

    def run_op(self, node: Node, env: dict, xp) -> None:
        out = node.op.impl(xp, *[env[id(v)] for v in node.inputs], **node.attrs)
        outs = out if isinstance(out, tuple) else (out,)
        for v, o in zip(node.outputs, outs):
            env[id(v)] = xp.asarray(o)

    def run_fused(self, node: Node, env: dict, xp) -> None:
        """A fused kernel: interpret its body, op by op, with the same per-node code."""
        body = node.body
        inner = {}
        params = iter(node.inputs)
        for v in body.inputs:
            inner[id(v)] = self.constant(body, v, xp) if v.role == "constant" \
                else env[id(next(params))]
        for n in body.nodes:
            self.run_node(n, inner, xp)
        for v, o in zip(node.outputs, body.outputs):
            env[id(v)] = inner[id(o)]

    def constant(self, graph: Graph, v, xp):
        """Constant ``v`` of ``graph`` (the graph or a fused body) as an array of ``xp``."""
        data = graph.constants[v.name]
        if xp is np:
            return np.asarray(data)
        key = (id(graph), v.name)
        arr = self._device_constants.get(key)
        if arr is None:
            arr = self._device_constants[key] = xp.asarray(data)
        return arr

    # -- sanitizer ------------------------------------------------------------------------
    def run_planned(self, env: dict, xp) -> list:
        """Run the memory plan literally (see the module docstring): each node's results
        are copied into their planned buffers, and buffers are poisoned as they die."""
        from ..passes.memory import ARENA, INPUT, OUTPUT, plan_memory
        plan = self.memory_plan
        if plan is None:
            plan = self.memory_plan = plan_memory(self.graph)
        if plan.graph is not self.graph:
            raise ValueError("the memory plan was made for another graph")
        if self._arena is None or not isinstance(self._arena, xp.ndarray) or \
                self._arena.size != plan.arena_bytes:
            self._arena = xp.empty(plan.arena_bytes, xp.uint8)
        self._arena.fill(0xFF)  # NaN in every float dtype: a read before a write shows
        values = {v.name: v for v in self.graph.values()}
        memory = {}   # buffer root -> its bytes (a flat uint8 array)

        def place(v, like=None):
            """The planned home of value v, as an array of its type; in the layout of
            ``like`` where that is a dense permutation of axes (numpy's results can be
            F-ordered, and a reduction's rounding depends on the layout it reads)."""
            flat = memory[plan.buffer_of[v.name]]
            size = v.type.size * dt.to_numpy(v.dtype).itemsize
            home = flat[:size].view(dt.to_numpy(v.dtype))
            if like is not None and _dense(like) and not like.flags.c_contiguous:
                return xp.lib.stride_tricks.as_strided(home, like.shape, like.strides)
            return home.reshape(v.shape)

        for root, (offset, n) in plan.offsets.items():
            memory[root] = self._arena[offset:offset + n]
        dying: dict[int, list] = {}
        hosts = {plan.buffer_of[inp] for _, inp in plan.inplace}
        for b in plan.buffers.values():
            if b.kind == ARENA or (b.kind == INPUT and b.root in hosts):
                dying.setdefault(b.end, []).append(b)
            if b.kind == INPUT and b.root in hosts:  # donated and reused: written in place
                v = values[b.root]
                a = env[id(v)]
                if not (a.flags.c_contiguous and a.flags.writeable):
                    a = xp.ascontiguousarray(a).copy()
                memory[b.root] = a.reshape(-1).view(xp.uint8)
                env[id(v)] = place(v)
        for step, i in enumerate(plan.order):
            node = self.graph.nodes[i]
            self.run_node(node, env, xp)
            results = [env[id(v)] for v in node.outputs]
            if len(results) > 1:  # one may alias an input that another is written over
                results = [r.copy() for r in results]
            for v, r in zip(node.outputs, results):
                if v.name in plan.aliases:
                    continue  # a view of its input's buffer, as the op made it
                b = plan.buffers[plan.buffer_of[v.name]]
                if b.root == v.name and b.kind == OUTPUT:
                    memory[b.root] = xp.empty(b.nbytes, xp.uint8)  # per call: never reused
                home = place(v, r)
                home[...] = r
                env[id(v)] = home
            for b in dying.get(step, ()):
                _poison(memory[b.root], b.dtype, xp)
        return [env[id(v)] for v in self.graph.outputs]


def _dense(a) -> bool:
    """Whether ``a`` covers exactly its own bytes, in some order of its axes."""
    dims = sorted((s, n) for s, n in zip(a.strides, a.shape) if n != 1)
    step = a.itemsize
    for s, n in dims:
        if s != step:
            return False
        step *= n
    return True


def dead_buffers(plan, steps: list[int], arena) -> list[list]:
    """For a backend's sanitizer: per scheduled step k (which runs plan step
    ``steps[k]``), the arena buffers whose lifetime ended before it, as (their bytes in
    ``arena``, dtype), to poison before that step runs."""
    from ..passes.memory import ARENA
    dying: list[list] = [[] for _ in steps]
    for b in plan.buffers.values():
        if b.kind != ARENA:
            continue
        k = next((k for k, s in enumerate(steps) if s > b.end), None)
        if k is not None:
            offset, n = plan.offsets[b.root]
            dying[k].append((arena[offset:offset + n], b.dtype))
    return dying


def _poison(flat, dtype: str, xp) -> None:
    """Fill a dead buffer with values no correct computation reads back."""
    if dt.is_float(dtype):
        flat.view(dt.to_numpy(dtype))[...] = xp.nan
    elif dtype == "bool":
        flat[0::2], flat[1::2] = 1, 0
    else:
        flat[...] = 0xA5


@register_backend
class ReferenceBackend(Backend):
    name = "reference"

    def compile(self, graph: Graph, **options) -> Executable:
        return Interpreter(graph, **options)
