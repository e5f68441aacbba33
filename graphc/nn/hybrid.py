"""The compiled call of a hybridized block, and exported blocks (`SymbolBlock`, `load`).

A hybridized block traces ``forward`` once per input signature (the input pytree, each
leaf's shape, dtype and device, and the training flag) into a graph whose runtime inputs
are the data (``data`` or ``data0, data1, ...``), one input of role 'parameter' per
Parameter read (named by `collect_params`), and the dropout keys. Parameters are read
from their tensors on every call, so ``set_data`` and optimizer updates need no retrace.
``Parameter.set_data`` inside the trace (BatchNorm's running statistics) becomes an extra
graph output that is written back after each call, as the eager forward does.

Under ``autograd.record()``, when some input or parameter needs a gradient, the call runs
the forward graph of `graphc.passes.autodiff.differentiate` (outputs plus saved values)
and leaves ONE tape entry whose VJP runs the compiled backward graph. The split is cached
per set of inputs that need gradients.
"""

from __future__ import annotations

import numpy as np

from .. import autograd, pytree, serialize
from .. import dtypes as dt
from ..device import device_of
from ..errors import GraphcError, TraceError
from ..graph import Graph
from ..tensor import Tensor, _wrap, array
from ..trace import Traced, _signature_leaf, _trace, backend_for, fast_key, feed_arrays, write_back
from ..types import TensorType
from .block import HybridBlock
from .parameter import Parameter

__all__ = ["hybrid_call", "export", "SymbolBlock", "load"]


class _Entry:
    """One trace of a block: its graph, how to feed it, and its compiled forms."""

    def __init__(self, traced: Traced, num_outputs: int, backend: str | None,
                 options: dict):
        self.traced, self.graph, self.num_outputs = traced, traced.graph, num_outputs
        self.backend, self.options = backend, options
        self._exe = None
        self.diffs: dict[tuple, object] = {}

    @property
    def exe(self):
        if self._exe is None:
            from ..passes.pipeline import compile_graph
            self._exe = compile_graph(self.graph, self.backend, **self.options)
        return self._exe

    def wrt(self, leaves: list) -> tuple[tuple[int, ...], list[Tensor]]:
        """Graph input indices that need a gradient now, and the tensors they stand for."""
        runtime = [i for i, v in enumerate(self.graph.inputs) if v.role != "constant"]
        idx, tensors = [], []
        for gi, feed in zip(runtime, self.traced.feeds):
            if not dt.is_float(self.graph.inputs[gi].dtype) or feed[0] == "key":
                continue
            t = leaves[feed[1]] if feed[0] == "data" else feed[1].value()
            if isinstance(t, Tensor) and t._node is not None and (
                    feed[0] != "state" or feed[1].grad_req != "null"):
                idx.append(gi)
                tensors.append(t)
        return tuple(idx), tensors

    def __call__(self, leaves: list):
        arrays = feed_arrays(self.traced, leaves)
        wrt, tensors = self.wrt(leaves) if autograd.is_recording() else ((), [])
        if not wrt:
            outs = list(self.exe(*arrays))
            result = [_wrap(o) for o in outs[:self.num_outputs]]
        else:
            diff = self.diffs.get(wrt)
            if diff is None:
                from ..passes.autodiff import differentiate
                diff = self.diffs[wrt] = differentiate(self.graph, list(wrt))
                diff.options = self.options
            outs, saved = diff.run_forward(*arrays, backend=self.backend)
            outs = list(outs)
            result = [_wrap(o) for o in outs[:self.num_outputs]]
            autograd.record_entry(self._vjp(diff, saved, outs), tensors, tuple(result),
                                  self.graph.name)
        if self.traced.updates:
            write_back(self.traced, outs)
        if self.traced.out_tree == ("*",):
            return result[0]
        return pytree.unflatten(self.traced.out_tree, result)

    def _vjp(self, diff, saved: list, outs: list):
        backend, n, graph = self.backend, self.num_outputs, self.graph

        def vjp(gs):
            cts = []
            for i in diff.cotangent_outputs:
                v = graph.outputs[i]
                g = gs[i] if i < n else None
                if g is None:  # a state update's output: nothing flows back from it
                    cts.append(_zeros_as(outs[i]))
                    continue
                g = g._data if isinstance(g, Tensor) else np.asarray(g)
                if dt.name_of(g.dtype) != v.dtype:
                    g = g.astype(dt.to_numpy(v.dtype))
                cts.append(g)
            return tuple(_wrap(a) for a in diff.run_backward(saved, cts, backend=backend))

        return vjp


