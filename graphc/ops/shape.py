"""Shape and data-movement ops: reshape, transpose, broadcast_to, expand_dims, squeeze,
concat, stack, split, slice, take, pad; flatten and Python indexing (`getitem`) on top.

All but `take_grad` are `Kind.INJECTIVE`: every output element is one input element (or a
constant), so fusion can fold them into index arithmetic. The ones numpy can return without copying
declare ``view_of=0``. Canonical attrs are resolved against the input type (non-negative
axes, one ``(start, stop, step)`` per axis), so two nodes that do the same thing compare
equal; reshape is the exception: it keeps the user's Gluon codes (``(0, -1)``), which the
type rule resolves, so a graph exported at one batch size can be rebuilt at another.
Gradients are written with these same ops, plus two of their own for the scatters that
undo a strided slice (`slice_grad`) and a gather (`take_grad`).
"""

from __future__ import annotations

import builtins
import math
import operator
from collections.abc import Sequence

import numpy as np

from .. import dtypes as dt
from ..errors import DTypeError, GraphcError, ShapeError, user_location
from ..tensor import Tensor, apply, array
from ..types import TensorType, normalize_axes, normalize_axis
from .elementwise import sum_to
from .registry import Kind, Op, promote_common, register

_pyslice = builtins.slice  # this module defines its own `slice`


# -- attr helpers -------------------------------------------------------------------------

def _int(v, what: str) -> int:
    """``v`` as a Python int (numpy integers too; never bool or float)."""
    if not isinstance(v, bool | np.bool_):
        try:
            return operator.index(v)
        except TypeError:
            pass
    raise ShapeError(f"{what} must be an int, got {v!r}")


def _ints(v, what: str) -> tuple[int, ...]:
    if isinstance(v, int | np.integer):
        return (_int(v, what),)
    return tuple(_int(d, what) for d in v)


def _axis(v, ndim: int) -> int:
    return normalize_axis(_int(v, "axis"), ndim)


def _axes(v, ndim: int) -> tuple[int, ...]:
    return normalize_axes(None if v is None else _ints(v, "axis"), ndim)


def _promote(dtypes: tuple[str, ...]) -> tuple[str, ...]:
    return promote_common(dtypes) if dtypes else ()


def _fail(message: str, op: str) -> ShapeError:
    """An error raised by a front-end function that is not itself an op."""
    return ShapeError(message, op=op, loc=user_location())


def _tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else array(x)


# -- reshape ------------------------------------------------------------------------------

def _resolve_shape(src: tuple[int, ...], spec) -> tuple[int, ...]:
    """Gluon's reshape codes on top of numpy's: 0 copies the input dim at that position,
    one -1 is inferred. An empty input reads 0 as a literal size instead (numpy): sizes
    cannot tell the two apart there, and code that computes a shape means the literal;
    this also makes an already resolved shape resolve to itself."""
    req = _ints(spec, "shape")
    size = math.prod(src)
    if req.count(-1) > 1 or any(d < -1 for d in req):
        raise ShapeError(f"cannot reshape {src} to {req}: sizes must be >= 0 "
                         "(0 copies the input dim), with at most one -1 (inferred)")
    out = list(req)
    if size:
        for i, d in enumerate(req):
            if d == 0:
                if i >= len(src):
                    raise ShapeError(f"cannot reshape {src} to {req}: the 0 at position {i} "
                                     f"copies an input dim, but the input has {len(src)}")
                out[i] = src[i]
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape {src} ({size} elements) to {req}: "
                             "the -1 cannot be inferred")
        out[out.index(-1)] = size // known
    if math.prod(out) != size:
        raise ShapeError(f"cannot reshape {src} ({size} elements) to {req} "
                         f"({math.prod(out)} elements)")
    return tuple(out)


def _reshape_canonical(types, attrs) -> dict:
    """The user's spec, codes kept (checked against the input, as Python ints): a graph
    stores ``(0, -1)`` rather than ``(64, 12)``, so an exported model stays batch-agnostic
    and the type rule resolves it again for whatever input shape the graph is rebuilt on."""
    spec = _ints(attrs["shape"], "shape")
    _resolve_shape(types[0].shape, spec)
    return {"shape": spec}


