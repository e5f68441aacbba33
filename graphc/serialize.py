"""Graphs to JSON and tensors to safetensors, and back, with every field checked on the way in.

Files read from disk are data, never code: nothing here unpickles, evaluates or trusts a
size it has not checked against the bytes it has. Every malformed input raises
`SerializationError` naming what is wrong and where (``nodes[3].inputs[1]: ...``). The
formats and their limits are documented in docs/GRAPH_FORMAT.md.

A loaded graph is rebuilt through `Graph.add_input` / `Graph.add_node`, so attributes are
re-canonicalized and output types re-inferred by the ops' own rules; the recorded output
types must agree with them, and the result passes `Graph.validate`.
"""

from __future__ import annotations

import base64
import functools
import inspect
import json
import math
import os
import reprlib

import numpy as np

from . import dtypes as dt
from .errors import GraphcError, SerializationError
from .graph import ROLES, Graph, Value
from .ops import registry
from .ops.fused import FUSED
from .types import TensorType

FORMAT = "graphc.graph"
VERSION = 1
DEFAULT_INLINE_LIMIT = 1024        # constants with more elements go to `external`
MAX_ELEMENTS = 2**31               # of any shape (zero-size dims count as 1)
MAX_RANK = 32
MAX_ATTR_DEPTH = 16                # nesting of lists in an attribute value
MAX_BODY_DEPTH = 8                 # nesting of fused bodies (fusion makes depth 1)
MAX_JSON_BYTES = 2**30             # graph JSON text
MAX_HEADER_BYTES = 100 * 2**20     # safetensors JSON header

_SAFETENSORS_DTYPES = {"float32": "F32", "float64": "F64", "float16": "F16", "int32": "I32",
                       "int64": "I64", "bool": "BOOL"}
_FROM_SAFETENSORS = {v: k for k, v in _SAFETENSORS_DTYPES.items()}
_NON_FINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxstring, _repr.maxother = 3, 6, 4, 40, 40


def _show(x) -> str:
    """A short repr of untrusted data: bounded in length and depth."""
    return _repr.repr(x)


def _err(where: str, message: str) -> SerializationError:
    return SerializationError(f"{where}: {message}" if where else message)


# -- shared field checks ------------------------------------------------------------------

def _object(obj, where: str, required: tuple, optional: tuple = ()) -> dict:
    if not isinstance(obj, dict):
        raise _err(where, f"expected a JSON object, got {_show(obj)}")
    for key in required:
        if key not in obj:
            raise _err(where, f"missing field {key!r}")
    extra = sorted(k for k in obj if k not in required and k not in optional)
    if extra:
        raise _err(where, f"unknown field {extra[0]!r}")
    return obj


def _list(obj, where: str) -> list:
    if not isinstance(obj, list):
        raise _err(where, f"expected a list, got {_show(obj)}")
    return obj


def _string(obj, where: str, nonempty: bool = False) -> str:
    if not isinstance(obj, str) or (nonempty and not obj):
        raise _err(where, f"expected a {'non-empty ' if nonempty else ''}string, "
                          f"got {_show(obj)}")
    return obj


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _shape(obj, where: str) -> tuple[int, ...]:
    if not isinstance(obj, list) or len(obj) > MAX_RANK or not all(
            _is_int(d) and 0 <= d <= MAX_ELEMENTS for d in obj):
        raise _err(where, f"expected a list of at most {MAX_RANK} non-negative ints, "
                          f"got {_show(obj)}")
    if math.prod(max(d, 1) for d in obj) > MAX_ELEMENTS:
        raise _err(where, f"shape {obj} has more than 2**31 elements")
    return tuple(obj)


def _dtype(obj, where: str) -> str:
    if obj not in dt.DTYPES:  # a tuple: unhashable garbage is just not found
        raise _err(where, f"unknown dtype {_show(obj)}; expected one of {', '.join(dt.DTYPES)}")
    return obj


