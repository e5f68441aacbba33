"""graphc.nn: Gluon-style blocks, parameters and layers.

Blocks and parameters are imported here; layers load on first use (``nn.Dense``), so
this package imports even while a layer module is missing or broken, and only the use of
a name from it fails.
"""

from __future__ import annotations

import importlib

from .block import Block, HybridBlock, HybridSequential, ParameterDict, Sequential, SymbolBlock
from .hybrid import load
from .parameter import DeferredInitializationError, Parameter

_LAZY = {
    "basic_layers": ("Dense", "Dropout", "BatchNorm", "LayerNorm", "Embedding", "Flatten",
                     "Activation", "LeakyReLU", "Lambda", "HybridLambda", "Identity",
                     "InstanceNorm", "GroupNorm", "Concatenate", "HybridConcatenate"),
    "conv_layers": ("Conv1D", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
                    "GlobalMaxPool2D", "MaxPool1D", "AvgPool1D", "Conv2DTranspose"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}
_SUBMODULES = ("rnn", "basic_layers", "conv_layers", "block", "parameter", "hybrid")

__all__ = ["Block", "HybridBlock", "Sequential", "HybridSequential", "SymbolBlock", "load",
           "Parameter", "ParameterDict", "DeferredInitializationError", *_WHERE]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'graphc.nn' has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(f".{module}", __name__), name)
    except AttributeError:
        raise AttributeError(f"graphc.nn.{module} does not define {name!r} (yet)") from None


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE, "rnn"})