_RESHAPE = register(Op(
    "reshape", Kind.INJECTIVE,
    lambda types, shape: TensorType(_resolve_shape(types[0].shape, shape), types[0].dtype),
    lambda xp, x, shape: xp.reshape(x, _resolve_shape(x.shape, shape)),
    vjp=lambda g, x, out, shape: (reshape(g, x.shape),),
    canonical=_reshape_canonical,
    view_of=0))


def reshape(x, shape) -> Tensor:
    """``x`` with the same elements in ``shape``. As in Gluon, a 0 in ``shape`` copies the
    input dim at that position and one -1 is inferred: ``reshape(x, (0, -1))`` keeps the
    batch dim and flattens the rest."""
    return apply(_RESHAPE, x, shape=shape)


# -- transpose ----------------------------------------------------------------------------

def _transpose_canonical(types, attrs):
    shape, axes = types[0].shape, attrs.get("axes")
    if axes is None:
        return {"axes": tuple(reversed(range(len(shape))))}
    perm = tuple(_axis(a, len(shape)) for a in _ints(axes, "axis"))
    if sorted(perm) != list(range(len(shape))):
        raise ShapeError(f"axes {tuple(axes)} are not a permutation of the axes of {shape}")
    return {"axes": perm}


def _transpose_vjp(g, x, out, axes):
    inverse = [0] * len(axes)
    for i, a in enumerate(axes):
        inverse[a] = i
    return (transpose(g, tuple(inverse)),)


_TRANSPOSE = register(Op(
    "transpose", Kind.INJECTIVE,
    lambda types, axes: TensorType(tuple(types[0].shape[a] for a in axes), types[0].dtype),
    lambda xp, x, axes: xp.transpose(x, axes), vjp=_transpose_vjp,
    canonical=_transpose_canonical, view_of=0))


def transpose(x, axes=None) -> Tensor:
    """Permute the axes (numpy.transpose): output axis i is input axis ``axes[i]``;
    None reverses them."""
    return apply(_TRANSPOSE, x, axes=axes)


# -- broadcast_to -------------------------------------------------------------------------

def _broadcast_rule(types, shape):
    src = types[0].shape
    lead = len(shape) - len(src)
    if lead < 0 or any(d < 0 for d in shape) or any(
            d != 1 and d != shape[lead + i] for i, d in enumerate(src)):
        raise ShapeError(f"cannot broadcast shape {src} to {shape}")
    return TensorType(shape, types[0].dtype)


_BROADCAST_TO = register(Op(
    "broadcast_to", Kind.INJECTIVE, _broadcast_rule,
    lambda xp, x, shape: xp.broadcast_to(x, shape),
    vjp=lambda g, x, out, shape: (sum_to(g, x.shape),),
    canonical=lambda types, attrs: {"shape": _ints(attrs["shape"], "shape")}, view_of=0))


def broadcast_to(x, shape) -> Tensor:
    """``x`` repeated along new leading axes and its size-1 axes to ``shape`` (numpy rules);
    eagerly a read-only view, as numpy.broadcast_to."""
    return apply(_BROADCAST_TO, x, shape=shape)


# -- expand_dims / squeeze ----------------------------------------------------------------

def _expand_canonical(types, attrs):
    axis = _ints(attrs["axis"], "axis")
    return {"axis": normalize_axes(axis, types[0].ndim + len(axis))}


def _expand_rule(types, axis):
    rest = iter(types[0].shape)
    shape = tuple(1 if i in axis else next(rest) for i in range(types[0].ndim + len(axis)))
    return TensorType(shape, types[0].dtype)


_EXPAND_DIMS = register(Op(
    "expand_dims", Kind.INJECTIVE, _expand_rule,
    lambda xp, x, axis: xp.expand_dims(x, axis),
    vjp=lambda g, x, out, axis: (reshape(g, x.shape),),
    canonical=_expand_canonical, view_of=0))


