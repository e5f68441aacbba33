"""From Python to graphs: tracing (`trace`, `jit`) and the symbolic API (`Variable`, `compile`).

Tracing runs the user's function once on symbolic tensors that carry the example inputs'
shapes and dtypes: every op call goes through `tensor.apply`, which hands it to the
active `Tracer`, which appends a node to its graph. Nothing is computed. Concrete tensors
and numpy arrays the function closes over become constants.

`Variable` expressions have no types until they are called, so they are recorded as a
DAG of deferred calls; `compile` replays that DAG under a Tracer once per input signature.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import numpy as np

from . import autograd, pytree
from . import dtypes as dt
from . import tensor as tensor_mod
from .device import Device, DeviceError, cpu, device_of
from .errors import BackendError, GraphcError, TraceError, user_location
from .graph import Graph, Value
from .ops.registry import Op
from .tensor import Tensor, _wrap, array, prepare_inputs, symbolic
from .types import TensorType

_scopes: list[str] = []


@contextlib.contextmanager
def name_scope(name: str):
    """Prefix the names of nodes traced inside, as in ``dense0/matmul``."""
    _scopes.append(name)
    try:
        yield
    finally:
        _scopes.pop()


def _scoped(name: str) -> str:
    return "/".join([*_scopes, name])


# -- tracing ---------------------------------------------------------------------------

class TracedValue:
    """The ``_sym`` of a traced Tensor: a graph value of one tracer."""

    __slots__ = ("value", "tracer")

    def __init__(self, value: Value, tracer: Tracer):
        self.value, self.tracer = value, tracer

    @property
    def type(self) -> TensorType:
        return self.value.type

    @property
    def device(self) -> Device:
        return self.tracer.device


class Tracer:
    level = 1

    def __init__(self, name: str = "graph", device: Device | None = None):
        self.graph = Graph(name)
        self.device = device or cpu()
        #: no input said where the trace runs: the first state read (a parameter) decides
        self.device_free = device is None
        self.keys: list[Value] = []
        self.loc: str | None = None  # set while replaying recorded calls
        self._captured: dict[int, tuple[Tensor, Value]] = {}
        self.state_names: dict[int, str] = {}
        self.state_inputs: dict[int, tuple[object, Value]] = {}
        self.state_leaves: dict[int, Tensor] = {}
        self.state_current: dict[int, Tensor] = {}
        self.state_updates: dict[int, tuple[object, Tensor]] = {}

    def input(self, name: str | None, type: TensorType, role: str = "data") -> Tensor:
        return symbolic(TracedValue(self.graph.add_input(name, type, role), self))

    # Stateful objects (nn.Parameter) read while tracing become inputs of role 'parameter',
    # read afresh on every call; their writes (BatchNorm's running statistics, an optimizer
    # step inside gc.jit) become extra outputs that the call writes back. An object must
    # offer ``name``, ``dtype`` and ``value()`` (its current concrete Tensor).
    def read_state(self, obj) -> Tensor:
        hit = self.state_current.get(id(obj))
        if hit is None:
            value = obj.value()
            name = self.state_names.get(id(obj), obj.name)
            if value.device != self.device:
                if not self.device_free:
                    raise DeviceError(f"'{name}' is on {value.device} but the traced inputs "
                                      f"are on {self.device}; move the model or the inputs "
                                      "(net.to(device), x.to(device))", loc=user_location())
                self.device = value.device
            self.device_free = False
            hit = self.input(name, TensorType(tuple(value.shape), obj.dtype), "parameter")
            if isinstance(value._node, autograd.Leaf):  # a backward in the trace fills it
                hit._node = autograd.Leaf(value._node.grad_req)
            self.state_inputs[id(obj)] = (obj, hit._sym.value)
            self.state_leaves[id(obj)] = hit
            self.state_current[id(obj)] = hit
        return hit

    def state_grad(self, obj) -> Tensor | None:
        """The gradient a backward inside this trace computed for ``obj`` (or None)."""
        leaf = self.state_leaves.get(id(obj))
        return None if leaf is None else leaf._grad

    def write_state(self, obj, value) -> None:
        value = value if isinstance(value, Tensor) else array(value)
        current = self.read_state(obj)
        if tuple(value.shape) != tuple(current.shape):
            raise TraceError(f"'{self.state_names.get(id(obj), obj.name)}': set_data got shape "
                             f"{tuple(value.shape)}, expected {tuple(current.shape)}",
                             loc=user_location())
        if value.dtype != current.dtype:
            value = value.astype(current.dtype)
        self.state_current[id(obj)] = value
        self.state_updates[id(obj)] = (obj, value)

    def constant(self, data) -> Tensor:
        """A constant as a traced tensor, so that ops on it become nodes (not folded now)."""
        return symbolic(TracedValue(self.graph.add_constant(np.asarray(data)), self))

    def new_key(self) -> Tensor:
        """A dropout key: an int64 input the executable draws per call (see graphc.random)."""
        t = self.input(f"rng_key{len(self.keys)}", TensorType((), "int64"), "state")
        self.keys.append(t._sym.value)
        return t

    def lift(self, t: Tensor) -> Value:
        if t._sym is not None:
            if getattr(t._sym, "tracer", None) is not self:
                raise TraceError("a tensor from another trace was used here; return it from "
                                 "that function instead of keeping it", loc=user_location())
            return t._sym.value
        hit = self._captured.get(id(t))
        if hit is None:
            data = t.numpy()
            hit = self._captured[id(t)] = (t, self.graph.add_constant(data))
        return hit[1]

    def apply(self, op: Op, args: tuple, attrs: dict):
        inputs = prepare_inputs(op, args)
        node = self.graph.add_node(op, [self.lift(t) for t in inputs], attrs,
                                   name=_scoped(op.name), loc=self.loc or user_location())
        outs = tuple(symbolic(TracedValue(v, self)) for v in node.outputs)
        outs = outs if op.num_outputs != 1 else outs[0]
        if tensor_mod.autograd_hook is not None:  # gc.grad inside gc.jit records here
            tensor_mod.autograd_hook(op, inputs, node.attrs, outs)
        return outs

    def finish(self, outputs: list) -> Graph:
        """Close the graph: ``outputs``, then the state updates (in write order).

        Parameters with grad_req 'null' that this graph does not write are recorded as
        frozen (Gluon's way to freeze a layer), which lets passes fold them."""
        for t in [*outputs, *(v for _, v in self.state_updates.values())]:
            if not isinstance(t, Tensor):
                t = array(t)
            self.graph.outputs.append(self.lift(t))
        frozen = [v.name for key, (obj, v) in self.state_inputs.items()
                  if getattr(obj, "grad_req", None) == "null" and key not in self.state_updates]
        if frozen:
            self.graph.meta["frozen"] = frozen
        return self.graph.validate()

    def feeds(self, data: list[Value]) -> list[tuple]:
        """How to fill each runtime input per call: ('data', i), ('state', obj), ('key',)."""
        source = {id(v): ("data", i) for i, v in enumerate(data)}
        source.update({id(v): ("state", obj) for obj, v in self.state_inputs.values()})
        source.update({id(v): ("key",) for v in self.keys})
        return [source[id(v)] for v in self.graph.inputs if v.role != "constant"]


#: The traces that stateful objects (nn.Parameter) see, innermost last.
active: list[Tracer] = []


@contextlib.contextmanager
def tracing(tracer: Tracer):
    active.append(tracer)
    try:
        yield tracer
    finally:
        active.pop()


_CPU = cpu()


def _signature_leaf(x) -> tuple:
    """(shape, dtype, device) of a tensor or array argument: what a compiled graph is for."""
    if isinstance(x, Tensor):
        if x._sym is not None:
            return (x.shape, x._sym.type.dtype, x.device)
        x = x._data
    device = _CPU if type(x) is np.ndarray else device_of(x)
    return (tuple(x.shape), dt.name_of(x.dtype), device)


class Traced:
    """One trace of a function: its graph and how to feed it and unpack its results.

    ``feeds`` says what fills each runtime input (see `Tracer.feeds`); the graph's outputs
    are the ``out_tree`` leaves followed by one value per object in ``updates``."""

    def __init__(self, graph: Graph, out_tree: tuple, feeds: list[tuple], updates: list,
                 device: Device | None = None):
        self.graph, self.out_tree, self.feeds, self.updates = graph, out_tree, feeds, updates
        #: where the traced function ran (its inputs' and parameters' device)
        self.device = device or _CPU


def trace_device(sig: list[tuple], what: str = "the inputs") -> Device | None:
    """The one device of the signature leaves ``(shape, dtype, device)``; 0-d host arrays
    follow the others (as in eager calls). None when no leaf says (no leaves, or scalars)."""
    found = None
    for shape, _, device in sig:
        if device.type == "cpu" and shape == ():
            continue
        if found is None:
            found = device
        elif device != found:
            raise DeviceError(f"{what} are on different devices, {found} and {device}; a "
                              "traced function runs on one device: move them with "
                              "x.to(device)", loc=user_location())
    return found


#: backends that run on the CPU only (the others are handed arrays of any device)
_HOST_BACKENDS = ("llvm",)


def backend_for(backend: str | None, device: Device) -> str | None:
    """The backend to compile for ``device``: the one named, else the default (None: see
    `graphc.backends.DEFAULT`) on the CPU and 'cuda' on a GPU."""
    if device.type == "cpu":
        return backend
    if backend is None:
        return "cuda"
    if backend in _HOST_BACKENDS:
        raise BackendError(f"backend {backend!r} runs on the CPU, but the inputs are on "
                           f"{device}: use backend='cuda' (or None), or move the inputs "
                           "with x.to('cpu')")
    return backend


def _trace(fn: Callable, args: tuple, kwargs: dict, name: str | None = None,
           input_names: list[str] | None = None, state_names: dict | None = None) -> Traced:
    leaves, in_tree = pytree.flatten((args, kwargs))
    sig = [_signature_leaf(x) for x in leaves]
    tracer = Tracer(name or getattr(fn, "__name__", "graph"), trace_device(sig))
    tracer.state_names = state_names or {}
    names = input_names or _leaf_names(fn, args, kwargs, len(leaves))
    sym = [tracer.input(n, TensorType(s, d)) for n, (s, d, _) in zip(names, sig)]
    s_args, s_kwargs = pytree.unflatten(in_tree, sym)
    with tracing(tracer):
        out = fn(*s_args, **s_kwargs)
    out_leaves, out_tree = pytree.flatten(out)
    graph = tracer.finish(out_leaves)
    return Traced(graph, out_tree, tracer.feeds([t._sym.value for t in sym]),
                  [obj for obj, _ in tracer.state_updates.values()], tracer.device)


def feed_arrays(traced: Traced, leaves: list) -> list:
    """The runtime input arrays of one call: data, current state values, fresh keys."""
    from .random import next_key_value
    arrays = []
    for feed in traced.feeds:
        if feed[0] == "data":
            x = leaves[feed[1]]
            arrays.append(x._data if isinstance(x, Tensor) else x)
        elif feed[0] == "state":
            arrays.append(feed[1].value()._data)
        else:
            arrays.append(np.asarray(next_key_value(), np.int64))
    return arrays


def _root(a):
    """The array that owns ``a``'s memory (the end of its ``.base`` chain)."""
    while hasattr(getattr(a, "base", None), "shape"):  # numpy or cupy views
        a = a.base
    return a


def _address(a) -> int:
    return a.ctypes.data if type(a) is np.ndarray else a.data.ptr  # (cupy: a MemoryPointer)


def _updated_state(traced: Traced) -> tuple[str, ...]:
    """The graph inputs of state the trace writes (parameters and optimizer state of a
    training step): donated, since `write_back` overwrites them anyway, so the updates
    are computed in those buffers and need no copy back."""
    updated = {id(obj) for obj in traced.updates}
    runtime = [v for v in traced.graph.inputs if v.role != "constant"]
    return tuple(v.name for feed, v in zip(traced.feeds, runtime)
                 if feed[0] == "state" and id(feed[1]) in updated)


def write_back(traced: Traced, outs: list, donated: bool = False) -> list:
    """Store the state updates (the trailing outputs) in place; return the user outputs.

    ``donated``: the executable may have computed an update in a donated state buffer —
    its own (then nothing is copied) or another state's (the memory plan pairs any dying
    input with any output): such an update is copied before anything is written."""
    n = len(outs) - len(traced.updates)
    updates = [(obj.value()._data, value) for obj, value in zip(traced.updates, outs[n:])]
    if donated:
        owner = {id(_root(data)): data for data, _ in updates}
        checked = []
        for data, value in updates:
            home = owner.get(id(_root(value)))
            if home is not None and home is not data:
                value = value.copy()      # lives in another state's buffer
            elif home is data and value.shape == data.shape and \
                    value.strides == data.strides and _address(value) == _address(data):
                value = None              # computed in place: nothing to copy
            checked.append((data, value))
        updates = checked
    for data, value in updates:
        if value is not None and value is not data:
            data[...] = value
    return outs[:n]


def _leaf_names(fn, args, kwargs, n: int) -> list[str | None]:
    """Graph input names from the function's parameter names where each is one tensor."""
    try:
        import inspect
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    names: list[str | None] = []
    for i, a in enumerate(args):
        count = len(pytree.flatten(a)[0])
        base = params[i] if i < len(params) else f"arg{i}"
        names += [base] if count == 1 else [f"{base}_{j}" for j in range(count)]
    for k, v in kwargs.items():
        count = len(pytree.flatten(v)[0])
        names += [k] if count == 1 else [f"{k}_{j}" for j in range(count)]
    return names[:n] + [None] * (n - len(names))


def trace(fn: Callable, *args, **kwargs) -> Graph:
    """The graph of ``fn`` applied to example inputs ``args`` (pytrees of tensors/arrays)."""
    return _trace(fn, args, kwargs).graph


def _donated_inputs(traced: Traced, fn: Callable, args: tuple, kwargs: dict,
                    donate) -> tuple[str, ...]:
    """The graph inputs ``donate`` names: argument positions or parameter names of ``fn``
    (every tensor leaf of that argument), or graph input names (a Parameter read while
    tracing is an input named after it)."""
    donate = (donate,) if isinstance(donate, int | str) else tuple(donate)
    spans, start = {}, 0
    for key, a in [*enumerate(args), *kwargs.items()]:
        n = len(pytree.flatten(a)[0])
        spans[key], start = range(start, start + n), start + n
    try:
        import inspect
        params = list(inspect.signature(fn).parameters)[:len(args)]
    except (TypeError, ValueError):
        params = []
    runtime = [v for v in traced.graph.inputs if v.role != "constant"]
    leaf_input = {feed[1]: v.name for feed, v in zip(traced.feeds, runtime)
                  if feed[0] == "data"}
    names: list[str] = []
    for d in donate:
        key = params.index(d) if isinstance(d, str) and d in params else d
        if not isinstance(key, bool) and key in spans:
            names += [leaf_input[j] for j in spans[key] if j in leaf_input]
        elif isinstance(d, str) and any(v.name == d for v in runtime):
            names.append(d)
        else:
            raise TraceError(f"donate: {d!r} is neither an argument of "
                             f"{getattr(fn, '__name__', 'the function')} nor an input of its "
                             f"graph ({[v.name for v in runtime]})", loc=user_location())
    return tuple(dict.fromkeys(names))


def _compile_graph(graph: Graph, backend: str | None, options: dict):
    from .passes.pipeline import compile_graph
    return compile_graph(graph, backend, **options)


class JitFunction:
    """``fn`` compiled once per input signature (shapes, dtypes, devices, static args,
    training flag) and run through the chosen backend."""

    def __init__(self, fn: Callable, backend: str | None = None,
                 static_argnames: tuple[str, ...] | str = (), **options):
        self.fn = fn
        self.backend = backend
        self.static_argnames = (static_argnames,) if isinstance(static_argnames, str) \
            else tuple(static_argnames)
        self.options = options
        self._cache: dict = {}
        #: `fast_key` -> the same entries as `_cache`, for calls on plain tensors/arrays
        self._fast: dict = {}
        functools.update_wrapper(self, fn)

    def _split(self, args, kwargs):
        static = tuple((k, kwargs[k]) for k in self.static_argnames if k in kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k not in self.static_argnames}
        return static, kwargs

    def _lookup(self, args, kwargs):
        static, dyn_kwargs = self._split(args, kwargs)
        leaves, in_tree = pytree.flatten((args, dyn_kwargs))
        return self._entry(args, dyn_kwargs, static, leaves, in_tree), leaves

    def _entry(self, args, dyn_kwargs, static, leaves, in_tree):
        key = (in_tree, tuple(_signature_leaf(x) for x in leaves), static,
               autograd.is_training())
        try:
            entry = self._cache.get(key)
        except TypeError:
            raise TraceError(f"{self.__name__}: static arguments must be hashable "
                             f"(got {static})", loc=user_location()) from None
        if entry is None:
            fn = functools.partial(self.fn, **dict(static)) if static else self.fn
            traced = _trace(fn, args, dyn_kwargs, getattr(self.fn, "__name__", None))
            options = self.options
            donated = _donated_inputs(traced, self.fn, args, dyn_kwargs, options["donate"]) \
                if options.get("donate") not in (None, ()) else ()
            donated = tuple(dict.fromkeys(donated + _updated_state(traced)))
            if donated:
                options = {**options, "donate": donated}
            exe = _compile_graph(traced.graph, backend_for(self.backend, traced.device),
                                 options)
            entry = self._cache[key] = (traced, exe)
        return entry

    def __call__(self, *args, **kwargs):
        fast = None if kwargs else fast_key(args)
        if fast is not None:
            entry = self._fast.get(fast)
            if entry is not None:
                return _run(*entry, args)
        static, dyn_kwargs = self._split(args, kwargs) if kwargs else ((), kwargs)
        leaves, in_tree = pytree.flatten((args, dyn_kwargs))
        for x in leaves:
            if isinstance(x, Tensor) and x._sym is not None:
                return self.fn(*args, **kwargs)  # called while tracing: inline
        traced, exe = self._entry(args, dyn_kwargs, static, leaves, in_tree)
        if fast is not None:
            self._fast[fast] = (traced, exe)
        return _run(traced, exe, leaves)

    def compiled(self, *args, **kwargs):
        """The executable this function uses for these arguments' signature."""
        return self._lookup(args, kwargs)[0][1]

    def trace(self, *args, **kwargs) -> Graph:
        return self._lookup(args, kwargs)[0][0].graph

    @property
    def cache_size(self) -> int:
        return len(self._cache)


def fast_key(args: tuple) -> tuple | None:
    """A cache key for a call whose arguments are all concrete numpy or cupy arrays or
    tensors holding them (then the pytree is n leaves and the signature their shapes,
    dtypes and, for GPU arrays, devices), found without flattening; None for any other
    call."""
    sig = []
    for a in args:
        if type(a) is Tensor:
            if a._sym is not None:
                return None
            a = a._data
        if type(a) is np.ndarray:
            sig.append((a.shape, a.dtype))
        elif type(a).__name__ == "ndarray" and hasattr(a, "__cuda_array_interface__"):
            sig.append((a.shape, a.dtype, device_of(a)))  # cupy
        else:
            return None
    return tuple(sig), autograd.is_training()


def _run(traced: Traced, exe, leaves):
    outs = exe(*feed_arrays(traced, leaves))
    if traced.updates:
        plan = exe.memory_plan
        outs = write_back(traced, list(outs), bool(plan is not None and plan.donated))
    if traced.out_tree == ("*",):
        return _wrap(outs[0])
    return pytree.unflatten(traced.out_tree, [_wrap(o) for o in outs])


def jit(fn: Callable | None = None, *, backend: str | None = None,
        static_argnames: tuple[str, ...] | str = (), **options):
    """Decorator: trace and compile ``fn`` on its first call per input signature.

    ``donate=``: arguments (positions or names; a Parameter by its graph input name) whose
    buffers the compiled function may overwrite in place, e.g. the parameters of a training
    step that returns their updates: the caller must not read them afterwards."""
    if fn is None:
        return lambda f: JitFunction(f, backend, static_argnames, **options)
    return JitFunction(fn, backend, static_argnames, **options)


# -- the symbolic API --------------------------------------------------------------------

class DeferredValue:
    """The ``_sym`` of a Variable expression: output ``index`` of a recorded call."""

    __slots__ = ("call", "index")
    tracer = None  # set below to the module's recorder

    def __init__(self, call: DeferredCall, index: int):
        self.call, self.index = call, index

    @property
    def type(self):
        var = self.call.variable
        if var is not None and var[1] is not None and var[2] is not None:
            return TensorType(var[1], var[2])
        raise TraceError("the shape of a Variable expression is known only when it is "
                         "compiled and called; give gc.Variable a shape or use gc.jit",
                         loc=user_location())

    @property
    def device(self) -> Device:
        return cpu()


class DeferredCall:
    __slots__ = ("replay", "args", "loc", "variable")

    def __init__(self, replay, args, loc, variable=None):
        self.replay, self.args, self.loc, self.variable = replay, args, loc, variable


class _Recorder:
    level = 0

    def apply(self, op: Op, args: tuple, attrs: dict):
        call = DeferredCall(functools.partial(_replay_op, op, attrs), args, user_location())
        n = op.num_outputs if isinstance(op.num_outputs, int) else op.num_outputs(attrs)
        outs = tuple(symbolic(DeferredValue(call, i)) for i in range(max(n, 1)))
        return outs if op.num_outputs != 1 else outs[0]

    def new_key(self) -> Tensor:
        return symbolic(DeferredValue(DeferredCall(_replay_key, (), None), 0))

    def record_call(self, fn, args: tuple, kwargs: dict) -> Tensor:
        """Record a whole shape-dependent call (see `tensor.shape_dependent`)."""
        leaves, tree = pytree.flatten((args, kwargs))

        def replay(tracer, *new_leaves):
            a, k = pytree.unflatten(tree, new_leaves)
            return fn(*a, **k)

        return symbolic(DeferredValue(DeferredCall(replay, tuple(leaves), user_location()), 0))


def _replay_op(op, attrs, tracer, *args):
    from .tensor import apply
    return apply(op, *args, **attrs)


def _replay_key(tracer):
    return tracer.new_key()


DeferredValue.tracer = _Recorder()


def Variable(name: str, shape: tuple[int, ...] | None = None, dtype=None) -> Tensor:
    """A named symbolic input; expressions on it are compiled with `gc.compile`."""
    if not isinstance(name, str) or not name:
        raise GraphcError(f"Variable name must be a non-empty string, got {name!r}")
    var = (name, None if shape is None else tuple(shape),
           None if dtype is None else dt.canonical(dtype))
    return symbolic(DeferredValue(DeferredCall(None, (), user_location(), var), 0))


class CompiledExpression:
    """`gc.compile(*outputs)`: call with the Variables as keyword arguments."""

    def __init__(self, outputs: tuple[Tensor, ...], backend: str | None, options: dict):
        for o in outputs:
            if not isinstance(o, Tensor) or not isinstance(o._sym, DeferredValue):
                raise GraphcError("gc.compile takes expressions built from gc.Variable")
        self.outputs, self.backend, self.options = outputs, backend, options
        self.order = _topological(outputs)
        self.variables = [c.variable for c in self.order if c.variable is not None]
        self._cache: dict = {}

    @property
    def input_names(self) -> list[str]:
        return [v[0] for v in self.variables]

    def _check(self, inputs: dict) -> None:
        names = self.input_names
        missing = [n for n in names if n not in inputs]
        extra = [n for n in inputs if n not in names]
        if missing or extra:
            raise GraphcError(f"compiled expression takes inputs {names}; "
                              f"missing {missing}, unexpected {extra}", loc=user_location())
        for name, shape, dtype in self.variables:
            x = inputs[name]
            if (shape is not None and tuple(x.shape) != shape) or (
                    dtype is not None and dt.canonical(x.dtype) != dtype):
                raise GraphcError(f"input {name!r} has shape {tuple(x.shape)} and dtype "
                                  f"{x.dtype}, but the Variable declares {shape} {dtype}",
                                  loc=user_location())

    def _compile(self, inputs: dict):
        key = tuple(_signature_leaf(inputs[n]) for n in self.input_names)
        entry = self._cache.get(key)
        if entry is None:
            device = trace_device(list(key)) or _CPU
            tracer = Tracer("compiled", device)
            env: dict[int, tuple] = {}
            for call in self.order:
                if call.variable is not None:
                    name = call.variable[0]
                    shape, dtype, _ = _signature_leaf(inputs[name])
                    env[id(call)] = (tracer.input(name, TensorType(shape, dtype)),)
                    continue
                args = [env[id(a._sym.call)][a._sym.index]
                        if isinstance(a, Tensor) and isinstance(a._sym, DeferredValue) else a
                        for a in call.args]
                tracer.loc = call.loc
                out = call.replay(tracer, *args)
                env[id(call)] = out if isinstance(out, tuple) else (out,)
            tracer.loc = None
            graph = tracer.finish([env[id(o._sym.call)][o._sym.index] for o in self.outputs])
            data = [v for v in graph.inputs if v.role == "data"]
            out_tree = ("tuple", (("*",),) * len(self.outputs))
            entry = self._cache[key] = (
                Traced(graph, out_tree, tracer.feeds(data), [], device),
                _compile_graph(graph, backend_for(self.backend, device), self.options))
        return entry

    def __call__(self, **inputs):
        inputs = _arrays(inputs)
        self._check(inputs)
        traced, exe = self._compile(inputs)
        outs = _run(traced, exe, [inputs[n] for n in self.input_names])
        return outs[0] if len(outs) == 1 else outs

    def compiled(self, **inputs):
        """The executable for these inputs' signature (``.graph``, ``.memory_plan``...)."""
        inputs = _arrays(inputs)
        self._check(inputs)
        return self._compile(inputs)[1]

    def graph(self, **inputs) -> Graph:
        inputs = _arrays(inputs)
        self._check(inputs)
        return self._compile(inputs)[0].graph


def _arrays(inputs: dict) -> dict:
    """Tensors and numpy or CUDA arrays as they are; anything else through numpy."""
    return {k: v if isinstance(v, Tensor | np.ndarray) or hasattr(v, "__cuda_array_interface__")
            else np.asarray(v) for k, v in inputs.items()}


def _topological(outputs) -> list[DeferredCall]:
    """Recorded calls in dependency order (iterative DFS: deep expressions are fine)."""
    order, seen = [], set()
    stack = [(o._sym.call, False) for o in reversed(outputs)]
    while stack:
        call, done = stack.pop()
        if done:
            order.append(call)
            continue
        if id(call) in seen:
            continue
        seen.add(id(call))
        stack.append((call, True))
        for a in reversed(call.args):
            if isinstance(a, Tensor) and isinstance(a._sym, DeferredValue) \
                    and id(a._sym.call) not in seen:
                stack.append((a._sym.call, False))
    names = [c.variable[0] for c in order if c.variable is not None]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise GraphcError(f"two different Variables are named {sorted(dup)}")
    return order


def compile(*outputs: Tensor, backend: str | None = None, **options) -> CompiledExpression:
    """Compile Variable expressions; the result is called with the Variables by name."""
    return CompiledExpression(outputs, backend, options)
