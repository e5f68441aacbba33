"""Backends by name. `reference` (numpy) is the oracle every other backend is tested against."""

from __future__ import annotations

import os

from ..errors import BackendError
from .base import Backend, Executable

_BACKENDS: dict[str, type[Backend]] = {}
#: The backend of gc.jit/compile/hybridize when none is named: native code on the CPU,
#: unless ``GRAPHC_BACKEND`` names another (the test suite runs on the oracle by default).
DEFAULT = os.environ.get("GRAPHC_BACKEND") or "llvm"


def register_backend(cls: type[Backend]) -> type[Backend]:
    _BACKENDS[cls.name] = cls
    return cls


def get_backend(name: str | None = None) -> Backend:
    name = name or DEFAULT
    if name not in _BACKENDS:
        raise BackendError(f"unknown backend {name!r}; available: {sorted(_BACKENDS)}")
    return _BACKENDS[name]()


from . import reference  # noqa: E402,F401  (registers itself)

__all__ = ["Backend", "Executable", "get_backend", "register_backend", "DEFAULT"]
from .cuda import backend as _cuda_backend  # noqa: E402,F401  (registers itself)
from .llvm import backend as _llvm_backend  # noqa: E402,F401  (registers itself)
