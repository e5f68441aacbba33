"""ONNX models as graphc programs: each ONNX node runs through one converter written
with graphc ops.

An imported model is a plain function of its inputs (`OnnxModel.run`): it walks the ONNX
graph in order and calls, per node, the converter registered for its op type
(``@converter("Conv")``; converters live in `graphc.onnx.ops_math`, `ops_tensor` and
`ops_nn`). Run under `gc.trace` / `gc.jit` it records a graphc graph; run on concrete
tensors it computes eagerly. Values are graphc Tensors, or numpy arrays for what is known
at import (initializers, ``Constant`` nodes, and anything computed only from those and from
static shapes): a node whose inputs are all known runs eagerly on them and its outputs stay
known. So shape-computing subgraphs (``Shape -> Gather -> Concat -> Reshape``) fold to
constants at import, and converters can ask for attribute-like inputs (a Reshape's shape, a
Slice's starts) as numpy values (`NodeContext.const`).

Initializers are constants of the traced graph, including those older exporters also list
among the graph inputs: the model's inputs are the graph inputs that are not initializers.
A model file is data: its size is checked before it is parsed (protobuf, never pickle),
and every op type the converters lack is reported at once, before anything runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from .. import dtypes as dt
from ..errors import BackendError, GraphcError
from ..tensor import Tensor, array

#: The largest model file read (protobuf's own limit is 2 GiB).
MAX_BYTES = 2 << 30
#: ONNX op types -> converter (see `converter`).
CONVERTERS: dict[str, Callable] = {}
#: ONNX TensorProto element types graphc computes with.
_DTYPES = {1: "float32", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


class OnnxImportError(GraphcError, ValueError):
    """A model graphc cannot import: malformed, unsupported ops or dtypes, or inputs that
    do not match the model's."""


def converter(*op_types: str):
    """Register ``fn(ctx: NodeContext) -> output | list of outputs`` for ``op_types``."""
    def register(fn):
        for t in op_types:
            CONVERTERS[t] = fn
        return fn
    return register


def onnx_module():
    try:
        import onnx
    except ImportError as e:
        raise BackendError("ONNX import/export needs the onnx package: "
                           "pip install 'graphc[onnx]'") from e
    return onnx


def dtype_name(elem_type: int, where: str) -> str:
    """graphc's name of ONNX element type ``elem_type``, or `OnnxImportError`."""
    if elem_type in _DTYPES:
        return _DTYPES[elem_type]
    onnx = onnx_module()
    name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in \
        onnx.TensorProto.DataType.values() else str(elem_type)
    raise OnnxImportError(f"{where}: element type {name} is not supported (graphc computes "
                          f"in {', '.join(sorted(set(_DTYPES.values())))})")


def read_model(path: str | os.PathLike):
    """The ModelProto in ``path`` (with external data from its folder), size-checked."""
    onnx = onnx_module()
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise OnnxImportError(f"cannot read ONNX model {path!r}: {e.strerror}") from None
    if size > MAX_BYTES:
        raise OnnxImportError(f"{path}: {size} bytes, more than the {MAX_BYTES} an ONNX "
                              "protobuf may hold")
    try:
        return onnx.load(path)
    except Exception as e:   # protobuf's DecodeError, a missing external data file...
        raise OnnxImportError(f"{path} is not a readable ONNX model: {e}") from None


def _to_numpy(tensor_proto, where: str) -> np.ndarray:
    from onnx import numpy_helper
    dtype_name(tensor_proto.data_type, where)
    return np.array(numpy_helper.to_array(tensor_proto))


class NodeContext:
    """What a converter sees of one ONNX node: its inputs (Tensors, numpy arrays for known
    values, None for omitted optional inputs), attributes and the model's opset."""

    def __init__(self, node, inputs: list, opset: int, constants: dict | None = None):
        """``constants``: value name -> its constant Tensor, shared by the nodes of a run so
        a weight read by several nodes is one constant of the graph."""
        self.node, self.inputs, self.opset = node, inputs, opset
        self._attrs = {a.name: a for a in node.attribute}
        self._constants = {} if constants is None else constants


    @property
    def op_type(self) -> str:
        return self.node.op_type

    def fail(self, message: str) -> OnnxImportError:
        return OnnxImportError(f"ONNX node {self.node.name or self.node.output[0]!r} "
                               f"({self.node.op_type}): {message}")

    def attr(self, name: str, default=None):
        """Attribute ``name`` as Python: int, float, str, list of them, or numpy array."""
        a = self._attrs.get(name)
        if a is None:
            return default
        from onnx import helper
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            return value.decode()
        if hasattr(value, "data_type"):   # a TensorProto
            return _to_numpy(value, f"attribute {name}")
        if isinstance(value, list | tuple):
            return [v.decode() if isinstance(v, bytes) else v for v in value]
        return value

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] is not None

    def is_const(self, i: int) -> bool:
        return self.has(i) and isinstance(self.inputs[i], np.ndarray)

    def const(self, i: int, default=None) -> np.ndarray | None:
        """Input ``i`` as a numpy array: it must be known at import (an initializer, a
        Constant, or folded from them and static shapes). ``default`` if omitted."""
        if not self.has(i):
            return default
        x = self.inputs[i]
        if not isinstance(x, np.ndarray):
            raise self.fail(f"input {i} ({self.node.input[i]!r}) must be known when the model "
                            "is imported, but it is computed from the model's inputs")
        return x

    def tensor(self, i: int) -> Tensor | None:
        """Input ``i`` as a graphc Tensor (a known value becomes a constant)."""
        if not self.has(i):
            return None
        x = self.inputs[i]
        if not isinstance(x, np.ndarray):
            return x
        name = self.node.input[i]
        t = self._constants.get(name)
        if t is None:
            t = self._constants[name] = array(x, dtype=dt.name_of(x.dtype))
        return t

    def shape(self, i: int) -> tuple[int, ...]:
        return tuple(int(d) for d in np.shape(self.inputs[i]))


