"""Training/prediction mode (and, with the autograd issue, the eager tape).

The mode decides how Dropout and BatchNorm behave; compiled functions key their cache on
it, so switching modes retraces instead of reusing a stale graph.
"""

from __future__ import annotations

import contextlib

_mode = {"training": False}


def is_training() -> bool:
    return _mode["training"]


@contextlib.contextmanager
def _set_training(flag: bool):
    old = _mode["training"]
    _mode["training"] = flag
    try:
        yield
    finally:
        _mode["training"] = old


def train_mode():
    return _set_training(True)


def predict_mode():
    return _set_training(False)
