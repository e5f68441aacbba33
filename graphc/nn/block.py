"""Blocks: Gluon's model containers. A Block owns parameters and child blocks, registered
by assigning them to attributes; ``forward`` is plain Python on graphc ops.

`HybridBlock.hybridize` makes later calls trace ``forward`` once per input signature and
run the compiled graph (graphc/nn/hybrid.py). `HybridBlock.export` writes that graph with
its parameters; `load` / `SymbolBlock.imports` read it back into a callable block with no
Python model source.

Exported graphs are batch-agnostic where the model is: the graph is recorded at the
example batch, and `SymbolBlock` rebuilds it for other input shapes by re-running every
op's type rule (`Graph.add_node`). That works because no canonical attr bakes in the
batch size: reshape keeps Gluon's codes (``(0, -1)`` copies the batch dim), and flatten
emits them. A model whose forward computes shapes from ``x.shape[0]`` in Python stays
bound to the example batch (rebuilding it fails with the op's shape error).

A hybridized block prints and runs Python side effects once per trace, not per call.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re

from .. import dtypes as dt
from .. import serialize
from ..device import to_host
from ..errors import GraphcError
from ..tensor import Tensor
from ..trace import active as active_traces
from .parameter import DeferredInitializationError, Parameter

__all__ = ["ParameterDict", "Block", "HybridBlock", "Sequential", "HybridSequential",
           "SymbolBlock", "load"]


def _indent(text: str, n: int) -> str:
    return text.replace("\n", "\n" + " " * n)


class ParameterDict(dict):
    """What `Block.collect_params` returns: a dict name -> Parameter in registration
    order, with Gluon 1's bulk helpers (``net.collect_params().initialize(...)``)."""

    def initialize(self, init=None, device=None, verbose: bool = False,
                   force_reinit: bool = False, ctx=None) -> None:
        for p in self.values():
            p.initialize(init, device if device is not None else ctx, force_reinit)

    def zero_grad(self) -> None:
        for p in self.values():
            p.zero_grad()

    def setattr(self, name: str, value) -> None:
        """Set attribute ``name`` (e.g. 'grad_req') of every parameter."""
        for p in self.values():
            setattr(p, name, value)

    def reset_device(self, device) -> None:
        for p in self.values():
            p.reset_device(device)

    reset_ctx = reset_device


