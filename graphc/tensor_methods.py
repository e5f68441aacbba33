"""Tensor's operators and methods, bound in one table to the op functions.

Kept apart from `graphc.tensor` because the op modules import Tensor; this module is
imported last, once every op function exists.
"""

from __future__ import annotations

from . import autograd
from .device import as_device, move
from .ops import elementwise as E
from .ops import linalg as L
from .ops import reduce as R
from .ops import shape as SH
from .tensor import Tensor


def _flip(fn):
    return lambda self, other: fn(other, self)


def _shape_args(args):
    """``x.reshape(2, 3)`` and ``x.reshape((2, 3))`` both work, as in numpy."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], tuple | list) else args


def _reshape(self, *shape):
    return SH.reshape(self, _shape_args(shape))


def _transpose(self, *axes):
    return SH.transpose(self, _shape_args(axes) or None)


def _astype(self, dtype):
    return E.cast(self, dtype)


def _detach(self) -> Tensor:
    """The same value, cut off from the autograd tape."""
    from .tensor import _wrap, symbolic
    return _wrap(self._data) if self._sym is None else symbolic(self._sym)


def _to(self, device, copy: bool = False) -> Tensor:
    """This tensor on ``device`` (a Device, 'cpu', 'cuda', 'cuda:1'...): itself when it is
    there already (unless ``copy``), else a copy there. Autograd records the move, so a
    gradient flows back to the source device."""
    from .errors import TraceError, user_location
    from .tensor import _wrap
    device = as_device(device)
    if self._sym is not None:
        if device != self.device:
            raise TraceError(f"cannot move a traced tensor from {self.device} to {device}: "
                             "a traced function runs on one device; move its inputs "
                             "instead", loc=user_location())
        return self
    if device == self.device and not copy:
        return self
    source = self.device
    with device.scope():
        data = move(self._data, device)
        out = _wrap(data.copy() if data is self._data else data)
    if autograd.is_recording():
        autograd.record_entry(lambda gs: (_to(gs[0], source),), (self,), out, "to")
    return out


def _copyto(self, other) -> Tensor:
    """Gluon's copyto: a copy on device ``other``, or the value written into the tensor
    ``other`` (same shape; cast to its dtype, moved to its device), which is returned."""
    if not isinstance(other, Tensor):
        return _to(self, other, copy=True)
    if other._sym is not None or self._sym is not None:
        from .errors import TraceError
        raise TraceError("copyto into a tensor needs concrete tensors")
    if tuple(other.shape) != tuple(self.shape):
        from .errors import ShapeError
        raise ShapeError(f"copyto: shape {tuple(self.shape)} into a tensor of shape "
                         f"{tuple(other.shape)}", op="copyto")
    device = other.device
    with device.scope():
        other._data[...] = move(self._data, device)
    return other


def _asscalar(self):
    if self.size != 1:
        raise ValueError(f"asscalar() needs a tensor of one element, got shape {self.shape}")
    return self.item()


METHODS = {
    "__add__": E.add, "__radd__": _flip(E.add),
    "__sub__": E.sub, "__rsub__": _flip(E.sub),
    "__mul__": E.mul, "__rmul__": _flip(E.mul),
    "__truediv__": E.div, "__rtruediv__": _flip(E.div),
    "__pow__": E.power, "__rpow__": _flip(E.power),
    "__matmul__": L.matmul, "__rmatmul__": _flip(L.matmul),
    "__neg__": E.neg, "__pos__": lambda self: self, "__abs__": E.abs,
    "__eq__": E.equal, "__ne__": E.not_equal, "__lt__": E.less, "__le__": E.less_equal,
    "__gt__": E.greater, "__ge__": E.greater_equal,
    "__and__": E.logical_and, "__rand__": _flip(E.logical_and),
    "__or__": E.logical_or, "__ror__": _flip(E.logical_or),
    "__invert__": E.logical_not,
    "__getitem__": SH.getitem,
    "reshape": _reshape, "transpose": _transpose, "T": property(lambda self: SH.transpose(self)),
    "flatten": SH.flatten, "squeeze": SH.squeeze, "expand_dims": SH.expand_dims,
    "broadcast_to": SH.broadcast_to, "take": SH.take,
    "astype": _astype,
    "sum": R.sum, "mean": R.mean, "max": R.max, "min": R.min, "prod": R.prod,
    "argmax": R.argmax, "argmin": R.argmin,
    "exp": E.exp, "log": E.log, "sqrt": E.sqrt, "tanh": E.tanh, "relu": E.relu,
    "sigmoid": E.sigmoid, "clip": E.clip,
    "attach_grad": autograd.attach_grad, "grad": property(lambda self: self._grad),
    "backward": lambda self, head_grad=None, retain_graph=False: autograd.backward(
        self, head_grad, retain_graph),
    "detach": _detach, "to": _to, "as_in_context": _to, "as_in_ctx": _to,
    "copyto": _copyto, "context": property(lambda self: self.device),
    "ctx": property(lambda self: self.device),
    "asscalar": _asscalar,
}

for _name, _fn in METHODS.items():
    setattr(Tensor, _name, _fn)
