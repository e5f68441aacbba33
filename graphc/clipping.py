"""Gradient clipping by global norm (``gc.utils.clip_global_norm``, as in Gluon).

Named clipping, not clip: a submodule `graphc.clip` would replace the `gc.clip` op.
"""

from __future__ import annotations

import math
import warnings

from .device import device_of
from .errors import GraphcError
from .tensor import Tensor


def clip_global_norm(arrays: list[Tensor], max_norm: float, check_isfinite: bool = True
                     ) -> float:
    """Scale ``arrays`` so that their joint L2 norm is at most ``max_norm``; return the
    norm before scaling.

    The scale is ``min(1, max_norm / (norm + 1e-8))``, as Gluon. Each Tensor is scaled
    once (a Tensor listed twice counts twice in the norm) and keeps its identity: its
    value is replaced by the scaled one, so ``p.grad()`` sees it, and a buffer another
    tensor shares (a view, a gradient returned for two inputs) is not scaled twice.
    A non-finite norm warns (``check_isfinite``) and leaves the arrays unchanged.
    """
    if not isinstance(arrays, list | tuple) or not arrays:
        raise GraphcError("clip_global_norm: arrays must be a non-empty list of Tensors")
    if max_norm <= 0:
        raise GraphcError(f"clip_global_norm: max_norm must be positive, got {max_norm}")
    total = 0.0
    for a in arrays:
        if not isinstance(a, Tensor) or a.is_symbolic:
            raise GraphcError("clip_global_norm: arrays must be concrete Tensors, got "
                              f"{type(a).__name__}")
        x = a._data
        xp = device_of(x).xp
        total += float(xp.sum(xp.square(x.astype(xp.float64))))
    norm = math.sqrt(total)
    if not math.isfinite(norm):
        if check_isfinite:
            warnings.warn("clip_global_norm: nan or inf in the arrays; they are left "
                          "unscaled", RuntimeWarning, stacklevel=2)
        return norm
    scale = max_norm / (norm + 1e-8)
    if scale < 1.0:
        done = set()
        for a in arrays:
            if id(a) not in done:
                done.add(id(a))
                a._data = (a._data * scale).astype(a._data.dtype)
    return norm