class Block:
    """The base of every layer and model. Subclasses call ``super().__init__()`` first,
    then assign child blocks and parameters to attributes (their registration order is
    the order of `collect_params`)."""

    def __init__(self, prefix: str | None = None, params=None):
        object.__setattr__(self, "_children", {})
        object.__setattr__(self, "_reg_params", {})
        # Gluon 1 weight tying: parameters assigned under a name found in `params` take
        # the shared Parameter instead (Dense(..., params=embedding.params)).
        object.__setattr__(self, "_shared", dict(params) if params is not None else {})
        object.__setattr__(self, "_prefix", prefix or "")

    # -- registration --------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if "_children" not in self.__dict__:
            raise GraphcError(f"{type(self).__name__}: call super().__init__() before "
                              "assigning attributes")
        self._children.pop(name, None)
        self._reg_params.pop(name, None)
        if isinstance(value, Block):
            self._children[name] = value
        elif isinstance(value, Parameter):
            shared = self._shared.get(name)
            if shared is None:
                shared = next((p for k, p in self._shared.items()
                               if k.rsplit(".", 1)[-1] == name), None)
            if shared is not None:
                _check_tie(shared, value)
                value = shared
            self._reg_params[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._children.pop(name, None)
        self._reg_params.pop(name, None)
        object.__delattr__(self, name)

    def register_child(self, block: Block, name: str | None = None) -> Block:
        """Add ``block`` as a child under ``name`` (default: its position, "0", "1"...)."""
        name = str(len(self._children)) if name is None else name
        self._children[name] = block
        if name.isidentifier() and not hasattr(type(self), name):
            object.__setattr__(self, name, block)
        return block

    def share_parameters(self, shared: dict) -> Block:
        """Gluon 2 weight tying: parameters of this block (by structural name, or by
        local name) are replaced by the Parameters of ``shared``."""
        shared = dict(shared)
        for path, p in self.collect_params().items():
            src = shared.get(path) or next((q for k, q in shared.items()
                                            if k.rsplit(".", 1)[-1] == path.rsplit(".", 1)[-1]),
                                           None)
            if src is None or src is p:
                continue
            _check_tie(src, p)
            owner = self
            *parents, leaf = path.split(".")
            for part in parents:
                owner = owner._children[part]
            owner._reg_params[leaf] = src
            object.__setattr__(owner, leaf, src)
        return self

    @property
    def params(self) -> dict[str, Parameter]:
        """This block's own parameters (not its children's), as in Gluon."""
        return dict(self._reg_params)

    def collect_params(self, select: str | None = None) -> ParameterDict:
        """name -> Parameter of this block and its children, in registration order. Names
        are attribute paths ("weight", "0.weight", "encoder.1.bias"); a shared Parameter
        appears once, under its first name. ``select`` is a regex matched with re.match
        against the names (Gluon's "weight|bias" or ".*weight")."""
        out = ParameterDict()
        seen: set[int] = set()
        self._collect("", out, seen)
        if select is not None:
            pattern = re.compile(select)
            out = ParameterDict((k, v) for k, v in out.items() if pattern.match(k))
        return out

    def _collect(self, prefix: str, out: dict, seen: set) -> None:
        for name, p in self._reg_params.items():
            if id(p) not in seen:
                seen.add(id(p))
                out[prefix + name] = p
        for name, child in self._children.items():
            child._collect(f"{prefix}{name}.", out, seen)

    def _blocks(self):
        yield self
        for child in self._children.values():
            yield from child._blocks()

    def apply(self, fn) -> Block:
        """Call ``fn(block)`` on every child, then on this block."""
        for child in self._children.values():
            child.apply(fn)
        fn(self)
        return self

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def name(self) -> str:
        return self._prefix.rstrip("_") or type(self).__name__.lower()

    def name_scope(self):
        """A harmless context: graphc names parameters by attribute path."""
        return contextlib.nullcontext()

    # -- calling ------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    # -- parameters -----------------------------------------------------------------------
    def initialize(self, init=None, device=None, verbose: bool = False,
                   force_reinit: bool = False, ctx=None) -> None:
        """Initialize every parameter: its own ``init`` first, else ``init``, else
        Uniform(0.07); parameters with unknown dims wait for the first forward."""
        device = device if device is not None else ctx
        for p in self.collect_params().values():
            p.initialize(init, device, force_reinit)

    def zero_grad(self) -> None:
        for p in self.collect_params().values():
            p.zero_grad()

    def cast(self, dtype) -> None:
        """Convert every parameter to ``dtype`` (compiled graphs are dropped)."""
        for block in self._blocks():
            if isinstance(block, HybridBlock):
                block._clear_cache()
        for p in self.collect_params().values():
            p.cast(dtype)

    def reset_device(self, device) -> None:
        """Move every parameter (and its gradient) to ``device``; compiled graphs are
        dropped, since they were built for the old device."""
        self._drop_compiled()
        for p in self.collect_params().values():
            p.reset_device(device)

    def _drop_compiled(self) -> None:
        for block in self._blocks():
            if isinstance(block, HybridBlock):
                block._clear_cache()

    reset_ctx = reset_device

    def to(self, device) -> Block:
        """`reset_device`, returning the block: ``net = Net().to(gc.gpu())``."""
        self.reset_device(device)
        return self

    def hybridize(self, active: bool = True, **kwargs) -> None:
        """A plain Block runs imperatively; its HybridBlock children are hybridized."""
        for child in self._children.values():
            child.hybridize(active, **kwargs)

    def save_parameters(self, path: str | os.PathLike, deduplicate: bool = True) -> None:
        """Write every parameter's value to a safetensors file under its structural name."""
        tensors = {}
        for name, p in self.collect_params().items():
            try:
                tensors[name] = p.data().numpy()
            except DeferredInitializationError as e:
                raise DeferredInitializationError(
                    f"cannot save parameter '{name}': {e.message}") from None
        serialize.save_safetensors(path, tensors, {"format": "graphc.params"})

    def load_parameters(self, path: str | os.PathLike, device=None,
                        allow_missing: bool = False, ignore_extra: bool = False,
                        cast_dtype: bool = False, dtype_source: str = "current",
                        ctx=None) -> None:
        """Set parameters from a file of `save_parameters` (or an exported params file).

        Every name must match and every shape agree (unknown dims of deferred parameters
        take the file's), else a GraphcError names the parameter and both shapes."""
        loaded = serialize.load_safetensors(path)
        device = device if device is not None else ctx
        if device is not None:
            self._drop_compiled()
        _assign(self.collect_params(), loaded, os.fspath(path), allow_missing, ignore_extra,
                device)

    def load_dict(self, loaded: dict, device=None, allow_missing: bool = False,
                  ignore_extra: bool = False) -> None:
        if device is not None:
            self._drop_compiled()
        _assign(self.collect_params(), {k: to_host(v._data if isinstance(v, Tensor) else v)
                                        for k, v in loaded.items()},
                "the given dict", allow_missing, ignore_extra, device)

    # -- printing -------------------------------------------------------------------------
    def __repr__(self) -> str:
        if not self._children:
            return f"{type(self).__name__}()"
        body = "\n".join(f"  ({k}): {_indent(repr(b), 2)}" for k, b in self._children.items())
        return f"{type(self).__name__}(\n{body}\n)"

    def summary(self, *inputs) -> str:
        """Print and return a table of every block (nested ones indented): output shapes
        from one imperative, gradient-free run on ``inputs``, own parameter counts, and
        total / trainable / non-trainable totals (graphc/summary.py)."""
        from ..summary import block_summary
        table = block_summary(self, *inputs)
        print(table)
        return table


def _check_tie(shared: Parameter, own: Parameter) -> None:
    a, b = shared.shape, own.shape
    if a is not None and b is not None and (len(a) != len(b) or any(
            x and y and x != y for x, y in zip(a, b))):
        raise GraphcError(f"cannot share parameter '{shared.name}' of shape {a} as "
                          f"'{own.name}' of shape {b}")


def _assign(params: dict, loaded: dict, source: str, allow_missing: bool,
            ignore_extra: bool, device) -> None:
    missing = [n for n in params if n not in loaded]
    if missing and not allow_missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise GraphcError(f"parameter '{missing[0]}' is missing in {source}{more}"
                          f"; the file has {sorted(loaded)[:8]}; pass allow_missing=True to "
                          "skip it")
    extra = sorted(n for n in loaded if n not in params)
    if extra and not ignore_extra:
        raise GraphcError(f"{source} has parameter '{extra[0]}' that the model does not "
                          f"have; the model has {list(params)[:8]}; pass ignore_extra=True "
                          "to skip it")
    for name, p in params.items():
        if name not in loaded:
            continue
        value = loaded[name]
        want = p.shape
        got = tuple(value.shape)
        if want is not None and (len(want) != len(got) or any(
                w and w != g for w, g in zip(want, got))):
            raise GraphcError(f"parameter '{name}' has shape {want} in the model but "
                              f"shape {got} in {source}")
    for name, p in params.items():
        if name not in loaded:
            continue
        value = loaded[name]
        if p._data is None:
            p.shape = tuple(value.shape) if p.shape is None else p.shape
            # where initialize(device=...) meant it to be, unless a device is given here
            target = device if device is not None else (
                p._deferred[1] if p._deferred is not None else None)
            if p._deferred is not None:
                p._deferred = None
            p.set_data(value.astype(dt.to_numpy(p.dtype)))
            if target is not None:
                p.reset_device(target)
        else:
            p.set_data(value.astype(dt.to_numpy(p.dtype)))
            if device is not None:
                p.reset_device(device)


class HybridBlock(Block):
    """A Block whose forward can be traced and compiled: call `hybridize()`.

    Gluon 1 style ``hybrid_forward(self, F, x, *args, **params)`` also works: ``F`` is
    the graphc module and the block's own parameters are passed by name."""

    def __init__(self, prefix: str | None = None, params=None):
        super().__init__(prefix, params)
        object.__setattr__(self, "_active", False)
        object.__setattr__(self, "_hybrid_options", {})
        object.__setattr__(self, "_cached", {})
        #: (arg shapes and numpy dtypes, training) -> the same entries as `_cached`, for
        #: calls on plain tensors: found without flattening the arguments
        object.__setattr__(self, "_fast", {})

    def hybridize(self, active: bool = True, backend: str | None = None,
                  static_alloc: bool = True, static_shape: bool = False, **options) -> None:
        """Later calls trace ``forward`` once per input signature (shapes, dtypes, device,
        training flag) and run the compiled graph; ``backend`` is a graphc backend name."""
        object.__setattr__(self, "_active", bool(active))
        object.__setattr__(self, "_hybrid_options", dict(
            backend=backend, static_alloc=static_alloc, static_shape=static_shape, **options))
        self._clear_cache()
        super().hybridize(active, backend=backend, static_alloc=static_alloc,
                          static_shape=static_shape, **options)

    def _clear_cache(self) -> None:
        self._cached.clear()
        self._fast.clear()

    def __call__(self, *args, **kwargs):
        if not self._active or active_traces or _any_symbolic(args, kwargs):
            return self.forward(*args, **kwargs)
        return _hybrid_call(self, args, kwargs)

    def forward(self, *args, **kwargs):
        if type(self).hybrid_forward is not HybridBlock.hybrid_forward:
            params = {k: p.data() for k, p in self._reg_params.items()}
            return self.hybrid_forward(importlib.import_module("graphc"), *args, **kwargs,
                                       **params)
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def hybrid_forward(self, F, *args, **kwargs):
        raise NotImplementedError

    def optimize_for(self, *args, backend: str | None = None, **options):
        """Hybridize with ``backend`` and run once on ``args`` (Gluon's optimize_for)."""
        self.hybridize(True, backend=backend, **options)
        return self(*args)

    def export(self, path: str | os.PathLike, epoch: int | None = None, *args) -> tuple:
        """Write ``path-graph.json`` and ``path-params.safetensors`` from the last traced
        signature (call the block once, hybridized, first). Inputs are named ``data`` or
        ``data0, data1, ...``; parameters are inputs of role 'parameter' named by
        `collect_params`."""
        from .hybrid import export
        return export(self, os.fspath(path), epoch)

    def infer_shape(self, *args) -> None:
        """Complete deferred parameter shapes by running forward once on ``args``."""
        from ..autograd import pause
        with pause():
            self.forward(*args)


def _any_symbolic(args, kwargs) -> bool:
    for a in args:
        if isinstance(a, Tensor) and a._sym is not None:
            return True
        if isinstance(a, list | tuple) and _any_symbolic(a, {}):
            return True
    return any(isinstance(v, Tensor) and v._sym is not None for v in kwargs.values())


# -- containers ---------------------------------------------------------------------------

class _SequentialMixin:
    def add(self, *blocks: Block):
        for b in blocks:
            self.register_child(b)
        return self

    def forward(self, x, *args):
        for block in self._children.values():
            x = block(x, *args)
            args = ()
            if isinstance(x, list | tuple):
                args, x = tuple(x[1:]), x[0]
        return (x, *args) if args else x

    def __getitem__(self, key):
        blocks = list(self._children.values())
        if isinstance(key, slice):
            net = type(self)()
            net.add(*blocks[key])
            return net
        return blocks[key]

    def __len__(self) -> int:
        return len(self._children)

    def __iter__(self):
        return iter(self._children.values())


class Sequential(_SequentialMixin, Block):
    """Blocks run one after the other; children are named "0", "1", ..."""

    def __init__(self, prefix: str | None = None, params=None):
        Block.__init__(self, prefix, params)


class HybridSequential(_SequentialMixin, HybridBlock):
    """Sequential, and hybridizable as a whole."""

    def __init__(self, prefix: str | None = None, params=None):
        HybridBlock.__init__(self, prefix, params)


from .hybrid import SymbolBlock, load  # noqa: E402  (hybrid.py imports HybridBlock)


def _hybrid_call(block, args, kwargs):
    global _hybrid_call
    from .hybrid import hybrid_call  # (imported on first use: hybrid imports this module)
    _hybrid_call = hybrid_call
    return hybrid_call(block, args, kwargs)