def expand_dims(x, axis) -> Tensor:
    """Insert size-1 axes so that they sit at positions ``axis`` (an int or a tuple) of the
    output, as numpy.expand_dims."""
    return apply(_EXPAND_DIMS, x, axis=axis)


def _squeeze_canonical(types, attrs):
    shape, axis = types[0].shape, attrs.get("axis")
    if axis is None:
        return {"axis": tuple(i for i, d in enumerate(shape) if d == 1)}
    return {"axis": _axes(axis, len(shape))}


def _squeeze_rule(types, axis):
    shape = types[0].shape
    for a in axis:
        if shape[a] != 1:
            raise ShapeError(f"cannot squeeze axis {a} of shape {shape}: its size is "
                             f"{shape[a]}, not 1")
    return TensorType(tuple(d for i, d in enumerate(shape) if i not in axis), types[0].dtype)


_SQUEEZE = register(Op(
    "squeeze", Kind.INJECTIVE, _squeeze_rule, lambda xp, x, axis: xp.squeeze(x, axis=axis),
    vjp=lambda g, x, out, axis: (reshape(g, x.shape),),
    canonical=_squeeze_canonical, view_of=0))


def squeeze(x, axis=None) -> Tensor:
    """Drop size-1 axes: those named by ``axis`` (an int or a tuple; each must have size 1),
    or all of them when None."""
    return apply(_SQUEEZE, x, axis=axis)


# -- concat / stack / split ---------------------------------------------------------------

def _join_canonical(extra: int):
    def canonical(types, attrs):
        if not types:
            raise ShapeError("needs at least one tensor")
        return {"axis": _axis(attrs.get("axis", 0), types[0].ndim + extra)}
    return canonical


def _shapes(types) -> str:
    return ", ".join(str(t.shape) for t in types)


def _concat_rule(types, axis):
    first = types[0].shape
    if any(len(t.shape) != len(first) or any(d != e for i, (d, e) in
                                             enumerate(zip(t.shape, first)) if i != axis)
           for t in types):
        raise ShapeError(f"shapes {_shapes(types)} differ outside axis {axis}")
    size = sum(t.shape[axis] for t in types)
    return TensorType(first[:axis] + (size,) + first[axis + 1:], types[0].dtype)


def _concat_vjp(g, *args, axis):
    *xs, out = args
    points, at = [], 0
    for x in xs[:-1]:
        at += x.shape[axis]
        points.append(at)
    return split(g, points, axis=axis)


_CONCAT = register(Op(
    "concat", Kind.INJECTIVE, _concat_rule,
    lambda xp, *xs, axis: xp.concatenate(xs, axis=axis), vjp=_concat_vjp,
    canonical=_join_canonical(0), promote=_promote))


