"""Tensor, and `apply`: the one dispatch point every op call goes through.

A Tensor is either concrete (``_data`` holds an array of its device's namespace) or
symbolic (``_sym`` holds a value of a tracer: a graph value while `gc.jit` traces, or a
recorded call of a `gc.Variable` expression). `apply` promotes dtypes, then either runs
the op eagerly (and lets autograd record it) or hands it to the tracer of its symbolic
inputs. Nothing else in graphc runs an op.
"""

from __future__ import annotations

import functools

import numpy as np

from . import dtypes as dt
from .device import Device, DeviceError, as_device, cpu, device_of, move, to_host
from .errors import BackendError, GraphcError, ShapeError, TraceError, user_location
from .ops import registry
from .ops.registry import Op
from .types import TensorType

_SCALARS = (bool, int, float, np.bool_, np.integer, np.floating)


class Tensor:
    """An n-dimensional array on a device, or a symbolic stand-in for one while tracing."""

    __slots__ = ("_data", "_sym", "_grad", "_node", "__weakref__")
    __array_priority__ = 1000  # numpy defers `ndarray + Tensor` to Tensor.__radd__

    def __init__(self, data, dtype=None, device=None):
        arr = array(data, dtype=dtype, device=device)
        self._data, self._sym, self._grad, self._node = arr._data, None, None, None

    # -- what it is -------------------------------------------------------------------
    @property
    def type(self) -> TensorType:
        if self._sym is not None:
            return self._sym.type
        return TensorType(self._data.shape, dt.name_of(self._data.dtype))

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape if self._sym is None else self._sym.type.shape

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype if self._sym is None else dt.to_numpy(self._sym.type.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return self.type.size

    @property
    def device(self) -> Device:
        return device_of(self._data) if self._sym is None else self._sym.device

    @property
    def is_symbolic(self) -> bool:
        return self._sym is not None

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # -- leaving graphc ---------------------------------------------------------------
    def _concrete(self, what: str):
        if self._sym is not None:
            raise TraceError(
                f"{what} needs the value of a traced tensor, which a trace does not compute; "
                "use graphc ops (gc.where, ...) instead of Python control flow on tensors, "
                "or mark the argument static", loc=user_location())
        return self._data

    def numpy(self) -> np.ndarray:
        return to_host(self._concrete(".numpy()"))  # a copy from a GPU, else no copy

    def __array__(self, dtype=None, copy=None):
        out = self.numpy()
        return out if dtype is None else out.astype(dtype)

    def item(self):
        return self.numpy().item()

    def tolist(self):
        return self.numpy().tolist()

    def __bool__(self) -> bool:
        return bool(self._concrete("bool(tensor) or `if tensor:`"))

    def __float__(self) -> float:
        return float(self._concrete("float(tensor)"))

    def __int__(self) -> int:
        return int(self._concrete("int(tensor)"))

    def __index__(self) -> int:
        data = self._concrete("using a tensor as an index")
        if data.dtype.kind not in "iu" or data.ndim:
            raise TypeError("only 0-d integer tensors can be used as a Python index")
        return int(data)

    def __repr__(self) -> str:
        if self._sym is not None:
            return f"Tensor(<symbolic {self.type}>)"
        body = np.array2string(self.numpy(), separator=", ", prefix="Tensor(",
                               threshold=64, edgeitems=3)
        device = "" if self.device.type == "cpu" else f", device={self.device}"
        return f"Tensor({body}, dtype={self.dtype.name}{device})"

    __hash__ = object.__hash__

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # -- exchange with other libraries ------------------------------------------------
    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """The DLPack capsule of the value (zero-copy), for ``np.from_dlpack``,
        ``torch.from_dlpack``, ``cupy.from_dlpack``..."""
        data = self._concrete("__dlpack__")
        kwargs = {k: v for k, v in (("max_version", max_version), ("dl_device", dl_device),
                                    ("copy", copy)) if v is not None}
        if type(data) is np.ndarray:  # host memory: no stream to order the access on
            return data.__dlpack__(**kwargs)
        return data.__dlpack__(stream=stream, **kwargs)

    def __dlpack_device__(self) -> tuple:
        return self._concrete("__dlpack_device__").__dlpack_device__()

    @property
    def __cuda_array_interface__(self) -> dict:
        """The value's CUDA array interface (GPU tensors only: on the CPU reading it raises
        AttributeError, so ``hasattr`` says False), for zero-copy ``cupy.asarray(t)``."""
        data = self._data
        if data is None or type(data) is np.ndarray:
            raise AttributeError("__cuda_array_interface__: the tensor is not on a GPU")
        return data.__cuda_array_interface__


def _wrap(data) -> Tensor:
    t = Tensor.__new__(Tensor)
    t._data, t._sym, t._grad, t._node = data, None, None, None
    return t


def symbolic(sym) -> Tensor:
    """A Tensor standing for the tracer value ``sym`` (which has .type, .device, .tracer)."""
    t = Tensor.__new__(Tensor)
    t._data, t._sym, t._grad, t._node = None, sym, None, None
    return t


def array(data, dtype=None, device=None) -> Tensor:
    """A tensor from array-like ``data`` on ``device`` (default: where ``data`` is, the
    CPU for Python data); Python floats become float32 by default, arrays keep their
    dtype unless ``dtype`` is given. No copy when ``data`` is an array already on that
    device with that dtype."""
    if isinstance(data, Tensor):
        if data._sym is not None:
            if device is not None and as_device(device) != data.device:
                raise TraceError(f"cannot move a traced tensor from {data.device} to "
                                 f"{as_device(device)}: a traced function runs on one device",
                                 loc=user_location())
            return data if dtype is None else data.astype(dtype)
        data = data._data
    elif (type(data) is not np.ndarray and hasattr(data, "__dlpack__")
          and type(data).__module__.partition(".")[0] not in ("numpy", "cupy")):
        data = from_dlpack(data)._data  # torch, jax...: zero-copy, then cast or move
    if device is not None:
        dev = as_device(device)
    elif isinstance(data, (list, tuple, *_SCALARS)):
        dev = _CPU
    else:
        dev = device_of(data)
    if dtype is not None:
        np_dtype = dt.to_numpy(dt.canonical(dtype))
    elif hasattr(data, "dtype"):
        np_dtype = dt.to_numpy(dt.canonical(data.dtype))
    else:
        probe = np.asarray(data)
        if probe.dtype.kind == "f":
            np_dtype = dt.to_numpy(dt.DEFAULT_FLOAT)
        elif probe.dtype.kind in "iu":
            np_dtype = dt.to_numpy(dt.DEFAULT_INT)
        else:
            np_dtype = dt.to_numpy(dt.canonical(probe.dtype))
    if dev is _CPU and type(data) is np.ndarray:
        return _wrap(data if data.dtype == np_dtype else data.astype(np_dtype))
    return _wrap(move(data, dev, np_dtype))


_CPU = cpu()
_DLPACK_CPU, _DLPACK_CUDA, _DLPACK_CUDA_HOST, _DLPACK_CUDA_MANAGED = 1, 2, 3, 13


def from_dlpack(obj) -> Tensor:
    """A tensor sharing the memory of ``obj``, any object with ``__dlpack__`` and
    ``__dlpack_device__`` (numpy, torch, cupy, jax... arrays): CPU memory through numpy,
    CUDA memory through cupy (imported only then). Zero-copy where the producer allows."""
    if isinstance(obj, Tensor):
        obj._concrete("gc.from_dlpack")
        return obj
    device_fn = getattr(obj, "__dlpack_device__", None)
    if device_fn is None or not hasattr(obj, "__dlpack__"):
        raise DeviceError(f"gc.from_dlpack needs an object with __dlpack__ and "
                          f"__dlpack_device__, got {type(obj).__name__}")
    kind, index = (int(v) for v in device_fn())
    if kind in (_DLPACK_CPU, _DLPACK_CUDA_HOST):
        data = np.from_dlpack(obj)
    elif kind in (_DLPACK_CUDA, _DLPACK_CUDA_MANAGED):
        device = Device("gpu", index)
        try:
            xp = device.xp
        except BackendError as e:
            raise BackendError(f"gc.from_dlpack: the array is in CUDA memory (device "
                               f"{index}); {e.message}") from None
        with device.scope():
            data = xp.from_dlpack(obj)
    else:
        raise DeviceError(f"gc.from_dlpack: DLPack device type {kind} is neither the CPU "
                          "nor CUDA; graphc cannot use it")
    dt.canonical(data.dtype)  # a dtype graphc has, else a DTypeError that says so
    return _wrap(data)


# -- dispatch -------------------------------------------------------------------------

#: Set by `graphc.autograd` while recording: called as hook(op, inputs, attrs, outputs).
autograd_hook = None

def _dtype_of(a) -> str:
    return a._sym.type.dtype if a._sym is not None else dt.name_of(a._data.dtype)


def _type_of(a) -> TensorType:
    return TensorType(a.shape, dt.name_of(a.dtype))


def prepare_inputs(op: Op, args: tuple) -> list[Tensor]:
    """Turn Python scalars and arrays into tensors and cast inputs as ``op.promote`` says.

    Casts go through `apply`, so they are recorded by autograd and traced as graph nodes."""
    tensor_dtypes = [_dtype_of(a) for a in args if isinstance(a, Tensor)]
    common = dt.promote(*tensor_dtypes) if tensor_dtypes else None
    ts = []
    for a in args:
        if isinstance(a, Tensor):
            ts.append(a)
        elif isinstance(a, _SCALARS):
            ts.append(_wrap(np.asarray(a, dt.to_numpy(dt.scalar_dtype(a, common)))))
        elif a is None:
            raise ShapeError("got None where a tensor is expected", op=op.name)
        else:
            ts.append(array(a))
    if op.promote is not None:
        names = tuple(_dtype_of(t) for t in ts)
        for i, (name, target) in enumerate(zip(names, op.promote(names))):
            if name != target:
                ts[i] = apply(_CAST, ts[i], dtype=target)
    return ts


def apply(op: Op, *args, **attrs):
    """Run ``op`` on ``args``: eagerly, or as a traced node if any input is symbolic."""
    sig = [op]
    for a in args:
        if isinstance(a, Tensor):
            if a._sym is not None:
                return _apply_symbolic(op, args, attrs)
            sig.append(a._data.dtype)
        else:
            sig.append(type(a))
    # The promotion plan depends only on the op and the input dtypes/types: cache it.
    key = tuple(sig)
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = _make_plan(op, args)
    if plan is True:
        return _eager(op, args, attrs)
    if plan is False:
        return _eager(op, prepare_inputs(op, args), attrs)
    inputs = []
    for a, (scalar_dtype, target) in zip(args, plan):
        t = a if scalar_dtype is None else _scalar(a, scalar_dtype)
        inputs.append(t if target is None else apply(_CAST, t, dtype=target))
    return _eager(op, inputs, attrs)


def _scalar(value, np_dtype) -> Tensor:
    try:
        return _wrap(np.asarray(value, np_dtype))
    except OverflowError:  # a Python int too big for the tensor's dtype
        dt.scalar_dtype(value, dt.name_of(np_dtype))  # raises the DTypeError that says so
        raise


def _apply_symbolic(op: Op, args: tuple, attrs: dict):
    tracer = None
    for a in args:
        if isinstance(a, Tensor) and a._sym is not None:
            t = a._sym.tracer
            if tracer is None or t.level > tracer.level:
                tracer = t
    return tracer.apply(op, args, attrs)


def _make_plan(op: Op, args: tuple):
    """True: run as is; False: convert with prepare_inputs (arrays, lists, None...);
    else per input (dtype to make a Python scalar into, dtype to cast to, or None)."""
    if not all(isinstance(a, Tensor | bool | int | float) for a in args):
        return False
    tensor_dtypes = [_dtype_of(a) for a in args if isinstance(a, Tensor)]
    common = dt.promote(*tensor_dtypes) if tensor_dtypes else None
    names = tuple(_dtype_of(a) if isinstance(a, Tensor) else dt.scalar_dtype(a, common)
                  for a in args)
    targets = op.promote(names) if op.promote is not None else names
    plan = tuple((None if isinstance(a, Tensor) else dt.to_numpy(name),
                  None if target == name else target)
                 for a, name, target in zip(args, names, targets))
    return True if all(s is None and t is None for s, t in plan) else plan


_plans: dict[tuple, object] = {}
_inferred: dict[tuple, dict] = {}


def _checked_attrs(op: Op, arrays: list, attrs: dict) -> dict:
    """Canonical attrs after the type rule accepted the inputs, memoized per signature."""
    types = tuple(TensorType(a.shape, dt.name_of(a.dtype)) for a in arrays)
    try:
        # Key on the attrs' types too: (2.0, 3) == (2, 3) and True == 1 must not share.
        key = (op, types, *[(k, v, tuple(map(type, v)) if type(v) is tuple else type(v))
                            for k, v in attrs.items()])
        hit = _inferred.get(key)
    except TypeError:  # unhashable attrs (a list axis): no memo
        key, hit = None, None
    if hit is None:
        try:
            hit = registry.infer(op, types, attrs)[1]
        except GraphcError as e:
            raise e.with_context(op=op.name, loc=user_location()) from None
        if key is not None:
            if len(_inferred) > 4096:
                _inferred.clear()
            _inferred[key] = hit
    return hit


_device_scalars: dict[tuple, object] = {}


def _scalar_on(a: np.ndarray, device: Device):
    """The 0-d host array ``a`` on ``device``, cached: Python scalars in ``x * 2`` become
    0-d arrays, and copying each to the GPU would cost a synchronous transfer per op."""
    key = (device, a.dtype.str, a.tobytes())
    hit = _device_scalars.get(key)
    if hit is None:
        if len(_device_scalars) > 1024:
            _device_scalars.clear()
        hit = _device_scalars[key] = move(a, device)
    return hit


def _on_one_device(op: Op, inputs, arrays: list) -> tuple[object, Device | None, list]:
    """The namespace and device of an op call whose inputs are not all numpy arrays, and
    its input arrays there. 0-d host arrays (Python scalars, dropout keys) follow the other
    inputs, as a 0-d CPU tensor does in PyTorch, unless autograd tracks them (their
    gradient must stay on the CPU); any other mix of devices is an error."""
    devices: list[Device] = []
    for t, a in zip(inputs, arrays):
        if type(a) is np.ndarray and a.ndim == 0 and t._node is None:
            continue
        d = device_of(a)
        if d not in devices:
            devices.append(d)
    if len(devices) > 1:
        raise DeviceError(f"inputs are on different devices, {devices[0]} and {devices[1]}; "
                          "move them to one device with x.to(device) first",
                          op=op.name, loc=user_location())
    if not devices or devices[0].type == "cpu":
        return np, None, arrays
    device = devices[0]
    arrays = [_scalar_on(a, device) if type(a) is np.ndarray else a for a in arrays]
    return device.xp, device, arrays


def _eager(op: Op, inputs, attrs: dict, xp=np, arrays: list | None = None):
    """Run ``op`` on concrete ``inputs``; the host path is this one function (it is the
    cost of every eager op), any other array sends the call through `_eager_on_device`."""
    if arrays is None:
        arrays = [t._data for t in inputs]
        for a in arrays:
            if type(a) is not np.ndarray:
                return _eager_on_device(op, inputs, attrs, arrays)
    if op.checked_eagerly:
        attrs = _checked_attrs(op, arrays, attrs)
    try:
        out = op.impl(xp, *arrays, **attrs)
    except GraphcError as e:
        raise e.with_context(op=op.name, loc=user_location()) from None
    except (ValueError, TypeError, IndexError) as e:
        # numpy rejected it; let the type rule explain, else pass numpy's reason on.
        types = tuple(_type_of(a) for a in arrays)
        try:
            registry.infer(op, types, attrs)
        except GraphcError as ge:
            raise ge.with_context(op=op.name, loc=user_location()) from None
        raise ShapeError(f"{e} (inputs {', '.join(map(str, types))})", op=op.name,
                         loc=user_location()) from None
    if type(out) is np.ndarray:
        outputs = _wrap(out)
    elif isinstance(out, tuple):
        outputs = tuple(_wrap(xp.asarray(o)) for o in out)
    else:
        outputs = _wrap(xp.asarray(out))  # numpy returns scalars for 0-d results
    if autograd_hook is not None:
        autograd_hook(op, inputs, attrs, outputs)
    return outputs


def _eager_on_device(op: Op, inputs, attrs: dict, arrays: list):
    xp, device, arrays = _on_one_device(op, inputs, arrays)
    if device is None:
        return _eager(op, inputs, attrs, np, arrays)
    with device.scope():
        return _eager(op, inputs, attrs, xp, arrays)


def shape_dependent(fn):
    """Mark a function that reads its inputs' shapes (a composite such as softmax).

    A `gc.Variable` expression has no shapes until it is compiled, so on such inputs the
    whole call is recorded and replayed at compile time, when the shapes are known;
    otherwise the function just runs (eagerly or while tracing)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for a in (*args, *kwargs.values()):
            for t in (a if isinstance(a, list | tuple) else (a,)):
                if isinstance(t, Tensor) and t._sym is not None and t._sym.tracer.level == 0:
                    return t._sym.tracer.record_call(fn, args, kwargs)
        return fn(*args, **kwargs)
    return wrapper


_CAST: Op  # set by graphc.ops.elementwise, which defines the cast op


def set_cast_op(op: Op) -> None:
    global _CAST
    _CAST = op
