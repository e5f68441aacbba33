"""Parameter: a named, trainable tensor of a block, with Gluon's deferred initialization.

A parameter's shape may have unknown dims (0) until the first forward, where a layer
completes it from its input (``self.weight.shape = (units, x.shape[1])``); completing the
shape runs the initialization that `initialize` deferred. The value lives in one Tensor
with ``attach_grad`` applied, so eager autograd fills its gradient, and optimizers update
that Tensor in place: its identity never changes while the shape and dtype stay the same.

While a trace is active (a hybridized block's forward, or a `gc.jit` function),
`Parameter.data` returns the graph input that stands for the parameter, and
`Parameter.set_data` records a state update that the compiled call writes back (see
`graphc.trace.Tracer.read_state`). Layers never see the difference.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np

from .. import autograd
from .. import dtypes as dt
from ..device import as_device, device_of, move, to_host
from ..errors import GraphcError
from ..tensor import Tensor, _wrap
from ..trace import active as active_traces


class DeferredInitializationError(GraphcError):
    """A parameter read before its shape was known and its value initialized."""


def _fallback_init(name: str):
    """Used only while graphc.init is missing: zeros, ones, or Uniform(-0.07, 0.07)."""
    def init(pname, shape, dtype):
        if name in ("zeros", "zero"):
            return np.zeros(shape, dt.to_numpy(dtype))
        if name in ("ones", "one"):
            return np.ones(shape, dt.to_numpy(dtype))
        from ..random import _state
        return _state["gen"].uniform(-0.07, 0.07, shape).astype(dt.to_numpy(dtype))
    return init


def _init_module():
    if importlib.util.find_spec("graphc.init") is None:
        return None
    from .. import init
    return init


def _resolve_init(init):
    """An initializer callable ``init(name, shape, dtype) -> array`` from ``init``: an
    Initializer, a string alias ('zeros', 'ones', 'xavier'...), a number, a plain
    callable, or None (Uniform(0.07))."""
    mod = _init_module()
    if mod is not None and not (callable(init) and not isinstance(init, mod.Initializer)):
        return mod.Uniform(0.07) if init is None else mod.create(init)
    if init is None:
        return _fallback_init("uniform")
    if isinstance(init, str) and init.lower() in ("zeros", "zero", "ones", "one", "uniform"):
        return _fallback_init(init.lower())
    if not callable(init):
        raise GraphcError(f"an initializer must be a string or a callable "
                          f"init(name, shape, dtype), got {init!r}")
    return init


def _known(shape) -> bool:
    return shape is not None and all(d > 0 for d in shape)


class Parameter:
    """A block's weight: ``name``, ``shape`` (0 = unknown until the first forward),
    ``dtype``, ``init``, ``grad_req`` ('write', 'add' or 'null')."""

    def __init__(self, name: str = "weight", shape=None, dtype="float32", init=None,
                 grad_req: str = "write", allow_deferred_init: bool = True,
                 differentiable: bool = True):
        self.name = name
        self._shape = None if shape is None else (
            (int(shape),) if isinstance(shape, int | np.integer) else tuple(int(d) for d in shape))
        self.dtype = dt.canonical(dtype)
        self.init = init
        if grad_req not in ("write", "add", "null"):
            raise GraphcError(f"Parameter '{name}': grad_req must be 'write', 'add' or 'null', "
                              f"got {grad_req!r}")
        self._grad_req = grad_req if differentiable else "null"
        self.allow_deferred_init = allow_deferred_init
        self.differentiable = differentiable
        self._data: Tensor | None = None
        self._deferred: tuple | None = None  # (initializer, device) waiting for a shape

    def __repr__(self) -> str:
        return f"Parameter {self.name} (shape={self._shape}, dtype={self.dtype})"

    # -- shape --------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...] | None:
        return self._shape

    @shape.setter
    def shape(self, new) -> None:
        new = (int(new),) if isinstance(new, int | np.integer) else tuple(int(d) for d in new)
        old = self._shape
        if old is not None and (len(old) != len(new) or any(
                o != 0 and o != n for o, n in zip(old, new))):
            raise GraphcError(f"Parameter '{self.name}': cannot set shape {new}, it does not "
                              f"agree with the known shape {old} (0 marks unknown dims)")
        if self._data is not None and tuple(self._data.shape) != new:
            raise GraphcError(f"Parameter '{self.name}' is initialized with shape "
                              f"{tuple(self._data.shape)}; cannot change it to {new}")
        self._shape = new
        if self._deferred is not None and _known(new):
            init, device = self._deferred
            self._deferred = None
            self._init_value(init, device)

    # -- grad_req -----------------------------------------------------------------------
    @property
    def grad_req(self) -> str:
        return self._grad_req

    @grad_req.setter
    def grad_req(self, req: str) -> None:
        if req not in ("write", "add", "null"):
            raise GraphcError(f"Parameter '{self.name}': grad_req must be 'write', 'add' or "
                              f"'null', got {req!r}")
        self._grad_req = req if self.differentiable else "null"
        if self._data is not None:
            self._attach(self._data)

    def _attach(self, t: Tensor) -> Tensor:
        if self._grad_req == "null":
            t._grad, t._node = None, None
        else:
            autograd.attach_grad(t, self._grad_req)
        return t

    # -- initialization -----------------------------------------------------------------
    def initialize(self, init=None, device=None, force_reinit: bool = False, ctx=None) -> None:
        """Initialize with the parameter's own ``init``, else ``init``, else Uniform(0.07);
        deferred until the shape is known when dims are still 0."""
        if self._data is not None and not force_reinit:
            return
        own = self.init is not None
        init = _resolve_init(self.init if own else init)
        if own:  # the parameter's own initializer applies whatever the name says
            mod = _init_module()
            if mod is not None and isinstance(init, mod.Initializer):
                init = functools.partial(init, by_name=False)
        device = device if device is not None else ctx
        if not _known(self._shape):
            if not self.allow_deferred_init:
                raise DeferredInitializationError(
                    f"Parameter '{self.name}' has unknown shape {self._shape} and does not "
                    "allow deferred initialization; give it a complete shape")
            self._data, self._deferred = None, (init, device)
            return
        self._init_value(init, device)

    def _init_value(self, init, device) -> None:
        # Drawn on the host, then moved: the same seed gives the same values on any device.
        value = to_host(init(self.name, self._shape, self.dtype))
        if tuple(value.shape) != self._shape:
            raise GraphcError(f"Parameter '{self.name}': the initializer returned shape "
                              f"{tuple(value.shape)}, expected {self._shape}")
        self._data = self._attach(_wrap(move(value, as_device(device),
                                             dt.to_numpy(self.dtype))))

    def value(self) -> Tensor:
        """The concrete value, even while tracing (what a compiled call reads)."""
        return self._check_initialized()

    def _check_initialized(self) -> Tensor:
        if self._data is not None:
            return self._data
        if self._deferred is not None:
            raise DeferredInitializationError(
                f"Parameter '{self.name}' has not been initialized yet: its shape "
                f"{self._shape} is known only after the first forward; run a forward pass "
                "(or set its shape) before reading it")
        raise DeferredInitializationError(
            f"Parameter '{self.name}' has not been initialized; call block.initialize() "
            "(or parameter.initialize()) first")

    # -- value ----------------------------------------------------------------------------
    def data(self, device=None) -> Tensor:
        """The value; while a hybrid trace is active, the graph input standing for it."""
        if active_traces:
            return active_traces[-1].read_state(self)
        t = self._check_initialized()
        if device is not None and as_device(device) != t.device:
            return t.as_in_context(device)
        return t

    def list_data(self) -> list[Tensor]:
        return [self.data()]

    def set_data(self, value) -> None:
        """Replace the value in place (same shape). Inside a hybrid trace this records a
        state update that the compiled call writes back."""
        if active_traces:
            active_traces[-1].write_state(self, value)
            return
        arr = value._data if isinstance(value, Tensor) else value
        if isinstance(value, Tensor) and value._sym is not None:
            raise GraphcError(f"Parameter '{self.name}': set_data got a traced tensor outside "
                              "of its block's trace")
        shape = tuple(np.shape(arr))
        if self._data is None:
            if self._shape is not None and (len(self._shape) != len(shape) or any(
                    o not in (0, n) for o, n in zip(self._shape, shape))):
                raise GraphcError(f"Parameter '{self.name}': set_data got shape {shape}, "
                                  f"expected {self._shape}")
            # On the device initialize() asked for (else where the value is), as a copy:
            # optimizers update the value in place, never the caller's array.
            device = self._deferred[1] if self._deferred is not None else None
            self._shape, self._deferred = shape, None
            device = as_device(device) if device is not None else device_of(arr)
            src = move(arr, device, dt.to_numpy(self.dtype))
            with device.scope():
                self._data = self._attach(_wrap(src.copy() if src is arr else src))
            return
        if shape != tuple(self._data.shape):
            raise GraphcError(f"Parameter '{self.name}': set_data got shape {shape}, "
                              f"expected {tuple(self._data.shape)}")
        dst = self._data._data
        if type(dst) is np.ndarray:
            dst[...] = to_host(arr) if hasattr(arr, "__cuda_array_interface__") else arr
        else:  # a GPU value: the new one goes there (no copy if it is there already)
            device = device_of(dst)
            with device.scope():
                dst[...] = move(arr, device)

    def grad(self, device=None) -> Tensor:
        """The gradient; inside a trace, the one a backward in that trace computed."""
        if active_traces:
            g = active_traces[-1].state_grad(self)
            if g is None:
                raise GraphcError(f"Parameter '{self.name}' has no gradient in this trace: "
                                  "run backward() inside the traced function first")
            return g
        t = self._check_initialized()
        if self._grad_req == "null" or t._grad is None:
            raise GraphcError(f"Parameter '{self.name}' has no gradient: its grad_req is "
                              f"'{self._grad_req}'")
        return t._grad

    def list_grad(self) -> list[Tensor]:
        return [self.grad()]

    def zero_grad(self) -> None:
        if self._data is not None and self._data._grad is not None:
            g = self._data._grad
            device = device_of(g._data)
            with device.scope():
                g._data = device.xp.zeros_like(g._data)

    def cast(self, dtype) -> None:
        """Convert the value (and the gradient buffer) to ``dtype``."""
        self.dtype = dt.canonical(dtype)
        if self._data is not None:
            arr = self._data._data
            self._data = self._attach(_wrap(arr.astype(dt.to_numpy(self.dtype))))

    @property
    def device(self):
        """Where the value is (or will be, for a deferred initialization)."""
        if self._data is not None:
            return self._data.device
        return as_device(self._deferred[1] if self._deferred is not None else None)

    def list_device(self) -> list:
        return [self.device]

    list_ctx = list_device

    def reset_device(self, device) -> None:
        """Move the value and its gradient to ``device`` (nothing to do if they are there);
        a deferred initialization will happen there."""
        device = as_device(device)
        if self._deferred is not None:
            self._deferred = (self._deferred[0], device)
        t = self._data
        if t is None or t.device == device:
            return
        grad = t._grad
        with device.scope():
            self._data = self._attach(_wrap(move(t._data, device)))
            if grad is not None and self._data._grad is not None:
                self._data._grad = _wrap(move(grad._data, device))

    reset_ctx = reset_device

    @property
    def initialized(self) -> bool:
        return self._data is not None

    def var(self):
        raise GraphcError("Parameter.var() is MXNet's symbolic API; graphc traces forward "
                          "instead: use data()")