def concat(xs: Sequence, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis (numpy.concatenate); their dtypes are promoted
    to a common one."""
    xs = tuple(xs)
    if not xs:
        raise _fail("needs at least one tensor", "concat")
    return apply(_CONCAT, *xs, axis=axis)


def _stack_rule(types, axis):
    first = types[0].shape
    if any(t.shape != first for t in types):
        raise ShapeError(f"all shapes must be equal, got {_shapes(types)}")
    return TensorType(first[:axis] + (len(types),) + first[axis:], types[0].dtype)


def _stack_vjp(g, *args, axis):
    *xs, out = args
    return tuple(reshape(p, x.shape) for p, x in zip(split(g, len(xs), axis=axis), xs))


_STACK = register(Op(
    "stack", Kind.INJECTIVE, _stack_rule, lambda xp, *xs, axis: xp.stack(xs, axis=axis),
    vjp=_stack_vjp, canonical=_join_canonical(1), promote=_promote))


def stack(xs: Sequence, axis: int = 0) -> Tensor:
    """Join equally shaped tensors along a new axis ``axis`` of the output (numpy.stack)."""
    xs = tuple(xs)
    if not xs:
        raise _fail("needs at least one tensor", "stack")
    return apply(_STACK, *xs, axis=axis)


def _split_canonical(types, attrs):
    shape = types[0].shape
    axis = _axis(attrs.get("axis", 0), len(shape))
    n, spec = shape[axis], attrs["indices_or_sections"]
    if isinstance(spec, int | np.integer):
        k = _int(spec, "sections")
        if k <= 0 or n % k:
            raise ShapeError(f"cannot split axis {axis} of shape {shape} into {k} equal "
                             "sections")
        return {"indices_or_sections": tuple(i * (n // k) for i in range(1, k)), "axis": axis}
    points = tuple(min(max(p + n if p < 0 else p, 0), n)
                   for p in _ints(spec, "split index"))
    if any(b < a for a, b in zip(points, points[1:])):
        raise ShapeError(f"split indices {tuple(spec)} on axis {axis} of shape {shape} "
                         "must be increasing")
    return {"indices_or_sections": points, "axis": axis}


def _split_rule(types, indices_or_sections, axis):
    shape = types[0].shape
    bounds = (0, *indices_or_sections, shape[axis])
    return tuple(TensorType(shape[:axis] + (b - a,) + shape[axis + 1:], types[0].dtype)
                 for a, b in zip(bounds, bounds[1:]))


def _split_count(attrs) -> int:
    spec = attrs["indices_or_sections"]
    return int(spec) if isinstance(spec, int | np.integer) else len(spec) + 1


_SPLIT = register(Op(
    "split", Kind.INJECTIVE, _split_rule,
    lambda xp, x, indices_or_sections, axis: tuple(xp.split(x, list(indices_or_sections),
                                                            axis=axis)),
    vjp=lambda g, x, out, indices_or_sections, axis: (concat(g, axis=axis),),
    canonical=_split_canonical, num_outputs=_split_count))


def split(x, indices_or_sections, axis: int = 0) -> tuple[Tensor, ...]:
    """Cut ``x`` along ``axis`` (numpy.split): an int is a number of equal sections (it
    must divide the axis), a sequence the increasing indices where new pieces start."""
    return apply(_SPLIT, x, indices_or_sections=indices_or_sections, axis=axis)


# -- slice --------------------------------------------------------------------------------

def _entries(v, ndim: int, what: str) -> tuple:
    v = () if v is None else (v,) if isinstance(v, int | np.integer) else tuple(v)
    if len(v) > ndim:
        raise ShapeError(f"{len(v)} {what} entries for a tensor of rank {ndim}")
    return tuple(None if e is None else _int(e, what) for e in v) + (None,) * (ndim - len(v))


def _slice_canonical(types, attrs):
    """Resolve Python slice semantics per axis to the tightest (start, stop, step): start
    in range, stop just past the last element (None when a negative step runs through
    index 0), and (0, 0, 1) for an empty slice; resolving that again changes nothing."""
    shape = types[0].shape
    spec = zip(*(_entries(attrs.get(k), len(shape), k) for k in ("begin", "end", "step")))
    begin, end, step = [], [], []
    for n, (b, e, s) in zip(shape, spec):
        if s == 0:
            raise ShapeError(f"slice step cannot be zero (shape {shape})")
        start, stop, s = _pyslice(b, e, s).indices(n)
        count = len(range(start, stop, s))
        if count == 0:
            start, stop, s = 0, 0, 1
        else:
            stop = start + (count - 1) * s + (1 if s > 0 else -1)
        begin.append(start)
        end.append(None if stop < 0 else stop)
        step.append(s)
    return {"begin": tuple(begin), "end": tuple(end), "step": tuple(step)}


def _slices(begin, end, step) -> tuple:
    return tuple(_pyslice(*bes) for bes in zip(begin, end, step))


def _sliced_shape(shape, begin, end, step) -> tuple[int, ...]:
    return tuple(len(range(*s.indices(n))) for s, n in zip(_slices(begin, end, step), shape))


def _slice_vjp(g, x, out, begin, end, step):
    if all(s == 1 for s in step):
        return (pad(g, tuple((b, n - b - m) for b, n, m in zip(begin, x.shape, g.shape))),)
    return (apply(_SLICE_GRAD, g, shape=x.shape, begin=begin, end=end, step=step),)


_SLICE = register(Op(
    "slice", Kind.INJECTIVE,
    lambda types, begin, end, step: TensorType(
        _sliced_shape(types[0].shape, begin, end, step), types[0].dtype),
    lambda xp, x, begin, end, step: x[_slices(begin, end, step)],
    vjp=_slice_vjp, canonical=_slice_canonical, view_of=0))


def _slice_grad_canonical(types, attrs):
    shape = _ints(attrs["shape"], "shape")
    return {"shape": shape, **_slice_canonical((TensorType(shape, types[0].dtype),), attrs)}


def _slice_grad_rule(types, shape, begin, end, step):
    want = _sliced_shape(shape, begin, end, step)
    if types[0].shape != want:
        raise ShapeError(f"gradient of shape {types[0].shape} does not fit the slice of "
                         f"{shape}, which has shape {want}")
    return TensorType(shape, types[0].dtype)


def _slice_grad_impl(xp, g, shape, begin, end, step):
    out = xp.zeros(shape, g.dtype)
    out[_slices(begin, end, step)] = g
    return out


#: The transpose of a strided slice: ``g`` written into zeros of ``shape`` at the slice.
_SLICE_GRAD = register(Op(
    "slice_grad", Kind.INJECTIVE, _slice_grad_rule, _slice_grad_impl,
    vjp=lambda g, x, out, shape, begin, end, step: (slice(g, begin, end, step),),
    canonical=_slice_grad_canonical))


def slice(x, begin, end, step=None) -> Tensor:
    """``x[begin[0]:end[0]:step[0], begin[1]:end[1]:step[1], ...]``: one entry per leading
    axis (later axes are kept whole), entries may be None, with Python's semantics for
    negative indices and steps and out-of-range bounds (clamped)."""
    return apply(_SLICE, x, begin=begin, end=end, step=step)


# -- take ---------------------------------------------------------------------------------

def _take_rule(types, axis):
    x, idx = types
    if idx.dtype not in dt.INTS:
        raise DTypeError(f"indices must be integers, got {idx.dtype}")
    if x.shape[axis] == 0 and idx.size:
        raise ShapeError(f"cannot take indices {idx} from axis {axis} of shape {x.shape}, "
                         "which is empty")
    return TensorType(x.shape[:axis] + idx.shape + x.shape[axis + 1:], x.dtype)


def _take_vjp(g, x, indices, out, axis):
    return apply(_TAKE_GRAD, g, indices, axis=axis, size=x.shape[axis]), None


_TAKE = register(Op(
    "take", Kind.INJECTIVE, _take_rule,
    lambda xp, x, indices, axis: xp.take(x, indices, axis=axis), vjp=_take_vjp,
    canonical=lambda types, attrs: {"axis": _axis(attrs.get("axis", 0), types[0].ndim)}))


def _take_grad_rule(types, axis, size):
    g, idx = types
    if idx.dtype not in dt.INTS:
        raise DTypeError(f"indices must be integers, got {idx.dtype}")
    if not 0 <= axis <= g.ndim - idx.ndim or g.shape[axis:axis + idx.ndim] != idx.shape \
            or size < 0:
        raise ShapeError(f"gradient {g} does not fit indices {idx} at axis {axis}")
    return TensorType(g.shape[:axis] + (size,) + g.shape[axis + idx.ndim:], g.dtype)


def _take_grad_impl(xp, g, indices, axis, size):
    out = xp.zeros(g.shape[:axis] + (size,) + g.shape[axis + indices.ndim:], g.dtype)
    xp.add.at(out, (_pyslice(None),) * axis + (indices,), g)
    return out


#: The transpose of `take`: ``g`` scatter-added into zeros along ``axis`` of length
#: ``size`` (repeated indices accumulate), so it is a reduction-like scatter, not injective.
_TAKE_GRAD = register(Op(
    "take_grad", Kind.OPAQUE, _take_grad_rule, _take_grad_impl,
    vjp=lambda g, gy, indices, out, axis, size: (take(g, indices, axis=axis), None),
    canonical=lambda types, attrs: {"axis": _int(attrs["axis"], "axis"),
                                    "size": _int(attrs["size"], "size")}))


def _indices(k, x=None) -> Tensor:
    """An index tensor, on the device of the concrete tensor ``x`` it indexes (a GPU
    tensor's list indices go to the GPU); an empty list is an empty int64 index, as in
    numpy."""
    if isinstance(k, Tensor):
        return k
    a = np.asarray(k)
    device = x.device if isinstance(x, Tensor) and x._sym is None else None
    return array(a.astype(np.int64) if a.size == 0 else a, device=device)


def take(x, indices, axis: int = 0) -> Tensor:
    """Gather along ``axis`` (numpy.take): the output has ``indices``' shape in place of
    that axis; negative indices wrap, out-of-range ones raise. No gradient flows to the
    indices."""
    return apply(_TAKE, x, _indices(indices, x), axis=axis)


# -- pad ----------------------------------------------------------------------------------

def _pad_canonical(types, attrs):
    """numpy's pad_width forms (n, (n,), (before, after), ((before, after),), or one pair
    per axis) become one (before, after) pair per axis."""
    ndim, pw = types[0].ndim, attrs["pad_width"]
    if isinstance(pw, int | np.integer):
        pairs = [(pw, pw)]
    else:
        pw = list(pw)
        if pw and all(isinstance(p, int | np.integer) for p in pw):
            pw = [pw]
        pairs = [tuple(p) * (2 // len(p)) if len(p) in (1, 2) else p for p in map(tuple, pw)]
    if len(pairs) == 1:
        pairs = pairs * ndim
    pairs = tuple(tuple(_int(w, "pad width") for w in p) for p in pairs)
    if len(pairs) != ndim or any(len(p) != 2 or min(p) < 0 for p in pairs):
        raise ShapeError(f"pad_width {attrs['pad_width']} is not one (before, after) pair of "
                         f"non-negative ints per axis of shape {types[0].shape}")
    return {"pad_width": pairs, "value": float(attrs.get("value", 0.0))}


_PAD = register(Op(
    "pad", Kind.INJECTIVE,
    lambda types, pad_width, value: TensorType(
        tuple(d + a + b for d, (a, b) in zip(types[0].shape, pad_width)), types[0].dtype),
    lambda xp, x, pad_width, value: xp.pad(x, pad_width, mode="constant",
                                           constant_values=value) if pad_width else x.copy(),
    vjp=lambda g, x, out, pad_width, value: (
        slice(g, [a for a, _ in pad_width], [a + d for (a, _), d in zip(pad_width, x.shape)]),),
    canonical=_pad_canonical))


def pad(x, pad_width, value: float = 0.0) -> Tensor:
    """Surround ``x`` with ``value`` (numpy.pad in 'constant' mode); ``pad_width`` takes
    numpy's forms: n, (before, after), or one (before, after) pair per axis."""
    return apply(_PAD, x, pad_width=pad_width, value=value)


# -- front-end compositions ---------------------------------------------------------------

def flatten(x, start_axis: int = 1, end_axis: int = -1) -> Tensor:
    """Collapse axes ``start_axis..end_axis`` (inclusive) into one; the default keeps the
    batch axis and flattens the rest, as Gluon's Flatten. A reshape, so it needs ``x``'s
    shape: a Variable expression must be given one."""
    x = _tensor(x)
    shape = x.shape
    try:
        start, end = _axis(start_axis, len(shape)), _axis(end_axis, len(shape))
    except GraphcError as e:
        raise e.with_context(op="flatten", loc=user_location()) from None
    if start > end:
        raise _fail(f"start_axis {start_axis} comes after end_axis {end_axis} for shape "
                    f"{shape}", "flatten")
    if end == len(shape) - 1 and math.prod(shape):
        # Codes, not sizes: (0, -1) keeps whatever batch the graph is later run at.
        return reshape(x, (0,) * start + (-1,))
    return reshape(x, shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:])


