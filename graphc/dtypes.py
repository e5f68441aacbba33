"""The dtypes graphc supports and its promotion rule.

Promotion follows one total order, ``bool < int32 < int64 < float16 < float32 < float64``:
two tensors combine to the larger of their dtypes (so ``int32 + float16 -> float16``, as in
PyTorch and JAX; numpy would give float64 for ``int32 + float32``). Python scalars are
*weak*: they take the tensor's dtype when they are of the same kind or a lower one
(``float32_tensor * 2.5 -> float32``, ``int32_tensor + 1 -> int32``), and otherwise the
default dtype of their own kind (``int_tensor * 0.5 -> float32``, ``bool_tensor + 1 ->
int64``). Ops that are only defined on floats (``exp``, ``div``...) first promote integer
and bool inputs to float32, the default float.
"""

from __future__ import annotations

import numpy as np

from .errors import DTypeError

DTYPES = ("bool", "int32", "int64", "float16", "float32", "float64")
_RANK = {name: i for i, name in enumerate(DTYPES)}
SHORT = {"bool": "bool", "int32": "i32", "int64": "i64", "float16": "f16",
         "float32": "f32", "float64": "f64"}
FLOATS = frozenset({"float16", "float32", "float64"})
INTS = frozenset({"int32", "int64"})
DEFAULT_FLOAT = "float32"
DEFAULT_INT = "int64"

_NP = {name: np.dtype(name) for name in DTYPES}


def canonical(dtype) -> str:
    """The graphc name of ``dtype`` (a name, numpy dtype or Python type)."""
    if isinstance(dtype, str) and dtype in _RANK:
        return dtype
    if dtype is float:
        return DEFAULT_FLOAT
    if dtype is int:
        return DEFAULT_INT
    if dtype is bool:
        return "bool"
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in _RANK:
        raise DTypeError(f"unsupported dtype {dtype!r}; graphc supports {', '.join(DTYPES)}")
    return name


_BY_NUMPY = {d: name for name, d in _NP.items()}


def name_of(np_dtype: np.dtype) -> str:
    """The graphc name of a numpy dtype (a dict lookup: ``np.dtype.name`` is slow)."""
    name = _BY_NUMPY.get(np_dtype)
    return name if name is not None else canonical(np_dtype)


def to_numpy(dtype: str) -> np.dtype:
    return _NP[dtype]


def is_float(dtype: str) -> bool:
    return dtype in FLOATS


def promote(*dtypes: str) -> str:
    """The common dtype of tensor operands: the largest in the promotion order."""
    return max(dtypes, key=_RANK.__getitem__)


def scalar_dtype(value, other: str | None) -> str:
    """The dtype a Python scalar takes next to a tensor of dtype ``other`` (weak typing)."""
    if isinstance(value, (bool, np.bool_)):
        kind = "bool"
    elif isinstance(value, (int, np.integer)):
        kind = DEFAULT_INT
    elif isinstance(value, (float, np.floating)):
        kind = DEFAULT_FLOAT
    else:
        raise DTypeError(f"cannot use {type(value).__name__} {value!r} as a tensor operand")
    dtype = kind
    if other is not None and (kind == "bool" or (kind in INTS and other not in ("bool",)) or (
            kind in FLOATS and other in FLOATS)):
        dtype = other
    if kind in INTS and dtype in INTS:
        lo, hi = _INT_RANGE[dtype]
        if not lo <= value <= hi:  # numpy would raise a bare OverflowError converting it
            where = f" (the dtype it takes next to a {other} tensor)" if other else ""
            raise DTypeError(f"Python int {value} does not fit {dtype}{where}")
    return dtype


_INT_RANGE = {d: (int(np.iinfo(d).min), int(np.iinfo(d).max)) for d in INTS}


def float_of(dtype: str) -> str:
    """The dtype a float-only op computes in for an input of ``dtype``."""
    return dtype if dtype in FLOATS else DEFAULT_FLOAT