def _zeros_as(a):
    device = device_of(a)
    with device.scope():
        return device.xp.zeros(a.shape, a.dtype)


def _input_names(n: int) -> list[str]:
    return ["data"] if n == 1 else [f"data{i}" for i in range(n)]


def _trace_block(block, args: tuple, kwargs: dict, training: bool, backend,
                 options) -> _Entry:
    n = len(pytree.flatten((args, kwargs))[0])
    names = {id(p): k for k, p in block.collect_params().items()}
    with autograd.mode(recording=False, training=training):
        traced = _trace(block.forward, args, kwargs, type(block).__name__,
                        input_names=_input_names(n), state_names=names)
    num_outputs = len(traced.graph.outputs) - len(traced.updates)
    return _Entry(traced, num_outputs, backend_for(backend, traced.device), options)


def _options(block) -> tuple[str | None, dict]:
    opts = dict(block._hybrid_options)
    backend = opts.pop("backend", None)
    opts.pop("static_alloc", None)
    opts.pop("static_shape", None)
    return backend, opts


def hybrid_call(block: HybridBlock, args: tuple, kwargs: dict):
    """Run ``block`` through its compiled graph for this input signature."""
    fast = None if kwargs else fast_key(args)
    if fast is not None:
        entry = block._fast.get(fast)
        if entry is not None:
            object.__setattr__(block, "_last_call", (args, kwargs))
            return entry(list(args))
    leaves, in_tree = pytree.flatten((args, kwargs))
    sig = tuple(_signature_leaf(x) for x in leaves)
    key = (in_tree, sig, autograd.is_training())
    try:
        entry = block._cached.get(key)
    except TypeError:
        raise TraceError(f"{type(block).__name__}: non-tensor arguments of a hybridized "
                         "block must be hashable (they key its compile cache)") from None
    if entry is None:
        backend, options = _options(block)
        entry = block._cached[key] = _trace_block(block, args, kwargs, key[2], backend,
                                                  options)
    if fast is not None:
        block._fast[fast] = entry
    object.__setattr__(block, "_last_call", (args, kwargs))
    return entry(leaves)


def export(block: HybridBlock, path: str, epoch: int | None = None) -> tuple[str, str]:
    """Trace ``block`` in prediction mode at its last call's input signature and write
    ``path-graph.json`` and ``path-params.safetensors``."""
    last = getattr(block, "_last_call", None)
    if last is None:
        raise GraphcError(f"{type(block).__name__}.export: call hybridize() and run the block "
                          "once on an example input first; the graph is recorded at that "
                          "input's shapes")
    entry = _trace_block(block, *last, False, None, {})
    graph = entry.graph
    if entry.traced.updates:  # state updates are a training-time effect; export predicts
        graph.outputs = graph.outputs[:entry.num_outputs]
    params = {v.name: obj.value().numpy() for obj, v in _state_inputs(entry)}
    serialize.save_graph(graph, path, params)
    return serialize._paths(path)


def _state_inputs(entry: _Entry) -> list:
    runtime = [v for v in entry.graph.inputs if v.role != "constant"]
    return [(feed[1], v) for feed, v in zip(entry.traced.feeds, runtime) if feed[0] == "state"]


# -- exported blocks ------------------------------------------------------------------------

