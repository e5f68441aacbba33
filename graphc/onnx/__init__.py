"""ONNX import and export (``pip install 'graphc[onnx]'``; without the onnx package every
function here raises a BackendError that says so).

- `load(path)`: the model as a graphc `Graph` (initializers become constants; symbolic
  input dims need ``input_shapes``);
- `compile(path, backend=...)`: a callable taking the model's inputs positionally (graph
  order) or by their ONNX names, compiled once per input signature like `gc.jit`;
- `export(graph_or_block, path, *example_inputs)`: an ONNX model onnxruntime can run.

See `graphc.onnx.importer` for how a model becomes graphc ops.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import GraphcError
from ..graph import Graph
from . import ops_math, ops_nn, ops_tensor  # noqa: F401,E402  (register converters)
from .importer import CONVERTERS, OnnxImportError, OnnxModel, read_model

__all__ = ["load", "compile", "export", "OnnxFunction", "OnnxImportError", "CONVERTERS"]


def _model(model) -> OnnxModel:
    if isinstance(model, OnnxModel):
        return model
    if isinstance(model, str | os.PathLike):
        return OnnxModel(read_model(model))
    if hasattr(model, "graph") and hasattr(model, "opset_import"):   # a ModelProto
        return OnnxModel(model)
    raise OnnxImportError(f"expected a path to an .onnx file or an onnx.ModelProto, "
                          f"got {type(model).__name__}")


def load(path, input_shapes: dict | None = None) -> Graph:
    """The model at ``path`` as a graphc Graph (not yet optimized). Symbolic input dims
    (a batch size 'N') must be given: ``input_shapes={'data': (8, 3, 224, 224)}``."""
    from ..trace import trace
    model = _model(path)
    shapes = dict(input_shapes or {})
    examples = []
    for name, dtype, dims in model.inputs:
        shape = shapes.pop(name, None)
        if shape is None:
            if dims is None or any(d is None for d in dims):
                raise OnnxImportError(f"input {name!r} has symbolic dims {dims}; give its "
                                      f"shape: load(path, input_shapes={{{name!r}: (...)}})")
            shape = dims
        examples.append(np.zeros(tuple(shape), dtype))
    if shapes:
        raise OnnxImportError(f"input_shapes names {sorted(shapes)}, which are not inputs of "
                              f"the model (its inputs: {model.input_names})")
    return trace(model.function, *examples)


class OnnxFunction:
    """A compiled ONNX model: call it with the model's inputs, positionally in graph order
    or by their ONNX names; it returns one Tensor, or a tuple for several outputs."""

    def __init__(self, model: OnnxModel, backend: str | None, options: dict):
        from ..trace import jit
        self.model = model
        self.input_names = model.input_names
        self.output_names = model.output_names
        self._run = jit(model.function, backend=backend, **options)

    def _arrays(self, args: tuple, kwargs: dict) -> list:
        if len(args) > len(self.input_names):
            raise OnnxImportError(f"the model takes {len(self.input_names)} inputs "
                                  f"{self.input_names}, got {len(args)}")
        values = dict(zip(self.input_names, args))
        for name, value in kwargs.items():
            if name not in self.input_names:
                raise OnnxImportError(f"{name!r} is not an input of the model; its inputs: "
                                      f"{self.input_names}")
            if name in values:
                raise OnnxImportError(f"input {name!r} given twice")
            values[name] = value
        missing = [n for n in self.input_names if n not in values]
        if missing:
            raise OnnxImportError(f"missing input(s) {missing}; the model takes "
                                  f"{self.input_names}")
        out = []
        for name, dtype, dims in self.model.inputs:
            x = values[name]
            shape, got = tuple(np.shape(x)), getattr(x, "dtype", None)
            got = np.asarray(x).dtype if got is None else got
            if str(got) != dtype:
                raise OnnxImportError(f"input {name!r} expects {dtype}, got {got}")
            if dims is not None and (len(dims) != len(shape) or any(
                    d is not None and d != s for d, s in zip(dims, shape))):
                want = tuple("?" if d is None else d for d in dims)
                raise OnnxImportError(f"input {name!r} expects shape {want}, got {shape}")
            out.append(x)
        return out

    def __call__(self, *args, **kwargs):
        outs = self._run(*self._arrays(args, kwargs))
        return outs[0] if len(outs) == 1 else outs

    def compiled(self, *args, **kwargs):
        """The executable for these inputs' signature (its graph, kernels, memory plan)."""
        return self._run.compiled(*self._arrays(args, kwargs))


def compile(path, backend: str | None = None, **options) -> OnnxFunction:  # noqa: A001
    """The model at ``path`` (or an onnx.ModelProto) as a function compiled with
    ``backend`` (default: llvm on the CPU, cuda for GPU inputs); ``options`` as `gc.jit`'s
    (opt_level, ...)."""
    return OnnxFunction(_model(path), backend, options)


def export(graph_or_block, path, *example_inputs, opset: int | None = None):
    """Write ``graph_or_block`` (a graphc Graph, or a Block traced on ``example_inputs``)
    as an ONNX model at ``path``; returns the ModelProto."""
    from . import exporter
    kwargs = {} if opset is None else {"opset": opset}
    if isinstance(graph_or_block, Graph):
        if example_inputs:
            raise GraphcError("export: a Graph has its own input types; example inputs are "
                              "for blocks")
        return exporter.export_graph(graph_or_block, path, **kwargs)
    return exporter.export_block(graph_or_block, path, *example_inputs, **kwargs)