class OnnxModel:
    """An imported model: its inputs (name, dtype, shape with None for symbolic dims) and
    `run`, the model as a function of graphc tensors."""

    def __init__(self, proto):
        self.proto = proto
        graph = proto.graph
        opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
        self.opset = opsets.get("ai.onnx", 1)
        unsupported = sorted({f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx")
                              else n.op_type for n in graph.node
                              if n.domain not in ("", "ai.onnx") or n.op_type not in CONVERTERS})
        unsupported += sorted({_too_new(n.op_type, self.opset) for n in graph.node
                               if n.op_type in CONVERTERS and n.domain in ("", "ai.onnx")}
                              - {None})
        if unsupported:
            raise OnnxImportError(f"the model uses {len(unsupported)} op type(s) graphc cannot "
                                  f"import: {', '.join(unsupported)}")
        self.constants = {t.name: _to_numpy(t, f"initializer {t.name!r}")
                          for t in graph.initializer}
        self.inputs = []
        for vi in graph.input:
            if vi.name in self.constants:
                continue
            t = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                raise OnnxImportError(f"input {vi.name!r} is not a tensor")
            dims = tuple(d.dim_value if d.HasField("dim_value") else None
                         for d in t.shape.dim) if t.HasField("shape") else None
            self.inputs.append((vi.name, dtype_name(t.elem_type, f"input {vi.name!r}"), dims))
        self.input_names = [name for name, _, _ in self.inputs]
        self.output_names = [vi.name for vi in graph.output]

    @property
    def function(self) -> Callable:
        """`run` with a signature naming the inputs after the model's (made identifiers), so
        a traced graph's inputs carry the ONNX names."""
        import inspect
        import re

        def model(*xs):
            return self.run(*xs)
        names: list[str] = []
        for name in self.input_names:
            base = re.sub(r"\W", "_", name)
            base = base if base and not base[0].isdigit() else f"x_{base}"
            new, k = base, 1
            while new in names:
                new, k = f"{base}_{k}", k + 1
            names.append(new)
        model.__signature__ = inspect.Signature(
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_ONLY) for n in names])
        model.__name__ = model.__qualname__ = re.sub(r"\W", "_", self.proto.graph.name) \
            or "onnx_model"
        return model

    def run(self, *xs) -> tuple:
        """The model's outputs for inputs ``xs`` (graphc Tensors or arrays, in order)."""
        if len(xs) != len(self.inputs):
            raise OnnxImportError(f"the model takes {len(self.inputs)} inputs "
                                  f"{self.input_names}, got {len(xs)}")
        env: dict[str, object] = dict(self.constants)
        env.update(zip(self.input_names, xs))
        constants: dict = {}
        for node in self.proto.graph.node:
            ins = []
            for name in node.input:
                if name == "":
                    ins.append(None)
                elif name not in env:
                    raise OnnxImportError(f"ONNX node {node.name!r} ({node.op_type}) reads "
                                          f"{name!r}, which no earlier node computes")
                else:
                    ins.append(env[name])
            ctx = NodeContext(node, ins, self.opset, constants)
            try:
                outs = CONVERTERS[node.op_type](ctx)
            except OnnxImportError:
                raise
            except GraphcError as e:
                raise ctx.fail(str(e)) from None
            outs = list(outs) if isinstance(outs, list | tuple) else [outs]
            for name, out in zip(node.output, outs):
                if name:
                    env[name] = _known(out)
        return tuple(env[name] if not isinstance(env[name], np.ndarray)
                     else array(env[name], dtype=dt.name_of(env[name].dtype))
                     for name in self.output_names)


def _too_new(op_type: str, opset: int) -> str | None:
    """``'Gelu (since opset 20; the model imports 13)'`` when ``op_type`` does not exist
    at the model's opset, else None."""
    from onnx import defs
    try:
        defs.get_schema(op_type, opset)
    except defs.SchemaError:
        try:
            since = defs.get_schema(op_type).since_version
        except defs.SchemaError:
            return None
        return f"{op_type} (since opset {since}; the model imports {opset})"
    return None


def _known(x):
    """A concrete result stays a numpy array (known at import); a traced one a Tensor."""
    if isinstance(x, Tensor):
        return np.asarray(x.numpy()) if x._sym is None else x
    return np.asarray(x) if not isinstance(x, np.ndarray) else x