def _reject_duplicates(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise SerializationError(f"duplicate key {key!r} in a JSON object")
            seen.add(key)
    return obj


def _parse_json(text: str | bytes, what: str):
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates,
                          parse_constant=_NON_FINITE.__getitem__)
    except RecursionError:
        raise SerializationError(f"{what} is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, too many int digits
        raise SerializationError(f"{what} is not valid JSON: {e}") from None


def _le(dtype: str) -> np.dtype:
    return dt.to_numpy(dtype).newbyteorder("<")


def _array_from_bytes(raw, dtype: str, shape: tuple, where: str) -> np.ndarray:
    """A writable native-order array from little-endian bytes whose length was checked."""
    if dtype == "bool" and len(raw) and np.frombuffer(raw, np.uint8).max() > 1:
        raise _err(where, "bool data holds bytes other than 0 and 1")
    return np.frombuffer(raw, _le(dtype)).reshape(shape).astype(dt.to_numpy(dtype))


def _le_bytes(data: np.ndarray, dtype: str) -> bytes:
    return np.ascontiguousarray(data, dtype=_le(dtype)).tobytes()


# -- graph JSON: writing ------------------------------------------------------------------

def _attr_to_json(x, where: str, depth: int = 0):
    if x is None or type(x) in (bool, int, float, str):
        return x
    if isinstance(x, tuple | list) and depth < MAX_ATTR_DEPTH:
        return [_attr_to_json(v, where, depth + 1) for v in x]
    raise SerializationError(
        f"{where}: {type(x).__module__}.{type(x).__qualname__} {_show(x)} is not a JSON "
        "value; canonical attrs hold int, float, bool, str, None and tuples of these "
        f"(nested at most {MAX_ATTR_DEPTH} deep)")


def _type_json(v: Value) -> dict:
    return {"name": v.name, "shape": list(v.type.shape), "dtype": v.type.dtype}


def _tensor_json(data: np.ndarray, want: TensorType, where: str) -> dict:
    data = np.asarray(data)
    if tuple(data.shape) != want.shape:
        raise _err(where, f"data of shape {data.shape} does not match its type {want}")
    return {"dtype": want.dtype, "shape": list(want.shape),
            "data": base64.b64encode(_le_bytes(data, want.dtype)).decode("ascii")}


def _block(key: str, open_: str, close: str, items: list[str]) -> list[str]:
    """``"key": [`` then one item per line, as in docs/GRAPH_FORMAT.md."""
    if not items:
        return [f' "{key}": {open_}{close},']
    return [f' "{key}": {open_}', *(f"  {s}," for s in items[:-1]), f"  {items[-1]}",
            f" {close},"]


def graph_to_json(graph: Graph, *, external: dict | None = None,
                  inline_limit: int | None = None) -> str:
    """The graph as deterministic JSON text (one input, constant or node per line).

    With ``external`` (a dict to fill), constants of more than ``inline_limit`` elements
    (default 1024) are stored as ``external[name] = array`` and referenced by name, for a
    tensor file beside the JSON (see `save_graph`); otherwise every constant is inlined.
    """
    limit = DEFAULT_INLINE_LIMIT if inline_limit is None else inline_limit
    lines = ["{", f' "format": "{FORMAT}", "version": {VERSION}, '
                  f'"name": {json.dumps(graph.name)},']
    return "\n".join(lines + _graph_fields(graph, external, limit, 0) + ["}", ""])


def _graph_fields(graph: Graph, external: dict | None, limit: int, depth: int) -> list[str]:
    """The lines of a graph document after its name: inputs, constants, nodes, outputs.
    A fused node's record ends with its body, a nested document (constants inline)."""
    dumps = json.dumps
    inputs, constants, nodes = [], [], []
    for v in graph.inputs:
        inputs.append(dumps({**_type_json(v), "role": v.role}))
        if v.role != "constant":
            continue
        where = f"constant %{v.name}"
        if v.name not in graph.constants:
            raise _err(where, "has no data in graph.constants")
        data = graph.constants[v.name]
        if external is not None and v.type.size > limit:
            if tuple(np.shape(data)) != v.type.shape:
                raise _err(where, f"data of shape {np.shape(data)} does not match {v.type}")
            external[v.name] = data
            record = {"external": v.name}
        else:
            record = _tensor_json(data, v.type, where)
        constants.append(f"{dumps(v.name)}: {dumps(record)}")
    for i, node in enumerate(graph.nodes):
        where = f"node {i} ({node.op.name})"
        attrs = {}
        for k in node.attrs:
            if not isinstance(k, str):
                raise _err(where, f"attribute name {k!r} is not a string")
            attrs[k] = _attr_to_json(node.attrs[k], f"{where} attr {k!r}")
        record = dumps({"op": node.op.name, "inputs": [v.name for v in node.inputs],
                        "outputs": [_type_json(v) for v in node.outputs], "attrs": attrs,
                        "name": node.name, "loc": node.loc})
        if node.body is not None:
            if depth + 1 > MAX_BODY_DEPTH:
                raise _err(where, f"fused bodies are nested more than {MAX_BODY_DEPTH} deep")
            inner = [f' "name": {dumps(node.body.name)},']
            inner += _graph_fields(node.body, None, limit, depth + 1)
            record = "\n".join([record[:-1] + ', "body": {', *("  " + s for s in inner), "  }}"])
        nodes.append(record)
    lines = _block("inputs", "[", "]", inputs)
    lines += _block("constants", "{", "}", constants)
    lines += _block("nodes", "[", "]", nodes)
    lines.append(f' "outputs": {dumps([v.name for v in graph.outputs])}')
    return lines


# -- graph JSON: reading ------------------------------------------------------------------

def _attr_from_json(x, where: str, depth: int = 0):
    if isinstance(x, list):
        if depth >= MAX_ATTR_DEPTH:
            raise _err(where, f"attribute value nested more than {MAX_ATTR_DEPTH} deep")
        return tuple(_attr_from_json(v, where, depth + 1) for v in x)
    if isinstance(x, dict):
        raise _err(where, f"attribute values are JSON scalars or lists, got {_show(x)}")
    return x


def _constant(record, name: str, want: TensorType, tensors, used: set) -> np.ndarray:
    where = f"constants[{name!r}]"
    if isinstance(record, dict) and "external" in record:
        key = _string(_object(record, where, ("external",))["external"], where + ".external")
        if tensors is None or key not in tensors:
            raise _err(where, f"external tensor {key!r} was not given (pass tensors=...)")
        try:
            data = np.asarray(tensors[key])
            dtype = dt.canonical(data.dtype)
        except (GraphcError, TypeError, ValueError) as e:
            raise _err(where, f"external tensor {key!r} is not a supported array: {e}") from None
        if tuple(data.shape) != want.shape or dtype != want.dtype:
            raise _err(where, f"external tensor {key!r} is {dtype}{list(data.shape)}, "
                              f"but the input is declared {want}")
        used.add(key)
        return data
    _object(record, where, ("dtype", "shape", "data"))
    dtype, shape = _dtype(record["dtype"], where + ".dtype"), _shape(record["shape"],
                                                                     where + ".shape")
    if TensorType(shape, dtype) != want:
        raise _err(where, f"tensor {TensorType(shape, dtype)} does not match the input's "
                          f"type {want}")
    text = record["data"]
    nbytes = want.size * dt.to_numpy(dtype).itemsize
    if not isinstance(text, str) or len(text) != 4 * -(-nbytes // 3):
        raise _err(where + ".data", f"expected base64 of {nbytes} bytes")
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as e:
        raise _err(where + ".data", f"invalid base64: {e}") from None
    if len(raw) != nbytes:
        raise _err(where + ".data", f"decodes to {len(raw)} bytes, expected {nbytes}")
    return _array_from_bytes(raw, dtype, shape, where + ".data")


@functools.cache
def _impl_signature(op) -> inspect.Signature | None:
    try:
        return inspect.signature(op.impl)
    except (TypeError, ValueError):
        return None


def _check_impl_takes(op, n_inputs: int, attrs: dict, i: int) -> None:
    """A file's attrs must be exactly what the op's implementation takes: type rules that
    ignore attrs would otherwise let a stray one through to fail at run time."""
    sig = _impl_signature(op)
    if sig is None:
        return
    try:
        sig.bind(None, *([None] * n_inputs), **attrs)
    except TypeError as e:
        raise SerializationError(f"node {i} ({op.name}): {n_inputs} inputs and attrs "
                                 f"{_show(attrs)} do not fit the op: {e}") from None


def _node(graph: Graph, values: dict, rec, i: int, depth: int) -> None:
    where = f"nodes[{i}]"
    _object(rec, where, ("op", "inputs", "outputs"), ("attrs", "name", "loc", "body"))
    try:
        op = registry.get(rec["op"])
    except registry.UnknownOpError:
        raise SerializationError(f"unknown op {_show(rec['op'])} at {where}") from None
    inputs = []
    for j, ref in enumerate(_list(rec["inputs"], where + ".inputs")):
        v = values.get(ref) if isinstance(ref, str) else None
        if v is None:
            raise _err(f"{where}.inputs[{j}]",
                       f"unknown value {_show(ref)} (dangling reference or cycle)")
        inputs.append(v)
    attrs = rec.get("attrs", {})
    if not isinstance(attrs, dict):
        raise _err(where + ".attrs", f"expected a JSON object, got {_show(attrs)}")
    attrs = {k: _attr_from_json(a, f"{where}.attrs.{k}") for k, a in attrs.items()}
    name = _string(rec.get("name", op.name), where + ".name")
    loc = rec.get("loc")
    if loc is not None:
        _string(loc, where + ".loc")
    outs = []
    for j, out in enumerate(_list(rec["outputs"], where + ".outputs")):
        w = f"{where}.outputs[{j}]"
        _object(out, w, ("name", "shape", "dtype"))
        vname = _string(out["name"], w + ".name", nonempty=True)
        if vname in values or any(vname == n for n, _ in outs):
            raise _err(w + ".name", f"value name {vname!r} is defined twice")
        outs.append((vname, TensorType(_shape(out["shape"], w + ".shape"),
                                       _dtype(out["dtype"], w + ".dtype"))))
    body = _body(rec, op, where, depth)
    try:
        if body is not None:
            node = graph.add_fused(body, inputs, FUSED.canonical((), attrs)["kind"], name=name,
                                   loc=loc, output_names=[n for n, _ in outs])
        else:
            node = graph.add_node(op, inputs, attrs, name=name, loc=loc,
                                  output_names=[n for n, _ in outs])
    except GraphcError as e:
        raise SerializationError(f"node {i} ({op.name}): {e.message}") from None
    except Exception as e:  # type rules are not written against hostile attrs; a file is data
        raise SerializationError(f"node {i} ({op.name}): the type rule failed on attrs "
                                 f"{_show(attrs)}: {type(e).__name__}: {e}") from None
    if body is None:
        _check_impl_takes(op, len(inputs), node.attrs, i)
    if len(node.outputs) != len(outs):
        raise SerializationError(f"node {i} ({op.name}): {len(outs)} outputs recorded, but "
                                 f"the type rule gives {len(node.outputs)}")
    for v, (_, vtype) in zip(node.outputs, outs):
        if v.type != vtype:
            raise SerializationError(f"node {i} ({op.name}): recorded output type {vtype} "
                                     f"contradicts the type rule {v.type}")
    for v, (vname, _) in zip(node.outputs, outs):
        if v.name != vname:
            raise SerializationError(f"node {i} ({op.name}): value name {vname!r} is taken")
        values[vname] = v


def _body(rec: dict, op, where: str, depth: int) -> Graph | None:
    """A fused node's body, read like a graph document (constants inline), or None."""
    if (op is FUSED) != ("body" in rec):
        raise _err(where, "a fused node needs a 'body', and only fused nodes have one")
    if op is not FUSED:
        return None
    where += ".body"
    if depth + 1 > MAX_BODY_DEPTH:
        raise _err(where, f"fused bodies are nested more than {MAX_BODY_DEPTH} deep")
    doc = _object(rec["body"], where, ("inputs", "nodes", "outputs"), ("name", "constants"))
    try:
        return _graph(doc, None, set(), depth + 1)
    except SerializationError as e:
        raise _err(where, e.message) from None


def _load(text, tensors) -> tuple[Graph, set]:
    if isinstance(text, bytearray | memoryview):
        text = bytes(text)
    if not isinstance(text, str | bytes):
        raise SerializationError(f"expected JSON text (str or bytes), got {type(text).__name__}")
    if len(text) > MAX_JSON_BYTES:
        raise SerializationError(f"graph JSON of {len(text)} bytes is over the 1 GiB limit")
    doc = _parse_json(text, "graph JSON")
    if not isinstance(doc, dict):
        raise SerializationError(f"expected a JSON object at the top level, got {_show(doc)}")
    if "format" not in doc:
        raise SerializationError("missing field 'format'")
    if doc["format"] != FORMAT:
        raise SerializationError(f"not a graphc graph: format is {_show(doc['format'])}, "
                                 f"expected {FORMAT!r}")
    if "version" not in doc:
        raise SerializationError("missing field 'version'")
    if not _is_int(doc["version"]) or doc["version"] != VERSION:
        raise SerializationError(f"unsupported format version {_show(doc['version'])} "
                                 f"(this graphc reads version {VERSION})")
    _object(doc, "", ("format", "version", "inputs", "nodes", "outputs"), ("name", "constants"))
    used: set = set()
    graph = _graph(doc, tensors, used, 0)
    try:
        graph.validate()
    except Exception as e:  # GraphError, or an op's rule failing on the re-check
        raise SerializationError(f"the loaded graph is invalid: {e}") from None
    return graph, used


def _graph(doc: dict, tensors, used: set, depth: int) -> Graph:
    """The graph of a document whose fields were checked (not yet validated)."""
    graph = Graph(_string(doc.get("name", "graph"), "name"))
    constants = doc.get("constants", {})
    if not isinstance(constants, dict):
        raise _err("constants", f"expected a JSON object, got {_show(constants)}")
    constants, values = dict(constants), {}

    for i, rec in enumerate(_list(doc["inputs"], "inputs")):
        where = f"inputs[{i}]"
        _object(rec, where, ("name", "shape", "dtype", "role"))
        name = _string(rec["name"], where + ".name", nonempty=True)
        if name in values:
            raise _err(where + ".name", f"value name {name!r} is defined twice")
        vtype = TensorType(_shape(rec["shape"], where + ".shape"),
                           _dtype(rec["dtype"], where + ".dtype"))
        role = rec["role"]
        if role not in ROLES:
            raise _err(where + ".role", f"expected one of {', '.join(ROLES)}, got {_show(role)}")
        data = None
        if role == "constant":
            if name not in constants:
                raise _err(where, f"constant {name!r} has no entry in 'constants'")
            data = _constant(constants.pop(name), name, vtype, tensors, used)
        values[name] = graph.add_input(name, vtype, role, data)
    if constants:
        name = next(iter(constants))
        raise _err(f"constants[{name!r}]", "no input of role 'constant' has this name")

    for i, rec in enumerate(_list(doc["nodes"], "nodes")):
        _node(graph, values, rec, i, depth)

    for i, ref in enumerate(_list(doc["outputs"], "outputs")):
        v = values.get(ref) if isinstance(ref, str) else None
        if v is None:
            raise _err(f"outputs[{i}]", f"unknown value {_show(ref)}")
        graph.outputs.append(v)
    return graph


def graph_from_json(text: str | bytes, *, tensors: dict | None = None) -> Graph:
    """The graph that `graph_to_json` wrote; ``tensors`` resolves external constants.

    Raises SerializationError, naming the field, on anything malformed or inconsistent."""
    return _load(text, tensors)[0]


# -- safetensors ----------------------------------------------------------------------------

def safetensors_bytes(tensors: dict, metadata: dict | None = None) -> bytes:
    """The safetensors encoding of ``tensors`` (name -> array) and string ``metadata``.

    Tensors are laid out by decreasing itemsize, then name, so every tensor is aligned to
    its itemsize (the header is padded with spaces to a multiple of 8, as the spec says)."""
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise SerializationError(f"tensor name {_show(name)} is not allowed")
        try:
            data = np.asarray(value)
            dtype = dt.canonical(data.dtype)
        except (GraphcError, TypeError, ValueError) as e:
            raise SerializationError(f"tensor {name!r}: {e}") from None
        _shape(list(data.shape), f"tensor {name!r}")
        arrays[name] = (data, dtype)
    header: dict = {}
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise SerializationError(f"metadata must map str to str, got {_show(metadata)}")
        header["__metadata__"] = dict(metadata)
    chunks, offset = [], 0
    for name in sorted(arrays, key=lambda n: (-dt.to_numpy(arrays[n][1]).itemsize, n)):
        data, dtype = arrays[name]
        raw = _le_bytes(data, dtype)
        header[name] = {"dtype": _SAFETENSORS_DTYPES[dtype], "shape": list(data.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    return b"".join([len(head).to_bytes(8, "little"), head, *chunks])


def parse_safetensors(data: bytes, where: str = "safetensors") -> tuple[dict, dict]:
    """(tensors, metadata) from safetensors bytes, checking every size and offset."""
    data = bytes(data)
    if len(data) < 8:
        raise _err(where, f"{len(data)} bytes is too short for the 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER_BYTES or n > len(data) - 8:
        raise _err(where, f"header length {n} is over the limit or past the end of the "
                          f"{len(data)}-byte file")
    try:
        head = data[8:8 + n].decode("utf-8")
    except UnicodeDecodeError as e:
        raise _err(where, f"header is not UTF-8: {e}") from None
    header = _parse_json(head, f"{where} header")
    if not isinstance(header, dict):
        raise _err(where, f"header is not a JSON object: {_show(header)}")
    buffer = memoryview(data)[8 + n:]
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _err(where + " __metadata__", f"expected an object of strings, "
                                            f"got {_show(metadata)}")
    spans, tensors = [], {}
    for name, rec in header.items():
        w = f"{where} tensor {name!r}"
        _object(rec, w, ("dtype", "shape", "data_offsets"))
        if not isinstance(rec["dtype"], str) or rec["dtype"] not in _FROM_SAFETENSORS:
            raise _err(w, f"unsupported dtype {_show(rec['dtype'])}; graphc reads "
                          f"{', '.join(_FROM_SAFETENSORS)}")
        dtype, shape = _FROM_SAFETENSORS[rec["dtype"]], _shape(rec["shape"], w + " shape")
        offsets = rec["data_offsets"]
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))
                and 0 <= offsets[0] <= offsets[1] <= len(buffer)):
            raise _err(w, f"data_offsets {_show(offsets)} are not [begin, end] within the "
                          f"{len(buffer)}-byte data buffer")
        begin, end = offsets
        nbytes = math.prod(shape) * dt.to_numpy(dtype).itemsize
        if end - begin != nbytes:
            raise _err(w, f"data_offsets span {end - begin} bytes, but {rec['dtype']}"
                          f"{list(shape)} needs {nbytes}")
        spans.append((begin, end, name))
        tensors[name] = _array_from_bytes(buffer[begin:end], dtype, shape, w)
    covered = 0
    for begin, end, name in sorted(spans):
        if begin != covered:
            raise _err(where, f"tensor {name!r} starts at byte {begin}, expected {covered} "
                              "(tensors overlap or leave a gap)")
        covered = end
    if covered != len(buffer):
        raise _err(where, f"tensors cover {covered} of the {len(buffer)}-byte data buffer")
    return tensors, metadata


def save_safetensors(path: str | os.PathLike, tensors: dict,
                     metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (name -> array of a graphc dtype) as a safetensors file."""
    data = safetensors_bytes(tensors, metadata)
    with open(path, "wb") as f:
        f.write(data)


def _read(path: str | os.PathLike, limit: int, what: str) -> bytes:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read() if size <= limit else b""
    if size > limit or len(data) > limit:
        raise SerializationError(f"{os.fspath(path)}: {what} of {max(size, len(data))} bytes "
                                 f"is over the {limit}-byte limit")
    return data


def load_safetensors_with_metadata(path: str | os.PathLike) -> tuple[dict, dict]:
    """(tensors, metadata) from a safetensors file; arrays are writable copies."""
    data = _read(path, 2**62, "file")
    return parse_safetensors(data, os.fspath(path))


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """name -> array from a safetensors file; arrays are writable copies."""
    return load_safetensors_with_metadata(path)[0]


# -- graph + parameters on disk ---------------------------------------------------------------

def _paths(prefix: str | os.PathLike) -> tuple[str, str]:
    prefix = os.fspath(prefix)
    return f"{prefix}-graph.json", f"{prefix}-params.safetensors"


def save_graph(graph: Graph, prefix: str | os.PathLike, params: dict | None = None) -> None:
    """Write ``{prefix}-graph.json`` and ``{prefix}-params.safetensors`` (``params`` and the
    graph's constants of more than 1024 elements)."""
    external: dict = {}
    text = graph_to_json(graph, external=external)
    params = dict(params or {})
    clash = sorted(set(params) & set(external))
    if clash:
        raise SerializationError(f"parameter {clash[0]!r} has the name of a graph constant")
    json_path, tensor_path = _paths(prefix)
    save_safetensors(tensor_path, {**params, **external},
                     {"format": "graphc.params", "version": str(VERSION)})
    with open(json_path, "w", encoding="utf-8") as f:
        f.write(text)


def load_graph(prefix: str | os.PathLike) -> tuple[Graph, dict[str, np.ndarray]]:
    """(graph, params) that `save_graph` wrote; params exclude the graph's own constants."""
    json_path, tensor_path = _paths(prefix)
    tensors = load_safetensors(tensor_path)
    graph, used = _load(_read(json_path, MAX_JSON_BYTES, "graph JSON"), tensors)
    return graph, {k: v for k, v in tensors.items() if k not in used}