class SymbolBlock(HybridBlock):
    """A block that runs a stored graph: no Python source of the model is needed.

    Parameters are the graph's 'parameter' inputs, named as the original block's
    `collect_params`. Calls with other input shapes (another batch size) rebuild the graph
    by replaying its nodes on the new inputs, so every op's type rule runs again."""

    def __init__(self, graph: Graph, input_names, params: dict | None = None):
        super().__init__()
        names = [input_names] if isinstance(input_names, str) else list(input_names)
        data = [v.name for v in graph.data_inputs]
        if sorted(names) != sorted(data):
            raise GraphcError(f"SymbolBlock: input_names {names} do not match the graph's "
                              f"data inputs {data}")
        object.__setattr__(self, "_graph", graph)
        object.__setattr__(self, "_input_names", names)
        params = dict(params or {})
        for v in graph.inputs_by_role("parameter"):
            if v.name not in params:
                raise GraphcError(f"SymbolBlock: parameter '{v.name}' ({v.type}) of the graph "
                                  "is missing from the parameters file")
            value = np.asarray(params.pop(v.name))
            if tuple(value.shape) != v.type.shape:
                raise GraphcError(f"SymbolBlock: parameter '{v.name}' has shape "
                                  f"{v.type.shape} in the graph but {tuple(value.shape)} "
                                  "in the parameters file")
            p = Parameter(v.name, v.type.shape, v.type.dtype)
            p.set_data(value)
            self._reg_params[v.name] = p
        if params:
            raise GraphcError(f"SymbolBlock: the parameters file has '{next(iter(params))}', "
                              "which is not an input of the graph")
        for v in graph.inputs_by_role("state"):
            if not (v.type == TensorType((), "int64") and v.name.startswith("rng_key")):
                raise GraphcError(f"SymbolBlock: state input %{v.name} ({v.type}) is not a "
                                  "dropout key; graphc cannot feed it")

    @property
    def graph(self) -> Graph:
        return self._graph

    def __repr__(self) -> str:
        return (f"SymbolBlock({self._graph.name}: inputs {self._input_names}, "
                f"{len(self._reg_params)} parameters)")

    def forward(self, *args):
        from ..random import next_key
        from ..tensor import apply
        graph = self._graph
        if len(args) != len(self._input_names):
            raise GraphcError(f"SymbolBlock takes {len(self._input_names)} inputs "
                              f"{self._input_names}, got {len(args)}")
        given = dict(zip(self._input_names, args))
        env: dict[int, Tensor] = {}
        first = None
        # constants go where the inputs are (a traced forward lifts them back anyway)
        device = next((x.device if isinstance(x, Tensor) else device_of(x) for x in args
                       if not (isinstance(x, Tensor) and x._sym is not None)), None)
        for v in graph.inputs:
            if v.role == "data":
                x = given[v.name]
                x = x if isinstance(x, Tensor) else array(x, dtype=v.type.dtype)
                if dt.name_of(x.dtype) != v.type.dtype:
                    x = x.astype(v.type.dtype)
                if x.ndim != v.type.ndim:
                    raise GraphcError(f"SymbolBlock: input '{v.name}' has shape "
                                      f"{tuple(x.shape)}, but the graph takes rank "
                                      f"{v.type.ndim} like {v.type.shape}")
                env[id(v)] = x
                first = x if first is None else first
            elif v.role == "parameter":
                env[id(v)] = self._reg_params[v.name].data()
            elif v.role == "constant":
                env[id(v)] = array(graph.constants[v.name], device=device)
        for v in graph.inputs_by_role("state"):
            env[id(v)] = next_key(like=first)
        for node in graph.nodes:
            outs = apply(node.op, *[env[id(v)] for v in node.inputs], **node.attrs)
            for v, o in zip(node.outputs, outs if isinstance(outs, tuple) else (outs,)):
                env[id(v)] = o
        outs = [env[id(v)] for v in graph.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    @staticmethod
    def imports(symbol_file: str, input_names, param_file: str | None = None,
                device=None, ctx=None) -> SymbolBlock:
        """A block from a graph JSON file and its parameters (safetensors) file."""
        tensors = serialize.load_safetensors(param_file) if param_file is not None else {}
        with open(symbol_file, "rb") as f:
            text = f.read()
        graph = serialize.graph_from_json(text, tensors=tensors)
        params = {v.name: tensors[v.name] for v in graph.inputs_by_role("parameter")
                  if v.name in tensors}
        block = SymbolBlock(graph, input_names, params)
        device = device if device is not None else ctx
        if device is not None:
            block.reset_device(device)
        block.hybridize()
        return block


def load(prefix: str, device=None) -> SymbolBlock:
    """The block `HybridBlock.export(prefix)` wrote, hybridized and ready to call."""
    graph, params = serialize.load_graph(prefix)
    block = SymbolBlock(graph, [v.name for v in graph.data_inputs], params)
    if device is not None:
        block.reset_device(device)
    block.hybridize()
    return block