_MASK = ("boolean mask indexing is not supported: its result shape depends on the mask's "
         "values; use gc.where(mask, x, 0) or integer indices")


def _index_tensor(k, x) -> Tensor:
    t = _indices(k, x)
    if t.dtype == np.bool_:
        raise _fail(_MASK, "getitem")
    if dt.canonical(t.dtype) not in dt.INTS:
        raise _fail(f"index arrays must be integers, got {t.dtype}", "getitem")
    return t


def getitem(x, key) -> Tensor:
    """``x[key]`` as numpy does it, in terms of slice, take and reshape: ints, slices, None,
    Ellipsis and one integer array (list, numpy array or Tensor) index, placed where numpy
    places it. Boolean masks are refused: their result shape depends on values."""
    x = _tensor(x)
    shape = x.shape
    items, parsed = key if isinstance(key, tuple) else (key,), []
    for k in items:
        if k is None or k is Ellipsis or isinstance(k, _pyslice):
            parsed.append(k)
        elif isinstance(k, bool | np.bool_):
            raise _fail(_MASK, "getitem")
        elif isinstance(k, int | np.integer):
            parsed.append(int(k))
        elif isinstance(k, Tensor | list | np.ndarray):
            parsed.append(_index_tensor(k, x))
        else:
            raise _fail(f"unsupported index {k!r}", "getitem")
    arrays = [k for k in parsed if isinstance(k, Tensor)]
    if len(arrays) > 1:
        raise _fail("only one integer array index is supported", "getitem")
    # (identity tests: `in` and `count` would compare Tensors elementwise)
    dots = [i for i, k in enumerate(parsed) if k is Ellipsis]
    if len(dots) > 1:
        raise _fail("an index can only have a single ellipsis ('...')", "getitem")
    used = sum(k is not None and k is not Ellipsis for k in parsed)
    if used > len(shape):
        raise _fail(f"too many indices for shape {shape}: {key!r}", "getitem")
    fill = [_pyslice(None)] * (len(shape) - used)
    if dots:
        parsed[dots[0]:dots[0] + 1] = fill
    else:
        parsed += fill

    begin, end, step, out_shape, advanced = [], [], [], [], []
    axis, arr_axis, arr_at = 0, None, None
    for pos, k in enumerate(parsed):
        if k is None:
            out_shape.append(1)
            continue
        n = shape[axis]
        if isinstance(k, int):
            if not -n <= k < n:
                raise _fail(f"index {k} is out of range for axis {axis} of shape {shape}",
                            "getitem")
            begin.append(k % n)
            end.append(k % n + 1)
            step.append(1)
            advanced.append(pos)
        elif isinstance(k, Tensor):
            begin.append(None)
            end.append(None)
            step.append(None)
            arr_axis, arr_at = axis, len(out_shape)
            out_shape.extend(k.shape)
            advanced.append(pos)
        else:
            begin.append(k.start)
            end.append(k.stop)
            step.append(k.step)
            out_shape.append(len(range(*k.indices(n))))
        axis += 1

    y = x
    if any(b is not None or e is not None or s not in (None, 1)
           for b, e, s in zip(begin, end, step)):
        y = slice(y, begin, end, step)
    if arrays:
        (idx,) = arrays
        y = take(y, idx, axis=arr_axis)
        if advanced != list(range(advanced[0], advanced[0] + len(advanced))):
            # numpy puts the array's dims first when other indices separate the advanced
            # ones (ints count as advanced next to an array)
            dims = list(range(arr_axis, arr_axis + idx.ndim))
            y = transpose(y, dims + [i for i in range(y.ndim) if i not in dims])
            out_shape = (list(idx.shape) + out_shape[:arr_at]
                         + out_shape[arr_at + idx.ndim:])
    if tuple(y.shape) != tuple(out_shape):
        y = reshape(y, tuple(out_shape))
    return y
