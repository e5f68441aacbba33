"""The op table: one `Op` record per op holds every rule every stage needs.

Stages read these fields and never switch over op names:

- ``type_rule(types, **attrs)``: output TensorType(s) from input types, or ShapeError.
- ``canonical(types, attrs)``: attrs in canonical form (non-negative sorted axes, resolved
  ``-1`` in shapes...) once input types are known; graph nodes always store these.
- ``impl(xp, *arrays, **attrs)``: the eager computation on an array namespace.
- ``vjp(g, inputs, out, **attrs)``: input cotangents written with graphc ops, so the same
  rule serves eager autograd and the graph-level autodiff pass. ``g`` and ``out`` are
  tuples for multi-output ops; an entry of the result is None where no gradient flows.
- lowering facts: ``scalar`` (elementwise math as a scalar expression), ``reduction``
  (combiner, identity, finalizer) or ``library`` (the named call a backend provides).
- pass facts: ``kind``, ``inplace`` (inputs whose buffer the output may take over) and
  ``view_of`` (the input the output may alias without a copy).
- ``promote(dtypes) -> dtypes``: the dtypes the inputs are cast to before the op runs.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import dtypes as dt
from ..errors import GraphcError


class Kind(enum.Enum):
    ELEMENTWISE = "elementwise"
    INJECTIVE = "injective"      # view / shape / data-movement ops
    REDUCTION = "reduction"
    LIBRARY = "library"          # GEMM, convolution: a library call that can take an epilogue
    OPAQUE = "opaque"


@dataclass(frozen=True)
class Reduction:
    """How a reduction lowers: fold with ``combiner`` from ``identity``, then ``finalize``.

    ``combiner`` is a scalar primitive name ('add', 'mul', 'max', 'min'), or 'argmax' /
    'argmin' (fold (value, index) pairs; first index wins ties; NaN wins over numbers).
    ``finalize`` is None or 'mean' (divide by the number of reduced elements).
    """
    combiner: str
    identity: float
    finalize: str | None = None


@dataclass(eq=False)
class Op:
    name: str
    kind: Kind
    type_rule: Callable
    impl: Callable
    vjp: Callable | None = None
    canonical: Callable | None = None
    promote: Callable | None = None
    scalar: Callable | None = None
    reduction: Reduction | None = None
    library: str | None = None
    inplace: tuple[int, ...] = ()
    view_of: int | None = None
    num_outputs: int | Callable = 1  # or attrs -> count, for ops like split
    doc: str = field(default="", repr=False)

    def __post_init__(self):
        # Eager calls skip the type rule for plain elementwise ops (numpy checks
        # broadcasting itself); every other op canonicalizes and checks first.
        self.checked_eagerly = self.kind is not Kind.ELEMENTWISE or self.canonical is not None

    def __repr__(self) -> str:
        return f"<op {self.name}>"


_OPS: dict[str, Op] = {}


def register(op: Op) -> Op:
    if op.name in _OPS:
        raise ValueError(f"op {op.name!r} registered twice")
    _OPS[op.name] = op
    return op


class UnknownOpError(GraphcError, KeyError):
    pass


def get(name: str) -> Op:
    try:
        return _OPS[name]
    except (KeyError, TypeError):
        raise UnknownOpError(f"unknown op {name!r}") from None


def all_ops() -> dict[str, Op]:
    return dict(_OPS)


# -- input promotion policies ---------------------------------------------------------

def promote_common(dtypes: tuple[str, ...]) -> tuple[str, ...]:
    """All inputs take their common dtype."""
    common = dt.promote(*dtypes)
    return (common,) * len(dtypes)


def promote_float(dtypes: tuple[str, ...]) -> tuple[str, ...]:
    """All inputs take their common dtype, at least the default float."""
    common = dt.float_of(dt.promote(*dtypes))
    return (common,) * len(dtypes)


def infer(op: Op, types: tuple, attrs: dict) -> tuple[tuple, dict]:
    """Canonical attrs and output types of ``op`` on inputs of ``types``.

    Type rules raise ShapeError/DTypeError; anything else they raise on malformed attrs
    (a string where an int belongs...) is turned into a ShapeError naming the op."""
    from ..errors import ShapeError
    try:
        if op.canonical is not None:
            attrs = op.canonical(types, attrs)
        out = op.type_rule(types, **attrs)
    except GraphcError as e:
        raise e.with_context(op=op.name) from None
    except (TypeError, ValueError, IndexError, KeyError, OverflowError) as e:
        shapes = ", ".join(str(t) for t in types)
        raise ShapeError(f"invalid attributes {attrs} for inputs ({shapes}): {e}",
                         op=op.name) from None
    return (out if isinstance(out, tuple) and not hasattr(out, "dtype") else (out,)), attrs
