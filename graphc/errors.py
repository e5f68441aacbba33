"""Errors a user can act on, and the user source line they point at.

Every error graphc raises on bad input is a `GraphcError` subclass. Errors raised while an
op runs or is traced carry the op name and the user's own source line (the first stack
frame outside the graphc package), so a message reads like
``add: cannot broadcast shapes (3,) and (4,)  [at model.py:12]``.
"""

from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_location() -> str | None:
    """``file:line`` of the innermost stack frame that is not graphc's own code."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE_DIR) and not filename.startswith("<frozen"):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None


class GraphcError(Exception):
    """Base class of every error graphc raises on bad input."""

    def __init__(self, message: str, *, op: str | None = None, loc: str | None = None):
        super().__init__(message)
        self.message = message
        self.op = op
        self.loc = loc

    def with_context(self, op: str | None = None, loc: str | None = None) -> GraphcError:
        """Fill in the op and user line if the raiser did not know them."""
        if self.op is None and op is not None:
            self.op = op
        if self.loc is None and loc is not None:
            self.loc = loc
        return self

    def __str__(self) -> str:
        text = self.message
        if self.op is not None and not text.startswith(f"{self.op}:"):
            text = f"{self.op}: {text}"
        if self.loc is not None:
            text = f"{text}  [at {self.loc}]"
        return text


class ShapeError(GraphcError, ValueError):
    """Input shapes or attributes an op's type rule rejects."""


class DTypeError(GraphcError, TypeError):
    """An unsupported dtype, or dtypes an op cannot combine."""


class TraceError(GraphcError):
    """Something a trace cannot capture, such as Python control flow on a tensor's value."""


class SerializationError(GraphcError):
    """A graph or tensor file that is malformed, truncated or inconsistent."""


class BackendError(GraphcError):
    """A backend that is unknown, unavailable, or cannot run a graph."""
