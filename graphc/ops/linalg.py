"""Linear algebra: matmul, with numpy's semantics, lowered as one GEMM library call.

matmul is the one op a Dense layer needs and the main place an elementwise epilogue
(bias, activation) fuses into a library call, so it is a single op for every rank:
2-D, batched (batch dims broadcast as numpy) and the 1-D vector cases, all ``gemm``.
"""

from __future__ import annotations

from ..errors import DTypeError, ShapeError
from ..tensor import apply
from ..types import TensorType, broadcast_shapes
from .registry import Kind, Op, promote_common, register


def _as_matrices(a: tuple, b: tuple) -> tuple[tuple, tuple]:
    """numpy's rule: a 1-D left operand is a row (1, k), a 1-D right operand a column (k, 1)."""
    return ((1, *a) if len(a) == 1 else a), ((*b, 1) if len(b) == 1 else b)


def _matmul_rule(types):
    a, b = types
    if a.dtype != b.dtype:
        raise DTypeError(f"operands have different dtypes {a.dtype} and {b.dtype}")
    if a.dtype == "bool":
        raise DTypeError("bool operands are not supported; cast them to a number type first")
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"operands must be at least 1-D (use multiply for scalars): "
                         f"{a.shape} @ {b.shape}")
    am, bm = _as_matrices(a.shape, b.shape)
    if am[-1] != bm[-2]:
        raise ShapeError(f"inner dimensions differ: {a.shape} @ {b.shape} "
                         f"({am[-1]} vs {bm[-2]})")
    try:
        batch = broadcast_shapes(am[:-2], bm[:-2])
    except ShapeError:
        raise ShapeError(f"batch dimensions do not broadcast: {a.shape} @ {b.shape}") from None
    rows = (am[-2],) if a.ndim > 1 else ()
    cols = (bm[-1],) if b.ndim > 1 else ()
    return TensorType(batch + rows + cols, a.dtype)


def _matmul_impl(xp, a, b):
    return xp.asarray(xp.matmul(a, b))  # vector @ vector gives a numpy scalar


def _swap_last(x):
    from .shape import transpose
    n = x.ndim
    return transpose(x, tuple(range(n - 2)) + (n - 1, n - 2))


def _reshaped(x, shape):
    from .shape import reshape
    return x if tuple(x.shape) == tuple(shape) else reshape(x, shape)


def _matmul_vjp(g, a, b, out):
    """On the matrix forms: dA = G @ B^T, dB = A^T @ G, summed over broadcast batch dims,
    then reshaped back to the vector operands' shapes."""
    from .elementwise import sum_to
    am, bm = _as_matrices(tuple(a.shape), tuple(b.shape))
    a2, b2 = _reshaped(a, am), _reshaped(b, bm)
    g2 = _reshaped(g, broadcast_shapes(am[:-2], bm[:-2]) + (am[-2], bm[-1]))
    ga = sum_to(matmul(g2, _swap_last(b2)), am)
    gb = sum_to(matmul(_swap_last(a2), g2), bm)
    return _reshaped(ga, a.shape), _reshaped(gb, b.shape)


_MATMUL = register(Op("matmul", Kind.LIBRARY, lambda types: _matmul_rule(types), _matmul_impl,
                      vjp=_matmul_vjp, promote=promote_common, library="gemm"))


def matmul(a, b):
    """Matrix product with numpy.matmul semantics: ``(..., n, k) @ (..., k, m)`` with the
    batch dims broadcast; a 1-D left operand is a row vector and a 1-D right operand a
    column vector whose unit dim is dropped from the result (vector @ vector is 0-d).
    Operands take their common dtype; bool is rejected (numpy's logical matmul is rarely
    what a model means)."""
    return apply(_MATMUL, a, b)
