"""Block-copy nodes (`graphc.backends.block_copies`: concat, stack, slice, split moving
whole blocks) as native flat copies in the LLVM program; the interpreter's path runs the op
itself."""

from __future__ import annotations

from ...graph import Node
from ..block_copies import copy_spec, runs
from ..locations import Loc, run_on_host
from .program import elementwise_calls


class InjectiveKernel:
    def __init__(self, node: Node, name: str):
        self.node, self.name = node, name
        self.runs = runs(node)

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
        for out, out_runs in zip(outs, self.runs):
            flat_out = out.array.reshape(-1)
            item = flat_out.itemsize
            for j, k, p, n in out_runs:
                src = ins[j]
                dst = Loc(out.slot, out.offset + p * item, flat_out[p:p + n])
                src = Loc(src.slot, src.offset + k * item, src.array.reshape(-1)[k:k + n])
                spec = copy_spec(self.name, n, dtype)
                copy = elementwise_calls(spec, at.builder.add_kernel(spec), [src], [dst])
                if copy is None:
                    return None
                calls += copy
        return calls

    def run(self, env: dict) -> None:
        node = self.node
        for v, out in zip(node.outputs, run_on_host(node, [env[id(v)] for v in node.inputs])):
            env[id(v)] = out
