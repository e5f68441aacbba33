"""Tensor's operators and methods, bound in one table to the op functions.

Kept apart from `graphc.tensor` because the op modules import Tensor; this module is
imported last, once every op function exists.
"""

from __future__ import annotations

from . import autograd
from .device import as_device
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


def _as_in_context(self, device) -> Tensor:
    from .tensor import array
    device = as_device(device)
    return self if self.device == device else array(self.numpy(), device=device)


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
    "detach": _detach, "as_in_context": _as_in_context, "to": _as_in_context,
    "asscalar": _asscalar,
}

for _name, _fn in METHODS.items():
    setattr(Tensor, _name, _fn)
